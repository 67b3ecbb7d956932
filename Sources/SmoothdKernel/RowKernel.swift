#if canImport(Glibc)
import Glibc
#endif

/// The per-row numbers the contract defines, for one row of K logits and its label.
@frozen public struct RowStatistics: Sendable, Equatable {
    /// False when a logit is NaN or ±Inf; the other fields are then meaningless.
    public var isFinite: Bool
    /// lse − z[y].
    public var nll: Double
    /// U = lse − mean(z), the cross-entropy against the uniform distribution.
    public var uniformTerm: Double
    /// W = (K·U − nll)/(K−1), the mean cross-entropy against the wrong classes.
    public var othersTerm: Double
    /// lse − Σ q·z.
    public var entropy: Double
    /// max q.
    public var confidence: Double
    /// Σ q² − 2·q[y] + 1.
    public var brier: Double
    /// #{k : z[k] > z[y]} + #{k < y : z[k] = z[y]}.
    public var rank: Int

    /// Creates statistics.
    @inlinable
    public init(isFinite: Bool, nll: Double, uniformTerm: Double, othersTerm: Double, entropy: Double, confidence: Double, brier: Double, rank: Int) {
        self.isFinite = isFinite
        self.nll = nll
        self.uniformTerm = uniformTerm
        self.othersTerm = othersTerm
        self.entropy = entropy
        self.confidence = confidence
        self.brier = brier
        self.rank = rank
    }

    @usableFromInline static let nonFinite = RowStatistics(isFinite: false, nll: 0, uniformTerm: 0, othersTerm: 0, entropy: 0, confidence: 0, brier: 0, rank: 0)
}

/// Float lanes of the kernel. Sixteen floats are 4 SSE, 2 AVX or 1 AVX-512 registers.
public typealias Lanes = SIMD16<Float>
/// Integer lanes matching `Lanes`.
public typealias LaneInts = SIMD16<Int32>

/// a·b + c, either as two roundings (any x86-64) or fused (FMA, in the AVX2 build).
public protocol MultiplyAdd {
    /// a·b + c.
    static func multiplyAdd(_ a: Lanes, _ b: Lanes, _ c: Lanes) -> Lanes
}

/// Multiply, then add: the baseline, where a fused operation would be a library call per lane.
public enum SeparateMultiplyAdd: MultiplyAdd {
    @inlinable @inline(__always) public static func multiplyAdd(_ a: Lanes, _ b: Lanes, _ c: Lanes) -> Lanes { a * b + c }
}

// Every generic function of the kernel takes the MultiplyAdd type as a parameter, and each CPU-specific
// module passes a type of its own: a specialisation is then named after that module. Were two modules to
// specialise a function for the same types, the linker would keep one copy, and an AVX2 CPU could end up
// running the AVX-512 copy.

/// Reads logits of one dtype as float lanes; the kernel is specialised for each.
public protocol LogitLoader {
    /// Loads 16 logits starting at element `index`.
    static func lanes(_ row: UnsafeRawPointer, _ index: Int) -> Lanes
    /// Loads the logit at element `index`.
    static func scalar(_ row: UnsafeRawPointer, _ index: Int) -> Float
}

/// float32 logits.
public enum Float32Loader: LogitLoader {
    @inlinable @inline(__always) public static func lanes(_ row: UnsafeRawPointer, _ index: Int) -> Lanes {
        row.loadUnaligned(fromByteOffset: index &* 4, as: Lanes.self)
    }
    @inlinable @inline(__always) public static func scalar(_ row: UnsafeRawPointer, _ index: Int) -> Float {
        row.loadUnaligned(fromByteOffset: index &* 4, as: Float.self)
    }
}

