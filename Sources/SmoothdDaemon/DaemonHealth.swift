import Synchronization

/// Liveness shared by the spool loop (which beats once a second), the watchdog and `/healthz`.
///
/// `Sendable`: all state is behind a `Mutex`.
public final class DaemonHealth: Sendable {
    private struct State {
        var ready = false
        var stopping = false
        var heartbeat: ContinuousClock.Instant
        var problem: String?
    }

    private let state: Mutex<State>
    /// How old the last heartbeat may be before the service counts as stuck.
    let staleAfter: Duration

    /// Creates a health record; the loop counts as stuck when it has not beaten for `staleAfter`.
    public init(staleAfter: Duration = .seconds(15)) {
        self.staleAfter = staleAfter
        state = Mutex(State(heartbeat: .now))
    }

    /// Records that the spool loop is alive.
    func beat() { state.withLock { $0.heartbeat = .now } }

    /// Marks the service as watching (or not).
    func setReady(_ ready: Bool) { state.withLock { $0.ready = ready } }

    /// Marks the service as shutting down.
    func setStopping() { state.withLock { $0.stopping = true } }

    /// Sets or clears a persistent problem (e.g. the output directory is not writable).
    func setProblem(_ problem: String?) { state.withLock { $0.problem = problem } }

    /// Whether the loop has beaten recently (the watchdog pings only then).
    public var isAlive: Bool { state.withLock { ContinuousClock.now - $0.heartbeat <= staleAfter } }

    /// `nil` when healthy, else why not (for `/healthz`).
    public var unhealthyReason: String? {
        state.withLock { s in
            if s.stopping { return s.problem.map { "stopping: \($0)" } ?? "stopping" }
            if !s.ready { return "starting" }
            if ContinuousClock.now - s.heartbeat > staleAfter { return "spool loop not responding" }
            return s.problem
        }
    }
}

/// Sends `READY=1` once every part (spool watcher, metrics server) reports it is up.
///
/// `Sendable`: state behind a `Mutex`; the notifier is a value.
final class ReadinessGate: Sendable {
    private let remaining: Mutex<Set<String>>
    private let notifier: SystemdNotifier
    private let health: DaemonHealth
    private let status: @Sendable () -> String

    init(parts: Set<String>, notifier: SystemdNotifier, health: DaemonHealth, status: @escaping @Sendable () -> String) {
        remaining = Mutex(parts)
        self.notifier = notifier
        self.health = health
        self.status = status
    }

    /// Reports `part` as up; the last one sends `READY=1`.
    func markReady(_ part: String) {
        let allReady = remaining.withLock { set -> Bool in
            guard set.remove(part) != nil else { return false }
            return set.isEmpty
        }
        if allReady {
            health.setReady(true)
            notifier.ready(status: status())
        }
    }
}
