#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The `flock` on `OUTPUT/.smoothd-output.lock` that keeps a second daemon off an output directory. The file holds
/// the holder's pid and spool path, so that the refusal can say who holds it.
///
/// `Sendable`: the descriptor is immutable; the lock lives as long as the object.
final class OutputLock: Sendable {
    /// The lock file's name in the output directory (hidden: recovery and totals skip names starting with `.`).
    static let fileName = ".smoothd-output.lock"
    private let fd: Int32

    /// Takes the lock in `output` and writes this process's pid and `spoolPath` into it; throws
    /// ``OutputLockedError`` naming the holder when another process has it.
    ///
    /// The descriptor kept for the lock is read-only (`flock` needs no write access), so that the output
    /// filesystem can still be remounted read-only; the text is written through a second, short-lived one.
    init(in output: DirectoryHandle, spoolPath: String) throws {
        let fd = openat(output.fd, OutputLock.fileName, O_RDONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK, 0o644)
        guard fd >= 0 else { throw FileSystemError.current("open", output.display(OutputLock.fileName)) }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let code = errno
            let holder = OutputLock.holder(fd)
            close(fd)
            if code == EWOULDBLOCK { throw OutputLockedError(output: output.path, holder: holder) }
            throw FileSystemError(operation: "flock", path: output.display(OutputLock.fileName), errorNumber: code)
        }
        let text = Array("pid=\(getpid())\nspool=\(spoolPath)\n".utf8)
        // Best effort: the lock, not the text, is what excludes; the text only improves the message.
        let writer = openat(output.fd, OutputLock.fileName, O_WRONLY | O_TRUNC | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)
        if writer >= 0 {
            _ = text.withUnsafeBytes { write(writer, $0.baseAddress, $0.count) }
            close(writer)
        }
        self.fd = fd
    }

    deinit { close(fd) }

    /// `pid N, watching SPOOL` from the lock file's text, or `unknown` when it holds neither.
    static func holder(_ fd: Int32) -> String {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard n > 0 else { return "unknown" }
        var pid: String?
        var spool: String?
        for line in String(decoding: buffer[0..<n], as: UTF8.self).split(separator: "\n") {
            if line.hasPrefix("pid=") { pid = String(line.dropFirst(4)) }
            if line.hasPrefix("spool=") { spool = String(line.dropFirst(6)) }
        }
        switch (pid, spool) {
        case let (pid?, spool?): return "pid \(pid), watching \(spool)"
        case let (pid?, nil): return "pid \(pid)"
        case let (nil, spool?): return "watching \(spool)"
        default: return "unknown"
        }
    }
}

/// Linux's `O_PATH` (the same on every architecture), which Glibc's Swift overlay does not import.
let openPathOnly: Int32 = 0o10000000

/// A directory's device and inode: what tells one directory from another, whatever path reaches it.
struct DirectoryIdentity: Sendable, Hashable {
    var device: UInt64
    var inode: UInt64
}

/// What became of the directory an open handle was opened from.
enum DirectoryPathStatus: Sendable, Equatable {
    /// The path still names the open directory.
    case intact
    /// The open directory has no links left (`rm -rf`), whatever the path names now.
    case deleted
    /// The path names another directory, or nothing, or something else (`mv` away, then `mkdir`).
    case replaced
}

extension DirectoryHandle {
    /// The directory's device and inode.
    func identity() throws(FileSystemError) -> DirectoryIdentity {
        let entry = try self.info()
        return DirectoryIdentity(device: entry.device, inode: entry.inode)
    }

    /// Whether the directory was deleted, or its path now leads elsewhere: `fstat` of the descriptor (`st_nlink`
    /// is 0 once it is removed, although the open descriptor keeps it alive and no inotify event comes) and
    /// `stat` of the path (following symlinks, as the open did) compared by device and inode.
    func pathStatus() -> DirectoryPathStatus {
        var own = stat()
        guard fstat(fd, &own) == 0 else { return .deleted }
        if own.st_nlink == 0 { return .deleted }
        var named = stat()
        guard stat(path, &named) == 0, named.st_dev == own.st_dev, named.st_ino == own.st_ino else { return .replaced }
        return .intact
    }

    /// The identities of this directory and of every directory above it, up to the root (`..` of the root is
    /// the root itself). `O_PATH` descriptors: only search permission is needed on the way up.
    func ancestry() throws(FileSystemError) -> [DirectoryIdentity] {
        var result = [try identity()]
        var current = openat(fd, ".", openPathOnly | O_DIRECTORY | O_CLOEXEC)
        guard current >= 0 else { throw FileSystemError.current("open", path) }
        defer { close(current) }
        for _ in 0..<4096 {
            let parent = openat(current, "..", openPathOnly | O_DIRECTORY | O_CLOEXEC)
            guard parent >= 0 else { throw FileSystemError.current("open", path + "/..") }
            close(current)
            current = parent
            var st = stat()
            guard fstat(parent, &st) == 0 else { throw FileSystemError.current("stat", path + "/..") }
            let identity = DirectoryIdentity(device: UInt64(st.st_dev), inode: UInt64(st.st_ino))
            if identity == result.last { break }
            result.append(identity)
        }
        return result
    }
}

extension SpoolStore {
    /// Refuses layouts in which the daemon would read its own records as shards, or producers could write
    /// records: an output directory that is the spool, or lies inside (or is) the spool's `.smoothd-work/`,
    /// `done/` or `failed/`; and a spool that lies inside another spool's `.smoothd-work/`, `done/` or `failed/`.
    /// Directories are compared by device and inode (so symlinks, `..` and bind mounts cannot hide an overlap);
    /// only the last check reads names, from the spool's resolved real path.
    static func checkOverlap(spool: DirectoryHandle, work: DirectoryHandle, done: DirectoryHandle?, failed: DirectoryHandle,
                             output: DirectoryHandle) throws {
        let outputIdentity = try output.identity()
        if outputIdentity == (try spool.identity()) {
            throw SpoolLayoutError(description: "--output \(output.path) is the spool directory (--spool \(spool.path)); anyone who can write "
                + "the spool could add records to the totals: use a directory outside the spool")
        }
        let ancestry = try output.ancestry()
        for own in [work, failed] + (done.map { [$0] } ?? []) {
            guard ancestry.contains(try own.identity()) else { continue }
            throw SpoolLayoutError(description: "--output \(output.path) is inside \(own.path), a directory smoothd keeps for shards "
                + "(--spool \(spool.path)); use a directory outside the spool")
        }
        guard let resolved = realpath(spool.path, nil) else { return }
        let real = String(cString: resolved)
        free(resolved)
        var parent = ""
        for component in real.split(separator: "/") {
            let name = String(component)
            var st = stat()
            let inOtherSpool = name == SpoolStore.workDirectoryName
                || ((name == SpoolStore.doneDirectoryName || name == SpoolStore.failedDirectoryName)
                    && lstat((parent.isEmpty ? "" : parent) + "/" + SpoolStore.workDirectoryName, &st) == 0 && st.st_mode & S_IFMT == S_IFDIR)
            if inOtherSpool {
                throw SpoolLayoutError(description: "--spool \(spool.path) is inside \(parent.isEmpty ? "/" : parent)/\(name), which another "
                    + "spool's smoothd keeps for shards; use a directory of its own")
            }
            parent += "/" + name
        }
    }
}
