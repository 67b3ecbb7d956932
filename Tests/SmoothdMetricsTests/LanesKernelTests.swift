#if canImport(Glibc)
import Glibc
#endif
import LSHDFormat
import SmoothdJSON
import SmoothdMetrics
import SmoothdTesting
import Testing

/// Random logits for `rows` rows of K classes, with ties, a non-finite row and ignored labels mixed in.
func smallKRows(_ k: Int, rows: Int, _ rng: inout SplitMix) -> (logits: [Float], labels: [Int64]) {
    var logits: [Float] = (0..<(rows * k)).map { _ in Float.random(in: -6...6, using: &rng) }
    var labels: [Int64] = (0..<rows).map { _ in Int64.random(in: 0..<Int64(k), using: &rng) }
    for r in stride(from: 0, to: rows, by: 7) {
        logits[r * k + Int(labels[r])] = logits[r * k + (Int(labels[r]) + 1) % k]  // a tie with the label
    }
    for r in stride(from: 3, to: rows, by: 11) { labels[r] = -100 }
    for r in stride(from: 5, to: rows, by: 29) { logits[r * k + r % k] = [Float.nan, .infinity, -.infinity][r % 3] }
    for r in stride(from: 9, to: rows, by: 13) { for j in 0..<k { logits[r * k + j] = 1.5 } }  // every class tied
    return (logits, labels)
}

/// The lanes kernel (K ≤ `lanesMaxClasses`) agrees with the row-at-a-time kernel, which the fixture tests hold to the NumPy
/// reference at large K, on every K it serves and every dtype: rank and finiteness exactly, the rest to 1e-6.
@Test func lanesKernelAgreesWithTheRowKernel() {
    var rng = SplitMix(state: 21)
    for k in 2...RowKernel.lanesMaxClasses {
        for dtype in LogitDType.allCases {
            let rows = 37  // two full groups of 16 and a partial one
            let (logits, labels) = smallKRows(k, rows: rows, &rng)
            let bytes = LogitEncoding.encode(logits, as: dtype) + [UInt8](repeating: 0, count: RowKernel.readSlack)
            let rowBytes = k * dtype.byteWidth
            var lanes = [RowStatistics](repeating: .init(isFinite: false, nll: -1, uniformTerm: 0, othersTerm: 0, entropy: 0, confidence: 0, brier: 0, rank: -1), count: rows)
            bytes.withUnsafeBytes { raw in
                labels.withUnsafeBufferPointer { l in
                    lanes.withUnsafeMutableBufferPointer { out in
                        lanesKernel(dtype)(raw.baseAddress!, k, rowBytes, l.baseAddress!, rows, -100, out.baseAddress!)
                    }
                }
            }
            for r in 0..<rows {
                if labels[r] == -100 {
                    #expect(lanes[r].rank == -1 && lanes[r].nll == -1, "K=\(k) \(dtype) row \(r): an ignored row's slot was written")
                    continue
                }
                let expected = bytes.withUnsafeBytes { raw in
                    rowKernel(dtype)(raw.baseAddress! + r * rowBytes, k, Int(labels[r]))
                }
                let got = lanes[r]
                #expect(got.isFinite == expected.isFinite, "K=\(k) \(dtype) row \(r)")
                guard expected.isFinite else { continue }
                #expect(got.rank == expected.rank, "K=\(k) \(dtype) row \(r)")
                let pairs = [(got.nll, expected.nll), (got.uniformTerm, expected.uniformTerm), (got.othersTerm, expected.othersTerm),
                             (got.entropy, expected.entropy), (got.confidence, expected.confidence), (got.brier, expected.brier)]
                for (x, y) in pairs {
                    #expect(abs(x - y) <= 1e-6 * max(1, abs(y)), "K=\(k) \(dtype) row \(r): \(x) vs \(y)")
                }
            }
        }
    }
}

