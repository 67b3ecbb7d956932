import SmoothdJSON

// The issue-14 parts of the state: the temperature sweep's sums and the confidence histogram for adaptive ECE.

extension MetricAccumulator {
    /// Counts one counted row's statistics at every temperature (`rows[t]` for `temperatures[t]`); `correct` is
    /// rank 0. Call it for exactly the rows `add(_:)` counted (finite ones).
    @inline(__always)
    public mutating func addTemperatures(_ rows: UnsafePointer<TemperatureRowStatistics>, correct: Bool) {
        for t in temperatureSums.indices { temperatureSums[t].add(rows[t], correct: correct) }
    }

    /// Merges the sweep and the histogram (a histogram merged with a version-1 state's missing one is unknown).
    mutating func mergeStatistics(_ other: MetricAccumulator, negated: Bool) {
        for t in temperatureSums.indices { temperatureSums[t].merge(other.temperatureSums[t], negated: negated) }
        if let histogram = other.confidenceHistogram {
            if negated { confidenceHistogram?.subtract(histogram) } else { confidenceHistogram?.merge(histogram) }
        } else if !negated {
            confidenceHistogram = nil
        }
    }

    /// `temperatures` and `confidence_histogram` (null when unknown), written after the version-1 members.
    var statisticsStateMembers: [(String, JSONValue)] {
        [("temperatures", .array(temperatureSums.map(\.jsonState))), ("confidence_histogram", confidenceHistogram?.jsonState ?? .null)]
    }

    /// The temperatures of a state: none before version 2.
    static func stateTemperatures(_ state: JSONValue, version: Int64) throws(MetricStateError) -> [Double] {
        guard version >= 2 else { return [] }
        guard let list = state["temperatures"]?.arrayValue else { throw MetricStateError("temperatures: missing or not an array") }
        var temperatures: [Double] = []
        for (i, item) in list.enumerated() {
            guard let t = item["temperature"]?.doubleValue, t > 0, t.isFinite else {
                throw MetricStateError("temperatures[\(i)].temperature: missing or not a number > 0")
            }
            guard !temperatures.contains(t) else { throw MetricStateError("temperatures[\(i)].temperature: \(t) is listed twice") }
            temperatures.append(t)
        }
        return temperatures
    }

    /// Reads the version-2 members; a version-1 state has no sweep and an unknown histogram.
    mutating func readStatistics(_ state: JSONValue, version: Int64) throws(MetricStateError) {
        guard version >= 2 else {
            confidenceHistogram = nil
            return
        }
        let list = state["temperatures"]?.arrayValue ?? []
        for i in list.indices {
            temperatureSums[i] = try TemperatureSums(jsonState: list[i], eceBins: eceBins, key: "temperatures[\(i)]")
        }
        guard let histogram = state["confidence_histogram"] else { throw MetricStateError("confidence_histogram: missing") }
        confidenceHistogram = histogram == .null ? nil : try ConfidenceHistogram(jsonState: histogram)
    }

    /// Why the sweep's or the histogram's counts disagree with the state's (see `inconsistencies`).
    var statisticsInconsistencies: [String] {
        var problems: [String] = []
        for (i, sums) in temperatureSums.enumerated() {
            let (binned, o1) = sums.binCounts.reduce((UInt64(0), false)) { let r = $0.0.addingReportingOverflow($1); return (r.0, $0.1 || r.1) }
            let (binnedCorrect, o2) = sums.binCorrect.reduce((UInt64(0), false)) { let r = $0.0.addingReportingOverflow($1); return (r.0, $0.1 || r.1) }
            if o1 || binned != countedRows { problems.append("temperatures[\(i)]: the bin_counts add up to \(binned), not counted_rows \(countedRows)") }
            if o2 || binnedCorrect != correct { problems.append("temperatures[\(i)]: the bin_correct add up to \(binnedCorrect), not correct \(correct)") }
        }
        if let histogram = confidenceHistogram {
            let bins = histogram.nonEmptyBins
            let (rows, o1) = bins.reduce((UInt64(0), false)) { let r = $0.0.addingReportingOverflow($1.bin.count); return (r.0, $0.1 || r.1) }
            let (hits, o2) = bins.reduce((UInt64(0), false)) { let r = $0.0.addingReportingOverflow($1.bin.correct); return (r.0, $0.1 || r.1) }
            if o1 || rows != countedRows { problems.append("confidence_histogram: the bins hold \(rows) rows, not counted_rows \(countedRows)") }
            if o2 || hits != correct { problems.append("confidence_histogram: the bins hold \(hits) correct rows, not correct \(correct)") }
        }
        return problems
    }
}
