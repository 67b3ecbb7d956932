#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing

@testable import SmoothdDaemon

/// Unfinished spool files older than --stale-partial-seconds: reported once while they stay, counted, never touched.
@Suite("Stale partial files")
struct StalePartialsTests {
    /// The state machine with time passed in: no sleeping.
    @Test func reportedOnceWhileTheyStayAndForgottenWhenGone() {
        var tracker = StalePartials(threshold: 3600)
        let dead = StalePartials.Entry(name: ".rank3.lshd.zst.part", size: 1234, modified: 1_000_000)
        let live = StalePartials.Entry(name: "rank2.lshd.zst.tmp", size: 99, modified: 1_003_000)
        var seen = tracker.observe([dead, live], now: 1_003_599)
        #expect(seen.newlyStale.isEmpty && seen.stale == 0, "599 s before the limit")
        seen = tracker.observe([dead, live], now: 1_003_600)
        #expect(seen.newlyStale == [StalePartials.Report(entry: dead, age: 3600)] && seen.stale == 1)
        seen = tracker.observe([dead, live], now: 1_005_000)
        #expect(seen.newlyStale.isEmpty && seen.stale == 1, "the dead one is not reported again")
        seen = tracker.observe([dead, live], now: 1_006_600)
        #expect(seen.newlyStale.map(\.entry) == [live] && seen.stale == 2)
        seen = tracker.observe([live], now: 1_006_700)
        #expect(seen.newlyStale.isEmpty && seen.stale == 1, "a file that is gone no longer counts")
        seen = tracker.observe([dead, live], now: 1_006_800)
        #expect(seen.newlyStale.map(\.entry) == [dead], "and is new again if it comes back")
    }

    /// The daemon logs an old unfinished file once with its age and size, exports the gauge, and leaves the file
    /// as it was; a fresh one is not reported.
    @Test func theDaemonReportsAnOldUnfinishedFileAndLeavesIt() throws {
        let dir = TempDirectory()
        defer { dir.remove() }
        let spool = dir.sub("spool")
        try FileManager.default.createDirectory(atPath: spool, withIntermediateDirectories: true)
        let old = spool + "/.rank3.lshd.zst.part", fresh = spool + "/rank1.lshd.zst.tmp"
        try Files.write(Array(repeating: 7, count: 4321), to: old)
        try Files.write(Array(repeating: 7, count: 10), to: fresh)
        var times = [timeval(tv_sec: time(nil) - 7200, tv_usec: 0), timeval(tv_sec: time(nil) - 7200, tv_usec: 0)]
        #expect(utimes(old, &times) == 0)
        let daemon = try DaemonProcess(servingIn: dir, extraArgs: ["--exit-when-idle", "--textfile", dir.sub("m.prom")])
        #expect(daemon.waitForExit(timeout: 60))
        #expect(daemon.exitCode == 0)
        let reports = daemon.log.split(separator: "\n").filter { $0.contains("unfinished file in the spool") }
        #expect(reports.count == 1, "\(daemon.log)")
        #expect(reports.first.map { $0.contains("file=.rank3.lshd.zst.part") && $0.contains("bytes=4321") && $0.contains("age_seconds=72") } == true)
        #expect(metricValue(Files.text(dir.sub("m.prom")), "smoothd_stale_partial_files") == 1)
        #expect(Files.exists(old) && Files.exists(fresh), "never touched")
        #expect(try Data(contentsOf: URL(fileURLWithPath: old)).count == 4321)
    }
}
