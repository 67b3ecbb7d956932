/// A `--metrics-listen` value that could not be read.
public struct ListenAddressError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The text given.
    public var text: String
    /// `invalid listen address …`.
    public var description: String { "invalid listen address '\(text)': use HOST:PORT, [IPV6]:PORT or none" }
}

/// Where the metrics HTTP server listens: `HOST:PORT`, `[IPV6]:PORT`, or `none` to disable it.
public struct ListenAddress: Sendable, Equatable, CustomStringConvertible {
    /// Host name or IP address (without brackets).
    public var host: String
    /// TCP port; 0 lets the kernel choose (the chosen port is logged).
    public var port: Int

    /// Creates an address.
    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// The default, loopback only: `127.0.0.1:9464`.
    public static let loopbackDefault = ListenAddress(host: "127.0.0.1", port: 9464)

    /// Parses `HOST:PORT`, `[IPV6]:PORT`; `none`, `off` and the empty string give `nil` (no server).
    public static func parse(_ text: String) throws(ListenAddressError) -> ListenAddress? {
        let lowered = text.lowercased()
        if lowered == "none" || lowered == "off" || text.isEmpty { return nil }
        let host: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else {
                throw ListenAddressError(text: text)
            }
            host = text[text.index(after: text.startIndex)..<close]
            portText = text[text.index(close, offsetBy: 2)...]
        } else {
            guard let colon = text.lastIndex(of: ":"), !text[..<colon].contains(":") else {
                throw ListenAddressError(text: text)
            }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
        }
        guard !host.isEmpty, let port = Int(portText), (0...65535).contains(port) else {
            throw ListenAddressError(text: text)
        }
        return ListenAddress(host: String(host), port: port)
    }

    /// `HOST:PORT`, with brackets around an IPv6 host.
    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}
