/// `finish` for sixteen rows at once, in float64 lanes: the lanes kernel's last step.
///
/// Row by row, `finish` costs one libm `log` (or `log1p`), one `exp` and six divisions per row, most of the lanes
/// kernel's time at small K. Here the same formulas run on `WideLanes`, with fdlibm's `log` and `exp` algorithms
/// (each under 1 ulp, as glibc's) written out lane-wise. Every operation is a plain IEEE add, multiply or divide (no
/// fused multiply-add, which Swift never forms by itself), so every kernel variant gives the same bits, and a lane's
/// result depends on that lane's inputs alone. The functions take the `MultiplyAdd` type only so that each CPU's
/// module specialises them under its own name (see `MultiplyAdd`): when one is not inlined, the AVX-512 kernel
/// would otherwise call the baseline build's copy.
extension RowKernel {
    /// Float64 lanes, one per row of a lane group.
    public typealias WideLanes = SIMD16<Double>

    /// Float lanes to float64, written lane by lane so that LLVM folds it into two widening instructions (the
    /// generic conversion may stay a loop).
    @inlinable @inline(__always)
    public static func widen(_ v: Lanes) -> WideLanes {
        WideLanes(Double(v[0]), Double(v[1]), Double(v[2]), Double(v[3]), Double(v[4]), Double(v[5]), Double(v[6]), Double(v[7]),
                  Double(v[8]), Double(v[9]), Double(v[10]), Double(v[11]), Double(v[12]), Double(v[13]), Double(v[14]), Double(v[15]))
    }

    /// Int32 lanes to float64, lane by lane for the same reason.
    @inlinable @inline(__always)
    public static func widen(_ v: LaneInts) -> WideLanes {
        WideLanes(Double(v[0]), Double(v[1]), Double(v[2]), Double(v[3]), Double(v[4]), Double(v[5]), Double(v[6]), Double(v[7]),
                  Double(v[8]), Double(v[9]), Double(v[10]), Double(v[11]), Double(v[12]), Double(v[13]), Double(v[14]), Double(v[15]))
    }

    /// `value` in every lane.
    @inlinable @inline(__always)
    public static func splat(_ value: Double) -> WideLanes { WideLanes(repeating: value) }

    /// The contract's numbers of sixteen rows from their lanes' sums, as `finish` computes them row by row.
    @inlinable @inline(__always)
    public static func finishLanes<F: MultiplyAdd>(
        k: Int, zy: Lanes, m: Lanes, tiesAtMax: WideLanes, sumE: WideLanes, sumE2: WideLanes, sumEZ: WideLanes, sumZ: WideLanes, _: F.Type
    ) -> (nll: WideLanes, uniform: WideLanes, others: WideLanes, entropy: WideLanes, confidence: WideLanes, brier: WideLanes) {
        let kd = WideLanes(repeating: Double(k))
        let one = WideLanes(repeating: 1)
        let s = tiesAtMax + sumE
        let excess = (tiesAtMax - one) + sumE
        let logS = logLanes(s, excess: excess, F.self)
        let dy = widen(zy) - widen(m)
        let atMax = widen(zy) .== widen(m)
        let ey = expLanes(dy, F.self)
        let nll = logS - dy
        let uniform = logS - sumZ / kd
        let others = (kd * uniform - nll) / (kd - one)
        let entropy = logS - sumEZ / s
        let confidence = one / s
        let oneMinusQy = ((s - ey) / s).replacing(with: excess / s, where: atMax)
        let squares = s * s
        let othersSquared = ((tiesAtMax + sumE2 - ey * ey) / squares).replacing(with: ((tiesAtMax - one) + sumE2) / squares, where: atMax)
        let brier = oneMinusQy * oneMinusQy + othersSquared
        return (nll, uniform, others, entropy, confidence, brier)
    }

