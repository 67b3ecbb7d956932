#!/usr/bin/env python3
"""Producer throughput: the smoothd package's LSHDWriter side by side with `zstd -1 -T2` and the old helper.

    python3 Benchmarks/producer.py [--mib 256] [--runs 3] [--old-rev REV] [--levels 1,3]

One run measures, at K = 32,000 with int64 labels and writes of about 128 MiB (an eval-loop batch):
  * the new writer (defaults: 2 threads, 8 MiB frames, level 1) writing bfloat16 from torch bfloat16 tensors
    when torch is importable (raw bits, t.view(torch.int16)), and from numpy uint16 raw bits (raw=True);
    float32 from numpy arrays; and the same at the other --levels;
  * `zstd -1 -T2` compressing the same payload (the shard's decompressed bytes) from a file to a file;
  * the old helper (Scripts/lshd.py at --old-rev, via `git show`, run with its defaults: one frame, level 3,
    one thread; bfloat16 from the same torch tensors, or from float32 numpy when torch is missing);
  * each writer's peak memory: the process's RSS sampled every millisecond during the write, minus the RSS
    once the input is in memory, against the bound LSHDWriter documents.
Every case runs in a fresh process; the best of --runs is kept for time, the largest peak for memory.
Prints a Markdown table for Benchmarks/README.md. No assertions: timings are for people.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
K = 32_000


def case_main(spec: dict) -> None:
    """Runs one case in this (fresh) process and prints a JSON result line."""
    import threading

    import numpy as np

    sys.path.insert(0, os.path.join(ROOT, "python"))
    rows = spec["rows"]
    rng = np.random.default_rng(7)
    # Logits like the evaluation benchmarks': N(0, 2), the gold class lifted by 4 in half the rows.
    z = (rng.standard_normal((rows, K), dtype=np.float32) * 2.0)
    y = rng.integers(0, K, rows)
    lift = rng.uniform(size=rows) < 0.5
    z[np.arange(rows)[lift], y[lift]] += 4.0
    y[rng.uniform(size=rows) < 0.05] = -100
    source = spec["source"]
    if source == "torch-bf16":
        import torch
        data = torch.from_numpy(z).to(torch.bfloat16)
        del z
    elif source == "numpy-bf16-bits":
        from smoothd.writer import encode_logits
        data = encode_logits(z, "bfloat16")
        del z
    else:
        data = z
    batch = spec["batch"]

    if spec["writer"] == "old":
        sys.path.insert(0, os.path.dirname(spec["old_path"]))
        import importlib
        old = importlib.import_module(os.path.basename(spec["old_path"])[:-3])
        make = lambda: old.LSHDWriter(spec["path"], K, logit_dtype=spec["dtype"])  # noqa: E731
        write = lambda w, a, b: w.write(a, b)  # noqa: E731
    else:
        import smoothd
        make = lambda: smoothd.LSHDWriter(spec["path"], K, logit_dtype=spec["dtype"], level=spec["level"])  # noqa: E731
        raw = source == "numpy-bf16-bits"
        write = lambda w, a, b: w.write(a, b, raw=raw)  # noqa: E731

    page = os.sysconf("SC_PAGE_SIZE")

    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * page

    base = rss()
    peak = [base]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    with make() as w:
        for i in range(0, rows, batch):
            write(w, data[i:i + batch], y[i:i + batch])
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    print(json.dumps({"seconds": seconds, "peak_extra": peak[0] - base, "bytes": os.path.getsize(spec["path"])}))


def run_case(spec: dict, python: str) -> dict:
    proc = subprocess.run([python, os.path.abspath(__file__), "--case", json.dumps(spec)], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        sys.exit(f"case {spec} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def best(results):
    return {"seconds": min(r["seconds"] for r in results), "peak_extra": max(r["peak_extra"] for r in results),
            "bytes": results[0]["bytes"]}


def zstd_time(payload: str, out: str, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(["zstd", "-1", "-T2", "-q", "-f", payload, "-o", out], check=True)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--case", help=argparse.SUPPRESS)
    ap.add_argument("--mib", type=int, default=256, help="payload per shard (MiB of logits), default 256")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--old-rev", default=None,
                    help="a revision that still has Scripts/lshd.py (default: the parent of the commit that removed it)")
    ap.add_argument("--levels", default="1,3", help="levels of the new writer to measure (the first is the default)")
    ap.add_argument("--dir", default=None, help="where to write the shards (default: a temporary directory)")
    args = ap.parse_args()
    if args.case:
        case_main(json.loads(args.case))
        return 0

    python = sys.executable
    try:
        import torch  # noqa: F401
        have_torch = True
    except ImportError:
        have_torch = False
    levels = [int(v) for v in args.levels.split(",")]
    tmp = tempfile.TemporaryDirectory(prefix="producer-bench-", dir=args.dir)
    old_rev = args.old_rev or subprocess.run(
        ["git", "-C", ROOT, "rev-list", "-n", "1", "HEAD", "--", "Scripts/lshd.py"], check=True, capture_output=True,
        text=True).stdout.strip() + "~1"
    old_path = os.path.join(tmp.name, "lshd_old.py")
    with open(old_path, "w") as f:
        f.write(subprocess.run(["git", "-C", ROOT, "show", f"{old_rev}:Scripts/lshd.py"], check=True,
                               capture_output=True, text=True).stdout)

    sources = {"bfloat16": (["torch-bf16"] if have_torch else []) + ["numpy-bf16-bits"], "float32": ["numpy-f32"]}
    lines = []
    for dtype, srcs in sources.items():
        width = 2 if dtype == "bfloat16" else 4
        rows = (args.mib << 20) // (K * width)
        batch = max(1, (128 << 20) // (K * width))
        shard = os.path.join(tmp.name, f"{dtype}.lshd.zst")
        base = dict(rows=rows, batch=batch, dtype=dtype, path=shard, old_path=old_path)
        measured = []
        for src in srcs:
            for level in levels:
                spec = dict(base, source=src, writer="new", level=level)
                measured.append((f"new, level {level}", src, best([run_case(spec, python) for _ in range(args.runs)])))
        payload = os.path.join(tmp.name, f"{dtype}.payload")
        with open(payload, "wb") as f:
            subprocess.run(["zstd", "-d", "-q", "-c", shard], stdout=f, check=True)
        payload_bytes = os.path.getsize(payload)
        zstd_s = zstd_time(payload, payload + ".zst", args.runs)
        zstd_ratio = os.path.getsize(payload + ".zst") / payload_bytes
        os.unlink(payload)
        old_src = "torch-bf16" if (dtype == "bfloat16" and have_torch) else "numpy-f32"
        spec = dict(base, source=old_src, writer="old", level=3)
        measured.append(("old helper (level 3, 1 frame)", old_src, best([run_case(spec, python) for _ in range(1)])))
        lines.append((dtype, payload_bytes, zstd_s, zstd_ratio, measured))

    bound = 3 * (8 << 20) + 3 * (8 << 20)
    print(f"Machine: {platform.node()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; torch {'yes' if have_torch else 'no'}; "
          f"K = {K:,}; writes of 128 MiB; best of {args.runs} (old helper: 1 run)\n")
    print("| logits | writer | input | payload | wall | GB/s | / `zstd -1 -T2` | size / payload | peak extra RSS |")
    print("|---|---|---|---|---|---|---|---|---|")
    for dtype, payload_bytes, zstd_s, zstd_ratio, measured in lines:
        print(f"| {dtype} | `zstd -1 -T2` (file to file) | payload file | {payload_bytes / 2**20:.0f} MiB | "
              f"{zstd_s:.3f} s | {payload_bytes / zstd_s / 1e9:.2f} | 1.00 | {zstd_ratio:.3f} | |")
        for name, src, r in measured:
            print(f"| {dtype} | {name} | {src} | {payload_bytes / 2**20:.0f} MiB | {r['seconds']:.3f} s | "
                  f"{payload_bytes / r['seconds'] / 1e9:.2f} | {r['seconds'] / zstd_s:.2f} | "
                  f"{r['bytes'] / payload_bytes:.3f} | {r['peak_extra'] / 2**20:.0f} MiB |")
    print(f"\nLSHDWriter's stated bound with the defaults: {bound >> 20} MiB "
          f"(max_buffer_bytes + (threads + 1) × frame_bytes).")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
