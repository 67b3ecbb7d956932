import Dispatch
import SmoothdJSON
import SmoothdMetrics
import SmoothdPipeline
import Synchronization

/// What an input to `smoothd merge` (or `smoothd report`) turned out to be.
public enum ResultInputKind: String, Sendable, Equatable {
    /// An `eval --json` document: `{"shards": [ENTRY, …], "total": …, "groups": …}`.
    case eval
    /// One `NAME.summary.json` written by `serve` (a valid shard with its `state`).
    case summary
    /// One `NAME.error.json` written by `serve` (an invalid shard).
    case error
    /// A `serve` output directory: its `*.summary.json` and `*.error.json` files.
    case directory
    /// An LSHD shard that `smoothd report` evaluated (its record comes from the evaluation).
    case shard
}

/// A problem with an input: the file, the JSON key or byte offset where there is one, and the reason.
/// The records of an input with problems that are fine are still used.
public struct ResultInputError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The file at fault (inside a directory input: the record file).
    public var file: String
    /// Where in the JSON document, as a path (`shards[3].state.bin_counts[2]`), when known.
    public var key: String?
    /// The byte offset in the file, for text that is not JSON.
    public var offset: Int?
    /// What is wrong.
    public var reason: String

    /// An error in `file`.
    public init(file: String, key: String? = nil, offset: Int? = nil, reason: String) {
        self.file = file
        self.key = key
        self.offset = offset
        self.reason = reason
    }

    /// `FILE: KEY: REASON` or `FILE: byte N: REASON`.
    public var description: String {
        var text = file + ": "
        if let key { text += key + ": " }
        if let offset { text += "byte \(offset): " }
        return text + reason
    }

    /// `{"file", "key", "offset", "reason"}` (`null` for what is unknown).
    public var json: JSONValue {
        .object([("file", .string(file)), ("key", key.map { .string($0) } ?? .null),
                 ("offset", offset.map { .int(Int64($0)) } ?? .null), ("reason", .string(reason))])
    }
}

/// One shard record read from an input: a valid shard with its restored exact state, or an invalid one.
public struct ResultRecord: Sendable {
    /// A valid shard's state, or why the shard was invalid when it was evaluated.
    public enum Outcome: Sendable {
        /// Valid: the exact metric state (`MetricAccumulator(jsonState:)`), already checked to add up.
        case valid(MetricAccumulator)
        /// Invalid: the error record's `kind`, `offset` and `reason`.
        case invalid(kind: String, offset: UInt64?, reason: String)
    }

    /// The shard as recorded (`shard`: the path given to `eval`, or the spool file name in a summary).
    public var shard: String
    /// The file the record was read from.
    public var file: String
    /// Where in that file, for records inside an `eval --json` document (`shards[4]`); nil for record files.
    public var key: String?
    /// The producer's meta (nil when there was none, or when `serve` omitted it: see `metaOmitted`).
    public var meta: JSONValue?
    /// `serve` left the meta out of the summary (over 64 KiB or too deep); the shard is placed as one without meta.
    public var metaOmitted: Bool
    /// `processed_at` (serve summaries), which decides between two records of one shard.
    public var processedAt: String?
    /// The state, or the failure.
    public var outcome: Outcome
    /// The digest of the shard's labels (`labels_digest`), when the record has one: `smoothd compare` pairs on it.
    public var labelsDigest: LabelDigest? = nil

    /// `FILE` for a record file, `FILE (shards[i], SHARD)` for an entry of an `eval --json` document.
    public var source: String {
        guard let key else { return file }
        return "\(file) (\(key), \(shard))"
    }
}

/// One input as read: its kind, its shard records in file order, and its problems.
///
/// Reading never throws: a file that cannot be read, is not JSON, is truncated, holds an unknown
/// `state_version` or a state whose counts do not add up becomes a `ResultInputError` in `errors`,
/// and every good record (of a directory, or of an `eval --json` document) is still in `records`.
public struct ResultInput: Sendable {
    /// The path as given.
    public var path: String
    /// What it is; nil when nothing usable could be read.
    public var kind: ResultInputKind?
    /// Its shard records, in file order (a directory: by file name, byte order).
    public var records: [ResultRecord]
    /// Its problems, in file order.
    public var errors: [ResultInputError]

    /// An input read elsewhere (tests, or a caller with its own records).
    public init(path: String, kind: ResultInputKind?, records: [ResultRecord], errors: [ResultInputError]) {
        self.path = path
        self.kind = kind
        self.records = records
        self.errors = errors
    }

