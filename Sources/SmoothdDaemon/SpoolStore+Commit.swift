#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import SmoothdJSON
import SmoothdMetrics
import SmoothdPipeline
import SmoothdRuns

/// How processing one claimed shard ended.
enum ClaimDisposition: Sendable {
    /// The summary was committed and the shard moved to `done/` (or deleted); `seconds` from opening the shard
    /// to the end of its commit.
    case succeeded(WorkItem, SummaryRecord, seconds: Double)
    /// The shard is invalid, or was rejected (unreadable, kept changing): `NAME.error.json` written, the shard
    /// moved to `failed/`.
    case failed(WorkItem, ErrorRecord)
    /// Its record already existed (a commit interrupted by a crash or an I/O error); only the move was finished.
    case completedEarlierCommit(WorkItem, succeeded: Bool)
    /// An I/O error while committing (output full, read-only, failing `fsync`): the shard stays claimed and is
    /// retried with backoff for as long as it takes.
    case retry(WorkItem, String)
    /// An I/O error while opening or reading the shard: it stays claimed and is retried with backoff, at most
    /// ``SpoolStore/maximumReadFailures`` times, then rejected.
    case retryRead(WorkItem, String)
    /// The file's size or modification time changed while it was read (a producer still writing it): nothing was
    /// committed; it is evaluated again after a backoff, at most ``SpoolStore/maximumChanges`` times, then rejected.
    case unsettled(WorkItem, String)
    /// Shutdown abandoned it before its commit; it stays claimed for the next start.
    case abandoned(WorkItem)
    /// It turned out not to be a regular file and was put back.
    case ignored(WorkItem)

    /// The shard concerned.
    var item: WorkItem {
        switch self {
        case .succeeded(let i, _, _), .failed(let i, _), .completedEarlierCommit(let i, _), .retry(let i, _), .retryRead(let i, _),
             .unsettled(let i, _), .abandoned(let i), .ignored(let i):
            return i
        }
    }
}

/// How many times a claimed shard has already been tried without a commit (kept by the spool loop).
struct ShardAttempts: Sendable, Equatable {
    /// Earlier attempts that could not open or read the shard.
    var readFailures = 0
    /// Earlier attempts during which the file changed.
    var changes = 0
    /// Earlier attempts whose commit failed.
    var commitFailures = 0
}

extension SpoolStore {
    /// Attempts without a successful read after which a shard is rejected as `unreadable`.
    static let maximumReadFailures = 5
    /// Attempts during which the file changed after which it is rejected as `unstable_file`.
    static let maximumChanges = 6
    /// A `truncated` verdict on a file modified less than this many seconds ago is confirmed only after the file
    /// has stayed unchanged that long (it may still be being written in place).
    static let settleSeconds = 1.0

    /// Evaluates the claimed shard and commits the outcome: the record (`NAME.summary.json` or `NAME.error.json`)
    /// is written durably, the totals are updated, and only then is the shard moved out of the work directory.
    /// Blocking; run it on a thread of its own. `attempts` counts earlier tries of this instance.
    ///
    /// Growing files: the file's identity (inode, size, modification and change times) is taken when it is opened
    /// and again after the evaluation (and, for a `truncated` verdict on a file modified within ``settleSeconds``,
    /// once it has been quiet that long). If they differ, nothing is committed and the result is
    /// ``ClaimDisposition/unsettled(_:_:)``.
    ///
    /// The commit itself goes through the store's ``GroupCommitter`` (this call waits for it): see ``prepare``.
    func process(
        _ item: WorkItem, evaluator: ShardEvaluator, options: MetricOptions, totals: TotalsFile, gate: CommitGate,
        attempts: ShardAttempts = ShardAttempts(), failOnNonfinite: Bool = false
    ) -> ClaimDisposition {
        switch prepare(item, evaluator: evaluator, options: options, totals: totals, gate: gate, attempts: attempts, failOnNonfinite: failOnNonfinite) {
        case .finished(let disposition): return disposition
        case .commit(let commit): return committer.commitAndWait(commit, in: self)
        }
    }

