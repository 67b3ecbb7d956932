extension DaemonMetrics {
    /// Writes the metrics to `path` atomically (temporary file in the same directory, then `rename`), for
    /// node_exporter's textfile collector, which only reads `*.prom` files and so never sees the temporary one.
    public func writeTextfile(path: String) throws(FileSystemError) {
        let directory = try DirectoryHandle(path: parentDirectory(of: path), create: false)
        try directory.writeAtomically(lastComponent(of: path), bytes: render(), durable: false)
    }
}
