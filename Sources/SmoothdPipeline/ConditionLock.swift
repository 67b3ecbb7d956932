import Foundation

/// State shared between threads, read and written only inside `withLock` or `wait`, where threads can
/// also sleep until another one changes it: a `Mutex` with a condition variable (Synchronization has none).
final class ConditionLock<State: Sendable>: Sendable {
    /// Whom a change wakes.
    enum Wake {
        case none, one, all
    }

    private let condition = NSCondition()
    // Only touched between `condition.lock()` and `condition.unlock()`, which order every access.
    nonisolated(unsafe) private var state: State

    init(_ state: State) { self.state = state }

    /// Runs `body` on the state under the lock, then wakes `wake` waiters.
    func withLock<Result>(wake: Wake = .none, _ body: (inout State) -> Result) -> Result {
        condition.lock()
        defer { condition.unlock() }
        let result = body(&state)
        switch wake {
        case .none: break
        case .one: condition.signal()
        case .all: condition.broadcast()
        }
        return result
    }

    /// Sleeps until `ready` holds, then runs `body` on the state under the lock.
    func wait<Result>(until ready: (State) -> Bool, _ body: (inout State) -> Result) -> Result {
        condition.lock()
        defer { condition.unlock() }
        while !ready(state) { condition.wait() }
        return body(&state)
    }
}
