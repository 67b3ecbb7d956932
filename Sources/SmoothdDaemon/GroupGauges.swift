import SmoothdJSON
import SmoothdMetrics
import SmoothdPipeline
import SmoothdRuns

/// The per-group gauges of `/metrics` (and `--textfile`): one series per group of `totals.json`, labelled by the
/// `--group-by` keys, for at most `--metrics-max-groups` groups (the most recently updated), so cardinality stays
/// bounded; `smoothd_groups_omitted` says how many were left out. Rendered as Prometheus text here rather than
/// through the registry, because the series come and go with the groups.
enum GroupGauges {
    /// The families, each with its help text and how a group's value is read.
    static let families: [(name: String, help: String, value: @Sendable (RunGroup, MetricValues, Double) -> Double?)] = [
        ("smoothd_group_loss", "Label-smoothed loss of the group's current summaries.", { _, v, _ in v.loss }),
        ("smoothd_group_nll", "Mean negative log-likelihood of the group.", { _, v, _ in v.nll }),
        ("smoothd_group_accuracy", "Top-1 accuracy of the group.", { _, v, _ in v.accuracy }),
        ("smoothd_group_top_k_accuracy", "Top-k accuracy of the group (k = --top-k).", { _, v, _ in v.topKAccuracy }),
        ("smoothd_group_ece", "Expected calibration error of the group.", { _, v, _ in v.ece }),
        ("smoothd_group_counted_rows", "Rows counted in the group's metrics.", { g, _, _ in Double(g.accumulator.countedRows) }),
        ("smoothd_group_shards", "Current summaries in the group.", { g, _, _ in Double(g.shards.count) }),
        ("smoothd_group_complete", "1 unless a rank the group's shards state (num_shards) is missing.",
         { g, _, _ in g.completeness?.isComplete == false ? 0 : 1 }),
        ("smoothd_group_last_update_timestamp_seconds", "Unix time a summary of the group last arrived or left.", { _, _, t in t }),
    ]

    /// The help texts of every family rendered here (for the families list of ``DaemonMetrics``).
    static let help: [(name: String, help: String)] = families.map { ($0.name, $0.help) } + [
        ("smoothd_groups", "Groups in totals.json."),
        ("smoothd_groups_omitted", "Groups in totals.json left out of the smoothd_group_* gauges by --metrics-max-groups."),
    ]

    /// The text exposition of the groups of `ledger`: the `limit` most recently updated, in key order.
    static func render(_ ledger: TotalsLedger, options: MetricOptions, limit: Int) -> [UInt8] {
        let all = ledger.runs.groups().groups
        let shown = all.enumerated().sorted { a, b in
            a.element.updated != b.element.updated ? a.element.updated > b.element.updated : a.offset < b.offset
        }.prefix(limit).sorted { $0.offset < $1.offset }.map(\.element)
        let labels = labelNames(ledger.runs.groupBy.keys)
        // Each group's values and label set once, not once per family (the loop renders after every result).
        let rows = shown.map { (entry: (group: RunGroup, updated: Double)) -> (RunGroup, MetricValues, Double, String) in
            let (group, updated) = entry
            let pairs = zip(labels, group.key.members).map { name, member in "\(name)=\"\(escape(labelValue(member.1)))\"" }
            return (group, MetricValues(group.accumulator, options: options), updated, pairs.isEmpty ? "" : "{" + pairs.joined(separator: ",") + "}")
        }
        var text = ""
        for family in families {
            text += "# HELP \(family.name) \(family.help)\n# TYPE \(family.name) gauge\n"
            for (group, values, updated, labelSet) in rows {
                guard let value = family.value(group, values, updated) else { continue }
                text += family.name + labelSet + " " + number(value) + "\n"
            }
        }
        text += "# HELP smoothd_groups \(help[families.count].help)\n# TYPE smoothd_groups gauge\nsmoothd_groups \(all.count)\n"
        text += "# HELP smoothd_groups_omitted \(help[families.count + 1].help)\n# TYPE smoothd_groups_omitted gauge\n"
        text += "smoothd_groups_omitted \(all.count - shown.count)\n"
        return Array(text.utf8)
    }

    /// Prometheus label names for meta keys: characters outside `[A-Za-z0-9_]` become `_`, a leading digit or
    /// `__` (reserved) gets a `key_` prefix, and a name already taken gets `_2`, `_3`, ….
    static func labelNames(_ keys: [String]) -> [String] {
        var taken: Set<String> = []
        return keys.map { key in
            var name = String(key.unicodeScalars.map { s -> Character in
                s.isASCII && (s.properties.isAlphabetic || ("0"..."9").contains(s) || s == "_") ? Character(s) : "_"
            })
            if name.isEmpty || name.first!.isNumber || name.hasPrefix("__") { name = "key_" + name }
            var unique = name
            var n = 2
            while taken.contains(unique) {
                unique = name + "_\(n)"
                n += 1
            }
            taken.insert(unique)
            return unique
        }
    }

    /// A group-key value as label text: a string as it is, a number or boolean as its JSON text, null as empty.
    static func labelValue(_ value: JSONValue) -> String {
        switch value {
        case .null: return ""
        case .string(let s): return s
        default: return value.serialized()
        }
    }

    /// Escapes a label value as the text format requires: backslash, double quote and line feed.
    static func escape(_ value: String) -> String {
        var out = ""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    /// A sample value in the text format (`NaN`, `+Inf`, `-Inf` for the non-finite ones).
    static func number(_ value: Double) -> String {
        if value.isNaN { return "NaN" }
        if value.isInfinite { return value > 0 ? "+Inf" : "-Inf" }
        return value.description
    }
}
