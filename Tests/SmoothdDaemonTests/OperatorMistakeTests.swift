#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging
import SmoothdJSON
import SmoothdMetrics
import Testing

@testable import SmoothdDaemon

/// Operator mistakes against the directory layer: two daemons on one output, overlapping directories,
/// `done/` and `failed/` made by someone else.
@Suite("Operator mistakes (directories)")
struct OperatorDirectoryTests {
    /// A second daemon on the same output directory (with another spool) is refused, and the message names the
    /// spool the holder watches and its pid; once the holder is gone the output can be used again.
    @Test func aSecondDaemonOnTheSameOutputIsRefusedNamingTheHolder() throws {
        let dir = TempDirectory()
        defer { dir.remove() }
        var first: SpoolStore? = try SpoolStore(spoolPath: dir.sub("spool1"), outputPath: dir.sub("out"), deleteProcessed: false)
        do {
            _ = try SpoolStore(spoolPath: dir.sub("spool2"), outputPath: dir.sub("out"), deleteProcessed: false)
            Issue.record("a second daemon on the same output was accepted")
        } catch {
            let message = "\(error)"
            #expect(message.contains(dir.sub("spool1")), "\(message)")
            #expect(message.contains("pid \(getpid())"), "\(message)")
            #expect(message.contains(dir.sub("out")), "\(message)")
        }
        #expect(first != nil)
        first = nil
        _ = try SpoolStore(spoolPath: dir.sub("spool2"), outputPath: dir.sub("out"), deleteProcessed: false)
    }

    /// An output directory that is the spool, or lies inside the daemon's own `.smoothd-work/`, `done/` or
    /// `failed/` (also when reached through a symlink), and a spool that is another spool's `.smoothd-work/`,
    /// `done/` or `failed/`, are refused at start.
    @Test func overlappingSpoolAndOutputAreRefused() throws {
        struct Case { var label: String; var spool: String; var output: String }
        let dir = TempDirectory()
        defer { dir.remove() }
        let s = dir.sub("spool")
        for name in ["", "/.smoothd-work", "/done", "/done/deeper", "/failed"] { mkdir(s + name, 0o755) }
        mkdir(dir.sub("other"), 0o755)
        mkdir(dir.sub("other/.smoothd-work"), 0o700)
        mkdir(dir.sub("other/done"), 0o755)
        #expect(symlink(s, dir.sub("spool-link")) == 0)
        let cases = [
            Case(label: "output is the spool", spool: s, output: s),
            Case(label: "output is the spool, with a trailing slash", spool: s, output: s + "/"),
            Case(label: "output is the spool through a symlink", spool: s, output: dir.sub("spool-link")),
            Case(label: "output is the work directory", spool: s, output: s + "/.smoothd-work"),
            Case(label: "output is done/", spool: s, output: s + "/done"),
            Case(label: "output is inside done/", spool: s, output: s + "/done/deeper"),
            Case(label: "output is failed/", spool: s, output: s + "/failed"),
            Case(label: "output is failed/ through a symlink", spool: s, output: dir.sub("spool-link") + "/failed"),
            Case(label: "spool is another spool's work directory", spool: dir.sub("other/.smoothd-work"), output: dir.sub("out")),
            Case(label: "spool is another spool's done/", spool: dir.sub("other/done"), output: dir.sub("out")),
        ]
        for c in cases {
            do {
                _ = try SpoolStore(spoolPath: c.spool, outputPath: c.output, deleteProcessed: false)
                Issue.record("accepted: \(c.label)")
            } catch {
                #expect("\(error)".contains("--output") || "\(error)".contains("--spool"), "\(c.label): \(error)")
            }
        }
        // The ordinary layout is accepted.
        _ = try SpoolStore(spoolPath: s, outputPath: dir.sub("out"), deleteProcessed: false)
    }

    /// `done/` or `failed/` that belongs to another user (a producer that made it could later rewrite processed
    /// shards) is refused with a message naming it, as `.smoothd-work/` is.
    @Test(.enabled(if: Privileges.isRoot, "needs root to chown"))
    func doneOrFailedOwnedByAnotherUserIsRefused() throws {
        for victim in ["done", "failed"] {
            let dir = TempDirectory()
            defer { dir.remove() }
            let spool = dir.sub("spool")
            #expect(mkdir(spool, 0o755) == 0 && mkdir(spool + "/" + victim, 0o755) == 0)
            #expect(chown(spool + "/" + victim, Privileges.unprivilegedID, Privileges.unprivilegedID) == 0)
            do {
                _ = try SpoolStore(spoolPath: spool, outputPath: dir.sub("out"), deleteProcessed: false)
                Issue.record("\(victim)/ of another user was accepted")
            } catch {
                #expect("\(error)".contains(spool + "/" + victim) && "\(error)".contains("uid \(Privileges.unprivilegedID)"), "\(error)")
            }
        }
    }

