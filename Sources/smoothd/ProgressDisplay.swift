import Foundation
import SmoothdPipeline

/// Shows `shard: 412 MiB / 1.0 GiB (40%)` on stderr while a shard takes more than a second,
/// and only when stderr is a terminal.
final class ProgressDisplay {
    /// The counter the evaluator advances.
    let counter: ProgressCounter?
    private let finished = DispatchSemaphore(value: 0)
    private let stopped = DispatchSemaphore(value: 0)
    private let running: Bool

    init(shard: String) {
        guard isatty(STDERR_FILENO) == 1 else {
            counter = nil
            running = false
            return
        }
        let counter = ProgressCounter()
        let size = (try? FileManager.default.attributesOfItem(atPath: shard)[.size] as? UInt64) ?? 0
        let finished = self.finished, stopped = self.stopped
        self.counter = counter
        running = true
        let thread = Thread {
            defer { stopped.signal() }
            if finished.wait(timeout: .now() + 1) == .success { return }
            repeat {
                let done = counter.value
                let percent = size > 0 ? Int(Double(done) / Double(size) * 100) : 0
                let line = "\r\(shard): \(ProgressDisplay.mebibytes(done)) / \(ProgressDisplay.mebibytes(size)) (\(percent)%)"
                FileHandle.standardError.write(Data(line.utf8))
            } while finished.wait(timeout: .now() + 0.5) == .timedOut
            FileHandle.standardError.write(Data("\r\u{1B}[K".utf8))
        }
        thread.start()
    }

    /// Ends the display and clears its line.
    func stop() {
        guard running else { return }
        finished.signal()
        stopped.wait()
    }

    static func mebibytes(_ bytes: UInt64) -> String { String(format: "%.0f MiB", Double(bytes) / 1_048_576) }
}
