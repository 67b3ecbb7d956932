import DequeModule
import Foundation

/// A FIFO that blocks takers while it is empty; closing it wakes them with nil.
/// Used for the free-chunk pool (backpressure) and the work queue.
final class BlockingQueue<Element: Sendable>: Sendable {
    private struct State: Sendable {
        var items: Deque<Element>
        var closed = false
    }

    private let shared: ConditionLock<State>

    init(_ items: [Element] = []) { shared = ConditionLock(State(items: Deque(items))) }

    func put(_ item: Element) {
        shared.withLock(wake: .one) { $0.items.append(item) }
    }

    /// The next item, or nil once the queue is closed and empty.
    func take() -> Element? {
        shared.wait(until: { !$0.items.isEmpty || $0.closed }) { $0.items.popFirst() }
    }

    /// Wakes every taker; takers get nil once the queue drains.
    func close() {
        shared.withLock(wake: .all) { $0.closed = true }
    }
}

/// Runs `body` on a new thread; `join()` waits for it.
final class JoinableThread: Sendable {
    private let done = DispatchSemaphore(value: 0)

    init(name: String, _ body: @escaping @Sendable () -> Void) {
        let done = self.done
        // A `Thread` keeps its closure until the thread has exited, which may be after `join()` returns;
        // so `body` (and whatever it captured) is released before the signal, not with the closure.
        let task = ThreadBody(body)
        let thread = Thread {
            task.run()
            done.signal()
        }
        thread.name = name
        thread.stackSize = 1 << 20
        thread.start()
    }

    func join() { done.wait() }
}

/// `body`, dropped once it has run.
private final class ThreadBody: @unchecked Sendable {
    // `@unchecked Sendable`: `body` is read and cleared only by the one thread that runs it.
    private var body: (@Sendable () -> Void)?
    init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    func run() {
        let body = self.body
        self.body = nil
        body?()
    }
}
