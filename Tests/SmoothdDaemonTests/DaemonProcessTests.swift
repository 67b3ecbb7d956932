#if canImport(Glibc)
import Glibc
#endif
import Foundation
import SmoothdJSON
import SmoothdMetrics
import Synchronization
import Testing

@testable import SmoothdDaemon

/// Tests that start the real `smoothd serve` binary on a temporary spool.
@Suite("smoothd serve (real process)", .serialized)
struct DaemonProcessTests {
    /// Run as the invoker and as the unit runs it (nobody, no capabilities): `/metrics` and `/healthz` must
    /// answer there too.
    @Test(arguments: RunAs.allCases)
    func concurrentProducersMetricsNotifyAndSIGTERM(runAs: RunAs) async throws {
        try runAs.requireAvailable()
        let dir = TempDirectory()
        defer { dir.remove() }
        let spool = dir.sub("spool"), out = dir.sub("out")
        let receiver = NotifyReceiver(abstract: false, directory: dir.path)
        defer { receiver.close() }
        if runAs == .nobody { Unprivileged.prepare(dir) }
        let daemon = try DaemonProcess(
            servingIn: dir, metricsListen: "127.0.0.1:0", extraArgs: ["--max-inflight", "3", "--threads", "2", "--rescan-interval", "2"],
            environment: ["NOTIFY_SOCKET": receiver.address, "WATCHDOG_USEC": "400000"], runAs: runAs)
        #expect(eventually { receiver.received("READY=1") }, "READY=1 \(daemon.log)")
        let port = try #require(daemon.metricsPort(), "no metrics port in log: \(daemon.log)")

        // Four producers drop ten shards each at the same time, following the rename protocol.
        let producers = 4, perProducer = 10
        @Sendable func rows(_ p: Int, _ i: Int) -> Int { 40 + (p * 37 + i * 11) % 300 }
        let expectedRows = (0..<producers).flatMap { p in (0..<perProducer).map { rows(p, $0) } }.reduce(0, +)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for p in 0..<producers {
                group.addTask {
                    for i in 0..<perProducer {
                        try Files.drop(ShardFactory.valid(rows: rows(p, i), seed: UInt64(p * 100 + i)), named: "p\(p)-\(i).lshd.zst", in: spool)
                        try await Task.sleep(for: .milliseconds(Int.random(in: 0...15)))
                    }
                }
            }
            try await group.waitForAll()
        }
        let total = producers * perProducer
        #expect(eventually(timeout: 90) {
            (try? Files.json(out + "/totals.json")["shards_ok"]) == .int(Int64(total))
        }, "totals never reached \(total): \(daemon.log)")
        let summaries = Files.list(out).filter { $0.hasSuffix(".summary.json") }
        #expect(summaries.count == total)
        try expectTotalsMatchRecords(output: out)
        let totals = try Files.json(out + "/totals.json")
        #expect(totals["rows"]?.intValue == Int64(expectedRows))

        // /metrics through swift-prometheus. totals.json is rewritten before the last group commit's shards leave the
        // work directory and are reported: wait for that.
        #expect(eventually(timeout: 30) { (try? metricValue(httpRequest(port: port, "GET", "/metrics").body, "smoothd_inflight_shards")) == 0 })
        let scrape = try httpRequest(port: port, "GET", "/metrics")
        if runAs == .nobody {
            #expect(Files.text("/proc/\(daemon.pid)/status").contains("Uid:\t\(Privileges.unprivilegedID)"), "the daemon runs as nobody")
            #expect(Files.text("/proc/\(daemon.pid)/status").contains("CapEff:\t0000000000000000"), "with no capabilities")
        }
        #expect(scrape.status == 200)
        #expect(scrape.headers.lowercased().contains("content-type: text/plain; version=0.0.4"))
        let m = scrape.body
        #expect(metricValue(m, #"smoothd_shards_processed_total{result="ok"}"#) == Double(total))
        #expect(metricValue(m, #"smoothd_shards_processed_total{result="failed"}"#) == 0)
        #expect(metricValue(m, "smoothd_rows_total") == Double(expectedRows))
        #expect((metricValue(m, "smoothd_compressed_bytes_total") ?? 0) > 0)
        #expect((metricValue(m, "smoothd_decompressed_bytes_total") ?? 0) > 0)
        #expect(metricValue(m, "smoothd_shard_duration_seconds_count") == Double(total))
        #expect(metricValue(m, "smoothd_pending_shards") == 0)
        #expect(metricValue(m, "smoothd_inflight_shards") == 0)
        #expect((metricValue(m, "smoothd_last_success_timestamp_seconds") ?? 0) > 1_600_000_000)
        #expect((metricValue(m, "smoothd_rescans_total") ?? 0) >= 1)
        #expect(metricValue(m, "smoothd_inotify_overflows_total") == 0)
        #expect(metricValue(m, #"smoothd_totals_shards{result="ok"}"#) == Double(total))
        for family in ["smoothd_totals_loss", "smoothd_totals_nll", "smoothd_totals_accuracy", "smoothd_totals_ece"] {
            let value = try #require(metricValue(m, family), "\(family) missing")
            #expect(value.isFinite)
        }
        #expect(m.contains("smoothd_build_info{version="))
        #expect(m.contains("# HELP smoothd_shards_processed_total "))
        #expect(m.contains("# TYPE smoothd_shard_duration_seconds histogram"))

        // /healthz and the refusals.
        let health = try httpRequest(port: port, "GET", "/healthz")
        #expect(health.status == 200 && health.body == "ok\n")
        #expect(try httpRequest(port: port, "HEAD", "/healthz").status == 200)
        #expect(try httpRequest(port: port, "GET", "/nope").status == 404)
        #expect(try httpRequest(port: port, "DELETE", "/metrics").status == 405)
        #expect(try httpRequest(port: port, "POST", "/metrics", body: "x=1").status == 413)

        // systemd: watchdog pings and status lines.
        #expect(eventually(timeout: 10) { receiver.received("WATCHDOG=1") })
        #expect(receiver.poll().contains { $0.contains("STATUS=") })

        // SIGTERM: STOPPING=1, exit code 0, everything committed, nothing left claimed.
        daemon.signal(SIGTERM)
        #expect(daemon.waitForExit(timeout: 15), "did not stop after SIGTERM")
        #expect(!daemon.killedBySignal)
        #expect(daemon.exitCode == 0, "\(daemon.log)")
        #expect(eventually(timeout: 5) { receiver.received("STOPPING=1") })
        #expect(Files.list(spool + "/.smoothd-work").isEmpty)
        #expect(Files.list(spool + "/done").count == total)
        #expect(Files.list(spool).filter { !$0.hasPrefix(".") } == ["done", "failed"])
        try expectTotalsMatchRecords(output: out)
        #expect(daemon.log.contains("shard processed"))
        #expect(daemon.log.contains("shard=p0-0.lshd.zst"))
    }

    @Test func badShardsQuarantinedUnfinishedNamesIgnoredNamesReused() throws {
        let dir = TempDirectory()
        defer { dir.remove() }
        let spool = dir.sub("spool"), out = dir.sub("out")
        try FileManager.default.createDirectory(atPath: spool, withIntermediateDirectories: true)
        let good = try ShardFactory.valid(rows: 64, seed: 42)
        try Files.drop(good, named: "good.lshd.zst", in: spool)
        try Files.drop(try ShardFactory.truncated(seed: 1), named: "truncated.lshd.zst", in: spool)
        try Files.drop(try ShardFactory.badLabel(), named: "badlabel.lshd.zst", in: spool)
        try Files.drop(ShardFactory.garbage(), named: "garbage.lshd.zst", in: spool)
        var invalid = ["truncated.lshd.zst", "badlabel.lshd.zst", "garbage.lshd.zst"]
        var valid = ["good.lshd.zst"]
        // The fixtures, when present.
        for kind in ["valid", "invalid"] {
            let fixtures = Binary.packageRoot + "/Fixtures/" + kind
            for name in Files.list(fixtures) where name.hasSuffix(".zst") {
                let bytes = Array(try Data(contentsOf: URL(fileURLWithPath: fixtures + "/" + name)))
                let renamed = "fixture-" + name
                try Files.drop(bytes, named: renamed, in: spool)
                if kind == "valid" { valid.append(renamed) } else { invalid.append(renamed) }
            }
        }
        // Unfinished names, a symlink, a subdirectory: never touched.
        let untouchable = [".hidden.lshd.zst", "writing.lshd.zst.tmp", "writing2.lshd.zst.part", "readme.txt"]
        for name in untouchable { try Files.write(good, to: spool + "/" + name) }
        try Files.write(good, to: dir.sub("target.lshd.zst"))
        #expect(symlink(dir.sub("target.lshd.zst"), spool + "/link.lshd.zst") == 0)
        try FileManager.default.createDirectory(atPath: spool + "/subdir.lshd.zst", withIntermediateDirectories: false)

        var daemon = try DaemonProcess(servingIn: dir, extraArgs: ["--exit-when-idle"])
        #expect(daemon.waitForExit(timeout: 60))
        #expect(daemon.exitCode == 0, "\(daemon.log)")
        for name in valid {
            #expect(Files.exists(out + "/" + name + ".summary.json"), "\(name)")
            #expect(Files.exists(spool + "/done/" + name))
        }
        for name in invalid {
            #expect(Files.exists(spool + "/failed/" + name), "\(name) not quarantined")
            let record = try Files.json(out + "/" + name + ".error.json")
            #expect(record["ok"] == .bool(false))
            #expect(record["error"]?["reason"]?.stringValue?.isEmpty == false)
            #expect(record["error"]?["kind"]?.stringValue?.isEmpty == false)
            #expect(record["failed_at"]?.stringValue != nil)
            #expect(!Files.exists(out + "/" + name + ".summary.json"))
        }
        for name in untouchable + ["link.lshd.zst", "subdir.lshd.zst"] {
            #expect(Files.exists(spool + "/" + name), "\(name) was touched")
        }
        #expect(Files.exists(dir.sub("target.lshd.zst")))
        try expectTotalsMatchRecords(output: out)
        let totals = try Files.json(out + "/totals.json")
        #expect(totals["shards_ok"] == .int(Int64(valid.count)))
        #expect(totals["shards_failed"] == .int(Int64(invalid.count)))
        #expect(daemon.log.contains("invalid shard quarantined"))

        // The same name again: a re-run, recorded under a distinct name; it supersedes the first record.
        let before = Files.text(out + "/good.lshd.zst.summary.json")
        try Files.drop(try ShardFactory.valid(rows: 10, seed: 7), named: "good.lshd.zst", in: spool)
        daemon = try DaemonProcess(servingIn: dir, metricsListen: "127.0.0.1:0", extraArgs: ["--exit-when-idle"])
        #expect(daemon.waitForExit(timeout: 60), "--exit-when-idle must also stop the metrics server")
        #expect(daemon.exitCode == 0)
        #expect(Files.text(out + "/superseded/good.lshd.zst.summary.json") == before, "superseded by the re-run, kept untouched")
        #expect(try Files.json(out + "/good.lshd.zst~2.summary.json")["rows"]?.intValue == 10)
        #expect(Files.exists(spool + "/done/good.lshd.zst~2"))
        #expect(daemon.log.contains("shard name was already processed"))
        try expectTotalsMatchRecords(output: out)
    }

    @Test func abstractNotifySocketAndSIGINT() throws {
        let dir = TempDirectory()
        defer { dir.remove() }
        let receiver = NotifyReceiver(abstract: true, directory: dir.path)
        defer { receiver.close() }
        // Standard error is the "journal stream": lines must carry <N> priority prefixes instead of timestamps.
        let logPath = dir.sub("daemon.log")
        try Files.write([], to: logPath)
        var st = stat()
        #expect(stat(logPath, &st) == 0)
        let daemon = try DaemonProcess(
            servingIn: dir, environment: ["NOTIFY_SOCKET": receiver.address, "JOURNAL_STREAM": "\(st.st_dev):\(st.st_ino)"])
        #expect(eventually { receiver.received("READY=1") }, "\(daemon.log)")
        #expect(receiver.poll().contains { $0.hasPrefix("READY=1\nSTATUS=watching ") })
        daemon.signal(SIGINT)
        #expect(daemon.waitForExit(timeout: 15))
        #expect(daemon.exitCode == 0)
        #expect(eventually(timeout: 5) { receiver.received("STOPPING=1") })
        #expect(!receiver.received("WATCHDOG=1"), "no watchdog without WATCHDOG_USEC")
        let lines = daemon.log.split(separator: "\n")
        #expect(!lines.isEmpty)
        #expect(lines.allSatisfy { $0.hasPrefix("<6>") || $0.hasPrefix("<5>") || $0.hasPrefix("<4>") }, "\(lines)")
        #expect(lines.contains { $0.hasPrefix("<6>stopping") })
    }

    @Test func configFileIsReadAndFlagsWin() throws {
        let dir = TempDirectory()
        defer { dir.remove() }
        let spool = dir.sub("spool"), out = dir.sub("out")
        try FileManager.default.createDirectory(atPath: spool, withIntermediateDirectories: true)
        try Files.drop(try ShardFactory.valid(rows: 30, seed: 3), named: "c.lshd.zst", in: spool)
        let config = dir.sub("smoothd.conf")
        try Files.write(Array("""
        # test config
        spool = \(spool)
        output = \(out)
        metrics-listen = none
        exit-when-idle = true
        max-inflight = 0
        """.utf8), to: config)
        // The file's invalid max-inflight is used when no flag overrides it...
        var daemon = try DaemonProcess(["--config", config], logPath: dir.sub("a.log"))
        #expect(daemon.waitForExit(timeout: 30))
        #expect(daemon.exitCode != 0)
        #expect(daemon.log.contains("max-inflight"))
        // ...and a flag wins over it.
        daemon = try DaemonProcess(["--config", config, "--max-inflight", "2"], logPath: dir.sub("b.log"))
        #expect(daemon.waitForExit(timeout: 30))
        #expect(daemon.exitCode == 0, "\(daemon.log)")
        #expect(Files.exists(out + "/c.lshd.zst.summary.json"))
    }

    /// SIGTERM while a shard is being evaluated, with no grace: the shard is abandoned (left claimed), the exit code
    /// is 0, and the next start processes it exactly once.
    @Test func sigtermAbandonsAnInFlightShardWhichTheNextStartProcesses() throws {
        let dir = TempDirectory()
        defer { dir.remove() }
        let spool = dir.sub("spool"), out = dir.sub("out")
        let daemon = try DaemonProcess(servingIn: dir, extraArgs: ["--shutdown-grace", "0", "--max-inflight", "1", "--threads", "1"])
        #expect(eventually { Files.exists(spool + "/.smoothd-work") })
        try Files.drop(try ShardFactory.valid(rows: 3000, classes: 1024, seed: 5), named: "big.lshd.zst", in: spool)
        #expect(eventually { Files.exists(spool + "/.smoothd-work/big.lshd.zst") || Files.exists(out + "/big.lshd.zst.summary.json") })
        daemon.signal(SIGTERM)
        #expect(daemon.waitForExit(timeout: 15))
        #expect(daemon.exitCode == 0, "\(daemon.log)")
        let abandoned = Files.exists(spool + "/.smoothd-work/big.lshd.zst")
        #expect(abandoned != Files.exists(out + "/big.lshd.zst.summary.json"), "either committed or left claimed, never both")
        try expectTotalsMatchRecords(output: out)
        print("SIGTERM with a shard in flight: \(abandoned ? "abandoned, left claimed" : "finished before the signal was handled")")

        let again = try DaemonProcess(servingIn: dir, extraArgs: ["--exit-when-idle"])
        #expect(again.waitForExit(timeout: 120))
        #expect(again.exitCode == 0)
        #expect(Files.list(out).filter { $0.hasSuffix(".summary.json") } == ["big.lshd.zst.summary.json"])
        #expect(Files.list(spool + "/.smoothd-work").isEmpty)
        #expect(try Files.json(out + "/big.lshd.zst.summary.json")["rows"]?.intValue == 3000)
        try expectTotalsMatchRecords(output: out)
    }

    /// kill -9 at random moments while producers keep dropping shards and re-runs of earlier ones (the same name:
    /// one identity), restart, repeat; then drain and check that every identity has exactly one current summary
    /// (the others in superseded/), no shard's record is lost, nothing is left claimed or half-written, and totals
    /// are the merge of the current summaries. Kills land inside supersessions too (counted and printed).
    @Test func killNineLoopKeepsExactlyOnce() async throws {
        let dir = TempDirectory()
        defer { dir.remove() }
        let spool = dir.sub("spool"), out = dir.sub("out")
        try FileManager.default.createDirectory(atPath: spool, withIntermediateDirectories: true)
        let cycles = 30
        var dropped: [String: [Int]] = [:]  // rows of every drop, by identity, in order
        var identityOf: [String: String] = [:]  // shard name -> identity (its rank, or its name)
        var killedWhileClaimed = 0
        var killedMidCommit = 0
        var killedMidSupersession = 0
        var generator = SplitMix(seed: 2024)
        let work = spool + "/.smoothd-work"
        /// Drops `name`; with `rank` (`kC-preI`), its meta makes it rank I of run C, so another name with the same
        /// rank is a re-run of it (one identity).
        func produce(_ name: String, rank: String? = nil) throws {
            let rows = 500 + Int(generator.next() % 4000)
            let meta = rank.map { r in
                let parts = r.split(separator: "-")
                return #"{"model":"test","checkpoint":"\#(parts[0])","split":"v","shard_index":\#(parts[1].dropFirst(3))}"#
            }
            try Files.drop(try ShardFactory.valid(rows: rows, classes: 32, seed: generator.next(), frames: 1 + Int(generator.next() % 3), metaText: meta),
                           named: name, in: spool)
            identityOf[name] = rank ?? name
            dropped[rank ?? name, default: []].append(rows)
        }
        /// Current summaries in the output directory by identity (a name reused is recorded as NAME~N).
        func currentSummaries() -> [String: [String]] {
            Dictionary(grouping: Files.list(out).filter { $0.hasSuffix(".summary.json") }.map { String($0.dropLast(".summary.json".count)) },
                       by: { identityOf[ShardName.source(ofInstance: $0)] ?? $0 })
        }
        var reruns = 0
        for cycle in 0..<cycles {
            // Some shards wait in the spool before the start...
            for i in 0..<3 { try produce("k\(cycle)-pre\(i).lshd.zst", rank: "k\(cycle)-pre\(i)") }
            let daemon = try DaemonProcess(servingIn: dir, extraArgs: ["--max-inflight", "2", "--threads", "2", "--rescan-interval", "1"])
            // ...more arrive while it runs, with re-runs of earlier ranks under new names and of earlier names (not
            // while that name still waits in the spool, which the producer would overwrite), and it is killed: on
            // even cycles at a random moment, on odd cycles a few milliseconds after it has claimed a shard (so the
            // kill lands inside processing, a commit or a supersession).
            let killAt = TestClock.seconds() + Double(30 + Int(generator.next() % 500)) / 1000
            var i = 0
            while TestClock.seconds() < killAt {
                try produce("k\(cycle)-run\(i).lshd.zst")
                let rank = "k\(Int(generator.next() % UInt64(cycle + 1)))-pre\(generator.next() % 3)"
                try produce("k\(cycle)-rerun\(i).lshd.zst", rank: rank)
                reruns += 1
                let name = "k\(Int(generator.next() % UInt64(cycle + 1)))-run0.lshd.zst"
                if identityOf[name] != nil, !Files.exists(spool + "/" + name) {
                    try produce(name)
                    reruns += 1
                }
                i += 1
                usleep(UInt32(2_000 + generator.next() % 30_000))
            }
            if cycle % 2 == 1 {
                _ = eventually(timeout: 2) { !Files.list(work).filter { !$0.hasPrefix(".") }.isEmpty }
                usleep(UInt32(generator.next() % 15_000))
            }
            daemon.signal(SIGKILL)
            #expect(daemon.waitForExit(timeout: 10))
            #expect(daemon.killedBySignal)
            let claimed = Files.list(work).filter { !$0.hasPrefix(".") }
            if !claimed.isEmpty { killedWhileClaimed += 1 }
            if claimed.contains(where: { Files.exists(out + "/" + $0 + ".summary.json") }) { killedMidCommit += 1 }
            if currentSummaries().values.contains(where: { $0.count > 1 }) { killedMidSupersession += 1 }
        }
        // Drain.
        let final = try DaemonProcess(servingIn: dir, extraArgs: ["--exit-when-idle"])
        #expect(final.waitForExit(timeout: 120))
        #expect(final.exitCode == 0)

        let outputs = Files.list(out)
        let current = currentSummaries()
        let superseded = Files.list(out + "/superseded").filter { $0.hasSuffix(".summary.json") }
        let expected = Set(dropped.keys)
        let drops = dropped.values.map(\.count).reduce(0, +)
        let lost = expected.subtracting(current.keys)
        let duplicated = current.filter { $0.value.count > 1 }
        let unexpected = Set(current.keys).subtracting(expected)
        print("kill -9 loop: cycles=\(cycles) identities=\(expected.count) drops=\(drops) re-runs=\(reruns) superseded=\(superseded.count) "
              + "lost=\(lost.count) duplicated=\(duplicated.count) kills-with-shards-claimed=\(killedWhileClaimed) "
              + "kills-between-summary-and-move=\(killedMidCommit) kills-mid-supersession=\(killedMidSupersession)")
        #expect(lost.isEmpty, "lost: \(lost.sorted())")
        #expect(duplicated.isEmpty, "more than one current summary: \(duplicated)")
        #expect(unexpected.isEmpty)
        #expect(current.count + superseded.count == drops, "every drop has exactly one record, current or superseded")
        for (identity, instances) in current {
            let rows = try Files.json(out + "/" + instances[0] + ".summary.json")["rows"]?.intValue
            #expect(rows.map { dropped[identity]!.contains(Int($0)) } == true, "\(identity): the current summary is one of its drops")
        }
        #expect(!outputs.contains { $0.hasSuffix(".error.json") })
        #expect(Files.leftovers(out).isEmpty, "temporary files left: \(Files.leftovers(out))")
        #expect(Files.list(spool + "/.smoothd-work").isEmpty)
        #expect(Files.list(spool + "/done").count == drops)
        #expect(Set(Files.list(spool + "/done").map { ShardName.source(ofInstance: $0) }) == Set(identityOf.keys))
        #expect(Files.list(spool).filter { !$0.hasPrefix(".") } == ["done", "failed"])
        try expectTotalsMatchRecords(output: out)
        let totals = try Files.json(out + "/totals.json")
        #expect(totals["shards_ok"] == .int(Int64(expected.count)))
        for name in identityOf.keys.sorted().filter({ identityOf[$0] == $0 && dropped[$0]!.count == 1 }).prefix(5) {
            #expect(try Files.json(out + "/" + name + ".summary.json")["rows"]?.intValue == Int64(dropped[name]![0]))
        }
    }
}
