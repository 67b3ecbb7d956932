import SmoothdJSON
import SmoothdPipeline
import SmoothdResults
import SmoothdRuns

extension ReportDocument {
    /// The document of a merge: `report.json` (what `smoothd merge --json` prints) is embedded and drawn; the invalid
    /// shards are listed; each group's trend position is the numeric meta `step` of its first counted shard stating one.
    public init(_ report: MergeReport, generatedAt: String, notes: [String] = []) throws(ReportInputError) {
        var steps: [String: Double] = [:]
        var invalid: [InvalidShard] = []
        for entry in report.entries {
            switch entry.status {
            case .invalid(let kind, let offset, let reason):
                invalid.append(InvalidShard(shard: entry.record.source, kind: kind, offset: offset.map { Int64($0) }, reason: reason))
            case .counted(let group):
                guard let step = entry.record.meta?["step"]?.doubleValue, step.isFinite else { continue }
                let key = group.json.serialized()
                if steps[key] == nil { steps[key] = step }
            case .superseded: continue
            }
        }
        for error in report.errors {
            invalid.append(InvalidShard(shard: error.file, kind: "bad_input", offset: error.offset.map { Int64($0) },
                                        reason: error.key.map { "\($0): \(error.reason)" } ?? error.reason))
        }
        try self.init(document: report.json, steps: steps, invalid: invalid, generatedAt: generatedAt, notes: notes)
    }
}