/// A row's numbers do not depend on which rows share its group of 16, nor on the batch it came in: each row
/// evaluated alone (through the dispatching row function) is bit-identical to the same row inside a batch.
@Test func lanesKernelRowsDoNotDependOnTheirNeighbours() {
    var rng = SplitMix(state: 5)
    for k in [2, 3, 10, 16, 17, 64] {
        for variant in KernelVariant.supported {
            let rows = 50
            let (logits, labels) = smallKRows(k, rows: rows, &rng)
            let bytes = LogitEncoding.encode(logits, as: .float32) + [UInt8](repeating: 0, count: RowKernel.readSlack)
            var batch = [RowStatistics](repeating: RowStatistics(isFinite: false, nll: 0, uniformTerm: 0, othersTerm: 0, entropy: 0, confidence: 0, brier: 0, rank: 0), count: rows)
            let batchKernel = variant.batchFunction(for: .float32)
            bytes.withUnsafeBytes { raw in
                labels.withUnsafeBufferPointer { l in
                    batch.withUnsafeMutableBufferPointer { out in
                        // Uneven pieces, so rows land in different lanes than in one call.
                        var start = 0
                        for size in [5, 16, 1, 21, 7] {
                            batchKernel(raw.baseAddress! + start * k * 4, k, k * 4, l.baseAddress! + start, size, -100, out.baseAddress! + start)
                            start += size
                        }
                    }
                }
            }
            for r in 0..<rows where labels[r] != -100 {
                let alone = bytes.withUnsafeBytes { variant.function(for: .float32)($0.baseAddress! + r * k * 4, k, Int(labels[r])) }
                #expect(alone == batch[r], "K=\(k) \(variant) row \(r)")
            }
        }
    }
}

/// Counting a batch builds exactly the state that counting its rows one by one does, with ignored and
/// non-finite rows, values for the sums' wide parts (≥ 2^40), tiny and negative ones, in any batch sizes.
@Test func batchAccumulationEqualsRowByRow() throws {
    var rng = SplitMix(state: 77)
    let count = 1000
    var statistics: [RowStatistics] = []
    var labels: [Int64] = []
    for r in 0..<count {
        func value() -> Double {
            switch Int.random(in: 0..<16, using: &rng) {
            case 0: return Double.random(in: 0..<1, using: &rng) * 0x1p-70  // below the fixed part's unit in part
            case 1: return Double.random(in: 1..<2, using: &rng) * 0x1p41  // the wide part
            case 2: return -Double.random(in: 0..<8, using: &rng)
            // Edges of the fixed-point form: just below 2^40, powers of two, subnormals, −0.
            case 10: return (0x1p40).nextDown * (Bool.random(using: &rng) ? 1 : -1)
            case 11: return Double(sign: Bool.random(using: &rng) ? .minus : .plus, exponent: Int.random(in: -90...39, using: &rng), significand: 1)
            case 12: return Double.leastNonzeroMagnitude * Double(Int.random(in: 0..<1000, using: &rng))
            case 13: return -0.0
            // Large but below the wide part's bound (2^40), and 2^16.
            case 14: return Double.random(in: 0x1p16..<0x1p40, using: &rng) * (Bool.random(using: &rng) ? 1 : -1)
            case 15: return Bool.random(using: &rng) ? 0x1p16 : (0x1p16).nextDown
            default: return Double.random(in: 0..<12, using: &rng)
            }
        }
        statistics.append(RowStatistics(isFinite: r % 17 != 4, nll: value(), uniformTerm: value(), othersTerm: value(), entropy: value(),
                                        confidence: Double.random(in: 0...1, using: &rng), brier: value(), rank: Int.random(in: 0..<8, using: &rng)))
        labels.append(r % 9 == 2 ? -1 : 0)
    }
    var rowByRow = MetricAccumulator(topK: 3, eceBins: 10)
    for r in 0..<count {
        if labels[r] == -1 { rowByRow.addIgnoredRow() } else { rowByRow.add(statistics[r]) }
    }
    var batched = MetricAccumulator(topK: 3, eceBins: 10)
    statistics.withUnsafeBufferPointer { s in
        labels.withUnsafeBufferPointer { l in
            var start = 0
            for size in [1, 63, 64, 65, 256, 3, 548] {
                batched.add(s.baseAddress! + start, labels: l.baseAddress! + start, count: size, ignoreIndex: -1)
                start += size
            }
            #expect(start == count)
        }
    }
    #expect(batched == rowByRow)
    #expect(batched.inconsistencies.isEmpty)
    #expect(batched.nllSum.value == rowByRow.nllSum.value && batched.brierSum.value == rowByRow.brierSum.value)
    #expect(batched.nonfiniteRows > 0 && batched.ignoredRows > 0 && batched.correct > 0 && batched.topKHits > batched.correct)
    let options = MetricOptions(topK: 3, eceBins: 10)
    #expect(MetricValues(batched, options: options) == MetricValues(rowByRow, options: options))
}