    /// ``process`` up to its commit: evaluates the shard and, when there is a record to commit, writes it under its
    /// temporary name and returns it as a ``PreparedCommit`` holding the commit gate, for ``GroupCommitter`` to
    /// commit together with the others that finish meanwhile. Everything else ends here.
    func prepare(
        _ item: WorkItem, evaluator: ShardEvaluator, options: MetricOptions, totals: TotalsFile, gate: CommitGate,
        attempts: ShardAttempts = ShardAttempts(), failOnNonfinite: Bool = false
    ) -> ProcessStep {
        do {
            // A crash (or a failed directory fsync) may have happened after the record was renamed into place:
            // finish that commit and write nothing new.
            if try output.exists(ShardName.summaryFile(item.instance)) {
                try adoptRecord(item, succeeded: true, totals: totals)
                try finishCommit(item, succeeded: true)
                totals.commitFinished(item.instance)
                return .finished(.completedEarlierCommit(item, succeeded: true))
            }
            if try output.exists(ShardName.errorFile(item.instance)) {
                try adoptRecord(item, succeeded: false, totals: totals)
                try finishCommit(item, succeeded: false)
                totals.commitFinished(item.instance)
                return .finished(.completedEarlierCommit(item, succeeded: false))
            }
            // The claim is made durable by the group commit, before any record that refers to it is renamed into place.
        } catch {
            return .finished(.retry(item, "\(error)"))
        }

        let start = ContinuousClock.now
        let fd: Int32
        do {
            fd = try work.openRegularFile(item.instance)
        } catch {
            switch error.errorNumber {
            case ELOOP, EINVAL:
                try? work.rename(item.instance, to: spool, as: item.source, replace: false)
                return .finished(.ignored(item))
            case EACCES, EPERM:
                return reject(item, kind: .unreadable, reason: "cannot open the shard for reading: "
                    + "\(String(cString: strerror(error.errorNumber))) (check its owner and mode)", gate: gate, totals: totals, start: start)
            default:
                if attempts.readFailures + 1 >= SpoolStore.maximumReadFailures {
                    return reject(item, kind: .unreadable, reason: "cannot open the shard: \(String(cString: strerror(error.errorNumber))) "
                        + "(\(attempts.readFailures + 1) attempts)", gate: gate, totals: totals, start: start)
                }
                return .finished(.retryRead(item, "\(error)"))
            }
        }
        let before = FileIdentity(fileDescriptor: fd)
        let outcome = evaluator.evaluate(fileDescriptor: fd, displayName: item.source)
        faults?.evaluated(item.instance)
        var after = FileIdentity(fileDescriptor: fd)
        if case .failure(let failure) = outcome, failure.kind == .format(.truncated), before == after, let after0 = after {
            // A file written moments ago that ends early may be a producer still writing it in place (a partial
            // write reads as `truncated`): confirm the verdict only once the file has been quiet for settleSeconds.
            let age = WallClock.now() - Double(after0.modificationNanoseconds) / 1e9
            if age >= 0, age < SpoolStore.settleSeconds {
                sleepSeconds(SpoolStore.settleSeconds - age)
                after = FileIdentity(fileDescriptor: fd)
            }
        }
        close(fd)
        if before == nil || before != after {
            let what = "the file changed while it was read (\(before?.description ?? "?") -> \(after?.description ?? "?"))"
            if attempts.changes + 1 >= SpoolStore.maximumChanges {
                return reject(item, kind: .unstableFile, reason: "the file kept changing while it was read "
                    + "(\(attempts.changes + 1) attempts); producers must write under a temporary name and rename when done",
                    gate: gate, totals: totals, start: start)
            }
            return .finished(.unsettled(item, what))
        }

        guard gate.begin() else { return .finished(.abandoned(item)) }
        // A prepared commit takes the gate with it (the group commit ends it); anything else ends it here.
        var handedOver = false
        defer { if !handedOver { gate.end() } }
        let time = WallClock.iso8601(WallClock.now())
        do {
            switch outcome {
            case .success(let summary):
                // The run rules of eval: a broken one (or non-finite rows with --fail-on-nonfinite) makes it a failure.
                let placement: ShardPlacement
                switch EvalReport.admit(outcome, groupBy: totals.groupBy, failOnNonfinite: failOnNonfinite) {
                case .failure(let failure):
                    handedOver = true
                    return try stage(ErrorRecord(failure, item: item, time: time, seconds: (ContinuousClock.now - start).seconds), of: item,
                                     totals: totals, gate: gate, start: start)
                case .success(let admitted): placement = admitted.1
                }
                let record = SummaryRecord(summary, item: item, placement: placement, groupBy: totals.groupBy, options: options, time: time,
                                           seconds: (ContinuousClock.now - start).seconds)
                let file = try output.stage(ShardName.summaryFile(item.instance), bytes: record.recordBytes, startWriteback: true)
                handedOver = true
                return .commit(PreparedCommit(item: item, record: .summary(record, placement), file: file, totals: totals,
                                              gate: gate, start: start))
            case .failure(let failure) where failure.kind == .ioError:
                // Not the shard's fault (e.g. EIO): keep it claimed and try again later, a bounded number of times.
                if attempts.readFailures + 1 >= SpoolStore.maximumReadFailures {
                    let step = commitRejection(item, kind: .unreadable, reason: "cannot read the shard: \(failure.reason) "
                        + "(\(attempts.readFailures + 1) attempts)", offset: failure.offset, compressedBytes: failure.compressedBytes,
                        totals: totals, gate: gate, time: time, start: start)
                    if case .commit = step { handedOver = true }
                    return step
                }
                return .finished(.retryRead(item, "cannot read shard: \(failure.reason)"))
            case .failure(let failure):
                handedOver = true
                return try stage(ErrorRecord(failure, item: item, time: time, seconds: (ContinuousClock.now - start).seconds), of: item,
                                 totals: totals, gate: gate, start: start)
            }
        } catch {
            handedOver = false
            return .finished(.retry(item, "\(error)"))
        }
    }

