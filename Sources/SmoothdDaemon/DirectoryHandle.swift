#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// What `fstatat(…, AT_SYMLINK_NOFOLLOW)` says about one directory entry.
struct EntryInfo: Sendable, Equatable {
    /// The kind of entry; symbolic links are reported as such, never followed.
    enum Kind: Sendable, Equatable { case regular, directory, symlink, other }
    /// The entry's kind.
    var kind: Kind
    /// Size in bytes.
    var size: UInt64
    /// Modification time, in nanoseconds since the epoch.
    var modificationNanoseconds: Int64
    /// Device number of the filesystem holding the entry.
    var device: UInt64
    /// Inode number.
    var inode: UInt64 = 0
    /// Owner's user id.
    var owner: UInt32 = 0
    /// Permission bits (`st_mode & 0o7777`).
    var permissions: UInt32 = 0
    /// Status change time (content, owner, mode, links), in nanoseconds since the epoch.
    var changeNanoseconds: Int64 = 0

    /// Inode, size, modification and status change times: what tells a file that changed (or was replaced, or
    /// given another owner or mode) from the one seen earlier.
    var identity: FileIdentity {
        FileIdentity(inode: inode, size: size, modificationNanoseconds: modificationNanoseconds, changeNanoseconds: changeNanoseconds)
    }
}

/// What identifies one version of a file: inode, size, modification time and status change time.
struct FileIdentity: Sendable, Hashable, CustomStringConvertible {
    var inode: UInt64
    var size: UInt64
    var modificationNanoseconds: Int64
    var changeNanoseconds: Int64

    /// The identity of the open file `fd`, or `nil` when `fstat` fails.
    init?(fileDescriptor fd: Int32) {
        var st = stat()
        guard fstat(fd, &st) == 0 else { return nil }
        let info = EntryInfo(st)
        self = info.identity
    }

    init(inode: UInt64, size: UInt64, modificationNanoseconds: Int64, changeNanoseconds: Int64) {
        self.inode = inode
        self.size = size
        self.modificationNanoseconds = modificationNanoseconds
        self.changeNanoseconds = changeNanoseconds
    }

    var description: String { "\(size) bytes, mtime \(modificationNanoseconds) ns" }
}

/// An open directory. Every operation goes through `*at` system calls relative to this descriptor and never
/// follows a symbolic link in the last path component, so a producer cannot redirect the daemon elsewhere.
/// Names are single path components: a plain name, or an escaped key for a name that is not printable UTF-8
/// (see ``ShardName``), which is turned back into the entry's exact bytes for the system call.
///
/// `Sendable`: the only state is an immutable descriptor and path (and the test seam, itself `Sendable`); the
/// kernel serializes the calls made on it.
final class DirectoryHandle: Sendable {
    /// The open directory descriptor (`O_RDONLY | O_DIRECTORY`).
    let fd: Int32
    /// The path it was opened from (for messages only).
    let path: String
    /// Failures injected by tests; `nil` in production.
    let faults: FaultInjector?

