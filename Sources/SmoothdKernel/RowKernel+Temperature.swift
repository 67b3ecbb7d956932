#if canImport(Glibc)
import Glibc
#endif

/// The per-row numbers of softmax(β·z) for one temperature T = 1/β (docs: "Temperature sweep" in README.md).
@frozen public struct TemperatureRowStatistics: Sendable, Equatable {
    /// nll_T = log S0 − β·s_y.
    public var nll: Double
    /// U_T = log S0 − β·mean(s).
    public var uniformTerm: Double
    /// W_T = (K·U_T − nll_T)/(K − 1).
    public var othersTerm: Double
    /// max q = 1/S0.
    public var confidence: Double
    /// −Σ q log q = log S0 − β·S1/S0.
    public var entropy: Double
    /// Σ q² − 2q_y + 1.
    public var brier: Double
    /// d nll_T/dβ = E_q[s] − s_y.
    public var slope: Double
    /// d² nll_T/dβ² = Var_q(s).
    public var curvature: Double

    /// Creates statistics.
    @inlinable
    public init(nll: Double, uniformTerm: Double, othersTerm: Double, confidence: Double, entropy: Double, brier: Double, slope: Double, curvature: Double) {
        self.nll = nll
        self.uniformTerm = uniformTerm
        self.othersTerm = othersTerm
        self.confidence = confidence
        self.entropy = entropy
        self.brier = brier
        self.slope = slope
        self.curvature = curvature
    }
}

extension RowKernel {
    /// Signature of a temperature batch kernel: first row, K, bytes per row, labels, row count, ignore_index,
    /// the β values and their count, and the output (row r, temperature t at `out[r·count + t]`; rows labelled
    /// ignore_index are skipped). Rows with a non-finite logit give meaningless numbers; callers drop them.
    public typealias TemperatureBatchFunction = @Sendable (
        UnsafeRawPointer, Int, Int, UnsafePointer<Int64>, Int, Int64, UnsafePointer<Double>, Int, UnsafeMutablePointer<TemperatureRowStatistics>
    ) -> Void

    /// The batch loop around `temperatureKernel`.
    @inlinable @inline(__always)
    public static func evaluateTemperatureRows<L: LogitLoader, F: MultiplyAdd>(
        _ rows: UnsafeRawPointer, _ k: Int, _ rowBytes: Int, _ labels: UnsafePointer<Int64>, _ count: Int, _ ignoreIndex: Int64,
        _ betas: UnsafePointer<Double>, _ betaCount: Int, _ out: UnsafeMutablePointer<TemperatureRowStatistics>, _: L.Type, _: F.Type
    ) {
        for r in 0..<count where labels[r] != ignoreIndex {
            temperatureKernel(rows + r &* rowBytes, k, Int(labels[r]), betas, betaCount, out + r &* betaCount, L.self, F.self)
        }
    }

    /// Baseline temperature batch kernel for float32.
    public static func evaluateTemperatureRowsFloat32(_ rows: UnsafeRawPointer, _ k: Int, _ rowBytes: Int, _ labels: UnsafePointer<Int64>, _ count: Int, _ ignore: Int64, _ betas: UnsafePointer<Double>, _ betaCount: Int, _ out: UnsafeMutablePointer<TemperatureRowStatistics>) {
        evaluateTemperatureRows(rows, k, rowBytes, labels, count, ignore, betas, betaCount, out, Float32Loader.self, SeparateMultiplyAdd.self)
    }
    /// Baseline temperature batch kernel for float16.
    public static func evaluateTemperatureRowsFloat16(_ rows: UnsafeRawPointer, _ k: Int, _ rowBytes: Int, _ labels: UnsafePointer<Int64>, _ count: Int, _ ignore: Int64, _ betas: UnsafePointer<Double>, _ betaCount: Int, _ out: UnsafeMutablePointer<TemperatureRowStatistics>) {
        evaluateTemperatureRows(rows, k, rowBytes, labels, count, ignore, betas, betaCount, out, Float16Loader.self, SeparateMultiplyAdd.self)
    }
    /// Baseline temperature batch kernel for bfloat16.
    public static func evaluateTemperatureRowsBFloat16(_ rows: UnsafeRawPointer, _ k: Int, _ rowBytes: Int, _ labels: UnsafePointer<Int64>, _ count: Int, _ ignore: Int64, _ betas: UnsafePointer<Double>, _ betaCount: Int, _ out: UnsafeMutablePointer<TemperatureRowStatistics>) {
        evaluateTemperatureRows(rows, k, rowBytes, labels, count, ignore, betas, betaCount, out, BFloat16Loader.self, SeparateMultiplyAdd.self)
    }

