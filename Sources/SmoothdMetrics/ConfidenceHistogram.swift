import SmoothdJSON

/// A fine, mergeable histogram of max-probabilities (confidences) at T = 1, from which the adaptive
/// (equal-mass) ECE is computed without sorting the rows.
///
/// Bins, in confidence order: 256 linear bins of width 1/512 for confidence < 0.5, then for confidence ≥ 0.5
/// 16 bins per octave of d = 1 − confidence (d in [2^-(j+1), 2^-j), octave j = 0…55), then one bin for d < 2^-56
/// (confidence 1 included). For confidence ≥ 0.5, 1 − confidence is exact in double (Sterbenz), so the bins are a
/// monotone function of the very double the exact computation sorts by: rows in a lower bin always sort before rows
/// in a higher one, and only rows sharing a fine bin can be grouped differently. The bin index comes from the bits of
/// d (exponent and top four mantissa bits), with no logarithm.
///
/// Storage is sparse (non-empty bins only) until more than `sparseLimit` bins are in use, then dense: a chunk's
/// accumulator (32 rows of a K = 32,000 bfloat16 shard) touches a few bins and neither fills nor merges all 1,153,
/// and a state read from JSON stays as small as it was written.
public struct ConfidenceHistogram: Sendable, Equatable {
    /// Linear bins below confidence 0.5.
    public static let linearBins = 256
    /// Bins per octave of 1 − confidence.
    public static let octaveBins = 16
    /// Octaves of 1 − confidence resolved; smaller 1 − confidence shares the last bin.
    public static let octaves = 56
    /// Number of bins.
    public static let binCount = linearBins + octaveBins * octaves + 1

    /// One bin's rows.
    public struct Bin: Sendable, Equatable {
        /// Rows.
        public var count: UInt64 = 0
        /// Rows of rank 0.
        public var correct: UInt64 = 0
        /// Σ confidence.
        public var confidence = ExactSum()

        /// An empty bin.
        public init() {}

        mutating func add(_ other: Bin, negated: Bool = false) {
            count.add(other.count, negated: negated)
            correct.add(other.correct, negated: negated)
            confidence.add(other.confidence, negated: negated)
        }

        /// No rows (what a subtraction leaves of a bin only the removed state had).
        var isEmpty: Bool { count == 0 && correct == 0 && confidence.isZero }
    }

    /// Every bin (`binCount`) once more than `sparseLimit` are in use; empty before.
    var dense: [Bin] = []
    /// Non-empty bins in index order, when `dense` is empty.
    var sparse: [(index: Int, bin: Bin)] = []
    /// Bins kept sparse at most (adding or merging beyond it goes dense): a sorted insert into 64 entries costs
    /// less than filling and walking 1,153 bins, and merging dense is linear in the other side's bins.
    static let sparseLimit = 64

    /// An empty histogram.
    public init() {}

    /// The bin of `confidence` (in [0, 1]).
    @inlinable @inline(__always)
    public static func index(_ confidence: Double) -> Int {
        if confidence < 0.5 { return Int(confidence * 512) }
        let d = 1 - confidence  // exact for confidence in [0.5, 1]
        let bits = d.bitPattern
        // d in [2^-(j+1), 2^-j): biased exponent 1022 − j. d = 0 (exponent 0) or a negative d gives j out of range.
        let octave = 1022 &- Int(truncatingIfNeeded: bits >> 52)
        guard octave >= 0 && octave < octaves else { return binCount - 1 }
        // Larger mantissa = larger d = lower confidence: reversed so indexes grow with confidence.
        let sub = Int(truncatingIfNeeded: (bits >> 48) & 15)
        return linearBins &+ octave &* octaveBins &+ (octaveBins - 1 - sub)
    }

    /// Counts a row of `confidence`, correct or not.
    @inline(__always)
    public mutating func add(confidence: Double, correct: Bool) {
        let i = ConfidenceHistogram.index(confidence)
        if dense.isEmpty {
            if addSparse(i, confidence: confidence, correct: correct) { return }
            makeDense()
        }
        dense.withUnsafeMutableBufferPointer { bins in
            bins[i].count &+= 1
            if correct { bins[i].correct &+= 1 }
            bins[i].confidence.add(confidence)
        }
    }

    /// Counts the row in bin `i` of `sparse`; false when that needs a new entry beyond `sparseLimit`.
    private mutating func addSparse(_ i: Int, confidence: Double, correct: Bool) -> Bool {
        var low = 0, high = sparse.count
        while low < high {
            let middle = (low + high) / 2
            if sparse[middle].index < i { low = middle + 1 } else { high = middle }
        }
        if low == sparse.count || sparse[low].index != i {
            guard sparse.count < ConfidenceHistogram.sparseLimit else { return false }
            sparse.insert((i, Bin()), at: low)
        }
        sparse[low].bin.count &+= 1
        if correct { sparse[low].bin.correct &+= 1 }
        sparse[low].bin.confidence.add(confidence)
        return true
    }

