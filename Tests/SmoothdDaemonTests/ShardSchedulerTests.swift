import Testing

@testable import SmoothdDaemon

@Suite("Scheduler: bounded, fair")
struct ShardSchedulerTests {
    func name(_ shard: PendingShard?) -> String? {
        guard let shard else { return nil }
        switch shard.origin {
        case .spool(let n): return n
        case .claimed(let item): return item.instance
        }
    }

    @Test func firstInFirstOutAndBounded() {
        var s = ShardScheduler(maxInflight: 2, largeThreshold: 1000, maxPending: 10)
        #expect(s.enqueue(.spool("a"), size: 1) == .added)
        #expect(s.enqueue(.spool("b"), size: 1) == .added)
        #expect(s.enqueue(.spool("a"), size: 1) == .duplicate)
        #expect(s.enqueue(.spool("c"), size: 1) == .added)
        let a = s.next(now: at(0)), b = s.next(now: at(0))
        #expect(name(a) == "a" && name(b) == "b")
        #expect(s.next(now: at(0)) == nil, "only two in flight")
        s.finished(a!)
        #expect(name(s.next(now: at(0))) == "c")
        #expect(s.pendingCount == 0 && s.inflight == 2)
    }

    @Test func largeShardsLeaveASlotForSmallOnes() {
        var s = ShardScheduler(maxInflight: 2, largeThreshold: 1000, maxPending: 100)
        s.enqueue(.spool("huge1"), size: 5000)
        s.enqueue(.spool("huge2"), size: 5000)
        for i in 0..<3 { s.enqueue(.spool("small\(i)"), size: 10) }
        let first = s.next(now: at(0))
        #expect(name(first) == "huge1")
        // huge2 is older than the small ones but would take the last slot: a small one goes first.
        let second = s.next(now: at(0))
        #expect(name(second) == "small0")
        s.finished(second!)
        #expect(name(s.next(now: at(0))) == "small1")
        // When the huge one finishes, huge2 gets its turn ahead of younger small shards.
        s.finished(first!)
        #expect(name(s.next(now: at(0))) == "huge2")
    }

    @Test func singleSlotStaysFIFO() {
        var s = ShardScheduler(maxInflight: 1, largeThreshold: 1000, maxPending: 100)
        s.enqueue(.spool("small"), size: 1)
        s.enqueue(.spool("huge"), size: 5000)
        let a = s.next(now: at(0))
        #expect(name(a) == "small")
        s.finished(a!)
        #expect(name(s.next(now: at(0))) == "huge", "a large shard is never starved")
    }

    @Test func fullQueueAsksForARescan() {
        var s = ShardScheduler(maxInflight: 1, largeThreshold: 1000, maxPending: 4)
        for i in 0..<4 { #expect(s.enqueue(.spool("s\(i)"), size: 1) == .added) }
        #expect(s.enqueue(.spool("s4"), size: 1) == .full)
        var need = s.takeRescanNeed()
        #expect(!need, "not before the queue drains")
        for _ in 0..<3 {
            let x = s.next(now: at(0))!
            s.finished(x)
        }
        need = s.takeRescanNeed()
        #expect(need)
        need = s.takeRescanNeed()
        #expect(!need, "only once")
    }

    @Test func retriesWaitForTheirTime() {
        var s = ShardScheduler(maxInflight: 2, largeThreshold: 1000, maxPending: 10)
        let item = WorkItem(source: "a.zst", instance: "a.zst", size: 1)
        s.enqueue(.claimed(item), size: 1, notBefore: at(10))
        s.enqueue(.spool("b.zst"), size: 1)
        #expect(name(s.next(now: at(0))) == "b.zst")
        #expect(s.next(now: at(5)) == nil)
        #expect(s.nextRetryTime == at(10))
        #expect(name(s.next(now: at(10))) == "a.zst")
        #expect(!s.isIdle)
    }
}

/// A fixed point for the scheduler's clock (it is handed the time, never reads it).
private let epoch = ContinuousClock.now

/// `seconds` after ``epoch``.
private func at(_ seconds: Int) -> ContinuousClock.Instant { epoch + .seconds(seconds) }