    /// Rejects a shard the daemon could not or would not evaluate: an error record of `kind`, the shard to `failed/`.
    private func reject(_ item: WorkItem, kind: RecordErrorKind, reason: String, gate: CommitGate, totals: TotalsFile, start: ContinuousClock.Instant) -> ProcessStep {
        guard gate.begin() else { return .finished(.abandoned(item)) }
        let step = commitRejection(item, kind: kind, reason: reason, offset: nil, compressedBytes: item.size, totals: totals, gate: gate,
                                   time: WallClock.iso8601(WallClock.now()), start: start)
        if case .finished = step { gate.end() }
        return step
    }

    /// Prepares the commit of a rejection; the caller holds the commit gate, which a prepared commit takes along.
    private func commitRejection(
        _ item: WorkItem, kind: RecordErrorKind, reason: String, offset: UInt64?, compressedBytes: UInt64, totals: TotalsFile, gate: CommitGate,
        time: String, start: ContinuousClock.Instant
    ) -> ProcessStep {
        let record = ErrorRecord(item, kind: kind, offset: offset, reason: reason, time: time, seconds: (ContinuousClock.now - start).seconds,
                                 compressedBytes: compressedBytes)
        do {
            return try stage(record, of: item, totals: totals, gate: gate, start: start)
        } catch {
            return .finished(.retry(item, "\(error)"))
        }
    }

