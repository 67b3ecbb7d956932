import SmoothdJSON

/// Mergeable metric state (torchmetrics-style: update, merge, compute). Counts are integers and
/// sums are `ExactSum`s, so merging is exact and independent of order: a merge of shard states equals
/// the state of all their rows together.
public struct MetricAccumulator: Sendable, Equatable {
    /// k of top-k accuracy this state counts.
    public let topK: Int
    /// Number of ECE bins.
    public let eceBins: Int

    /// Rows seen, ignored and non-finite ones included.
    public var rows: UInt64 = 0
    /// Rows that enter the metrics.
    public var countedRows: UInt64 = 0
    /// Rows whose label is ignore_index.
    public var ignoredRows: UInt64 = 0
    /// Non-ignored rows with a NaN or ±Inf logit.
    public var nonfiniteRows: UInt64 = 0
    /// Counted rows with rank 0.
    public var correct: UInt64 = 0
    /// Counted rows with rank < k.
    public var topKHits: UInt64 = 0
    /// Σ nll.
    public var nllSum = ExactSum()
    /// Σ U (uniform smoothing term).
    public var uniformSum = ExactSum()
    /// Σ W (others smoothing term).
    public var othersSum = ExactSum()
    /// Σ entropy.
    public var entropySum = ExactSum()
    /// Σ confidence.
    public var confidenceSum = ExactSum()
    /// Σ Brier.
    public var brierSum = ExactSum()
    /// Rows per confidence bin.
    public var binCounts: [UInt64]
    /// Correct rows per confidence bin.
    public var binCorrect: [UInt64]
    /// Σ confidence per bin.
    public var binConfidence: [ExactSum]
    /// The Poisson-bootstrap replicate sums, when `--bootstrap R` asked for them (`BootstrapState`).
    public var bootstrap: BootstrapState?
    /// The temperatures swept (MetricOptions.allTemperatures), empty when none.
    public let temperatures: [Double]
    /// The sums of each temperature, in `temperatures` order.
    public var temperatureSums: [TemperatureSums]
    /// The fine confidence histogram for adaptive ECE; nil when part of the state was read from a version-1 state.
    public var confidenceHistogram: ConfidenceHistogram? = ConfidenceHistogram()

    /// An empty state.
    public init(topK: Int = 5, eceBins: Int = 15, temperatures: [Double] = []) {
        precondition(topK >= 1 && eceBins >= 1)
        self.topK = topK
        self.eceBins = eceBins
        self.temperatures = temperatures
        temperatureSums = temperatures.map { TemperatureSums(temperature: $0, eceBins: eceBins) }
        binCounts = Array(repeating: 0, count: eceBins)
        binCorrect = Array(repeating: 0, count: eceBins)
        binConfidence = Array(repeating: ExactSum(), count: eceBins)
    }

    /// An empty state for `options`.
    public init(options: MetricOptions) {
        self.init(topK: options.topK, eceBins: options.eceBins, temperatures: options.allTemperatures)
        if options.bootstrapReplicates > 0 { bootstrap = BootstrapState(replicates: options.bootstrapReplicates, eceBins: eceBins) }
    }

    /// Counts a row whose label is ignore_index.
    @inline(__always)
    public mutating func addIgnoredRow() {
        rows &+= 1
        ignoredRows &+= 1
    }

    /// Counts a row from its kernel statistics.
    @inline(__always)
    public mutating func add(_ row: RowStatistics) {
        rows &+= 1
        guard row.isFinite else {
            nonfiniteRows &+= 1
            return
        }
        countedRows &+= 1
        let isCorrect = row.rank == 0
        if isCorrect { correct &+= 1 }
        if row.rank < topK { topKHits &+= 1 }
        nllSum.add(row.nll)
        uniformSum.add(row.uniformTerm)
        othersSum.add(row.othersTerm)
        entropySum.add(row.entropy)
        confidenceSum.add(row.confidence)
        brierSum.add(row.brier)
        let bin = min(Int(row.confidence * Double(eceBins)), eceBins - 1)
        binCounts[bin] &+= 1
        if isCorrect { binCorrect[bin] &+= 1 }
        binConfidence[bin].add(row.confidence)
        confidenceHistogram?.add(confidence: row.confidence, correct: isCorrect)
    }

    /// Adds everything counted in `other` (which must use the same top-k and bins).
    public mutating func merge(_ other: MetricAccumulator) { merge(other, negated: false) }

    /// Whether `other` was computed with the same top-k, bins, temperatures and bootstrap replicates, so that the two
    /// merge.
    public func hasSameOptions(as other: MetricAccumulator) -> Bool {
        topK == other.topK && eceBins == other.eceBins && temperatures == other.temperatures
            && bootstrapReplicates == other.bootstrapReplicates
    }