/// 16 halves zero-extended into 32-bit lanes, written out lane by lane so that it stays inline: the generic
/// conversion, and `SIMD32.oddHalf`'s setter once more kernels shared the loaders, were outlined by the optimiser
/// (a call per vector; bfloat16 evaluation 1.27x slower). LLVM folds this form into one widening instruction.
@inlinable @inline(__always)
public func zeroExtend(_ h: SIMD16<UInt16>) -> SIMD16<UInt32> {
    SIMD16<UInt32>(UInt32(h[0]), UInt32(h[1]), UInt32(h[2]), UInt32(h[3]), UInt32(h[4]), UInt32(h[5]), UInt32(h[6]), UInt32(h[7]),
                   UInt32(h[8]), UInt32(h[9]), UInt32(h[10]), UInt32(h[11]), UInt32(h[12]), UInt32(h[13]), UInt32(h[14]), UInt32(h[15]))
}

/// bfloat16 logits, widened by a shift.
public enum BFloat16Loader: LogitLoader {
    @inlinable @inline(__always) public static func lanes(_ row: UnsafeRawPointer, _ index: Int) -> Lanes {
        unsafeBitCast(zeroExtend(row.loadUnaligned(fromByteOffset: index &* 2, as: SIMD16<UInt16>.self)) &<< 16, to: Lanes.self)
    }
    @inlinable @inline(__always) public static func scalar(_ row: UnsafeRawPointer, _ index: Int) -> Float {
        Float(bitPattern: UInt32(row.loadUnaligned(fromByteOffset: index &* 2, as: UInt16.self)) << 16)
    }
}

/// float16 logits.
public enum Float16Loader: LogitLoader {
    /// IEEE half to float with integer ops and one multiply (no F16C needed): shifting the exponent and
    /// mantissa into place and scaling by 2^112 rebiases normals and subnormals alike; Inf/NaN get an
    /// all-ones exponent.
    @inlinable @inline(__always) public static func lanes(_ row: UnsafeRawPointer, _ index: Int) -> Lanes {
        let h = zeroExtend(row.loadUnaligned(fromByteOffset: index &* 2, as: SIMD16<UInt16>.self))
        let magnitude = h & 0x7FFF
        let scaled = unsafeBitCast(magnitude &<< 13, to: Lanes.self) * Lanes(repeating: 0x1p112)
        var bits = unsafeBitCast(scaled, to: SIMD16<UInt32>.self)
        // Signed compare: unsigned lane compares have no x86 instruction and end up lane by lane.
        let infOrNaN = unsafeBitCast(unsafeBitCast(magnitude, to: LaneInts.self) .> LaneInts(repeating: 0x7BFF), to: SIMD16<UInt32>.self)
        bits |= infOrNaN & 0x7F80_0000
        bits |= (h & 0x8000) &<< 16
        return unsafeBitCast(bits, to: Lanes.self)
    }
    @inlinable @inline(__always) public static func scalar(_ row: UnsafeRawPointer, _ index: Int) -> Float {
        Float(Float16(bitPattern: row.loadUnaligned(fromByteOffset: index &* 2, as: UInt16.self)))
    }
}

/// The row kernel: two SIMD passes over each row, then a little scalar float64 arithmetic.
///
/// Pass 1 finds the max, checks finiteness and counts the rank. Pass 2 computes e = exp(z − max)
/// with an explicit range-reduced polynomial and sums e, e² and e·(z − max) and (z − max). Float lanes
/// are flushed into float64 every 1,024 logits so long rows keep ~1e-7 relative accuracy. The max
/// element(s) contribute exactly 1 each and are counted apart, so confident rows (q ≈ 1) keep their
/// small nll, entropy and Brier accurate instead of losing them next to the 1.
public enum RowKernel {
    /// Bytes after a row's last logit that a kernel may read (and ignore): 15 float32 logits.
    /// Buffers handed to `Function`s must keep this much readable memory after their last row.
    public static let readSlack = 64

    /// Signature of one specialised kernel: row pointer, K, label.
    public typealias Function = @Sendable (UnsafeRawPointer, Int, Int) -> RowStatistics