    /// A shard evaluated by the caller (`smoothd report` given a shard file), as an input of one record.
    public init(evaluatedShard path: String, outcome: ShardOutcome) {
        let record: ResultRecord
        switch outcome {
        case .success(let summary):
            record = ResultRecord(shard: path, file: path, meta: summary.header.meta, metaOmitted: false, outcome: .valid(summary.accumulator),
                                  labelsDigest: summary.labelsDigest)
        case .failure(let failure):
            record = ResultRecord(shard: path, file: path, meta: nil, metaOmitted: false,
                                  outcome: .invalid(kind: failure.kind.name, offset: failure.offset, reason: failure.reason))
        }
        self.init(path: path, kind: .shard, records: [record], errors: [])
    }

    /// Reads `path`: an `eval --json` output, a `*.summary.json`, a `*.error.json`, or a `serve` output
    /// directory (its regular `*.summary.json` and `*.error.json` files; no subdirectory, so `superseded/`
    /// is never read, and neither are `totals.json`, hidden files or the lock).
    public static func load(_ path: String) -> ResultInput {
        switch ResultFiles.kind(of: path) {
        case .failure(let error):
            return ResultInput(path: path, kind: nil, records: [], errors: [error])
        case .success(.directory):
            return loadDirectory(path)
        case .success(.file):
            var input = ResultInput(path: path, kind: nil, records: [], errors: [])
            input.readDocument(path, inDirectory: false)
            return input
        }
    }

    private static func loadDirectory(_ path: String) -> ResultInput {
        var input = ResultInput(path: path, kind: .directory, records: [], errors: [])
        let names: [String]
        switch ResultFiles.recordNames(in: path) {
        case .failure(let error):
            input.errors.append(error)
            return input
        case .success(let found): names = found
        }
        guard !names.isEmpty else { return input }
        let base = path.hasSuffix("/") ? path : path + "/"
        // Files are independent: parse them on every core, then keep file order.
        let workers = max(1, min(names.count / 64, ResultFiles.onlineCores))
        let read = Mutex([Document?](repeating: nil, count: names.count))
        DispatchQueue.concurrentPerform(iterations: workers) { worker in
            let mine = stride(from: worker, to: names.count, by: workers).map { ($0, Document.read(base + names[$0], inDirectory: true)) }
            read.withLock { documents in for (i, document) in mine { documents[i] = document } }
        }
        let documents = read.withLock { $0 }
        for document in documents {
            input.records += document!.records
            input.errors += document!.errors
        }
        return input
    }

    /// Reads one standalone file: its kind comes from its content.
    private mutating func readDocument(_ file: String, inDirectory: Bool) {
        let document = Document.read(file, inDirectory: inDirectory)
        kind = document.kind
        records = document.records
        errors = document.errors
    }
}

/// What one file holds: its kind (for a standalone file), its records and its problems.
private struct Document: Sendable {
    var kind: ResultInputKind?
    var records: [ResultRecord] = []
    var errors: [ResultInputError] = []

    /// Reads `file`; a file inside a directory is a single record (it is never taken for an eval document).
    static func read(_ file: String, inDirectory: Bool) -> Document {
        var document = Document()
        document.parse(file, inDirectory: inDirectory)
        return document
    }

    private mutating func parse(_ file: String, inDirectory: Bool) {
        let document: JSONValue
        switch ResultFiles.readJSON(file) {
        case .failure(let error):
            errors.append(error)
            return
        case .success(let value): document = value
        }
        guard document.objectMembers != nil else {
            errors.append(ResultInputError(file: file, reason: "not a smoothd result: a JSON object was expected, found \(ResultRecordReader.describe(document))"))
            return
        }
        if !inDirectory, let shards = document["shards"] {
            guard let entries = shards.arrayValue, document["total"] != nil else {
                errors.append(ResultInputError(file: file, key: "shards", reason: "an eval --json document needs \"shards\" (an array) and \"total\""))
                return
            }
            kind = .eval
            records.reserveCapacity(entries.count)
            for (i, entry) in entries.enumerated() {
                add(ResultRecordReader.read(entry, file: file, key: "shards[\(i)]"))
            }
            return
        }
        if document["shard"] != nil || document["ok"] != nil {
            let read = ResultRecordReader.read(document, file: file, key: nil)
            if !inDirectory, case .success(let record) = read {
                switch record.outcome {
                case .valid: kind = .summary
                case .invalid: kind = .error
                }
            }
            add(read)
            return
        }
        let what = document["inputs"] != nil ? "a merge document" : document["shards_ok"] != nil ? "a totals document" : "this JSON object"
        errors.append(ResultInputError(file: file, reason: "not a smoothd result: \(what) has no shard records (give an eval --json output, "
            + "a *.summary.json or *.error.json, or a serve output directory)"))
    }

    private mutating func add(_ read: Result<ResultRecord, ResultInputError>) {
        switch read {
        case .success(let record): records.append(record)
        case .failure(let error): errors.append(error)
        }
    }
}
