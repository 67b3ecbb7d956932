#!/usr/bin/env python3
"""Largest relative error of `smoothd eval --json` against Fixtures/expected.json, per metric and fixture.

    python3 Scripts/fixture_report.py [--smoothd .build/release/smoothd]

Runs both smoothing modes with --report-smoothing 0,0.3 and top-k 1/5/10, ECE bins 15/10, and prints a
Markdown table (fixture, K, dtype, rows, counted, then the worst relative error over all metrics) and the
worst error per metric. The expected values come from the independent NumPy reference.
"""
import argparse, json, os, subprocess, sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def rel(a, e):
    if a is None or e is None:
        return 0.0 if a == e else float("inf")
    return abs(a - e) / abs(e) if e != 0 else abs(a)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoothd", default=os.path.join(ROOT, ".build/release/smoothd"))
    a = ap.parse_args()
    expected = json.load(open(os.path.join(ROOT, "Fixtures/expected.json")))
    worst_metric, rows = {}, []
    for fx in expected["valid"]:
        path = os.path.join(ROOT, "Fixtures", fx["file"])
        worst = 0.0
        for mode in ["uniform", "others"]:
            for k, bins in [(5, 15), (1, 10), (10, 15)]:
                out = subprocess.run([a.smoothd, "eval", "--json", "--smoothing", "0.1", "--smoothing-mode", mode,
                                      "--report-smoothing", "0,0.3", "--top-k", str(k), "--ece-bins", str(bins), path],
                                     capture_output=True, text=True, check=True)
                entry = json.loads(out.stdout)["shards"][0]
                pairs = [(m, entry[m], fx[m]) for m in ["nll", "perplexity", "accuracy", "mean_confidence", "entropy", "brier"]]
                pairs.append((f"top_k_accuracy", entry["top_k_accuracy"], fx["top_k_accuracy"][str(k)]))
                pairs.append(("ece", entry["ece"], fx["ece"][str(bins)]))
                for e in ["0.0", "0.1", "0.3"]:
                    pairs.append((f"loss {mode}", entry["losses_by_smoothing"][e], fx["loss"][mode][e]))
                for name, got, want in pairs:
                    r = rel(got, want)
                    worst = max(worst, r)
                    worst_metric[name] = max(worst_metric.get(name, 0.0), r)
                for c in ["rows", "counted_rows", "ignored_rows", "nonfinite_rows"]:
                    if entry[c] != fx[c]:
                        sys.exit(f"{fx['file']}: {c} {entry[c]} != {fx[c]}")
        rows.append((fx["file"], fx["num_classes"], fx["logit_dtype"], fx["rows"], fx["counted_rows"], worst))
    print("| fixture | K | dtype | rows | counted | max rel err |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]} | {r[5]:.1e} |")
    print("\n| metric | max rel err |\n|---|---|")
    for name, r in worst_metric.items():
        print(f"| {name} | {r:.1e} |")


if __name__ == "__main__":
    main()
