extension ExactSum {
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
