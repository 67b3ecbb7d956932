import Logging
import ServiceLifecycle

/// Sends `WATCHDOG=1` at half the interval systemd asks for (`WatchdogSec=`), but only while the spool loop
/// is alive, so a stuck daemon is restarted by systemd.
struct WatchdogService: Service {
    /// Where to send.
    let notifier: SystemdNotifier
    /// systemd's watchdog interval.
    let interval: Duration
    /// The liveness record.
    let health: DaemonHealth
    /// The logger.
    let logger: Logger

    /// Pings until graceful shutdown or cancellation.
    func run() async throws {
        let period = interval / 2
        logger.debug("watchdog enabled", metadata: ["interval": "\(interval)"])
        while !Task.isCancelled, !Task.isShuttingDownGracefully {
            if health.isAlive {
                notifier.watchdog()
            } else {
                logger.error("spool loop not responding; withholding the watchdog ping")
            }
            do {
                try await cancelWhenGracefulShutdown { try await Task.sleep(for: period) }
            } catch {
                return
            }
        }
    }
}
