#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import SmoothdJSON
import SmoothdMetrics
import SmoothdPipeline

/// Facts about a shard whose summary was committed.
struct ShardFacts: Sendable, Equatable {
    /// Rows read.
    var rows: UInt64
    /// Rows counted in the metrics.
    var countedRows: UInt64
    /// Bytes of the zstd file.
    var compressedBytes: UInt64
    /// Bytes of the decompressed LSHD payload.
    var payloadBytes: UInt64
    /// Time spent evaluating and committing.
    var seconds: Double
}

/// Facts about a shard that was quarantined.
struct FailureFacts: Sendable, Equatable {
    /// Why it is invalid.
    var reason: String
    /// The error's kind.
    var kind: String
    /// Payload offset where the problem was found.
    var offset: UInt64?
    /// Bytes of the zstd file.
    var compressedBytes: UInt64
    /// Time spent.
    var seconds: Double
}

/// How processing one claimed shard ended.
enum ShardResult: Sendable {
    /// The summary was committed and the shard moved to `done/` (or deleted).
    case succeeded(WorkItem, ShardFacts)
    /// The shard is invalid: `NAME.error.json` written, the shard moved to `failed/`.
    case failed(WorkItem, FailureFacts)
    /// Its record already existed (a commit interrupted by a crash); only the move was finished.
    case completedEarlierCommit(WorkItem, succeeded: Bool)
    /// An I/O error while reading or committing; the shard stays claimed and is retried later.
    case retry(WorkItem, String)
    /// Shutdown abandoned it before its commit; it stays claimed for the next start.
    case abandoned(WorkItem)
    /// It turned out not to be a regular file and was put back.
    case ignored(WorkItem)

    /// The shard concerned.
    var item: WorkItem {
        switch self {
        case .succeeded(let i, _), .failed(let i, _), .completedEarlierCommit(let i, _), .retry(let i, _), .abandoned(let i), .ignored(let i):
            return i
        }
    }
}

extension SpoolStore {
    /// Evaluates the claimed shard and commits the outcome: the record (`NAME.summary.json` or `NAME.error.json`)
    /// is written durably, the totals are updated, and only then is the shard moved out of the work directory.
    /// Blocking; run it on a thread of its own.
    func process(
        _ item: WorkItem, evaluator: ShardEvaluator, options: MetricOptions, totals: TotalsBook, gate: CommitGate
    ) -> ShardResult {
        do {
            // A crash may have happened after the record was written: finish that commit, write nothing new.
            if try output.exists(ShardName.summaryFile(item.instance)) {
                try finishCommit(item, succeeded: true)
                return .completedEarlierCommit(item, succeeded: true)
            }
            if try output.exists(ShardName.errorFile(item.instance)) {
                try finishCommit(item, succeeded: false)
                return .completedEarlierCommit(item, succeeded: false)
            }
            // Make the claim durable before any record can refer to it.
            try work.sync()
            try spool.sync()
        } catch {
            return .retry(item, "\(error)")
        }

        let start = WallClock.monotonic()
        let fd: Int32
        do {
            fd = try work.openRegularFile(item.instance)
        } catch {
            if error.errorNumber == ELOOP || error.errorNumber == EINVAL {
                try? work.rename(item.instance, to: spool, as: item.source, replace: false)
                return .ignored(item)
            }
            return .retry(item, "\(error)")
        }
        let outcome = evaluator.evaluate(fileDescriptor: fd, displayName: item.source)
        close(fd)

        guard gate.begin() else { return .abandoned(item) }
        defer { gate.end() }
        let time = WallClock.iso8601(WallClock.now())
        do {
            switch outcome {
            case .success(let summary):
                let seconds = WallClock.monotonic() - start
                let record = SpoolStore.summaryRecord(summary, item: item, options: options, time: time, seconds: seconds)
                try output.writeAtomically(ShardName.summaryFile(item.instance), bytes: Array((record.serialized(pretty: true) + "\n").utf8))
                totals.recordSuccess(summary.accumulator, time: time, file: ShardName.summaryFile(item.instance))
                try finishCommit(item, succeeded: true)
                return .succeeded(item, ShardFacts(
                    rows: summary.accumulator.rows, countedRows: summary.accumulator.countedRows,
                    compressedBytes: summary.compressedBytes, payloadBytes: summary.payloadBytes,
                    seconds: WallClock.monotonic() - start))
            case .failure(let failure) where failure.kind == "io_error":
                // Not the shard's fault (e.g. EIO): keep it claimed and try again later.
                return .retry(item, "cannot read shard: \(failure.reason)")
            case .failure(let failure):
                let seconds = WallClock.monotonic() - start
                let record = SpoolStore.errorRecord(failure, item: item, time: time, seconds: seconds)
                try output.writeAtomically(ShardName.errorFile(item.instance), bytes: Array((record.serialized(pretty: true) + "\n").utf8))
                totals.recordFailure(time: time)
                try finishCommit(item, succeeded: false)
                return .failed(item, FailureFacts(
                    reason: failure.reason, kind: failure.kind, offset: failure.offset,
                    compressedBytes: failure.compressedBytes, seconds: seconds))
            }
        } catch {
            return .retry(item, "\(error)")
        }
    }

    /// Moves a shard whose record is committed out of the work directory: to `done/` (or deleted with
    /// `--delete-processed`) after a summary, to `failed/` after an error record.
    func finishCommit(_ item: WorkItem, succeeded: Bool) throws(FileSystemError) {
        guard let destination = succeeded ? done : failed else {
            try work.unlink(item.instance)
            try work.sync()
            return
        }
        var target = item.instance
        var attempt = 1
        while true {
            do {
                try work.rename(item.instance, to: destination, as: target, replace: false)
                break
            } catch {
                // Something not of ours took the name in done/ or failed/: keep both files.
                guard error.errorNumber == EEXIST, attempt < 1000 else { throw error }
                attempt += 1
                target = item.instance + ".dup" + String(attempt)
            }
        }
        try destination.sync()
        try work.sync()
    }

    /// `NAME.summary.json`: the `eval --json` shard entry, plus `instance` (when the name was reused),
    /// `processed_at`, `processing_seconds`, the byte counts and the exact accumulator `state` that totals merge.
    static func summaryRecord(_ summary: ShardSummary, item: WorkItem, options: MetricOptions, time: String, seconds: Double) -> JSONValue {
        var members = summary.entry(options: options).objectMembers ?? [("shard", .string(item.source))]
        if item.instance != item.source { members.set("instance", .string(item.instance)) }
        members.set("processed_at", .string(time))
        members.set("processing_seconds", .double(seconds))
        members.set("compressed_bytes", .int(Int64(clamping: summary.compressedBytes)))
        members.set("payload_bytes", .int(Int64(clamping: summary.payloadBytes)))
        members.set("state", summary.accumulator.jsonState())
        return .object(members)
    }

    /// `NAME.error.json`: the `eval --json` failure entry (`error` holds `reason`, `offset`, `kind`), plus
    /// `instance` (when the name was reused), `failed_at`, `processing_seconds` and `compressed_bytes`.
    static func errorRecord(_ failure: ShardFailure, item: WorkItem, time: String, seconds: Double) -> JSONValue {
        var members = failure.entry().objectMembers ?? [("shard", .string(item.source)), ("ok", .bool(false))]
        if item.instance != item.source { members.set("instance", .string(item.instance)) }
        members.set("failed_at", .string(time))
        members.set("processing_seconds", .double(seconds))
        members.set("compressed_bytes", .int(Int64(clamping: failure.compressedBytes)))
        return .object(members)
    }
}