    /// `/healthz` gives the reason of an error stop (a deleted spool), not just `stopping`.
    @Test func healthNamesTheReasonOfAnErrorStop() {
        let health = DaemonHealth()
        health.setReady(true)
        #expect(health.unhealthyReason == nil)
        health.setProblem("the spool directory /s was deleted")
        health.setStopping()
        #expect(health.unhealthyReason == "stopping: the spool directory /s was deleted")
    }

    /// `done/` and `failed/` writable by group or others are narrowed at start (like `.smoothd-work/`).
    @Test func doneAndFailedWritableByOthersAreNarrowed() throws {
        let dir = TempDirectory()
        defer { dir.remove() }
        let spool = dir.sub("spool")
        #expect(mkdir(spool, 0o755) == 0)
        for victim in ["done", "failed"] {
            #expect(mkdir(spool + "/" + victim, 0o755) == 0 && chmod(spool + "/" + victim, 0o777) == 0)
        }
        _ = try SpoolStore(spoolPath: spool, outputPath: dir.sub("out"), deleteProcessed: false)
        for victim in ["done", "failed"] {
            var st = stat()
            #expect(stat(spool + "/" + victim, &st) == 0)
            #expect(st.st_mode & 0o022 == 0, "\(victim)/ is still mode \(String(st.st_mode & 0o7777, radix: 8))")
        }
    }
}

/// The quarantine of overlong names through the fault seam: every interruption between its steps leaves exactly
/// one record, counted once, and the file in `failed/`.
@Suite("Overlong names (state machine)")
struct OverlongQuarantineTests {
    let options = MetricOptions()
    let name = String(repeating: "x", count: 240) + ".lshd.zst"

    func start(_ dir: TempDirectory, faults: FaultInjector? = nil) throws -> (SpoolStore, TotalsFile) {
        try startStore(dir, faults: faults, options: options)
    }

    /// Drops a valid three-row shard (rows from `seed`) under the overlong `name`.
    func dropOverlongShard(_ dir: TempDirectory, seed: UInt64) throws {
        try Files.dropRaw(try ShardFactory.valid(rows: 3, seed: seed), nameBytes: Array(name.utf8), in: dir.sub("spool"))
    }

    /// Starts a store with `faults`, then drops the first shard under the overlong `name`.
    func startWithOverlongShard(_ dir: TempDirectory, faults: FaultInjector) throws -> (SpoolStore, TotalsFile) {
        let started = try start(dir, faults: faults)
        try dropOverlongShard(dir, seed: 1)
        return started
    }

    func expectOneRecordInFailed(_ dir: TempDirectory, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let out = dir.sub("out"), spool = dir.sub("spool")
        let records = Files.list(out).filter { $0.hasSuffix(".error.json") }
        #expect(records == [ShardName.shortened(name) + ".error.json"], sourceLocation: sourceLocation)
        #expect(Files.list(spool + "/failed") == [ShardName.shortened(name)], sourceLocation: sourceLocation)
        #expect(!Files.exists(spool + "/" + name), sourceLocation: sourceLocation)
        #expect(try Files.json(out + "/totals.json")["shards_failed"] == .int(1), sourceLocation: sourceLocation)
        #expect(try Files.json(out + "/" + records[0])["shard"]?.stringValue == name, sourceLocation: sourceLocation)
        try expectTotalsMatchRecords(output: out, options: options, sourceLocation: sourceLocation)
    }

    @Test func moveFailsOnceThenSucceeds() throws {
        let dir = TempDirectory()
        defer { dir.remove() }
        let faults = FaultInjector()
        let (store, totals) = try startWithOverlongShard(dir, faults: faults)
        #expect(ShardName.isOverlong(name) && !ShardName.isFinal(name))
        faults.fail(.rename, with: EIO, matching: "failed/", times: 1)
        guard case .failed = store.quarantineOverlong(name, totals: totals, gate: CommitGate()) else { Issue.record("the move did not fail"); return }
        guard case .quarantined = store.quarantineOverlong(name, totals: totals, gate: CommitGate()) else { Issue.record("not quarantined"); return }
        try expectOneRecordInFailed(dir)
    }