    /// Takes away everything counted in `other`, which was merged into this state before: the result is the merge of
    /// the other states, exactly (integer counts and exact sums; histogram bins left empty are dropped). A missing
    /// confidence histogram cannot be taken back: when either state has none, this one's is left as it is, so a
    /// caller that removes states keeps the histograms of those that have one apart (``LiveRuns`` does).
    public mutating func subtract(_ other: MetricAccumulator) { merge(other, negated: true) }

    private mutating func merge(_ other: MetricAccumulator, negated: Bool) {
        precondition(hasSameOptions(as: other), "merging states computed with different options")
        if let replicates = other.bootstrap { bootstrap!.merge(replicates, negated: negated) }
        for (_, path) in MetricAccumulator.stateCounts { self[keyPath: path].add(other[keyPath: path], negated: negated) }
        for (_, path) in MetricAccumulator.stateSums { self[keyPath: path].add(other[keyPath: path], negated: negated) }
        for b in 0..<eceBins {
            binCounts[b].add(other.binCounts[b], negated: negated)
            binCorrect[b].add(other.binCorrect[b], negated: negated)
            binConfidence[b].add(other.binConfidence[b], negated: negated)
        }
        mergeStatistics(other, negated: negated)
    }
}

extension UInt64 {
    /// Wrapping `+= other`, or `-= other` with `negated` (its exact inverse).
    @inline(__always)
    mutating func add(_ other: UInt64, negated: Bool) { self = negated ? self &- other : self &+ other }
}

extension MetricAccumulator {
    /// The scalar counts, by state member.
    static let stateCounts: [(String, any WritableKeyPath<MetricAccumulator, UInt64> & Sendable)] = [
        ("rows", \.rows), ("counted_rows", \.countedRows), ("ignored_rows", \.ignoredRows),
        ("nonfinite_rows", \.nonfiniteRows), ("correct", \.correct), ("top_k_hits", \.topKHits),
    ]
    /// The scalar exact sums, by state member.
    static let stateSums: [(String, any WritableKeyPath<MetricAccumulator, ExactSum> & Sendable)] = [
        ("nll_sum", \.nllSum), ("uniform_sum", \.uniformSum), ("others_sum", \.othersSum),
        ("entropy_sum", \.entropySum), ("confidence_sum", \.confidenceSum), ("brier_sum", \.brierSum),
    ]

    /// The `state_version` written (docs/STATE-FORMAT.md). States written before it existed have no
    /// `state_version` and the same layout: they read as version 1.
    public static let stateVersion: Int64 = 2

    /// The exact state (docs/STATE-FORMAT.md), for persisting next to a summary and merging later.
    public func jsonState() -> JSONValue {
        var members: [(String, JSONValue)] = [
            ("state_version", .int(MetricAccumulator.stateVersion)),
            ("top_k", .int(Int64(topK))), ("ece_bins", .int(Int64(eceBins))),
            ("rows", .int(Int64(rows))), ("counted_rows", .int(Int64(countedRows))),
            ("ignored_rows", .int(Int64(ignoredRows))), ("nonfinite_rows", .int(Int64(nonfiniteRows))),
            ("correct", .int(Int64(correct))), ("top_k_hits", .int(Int64(topKHits))),
            ("nll_sum", nllSum.jsonState), ("uniform_sum", uniformSum.jsonState), ("others_sum", othersSum.jsonState),
            ("entropy_sum", entropySum.jsonState), ("confidence_sum", confidenceSum.jsonState), ("brier_sum", brierSum.jsonState),
            ("bin_counts", .array(binCounts.map { .int(Int64($0)) })),
            ("bin_correct", .array(binCorrect.map { .int(Int64($0)) })),
            ("bin_confidence", .array(binConfidence.map(\.jsonState))),
        ] + statisticsStateMembers
        if let bootstrap { members.append(("bootstrap", bootstrap.jsonState)) }
        return .object(members)
    }