    /// Signature of a kernel over consecutive rows: first row, K, bytes per row, labels, row count,
    /// ignore_index, and where to write each row's statistics (rows labelled ignore_index are skipped and
    /// their slots left as they were). One call per batch keeps the per-row call overhead out of small K.
    public typealias BatchFunction = @Sendable (UnsafeRawPointer, Int, Int, UnsafePointer<Int64>, Int, Int64, UnsafeMutablePointer<RowStatistics>) -> Void

    /// The batch loop around `kernel`, or the lanes kernel for small K.
    @inlinable @inline(__always)
    public static func evaluateRows<L: LogitLoader, F: MultiplyAdd>(
        _ rows: UnsafeRawPointer, _ k: Int, _ rowBytes: Int, _ labels: UnsafePointer<Int64>, _ count: Int, _ ignoreIndex: Int64,
        _ out: UnsafeMutablePointer<RowStatistics>, _ loader: L.Type, _ fma: F.Type
    ) {
        if k <= lanesMaxClasses {
            evaluateRowsInLanes(rows, k, rowBytes, labels, count, ignoreIndex, out, L.self, F.self)
            return
        }
        for r in 0..<count where labels[r] != ignoreIndex {
            out[r] = kernel(rows + r &* rowBytes, k, Int(labels[r]), L.self, F.self)
        }
    }

    /// Baseline batch kernels.
    public static func evaluateRowsFloat32(_ rows: UnsafeRawPointer, _ k: Int, _ rowBytes: Int, _ labels: UnsafePointer<Int64>, _ count: Int, _ ignore: Int64, _ out: UnsafeMutablePointer<RowStatistics>) {
        evaluateRows(rows, k, rowBytes, labels, count, ignore, out, Float32Loader.self, SeparateMultiplyAdd.self)
    }
    /// Baseline batch kernel for float16.
    public static func evaluateRowsFloat16(_ rows: UnsafeRawPointer, _ k: Int, _ rowBytes: Int, _ labels: UnsafePointer<Int64>, _ count: Int, _ ignore: Int64, _ out: UnsafeMutablePointer<RowStatistics>) {
        evaluateRows(rows, k, rowBytes, labels, count, ignore, out, Float16Loader.self, SeparateMultiplyAdd.self)
    }
    /// Baseline batch kernel for bfloat16.
    public static func evaluateRowsBFloat16(_ rows: UnsafeRawPointer, _ k: Int, _ rowBytes: Int, _ labels: UnsafePointer<Int64>, _ count: Int, _ ignore: Int64, _ out: UnsafeMutablePointer<RowStatistics>) {
        evaluateRows(rows, k, rowBytes, labels, count, ignore, out, BFloat16Loader.self, SeparateMultiplyAdd.self)
    }

    /// Evaluates a float32 row with baseline (SSE2) instructions.
    public static func evaluateFloat32(_ row: UnsafeRawPointer, _ k: Int, _ y: Int) -> RowStatistics {
        evaluateRow(row, k, y, Float32Loader.self, SeparateMultiplyAdd.self)
    }
    /// Evaluates a float16 row with baseline instructions.
    public static func evaluateFloat16(_ row: UnsafeRawPointer, _ k: Int, _ y: Int) -> RowStatistics {
        evaluateRow(row, k, y, Float16Loader.self, SeparateMultiplyAdd.self)
    }
    /// Evaluates a bfloat16 row with baseline instructions.
    public static func evaluateBFloat16(_ row: UnsafeRawPointer, _ k: Int, _ y: Int) -> RowStatistics {
        evaluateRow(row, k, y, BFloat16Loader.self, SeparateMultiplyAdd.self)
    }

    /// Lane-wise max as compare-and-select; the standard library's `pointwiseMax` goes lane by lane.
    @inlinable @inline(__always)
    public static func lanesMax(_ a: Lanes, _ b: Lanes) -> Lanes {
        a.replacing(with: b, where: b .> a)
    }

