import DequeModule

/// A shard that was claimed into the work directory: `work/INSTANCE` holds the producer's file `SOURCE`.
public struct WorkItem: Sendable, Hashable {
    /// The producer's file name, e.g. `a.lshd.zst`.
    public var source: String
    /// The name it is recorded under: `source`, or `source~N` when the name was already used.
    public var instance: String
    /// Size in bytes when claimed.
    public var size: UInt64
}

/// A shard waiting for a processing slot.
struct PendingShard: Sendable, Equatable {
    /// Where the shard is.
    enum Origin: Sendable, Equatable {
        /// Still in the spool under this name; claimed when it is started.
        case spool(String)
        /// Already in the work directory (found at start, or a commit to retry).
        case claimed(WorkItem)
    }

    /// The shard's location.
    var origin: Origin
    /// Size in bytes when detected.
    var size: UInt64
    /// Arrival order.
    var sequence: UInt64
    /// When it may start at the earliest (retries after an I/O error), or `nil`.
    var notBefore: ContinuousClock.Instant?

    /// A key unique among pending shards.
    var key: String {
        switch origin {
        case .spool(let name): return "spool/" + name
        case .claimed(let item): return "work/" + item.instance
        }
    }
}

/// Chooses which pending shard starts next, and bounds how many run at once.
///
/// Shards start in arrival order, with one exception that keeps one slow, huge shard from starving small ones:
/// shards of at least `largeThreshold` bytes may fill at most `maxInflight - 1` slots (when `maxInflight > 1`),
/// so one slot is always left for small shards, which still go in arrival order. Large shards are never skipped
/// forever either: they start in arrival order whenever a large slot is free. The queue holds names only and is
/// capped at `maxPending`; a detection beyond it is dropped and recorded, and the spool is rescanned once there is room.
struct ShardScheduler: Sendable {
    /// The most shards processed at once.
    let maxInflight: Int
    /// The size from which a shard counts as large.
    let largeThreshold: UInt64
    /// The most shards kept in the queue.
    let maxPending: Int

    private var small = Deque<PendingShard>()
    private var large = Deque<PendingShard>()
    private var delayed: [PendingShard] = []
    private var keys: Set<String> = []
    private var nextSequence: UInt64 = 0
    /// Shards currently being processed.
    private(set) var inflight = 0
    /// Large shards currently being processed.
    private(set) var inflightLarge = 0
    /// Whether a detection was dropped because the queue was full (a rescan is due once there is room).
    private(set) var droppedDetections = false

    /// Creates an empty scheduler.
    init(maxInflight: Int, largeThreshold: UInt64, maxPending: Int) {
        self.maxInflight = max(1, maxInflight)
        self.largeThreshold = largeThreshold
        self.maxPending = max(1, maxPending)
    }

    /// Result of ``enqueue(_:size:notBefore:)``.
    enum EnqueueResult: Sendable, Equatable { case added, duplicate, full }

    /// Shards waiting (including delayed retries).
    var pendingCount: Int { keys.count }

    /// Whether nothing is pending or running.
    var isIdle: Bool { keys.isEmpty && inflight == 0 }

    /// Adds a shard unless it is already waiting or the queue is full.
    @discardableResult
    mutating func enqueue(_ origin: PendingShard.Origin, size: UInt64, notBefore: ContinuousClock.Instant? = nil) -> EnqueueResult {
        var shard = PendingShard(origin: origin, size: size, sequence: nextSequence, notBefore: notBefore)
        guard !keys.contains(shard.key) else { return .duplicate }
        if case .spool = origin, keys.count >= maxPending {
            droppedDetections = true
            return .full
        }
        nextSequence += 1
        shard.sequence = nextSequence
        keys.insert(shard.key)
        if notBefore != nil {
            delayed.append(shard)
        } else if isLarge(shard) {
            large.append(shard)
        } else {
            small.append(shard)
        }
        return .added
    }

    /// Whether a dropped detection calls for a rescan now (the queue has drained below half); clears the flag.
    mutating func takeRescanNeed() -> Bool {
        guard droppedDetections, keys.count < maxPending / 2 else { return false }
        droppedDetections = false
        return true
    }

    /// Whether `shard` counts as large.
    func isLarge(_ shard: PendingShard) -> Bool { shard.size >= largeThreshold }

    /// The next shard to start at `now`, marking it in flight; `nil` when no slot or no shard is ready.
    mutating func next(now: ContinuousClock.Instant) -> PendingShard? {
        guard inflight < maxInflight else { return nil }
        if !delayed.isEmpty {
            var still: [PendingShard] = []
            for var shard in delayed {
                if let notBefore = shard.notBefore, notBefore > now {
                    still.append(shard)
                } else {
                    shard.notBefore = nil
                    if isLarge(shard) { large.insertOrdered(shard) } else { small.insertOrdered(shard) }
                }
            }
            delayed = still
        }
        let largeAllowed = maxInflight == 1 || inflightLarge < maxInflight - 1
        let chooseLarge: Bool
        switch (small.first, large.first) {
        case (nil, nil): return nil
        case (nil, .some): guard largeAllowed else { return nil }; chooseLarge = true
        case (.some, nil): chooseLarge = false
        case (.some(let s), .some(let l)): chooseLarge = largeAllowed && l.sequence < s.sequence
        }
        let shard = chooseLarge ? large.removeFirst() : small.removeFirst()
        keys.remove(shard.key)
        inflight += 1
        if chooseLarge { inflightLarge += 1 }
        return shard
    }

    /// Frees the slot of a shard returned by ``next(now:)``.
    mutating func finished(_ shard: PendingShard) {
        inflight -= 1
        if isLarge(shard) { inflightLarge -= 1 }
    }

    /// The earliest time a delayed retry becomes ready, if any.
    var nextRetryTime: ContinuousClock.Instant? { delayed.compactMap(\.notBefore).min() }
}

extension Deque where Element == PendingShard {
    /// Inserts keeping arrival order (for retries that rejoin the queue; they rejoin near the back).
    mutating func insertOrdered(_ element: PendingShard) {
        var index = endIndex
        while index > startIndex, self[index - 1].sequence > element.sequence { index -= 1 }
        insert(element, at: index)
    }
}
