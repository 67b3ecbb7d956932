#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Synchronization

/// Another process holds the spool (two daemons on one spool would break exactly-once).
public struct SpoolLockedError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The locked work directory.
    public var path: String
    /// A readable message.
    public var description: String { "another smoothd is already serving this spool (lock held on \(path))" }
}

/// A daemon directory that would break atomic renames (the work, done and failed directories must be on the
/// spool's filesystem).
public struct SpoolLayoutError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What is wrong.
    public var message: String
    /// The message.
    public var description: String { message }
}

/// The daemon's directories and the durable claim/commit protocol over them.
///
/// - `SPOOL/` — producers rename finished shards here.
/// - `SPOOL/.smoothd-work/` — claimed shards (renamed here before processing); locked with `flock` while served.
/// - `SPOOL/done/` — shards whose summary is committed (unless `--delete-processed`).
/// - `SPOOL/failed/` — invalid shards.
/// - `OUTPUT/NAME.summary.json`, `OUTPUT/NAME.error.json`, `OUTPUT/totals.json`.
///
/// `Sendable`: the directory handles are immutable and every operation is a system call; claims are made by one
/// task at a time, and commits of distinct instances touch distinct names.
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
    /// The output directory.
    let output: DirectoryHandle
    /// Failures injected by tests (`nil` in production).
    let faults: FaultInjector?

    /// Opens (creating when missing) every directory and takes the spool lock.
    ///
    /// The work directory must belong to the daemon's user: whoever owns it could swap claimed shards. One left
    /// by another user (e.g. created by a producer before the first start) is refused; a mode wider than 0700
    /// is narrowed.
    init(spoolPath: String, outputPath: String, deleteProcessed: Bool, faults: FaultInjector? = nil) throws {
        self.faults = faults
        spool = try DirectoryHandle(path: spoolPath, create: true, faults: faults)
        output = try DirectoryHandle(path: outputPath, create: true, faults: faults)
        work = try DirectoryHandle(parent: spool, name: SpoolStore.workDirectoryName, create: true, mode: 0o700)
        failed = try DirectoryHandle(parent: spool, name: SpoolStore.failedDirectoryName, create: true)
        done = deleteProcessed ? nil : try DirectoryHandle(parent: spool, name: SpoolStore.doneDirectoryName, create: true)
        guard flock(work.fd, LOCK_EX | LOCK_NB) == 0 else {
            if errno == EWOULDBLOCK { throw SpoolLockedError(path: work.path) }
            throw FileSystemError.current("flock", work.path)
        }
        let workInfo = try work.info()
        guard workInfo.owner == UInt32(geteuid()) else {
            throw SpoolLayoutError(message: "\(work.path) belongs to uid \(workInfo.owner), not to this process (uid \(geteuid())); "
                + "remove it (it must be created by smoothd itself)")
        }
        if workInfo.permissions & 0o077 != 0 { _ = fchmod(work.fd, 0o700) }
        let device = try spool.info().device
        for directory in [work, failed] + (done.map { [$0] } ?? []) {
            if try directory.info().device != device {
                throw SpoolLayoutError(message: "\(directory.path) is on another filesystem than \(spool.path); renames would not be atomic")
            }
        }
    }

    /// Whether `instance` is already used by a record, a processed or a claimed shard.
    func isRecorded(_ instance: String) throws(FileSystemError) -> Bool {
        if try output.exists(ShardName.summaryFile(instance)) { return true }
        if try output.exists(ShardName.errorFile(instance)) { return true }
        if try work.exists(instance) { return true }
        if try failed.exists(instance) { return true }
        if let done, try done.exists(instance) { return true }
        return false
    }
}

/// Lets commits start until shutdown abandons in-flight work, and tells when started commits have finished,
/// so that the last totals written include every summary that exists.
final class CommitGate: Sendable {
    private let state = Mutex<(closed: Bool, active: Int)>((false, 0))

    /// Starts a commit; `false` once the gate is closed (the shard is left claimed for the next start).
    func begin() -> Bool {
        state.withLock { s in
            guard !s.closed else { return false }
            s.active += 1
            return true
        }
    }

    /// Ends a commit started with ``begin()``.
    func end() { state.withLock { $0.active -= 1 } }

    /// Refuses further commits.
    func close() { state.withLock { $0.closed = true } }

    /// Commits in progress.
    var active: Int { state.withLock { $0.active } }
}
