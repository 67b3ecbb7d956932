#if canImport(Glibc)
import Glibc
#endif
import Testing

@testable import SmoothdDaemon

@Suite("Config file, listen address, shard names")
struct ConfigurationTests {
    @Test func parsesKeyValueLines() throws {
        let text = """
        # smoothd config
        spool = /var/spool/smoothd
          output=/var/lib/smoothd   
        metrics-listen = "127.0.0.1:9100"

        delete-processed = yes
        smoothing = 0.2
        """
        let file = try DaemonConfigFile.parse(text, path: "test.conf")
        #expect(file.entries.map(\.key) == ["spool", "output", "metrics-listen", "delete-processed", "smoothing"])
        #expect(file.entries[1].value == "/var/lib/smoothd")
        #expect(file.entries[2].value == "127.0.0.1:9100")
        #expect(file.entries[2].line == 4)
    }

    @Test func rejectsBadLines() {
        #expect(throws: ConfigFileError.self) { try DaemonConfigFile.parse("spool /x", path: "c") }
        #expect(throws: ConfigFileError.self) { try DaemonConfigFile.parse("Spool = /x", path: "c") }
        #expect(throws: ConfigFileError.self) { try DaemonConfigFile.parse("spool = /x\nspool = /y", path: "c") }
        #expect(throws: ConfigFileError.self) { try DaemonConfigFile.parse("config = /etc/other", path: "c") }
        #expect(throws: ConfigFileError.self) { try DaemonConfigFile.parse("--spool = /x", path: "c") }
        do {
            _ = try DaemonConfigFile.parse("a = 1\n\nbroken", path: "c.conf")
            Issue.record("expected an error")
        } catch {
            #expect(error.line == 3)
            #expect(error.description.hasPrefix("c.conf:3:"))
        }
    }

    /// CRLF line ends (a file edited on Windows) are lines like any other; the `\r` is not part of the value.
    @Test func crlfLinesAreSplitAndTheirCarriageReturnsDropped() throws {
        let file = try DaemonConfigFile.parse("spool = /a\r\noutput = \"/b\"\r\n\r\n# c\r\nmax-inflight = 2\r\ndelete-processed = true", path: "c")
        #expect(file.entries.map(\.key) == ["spool", "output", "max-inflight", "delete-processed"])
        #expect(file.entries.map(\.value) == ["/a", "/b", "2", "true"])
        #expect(file.entries.map(\.line) == [1, 2, 5, 6])
    }

    /// A UTF-8 byte order mark is refused with a message that says so and names the file.
    @Test func byteOrderMarkIsRefusedReadably() throws {
        let dir = TempDirectory()
        defer { dir.remove() }
        let path = dir.sub("bom.conf")
        try Files.write([0xEF, 0xBB, 0xBF] + Array("spool = /a\n".utf8), to: path)
        do {
            _ = try DaemonConfigFile.load(path: path)
            Issue.record("a config file with a byte order mark was accepted")
        } catch {
            #expect(error.description.hasPrefix(path + ":"), "\(error)")
            #expect(error.description.contains("byte order mark"), "\(error)")
        }
    }

    /// The config file may be a symlink (/etc/alternatives, NixOS, Kubernetes ConfigMaps), also one to a symlink.
    @Test func symlinkedConfigFileIsFollowed() throws {
        let dir = TempDirectory()
        defer { dir.remove() }
        mkdir(dir.sub("data"), 0o755)
        try Files.write(Array("spool = /s\noutput = /o\n".utf8), to: dir.sub("data/real.conf"))
        #expect(symlink("data/real.conf", dir.sub("first.conf")) == 0)
        #expect(symlink(dir.sub("first.conf"), dir.sub("smoothd.conf")) == 0)
        let file = try DaemonConfigFile.load(path: dir.sub("smoothd.conf"))
        #expect(file.entries.map(\.value) == ["/s", "/o"])
        // A FIFO in its place is refused without blocking.
        #expect(mkfifo(dir.sub("fifo.conf"), 0o644) == 0)
        #expect(throws: ConfigFileError.self) { try DaemonConfigFile.load(path: dir.sub("fifo.conf")) }
    }