    /// Lanes [index, index + count) with count < 16, the rest set to `fill`. It loads a whole vector,
    /// so it reads up to 15 logits past the count: the caller guarantees those bytes are readable
    /// (`RowKernel.readSlack`). Per-lane inserts would go through memory and stall store forwarding.
    @inlinable @inline(__always)
    public static func partialLanes<L: LogitLoader, F: MultiplyAdd>(_ row: UnsafeRawPointer, _ index: Int, _ count: Int, fill: Float, _: L.Type, _: F.Type) -> Lanes {
        L.lanes(row, index).replacing(with: fill, where: laneIndex .>= LaneInts(repeating: Int32(count)))
    }

    /// Horizontal max by halving; the standard library's `max()` goes lane by lane through memory.
    @inlinable @inline(__always)
    public static func horizontalMax(_ v: Lanes) -> Float {
        let a = v.lowHalf.replacing(with: v.highHalf, where: v.highHalf .> v.lowHalf)
        let b = a.lowHalf.replacing(with: a.highHalf, where: a.highHalf .> a.lowHalf)
        let c = b.lowHalf.replacing(with: b.highHalf, where: b.highHalf .> b.lowHalf)
        return Swift.max(c[0], c[1])
    }

    /// Horizontal sum by halving (a fixed tree, so still deterministic).
    @inlinable @inline(__always)
    public static func horizontalSum(_ v: Lanes) -> Float {
        let a = v.lowHalf + v.highHalf
        let b = a.lowHalf + a.highHalf
        let c = b.lowHalf + b.highHalf
        return c[0] + c[1]
    }

    /// Horizontal integer sum by halving.
    @inlinable @inline(__always)
    public static func horizontalSum(_ v: LaneInts) -> Int {
        let a = v.lowHalf &+ v.highHalf
        let b = a.lowHalf &+ a.highHalf
        let c = b.lowHalf &+ b.highHalf
        return Int(c[0] &+ c[1])
    }

    @inlinable static var laneIndex: LaneInts { LaneInts(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15) }

