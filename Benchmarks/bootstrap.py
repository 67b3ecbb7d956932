#!/usr/bin/env python3
"""The cost of `--bootstrap R` per row: `smoothd eval --json FILE` without and with `--bootstrap R` on the same
shard, alternately, fastest of N runs each (release build). Prints a Markdown table for Benchmarks/README.md.

    swift build -c release
    python3 Benchmarks/bootstrap.py [--build-path .build] [--runs 3] [--replicates 200]
"""
import argparse
import json
import os
import subprocess
import time

SHARDS = [("f32-k10-1M", 10, 1_000_000), ("f32-k32000-2048", 32_000, 2_048)]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build-path", default=".build")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--replicates", type=int, default=200)
    parser.add_argument("--data", default="bench-data")
    args = parser.parse_args()
    release = os.path.join(args.build_path, "release")
    smoothd, bench = os.path.join(release, "smoothd"), os.path.join(release, "smoothd-bench")
    os.makedirs(args.data, exist_ok=True)
    print(f"| shard | rows | without | --bootstrap {args.replicates} | ratio | extra ns/row | extra ns/row/replicate |")
    print("|---|---|---|---|---|---|---|")
    for preset, k, rows in SHARDS:
        path = os.path.join(args.data, preset + ".lshd.zst")
        if not os.path.exists(path):
            subprocess.run([bench, "generate", preset, path], check=True, stdout=subprocess.DEVNULL)
        best = {"plain": float("inf"), "boot": float("inf")}
        for _ in range(args.runs):
            for name, extra in (("plain", []), ("boot", ["--bootstrap", str(args.replicates)])):
                start = time.perf_counter()
                out = subprocess.run([smoothd, "eval", "--json", *extra, path], check=True, capture_output=True).stdout
                best[name] = min(best[name], time.perf_counter() - start)
                if name == "boot":
                    assert json.loads(out)["total"]["intervals"]["nll"] is not None
        extra_ns = (best["boot"] - best["plain"]) / rows * 1e9
        print(f"| f32, K = {k:,} | {rows:,} | {best['plain']:.3f} s | {best['boot']:.3f} s | {best['boot'] / best['plain']:.2f} "
              f"| {extra_ns:,.0f} | {extra_ns / args.replicates:.2f} |")


if __name__ == "__main__":
    main()
