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
}

/// An open directory. Every operation goes through `*at` system calls relative to this descriptor and never
/// follows a symbolic link in the last path component, so a producer cannot redirect the daemon elsewhere.
///
/// `Sendable`: the only state is an immutable descriptor and path; the kernel serializes the calls made on it.
final class DirectoryHandle: Sendable {
    /// The open directory descriptor (`O_RDONLY | O_DIRECTORY`).
    let fd: Int32
    /// The path it was opened from (for messages only).
    let path: String

    /// Opens (and with `create`, first creates) the directory at `path`. The path may go through symlinks.
    init(path: String, create: Bool, mode: mode_t = 0o750) throws(FileSystemError) {
        if create, mkdir(path, mode) != 0, errno != EEXIST {
            throw FileSystemError.current("mkdir", path)
        }
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw FileSystemError.current("open", path) }
        self.fd = fd
        self.path = path
    }

    /// Opens (and with `create`, first creates) the subdirectory `name` of `parent`, refusing a symlink.
    init(parent: DirectoryHandle, name: String, create: Bool, mode: mode_t = 0o750) throws(FileSystemError) {
        let full = parent.display(name)
        if create, mkdirat(parent.fd, name, mode) != 0, errno != EEXIST {
            throw FileSystemError.current("mkdir", full)
        }
        let fd = openat(parent.fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { throw FileSystemError.current("open", full) }
        self.fd = fd
        self.path = full
    }

    deinit { close(fd) }

    /// `path/name`, for messages.
    func display(_ name: String) -> String { path.hasSuffix("/") ? path + name : path + "/" + name }

    /// Information about `name` without following a symlink, or `nil` when it does not exist.
    func entry(_ name: String) throws(FileSystemError) -> EntryInfo? {
        var st = stat()
        guard fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 else {
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

    /// Names of all entries but `.` and `..`. Names that are not valid UTF-8 are left out (they cannot be
    /// final shard names and cannot be addressed through `String`).
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
            let name: String? = withUnsafePointer(to: &entry.pointee.d_name) { tuple in
                tuple.withMemoryRebound(to: CChar.self, capacity: MemoryLayout.size(ofValue: tuple.pointee)) {
                    String(validatingCString: $0)
                }
            }
            guard let name, name != ".", name != ".." else { continue }
            result.append(name)
        }
        return result
    }

    /// Renames `name` to `newName` in `destination`. With `replace: false` an existing target is an `EEXIST` error,
    /// atomically where the kernel supports `renameat2(RENAME_NOREPLACE)`.
    func rename(_ name: String, to destination: DirectoryHandle, as newName: String, replace: Bool) throws(FileSystemError) {
        let what = "\(display(name)) -> \(destination.display(newName))"
        if !replace {
            if let renameat2 = RenameAt2.function {
                if renameat2(fd, name, destination.fd, newName, RenameAt2.noReplace) == 0 { return }
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
        guard renameat(fd, name, destination.fd, newName) == 0 else {
            throw FileSystemError.current("rename", what)
        }
    }

    /// Removes the file `name`; a missing file is not an error.
    func unlink(_ name: String) throws(FileSystemError) {
        if unlinkat(fd, name, 0) != 0, errno != ENOENT {
            throw FileSystemError.current("unlink", display(name))
        }
    }

    /// `fsync` of the directory, which makes renames and unlinks in it durable.
    func sync() throws(FileSystemError) {
        guard fsync(fd) == 0 else { throw FileSystemError.current("fsync", path) }
    }

    /// Opens the regular file `name` for reading without following a symlink and without blocking on a FIFO.
    /// Anything other than a regular file is refused with `EFTYPE`-like `EINVAL`.
    func openRegularFile(_ name: String) throws(FileSystemError) -> Int32 {
        let fd = openat(self.fd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
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
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw FileSystemError.current("read", display(name))
            }
            if n == 0 { break }
            result.append(contentsOf: chunk[0..<n])
            if result.count > limit { throw FileSystemError(operation: "read", path: display(name), errorNumber: EFBIG) }
        }
        return result
    }

    /// The temporary name `writeDurably` uses for `name`; recovery removes leftovers that match it.
    static func temporaryName(for name: String) -> String { ".smoothd-" + name + ".tmp" }

    /// Whether `name` is a temporary file left by `writeDurably`.
    static func isTemporaryName(_ name: String) -> Bool { name.hasPrefix(".smoothd-") && name.hasSuffix(".tmp") }

    /// Writes `bytes` to `name` so that, after any crash, `name` holds either its old content or all of `bytes`:
    /// a temporary file, `fsync`, `rename` over `name`, then (with `durable`) `fsync` of this directory.
    func writeAtomically(_ name: String, bytes: [UInt8], durable: Bool = true, mode: mode_t = 0o644) throws(FileSystemError) {
        let temp = DirectoryHandle.temporaryName(for: name)
        var fd = openat(self.fd, temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode)
        if fd < 0, errno == EEXIST {
            try unlink(temp)
            fd = openat(self.fd, temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode)
        }
        guard fd >= 0 else { throw FileSystemError.current("create", display(temp)) }
        var failure: FileSystemError?
        bytes.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let n = write(fd, buffer.baseAddress! + offset, buffer.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    failure = FileSystemError.current("write", display(temp))
                    return
                }
                offset += n
            }
        }
        if failure == nil, durable, fsync(fd) != 0 { failure = FileSystemError.current("fsync", display(temp)) }
        if close(fd) != 0, failure == nil { failure = FileSystemError.current("close", display(temp)) }
        if let failure {
            _ = unlinkat(self.fd, temp, 0)
            throw failure
        }
        guard renameat(self.fd, temp, self.fd, name) == 0 else {
            let error = FileSystemError.current("rename", display(temp) + " -> " + display(name))
            _ = unlinkat(self.fd, temp, 0)
            throw error
        }
        if durable { try sync() }
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
