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
        power = LabelDigest.basePower(rows)
    }

    /// B^n mod p, by squaring.
    static func basePower(_ n: UInt64) -> UInt64 {
        var result: UInt64 = 1, square = LabelDigest.base, exponent = n
        while exponent > 0 {
            if exponent & 1 == 1 { result = LabelDigest.multiply(result, square) }
            square = LabelDigest.multiply(square, square)
            exponent >>= 1
        }
        return result
    }

    /// a·b mod p for a, b < p.
    @inline(__always)
    static func multiply(_ a: UInt64, _ b: UInt64) -> UInt64 { reduce(UInt128(a) * UInt128(b)) }

    /// x mod p for x < 2^124, by folding at bit 61 twice (2^61 ≡ 1).
    @inline(__always)
    static func reduce(_ x: UInt128) -> UInt64 {
        let once = UInt64(truncatingIfNeeded: x & UInt128(modulus)) + UInt64(truncatingIfNeeded: x >> 61)  // < 2^64
        let twice = (once & modulus) + (once >> 61)  // < p + 8
        return twice >= modulus ? twice - modulus : twice
    }

    /// v = y + 1 mod p for a label y read as an unsigned 64-bit integer, without a division.
    @inline(__always)
    static func value(_ label: Int64) -> UInt64 {
        let x = UInt64(bitPattern: label)
        var v = (x & modulus) + (x >> 61)  // ≡ x, ≤ p + 7
        if v >= modulus { v -= modulus }
        v += 1
        return v == modulus ? 0 : v
    }

    /// B², B³ and B⁴ mod p, for four labels per step.
    static let base2 = multiply(base, base), base3 = multiply(base2, base), base4 = multiply(base2, base2)

    /// Appends labels (in file order). Four labels per step, h·B⁴ + v₀·B³ + v₁·B² + v₂·B + v₃, so that the four
    /// products do not wait for each other (one step per label is a chain of dependent multiplications), and
    /// B^n once per call; both give the same residues as one label at a time.
    @inline(__always)
    public mutating func add(_ labels: UnsafeBufferPointer<Int64>) {
        var h = hash
        let count = labels.count
        var i = 0
        let b1 = UInt128(LabelDigest.base), b2 = UInt128(LabelDigest.base2), b3 = UInt128(LabelDigest.base3), b4 = UInt128(LabelDigest.base4)
        while i &+ 4 <= count {
            // Four products below 2^122 each: the sum stays below 2^124.
            let sum = UInt128(h) * b4 + UInt128(LabelDigest.value(labels[i])) * b3 + UInt128(LabelDigest.value(labels[i &+ 1])) * b2
                + UInt128(LabelDigest.value(labels[i &+ 2])) * b1 + UInt128(LabelDigest.value(labels[i &+ 3]))
            h = LabelDigest.reduce(sum)
            i &+= 4
        }
        while i < count {
            h = LabelDigest.reduce(UInt128(h) * b1 + UInt128(LabelDigest.value(labels[i])))
            i &+= 1
        }
        hash = h
        power = LabelDigest.multiply(power, LabelDigest.basePower(UInt64(count)))
        rows += UInt64(count)
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