    /// Adds every row of `other`.
    public mutating func merge(_ other: ConfidenceHistogram) { merge(other, negated: false) }

    /// Takes away the rows of `other`, merged before: bins left empty are dropped, so the result equals the merge
    /// of the other states (exact integer work).
    public mutating func subtract(_ other: ConfidenceHistogram) { merge(other, negated: true) }

    private mutating func merge(_ other: ConfidenceHistogram, negated: Bool) {
        if other.dense.isEmpty && other.sparse.isEmpty { return }
        if dense.isEmpty && sparse.isEmpty && !negated {
            self = other
            return
        }
        if dense.isEmpty && other.dense.isEmpty && sparse.count + other.sparse.count <= ConfidenceHistogram.sparseLimit {
            // Both sparse and small: merge the sorted lists.
            var merged: [(index: Int, bin: Bin)] = []
            merged.reserveCapacity(max(sparse.count, other.sparse.count))
            var a = 0, b = 0
            while a < sparse.count || b < other.sparse.count {
                if b == other.sparse.count || (a < sparse.count && sparse[a].index < other.sparse[b].index) {
                    merged.append(sparse[a]); a += 1
                } else {
                    let same = a < sparse.count && other.sparse[b].index == sparse[a].index
                    var bin = same ? sparse[a].bin : Bin()
                    bin.add(other.sparse[b].bin, negated: negated)
                    if !bin.isEmpty { merged.append((other.sparse[b].index, bin)) }
                    if same { a += 1 }
                    b += 1
                }
            }
            sparse = merged
            return
        }
        if dense.isEmpty { makeDense() }
        if other.dense.isEmpty {
            for (index, bin) in other.sparse { dense[index].add(bin, negated: negated) }
        } else {
            // Both dense: skip empty bins without building a list.
            for index in other.dense.indices where other.dense[index].count > 0 { dense[index].add(other.dense[index], negated: negated) }
        }
    }

    /// The non-empty bins in confidence order.
    public var nonEmptyBins: [(index: Int, bin: Bin)] {
        if dense.isEmpty { return sparse }
        return dense.indices.compactMap { dense[$0].count > 0 ? ($0, dense[$0]) : nil }
    }

    /// Rows counted.
    public var count: UInt64 { nonEmptyBins.reduce(0) { $0 &+ $1.bin.count } }

    /// Keeps only the non-empty bins (the form a state read back has). A finished shard's histogram that went dense
    /// (more than `sparseLimit` bins) is about 64 KB whatever its rows; every accumulator kept after its rows are in
    /// (a shard's summary in `eval`, each shard `serve` has evaluated) is compacted, or 2,000 small shards would hold 128 MB.
    public mutating func compact() {
        guard !dense.isEmpty else { return }
        sparse = nonEmptyBins
        dense = []
    }

    private mutating func makeDense() {
        var bins = Array(repeating: Bin(), count: ConfidenceHistogram.binCount)
        for (index, bin) in sparse { bins[index] = bin }
        dense = bins
        sparse = []
    }

    /// Equality of the counted rows per bin (dense and sparse forms compare equal).
    public static func == (lhs: ConfidenceHistogram, rhs: ConfidenceHistogram) -> Bool {
        let a = lhs.nonEmptyBins, b = rhs.nonEmptyBins
        return a.count == b.count && zip(a, b).allSatisfy { $0.index == $1.index && $0.bin == $1.bin }
    }
}

extension ConfidenceHistogram {
    /// Adaptive ECE over `bins` equal-mass groups (numpy.array_split sizes: the first n mod B groups one row
    /// larger): the bins are walked in confidence order and a fine bin that straddles a group boundary is split in
    /// proportion to the rows each side takes. nil when the histogram is empty.
    public func adaptiveECE(bins groups: Int) -> Double? { adaptive(groups).ece }

    /// An upper bound on |adaptiveECE − the exact sorted value|: only rows of split bins can be grouped differently,
    /// and a group taking a of a split bin's m rows is off by at most R·a(m − a)/m in Σ(correct − confidence), where
    /// R = 1 + 1/64 bounds the range of correct − confidence inside one bin (its confidences are at most 1/64 apart).
    /// Divided by n like the ECE. nil when the histogram is empty.
    public func adaptiveECEBound(bins groups: Int) -> Double? { adaptive(groups).bound }