    /// log s for s ≥ 1, given excess = s − 1 as the sums formed it (more exact than s − 1 after rounding s).
    /// fdlibm's e_log.c: s = 2^n·(1 + f) with 1 + f in [√2/2, √2), log(1 + f) from a polynomial in f/(2 + f);
    /// below s = √2, f is the excess itself (n = 0), which is what `log1p` does for confident rows.
    @inlinable @inline(__always)
    public static func logLanes<F: MultiplyAdd>(_ s: WideLanes, excess: WideLanes, _: F.Type) -> WideLanes {
        let bits = unsafeBitCast(s, to: SIMD16<Int64>.self) &+ (0x3FF0_0000_0000_0000 - 0x3FE6_A09E_667F_3BCD)
        let mantissa = (bits & 0x000F_FFFF_FFFF_FFFF) &+ 0x3FE6_A09E_667F_3BCD
        // n = exponent ≥ 0 (s ≥ 1) as a double: 2^52 + n has n in its low bits.
        let n52 = unsafeBitCast((bits &>> 52) &- 0x3FF &+ 0x4330_0000_0000_0000, to: WideLanes.self) - WideLanes(repeating: 0x1p52)
        let near = excess .< WideLanes(repeating: 0x1.6A09E667F3BCDp0 - 1)
        let f = (unsafeBitCast(mantissa, to: WideLanes.self) - WideLanes(repeating: 1)).replacing(with: excess, where: near)
        let n = n52.replacing(with: 0, where: near)
        let hfsq: WideLanes = splat(0.5) * f * f
        let r: WideLanes = f / (splat(2) + f)
        let z: WideLanes = r * r
        let w: WideLanes = z * z
        // fdlibm's Lg1…Lg7, in its order of evaluation.
        var t1: WideLanes = splat(2.222219843214978396e-01) + w * splat(1.531383769920937332e-01)
        t1 = w * (splat(3.999999999940941908e-01) + w * t1)
        var t2: WideLanes = splat(1.818357216161805012e-01) + w * splat(1.479819860511658591e-01)
        t2 = splat(2.857142874366239149e-01) + w * t2
        t2 = z * (splat(6.666666666666735130e-01) + w * t2)
        let tail: WideLanes = r * (hfsq + (t2 + t1)) + n * splat(1.90821492927058770002e-10)
        return n * splat(6.93147180369123816490e-01) - ((hfsq - tail) - f)
    }

    /// e^x for x ≤ 0 (fdlibm's e_exp.c). x is first raised to −708, where e^x ≈ 3e-308 is still normal: such an
    /// e^x only ever meets sums ≥ 1 (s − e, e²), where it and the true value both vanish.
    @inlinable @inline(__always)
    public static func expLanes<F: MultiplyAdd>(_ x0: WideLanes, _: F.Type) -> WideLanes {
        let x = x0.replacing(with: -708, where: x0 .< WideLanes(repeating: -708))
        let shifter = WideLanes(repeating: 0x1.8p52)
        let t = x * WideLanes(repeating: 1.44269504088896338700e+00) + shifter  // round(x / ln 2) in the low bits
        let kd = t - shifter
        let hi = x - kd * WideLanes(repeating: 6.93147180369123816490e-01)  // exact: ln2Hi has 32 significant bits
        let lo = kd * WideLanes(repeating: 1.90821492927058770002e-10)
        let r = hi - lo
        let rr: WideLanes = r * r
        // fdlibm's P1…P5, in its order of evaluation.
        var p: WideLanes = splat(-1.65339022054652515390e-06) + rr * splat(4.13813679705723846039e-08)
        p = splat(6.61375632143793436117e-05) + rr * p
        p = splat(-2.77777777770155933842e-03) + rr * p
        p = splat(1.66666666666666019037e-01) + rr * p
        let c: WideLanes = r - rr * p
        let q: WideLanes = (r * c) / (splat(2) - c)
        let y: WideLanes = splat(1) - ((lo - q) - hi)
        // 2^k from k's bits in t: k ≥ −1022, so k + 1023 is a normal exponent.
        let k = unsafeBitCast(t, to: SIMD16<Int64>.self) &- 0x4338_0000_0000_0000
        return y * unsafeBitCast((k &+ 1023) &<< 52, to: WideLanes.self)
    }
}
