#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A file written under its temporary name (``DirectoryHandle/temporaryName(for:)``) and still open: not yet
/// durable and not yet in place. ``DirectoryHandle/writeAtomically(_:bytes:durable:syncDirectory:mode:)`` is
/// ``DirectoryHandle/stage(_:bytes:mode:startWriteback:)``, ``finish(durable:)``, ``install()`` and a directory
/// `fsync`; a group commit runs the same steps for many files with one directory `fsync` for all of them.
///
/// Each staged file has one owner, which calls ``finish(durable:)`` exactly once (it closes the descriptor), then
/// ``install()`` or ``remove()`` at most once.
struct StagedFile: Sendable {
    /// The directory it is written in.
    let directory: DirectoryHandle
    /// Its final name.
    let name: String
    /// The open descriptor of the temporary file.
    let fd: Int32

    /// The temporary name it is written under.
    var temporaryName: String { DirectoryHandle.temporaryName(for: name) }

    /// With `durable`, `fsync`s the data; then closes the file. Any failure removes the temporary file and is
    /// thrown; a failed `fsync` is never retried on the same file (callers start again from a new one).
    func finish(durable: Bool) throws(FileSystemError) {
        var failure: FileSystemError?
        if durable {
            if let injected = directory.faults?.check(.fileSync, name) {
                failure = FileSystemError(operation: "fsync", path: directory.display(temporaryName), errorNumber: injected)
            } else if fsync(fd) != 0 {
                failure = FileSystemError.current("fsync", directory.display(temporaryName))
            }
        }
        if close(fd) != 0, failure == nil { failure = FileSystemError.current("close", directory.display(temporaryName)) }
        if let failure {
            _ = unlinkat(directory.fd, temporaryName, 0)
            throw failure
        }
    }

    /// Removes the temporary file once ``finish(durable:)`` has closed it (a commit given up before its rename).
    func remove() {
        _ = unlinkat(directory.fd, temporaryName, 0)
    }

    /// Renames the (closed) temporary file over its final name; on failure the temporary file is removed. Durable
    /// only once the directory is `fsync`ed.
    func install() throws(FileSystemError) {
        let what = directory.display(temporaryName) + " -> " + directory.display(name)
        if let injected = directory.faults?.check(.rename, name) {
            _ = unlinkat(directory.fd, temporaryName, 0)
            throw FileSystemError(operation: "rename", path: what, errorNumber: injected)
        }
        guard renameat(directory.fd, temporaryName, directory.fd, name) == 0 else {
            let error = FileSystemError.current("rename", what)
            _ = unlinkat(directory.fd, temporaryName, 0)
            throw error
        }
    }
}

extension DirectoryHandle {
    /// Writes `bytes` to a new temporary file for `name` and leaves it open (see ``StagedFile``). With
    /// `startWriteback`, the kernel is asked to start writing the data out now (`sync_file_range`, a hint with no
    /// durability of its own), so that the `fsync`s of a batch of files, made one after another later, share one
    /// journal commit instead of one each. Any failure (`ENOSPC` from `write` included) is thrown and leaves no
    /// temporary file behind. `name` must be a plain name.
    func stage(_ name: String, bytes: [UInt8], mode: mode_t = 0o644, startWriteback: Bool) throws(FileSystemError) -> StagedFile {
        precondition(!ShardName.isKey(name) && !name.utf8.contains(UInt8(ascii: "/")), "stage needs a plain file name")
        let temp = DirectoryHandle.temporaryName(for: name)
        if let injected = faults?.check(.create, name) {
            throw FileSystemError(operation: "create", path: display(temp), errorNumber: injected)
        }
        var fd = openat(self.fd, temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode)
        if fd < 0, errno == EEXIST {
            try unlink(temp)
            fd = openat(self.fd, temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode)
        }
        guard fd >= 0 else { throw FileSystemError.current("create", display(temp)) }
        var failure: FileSystemError?
        let faults = self.faults
        bytes.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                if let injected = faults?.check(.write, name) {
                    // As a full disk does: part of the data lands, then the call fails.
                    _ = write(fd, buffer.baseAddress! + offset, min(512, buffer.count - offset))
                    failure = FileSystemError(operation: "write", path: display(temp), errorNumber: injected)
                    return
                }
                let n = write(fd, buffer.baseAddress! + offset, buffer.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    failure = FileSystemError.current("write", display(temp))
                    return
                }
                offset += n
            }
        }
        if let failure {
            close(fd)
            _ = unlinkat(self.fd, temp, 0)
            throw failure
        }
        if startWriteback, let syncFileRange = SyncFileRange.function {
            // Only a hint: an error here is met again, and reported, by the fsync that follows.
            _ = syncFileRange(fd, 0, 0, SyncFileRange.write)
        }
        return StagedFile(directory: self, name: name, fd: fd)
    }
}

/// `sync_file_range(2)`, looked up at run time because Glibc's Swift overlay does not import it.
enum SyncFileRange {
    typealias Function = @convention(c) (Int32, Int64, Int64, UInt32) -> Int32
    /// `SYNC_FILE_RANGE_WRITE` from `<fcntl.h>`: start writeback of dirty pages, do not wait.
    static let write: UInt32 = 2
    /// The libc symbol, or `nil` on a libc without it.
    static let function: Function? = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "sync_file_range") else { return nil }
        return unsafeBitCast(symbol, to: Function.self)
    }()
}
