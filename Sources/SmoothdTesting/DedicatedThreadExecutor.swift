import Foundation

/// A task executor with one thread of its own, for in-process servers in tests.
///
/// swift-testing runs synchronous tests on the cooperative pool, which has one thread per core. On a
/// 2-core machine two tests blocked in `waitpid` or `recv` for seconds leave no thread to run a server's
/// bind, and a test waiting for that server's port times out. A server started with this executor as its
/// preference (`Task(executorPreference: DedicatedThreadExecutor.shared)`) runs whatever the pool is doing.
public final class DedicatedThreadExecutor: TaskExecutor, @unchecked Sendable {
    // @unchecked Sendable: `jobs` is only touched with `condition` held; the rest is immutable.

    /// One executor (and thread) for the whole test process: the thread never ends.
    public static let shared = DedicatedThreadExecutor(name: "smoothd-test-executor")

    private let condition = NSCondition()
    /// Jobs not yet run, oldest first. Protected by `condition`.
    private var jobs: [UnownedJob] = []

    private init(name: String) {
        let thread = Thread { [unowned self] in self.runJobs() }
        thread.name = name
        thread.start()
    }

    /// Queues `job` for the executor's thread.
    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        condition.lock()
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    private func runJobs() {
        while true {
            condition.lock()
            while jobs.isEmpty { condition.wait() }
            let job = jobs.removeFirst()
            condition.unlock()
            job.runSynchronously(on: asUnownedTaskExecutor())
        }
    }
}