    /// Opens (and with `create`, first creates) the directory at `path`. The path may go through symlinks.
    init(path: String, create: Bool, mode: mode_t = 0o750, faults: FaultInjector? = nil) throws(FileSystemError) {
        if create, mkdir(path, mode) != 0, errno != EEXIST {
            throw FileSystemError.current("mkdir", path)
        }
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw FileSystemError.current("open", path) }
        self.fd = fd
        self.path = path
        self.faults = faults
    }

    /// Opens (and with `create`, first creates) the subdirectory `name` of `parent`, refusing a symlink.
    init(parent: DirectoryHandle, name: String, create: Bool, mode: mode_t = 0o750) throws(FileSystemError) {
        let full = parent.display(name)
        if create, withEntryName(name, { mkdirat(parent.fd, $0, mode) }) != 0, errno != EEXIST {
            throw FileSystemError.current("mkdir", full)
        }
        let fd = withEntryName(name) { openat(parent.fd, $0, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW) }
        guard fd >= 0 else { throw FileSystemError.current("open", full) }
        self.fd = fd
        self.path = full
        self.faults = parent.faults
    }

    /// The subdirectory `name` of `parent`, or nil when there is none (a symlink is refused as by ``init(parent:name:create:mode:)``).
    static func openIfPresent(parent: DirectoryHandle, name: String) throws(FileSystemError) -> DirectoryHandle? {
        do {
            return try DirectoryHandle(parent: parent, name: name, create: false)
        } catch {
            if error.errorNumber == ENOENT { return nil }
            throw error
        }
    }

    deinit { close(fd) }

    /// `path/name`, for messages (a key is shown as its display name, which is printable).
    func display(_ name: String) -> String {
        let shown = ShardName.display(name)
        return path.hasSuffix("/") ? path + shown : path + "/" + shown
    }

    /// Information about `name` without following a symlink, or `nil` when it does not exist.
    func entry(_ name: String) throws(FileSystemError) -> EntryInfo? {
        var st = stat()
        guard withEntryName(name, { fstatat(fd, $0, &st, AT_SYMLINK_NOFOLLOW) }) == 0 else {
            if errno == ENOENT { return nil }
            throw FileSystemError.current("stat", display(name))
        }
        return EntryInfo(st)
    }

    /// Information about the directory itself.
    func info() throws(FileSystemError) -> EntryInfo {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw FileSystemError.current("stat", path) }
        return EntryInfo(st)
    }

    /// Whether any entry (of any kind) is called `name`.
    func exists(_ name: String) throws(FileSystemError) -> Bool {
        try entry(name) != nil
    }

    /// Names of all entries but `.` and `..`: plain names, or escaped keys for names that are not printable
    /// UTF-8 (see ``ShardName``).
    func names() throws(FileSystemError) -> [String] {
        let copy = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard copy >= 0 else { throw FileSystemError.current("open", path) }
        guard let dir = fdopendir(copy) else {
            let error = FileSystemError.current("opendir", path)
            close(copy)
            throw error
        }
        defer { closedir(dir) }
        var result: [String] = []
        while true {
            errno = 0
            guard let entry = readdir(dir) else {
                if errno != 0 { throw FileSystemError.current("readdir", path) }
                break
            }
            let name: String = withUnsafePointer(to: &entry.pointee.d_name) { tuple in
                tuple.withMemoryRebound(to: UInt8.self, capacity: MemoryLayout.size(ofValue: tuple.pointee)) { bytes in
                    ShardName.key(forEntryBytes: UnsafeBufferPointer(start: bytes, count: strlen(UnsafeRawPointer(bytes).assumingMemoryBound(to: CChar.self))))
                }
            }
            guard name != ".", name != ".." else { continue }
            result.append(name)
        }
        return result
    }

    /// Renames `name` to `newName` in `destination`. With `replace: false` an existing target is an `EEXIST` error,
    /// atomically where the kernel supports `renameat2(RENAME_NOREPLACE)`.
    func rename(_ name: String, to destination: DirectoryHandle, as newName: String, replace: Bool) throws(FileSystemError) {
        let what = "\(display(name)) -> \(destination.display(newName))"
        if let injected = faults?.check(.rename, what) {
            throw FileSystemError(operation: "rename", path: what, errorNumber: injected)
        }
        if !replace {
            if let renameat2 = RenameAt2.function {
                let result = withEntryName(name) { from in
                    withEntryName(newName) { to in renameat2(fd, from, destination.fd, to, RenameAt2.noReplace) }
                }
                if result == 0 { return }
                let code = errno
                if code != EINVAL && code != ENOSYS {
                    throw FileSystemError(operation: "rename", path: what, errorNumber: code)
                }
            }
            // Fallback (filesystem without RENAME_NOREPLACE): the daemon holds the spool lock, so nothing else of
            // ours creates the target between this check and the rename.
            if try destination.exists(newName) {
                throw FileSystemError(operation: "rename", path: what, errorNumber: EEXIST)
            }
        }
        let result = withEntryName(name) { from in withEntryName(newName) { to in renameat(fd, from, destination.fd, to) } }
        guard result == 0 else {
            throw FileSystemError.current("rename", what)
        }
    }

    /// Removes the file `name`; a missing file is not an error.
    func unlink(_ name: String) throws(FileSystemError) {
        if withEntryName(name, { unlinkat(fd, $0, 0) }) != 0, errno != ENOENT {
            throw FileSystemError.current("unlink", display(name))
        }
    }

    /// `fsync` of the directory, which makes renames and unlinks in it durable.
    func sync() throws(FileSystemError) {
        if let injected = faults?.check(.directorySync, path) {
            throw FileSystemError(operation: "fsync", path: path, errorNumber: injected)
        }
        guard fsync(fd) == 0 else { throw FileSystemError.current("fsync", path) }
    }

    /// Opens the regular file `name` for reading without following a symlink and without blocking on a FIFO.
    /// Anything other than a regular file is refused with `EFTYPE`-like `EINVAL`.
    func openRegularFile(_ name: String) throws(FileSystemError) -> Int32 {
        if let injected = faults?.check(.open, name) {
            throw FileSystemError(operation: "open", path: display(name), errorNumber: injected)
        }
        let fd = withEntryName(name) { openat(self.fd, $0, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY) }
        guard fd >= 0 else { throw FileSystemError.current("open", display(name)) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let error = FileSystemError.current("stat", display(name))
            close(fd)
            throw error
        }
        guard st.st_mode & S_IFMT == S_IFREG else {
            close(fd)
            throw FileSystemError(operation: "open (not a regular file)", path: display(name), errorNumber: EINVAL)
        }
        let flags = fcntl(fd, F_GETFL)
        if flags >= 0 { _ = fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) }
        return fd
    }

    /// Reads the whole regular file `name` (at most `limit` bytes; more is an `EFBIG` error).
    func readFile(_ name: String, limit: Int = 64 << 20) throws(FileSystemError) -> [UInt8] {
        let fd = try openRegularFile(name)
        defer { close(fd) }
        return try readAll(fd, limit: limit, path: display(name))
    }

    /// The temporary name `writeDurably` uses for `name`; recovery removes leftovers that match it.
    static func temporaryName(for name: String) -> String { ".smoothd-" + name + ".tmp" }

    /// Whether `name` is a temporary file left by `writeDurably`.
    static func isTemporaryName(_ name: String) -> Bool { name.hasPrefix(".smoothd-") && name.hasSuffix(".tmp") }

    /// Writes `bytes` to `name` so that, after any crash, `name` holds either its old content or all of `bytes`:
    /// a temporary file, `fsync`, `rename` over `name`, then (with `durable`) `fsync` of this directory.
    ///
    /// Any failure (including `ENOSPC` from `write` or `close`, and `EIO` from `fsync`) is thrown, never ignored,
    /// and leaves no temporary file behind. A failing `fsync` is never retried on the same file (after it the
    /// page cache may no longer hold the data); callers retry the whole write, which starts from a new file.
    /// `name` must be a plain name (the daemon only writes names it made). With `syncDirectory: false` the caller
    /// fsyncs this directory itself (a group commit makes several renames durable with one directory `fsync`).
    func writeAtomically(_ name: String, bytes: [UInt8], durable: Bool = true, syncDirectory: Bool = true, mode: mode_t = 0o644)
        throws(FileSystemError)
    {
        let staged = try stage(name, bytes: bytes, mode: mode, startWriteback: false)
        try staged.finish(durable: durable)
        try staged.install()
        if durable && syncDirectory { try sync() }
    }
}

