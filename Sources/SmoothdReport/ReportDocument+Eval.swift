import SmoothdJSON
import SmoothdPipeline
import SmoothdRuns

extension ReportDocument {
    /// The document of an evaluation: `inputs`, its groups and total as `eval --json` prints them, and its invalid
    /// shards; with the numeric meta `step` of each group's live shards (the first one stating one) for trends.
    public init(_ report: EvalReport, inputs: [String], generatedAt: String, notes: [String] = []) throws(ReportInputError) {
        var steps: [String: Double] = [:]
        var invalid: [JSONValue] = []
        for entry in report.shards {
            switch entry.entry {
            case .invalid(let failure): invalid.append(failure.json)
            case .valid(let shard):
                guard entry.supersededBy == nil, let group = entry.group, let step = shard.summary.header.meta?["step"]?.doubleValue,
                      step.isFinite else { continue }
                let key = group.json.serialized()
                if steps[key] == nil { steps[key] = step }
            }
        }
        let document = ReportDocument.data(inputs: inputs, groups: report.groups.map(\.json), total: report.total.json, invalid: invalid)
        try self.init(document: document, steps: steps, generatedAt: generatedAt, notes: notes)
    }

    /// `{"inputs", "groups", "total", "invalid"}`: the document a report embeds and is drawn from.
    public static func data(inputs: [String], groups: [JSONValue], total: JSONValue, invalid: [JSONValue]) -> JSONValue {
        .object([("inputs", .array(inputs.map(JSONValue.string))), ("groups", .array(groups)), ("total", total), ("invalid", .array(invalid))])
    }
}
