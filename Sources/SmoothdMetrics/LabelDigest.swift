import SmoothdJSON

/// A cheap digest of a shard's label sequence (ignored rows included), so `smoothd compare` can tell whether two
/// evaluations read the same rows: h = Σ_i v_i · B^(n−1−i) mod p over the n labels in file order, p = 2^61 − 1,
/// B = `base`, v_i = (y_i as an unsigned 64-bit two's-complement integer) + 1 mod p. Digests of consecutive parts
/// combine in file order (h = h_a · B^(n_b) + h_b), so decoder threads digest their frame groups independently.
public struct LabelDigest: Sendable, Equatable, CustomStringConvertible {
    /// p = 2^61 − 1.
    public static let modulus: UInt64 = (1 << 61) - 1
    /// B, a fixed odd base below p.
    public static let base: UInt64 = 0x1F35_A5B1_7D2C_6E4B
    /// n, the labels digested.
    public private(set) var rows: UInt64 = 0
    /// h.
    public private(set) var hash: UInt64 = 0
    /// B^n mod p, for combining.
    private var power: UInt64 = 1

    /// The digest of no labels.
    public init() {}

    /// A digest as written (`hash` below p); its B^n is computed again.
    public init(rows: UInt64, hash: UInt64) {
        self.rows = rows
        self.hash = hash
        var result: UInt64 = 1, square = LabelDigest.base, exponent = rows
        while exponent > 0 {
            if exponent & 1 == 1 { result = LabelDigest.multiply(result, square) }
            square = LabelDigest.multiply(square, square)
            exponent >>= 1
        }
        power = result
    }

    /// a·b mod p for a, b < p.
    @inline(__always)
    static func multiply(_ a: UInt64, _ b: UInt64) -> UInt64 {
        let product = UInt128(a) * UInt128(b)
        let sum = UInt64(truncatingIfNeeded: product & UInt128(modulus)) + UInt64(truncatingIfNeeded: product >> 61)
        return sum >= modulus ? sum - modulus : sum
    }

    /// Appends labels (in file order).
    @inline(__always)
    public mutating func add(_ labels: UnsafeBufferPointer<Int64>) {
        var h = hash, q = power
        for label in labels {
            var v = UInt64(bitPattern: label) % LabelDigest.modulus + 1
            if v == LabelDigest.modulus { v = 0 }
            let next = LabelDigest.multiply(h, LabelDigest.base) + v
            h = next >= LabelDigest.modulus ? next - LabelDigest.modulus : next
            q = LabelDigest.multiply(q, LabelDigest.base)
        }
        hash = h
        power = q
        rows += UInt64(labels.count)
    }

    /// Appends the labels `other` digested, which follow these in the file.
    public mutating func append(_ other: LabelDigest) {
        let combined = LabelDigest.multiply(hash, other.power) + other.hash
        hash = combined >= LabelDigest.modulus ? combined - LabelDigest.modulus : combined
        power = LabelDigest.multiply(power, other.power)
        rows += other.rows
    }

    /// `N labels, digest 0x…`.
    public var description: String { "\(rows) labels, digest \(hexHash)" }

    /// h as 16 lowercase hex digits.
    public var hexHash: String {
        let digits = String(hash, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }

    /// `{"rows": n, "hash": "16 hex digits"}`.
    public var json: JSONValue { .object([("rows", .int(Int64(rows))), ("hash", .string(hexHash))]) }

    /// Reads `json`; nil when it is not a digest smoothd writes.
    public init?(json: JSONValue) {
        guard let rows = json["rows"]?.intValue, rows >= 0, let text = json["hash"]?.stringValue, text.count == 16,
              let hash = UInt64(text, radix: 16), hash < LabelDigest.modulus else { return nil }
        self.init(rows: UInt64(rows), hash: hash)
    }
}
