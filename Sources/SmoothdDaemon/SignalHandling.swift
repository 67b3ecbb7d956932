#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Dispatch
import Logging
import Synchronization

/// Keeps the signals whose default action would end the daemon from doing so: SIGHUP, SIGUSR1, SIGUSR2, SIGALRM.
/// (SIGTERM and SIGINT are the graceful shutdown, handled by the service group.)
///
/// SIGHUP is the conventional "reload": smoothd has no setting that can change safely while it runs (the spool,
/// output and metric options shape records already written), so it logs that a restart is needed and goes on.
/// SIGUSR1, SIGUSR2 and SIGALRM are ignored, each logged the first time only.
///
/// Not `Sendable`: it lives in ``DaemonRun/run()`` and is only cancelled there; the handlers share only the
/// `Sendable` ``SignalReporter``.
final class SignalHandling {
    /// The signals handled, with their names.
    static let handled: [(number: Int32, name: String)] = [(SIGHUP, "SIGHUP"), (SIGUSR1, "SIGUSR1"), (SIGUSR2, "SIGUSR2"), (SIGALRM, "SIGALRM")]

    private var sources: [any DispatchSourceSignal] = []

    /// Installs the handlers; they stay until ``cancel()``.
    init(logger: Logger) {
        let reporter = SignalReporter(logger: logger)
        let queue = DispatchQueue(label: "smoothd.signals")
        for (number, name) in SignalHandling.handled {
            // Ignored at the process level first, so that the default action (exit) never runs; the dispatch
            // source still sees each delivery.
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: queue)
            source.setEventHandler { reporter.received(number, name: name) }
            source.resume()
            sources.append(source)
        }
    }

    /// Removes the dispatch sources; the signals stay ignored until the process exits.
    func cancel() {
        for source in sources { source.cancel() }
        sources.removeAll()
    }
}

/// Logs the signals ``SignalHandling`` receives: every SIGHUP, the others once each.
///
/// `Sendable`: the set of signals reported is behind a `Mutex`; the logger is a value.
final class SignalReporter: Sendable {
    private let reported = Mutex<Set<Int32>>([])
    private let logger: Logger

    init(logger: Logger) { self.logger = logger }

    func received(_ number: Int32, name: String) {
        if number == SIGHUP {
            logger.notice("SIGHUP received: nothing is reloaded while smoothd runs; restart it to apply a changed config file (systemctl restart smoothd)")
            return
        }
        if reported.withLock({ $0.insert(number).inserted }) {
            logger.notice("\(name) received and ignored (smoothd stops on SIGTERM and SIGINT only); later ones are ignored silently")
        }
    }
}
