#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Synchronization

/// The daemon's directories and the durable claim/commit protocol over them.
///
/// - `SPOOL/` — producers rename finished shards here.
/// - `SPOOL/.smoothd-work/` — claimed shards (renamed here before processing); locked with `flock` while served.
/// - `SPOOL/done/` — shards whose summary is committed (unless `--delete-processed`).
/// - `SPOOL/failed/` — invalid shards.
/// - `OUTPUT/NAME.summary.json`, `OUTPUT/NAME.error.json`, `OUTPUT/totals.json`; `OUTPUT/.smoothd-output.lock` is
///   `flock`ed while served and names the holder.
///
/// `Sendable`: the directory handles are immutable and every operation is a system call; the output handle, which
/// is replaced when the output directory is re-created, is behind a `Mutex`. Claims are made by one task at a time,
/// and commits of distinct instances touch distinct names.
final class SpoolStore: Sendable {
    /// The work directory's name inside the spool.
    static let workDirectoryName = ".smoothd-work"
    /// The done directory's name inside the spool.
    static let doneDirectoryName = "done"
    /// The failed directory's name inside the spool.
    static let failedDirectoryName = "failed"

    /// The spool directory.
    let spool: DirectoryHandle
    /// The daemon-owned work directory (holds the `flock`).
    let work: DirectoryHandle
    /// Where processed shards go; `nil` with `--delete-processed`.
    let done: DirectoryHandle?
    /// Where invalid shards go.
    let failed: DirectoryHandle
    /// The output directory as currently open (see ``reopenOutput()``).
    var output: DirectoryHandle { outputState.withLock { $0.handle } }
    /// The output path as given.
    let outputPath: String
    /// The spool path as given (written into the output lock for the message of a second daemon).
    let spoolPath: String
    /// Failures injected by tests (`nil` in production).
    let faults: FaultInjector?
    /// The open output directory and its lock.
    private let outputState: Mutex<(handle: DirectoryHandle, lock: OutputLock)>
    /// Quarantine records of overlong names this run wrote, and whether it counted them in the totals (see
    /// ``quarantineOverlong(_:totals:gate:)``).
    let overlongAttempts = Mutex<[String: Bool]>([:])
    /// The reused names' highest ordinals, listed at the first claim and kept up to date by claims.
    let reusedNamesState = Mutex<ReusedNames?>(nil)
    /// ``claimProbes``.
    let claimProbeCount = Mutex(0)
    /// Commits prepared records in batches (see ``GroupCommitter``).
    let committer = GroupCommitter()

    /// Opens (creating when missing) every directory, checks the layout, and takes the spool and output locks.
    ///
    /// The work, done and failed directories must belong to the daemon's user: whoever owns the work directory
    /// could swap claimed shards, and whoever owns `done/` or `failed/` could rewrite processed ones. One left by
    /// another user (e.g. created by a producer before the first start) is refused; a mode wider than 0700 (work)
    /// or writable by group or others (done, failed) is narrowed. The output directory must not be the spool or
    /// lie inside the daemon's own directories, and the spool must not be another spool's (see ``checkOverlap()``).
    init(spoolPath: String, outputPath: String, deleteProcessed: Bool, faults: FaultInjector? = nil) throws {
        self.faults = faults
        self.spoolPath = spoolPath
        self.outputPath = outputPath
        spool = try DirectoryHandle(path: spoolPath, create: true, faults: faults)
        let output = try DirectoryHandle(path: outputPath, create: true, faults: faults)
        work = try DirectoryHandle(parent: spool, name: SpoolStore.workDirectoryName, create: true, mode: 0o700)
        failed = try DirectoryHandle(parent: spool, name: SpoolStore.failedDirectoryName, create: true)
        done = deleteProcessed ? nil : try DirectoryHandle(parent: spool, name: SpoolStore.doneDirectoryName, create: true)
        try SpoolStore.checkOverlap(spool: spool, work: work, done: done, failed: failed, output: output)
        guard flock(work.fd, LOCK_EX | LOCK_NB) == 0 else {
            if errno == EWOULDBLOCK { throw SpoolLockedError(path: work.path) }
            throw FileSystemError.current("flock", work.path)
        }
        try SpoolStore.checkOwnership(work, widest: 0o700)
        try SpoolStore.checkOwnership(failed, widest: 0o7755)
        if let done { try SpoolStore.checkOwnership(done, widest: 0o7755) }
        let device = try spool.info().device
        for directory in [work, failed] + (done.map { [$0] } ?? []) {
            if try directory.info().device != device {
                throw SpoolLayoutError(description: "\(directory.path) is on another filesystem than \(spool.path); renames would not be atomic")
            }
        }
        outputState = Mutex((output, try OutputLock(in: output, spoolPath: spoolPath)))
    }

