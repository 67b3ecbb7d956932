import SmoothdJSON
import SmoothdMetrics
import SmoothdPipeline
import SmoothdRuns
import Testing
@testable import SmoothdDaemon

/// The live page's cache, with time passed in: nothing before the totals are attached, one rendering shared for a
/// second however often it is asked for, a new one (with the new totals) after that or when the clock steps back.
@Suite("Live report cache")
struct LiveReportTests {
    /// The embedded document of a rendered page.
    func embedded(_ page: [UInt8]) throws -> JSONValue {
        let html = String(decoding: page, as: UTF8.self)
        let start = try #require(html.range(of: "<script type=\"application/json\" id=\"smoothd-data\">"))
        let end = try #require(html.range(of: "</script>", range: start.upperBound..<html.endIndex))
        return try JSONValue.parse(String(html[start.upperBound..<end.lowerBound]))
    }

    @Test func rendersAtMostOncePerSecond() throws {
        let dir = TempDirectory()
        defer { dir.remove() }
        let (_, totals) = try startStore(dir)
        let live = LiveReport(options: MetricOptions(), output: dir.sub("out"))
        #expect(live.current(now: 1000) == nil, "nothing to show before the totals are loaded")
        live.attach(totals)
        let first = try #require(live.current(now: 1000))
        #expect(try embedded(first.html)["total"]?["shards_ok"] == .int(0))

        var shard = MetricAccumulator()
        shard.addIgnoredRow()
        let meta = JSONValue.object([("model", .string("m")), ("checkpoint", .string("c")), ("split", .string("s"))])
        let placement = try ShardPlacement.place(shard: "a.lshd.zst", meta: meta, groupBy: .standard).get()
        totals.recordSuccess(shard, placement: placement, time: "2026-12-02T00:00:00.000Z", file: "a.summary.json", instance: "a.lshd.zst")
        let cached = try #require(live.current(now: 1000.9))
        #expect(cached.time == 1000 && cached.html == first.html && cached.totals == first.totals, "within the second: the same page")

        let next = try #require(live.current(now: 1001))
        #expect(next.time == 1001)
        #expect(try embedded(next.html)["total"]?["shards_ok"] == .int(1))
        #expect(try embedded(next.html)["groups"]?.arrayValue?.first?["key"] == meta, "the totals' groups are drawn")
        #expect(try JSONValue.parse(utf8: next.totals)["shards_ok"] == .int(1), "GET /totals.json has the new totals")
        #expect(try #require(live.current(now: 999)).time == 999, "a clock stepped back renders again")
    }
}
