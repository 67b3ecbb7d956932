import SmoothdJSON

extension BootstrapState {
    /// `{"replicates": R, "weights": [R], "correct": [R], "top_k_hits": [R], "nll_sum": [R sums], "uniform_sum",
    /// "others_sum", "bin_weights": [R × [B]], "bin_correct": [R × [B]], "bin_confidence": [R × [B sums]]}`
    /// (docs/STATE-FORMAT.md).
    public var jsonState: JSONValue {
        func ints(_ values: ArraySlice<UInt64>) -> JSONValue { .array(values.map { .int(Int64($0)) }) }
        func perBin<T>(_ values: [T], _ encode: (ArraySlice<T>) -> JSONValue) -> JSONValue {
            .array((0..<replicates).map { r in encode(values[(r * eceBins)..<((r + 1) * eceBins)]) })
        }
        func sums(_ values: ArraySlice<ExactSum>) -> JSONValue { .array(values.map(\.jsonState)) }
        return .object([
            ("replicates", .int(Int64(replicates))),
            ("weights", ints(weights[...])), ("correct", ints(correct[...])), ("top_k_hits", ints(topKHits[...])),
            ("nll_sum", sums(nllSum[...])), ("uniform_sum", sums(uniformSum[...])), ("others_sum", sums(othersSum[...])),
            ("bin_weights", perBin(binWeights, ints)), ("bin_correct", perBin(binCorrect, ints)),
            ("bin_confidence", perBin(binConfidence, sums)),
        ])
    }

    /// Restores `jsonState` for a state of `eceBins` bins. Errors name the member (`bootstrap.nll_sum[3]`, …).
    public init(jsonState state: JSONValue, eceBins: Int) throws(MetricStateError) {
        guard state.objectMembers != nil else { throw MetricStateError("bootstrap: not a JSON object") }
        guard let r = state["replicates"]?.intValue, (1...BootstrapState.maxReplicates).contains(r) else {
            throw MetricStateError("bootstrap.replicates: missing, or not an integer in [1, \(BootstrapState.maxReplicates)]")
        }
        self.init(replicates: Int(r), eceBins: eceBins)
        func list(_ key: String, _ count: Int, in value: JSONValue?, name: String) throws(MetricStateError) -> [JSONValue] {
            guard let values = value?.arrayValue, values.count == count else {
                throw MetricStateError("\(name): missing, or not an array of \(count) values")
            }
            return values
        }
        func count(_ value: JSONValue, _ name: String) throws(MetricStateError) -> UInt64 {
            guard let v = value.intValue, v >= 0 else { throw MetricStateError("\(name): \(value.serialized()) is not an integer >= 0") }
            return UInt64(v)
        }
        func sum(_ value: JSONValue, _ name: String) throws(MetricStateError) -> ExactSum {
            do { return try ExactSum(jsonState: value) } catch { throw MetricStateError("\(name): \(error.description)") }
        }
        let counts: [(String, WritableKeyPath<BootstrapState, [UInt64]>)] = [("weights", \.weights), ("correct", \.correct), ("top_k_hits", \.topKHits)]
        for (key, path) in counts {
            let values = try list(key, replicates, in: state[key], name: "bootstrap.\(key)")
            for i in 0..<replicates { self[keyPath: path][i] = try count(values[i], "bootstrap.\(key)[\(i)]") }
        }
        let sums: [(String, WritableKeyPath<BootstrapState, [ExactSum]>)] = [("nll_sum", \.nllSum), ("uniform_sum", \.uniformSum), ("others_sum", \.othersSum)]
        for (key, path) in sums {
            let values = try list(key, replicates, in: state[key], name: "bootstrap.\(key)")
            for i in 0..<replicates { self[keyPath: path][i] = try sum(values[i], "bootstrap.\(key)[\(i)]") }
        }
        let binCounts: [(String, WritableKeyPath<BootstrapState, [UInt64]>)] = [("bin_weights", \.binWeights), ("bin_correct", \.binCorrect)]
        for (key, path) in binCounts {
            let rows = try list(key, replicates, in: state[key], name: "bootstrap.\(key)")
            for r in 0..<replicates {
                let cells = try list(key, eceBins, in: rows[r], name: "bootstrap.\(key)[\(r)]")
                for b in 0..<eceBins { self[keyPath: path][r * eceBins + b] = try count(cells[b], "bootstrap.\(key)[\(r)][\(b)]") }
            }
        }
        let confidences = try list("bin_confidence", replicates, in: state["bin_confidence"], name: "bootstrap.bin_confidence")
        for r in 0..<replicates {
            let cells = try list("bin_confidence", eceBins, in: confidences[r], name: "bootstrap.bin_confidence[\(r)]")
            for b in 0..<eceBins { binConfidence[r * eceBins + b] = try sum(cells[b], "bootstrap.bin_confidence[\(r)][\(b)]") }
        }
    }

    /// The largest R `--bootstrap` takes.
    public static let maxReplicates: Int64 = 10_000
    /// The largest R × B: every replicate keeps its own B bins (48 bytes a cell), in every partial state of the pipeline
    /// and in every state written.
    public static let maxCells = 250_000
}

extension MetricAccumulator {
    /// R of the bootstrap replicates this state keeps, 0 for none: like top-k and bins, states merge only when equal.
    public var bootstrapReplicates: Int { bootstrap?.replicates ?? 0 }
}

extension MetricOptions {
    /// `--bootstrap` problems: R in [1, 10000] when given, and R × bins at most `BootstrapState.maxCells`.
    var bootstrapProblems: [String] {
        guard bootstrapReplicates != 0 else { return [] }
        guard bootstrapReplicates > 0 && Int64(bootstrapReplicates) <= BootstrapState.maxReplicates else {
            return ["bootstrap must be in [1, \(BootstrapState.maxReplicates)] (got \(bootstrapReplicates))"]
        }
        if bootstrapReplicates * eceBins > BootstrapState.maxCells {
            return ["bootstrap \(bootstrapReplicates) × ece-bins \(eceBins) is over \(BootstrapState.maxCells) (every replicate keeps its own bins): use fewer replicates or bins"]
        }
        return []
    }
}
