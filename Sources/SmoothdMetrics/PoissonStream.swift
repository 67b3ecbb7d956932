/// The bootstrap weights: a counter-based generator, so the weight of a row in a replicate depends only on
/// (seed, row index, replicate) and never on which thread, chunk or frame the row was read in.
///
/// u = SplitMix64 finalizer of (rowKey + (r + 1)·γ), rowKey = finalizer(seed ⊕ finalizer(i + γ)), γ the golden-ratio
/// increment; w = the least k with u < ⌊P(X ≤ k)·2^64⌋ for X ~ Poisson(1) (exact integer thresholds, k ≤ 19;
/// P(X > 18) < 10^-17).
public enum PoissonStream {
    /// SplitMix64's increment (2^64 / golden ratio).
    static let gamma: UInt64 = 0x9E37_79B9_7F4A_7C15

    /// ⌊P(X ≤ k)·2^64⌋ for k = 0 … 18, X ~ Poisson(1), computed to 80 digits (Benchmarks and tests need no libm).
    static let thresholds: [UInt64] = [
        0x5E2D_58D8_B3BC_DF1A, 0xBC5A_B1B1_6779_BE35, 0xEB71_5E1D_C158_2DC2, 0xFB23_9797_34A2_52F1,
        0xFF10_25F5_9174_DC3D, 0xFFD9_0F3B_A405_5E19, 0xFFFA_8B71_FC72_C913, 0xFFFF_540C_0914_B3C9,
        0xFFFF_ED1F_4AA8_F120, 0xFFFF_FE21_6E64_1462, 0xFFFF_FFD4_D85D_3183, 0xFFFF_FFFC_6DA2_62B4,
        0xFFFF_FFFF_BA12_D178, 0xFFFF_FFFF_FB07_C64C, 0xFFFF_FFFF_FFAB_8EA5, 0xFFFF_FFFF_FFFA_BE22,
        0xFFFF_FFFF_FFFF_B11A, 0xFFFF_FFFF_FFFF_FBA1, 0xFFFF_FFFF_FFFF_FFC5,
    ]

    /// SplitMix64's output function: a bijective 64-bit mix.
    @inline(__always)
    public static func mix(_ value: UInt64) -> UInt64 {
        var z = value
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// The key of row `row` under `seed`, from which every replicate's draw of that row follows.
    @inline(__always)
    public static func rowKey(seed: UInt64, row: UInt64) -> UInt64 { mix(seed ^ mix(row &+ gamma)) }

    /// The Poisson(1) weight of the row with key `rowKey` in replicate `replicate`.
    @inline(__always)
    public static func weight(rowKey: UInt64, replicate: Int) -> UInt64 {
        let u = mix(rowKey &+ UInt64(truncatingIfNeeded: replicate + 1) &* gamma)
        if u < 0x5E2D_58D8_B3BC_DF1A { return 0 }  // the two commonest outcomes without a loop
        if u < 0xBC5A_B1B1_6779_BE35 { return 1 }
        var k = 2
        while k < thresholds.count && u >= thresholds[k] { k += 1 }
        return UInt64(k)
    }

    /// The seed of a shard: from its meta `shard_index` when it is an integer (so ranks of two checkpoints with the
    /// same index draw the same weights, which pairs them), else from its file's base name (`name`'s last path
    /// component: the same file name under another directory draws the same weights).
    public static func seed(shardIndex: Int64?, name: String) -> UInt64 {
        if let shardIndex { return mix(UInt64(bitPattern: shardIndex) ^ 0x5348_4152_445F_4958) }  // "SHARD_IX"
        let base = name.split(separator: "/", omittingEmptySubsequences: false).last.map(String.init) ?? name
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325  // FNV-1a 64 of the UTF-8 bytes
        for byte in base.utf8 { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01B3 }
        return mix(hash ^ 0x4E41_4D45_5F53_4545)  // "NAME_SEE"
    }
}
