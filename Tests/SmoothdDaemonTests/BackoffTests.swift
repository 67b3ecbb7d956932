import Logging
import SmoothdMetrics
import Testing

@testable import SmoothdDaemon

@Suite("Retry policies and the totals writer")
struct BackoffTests {
    /// The delays README documents for each retry: claims 30 s doubling to 15 min, commits 2 s to 1 min, reads
    /// 2 s to 64 s, changing files 1 s to 64 s.
    @Test func delaysAsDocumented() {
        func seconds(_ backoff: Backoff) -> [Duration] { (1...8).map { backoff.delay(afterFailures: $0) } }
        #expect(seconds(.claim) == [30, 60, 120, 240, 480, 900, 900, 900].map { .seconds($0) })
        #expect(seconds(.commit) == [2, 4, 8, 16, 32, 60, 60, 60].map { .seconds($0) })
        #expect(seconds(.read) == [2, 4, 8, 16, 32, 64, 64, 64].map { .seconds($0) })
        #expect(seconds(.unsettled) == [1, 2, 4, 8, 16, 32, 64, 64].map { .seconds($0) })
    }

    /// Writers race (the file is written outside the ledger's lock): whatever the interleaving, the last
    /// `totals.json` holds every change.
    @Test func concurrentChangesEndInTheFile() async throws {
        let dir = TempDirectory()
        defer { dir.remove() }
        let (_, totals) = try startStore(dir)
        let writers = 8, each = 25
        await withTaskGroup(of: Void.self) { group in
            for w in 0..<writers {
                group.addTask {
                    for i in 0..<each { totals.recordFailure(time: "2026-01-01T00:00:\(w)\(i % 10).000Z") }
                }
            }
        }
        let file = try Files.json(dir.sub("out") + "/totals.json")
        #expect(file["shards_failed"] == .int(Int64(writers * each)))
        #expect(file["first_processed_at"] == .string("2026-01-01T00:00:00.000Z"))
        #expect(file["last_processed_at"] == .string("2026-01-01T00:00:79.000Z"))
    }
}