/// The lane-wise log and exp of `finishLanes` agree with glibc's `log`, `log1p` and `exp` (the row kernel's) to two
/// ulps over the ranges the kernel feeds them, lane by lane.
@Test func laneLogAndExpAgreeWithLibm() {
    var rng = SplitMix(state: 3)
    func ulps(_ x: Double, _ y: Double) -> Double { abs(x - y) / y.ulp }
    for _ in 0..<500 {
        // s = 1 + excess for excess from 1e-300 to 63: confident rows (log1p) up to 64 tied classes.
        let excess = RowKernel.WideLanes((0..<16).map { _ in Glibc.exp(Double.random(in: -690...4.15, using: &rng)) })
        let s = RowKernel.WideLanes(repeating: 1) + excess
        let logs = RowKernel.logLanes(s, excess: excess, SeparateMultiplyAdd.self)
        let x = RowKernel.WideLanes((0..<16).map { _ in -Glibc.exp(Double.random(in: -40...6.55, using: &rng)) })
        let exps = RowKernel.expLanes(x, SeparateMultiplyAdd.self)
        for l in 0..<16 {
            let expected = excess[l] < 0x1.6A09E667F3BCDp0 - 1 ? Glibc.log1p(excess[l]) : Glibc.log(s[l])
            #expect(ulps(logs[l], expected) <= 2, "log of 1 + \(excess[l]): \(logs[l]) vs \(expected)")
            #expect(ulps(exps[l], Glibc.exp(x[l])) <= 2, "exp(\(x[l])): \(exps[l]) vs \(Glibc.exp(x[l]))")
        }
    }
    let edges = RowKernel.expLanes(RowKernel.WideLanes(0, -1e-300, -0x1p-30, -0.5 * 0.6931471805599453, -700, -708, -709, -1e30,
                                                       -1, -2, -10, -87, -88, -100, -300, -500), SeparateMultiplyAdd.self)
    #expect(edges[0] == 1 && edges[1] == 1 && edges[6] > 0 && edges[7] > 0 && edges[7] < 1e-307, "\(edges)")
    for l in [2, 3, 4, 5, 8, 9, 10, 11, 12, 13, 14, 15] {
        let x = [0, -1e-300, -0x1p-30, -0.5 * 0.6931471805599453, -700, -708, -709, -1e30, -1, -2, -10, -87, -88, -100, -300, -500][l]
        #expect(ulps(edges[l], Glibc.exp(x)) <= 2, "exp(\(x)): \(edges[l])")
    }
}

/// The baseline lanes kernel for `dtype`.
func lanesKernel(_ dtype: LogitDType) -> RowKernel.BatchFunction {
    switch dtype {
    case .float32: return { RowKernel.evaluateRowsInLanes($0, $1, $2, $3, $4, $5, $6, Float32Loader.self, SeparateMultiplyAdd.self) }
    case .float16: return { RowKernel.evaluateRowsInLanes($0, $1, $2, $3, $4, $5, $6, Float16Loader.self, SeparateMultiplyAdd.self) }
    case .bfloat16: return { RowKernel.evaluateRowsInLanes($0, $1, $2, $3, $4, $5, $6, BFloat16Loader.self, SeparateMultiplyAdd.self) }
    }
}

/// The row-at-a-time baseline kernel for `dtype`, whatever K is.
func rowKernel(_ dtype: LogitDType) -> (UnsafeRawPointer, Int, Int) -> RowStatistics {
    switch dtype {
    case .float32: return { RowKernel.kernel($0, $1, $2, Float32Loader.self, SeparateMultiplyAdd.self) }
    case .float16: return { RowKernel.kernel($0, $1, $2, Float16Loader.self, SeparateMultiplyAdd.self) }
    case .bfloat16: return { RowKernel.kernel($0, $1, $2, BFloat16Loader.self, SeparateMultiplyAdd.self) }
    }
}
