import Logging
import NIOPosix

extension DaemonMetrics {
    /// Writes the metrics to `path` atomically (temporary file in the same directory, then `rename`), for
    /// node_exporter's textfile collector, which only reads `*.prom` files and so never sees the temporary one.
    public func writeTextfile(path: String) throws(FileSystemError) {
        let directory = try DirectoryHandle(path: parentDirectory(of: path), create: false)
        try directory.writeAtomically(lastComponent(of: path), bytes: render(), durable: false)
    }

    /// Writes the textfile on `pool` (the open, write and rename block) and logs a failure. `pool` must have one
    /// thread, so that two writes never share the temporary file; once it has stopped, the write is done here.
    func writeTextfile(path: String, on pool: NIOThreadPool, logger: Logger) async {
        let write: @Sendable () -> Void = {
            do {
                try self.writeTextfile(path: path)
            } catch {
                logger.error("cannot write the metrics textfile", metadata: ["path": "\(path)", "error": "\(error)"])
            }
        }
        do {
            try await pool.runIfActive(write)
        } catch {
            write()
        }
    }
}
