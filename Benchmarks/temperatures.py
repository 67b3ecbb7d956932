#!/usr/bin/env python3
"""Cost of the temperature sweep: `smoothd eval --json` with 0, 1 and 4 temperatures, side by side in one run.

    python3 Benchmarks/temperatures.py [--runs 3] [--build-path .build] [--data bench-data]

Two float32 shards (written once with Fixtures/lshd.py into --data): K = 32,000 × 1,000 rows (128 MB of logits)
and K = 10 × 2,000,000 rows (80 MB). Every case runs in a fresh process, the orders rotated between rounds; the
best of --runs is kept. Prints a Markdown table for Benchmarks/README.md: time per extra temperature relative to
the same run without temperatures. No assertions: timings are for people.
"""
import argparse
import os
import platform
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARDS = {"f32-k32000-1000rows": (32_000, 1_000), "f32-k10-2M": (10, 2_000_000)}
SWEEPS = {0: [], 1: ["--temperatures", "2.0"], 4: ["--temperatures", "0.5,0.75,1.5,2.0"]}


def make(path, k, rows):
    import numpy as np
    sys.path.insert(0, os.path.join(ROOT, "Fixtures"))
    from lshd import write_shard
    rng = np.random.default_rng(14)
    labels = rng.integers(0, k, size=rows)
    logits = (rng.standard_normal((rows, k), dtype=np.float32) * 2).astype(np.float32)
    logits[np.arange(rows), labels] += 3
    write_shard(path, logits, labels, num_classes=k, logit_dtype="float32")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--build-path", default=os.path.join(ROOT, ".build"))
    ap.add_argument("--data", default=os.path.join(ROOT, "bench-data"))
    a = ap.parse_args()
    smoothd = os.path.join(a.build_path, "release/smoothd")
    os.makedirs(a.data, exist_ok=True)
    results = {}
    for name, (k, rows) in SHARDS.items():
        path = os.path.join(a.data, name + ".lshd.zst")
        if not os.path.exists(path):
            print(f"writing {path}", file=sys.stderr)
            make(path, k, rows)
        best = {n: 1e9 for n in SWEEPS}
        cases = list(SWEEPS.items())
        for r in range(a.runs):
            shift = r % len(cases)
            for n, flags in cases[shift:] + cases[:shift]:
                start = time.perf_counter()
                subprocess.run([smoothd, "eval", "--json"] + flags + [path], check=True, stdout=subprocess.DEVNULL)
                best[n] = min(best[n], time.perf_counter() - start)
        results[name] = (k, rows, best)
        print(f"{name}: " + ", ".join(f"{n} T: {t:.3f} s" for n, t in best.items()), file=sys.stderr)
    print(f"Machine: {platform.node()} ({os.cpu_count()} cores), {time.strftime('%Y-%m-%d')}; best of {a.runs}, "
          "eval --json with the default threads.\n")
    print("| shard | no temperatures | 1 temperature | 4 temperatures | per extra T (4-T run) | per extra T / no-T run |")
    print("|---|---|---|---|---|---|")
    for name, (k, rows, best) in results.items():
        per = (best[4] - best[0]) / 4
        print(f"| {name} | {best[0]:.3f} s | {best[1]:.3f} s | {best[4]:.3f} s | {per:.3f} s ({per / rows * 1e9:.1f} ns/row) "
              f"| {per / best[0]:.2f} |")


if __name__ == "__main__":
    main()
