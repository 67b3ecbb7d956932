import SmoothdJSON
import SmoothdMetrics

/// Turns one shard record (an `eval --json` entry, a summary or an error record) into a `ResultRecord`,
/// checking everything merge relies on: the record's members, the state's layout and version
/// (`MetricAccumulator(jsonState:)`), that its exact sums are written normalized, and that its counts add up.
enum ResultRecordReader {
    static func read(_ record: JSONValue, file: String, key: String?) -> Result<ResultRecord, ResultInputError> {
        func failure(_ member: String?, _ reason: String) -> Result<ResultRecord, ResultInputError> {
            let path = [key, member].compactMap { $0 }.joined(separator: ".")
            return .failure(ResultInputError(file: file, key: path.isEmpty ? nil : path, reason: reason))
        }
        guard record.objectMembers != nil else { return failure(nil, "a shard record must be a JSON object, found \(describe(record))") }
        guard let shard = record["shard"]?.stringValue else { return failure("shard", "missing, or not a string") }
        guard let ok = record["ok"]?.boolValue else { return failure("ok", "missing, or not true or false") }
        var meta: JSONValue?
        switch record["meta"] {
        case nil, .null?: meta = nil
        case .object?: meta = record["meta"]
        case let other?: return failure("meta", "must be an object or null, found \(describe(other))")
        }
        var processedAt: String?
        if let time = record["processed_at"] {
            guard let text = time.stringValue else { return failure("processed_at", "not a string") }
            processedAt = text
        }
        var labelsDigest: LabelDigest?
        if let digest = record["labels_digest"] {
            guard let read = LabelDigest(json: digest) else {
                return failure("labels_digest", "not {\"rows\": N, \"hash\": 16 hex digits below 2^61 - 1}")
            }
            labelsDigest = read
        }
        let outcome: ResultRecord.Outcome
        if ok {
            guard let state = record["state"] else {
                return failure("state", "missing: a valid shard's record must carry its exact state (summaries and eval --json entries do)")
            }
            let accumulator: MetricAccumulator
            do {
                accumulator = try MetricAccumulator(jsonState: state)
            } catch {
                let (member, reason) = split(error.description)
                return failure("state" + (member.map { "." + $0 } ?? ""), reason)
            }
            if let (member, problem) = unnormalizedSum(state) { return failure("state.\(member)", problem) }
            let problems = accumulator.inconsistencies
            if !problems.isEmpty { return failure("state", "the counts do not add up: " + problems.joined(separator: "; ")) }
            outcome = .valid(accumulator)
        } else {
            guard let error = record["error"], error.objectMembers != nil else { return failure("error", "missing, or not an object") }
            guard let kind = error["kind"]?.stringValue else { return failure("error.kind", "missing, or not a string") }
            guard let reason = error["reason"]?.stringValue else { return failure("error.reason", "missing, or not a string") }
            var offset: UInt64?
            switch error["offset"] {
            case nil, .null?: offset = nil
            case let value?:
                guard let v = value.intValue, v >= 0 else { return failure("error.offset", "not an integer >= 0 or null") }
                offset = UInt64(v)
            }
            outcome = .invalid(kind: kind, offset: offset, reason: reason)
        }
        return .success(ResultRecord(shard: shard, file: file, key: key, meta: meta, metaOmitted: record["meta_omitted"] != nil,
                                     processedAt: processedAt, outcome: outcome, labelsDigest: labelsDigest))
    }

    /// `member: reason` from `MetricAccumulator`'s messages; the member is nil when the message names none.
    private static func split(_ message: String) -> (String?, String) {
        guard let colon = message.range(of: ": ") else { return (nil, message) }
        let member = message[..<colon.lowerBound]
        guard !member.isEmpty, member.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" || $0 == "[" || $0 == "]" }) else { return (nil, message) }
        return (String(member), String(message[colon.upperBound...]))
    }

    /// The names of the exact sums in a state, and `bin_confidence`'s.
    private static let sumKeys = ["nll_sum", "uniform_sum", "others_sum", "entropy_sum", "confidence_sum", "brier_sum"]

    /// The first exact sum whose `wide` digits are not written normalized (indexes ascending in [0, 72),
    /// no zero digit, every digit below the top one in [0, 2^32), the top one in (−2^32, 2^32)), which
    /// smoothd never writes and which could overflow a merge.
    private static func unnormalizedSum(_ state: JSONValue) -> (String, String)? {
        var sums: [(String, JSONValue?)] = sumKeys.map { ($0, state[$0]) }
        for (b, sum) in (state["bin_confidence"]?.arrayValue ?? []).enumerated() { sums.append(("bin_confidence[\(b)]", sum)) }
        for (name, sum) in sums {
            guard let digits = sum?["wide"]?.arrayValue else { continue }
            var last: Int64 = -1
            for pair in digits {
                guard let p = pair.arrayValue, p.count == 2, let i = p[0].intValue, let d = p[1].intValue else { continue }
                let bound: Int64 = 1 << 32
                let inRange = i == 71 ? (d > -bound && d < bound) : (d >= 0 && d < bound)
                if i <= last || d == 0 || !inRange {
                    return ("\(name).wide", "digit \(pair.serialized()) is not normalized (indexes ascending, digits non-zero, below 2^32)")
                }
                last = i
            }
        }
        return nil
    }

    /// `an array`, `a string`, … for messages.
    static func describe(_ value: JSONValue) -> String {
        switch value {
        case .null: return "null"
        case .bool: return "a boolean"
        case .int, .double: return "a number"
        case .string: return "a string"
        case .array: return "an array"
        case .object: return "an object"
        }
    }
}
