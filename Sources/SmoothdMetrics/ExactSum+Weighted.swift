extension ExactSum {
    /// `value` in units of 2^-80, truncated toward zero, when |value| < 2^40: exactly what `add(_:)` puts into
    /// the fixed part (v·2^80 is exact, and the integer conversion truncates). Nil for larger values.
    @inline(__always)
    static func fixedUnits(_ value: Double) -> Int128? {
        guard abs(value) < 0x1p40 else { return nil }
        return Int128(value * 0x1p80)
    }

    /// Adds `value` `times` times, exactly as that many `add(value)` calls would; `units` is
    /// `fixedUnits(value)`, computed once for all the replicates of a row.
    @inline(__always)
    mutating func add(_ value: Double, units: Int128?, times: UInt64) {
        if let units {
            let (product, productOverflow) = units.multipliedReportingOverflow(by: Int128(times))
            if !productOverflow {
                let (sum, overflow) = fixed.addingReportingOverflow(product)
                if !overflow {
                    fixed = sum
                    return
                }
            }
        }
        for _ in 0..<times { add(value) }
    }
}
