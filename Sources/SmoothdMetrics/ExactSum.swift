import SmoothdJSON

/// An exact sum of doubles: a fixed-point accumulator wide enough for every finite double
/// (a Kulisch-style superaccumulator of 32-bit digits).
///
/// Because no addition rounds, sums are independent of order and grouping. That is what makes
/// results bit-identical for any thread count or chunk size, and what lets shard accumulators
/// merge into totals exactly as their rows would.
public struct ExactSum: Sendable, Equatable {
    /// 32-bit digits, least significant first; digit i weighs 2^(32·i − 1074).
    /// A digit may temporarily exceed 32 bits; `normalize` carries.
    var digits = InlineArray<68, Int64>(repeating: 0)
    /// Additions since the last carry; each adds less than 2^32 to a digit, so 2^30 of them cannot overflow.
    var pendingAdds: UInt32 = 0

    /// An empty sum.
    public init() {}

    /// Adds a finite double exactly.
    @inline(__always)
    public mutating func add(_ value: Double) {
        let bits = value.bitPattern
        let exponentField = Int((bits >> 52) & 0x7FF)
        var mantissa = bits & 0x000F_FFFF_FFFF_FFFF
        // position of the mantissa's lowest bit above 2^-1074
        let position: Int
        if exponentField == 0 {
            position = 0
        } else {
            mantissa |= 1 << 52
            position = exponentField - 1
        }
        if mantissa == 0 { return }
        let slot = position >> 5
        let shifted = UInt128(mantissa) << UInt128(position & 31)
        let d0 = Int64(UInt64(truncatingIfNeeded: shifted) & 0xFFFF_FFFF)
        let d1 = Int64(UInt64(truncatingIfNeeded: shifted >> 32) & 0xFFFF_FFFF)
        let d2 = Int64(UInt64(truncatingIfNeeded: shifted >> 64))
        if value < 0 {
            digits[slot] &-= d0; digits[slot + 1] &-= d1; digits[slot + 2] &-= d2
        } else {
            digits[slot] &+= d0; digits[slot + 1] &+= d1; digits[slot + 2] &+= d2
        }
        pendingAdds &+= 1
        if pendingAdds >= 1 << 30 { normalize() }
    }

    /// Adds another exact sum.
    public mutating func add(_ other: ExactSum) {
        var other = other
        other.normalize()
        normalize()
        for i in 0..<68 { digits[i] &+= other.digits[i] }
        normalize()
    }

    /// Carries so every digit but the top lies in [0, 2^32); the top digit holds the sign.
    public mutating func normalize() {
        var carry: Int64 = 0
        for i in 0..<67 {
            let v = digits[i] &+ carry
            carry = v >> 32
            digits[i] = v & 0xFFFF_FFFF
        }
        digits[67] &+= carry
        pendingAdds = 0
    }

    /// The sum rounded to a double (deterministic for a given exact value).
    public var value: Double {
        var n = self
        n.normalize()
        // A negative total is stored as a two's complement across the digits; convert the magnitude.
        let negative = n.digits[67] < 0
        if negative {
            for i in 0..<68 { n.digits[i] = -n.digits[i] }
            n.normalize()
        }
        var result = 0.0
        for i in stride(from: 67, through: 0, by: -1) where n.digits[i] != 0 {
            result += Double(sign: .plus, exponent: 32 * i - 1074, significand: Double(n.digits[i]))
        }
        return negative ? -result : result
    }

    /// Exact equality of the represented values.
    public static func == (lhs: ExactSum, rhs: ExactSum) -> Bool {
        var a = lhs, b = rhs
        a.normalize()
        b.normalize()
        for i in 0..<68 where a.digits[i] != b.digits[i] { return false }
        return true
    }

    /// The exact state as `[[digit index, digit], …]` for the non-zero digits.
    public var jsonState: JSONValue {
        var n = self
        n.normalize()
        var pairs: [JSONValue] = []
        for i in 0..<68 where n.digits[i] != 0 { pairs.append(.array([.int(Int64(i)), .int(n.digits[i])])) }
        return .array(pairs)
    }

    /// Restores a state written by `jsonState`.
    public init(jsonState: JSONValue) throws(MetricStateError) {
        guard let pairs = jsonState.arrayValue else { throw MetricStateError("exact sum is not an array") }
        for pair in pairs {
            guard let p = pair.arrayValue, p.count == 2, let i = p[0].intValue, let d = p[1].intValue, (0..<68).contains(i) else {
                throw MetricStateError("bad exact-sum digit \(pair.serialized())")
            }
            digits[Int(i)] = d
        }
    }
}

/// A persisted metric state that could not be read back.
public struct MetricStateError: Error, Sendable, CustomStringConvertible {
    /// What was wrong.
    public var description: String
    init(_ description: String) { self.description = description }
}