    /// The kernel for one dtype; modules built for newer CPUs specialise it for themselves.
    @inlinable @inline(__always)
    public static func kernel<L: LogitLoader, F: MultiplyAdd>(_ row: UnsafeRawPointer, _ k: Int, _ y: Int, _ loader: L.Type, _ fma: F.Type) -> RowStatistics {
        let zy = L.scalar(row, y)
        let zyLanes = Lanes(repeating: zy)
        let zero = Lanes(repeating: 0)
        var maxLanes = Lanes(repeating: -.infinity)
        var poison = zero  // z·0 is NaN exactly when z is NaN or ±Inf
        var rankLanes = LaneInts(repeating: 0)  // counts as negative mask sums (true = -1)

        // Pass 1a: classes before the label count when >= z[y] (ties before y outrank it).
        var i = 0
        while i &+ 16 <= y {
            let z = L.lanes(row, i)
            maxLanes = lanesMax(maxLanes, z)
            poison += z * zero
            rankLanes &+= unsafeBitCast(z .>= zyLanes, to: LaneInts.self)
            i &+= 16
        }
        if i < y {
            let n = y &- i
            let z = partialLanes(row, i, n, fill: -.greatestFiniteMagnitude, L.self, F.self)
            maxLanes = lanesMax(maxLanes, z)
            poison += z * zero
            let valid = unsafeBitCast(laneIndex .< LaneInts(repeating: Int32(n)), to: LaneInts.self)
            rankLanes &+= unsafeBitCast(z .>= zyLanes, to: LaneInts.self) & valid
        }
        // Pass 1b: the label and after count when > z[y].
        i = y
        while i &+ 16 <= k {
            let z = L.lanes(row, i)
            maxLanes = lanesMax(maxLanes, z)
            poison += z * zero
            rankLanes &+= unsafeBitCast(z .> zyLanes, to: LaneInts.self)
            i &+= 16
        }
        if i < k {
            let n = k &- i
            let z = partialLanes(row, i, n, fill: -.greatestFiniteMagnitude, L.self, F.self)
            maxLanes = lanesMax(maxLanes, z)
            poison += z * zero
            let valid = unsafeBitCast(laneIndex .< LaneInts(repeating: Int32(n)), to: LaneInts.self)
            rankLanes &+= unsafeBitCast(z .> zyLanes, to: LaneInts.self) & valid
        }
        if horizontalSum(poison).isNaN { return .nonFinite }
        let m = horizontalMax(maxLanes)
        let rank = -horizontalSum(rankLanes)

        // Pass 2.
        let mLanes = Lanes(repeating: m)
        var sumE = 0.0, sumE2 = 0.0, sumEZ = 0.0, sumZ = 0.0
        var maxCount = LaneInts(repeating: 0)
        i = 0
        while i < k {
            let blockEnd = min(k, i &+ 1024)
            var e1 = zero, e2 = zero, ez = zero, zs = zero
            while i &+ 16 <= blockEnd {
                let d = L.lanes(row, i) - mLanes
                accumulate(d, &e1, &e2, &ez, &zs, &maxCount, F.self)
                i &+= 16
            }
            if i < blockEnd {
                let n = blockEnd &- i
                // Padding lanes read as the max minus 88 and are then zeroed out of every sum.
                let padding = laneIndex .>= LaneInts(repeating: Int32(n))
                let d = (partialLanes(row, i, n, fill: m - 88, L.self, F.self) - mLanes).replacing(with: -88, where: padding)
                accumulate(d, &e1, &e2, &ez, &zs, &maxCount, padding: padding, F.self)
                i = blockEnd
            }
            sumE += Double(horizontalSum(e1))
            sumE2 += Double(horizontalSum(e2))
            sumEZ += Double(horizontalSum(ez))
            sumZ += Double(horizontalSum(zs))
        }
        let tiesAtMax = Double(-horizontalSum(maxCount))
        if !sumZ.isFinite {
            // Finite logits more than ~1e37 apart overflow the float lane sums of z − max (to −Inf); sum those
            // differences again in double, which cannot overflow. The other sums stay bounded (e ≤ 1, x ≥ −87).
            sumZ = 0
            for j in 0..<k { sumZ += Double(L.scalar(row, j)) - Double(m) }
        }
        return finish(k: k, zy: zy, m: m, tiesAtMax: tiesAtMax, sumE: sumE, sumE2: sumE2, sumEZ: sumEZ, sumZ: sumZ, rank: rank)
    }

    /// One step of pass 2: exp(d) for d ≤ 0 with d = 0 lanes (the max) left out of the sums and counted.
    @inlinable @inline(__always)
    public static func accumulate<F: MultiplyAdd>(_ d: Lanes, _ e1: inout Lanes, _ e2: inout Lanes, _ ez: inout Lanes, _ zs: inout Lanes, _ maxCount: inout LaneInts, _: F.Type) {
        let atMax = d .== Lanes(repeating: 0)
        let x = lanesMax(d, Lanes(repeating: -87.0))
        let e = exp(x, F.self).replacing(with: 0, where: atMax)
        e1 += e
        e2 = F.multiplyAdd(e, e, e2)
        ez = F.multiplyAdd(e, x, ez)
        zs += d
        maxCount &+= unsafeBitCast(atMax, to: LaneInts.self)
    }

    /// The same for a partial vector whose `padding` lanes are not logits.
    @inlinable @inline(__always)
    public static func accumulate<F: MultiplyAdd>(_ d: Lanes, _ e1: inout Lanes, _ e2: inout Lanes, _ ez: inout Lanes, _ zs: inout Lanes, _ maxCount: inout LaneInts, padding: SIMDMask<LaneInts>, _: F.Type) {
        let atMax = d .== Lanes(repeating: 0)
        let x = lanesMax(d, Lanes(repeating: -87.0))
        let e = exp(x, F.self).replacing(with: 0, where: atMax .| padding)
        e1 += e
        e2 = F.multiplyAdd(e, e, e2)
        ez = F.multiplyAdd(e, x, ez)
        zs += d.replacing(with: 0, where: padding)
        maxCount &+= unsafeBitCast(atMax, to: LaneInts.self)
    }