    @Test func flagsOnTheCommandLineWin() throws {
        let file = try DaemonConfigFile.parse("""
        spool = /a
        output = /b
        max-inflight = 4
        delete-processed = true
        exit-when-idle = off
        """, path: "c")
        let args = try file.arguments(
            flagKeys: ["delete-processed", "exit-when-idle"],
            overriddenBy: ["--max-inflight", "2", "--no-delete-processed", "--spool=/cli"])
        #expect(args == ["--output=/b", "--no-exit-when-idle"])
        let all = try file.arguments(flagKeys: ["delete-processed", "exit-when-idle"], overriddenBy: [])
        #expect(all == ["--spool=/a", "--output=/b", "--max-inflight=4", "--delete-processed", "--no-exit-when-idle"])
        // Arguments after `--` are not options.
        #expect(DaemonConfigFile.optionNames(in: ["--a", "--", "--b"]) == ["a"])
        #expect(throws: ConfigFileError.self) {
            try DaemonConfigFile.parse("delete-processed = maybe", path: "c").arguments(flagKeys: ["delete-processed"], overriddenBy: [])
        }
    }

    @Test func listenAddresses() throws {
        #expect(try ListenAddress.parse("127.0.0.1:9464") == ListenAddress(host: "127.0.0.1", port: 9464))
        #expect(try ListenAddress.parse("[::1]:80") == ListenAddress(host: "::1", port: 80))
        #expect(try ListenAddress.parse("localhost:0") == ListenAddress(host: "localhost", port: 0))
        #expect(try ListenAddress.parse("none") == nil)
        #expect(try ListenAddress.parse("OFF") == nil)
        #expect(ListenAddress(host: "::1", port: 9).description == "[::1]:9")
        for bad in ["9464", ":9464", "host:", "host:99999", "::1:80", "[::1]80", "h:x"] {
            #expect(throws: ListenAddressError.self, "\(bad)") { try ListenAddress.parse(bad) }
        }
        #expect(ListenAddress.loopbackDefault.host == "127.0.0.1")
    }

    @Test func finalShardNames() {
        for good in ["a.lshd.zst", "x.zst", "part-0001.lshd.zst", "a b.zst"] {
            #expect(ShardName.isFinal(good), "\(good)")
        }
        for bad in [".a.lshd.zst", "a.lshd.zst.tmp", "a.lshd.zst.part", "a.lshd", ".zst", "", "a.zst~2",
                    String(repeating: "x", count: 300) + ".zst"] {
            #expect(!ShardName.isFinal(bad), "\(bad)")
        }
    }

    @Test func instanceNamesRoundTrip() {
        #expect(ShardName.instance("a.lshd.zst", ordinal: 1) == "a.lshd.zst")
        #expect(ShardName.instance("a.lshd.zst", ordinal: 3) == "a.lshd.zst~3")
        #expect(ShardName.source(ofInstance: "a.lshd.zst~3") == "a.lshd.zst")
        #expect(ShardName.source(ofInstance: "a.lshd.zst") == "a.lshd.zst")
        #expect(ShardName.source(ofInstance: "a~b.zst") == "a~b.zst")
        #expect(!ShardName.isFinal(ShardName.instance("a.zst", ordinal: 2)))
        #expect(ShardName.summaryFile("a.lshd.zst") == "a.lshd.zst.summary.json")
        #expect(ShardName.errorFile("a.lshd.zst~2") == "a.lshd.zst~2.error.json")
    }

    @Test func timestampsSortChronologically() {
        let a = WallClock.iso8601(1_700_000_000.5)
        let b = WallClock.iso8601(1_700_000_009.25)
        #expect(a == "2023-11-14T22:13:20.500Z")
        #expect(a < b)
        #expect(WallClock.iso8601(0) == "1970-01-01T00:00:00.000Z")
    }
}
