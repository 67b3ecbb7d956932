/// SplitMix64: a small deterministic generator, so test data and benchmark shards are the same on
/// every run and failures reproduce. Shared by the test suites and the benchmarks.
public struct SplitMix: RandomNumberGenerator, Sendable {
    /// The generator's state; the next value is derived from it.
    public var state: UInt64

    /// A generator starting from `state` exactly.
    public init(state: UInt64) { self.state = state }

    /// A generator for `seed` (its state one step past the seed).
    public init(seed: UInt64) { state = seed &+ 0x9E37_79B9_7F4A_7C15 }

    /// The next 64 random bits.
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A uniform double in [0, 1) from the top 53 bits.
    public mutating func unit() -> Double { Double(next() >> 11) * 0x1p-53 }

    /// Sum of four uniforms, centred and scaled to unit variance: cheap and close enough to normal.
    public mutating func roughNormal() -> Float {
        let x = next()
        var s: Float = 0
        for i in 0..<4 { s += Float((x >> (16 * UInt64(i))) & 0xFFFF) * (1 / 65536) }
        return (s - 2) * 1.7320508
    }
}
