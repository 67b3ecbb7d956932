/// The kernel for small K: sixteen rows side by side, one row per lane.
///
/// For K ≤ `lanesMaxClasses` a row fills at most four vectors, so the row-at-a-time kernel spends most of
/// its time on horizontal reductions (max, rank, four sums), masking its partial vector and its scalar `finish`. Here a group of
/// 16 rows is transposed into a small scratch (class j of every row in one vector), and both passes run
/// lane-wise over the classes: no horizontal reduction, no masks, and every lane busy. Each row's numbers
/// depend on that row alone (a lane never sees another), so they do not change with which rows share a
/// group, the batch or chunk size, or the thread count. The float sums of pass 2 run over the classes in
/// order instead of the row kernel's lane tree, so they can differ from it in the last float bits, and `finish`
/// runs lane-wise (`finishLanes`, fdlibm's log and exp instead of glibc's: within an ulp of them); both stay within
/// the kernel's ~1e-7 relative accuracy.
extension RowKernel {
    /// Rows of at most this many classes go through the lanes kernel (its scratch is 16 × K floats). The transpose
    /// costs a scalar load and store per logit; with `finish` lane-wise too the lanes kernel stays ahead of the
    /// row kernel up to K = 64 (`smoothd-bench small-k`, AVX-512), the largest K the issue asks about.
    public static let lanesMaxClasses = 64

    /// Evaluates `count` consecutive rows of K ≤ `lanesMaxClasses` classes, 16 at a time; rows labelled
    /// `ignoreIndex` are skipped and their `out` slots left as they were. Reads no byte past the last row.
    @inlinable @inline(__always)
    public static func evaluateRowsInLanes<L: LogitLoader, F: MultiplyAdd>(
        _ rows: UnsafeRawPointer, _ k: Int, _ rowBytes: Int, _ labels: UnsafePointer<Int64>, _ count: Int, _ ignoreIndex: Int64,
        _ out: UnsafeMutablePointer<RowStatistics>, _ loader: L.Type, _ fma: F.Type
    ) {
        // K columns, then the rows' z[y] and labels.
        withUnsafeTemporaryAllocation(of: Lanes.self, capacity: k &+ 2) { scratch in
            let columns = scratch.baseAddress!
            var start = 0
            while start < count {
                let n = min(16, count &- start)
                laneGroup(rows + start &* rowBytes, k, rowBytes, labels + start, n, ignoreIndex, out + start, columns, L.self, F.self)
                start &+= n
            }
        }
    }

    /// One group of `n` ≤ 16 rows; lanes past `n` hold zeros and are not written out.
    @inlinable @inline(__always)
    public static func laneGroup<L: LogitLoader, F: MultiplyAdd>(
        _ rows: UnsafeRawPointer, _ k: Int, _ rowBytes: Int, _ labels: UnsafePointer<Int64>, _ n: Int, _ ignoreIndex: Int64,
        _ out: UnsafeMutablePointer<RowStatistics>, _ columns: UnsafeMutablePointer<Lanes>, _: L.Type, _: F.Type
    ) {
        // Transpose: columns[j][l] = logit j of row l. Ignored rows take label 0 (their lane is dropped).
        // Lanes are written as scalars and each vector loaded once: inserting a lane into a vector
        // variable goes through memory and stalls on store forwarding.
        let scalars = UnsafeMutableRawPointer(columns).assumingMemoryBound(to: Float.self)
        let zyScalars = scalars + k &* 16
        let yScalars = UnsafeMutableRawPointer(columns + (k &+ 1)).assumingMemoryBound(to: Int32.self)
        for l in 0..<16 {
            if l < n {
                let row = rows + l &* rowBytes
                for j in 0..<k { scalars[j &* 16 &+ l] = L.scalar(row, j) }
                let y = labels[l] == ignoreIndex ? 0 : Int(labels[l])
                yScalars[l] = Int32(truncatingIfNeeded: y)
                zyScalars[l] = scalars[y &* 16 &+ l]
            } else {
                for j in 0..<k { scalars[j &* 16 &+ l] = 0 }
                yScalars[l] = 0
                zyScalars[l] = 0
            }
        }
        let zyLanes = columns[k]
        let yLanes = UnsafeMutableRawPointer(columns + (k &+ 1)).load(as: LaneInts.self)

        // Pass 1: max, finiteness, rank (#{j : z_j > z_y} + #{j < y : z_j = z_y}).
        let zero = Lanes(repeating: 0)
        var maxLanes = Lanes(repeating: -.infinity)
        var poison = zero  // z·0 is NaN exactly when z is NaN or ±Inf
        var rankLanes = LaneInts(repeating: 0)  // negative mask sums (true = -1)
        for j in 0..<k {
            let z = columns[j]
            maxLanes = lanesMax(maxLanes, z)
            poison += z * zero
            let before = LaneInts(repeating: Int32(truncatingIfNeeded: j)) .< yLanes
            let outranks = (z .> zyLanes) .| (before .& (z .== zyLanes))
            rankLanes &+= unsafeBitCast(outranks, to: LaneInts.self)
        }

        // Pass 2, lane-wise over the classes (see `accumulate`).
        var e1 = zero, e2 = zero, ez = zero, zs = zero
        var maxCount = LaneInts(repeating: 0)
        for j in 0..<k {
            accumulate(columns[j] - maxLanes, &e1, &e2, &ez, &zs, &maxCount, F.self)
        }

        // finish, lane-wise in float64 (`finishLanes`).
        var sumZ = widen(zs)
        if any((zs - zs) .!= zero) {
            // As in `kernel`: float sums of z − max can overflow for finite logits ~1e37 apart.
            for l in 0..<n where !zs[l].isFinite {
                let row = rows + l &* rowBytes
                var sum = 0.0
                for j in 0..<k { sum += Double(L.scalar(row, j)) - Double(maxLanes[l]) }
                sumZ[l] = sum
            }
        }
        let r = finishLanes(k: k, zy: zyLanes, m: maxLanes, tiesAtMax: -widen(maxCount), sumE: widen(e1), sumE2: widen(e2),
                            sumEZ: widen(ez), sumZ: sumZ, F.self)
        for l in 0..<n where labels[l] != ignoreIndex {
            out[l] = poison[l].isNaN ? .nonFinite
                : RowStatistics(isFinite: true, nll: r.nll[l], uniformTerm: r.uniform[l], othersTerm: r.others[l], entropy: r.entropy[l],
                                confidence: r.confidence[l], brier: r.brier[l], rank: Int(-rankLanes[l]))
        }
    }

    /// One row through the kernel its batch would use (the lanes kernel for small K), so a row evaluated
    /// alone gives the same numbers as in a shard.
    @inlinable @inline(__always)
    public static func evaluateRow<L: LogitLoader, F: MultiplyAdd>(_ row: UnsafeRawPointer, _ k: Int, _ y: Int, _: L.Type, _: F.Type) -> RowStatistics {
        guard k <= lanesMaxClasses else { return kernel(row, k, y, L.self, F.self) }
        var label = Int64(y)
        var result = RowStatistics.nonFinite
        evaluateRowsInLanes(row, k, 0, &label, 1, Int64(y) &+ 1, &result, L.self, F.self)  // one row: no stride, nothing ignored
        return result
    }
}