    /// One row at every β: a max pass, then one exp pass per β over s = z − max (≤ 0) summing
    /// S0 = Σe^{βs}, S1 = Σe^{βs}·s, S2 = Σe^{βs}·s², Sq = Σe^{2βs} (and Σs once). As in `kernel`, the max elements
    /// (e = 1, s = 0) are counted apart so confident rows keep their small nll, entropy and Brier, and the float
    /// lanes are flushed into float64 every 1,024 logits.
    @inlinable @inline(__always)
    public static func temperatureKernel<L: LogitLoader, F: MultiplyAdd>(
        _ row: UnsafeRawPointer, _ k: Int, _ y: Int, _ betas: UnsafePointer<Double>, _ betaCount: Int,
        _ out: UnsafeMutablePointer<TemperatureRowStatistics>, _: L.Type, _: F.Type
    ) {
        var maxLanes = Lanes(repeating: -.infinity)
        var i = 0
        while i &+ 16 <= k {
            maxLanes = lanesMax(maxLanes, L.lanes(row, i))
            i &+= 16
        }
        if i < k { maxLanes = lanesMax(maxLanes, partialLanes(row, i, k &- i, fill: -.infinity, L.self, F.self)) }
        let m = horizontalMax(maxLanes)
        let zy = L.scalar(row, y)
        let mLanes = Lanes(repeating: m)
        let zero = Lanes(repeating: 0)
        var sumS = 0.0
        var ties = 0.0
        for t in 0..<betaCount {
            let beta = betas[t]
            // β = hi + lo in floats, x = s·hi + s·lo: β·s to float precision even when β is not a float.
            let betaHi = Float(beta)
            let betaHiLanes = Lanes(repeating: betaHi), betaLoLanes = Lanes(repeating: Float(beta - Double(betaHi)))
            let first = t == 0
            var s0 = 0.0, s1 = 0.0, s2 = 0.0, sq = 0.0
            var maxCount = LaneInts(repeating: 0)
            i = 0
            while i < k {
                let blockEnd = min(k, i &+ 1024)
                var e0 = zero, e1 = zero, e2 = zero, eq = zero, ss = zero
                while i < blockEnd {
                    let n = blockEnd &- i
                    // A partial vector reads its padding as the max minus 1e30: e = 0 there, and s is zeroed below.
                    let padding = laneIndex .>= LaneInts(repeating: Int32(Swift.min(n, 16)))
                    let s = (L.lanes(row, i) - mLanes).replacing(with: 0, where: padding)
                    let atMax = (s .== zero) .| padding
                    let x = lanesMax(F.multiplyAdd(s, betaHiLanes, s * betaLoLanes), Lanes(repeating: -87.0))
                    let e = exp(x, F.self).replacing(with: 0, where: atMax)
                    e0 += e
                    let es = e * s
                    e1 += es
                    e2 = F.multiplyAdd(es, s, e2)
                    eq = F.multiplyAdd(e, e, eq)
                    if first {
                        ss += s
                        maxCount &+= unsafeBitCast((s .== zero) .& .!padding, to: LaneInts.self)
                    }
                    i &+= 16
                }
                s0 += Double(horizontalSum(e0))
                s1 += Double(horizontalSum(e1))
                s2 += Double(horizontalSum(e2))
                sq += Double(horizontalSum(eq))
                if first { sumS += Double(horizontalSum(ss)) }
                i = blockEnd
            }
            if first {
                ties = Double(-horizontalSum(maxCount))
                if !sumS.isFinite {
                    // As in `kernel`: finite logits ~1e37 apart overflow the float sums of s; sum them in double.
                    sumS = 0
                    for j in 0..<k { sumS += Double(L.scalar(row, j)) - Double(m) }
                }
            }
            out[t] = finishTemperature(k: k, beta: beta, zy: zy, m: m, ties: ties, s0: s0, s1: s1, s2: s2, sq: sq, sumS: sumS)
        }
    }

    /// Turns one β's sums into the statistics in float64 (S0 etc. exclude the max elements, which add `ties`).
    @inlinable @inline(__always)
    public static func finishTemperature(k: Int, beta: Double, zy: Float, m: Float, ties: Double, s0: Double, s1: Double, s2: Double, sq: Double, sumS: Double) -> TemperatureRowStatistics {
        let kd = Double(k)
        let s = ties + s0
        let excess = (ties - 1) + s0
        let logS = excess < 1e-4 ? Glibc.log1p(excess) : Glibc.log(s)
        let dy = Double(zy) - Double(m)
        let labelAtMax = zy == m
        let ey = labelAtMax ? 1.0 : Glibc.exp(beta * dy)
        let nll = logS - beta * dy
        let uniform = logS - beta * sumS / kd
        let others = (kd * uniform - nll) / (kd - 1)
        let meanS = s1 / s
        let entropy = logS - beta * meanS
        let oneMinusQy = labelAtMax ? excess / s : (s - ey) / s
        let othersSquared = labelAtMax ? ((ties - 1) + sq) / (s * s) : (ties + sq - ey * ey) / (s * s)
        let brier = oneMinusQy * oneMinusQy + othersSquared
        let curvature = Swift.max(0, s2 / s - meanS * meanS)
        return TemperatureRowStatistics(nll: nll, uniformTerm: uniform, othersTerm: others, confidence: 1 / s, entropy: entropy,
                                        brier: brier, slope: meanS - dy, curvature: curvature)
    }
}
