#if canImport(Glibc)
import Glibc
#endif
import Foundation
import SmoothdJSON
import SmoothdMetrics
import Testing

@testable import SmoothdDaemon

/// Real disk faults under the real binary: the output directory is a 1 MiB tmpfs that is filled up, then
/// remounted read-only (needs root; skipped otherwise).
@Suite("Disk faults (real process, tmpfs)", .serialized)
struct DiskFaultProcessTests {
    /// Run as the invoker and as the unit runs it (nobody, no capabilities).
    @Test(.enabled(if: Privileges.isRoot, "needs root to mount a tmpfs"), arguments: RunAs.allCases)
    func outputFilesystemFullThenReadOnly(runAs: RunAs) throws {
        try runAs.requireAvailable()
        let dir = TempDirectory()
        defer { dir.remove() }
        let spool = dir.sub("spool"), out = dir.sub("out")
        guard Privileges.mountTmpfs(out, bytes: 1 << 20) else {
            Issue.record("cannot mount a tmpfs here although running as root")
            return
        }
        defer { Privileges.unmount(out) }
        if runAs == .nobody { Unprivileged.prepare(dir) }
        let daemon = try DaemonProcess(servingIn: dir, metricsListen: "127.0.0.1:0", extraArgs: ["--max-inflight", "2"], runAs: runAs)
        let port = try #require(daemon.metricsPort())
        #expect(eventually { Files.exists(out + "/totals.json") })
        func commitErrors() -> Double { (try? metricValue(httpRequest(port: port, "GET", "/metrics").body, "smoothd_commit_errors_total")) ?? -1 }
        func claimed() -> [String] { Files.list(spool + "/.smoothd-work").filter { !$0.hasPrefix(".") } }
        func summaries() -> [String] { Files.list(out).filter { $0.hasSuffix(".summary.json") } }

        // 1. Fill the output filesystem.
        let filler = out + "/filler"
        let fd = open(filler, O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
        let chunk = [UInt8](repeating: 7, count: 4096)
        while chunk.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) > 0 {}
        #expect(errno == ENOSPC)
        close(fd)
        for i in 0..<6 { try Files.drop(try ShardFactory.valid(rows: 100 + i, seed: UInt64(i)), named: "full-\(i).lshd.zst", in: spool) }
        #expect(eventually(timeout: 30) { commitErrors() >= 6 }, "\(daemon.log)")
        #expect(summaries().isEmpty)
        #expect(Files.leftovers(out).isEmpty, "no half-written file")
        #expect(Set(claimed()) == Set((0..<6).map { "full-\($0).lshd.zst" }), "every shard stays claimed")
        #expect(Files.list(spool + "/done").isEmpty)
        let health = try httpRequest(port: port, "GET", "/healthz")
        #expect(health.status == 503 && health.body.contains("No space left on device"), "\(health)")
        #expect(daemon.log.contains("cannot commit shard; it stays claimed and is retried"))

        // 2. Room again: every shard is committed once by its next retry.
        #expect(unlink(filler) == 0)
        let freed = TestClock.seconds()
        #expect(eventually(timeout: 90) { summaries().count == 6 && claimed().isEmpty }, "\(daemon.log)")
        let recoverySeconds = TestClock.seconds() - freed
        #expect(Files.list(spool + "/done").count == 6)
        #expect(eventually(timeout: 10) { (try? httpRequest(port: port, "GET", "/healthz").status) == 200 })
        #expect(eventually(timeout: 10) { (try? expectedTotals(output: out)) == (try? totalsWithoutGroups(output: out)) })
        try expectTotalsMatchRecords(output: out)

        // 3. Read-only output directory.
        #expect(Privileges.remount(out, readOnly: true))
        let errorsBefore = commitErrors()
        for i in 0..<4 { try Files.drop(try ShardFactory.valid(rows: 50 + i, seed: UInt64(100 + i)), named: "ro-\(i).lshd.zst", in: spool) }
        #expect(eventually(timeout: 30) { commitErrors() >= errorsBefore + 4 }, "\(daemon.log)")
        #expect(summaries().count == 6)
        #expect(Set(claimed()) == Set((0..<4).map { "ro-\($0).lshd.zst" }))
        #expect(daemon.log.contains("Read-only file system"))
        #expect(Privileges.remount(out, readOnly: false))
        let writable = TestClock.seconds()
        #expect(eventually(timeout: 90) { summaries().count == 10 && claimed().isEmpty }, "\(daemon.log)")
        let readOnlyRecovery = TestClock.seconds() - writable
        let totalCommitErrors = commitErrors()

        daemon.signal(SIGTERM)
        #expect(daemon.waitForExit(timeout: 15))
        #expect(daemon.exitCode == 0, "\(daemon.log)")
        try expectTotalsMatchRecords(output: out)
        #expect(try Files.json(out + "/totals.json")["shards_ok"] == .int(10))
        #expect(Files.leftovers(out).isEmpty)
        print(String(format: "disk full: 6 shards held claimed, committed %.1f s after space returned; read-only: 4 shards committed %.1f s after "
                     + "the remount rw; commit errors counted: %.0f", recoverySeconds, readOnlyRecovery, totalCommitErrors))
    }
}
