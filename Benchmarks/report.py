#!/usr/bin/env python3
"""Benchmarks `smoothd report` on 10,000 shards in 200 groups, side by side with `smoothd merge --json` (the floor:
the same inputs read and merged, nothing drawn).

    python3 Benchmarks/report.py [--data DIR] [--runs 3]

Builds nothing: run `swift build -c release` first. Once (kept in --data): writes 10,000 small shards (K = 16,
64 rows each; 4 models x 50 checkpoints x 1 split, 50 ranks per checkpoint, meta step) with Fixtures/lshd.py
into a spool, and lets `smoothd serve --exit-when-idle` evaluate them into an output directory. Then times
`smoothd report -o FILE OUTPUT` and `smoothd merge --json OUTPUT > /dev/null` alternately --runs times (fastest
kept) and prints wall and CPU times, their ratio and the page size. No assertions: the figures are for people.
"""
import argparse, os, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "Fixtures"))
SMOOTHD = os.path.join(ROOT, ".build/release/smoothd")
MODELS, CHECKPOINTS, RANKS, K, ROWS = 4, 50, 50, 16, 64


def make_inputs(data):
    """The serve output directory of the 10,000 shards (made once)."""
    import numpy as np
    import lshd
    spool, out = os.path.join(data, "spool"), os.path.join(data, "output")
    if os.path.exists(os.path.join(out, "totals.json")):
        return out
    os.makedirs(spool, exist_ok=True)
    rng = np.random.default_rng(13)
    for m in range(MODELS):
        for c in range(CHECKPOINTS):
            step = 100 * (c + 1)
            sharpness = 0.5 + 3.0 * c / CHECKPOINTS  # later checkpoints are more confident and more often right
            for r in range(RANKS):
                z = (rng.standard_normal((ROWS, K)) * sharpness).astype(np.float32)
                y = np.where(rng.random(ROWS) < 0.3 + 0.5 * c / CHECKPOINTS, z.argmax(axis=1), rng.integers(0, K, ROWS))
                meta = {"model": f"model-{m}", "checkpoint": f"step-{step}", "step": step, "split": "validation",
                        "shard_index": r, "num_shards": RANKS}
                with lshd.LSHDWriter(os.path.join(spool, f"m{m}.c{c}.r{r}.lshd.zst"), K, meta=meta) as w:
                    w.write(z, y)
    start = time.perf_counter()
    subprocess.run([SMOOTHD, "serve", "--spool", spool, "--output", out, "--exit-when-idle", "--metrics-listen", "none",
                    "--log-level", "warning"], check=True)
    print(f"serve evaluated {MODELS * CHECKPOINTS * RANKS} shards in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return out


def timed(cmd):
    """(wall seconds, CPU seconds: user + system) of one run; on a shared machine CPU time is the steadier figure."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    if cmd[1] == "merge" and os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed: {' '.join(cmd)}")
    return time.perf_counter() - start, usage.ru_utime + usage.ru_stime


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.path.join(ROOT, "bench-data", "report"))
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    out = make_inputs(args.data)
    page = os.path.join(args.data, "report.html")
    report_s, merge_s = [], []
    for _ in range(args.runs):  # alternate, so both see the same machine load
        report_s.append(timed([SMOOTHD, "report", "-o", page, out]))
        merge_s.append(timed([SMOOTHD, "merge", "--json", out]))
    size = os.path.getsize(page)
    (rw, rc), (mw, mc) = min(report_s), min(merge_s)
    rc, mc = min(c for _, c in report_s), min(c for _, c in merge_s)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; best of {args.runs}")
    print("| shards | groups | report wall | report CPU | merge --json wall (floor) | merge CPU | report / merge (CPU) | page size |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {MODELS * CHECKPOINTS * RANKS:,} | {MODELS * CHECKPOINTS} | {rw:.3f} s | {rc:.3f} s | {mw:.3f} s | {mc:.3f} s "
          f"| {rc / mc:.2f} | {size / 1e6:.2f} MB |")


if __name__ == "__main__":
    main()
