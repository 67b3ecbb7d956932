import SmoothdJSON

/// An order-independent sum of doubles.
///
/// Each value is first given a fixed-point form that depends on the value alone: values below 2^40 in
/// magnitude are truncated to a multiple of 2^-80 (an error under 1e-24, and none at all for the 53
/// significant bits of any value above 2^-27); larger ones are kept exactly. Those forms are then added
/// without rounding: an `Int128` of 2^-80 units for the common case and, for large values and carries, a
/// superaccumulator wide enough for every finite double. So sums do not depend on order or grouping,
/// which makes results bit-identical for any thread count or chunk size, and lets shard accumulators
/// merge into totals exactly as their rows would.
public struct ExactSum: Sendable, Equatable {
    /// The sum of small values, in units of 2^-80.
    var fixed: Int128 = 0
    /// Large values and overflow of `fixed`; nil until needed (it is rare).
    var wide: WideSum?

    /// An empty sum.
    public init() {}

    /// Adds a finite double.
    @inline(__always)
    public mutating func add(_ value: Double) {
        if let units = ExactSum.fixedUnits(value) {
            addFixed(units)
        } else {
            mutableWide().add(value)
        }
    }

    /// The fixed-point form of a finite `value` in 2^-80 units (truncated), or nil when |value| ≥ 2^40 (the
    /// wide part takes those exactly). Its magnitude is below 2^120, so 64 of them add without overflow.
    @inline(__always)
    static func fixedUnits(_ value: Double) -> Int128? {
        let bits = value.bitPattern
        let exponentField = Int((bits >> 52) & 0x7FF)
        // |value| < 2^40: exponent field < 1023 + 40. value = m · 2^(e − 1075), so in 2^-80 units m · 2^(e − 995).
        guard exponentField < 1063 else { return nil }
        let mantissa = (bits & 0x000F_FFFF_FFFF_FFFF) | (exponentField == 0 ? 0 : 1 << 52)
        let shift = exponentField - 995
        let magnitude: Int128
        if shift >= 0 {
            magnitude = Int128(mantissa) << shift
        } else if shift > -64 {
            magnitude = Int128(mantissa >> UInt64(-shift))
        } else {
            return 0
        }
        return value < 0 ? -magnitude : magnitude
    }

    /// Adds `units` of 2^-80 to the fixed part, spilling it into the wide part when it would overflow.
    @inline(__always)
    mutating func addFixed(_ units: Int128) {
        let (sum, overflow) = fixed.addingReportingOverflow(units)
        if overflow {
            spillFixed()
            fixed = units
        } else {
            fixed = sum
        }
    }

    /// Adds another sum.
    public mutating func add(_ other: ExactSum) {
        addFixed(other.fixed)
        if let otherWide = other.wide { mutableWide().add(otherWide) }
    }

    /// Adds another sum, or with `negated` takes away one added before (exact: a supersession takes a shard's state
    /// out of its group). A wide part that becomes zero is dropped, as a sum never given one has none.
    @inline(__always)
    mutating func add(_ other: ExactSum, negated: Bool) {
        guard negated else { return add(other) }
        if other.fixed == .min { mutableWide().addFixed(other.fixed, negated: true) } else { addFixed(-other.fixed) }
        if let otherWide = other.wide { mutableWide().add(otherWide, negated: true) }
        if let wide, wide.isZero { self.wide = nil }
    }

    /// The fixed-point part in 2^-80 units (without the wide part): a cheap fingerprint of the sum.
    public var fixedPart: Int128 { fixed }

    /// True when the sum is zero.
    var isZero: Bool { fixed == 0 && (wide?.isZero ?? true) }

    /// The sum rounded to a double (deterministic for a given sum).
    public var value: Double {
        guard let wide else { return ExactSum.fixedValue(fixed) }
        let total = wide.copy()
        total.addFixed(fixed)
        return total.value
    }

    /// `value` of a sum without a wide part, without building a superaccumulator (adaptive ECE rounds hundreds of
    /// bin sums per report): the same procedure (docs/STATE-FORMAT.md) on the digits of F·2^994, which are those of
    /// |F|·2^2 placed from digit 31 up, so digit 31 + j weighs 2^(32·j − 82).
    static func fixedValue(_ fixed: Int128) -> Double {
        let magnitude = fixed.magnitude
        var result = 0.0
        for j in stride(from: 4, through: 0, by: -1) {
            let digit = j == 0 ? (magnitude << 2) & 0xFFFF_FFFF : (magnitude >> (32 * j - 2)) & 0xFFFF_FFFF
            if digit != 0 { result += Double(UInt32(digit)) * Double(sign: .plus, exponent: 32 * j - 82, significand: 1) }
        }
        return fixed < 0 ? -result : result
    }

    /// Equality of the represented sums.
    public static func == (lhs: ExactSum, rhs: ExactSum) -> Bool {
        let a = lhs.wide?.copy() ?? WideSum()
        a.addFixed(lhs.fixed)
        let b = rhs.wide?.copy() ?? WideSum()
        b.addFixed(rhs.fixed)
        return a.sameValue(as: b)
    }

    private mutating func spillFixed() {
        mutableWide().addFixed(fixed)
        fixed = 0
    }

    private mutating func mutableWide() -> WideSum {
        if let wide, isKnownUniquelyReferenced(&self.wide!) { return wide }
        let fresh = wide?.copy() ?? WideSum()
        wide = fresh
        return fresh
    }