    @Test func directoryFsyncFailsAfterTheRecordThenSucceeds() throws {
        let dir = TempDirectory()
        defer { dir.remove() }
        let faults = FaultInjector()
        let (store, totals) = try startWithOverlongShard(dir, faults: faults)
        faults.fail(.directorySync, with: EIO, matching: dir.sub("out"), times: 1)
        guard case .failed = store.quarantineOverlong(name, totals: totals, gate: CommitGate()) else { Issue.record("the fsync did not fail"); return }
        #expect(try Files.json(dir.sub("out/totals.json"))["shards_failed"] == .int(0), "not counted before its record is durable")
        guard case .quarantined = store.quarantineOverlong(name, totals: totals, gate: CommitGate()) else { Issue.record("not quarantined"); return }
        try expectOneRecordInFailed(dir)
    }

    /// A crash after the record and before the move: the next run (totals rebuilt from the records) finishes the
    /// move without a second record or count.
    @Test func crashBetweenRecordAndMove() throws {
        let dir = TempDirectory()
        defer { dir.remove() }
        do {
            let faults = FaultInjector()
            let (store, totals) = try startWithOverlongShard(dir, faults: faults)
            faults.fail(.rename, with: EIO, matching: "failed/")
            guard case .failed = store.quarantineOverlong(name, totals: totals, gate: CommitGate()) else { Issue.record("the move did not fail"); return }
        }
        let (store, totals) = try start(dir)
        guard case .quarantined = store.quarantineOverlong(name, totals: totals, gate: CommitGate()) else { Issue.record("not quarantined"); return }
        try expectOneRecordInFailed(dir)
        // The same long name again is a second shard, recorded as SHORT~2.
        try dropOverlongShard(dir, seed: 2)
        guard case .quarantined(let again, _) = store.quarantineOverlong(name, totals: totals, gate: CommitGate()) else { Issue.record("not quarantined"); return }
        #expect(again.instance == ShardName.shortened(name) + "~2")
        #expect(try Files.json(dir.sub("out/totals.json"))["shards_failed"] == .int(2))
    }

    @Test func shortenedNamesAreBoundedAndKeepEscapesWhole() {
        let long = "/" + String(repeating: "%FF", count: 200) + ".zst"
        let short = ShardName.shortened(long)
        #expect(short.hasPrefix(String(repeating: "%FF", count: 53) + "-"), "\(short)")
        #expect(short.hasSuffix(".name-too-long") && short.utf8.count <= 191)
        #expect(ShardName.shortened(long) == short, "deterministic")
        #expect(ShardName.shortened("/" + String(repeating: "%FE", count: 200) + ".zst") != short)
        #expect(ShardName.maximumLength == 221)
    }
}

/// Operator mistakes against the real binary: signals, deleted directories, a busy port, overlong names,
/// `link(2)` publication, and the systemd STATUS line.
@Suite("Operator mistakes (real process)", .serialized)
struct OperatorProcessTests {
    let options = MetricOptions()

    /// Runs `body` with a daemon started in a fresh temporary directory (`DIR/spool`, `DIR/out`, no metrics server,
    /// `extra` arguments) once it has sent `READY=1`; then closes the notify socket and removes the directory.
    func withReadyDaemon(_ extra: [String] = [], _ body: (TempDirectory, DaemonProcess, NotifyReceiver) throws -> Void) throws {
        let dir = TempDirectory()
        defer { dir.remove() }
        let receiver = NotifyReceiver(abstract: true, directory: dir.path)
        defer { receiver.close() }
        let daemon = try DaemonProcess(servingIn: dir, extraArgs: extra, environment: ["NOTIFY_SOCKET": receiver.address])
        #expect(eventually { receiver.received("READY=1") }, "\(daemon.log)")
        try body(dir, daemon, receiver)
    }