    /// Writes `record` under its temporary name, for the group commit to make durable, count, and move the shard
    /// to `failed/`; the caller holds the commit gate, which the prepared commit takes along.
    private func stage(_ record: ErrorRecord, of item: WorkItem, totals: TotalsFile, gate: CommitGate, start: ContinuousClock.Instant)
        throws(FileSystemError) -> ProcessStep
    {
        let file = try output.stage(ShardName.errorFile(item.instance), bytes: record.recordBytes, startWriteback: true)
        return .commit(PreparedCommit(item: item, record: .error(record), file: file, totals: totals, gate: gate, start: start))
    }

    /// A record of `item` exists in the output directory although this run has not counted it: its write failed
    /// after the rename (the directory `fsync` reported an error). Writes it again (a new temporary file, `fsync`,
    /// `rename`, directory `fsync`: a failed `fsync` is never trusted to have made anything durable) and counts
    /// it in the totals. Records counted already are left as they are.
    func adoptRecord(_ item: WorkItem, succeeded: Bool, totals: TotalsFile) throws {
        guard !totals.hasRecorded(item.instance) else { return }
        let file = succeeded ? ShardName.summaryFile(item.instance) : ShardName.errorFile(item.instance)
        let bytes = try output.readFile(file)
        let record = try JSONValue.parse(utf8: bytes)
        try output.writeAtomically(file, bytes: bytes)
        if succeeded {
            guard let (summary, state) = RecordedSummary.read(record, groupBy: totals.groupBy) else {
                throw FileSystemError(operation: "read (not a summary)", path: output.display(file), errorNumber: EINVAL)
            }
            totals.recordSuccess(state, placement: summary.placement, time: summary.time, file: file, instance: item.instance)
        } else {
            guard let time = record["failed_at"]?.stringValue else {
                throw FileSystemError(operation: "read (not an error record)", path: output.display(file), errorNumber: EINVAL)
            }
            totals.recordFailure(time: time, instance: item.instance)
        }
    }

    /// The directory superseded summaries are kept in, inside the output directory.
    static let supersededDirectoryName = "superseded"

    /// Moves the summary of `instance`, superseded by a re-run, to `OUTPUT/superseded/` (kept, never deleted; a
    /// name taken there by something not of ours gets `.dupN`). Nothing to do when it has left already.
    func moveSuperseded(_ instance: String) throws(FileSystemError) {
        let output = self.output
        let file = ShardName.summaryFile(instance)
        guard try output.entry(file) != nil else { return }
        let superseded = try DirectoryHandle(parent: output, name: SpoolStore.supersededDirectoryName, create: true)
        var target = file
        var attempt = 1
        while true {
            do {
                try output.rename(file, to: superseded, as: target, replace: false)
                break
            } catch {
                guard error.errorNumber == EEXIST, attempt < 1000 else { throw error }
                attempt += 1
                target = file + ".dup" + String(attempt)
            }
        }
        try superseded.sync()
        try output.sync()
    }

    /// Moves a shard whose record is committed out of the work directory: to `done/` (or deleted with
    /// `--delete-processed`) after a summary, to `failed/` after an error record.
    ///
    /// If the shard has already left the work directory (an earlier attempt renamed it, then a directory `fsync`
    /// failed), only the `fsync`s are done again.
    func finishCommit(_ item: WorkItem, succeeded: Bool) throws(FileSystemError) {
        try moveOut(item, succeeded: succeeded)
        try (succeeded ? done : failed)?.sync()
        try work.sync()
    }

    /// ``finishCommit(_:succeeded:)`` without its `fsync`s (a group commit makes one of each directory for the
    /// batch): renames the shard to `done/` or `failed/` (a name taken there by something not of ours gets
    /// `.dupN`), or unlinks it with `--delete-processed`. Nothing to do when it has left the work directory already.
    func moveOut(_ item: WorkItem, succeeded: Bool) throws(FileSystemError) {
        guard try work.entry(item.instance) != nil else { return }
        guard let destination = succeeded ? done : failed else {
            try work.unlink(item.instance)
            return
        }
        var target = item.instance
        var attempt = 1
        while true {
            do {
                try work.rename(item.instance, to: destination, as: target, replace: false)
                return
            } catch {
                // Something not of ours took the name in done/ or failed/: keep both files.
                guard error.errorNumber == EEXIST, attempt < 1000 else { throw error }
                attempt += 1
                target = item.instance + ".dup" + String(attempt)
            }
        }
    }
}