    /// exp on [-87, 0]: x = n·ln2 + r, |r| ≤ ln2/2, e^r by a degree-6 polynomial (Cephes expf
    /// coefficients, ~1 ulp), 2^n built in the exponent bits. Rounding to n uses the 1.5·2^23 trick,
    /// which needs no SSE4.1.
    @inlinable @inline(__always)
    public static func exp<F: MultiplyAdd>(_ x: Lanes, _: F.Type) -> Lanes {
        let shifter = Lanes(repeating: 12_582_912)  // 1.5 · 2^23
        let t = F.multiplyAdd(x, Lanes(repeating: 1.442_695_040_888_963_4), shifter)
        let n = t - shifter
        var r = F.multiplyAdd(n, Lanes(repeating: -0.693_359_375), x)
        r = F.multiplyAdd(n, Lanes(repeating: 2.121_944_400_546_905_8e-4), r)
        var p = Lanes(repeating: 1.987_569_150_0e-4)
        p = F.multiplyAdd(p, r, Lanes(repeating: 1.398_199_950_7e-3))
        p = F.multiplyAdd(p, r, Lanes(repeating: 8.333_451_907_3e-3))
        p = F.multiplyAdd(p, r, Lanes(repeating: 4.166_579_589_4e-2))
        p = F.multiplyAdd(p, r, Lanes(repeating: 1.666_666_545_9e-1))
        p = F.multiplyAdd(p, r, Lanes(repeating: 5.000_000_120_1e-1))
        p = F.multiplyAdd(p, r * r, r + Lanes(repeating: 1))
        // bits of t hold n + 1.5·2^23 in the low mantissa bits; move n + 127 into the exponent field.
        let nBits = unsafeBitCast(t, to: SIMD16<Int32>.self) &- 0x4B40_0000
        let scale = unsafeBitCast((nBits &+ 127) &<< 23, to: Lanes.self)
        return p * scale
    }

    /// Turns the sums into the contract's numbers in float64.
    @inlinable @inline(__always)
    public static func finish(k: Int, zy: Float, m: Float, tiesAtMax: Double, sumE: Double, sumE2: Double, sumEZ: Double, sumZ: Double, rank: Int) -> RowStatistics {
        let kd = Double(k)
        let s = tiesAtMax + sumE  // Σ exp(z − max)
        // log1p keeps confident rows (S ≈ 1) exact; elsewhere the cheaper log of S loses nothing that matters
        // (S's rounding is < 1e-12 of log S once S − 1 > 1e-4).
        let excess = (tiesAtMax - 1) + sumE
        let logS = excess < 1e-4 ? Glibc.log1p(excess) : Glibc.log(s)
        let dy = Double(zy) - Double(m)
        let labelAtMax = zy == m
        let ey = labelAtMax ? 1.0 : libmExp(dy)
        let nll = logS - dy
        let uniform = logS - sumZ / kd
        let others = (kd * uniform - nll) / (kd - 1)
        let entropy = logS - sumEZ / s
        let confidence = 1 / s
        // Brier = (1 − q_y)² + Σ_{k≠y} q_k², each part formed without cancelling against the max's 1.
        let oneMinusQy = labelAtMax ? ((tiesAtMax - 1) + sumE) / s : (s - ey) / s
        let othersSquared = labelAtMax ? ((tiesAtMax - 1) + sumE2) / (s * s) : (tiesAtMax + sumE2 - ey * ey) / (s * s)
        let brier = oneMinusQy * oneMinusQy + othersSquared
        return RowStatistics(isFinite: true, nll: nll, uniformTerm: uniform, othersTerm: others, entropy: entropy,
                             confidence: confidence, brier: brier, rank: rank)
    }
}

@inlinable @inline(__always) func libmExp(_ x: Double) -> Double { Glibc.exp(x) }
