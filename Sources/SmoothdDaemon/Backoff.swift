/// How long to wait before trying again after repeated failures: `first`, doubled after each further failure
/// at most `maximumDoublings` times, and never more than `ceiling`. One type for every retry of the spool loop,
/// so each policy is one line and the formula is written once.
struct Backoff: Sendable, Equatable {
    /// The delay after the first failure.
    var first: Duration
    /// How many times the delay doubles at most.
    var maximumDoublings: Int
    /// The longest delay, if any.
    var ceiling: Duration?

    /// The delay after `failures` failures in a row (at least 1).
    func delay(afterFailures failures: Int) -> Duration {
        let doubled = first * (1 << min(max(failures - 1, 0), maximumDoublings))
        guard let ceiling else { return doubled }
        return min(doubled, ceiling)
    }

    /// A spool entry that could not be claimed: 30 s doubling to 15 min.
    static let claim = Backoff(first: .seconds(30), maximumDoublings: 5, ceiling: .seconds(900))
    /// A commit that failed (output full or read-only): 2 s doubling to 1 min.
    static let commit = Backoff(first: .seconds(2), maximumDoublings: 5, ceiling: .seconds(60))
    /// A shard that could not be opened or read: 2 s doubling to 64 s (then it is rejected as `unreadable`).
    static let read = Backoff(first: .seconds(2), maximumDoublings: 5, ceiling: nil)
    /// A file that changed while it was read: 1 s doubling to 64 s (then it is rejected as `unstable_file`).
    static let unsettled = Backoff(first: .seconds(1), maximumDoublings: 6, ceiling: nil)
}
