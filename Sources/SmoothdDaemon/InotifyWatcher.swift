#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// What the spool watcher reports.
enum WatchEvent: Sendable, Equatable {
    /// Entries that were renamed into the spool, created or linked there, or closed after writing (names only; not
    /// yet checked). Names
    /// that are not printable UTF-8 come as escaped keys (see ``ShardName``).
    case names([String])
    /// The kernel's event queue overflowed: events were lost and the spool must be rescanned.
    case overflow
    /// The watch ended because the spool directory was deleted, moved or unmounted.
    case lost(String)
}

/// An inotify watch on the spool directory for `IN_MOVED_TO`, `IN_CLOSE_WRITE` and `IN_CREATE`, read on a thread of
/// its own. (`IN_CREATE` also reports files a producer creates under their final name and is still writing: the
/// growing-file checks of the commit handle those.)
///
/// `Sendable`: the descriptors are immutable; `run` is called from one thread and `stop` only writes one byte to
/// the self-pipe, which the kernel makes safe from any thread.
final class InotifyWatcher: Sendable {
    private let inotifyFD: Int32
    /// The read and write ends of the self-pipe that wakes `run` for `stop`.
    private let wakeRead: Int32
    private let wakeWrite: Int32
    /// The watched directory.
    let directory: String

    /// Starts watching `directory`.
    init(directory: String) throws(FileSystemError) {
        let fd = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
        guard fd >= 0 else { throw FileSystemError.current("inotify_init1", directory) }
        // IN_CREATE: a shard published with link(2), or O_TMPFILE + linkat, brings neither IN_MOVED_TO nor
        // IN_CLOSE_WRITE in the spool.
        let mask = UInt32(IN_MOVED_TO | IN_CLOSE_WRITE | IN_CREATE | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)
        guard inotify_add_watch(fd, directory, mask) >= 0 else {
            let error = FileSystemError.current("inotify_add_watch", directory)
            close(fd)
            throw error
        }
        var pipeFDs: [Int32] = [-1, -1]
        guard pipe(&pipeFDs) == 0 else {
            let error = FileSystemError.current("pipe", directory)
            close(fd)
            throw error
        }
        for end in pipeFDs {
            _ = fcntl(end, F_SETFD, FD_CLOEXEC)
            _ = fcntl(end, F_SETFL, fcntl(end, F_GETFL) | O_NONBLOCK)
        }
        inotifyFD = fd
        wakeRead = pipeFDs[0]
        wakeWrite = pipeFDs[1]
        self.directory = directory
    }

    deinit {
        close(inotifyFD)
        close(wakeRead)
        close(wakeWrite)
    }

    /// Makes `run` return soon, from any thread.
    func stop() {
        var one: UInt8 = 1
        _ = write(wakeWrite, &one, 1)
    }

    /// Blocks reading events and hands them to `emit` until ``stop()`` is called or the watch is lost.
    func run(emit: (WatchEvent) -> Void) {
        let capacity = 64 * 1024
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: capacity, alignment: 8)
        defer { buffer.deallocate() }
        var fds = [pollfd(fd: inotifyFD, events: Int16(POLLIN), revents: 0), pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0)]
        while true {
            fds[0].revents = 0
            fds[1].revents = 0
            let ready = poll(&fds, 2, -1)
            if ready < 0 {
                if errno == EINTR { continue }
                emit(.lost("poll: \(String(cString: strerror(errno)))"))
                return
            }
            if fds[1].revents != 0 { return }
            guard fds[0].revents != 0 else { continue }
            while true {
                let n = read(inotifyFD, buffer.baseAddress, capacity)
                if n < 0 {
                    if errno == EINTR { continue }
                    if errno == EAGAIN || errno == EWOULDBLOCK { break }
                    emit(.lost("read inotify: \(String(cString: strerror(errno)))"))
                    return
                }
                if n == 0 { break }
                let (names, overflow, lost) = InotifyWatcher.parse(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
                if overflow { emit(.overflow) }
                if !names.isEmpty { emit(.names(names)) }
                if let lost {
                    emit(.lost(lost))
                    return
                }
            }
        }
    }

    /// Splits a buffer of `struct inotify_event` records.
    static func parse(_ bytes: UnsafeRawBufferPointer) -> (names: [String], overflow: Bool, lost: String?) {
        var names: [String] = []
        var overflow = false
        var lost: String?
        var offset = 0
        let header = 16  // wd, mask, cookie, len
        while offset + header <= bytes.count {
            let mask = bytes.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self)
            let length = Int(bytes.loadUnaligned(fromByteOffset: offset + 12, as: UInt32.self))
            let nameStart = offset + header
            guard nameStart + length <= bytes.count else { break }
            if mask & UInt32(IN_Q_OVERFLOW) != 0 { overflow = true }
            if mask & UInt32(IN_DELETE_SELF | IN_MOVE_SELF | IN_UNMOUNT | IN_IGNORED) != 0 {
                lost = "the spool directory was deleted, moved or unmounted"
            }
            if length > 0, mask & UInt32(IN_ISDIR) == 0 {
                let raw = bytes[nameStart..<(nameStart + length)]
                let end = raw.firstIndex(of: 0) ?? raw.endIndex
                if end > raw.startIndex { names.append(ShardName.key(forEntryBytes: raw[raw.startIndex..<end])) }
            }
            offset = nameStart + length
        }
        return (names, overflow, lost)
    }
}