    /// The state as `{"fixed": "<Int128 in 2^-80 units>", "wide": [[digit index, digit], …]}`.
    public var jsonState: JSONValue {
        .object([("fixed", .string(String(fixed))), ("wide", wide?.jsonDigits ?? .array([]))])
    }

    /// Restores a state written by `jsonState`.
    public init(jsonState: JSONValue) throws(MetricStateError) {
        guard let text = jsonState["fixed"]?.stringValue, let fixed = Int128(text), let digits = jsonState["wide"] else {
            throw MetricStateError("bad exact sum \(jsonState.serialized())")
        }
        self.fixed = fixed
        let restored = try WideSum(jsonDigits: digits)
        if !restored.isZero { wide = restored }
    }
}

/// A Kulisch-style superaccumulator: 32-bit digits, digit i weighing 2^(32·i − 1074), wide enough for
/// any sum of finite doubles. A class so that `ExactSum` stays small; `ExactSum` copies it on write.
final class WideSum: @unchecked Sendable {
    // `@unchecked Sendable`: only mutated through `ExactSum.mutableWide()`, which copies unless the
    // reference is unique, so a shared instance is never written.
    static let count = 72
    var digits = [Int64](repeating: 0, count: WideSum.count)
    /// Additions since the last carry; each adds less than 2^32 to a digit, so 2^30 of them cannot overflow.
    var pendingAdds = 0

    init() {}

    func copy() -> WideSum {
        let c = WideSum()
        c.digits = digits
        c.pendingAdds = pendingAdds
        return c
    }

    var isZero: Bool { normalized().allSatisfy { $0 == 0 } }

    /// Adds `magnitude` (< 2^128) times 2^(position − 1074), with `negative` sign.
    private func addBits(_ magnitude: UInt128, position: Int, negative: Bool) {
        var slot = position >> 5
        var shifted = magnitude
        let offset = position & 31
        // Add 160 bits in 32-bit pieces: the low part first, then what the offset pushed up.
        var pieces: [Int64] = []
        pieces.reserveCapacity(6)
        let low = shifted << UInt128(offset)
        let high = offset == 0 ? 0 : shifted >> UInt128(128 - offset)
        shifted = low
        for _ in 0..<4 {
            pieces.append(Int64(UInt64(truncatingIfNeeded: shifted) & 0xFFFF_FFFF))
            shifted >>= 32
        }
        pieces.append(Int64(UInt64(truncatingIfNeeded: high) & 0xFFFF_FFFF))
        for piece in pieces where slot < WideSum.count {
            digits[slot] &+= negative ? -piece : piece
            slot += 1
        }
        pendingAdds += 1
        if pendingAdds >= 1 << 30 { normalize() }
    }

    /// Adds a finite double exactly.
    func add(_ value: Double) {
        let bits = value.bitPattern
        let exponentField = Int((bits >> 52) & 0x7FF)
        var mantissa = bits & 0x000F_FFFF_FFFF_FFFF
        if exponentField != 0 { mantissa |= 1 << 52 }
        guard mantissa != 0 else { return }
        addBits(UInt128(mantissa), position: max(0, exponentField - 1), negative: value < 0)
    }

    /// Adds (or with `negated` subtracts) `fixed` units of 2^-80.
    func addFixed(_ fixed: Int128, negated: Bool = false) {
        guard fixed != 0 else { return }
        addBits(fixed.magnitude, position: 1074 - 80, negative: (fixed < 0) != negated)
    }

    /// Adds (or with `negated` subtracts) `other`.
    func add(_ other: WideSum, negated: Bool = false) {
        let o = other.normalized()
        normalize()
        for i in 0..<WideSum.count { digits[i] = negated ? digits[i] &- o[i] : digits[i] &+ o[i] }
        normalize()
    }

    /// Carries so every digit but the top lies in [0, 2^32); the top digit holds the sign.
    func normalize() {
        var carry: Int64 = 0
        for i in 0..<(WideSum.count - 1) {
            let v = digits[i] &+ carry
            carry = v >> 32
            digits[i] = v & 0xFFFF_FFFF
        }
        digits[WideSum.count - 1] &+= carry
        pendingAdds = 0
    }

    func normalized() -> [Int64] {
        let c = copy()
        c.normalize()
        return c.digits
    }

    func sameValue(as other: WideSum) -> Bool { normalized() == other.normalized() }

    /// The sum rounded to a double.
    var value: Double {
        var n = normalized()
        // A negative total is a two's complement across the digits; convert the magnitude.
        let negative = n[WideSum.count - 1] < 0
        if negative {
            let c = WideSum()
            c.digits = n.map { -$0 }
            c.normalize()
            n = c.digits
        }
        var result = 0.0
        for i in stride(from: WideSum.count - 1, through: 0, by: -1) where n[i] != 0 {
            result += Double(sign: .plus, exponent: 32 * i - 1074, significand: Double(n[i]))
        }
        return negative ? -result : result
    }

    var jsonDigits: JSONValue {
        .array(normalized().enumerated().filter { $0.element != 0 }.map { .array([.int(Int64($0.offset)), .int($0.element)]) })
    }

    convenience init(jsonDigits: JSONValue) throws(MetricStateError) {
        self.init()
        guard let pairs = jsonDigits.arrayValue else { throw MetricStateError("wide sum is not an array") }
        for pair in pairs {
            guard let p = pair.arrayValue, p.count == 2, let i = p[0].intValue, let d = p[1].intValue, (0..<Int64(WideSum.count)).contains(i) else {
                throw MetricStateError("bad wide-sum digit \(pair.serialized())")
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