    private func adaptive(_ groups: Int) -> (ece: Double?, bound: Double?) {
        let bins = nonEmptyBins
        let n = bins.reduce(UInt64(0)) { $0 &+ $1.bin.count }
        guard n > 0, groups >= 1 else { return (nil, nil) }
        let base = n / UInt64(groups), larger = n % UInt64(groups)
        var group = 0
        var need = base + (larger > 0 ? 1 : 0)
        var gap = 0.0, bound = 0.0
        var correct = 0.0, confidence = 0.0
        func closeGroup() {
            gap += abs(correct - confidence)
            correct = 0
            confidence = 0
            group += 1
            need = base + (UInt64(group) < larger ? 1 : 0)
        }
        while need == 0 && group < groups { closeGroup() }  // n < groups: the trailing groups are empty
        for (_, bin) in bins {
            var left = bin.count
            let m = Double(bin.count), binCorrect = Double(bin.correct), binConfidence = bin.confidence.value
            while left > 0 {
                let take = min(left, need)
                if take == bin.count {
                    correct += binCorrect
                    confidence += binConfidence
                } else {
                    let fraction = Double(take) / m
                    correct += binCorrect * fraction
                    confidence += binConfidence * fraction
                    bound += (1 + 1.0 / 64) * Double(take) * (m - Double(take)) / m
                }
                left -= take
                need -= take
                if need == 0 {
                    closeGroup()
                    while need == 0 && group < groups { closeGroup() }
                }
            }
        }
        let total = Double(n)
        return (gap / total, bound / total)
    }
}

extension ConfidenceHistogram {
    /// `{"linear_bins", "octave_bins", "octaves", "bins": [[index, count, correct, Σconfidence], …]}`, only non-empty
    /// bins, Σconfidence as the exact sum's `fixed` string when it has no wide part, else its whole state
    /// (docs/STATE-FORMAT.md).
    public var jsonState: JSONValue {
        .object([
            ("linear_bins", .int(Int64(ConfidenceHistogram.linearBins))),
            ("octave_bins", .int(Int64(ConfidenceHistogram.octaveBins))),
            ("octaves", .int(Int64(ConfidenceHistogram.octaves))),
            ("bins", .array(nonEmptyBins.map { index, bin in
                let sum: JSONValue = bin.confidence.wide == nil ? .string(String(bin.confidence.fixed)) : bin.confidence.jsonState
                return .array([.int(Int64(index)), .int(Int64(bin.count)), .int(Int64(bin.correct)), sum])
            })),
        ])
    }

    /// Reads `jsonState`; errors name the member (`confidence_histogram.bins[3]`, …).
    public init(jsonState state: JSONValue) throws(MetricStateError) {
        let key = "confidence_histogram"
        guard state.objectMembers != nil else { throw MetricStateError("\(key): not an object") }
        let resolution = [("linear_bins", ConfidenceHistogram.linearBins), ("octave_bins", ConfidenceHistogram.octaveBins),
                          ("octaves", ConfidenceHistogram.octaves)]
        for (member, expected) in resolution where state[member]?.intValue != Int64(expected) {
            throw MetricStateError("\(key).\(member): \(state[member]?.serialized() ?? "missing"); this smoothd reads only the "
                + "resolution linear_bins 256, octave_bins 16, octaves 56 (states of another resolution cannot be merged)")
        }
        guard let list = state["bins"]?.arrayValue else { throw MetricStateError("\(key).bins: missing or not an array") }
        var previous = -1
        for (position, item) in list.enumerated() {
            let name = "\(key).bins[\(position)]"
            guard let parts = item.arrayValue, parts.count == 4, let index = parts[0].intValue, let count = parts[1].intValue,
                  let correct = parts[2].intValue else {
                throw MetricStateError("\(name): not [index, count, correct, sum] with integer index and counts")
            }
            guard index > previous, index < ConfidenceHistogram.binCount else {
                throw MetricStateError("\(name): index \(index) is not increasing or not below \(ConfidenceHistogram.binCount)")
            }
            guard count > 0, correct >= 0, correct <= count else {
                throw MetricStateError("\(name): count \(count) must be > 0 and correct \(correct) in [0, count]")
            }
            var bin = Bin()
            bin.count = UInt64(count)
            bin.correct = UInt64(correct)
            if let text = parts[3].stringValue {
                guard let fixed = Int128(text) else { throw MetricStateError("\(name): sum '\(text)' is not an integer") }
                bin.confidence.fixed = fixed
            } else {
                do { bin.confidence = try ExactSum(jsonState: parts[3]) } catch { throw MetricStateError("\(name): \(error.description)") }
            }
            sparse.append((Int(index), bin))
            previous = Int(index)
        }
    }
}
