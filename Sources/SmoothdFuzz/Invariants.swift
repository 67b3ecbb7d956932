#if canImport(Glibc)
import Glibc
#endif
import LSHDFormat
import SmoothdJSON
import SmoothdMetrics
import SmoothdPipeline

/// Stops the process with a message; libFuzzer then keeps the input as a crash.
func violated(_ message: String) -> Never {
    writeError("smoothd-fuzz: invariant violated: \(message)\n")
    abort()
}

/// Writes `text` to standard error, unbuffered.
func writeError(_ text: String) {
    var text = text
    text.withUTF8 { bytes in
        var done = 0
        while done < bytes.count {
            let n = write(2, bytes.baseAddress! + done, bytes.count - done)
            if n <= 0 { return }
            done += n
        }
    }
}

/// `violated(message)` unless `condition` holds.
@inline(__always)
func require(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String) {
    if !condition() { violated(message()) }
}

enum Invariants {
    /// Checks an error the way every report shows it: a kind, a payload offset (except for I/O
    /// errors, which have none) no larger than `limit`, and a non-empty reason.
    static func check(_ error: EvaluationError, limit: UInt64, _ context: String) {
        require(!error.reason.isEmpty, "\(context): empty reason for \(error.kind)")
        guard error.kind != .ioError else { return }
        guard let offset = error.offset else { violated("\(context): \(error.kind) without an offset: \(error)") }
        require(offset <= limit, "\(context): error offset \(offset) beyond \(limit) bytes decoded: \(error)")
    }

    /// The same for a format error of the direct parse.
    static func check(_ error: ShardError, limit: UInt64, _ context: String) {
        check(EvaluationError(error, kind: { .format($0) }), limit: limit, context)
    }

    /// Checks a valid shard's counts and metric values.
    static func check(_ accumulator: MetricAccumulator, header: ShardHeader, metrics: MetricOptions, _ context: String) {
        let a = accumulator
        require(a.rows == a.countedRows &+ a.ignoredRows &+ a.nonfiniteRows,
                "\(context): rows \(a.rows) != counted \(a.countedRows) + ignored \(a.ignoredRows) + nonfinite \(a.nonfiniteRows)")
        if let stated = header.statedRows { require(stated == a.rows, "\(context): num_rows \(stated) accepted with \(a.rows) rows") }
        require(a.correct <= a.topKHits && a.topKHits <= a.countedRows, "\(context): correct \(a.correct), top-k \(a.topKHits), counted \(a.countedRows)")
        require(a.binCounts.reduce(0, +) == a.countedRows, "\(context): ECE bins hold \(a.binCounts.reduce(0, +)) of \(a.countedRows) rows")
        require(zip(a.binCorrect, a.binCounts).allSatisfy { $0 <= $1 }, "\(context): a bin has more correct rows than rows")
        let values = MetricValues(a, options: metrics)
        guard a.countedRows > 0 else {
            require(values.loss == nil && values.nll == nil && values.ece == nil, "\(context): metrics without counted rows")
            return
        }
        guard let loss = values.loss, let nll = values.nll, let accuracy = values.accuracy, let topK = values.topKAccuracy,
              let confidence = values.meanConfidence, let entropy = values.entropy, let brier = values.brier, let ece = values.ece
        else { violated("\(context): a metric is missing with \(a.countedRows) counted rows") }
        if checksNumerics {
            // Every counted row has finite logits, so every reported mean is a finite number (perplexity,
            // exp(mean nll), may overflow honestly). A non-finite one is written as null, which the
            // report reserves for "no row counted".
            let finite = [("nll", nll), ("mean_confidence", confidence), ("entropy", entropy), ("brier", brier), ("ece", ece),
                          ("loss", loss)] + values.lossesBySmoothing.map { ("loss@\($0.smoothing)", $0.loss ?? .nan) }
            for (name, value) in finite {
                require(value.isFinite, "\(context): \(name) is \(value) with \(a.countedRows) counted rows")
            }
            let slack = 1e-6
            require(nll >= 0, "\(context): mean nll \(nll) < 0")
            require(confidence > 0 && confidence <= 1 + slack, "\(context): mean confidence \(confidence)")
            require(entropy >= -slack && entropy <= log(Double(header.numClasses)) * (1 + slack) + slack, "\(context): mean entropy \(entropy)")
            require(brier >= -slack && brier <= 2 + slack, "\(context): mean brier \(brier)")
            require(ece >= 0 && ece <= 1 + slack, "\(context): ece \(ece)")
        }
        require(accuracy >= 0 && accuracy <= topK && topK <= 1, "\(context): accuracy \(accuracy), top-k \(topK)")
    }

    /// Set `SMOOTHD_FUZZ_NUMERICS=0` to skip the finiteness and range checks of metric values.
    static let checksNumerics: Bool = {
        guard let value = getenv("SMOOTHD_FUZZ_NUMERICS") else { return true }
        return String(cString: value) != "0"
    }()

    /// A report entry must be JSON that reads back, and the producer's meta must survive the trip.
    static func checkRoundTrip(_ entry: JSONValue, meta: JSONValue?, _ context: String) {
        let text = entry.serialized()
        let parsed: JSONValue
        do { parsed = try JSONValue.parse(text) } catch { violated("\(context): report entry is not JSON (\(error)): \(text.prefix(300))") }
        if let meta {
            require(parsed["meta"] == meta || !metaIsExact(meta), "\(context): meta changed in the report: \(meta.serialized().prefix(300))")
        }
    }

    /// False when `value` holds a double that JSON cannot carry back exactly (±Inf from an overflowing
    /// literal such as 1e400, written as null): such meta is echoed lossily by design.
    static func metaIsExact(_ value: JSONValue) -> Bool {
        switch value {
        case .double(let d): return d.isFinite
        case .array(let items): return items.allSatisfy(metaIsExact)
        case .object(let members): return members.allSatisfy { metaIsExact($0.1) }
        default: return true
        }
    }

    /// A report entry without its timing field.
    static func withoutTiming(_ entry: JSONValue) -> JSONValue {
        guard let members = entry.objectMembers else { return entry }
        return .object(members.filter { $0.0 != "seconds" })
    }
}
