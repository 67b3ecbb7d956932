import Foundation

/// A FIFO that blocks takers while it is empty; closing it wakes them with nil.
/// Used for the free-chunk pool (backpressure) and the work queue.
final class BlockingQueue<Element: Sendable>: Sendable {
    private struct State {
        var items: [Element] = []
        var head = 0
        var closed = false
    }
    // `NSCondition` is thread-safe; `state` is only touched while holding it.
    private let condition = NSCondition()
    nonisolated(unsafe) private var state = State()

    init(_ items: [Element] = []) { state.items = items }

    func put(_ item: Element) {
        condition.lock()
        state.items.append(item)
        condition.signal()
        condition.unlock()
    }

    /// The next item, or nil once the queue is closed and empty.
    func take() -> Element? {
        condition.lock()
        defer { condition.unlock() }
        while state.head == state.items.count {
            if state.closed { return nil }
            condition.wait()
        }
        let item = state.items[state.head]
        state.head += 1
        if state.head > 64, state.head * 2 > state.items.count {
            state.items.removeFirst(state.head)
            state.head = 0
        }
        return item
    }

    /// Wakes every taker; takers get nil once the queue drains.
    func close() {
        condition.lock()
        state.closed = true
        condition.broadcast()
        condition.unlock()
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