    /// Restores a state written by `jsonState()` (any `state_version` this build knows, or none: version 1).
    /// Errors name the member at fault (`rows`, `bin_counts[3]`, …).
    public init(jsonState state: JSONValue) throws(MetricStateError) {
        guard state.objectMembers != nil else { throw MetricStateError("the state is not a JSON object") }
        var stateVersion: Int64 = 1
        if let version = state["state_version"] {
            guard let v = version.intValue, (1...MetricAccumulator.stateVersion).contains(v) else {
                throw MetricStateError("state_version: unknown state_version \(version.serialized()) (this smoothd reads 1 to \(MetricAccumulator.stateVersion))")
            }
            stateVersion = v
        }
        func count(_ value: JSONValue?, _ key: String) throws(MetricStateError) -> UInt64 {
            guard let value else { throw MetricStateError("\(key): missing") }
            guard let v = value.intValue, v >= 0 else { throw MetricStateError("\(key): \(value.serialized()) is not an integer >= 0") }
            return UInt64(v)
        }
        func sum(_ value: JSONValue?, _ key: String) throws(MetricStateError) -> ExactSum { try ExactSum(stateMember: value, key: key) }
        let topK = Int(try count(state["top_k"], "top_k")), bins = Int(try count(state["ece_bins"], "ece_bins"))
        guard topK >= 1 else { throw MetricStateError("top_k: \(topK) is not >= 1") }
        guard (1...10_000).contains(bins) else { throw MetricStateError("ece_bins: \(bins) is not in [1, 10000]") }
        self.init(topK: topK, eceBins: bins, temperatures: try MetricAccumulator.stateTemperatures(state, version: stateVersion))
        for (key, path) in MetricAccumulator.stateCounts { self[keyPath: path] = try count(state[key], key) }
        for (key, path) in MetricAccumulator.stateSums { self[keyPath: path] = try sum(state[key], key) }
        func binValues(_ key: String) throws(MetricStateError) -> [JSONValue] {
            guard let list = state[key]?.arrayValue, list.count == eceBins else {
                throw MetricStateError("\(key): missing, or not an array of ece_bins (\(eceBins)) values")
            }
            return list
        }
        let binCountValues = try binValues("bin_counts"), corrects = try binValues("bin_correct"), confidences = try binValues("bin_confidence")
        for b in 0..<eceBins {
            binCounts[b] = try count(binCountValues[b], "bin_counts[\(b)]")
            binCorrect[b] = try count(corrects[b], "bin_correct[\(b)]")
            binConfidence[b] = try sum(confidences[b], "bin_confidence[\(b)]")
        }
        if let replicates = state["bootstrap"] { bootstrap = try BootstrapState(jsonState: replicates, eceBins: eceBins) }
        try readStatistics(state, version: stateVersion)
    }
}

extension MetricAccumulator {
    /// Why the state's counts do not add up, empty when they do (docs/STATE-FORMAT.md, "Consistency"):
    /// `rows` = `counted_rows` + `ignored_rows` + `nonfinite_rows`; `correct` ≤ `top_k_hits` ≤ `counted_rows`;
    /// the ECE bins hold `counted_rows` rows and `correct` correct ones, no bin more correct rows than rows;
    /// `confidence_sum` equals the sum of `bin_confidence` exactly; a state without counted rows has zero sums.
    public var inconsistencies: [String] {
        var problems: [String] = []
        let (partial, o1) = countedRows.addingReportingOverflow(ignoredRows)
        let (parts, o2) = partial.addingReportingOverflow(nonfiniteRows)
        if o1 || o2 || parts != rows {
            problems.append("rows \(rows) != counted_rows \(countedRows) + ignored_rows \(ignoredRows) + nonfinite_rows \(nonfiniteRows)")
        }
        if !(correct <= topKHits && topKHits <= countedRows) {
            problems.append("correct \(correct) <= top_k_hits \(topKHits) <= counted_rows \(countedRows) does not hold")
        }
        var binned: UInt64 = 0, binnedCorrect: UInt64 = 0, overflow = false
        for b in 0..<eceBins {
            let (n, oa) = binned.addingReportingOverflow(binCounts[b])
            let (c, ob) = binnedCorrect.addingReportingOverflow(binCorrect[b])
            binned = n
            binnedCorrect = c
            overflow = overflow || oa || ob
            if binCorrect[b] > binCounts[b] { problems.append("bin_correct[\(b)] \(binCorrect[b]) > bin_counts[\(b)] \(binCounts[b])") }
        }
        if overflow || binned != countedRows { problems.append("the bin_counts add up to \(binned), not counted_rows \(countedRows)") }
        if overflow || binnedCorrect != correct { problems.append("the bin_correct add up to \(binnedCorrect), not correct \(correct)") }
        var binnedConfidence = ExactSum()
        for sum in binConfidence { binnedConfidence.add(sum) }
        // Without wide parts the fixed parts are the values (no overflow spilled); else compare represented values.
        let sameConfidence = binnedConfidence.wide == nil && confidenceSum.wide == nil
            ? binnedConfidence.fixed == confidenceSum.fixed : binnedConfidence == confidenceSum
        if !sameConfidence { problems.append("confidence_sum is not the sum of bin_confidence") }
        if countedRows == 0 {
            let sums = [("nll_sum", nllSum), ("uniform_sum", uniformSum), ("others_sum", othersSum), ("entropy_sum", entropySum), ("brier_sum", brierSum)]
            for (name, sum) in sums where sum != ExactSum() { problems.append("no row is counted but \(name) is not 0") }
        }
        return problems + statisticsInconsistencies + (bootstrap?.inconsistencies ?? [])
    }
}