/// How much of a producer's `meta` a summary keeps. The shard format allows 1 MiB of meta nested 256 deep, which
/// compresses to almost nothing; written into an indented summary it could grow hundreds of times (each nesting
/// level adds two spaces to every line below it), and nested that deep inside the summary it could no longer be
/// read back when totals are rebuilt at start. Meta within both limits is kept as it is (escaped by the JSON writer).
enum SummaryMeta {
    /// The most bytes meta may take in an indented summary.
    static let maximumBytes = 64 << 10
    /// The deepest nesting kept (the meta object itself is level 1).
    static let maximumDepth = 32

    /// Why `meta` is left out of a summary, or `nil` when it is kept.
    static func reasonToOmit(_ meta: JSONValue) -> String? {
        var budget = maximumBytes
        switch measure(meta, depth: 1, indent: 1, budget: &budget) {
        case .fits: return nil
        case .tooDeep: return "meta is nested deeper than \(maximumDepth) levels"
        case .tooLarge: return "meta would take more than \(maximumBytes) bytes in the summary"
        }
    }

    enum Verdict { case fits, tooDeep, tooLarge }

    /// Walks `value` as the indented writer would print it at `indent`, subtracting its size from `budget`;
    /// stops at the first limit crossed, so hostile meta costs at most `maximumBytes` of work.
    static func measure(_ value: JSONValue, depth: Int, indent: Int, budget: inout Int) -> Verdict {
        switch value {
        case .null, .bool: budget -= 5
        case .int: budget -= 20
        case .double: budget -= 24
        case .string(let s): budget -= stringCost(s, budget: budget)
        case .array(let items):
            guard depth <= maximumDepth else { return .tooDeep }
            budget -= 2 + 2 * indent
            for item in items {
                budget -= 2 + 2 * (indent + 1)
                if budget < 0 { return .tooLarge }
                let verdict = measure(item, depth: depth + 1, indent: indent + 1, budget: &budget)
                if verdict != .fits { return verdict }
            }
        case .object(let members):
            guard depth <= maximumDepth else { return .tooDeep }
            budget -= 2 + 2 * indent
            for (key, item) in members {
                budget -= 4 + 2 * (indent + 1) + stringCost(key, budget: budget)
                if budget < 0 { return .tooLarge }
                let verdict = measure(item, depth: depth + 1, indent: indent + 1, budget: &budget)
                if verdict != .fits { return verdict }
            }
        }
        return budget < 0 ? .tooLarge : .fits
    }

    /// Bytes of `s` as an escaped JSON string (an upper bound; stops counting past `budget`).
    static func stringCost(_ s: String, budget: Int) -> Int {
        var cost = 2
        for scalar in s.unicodeScalars {
            cost += scalar.value < 0x20 || scalar.value == 0x7F || scalar.value == 0x22 || scalar.value == 0x5C
                || (0x2028...0x2029).contains(scalar.value) ? 6 : UTF8.width(scalar)
            if cost > budget { return cost }
        }
        return cost
    }
}

/// Sleeps the calling thread (a worker) for `seconds`.
func sleepSeconds(_ seconds: Double) {
    guard seconds > 0 else { return }
    var request = timespec(tv_sec: Int(seconds), tv_nsec: Int((seconds - Double(Int(seconds))) * 1e9))
    var remaining = timespec()
    while nanosleep(&request, &remaining) != 0, errno == EINTR { request = remaining }
}