    /// Refuses `directory` when another user owns it; narrows its mode to at most `widest`.
    static func checkOwnership(_ directory: DirectoryHandle, widest: UInt32) throws {
        let info = try directory.info()
        guard info.owner == UInt32(geteuid()) else {
            throw SpoolLayoutError(description: "\(directory.path) belongs to uid \(info.owner), not to this process (uid \(geteuid())); "
                + "whoever owns it could change the shards in it: give it to uid \(geteuid()) (chown) or remove it so that smoothd creates it")
        }
        if info.permissions & ~widest != 0 { _ = fchmod(directory.fd, mode_t(info.permissions & widest)) }
    }

    /// Opens the output directory at its path again after it was deleted or replaced (creating it when missing, as
    /// at start), checks the layout again and takes its lock. Nothing uses it until ``installOutput(_:lock:)``.
    func openOutputAgain() throws -> (DirectoryHandle, OutputLock) {
        let handle = try DirectoryHandle(path: outputPath, create: true, faults: faults)
        try SpoolStore.checkOverlap(spool: spool, work: work, done: done, failed: failed, output: handle)
        return (handle, try OutputLock(in: handle, spoolPath: spoolPath))
    }

    /// Makes `handle` the output directory (and releases the old one's lock). The caller rebuilds the totals from
    /// it and makes sure no commit runs meanwhile.
    func installOutput(_ handle: DirectoryHandle, lock: OutputLock) {
        outputState.withLock { $0 = (handle, lock) }
        overlongAttempts.withLock { $0.removeAll() }
    }

    /// Whether `instance` is already used by a record (current or superseded), a processed or a claimed shard.
    func isRecorded(_ instance: String) throws(FileSystemError) -> Bool {
        if try output.exists(ShardName.summaryFile(instance)) { return true }
        if try output.exists(ShardName.errorFile(instance)) { return true }
        if let superseded = try DirectoryHandle.openIfPresent(parent: output, name: SpoolStore.supersededDirectoryName),
           try superseded.exists(ShardName.summaryFile(instance)) {
            return true
        }
        if try work.exists(instance) { return true }
        if try failed.exists(instance) { return true }
        if let done, try done.exists(instance) { return true }
        return false
    }
}

/// Lets commits start until shutdown abandons in-flight work, and tells when started commits have finished,
/// so that the last totals written include every summary that exists. ``exclusively(_:)`` holds new commits
/// back while the output directory is swapped.
final class CommitGate: Sendable {
    private let state = Mutex<(closed: Bool, active: Int, paused: Bool)>((false, 0, false))

    /// Starts a commit; `false` once the gate is closed (the shard is left claimed for the next start). While
    /// ``exclusively(_:)`` runs it waits (on the worker thread that calls it).
    func begin() -> Bool {
        while true {
            let started = state.withLock { s -> Bool? in
                guard !s.closed else { return false }
                guard !s.paused else { return nil }
                s.active += 1
                return true
            }
            if let started { return started }
            usleepShort()
        }
    }

    /// Runs `body` once every started commit has ended, with no new one starting until it returns. Blocking: call
    /// it on a thread of its own.
    func exclusively<T>(_ body: () throws -> T) rethrows -> T {
        state.withLock { $0.paused = true }
        defer { state.withLock { $0.paused = false } }
        while active > 0 { usleepShort() }
        return try body()
    }

    /// Ends a commit started with ``begin()``.
    func end() { state.withLock { $0.active -= 1 } }

    /// Refuses further commits.
    func close() { state.withLock { $0.closed = true } }

    /// Refuses further commits and waits up to `limit` for the started ones to end. Blocking: call it on a
    /// thread of its own.
    func closeAndWait(upTo limit: Duration) {
        close()
        let deadline = ContinuousClock.now + limit
        while active > 0, ContinuousClock.now < deadline { usleepShort() }
    }

    /// Commits in progress.
    var active: Int { state.withLock { $0.active } }
}

/// Another process writes to the output directory (two daemons on one output lose summaries and write wrong totals).
public struct OutputLockedError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The output directory.
    public var output: String
    /// Who holds it, from its lock file: `pid N, watching SPOOL`, or `unknown` when the file says nothing.
    public var holder: String
    /// A readable message.
    public var description: String {
        "another smoothd (\(holder)) already writes to the output directory \(output) (lock held on \(output)/\(OutputLock.fileName)); "
            + "two daemons on one output would lose summaries and write wrong totals: give each its own --output"
    }
}

/// Another process holds the spool (two daemons on one spool would break exactly-once).
public struct SpoolLockedError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The locked work directory.
    public var path: String
    /// A readable message.
    public var description: String { "another smoothd is already serving this spool (lock held on \(path))" }
}

/// A daemon directory that is unsafe: on another filesystem than the spool (renames would not be atomic), owned
/// by another user, or overlapping another of the daemon's directories.
public struct SpoolLayoutError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What is wrong.
    public var description: String
}