    /// SIGHUP (a reload), SIGUSR1, SIGUSR2 and SIGALRM do not kill the daemon: it keeps processing shards, logs
    /// the SIGHUP, and still stops with exit code 0 on SIGTERM.
    @Test func hangupUserSignalsAndAlarmDoNotKillTheDaemon() throws {
        try withReadyDaemon { dir, daemon, _ in
            let spool = dir.sub("spool"), out = dir.sub("out")
            for (index, number) in [SIGHUP, SIGUSR1, SIGUSR2, SIGALRM, SIGHUP, SIGUSR1].enumerated() {
                daemon.signal(number)
                try Files.drop(try ShardFactory.valid(rows: 10 + index, seed: UInt64(index)), named: "s\(index).lshd.zst", in: spool)
                #expect(eventually { Files.exists(out + "/s\(index).lshd.zst.summary.json") || !daemon.process.isRunning },
                        "signal \(number): \(daemon.log)")
            }
            #expect(daemon.process.isRunning, "killed by a signal: \(daemon.log)")
            #expect(Files.list(out).filter { $0.hasSuffix(".summary.json") }.count == 6)
            #expect(daemon.log.contains("SIGHUP"), "SIGHUP is logged")
            daemon.signal(SIGTERM)
            #expect(daemon.waitForExit(timeout: 15))
            #expect(daemon.exitCode == 0, "\(daemon.log)")
        }
    }

    /// `rm -rf` of the spool (then `mkdir` of a new one) is noticed at the next tick, although the daemon's open
    /// descriptors keep the old directory alive and no inotify event comes: the daemon exits non-zero with a
    /// message naming the spool, so that systemd restarts it on the new directory.
    @Test func deletedSpoolStopsTheDaemonWithAnError() throws {
        try withReadyDaemon { dir, daemon, _ in
            let spool = dir.sub("spool")
            try FileManager.default.removeItem(atPath: spool)
            #expect(mkdir(spool, 0o755) == 0)
            #expect(daemon.waitForExit(timeout: 20), "the daemon did not notice the deleted spool: \(daemon.log)")
            #expect(daemon.exitCode != 0 && !daemon.killedBySignal, "\(daemon.log)")
            #expect(daemon.log.contains("spool") && daemon.log.contains("deleted"), "\(daemon.log)")
        }
    }

    /// The output directory deleted while the daemon runs: re-created by the operator, or not at all. Commits
    /// resume in the new directory without a restart, and its `totals.json` is the merge of exactly the records
    /// in it.
    @Test func deletedOutputIsReopened() throws {
        let dir = TempDirectory()
        defer { dir.remove() }
        let spool = dir.sub("spool"), out = dir.sub("out")
        let daemon = try DaemonProcess(servingIn: dir)
        #expect(eventually { Files.exists(out + "/totals.json") })
        try Files.drop(try ShardFactory.valid(rows: 20, seed: 1), named: "a.lshd.zst", in: spool)
        #expect(eventually { Files.exists(out + "/a.lshd.zst.summary.json") && Files.exists(spool + "/done/a.lshd.zst") }, "\(daemon.log)")

        /// Waits for `name`'s summary and for a `totals.json` that counts it alone and is the merge of the records.
        func expectCommittedAlone(_ name: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
            #expect(eventually { Files.exists(out + "/\(name).summary.json") }, "\(daemon.log)", sourceLocation: sourceLocation)
            #expect(eventually { (try? Files.json(out + "/totals.json")["shards_ok"]) == .int(1) }, "\(daemon.log)", sourceLocation: sourceLocation)
            try expectTotalsMatchRecords(output: out, options: options, sourceLocation: sourceLocation)
        }

        // 1. Deleted and re-created by the operator.
        try FileManager.default.removeItem(atPath: out)
        #expect(mkdir(out, 0o755) == 0)
        try Files.drop(try ShardFactory.valid(rows: 30, seed: 2), named: "b.lshd.zst", in: spool)
        try expectCommittedAlone("b.lshd.zst")

        // 2. Deleted and not re-created: the daemon creates it again, as it does at start.
        #expect(eventually { Files.exists(spool + "/done/b.lshd.zst") })
        try FileManager.default.removeItem(atPath: out)
        try Files.drop(try ShardFactory.valid(rows: 40, seed: 3), named: "c.lshd.zst", in: spool)
        try expectCommittedAlone("c.lshd.zst")

        // 3. Replaced by a regular file: it cannot be opened again; reported once, retried every second, and
        // commits resume once the path can be a directory again.
        #expect(eventually { Files.exists(spool + "/done/c.lshd.zst") })
        try FileManager.default.removeItem(atPath: out)
        try Files.write([1], to: out)
        #expect(eventually { daemon.log.contains("cannot open the output directory again") }, "\(daemon.log)")
        try Files.drop(try ShardFactory.valid(rows: 50, seed: 4), named: "d.lshd.zst", in: spool)
        usleep(2_500_000)
        #expect(daemon.log.components(separatedBy: "cannot open the output directory again").count - 1 == 1, "reported once: \(daemon.log)")
        #expect(unlink(out) == 0)
        try expectCommittedAlone("d.lshd.zst")
        #expect(daemon.process.isRunning)
        daemon.signal(SIGTERM)
        #expect(daemon.waitForExit(timeout: 15))
        #expect(daemon.exitCode == 0, "\(daemon.log)")
        #expect(Set(Files.list(spool + "/done")) == ["a.lshd.zst", "b.lshd.zst", "c.lshd.zst", "d.lshd.zst"])
    }

    /// A metrics port already in use fails the start before anything is claimed, with a message naming the
    /// address and `--metrics-listen`.
    @Test func busyMetricsPortFailsTheStartBeforeAnyClaim() throws {
        let dir = TempDirectory()
        defer { dir.remove() }
        let spool = dir.sub("spool"), out = dir.sub("out")
        #expect(mkdir(spool, 0o755) == 0)
        try Files.drop(try ShardFactory.valid(rows: 10, seed: 1), named: "waiting.lshd.zst", in: spool)
        let holder = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(holder) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(holder, $0, length) == 0 && listen(holder, 1) == 0 && getsockname(holder, $0, &length) == 0 }
        }
        #expect(bound)
        let port = Int(UInt16(bigEndian: address.sin_port))
        let daemon = try DaemonProcess(servingIn: dir, metricsListen: "127.0.0.1:\(port)")
        #expect(daemon.waitForExit(timeout: 20))
        #expect(daemon.exitCode != 0, "\(daemon.log)")
        #expect(daemon.log.contains("127.0.0.1:\(port)") && daemon.log.contains("--metrics-listen"), "\(daemon.log)")
        #expect(Files.exists(spool + "/waiting.lshd.zst"), "the shard was claimed")
        #expect(Files.list(spool + "/.smoothd-work").isEmpty)
        #expect(!Files.exists(out + "/waiting.lshd.zst.summary.json"))
    }

    /// Shards published with `link(2)` (from a file outside the spool) and with `O_TMPFILE` + `linkat` produce no
    /// `IN_MOVED_TO` or `IN_CLOSE_WRITE` in the spool; `IN_CREATE` makes them seen at once, with the periodic
    /// rescan an hour away.
    @Test func linkAndTmpfileLinkatPublicationIsSeenAtOnce() throws {
        // READY=1 comes after the start-up rescan: what follows can only be seen through inotify.
        try withReadyDaemon(["--rescan-interval", "3600"]) { dir, daemon, _ in
            let spool = dir.sub("spool"), out = dir.sub("out")
            try Files.write(try ShardFactory.valid(rows: 15, seed: 1), to: dir.sub("staged.lshd.zst"))
            #expect(link(dir.sub("staged.lshd.zst"), spool + "/linked.lshd.zst") == 0)
            #expect(eventually(timeout: 20) { Files.exists(out + "/linked.lshd.zst.summary.json") }, "link(2) not seen: \(daemon.log)")

            // O_TMPFILE: an unnamed file in the spool, written, then given its final name; the writer keeps it open.
            let tmpfileFlag: Int32 = 0o20000000 | O_DIRECTORY
            let fd = open(spool, O_WRONLY | O_CLOEXEC | tmpfileFlag, 0o644)
            #expect(fd >= 0, "O_TMPFILE: \(String(cString: strerror(errno)))")
            defer { close(fd) }
            let bytes = try ShardFactory.valid(rows: 25, seed: 2)
            #expect(bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) } == bytes.count)
            #expect(linkat(AT_FDCWD, "/proc/self/fd/\(fd)", AT_FDCWD, spool + "/tmpfile.lshd.zst", AT_SYMLINK_FOLLOW) == 0,
                    "linkat: \(String(cString: strerror(errno)))")
            #expect(eventually(timeout: 20) { Files.exists(out + "/tmpfile.lshd.zst.summary.json") }, "O_TMPFILE + linkat not seen: \(daemon.log)")
            #expect(try Files.json(out + "/tmpfile.lshd.zst.summary.json")["rows"]?.intValue == 25)
            daemon.signal(SIGTERM)
            #expect(daemon.waitForExit(timeout: 15))
        }
    }

    /// Names whose records would not fit in NAME_MAX (255 bytes): the longest accepted name is processed as usual;
    /// longer ones (a 222-byte name, a 255-byte one, and one whose escaped form is longer than the raw bytes) are
    /// reported once each (log line, counter) and quarantined in `failed/` under a shortened name, with an error
    /// record giving the original (escaped) name. A restart finds nothing more to do.
    @Test func overlongNamesAreQuarantinedOnceUnderAShortName() throws {
        let dir = TempDirectory()
        defer { dir.remove() }
        let spool = dir.sub("spool"), out = dir.sub("out")
        #expect(mkdir(spool, 0o755) == 0)
        let suffix = ".lshd.zst"
        let longest = String(repeating: "k", count: 221 - suffix.utf8.count) + suffix
        let over = String(repeating: "o", count: 222 - suffix.utf8.count) + suffix
        let maximal = String(repeating: "m", count: 255 - suffix.utf8.count) + suffix
        let escapedRaw = [UInt8](repeating: 0xFF, count: 100) + Array(suffix.utf8)
        let escaped = String(repeating: "%FF", count: 100) + suffix
        let bytes = try ShardFactory.valid(rows: 12, seed: 9)
        for name in [longest, over, maximal] { try Files.dropRaw(bytes, nameBytes: Array(name.utf8), in: spool) }
        try Files.dropRaw(bytes, nameBytes: escapedRaw, in: spool)
        let textfile = dir.sub("smoothd.prom")
        let arguments = ["--exit-when-idle", "--textfile", textfile]
        var daemon = try DaemonProcess(servingIn: dir, extraArgs: arguments)
        #expect(daemon.waitForExit(timeout: 60))
        #expect(daemon.exitCode == 0, "\(daemon.log)")

        #expect(try Files.json(out + "/" + longest + ".summary.json")["rows"]?.intValue == 12, "the longest accepted name is processed")
        #expect(Files.exists(spool + "/done/" + longest))
        let records = try Files.list(out).filter { $0.hasSuffix(".error.json") }.map { try Files.json(out + "/" + $0) }
        #expect(Set(records.compactMap { $0["shard"]?.stringValue }) == [over, maximal, escaped])
        for record in records {
            #expect(record["error"]?["kind"] == .string("name_too_long"), "\(record)")
            let instance = try #require(record["instance"]?.stringValue)
            #expect(instance.utf8.count <= 221)
            #expect(Files.exists(spool + "/failed/" + instance), "\(instance) not in failed/")
        }
        #expect(Files.list(spool).filter { !$0.hasPrefix(".") } == ["done", "failed"], "nothing left in the spool")
        #expect(metricValue(Files.text(textfile), "smoothd_overlong_names_total") == 3)
        #expect(daemon.log.components(separatedBy: "shard name is too long").count - 1 == 3, "reported once each: \(daemon.log)")
        try expectTotalsMatchRecords(output: out, options: options)

        daemon = try DaemonProcess(servingIn: dir, extraArgs: arguments)
        #expect(daemon.waitForExit(timeout: 60))
        #expect(daemon.exitCode == 0)
        #expect(daemon.log.components(separatedBy: "shard name is too long").count - 1 == 3, "a restart reports nothing again")
        let totals = try Files.json(out + "/totals.json")
        #expect(totals["shards_ok"] == .int(1) && totals["shards_failed"] == .int(3))
        #expect(Files.list(spool + "/failed").count == 3)
        try expectTotalsMatchRecords(output: out, options: options)
    }

    /// Every `STATUS=` line after `READY=1` (until `STOPPING=1`) starts with `watching SPOOL: `.
    @Test func statusLinesKeepTheirWatchingPrefix() throws {
        try withReadyDaemon { dir, daemon, receiver in
            let spool = dir.sub("spool")
            for i in 0..<2 { try Files.drop(try ShardFactory.valid(rows: 10, seed: UInt64(i)), named: "s\(i).lshd.zst", in: spool) }
            #expect(eventually { receiver.poll().contains { $0.contains("2 ok") } }, "no status update: \(receiver.poll())")
            daemon.signal(SIGTERM)
            #expect(daemon.waitForExit(timeout: 15))
            let messages = receiver.poll()
            let ready = try #require(messages.firstIndex { $0.hasPrefix("READY=1") })
            let updates = messages[ready...].filter { !$0.contains("STOPPING=1") }.flatMap { $0.split(separator: "\n") }.filter { $0.hasPrefix("STATUS=") }
            #expect(updates.count >= 2)
            for line in updates {
                #expect(line.hasPrefix("STATUS=watching \(spool): "), "\(line)")
            }
        }
    }
}