extension EntryInfo {
    init(_ st: stat) {
        switch st.st_mode & S_IFMT {
        case S_IFREG: kind = .regular
        case S_IFDIR: kind = .directory
        case S_IFLNK: kind = .symlink
        default: kind = .other
        }
        size = UInt64(max(0, st.st_size))
        modificationNanoseconds = Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec)
        device = UInt64(st.st_dev)
        inode = UInt64(st.st_ino)
        owner = UInt32(st.st_uid)
        permissions = UInt32(st.st_mode) & 0o7777
        changeNanoseconds = Int64(st.st_ctim.tv_sec) * 1_000_000_000 + Int64(st.st_ctim.tv_nsec)
    }
}

/// Reads `fd` to its end: at most `limit` bytes (more is an `EFBIG` error); `path` labels errors. Reads into the
/// result directly, sized from `fstat` (a file that grows meanwhile is still read to its end).
func readAll(_ fd: Int32, limit: Int, path: String) throws(FileSystemError) -> [UInt8] {
    var st = stat()
    let expected = fstat(fd, &st) == 0 ? max(0, Int(st.st_size)) : 0
    var result: [UInt8] = []
    var capacity = min(expected, limit) + 1
    while true {
        if result.count == capacity { capacity = min(limit + 1, max(capacity * 2, 64 * 1024)) }
        let filled = result.count
        var failure: Int32 = 0
        var atEnd = false
        result = [UInt8](unsafeUninitializedCapacity: capacity) { buffer, count in
            // Keep what was read so far, then read into the rest.
            if filled > 0 { result.withUnsafeBufferPointer { _ = buffer.initialize(from: $0) } }
            count = filled
            while count < capacity {
                let n = read(fd, buffer.baseAddress! + count, capacity - count)
                if n < 0 {
                    if errno == EINTR { continue }
                    failure = errno
                    return
                }
                if n == 0 { atEnd = true; return }
                count += n
            }
        }
        if failure != 0 { throw FileSystemError(operation: "read", path: path, errorNumber: failure) }
        if result.count > limit { throw FileSystemError(operation: "read", path: path, errorNumber: EFBIG) }
        if atEnd { return result }
    }
}

/// Calls `body` with the NUL-terminated bytes of the directory entry `name` stands for (a plain name, or an
/// escaped key decoded back to the entry's exact bytes). A name is always one path component: one whose bytes
/// would hold a `/` or a NUL, or be `.` or `..` (no shard or record name can), is passed as the empty name,
/// which every call refuses (`ENOENT`), so no name can reach outside the directory.
func withEntryName<T>(_ name: String, _ body: (UnsafePointer<CChar>) throws -> T) rethrows -> T {
    var bytes = ShardName.entryBytes(name)
    if bytes.contains(UInt8(ascii: "/")) || bytes.contains(0) || bytes == Array("..".utf8) || bytes == Array(".".utf8) { bytes = [] }
    bytes.append(0)
    return try bytes.withUnsafeBufferPointer { buffer in
        try buffer.withMemoryRebound(to: CChar.self) { try body($0.baseAddress!) }
    }
}

/// `renameat2(2)`, looked up at run time because Glibc's Swift overlay does not import it.
enum RenameAt2 {
    typealias Function = @convention(c) (Int32, UnsafePointer<CChar>?, Int32, UnsafePointer<CChar>?, UInt32) -> Int32
    /// `RENAME_NOREPLACE` from `<linux/fs.h>`.
    static let noReplace: UInt32 = 1
    /// The libc symbol, or `nil` on a libc without it.
    static let function: Function? = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "renameat2") else { return nil }
        return unsafeBitCast(symbol, to: Function.self)
    }()
}
