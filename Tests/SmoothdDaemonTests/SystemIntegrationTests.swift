#if canImport(Glibc)
import Glibc
#endif
import Logging
import Synchronization
import Testing

@testable import SmoothdDaemon

@Suite("sd_notify, journald logs, inotify")
struct SystemIntegrationTests {
    @Test(arguments: [false, true])
    func notifierReachesPathAndAbstractSockets(abstract: Bool) {
        let dir = TempDirectory()
        defer { dir.remove() }
        let receiver = NotifyReceiver(abstract: abstract, directory: dir.path)
        defer { receiver.close() }
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": receiver.address])
        #expect(notifier.isEnabled)
        #expect(notifier.ready(status: "watching"))
        #expect(notifier.watchdog())
        #expect(notifier.stopping(status: "bye"))
        #expect(eventually(timeout: 5) { receiver.poll().count == 3 })
        #expect(receiver.poll() == ["READY=1\nSTATUS=watching", "WATCHDOG=1", "STOPPING=1\nSTATUS=bye"])
    }

    @Test func notifierIsSilentWithoutSocket() {
        let notifier = SystemdNotifier(environment: [:])
        #expect(!notifier.isEnabled)
        #expect(!notifier.ready(status: "x"))
        #expect(notifier.watchdogInterval == nil)
        #expect(!SystemdNotifier(environment: ["NOTIFY_SOCKET": "relative/path"]).isEnabled)
    }

    @Test func watchdogIntervalHonoursPid() {
        let mine = SystemdNotifier(environment: ["WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "\(getpid())"])
        #expect(mine.watchdogInterval == .seconds(2))
        let other = SystemdNotifier(environment: ["WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"])
        #expect(other.watchdogInterval == nil)
        #expect(SystemdNotifier(environment: ["WATCHDOG_USEC": "500000"]).watchdogInterval == .milliseconds(500))
    }

    @Test func journaldLinesCarryPriorityInsteadOfTimestamp() {
        let lines = Mutex<[String]>([])
        var logger = Logger(label: "t") { _ in
            JournalLogHandler(journald: true, logLevel: .debug) { line in lines.withLock { $0.append(line) } }
        }
        logger[metadataKey: "unit"] = "smoothd"
        logger.error("cannot commit shard", metadata: ["shard": "a.lshd.zst", "error": "disk full"])
        logger.info("shard processed", metadata: ["shard": "b.lshd.zst"])
        logger.debug("detail")
        let got = lines.withLock { $0 }
        #expect(got == [
            "<3>cannot commit shard error=\"disk full\" shard=a.lshd.zst unit=smoothd",
            "<6>shard processed shard=b.lshd.zst unit=smoothd",
            "<7>detail unit=smoothd",
        ])
        let plain = JournalLogHandler(journald: false).format(level: .warning, message: "x", metadata: nil)
        #expect(plain.hasSuffix("Z warning x"))
        #expect(plain.first?.isNumber == true)
        #expect(!JournalLogHandler.isJournalStream(environment: ["JOURNAL_STREAM": "1:2"]))
    }

    @Test func inotifyReportsRenamesAndClosedWrites() throws {
        let dir = TempDirectory()
        defer { dir.remove() }
        let watcher = try InotifyWatcher(directory: dir.path)
        let events = Mutex<[WatchEvent]>([])
        let thread = TestThread { watcher.run { e in events.withLock { $0.append(e) } } }
        thread.start()
        try Files.write([1, 2, 3], to: dir.sub(".a.zst.part"))
        #expect(rename(dir.sub(".a.zst.part"), dir.sub("a.zst")) == 0)
        mkdir(dir.sub("subdir"), 0o755)
        #expect(eventually(timeout: 5) {
            events.withLock { $0.contains(.names(["a.zst"])) || $0.contains { if case .names(let n) = $0 { return n.contains("a.zst") }; return false } }
        })
        watcher.stop()
        #expect(eventually(timeout: 5) { thread.isFinished })
        let all = events.withLock { $0 }.flatMap { e -> [String] in if case .names(let n) = e { return n }; return [] }
        #expect(all.contains(".a.zst.part"), "close-write of the temporary name is reported (and filtered later)")
        #expect(!all.contains("subdir"))
    }

    @Test func inotifyRecordsAreParsed() {
        func record(mask: Int32, name: String) -> [UInt8] {
            var bytes: [UInt8] = []
            func le32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
            let padded = (name.utf8.count + 1 + 3) / 4 * 4
            le32(1); le32(UInt32(bitPattern: mask)); le32(0); le32(UInt32(name.isEmpty ? 0 : padded))
            if !name.isEmpty { bytes += Array(name.utf8) + [UInt8](repeating: 0, count: padded - name.utf8.count) }
            return bytes
        }
        let buffer = record(mask: Int32(IN_MOVED_TO), name: "a.zst") + record(mask: Int32(IN_Q_OVERFLOW), name: "")
            + record(mask: Int32(IN_CLOSE_WRITE), name: "b.zst") + record(mask: Int32(IN_MOVED_TO | IN_ISDIR), name: "dir.zst")
        let parsed = buffer.withUnsafeBytes { InotifyWatcher.parse($0) }
        #expect(parsed.names == ["a.zst", "b.zst"])
        #expect(parsed.overflow)
        #expect(parsed.lost == nil)
    }

    @Test func inotifyReportsALostWatch() throws {
        let dir = TempDirectory()
        defer { dir.remove() }
        let spool = dir.sub("spool")
        mkdir(spool, 0o755)
        let watcher = try InotifyWatcher(directory: spool)
        let events = Mutex<[WatchEvent]>([])
        let thread = TestThread { watcher.run { e in events.withLock { $0.append(e) } } }
        thread.start()
        rmdir(spool)
        #expect(eventually(timeout: 5) { thread.isFinished })
        #expect(events.withLock { $0.contains { if case .lost = $0 { return true }; return false } })
    }
}

/// A plain thread for blocking loops in tests.
final class TestThread: Sendable {
    private let done = Mutex(false)
    private let body: @Sendable () -> Void
    init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    func start() {
        let box = Unmanaged.passRetained(self)
        var tid = pthread_t()
        pthread_create(&tid, nil, { raw in
            let me = Unmanaged<TestThread>.fromOpaque(raw!).takeRetainedValue()
            me.body()
            me.done.withLock { $0 = true }
            return nil
        }, box.toOpaque())
        pthread_detach(tid)
    }
    var isFinished: Bool { done.withLock { $0 } }
}
