#!/usr/bin/env python3
"""Benchmarks smoothd side by side with `zstd -d` (the floor) and the NumPy/PyTorch peer, in one run.

    python3 Benchmarks/run.py [--data DIR] [--runs 3] [--peers numpy,torch] [--only PRESET,...]
                              [--build-path .build] [--baseline SMOOTHD]

Builds nothing: run `swift build -c release` first (built with `--build-path DIR`: pass the same DIR here).
Generates the synthetic shards with `BUILD/release/smoothd-bench generate` (once; they are kept in --data), then for each shard times
`zstd -d -c FILE > /dev/null` and `smoothd eval --json FILE > /dev/null` alternately --runs times and
keeps each one's fastest run, measures peak RSS with wait4(), runs the peer script once per engine, and
measures the row kernel alone. Prints a Markdown table for Benchmarks/README.md. No assertions: the
machine is noisy, so the figures are for people, not tests.

`--only merge-10k` (also part of the default set) times `smoothd merge` of 10,000 serve summaries: see
merge_benchmark(). `--only serve-2k` times `smoothd serve` over 2,000 small shards (fsyncs counted with strace),
`--only start-100k` its start with 100,000 summaries in the output: see serve_benchmark() and start_benchmark();
both take --baseline.

With --baseline SMOOTHD (another build, e.g. of the code before a change), that binary's `eval --json` runs
in the same rounds, the order of the commands rotating from round to round, and a second table gives both
binaries' medians and their ratio (this build / baseline).
"""
import argparse, json, os, platform, statistics, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEER = os.path.join(os.path.dirname(ROOT), "shared/bench/peer_eval.py")
PRESETS = ["f32-k32000-1frame", "bf16-k32000-8frames", "f32-k10-10M", "f32-k256000"]
MERGE = "merge-10k"
SERVE = "serve-2k"
START = "start-100k"


LAST_CPU = [0.0]  # user + system seconds of the last run()'s process tree


def run(cmd, stdout=subprocess.DEVNULL):
    """Runs cmd; returns (seconds, peak RSS in MiB, stdout bytes or None). LAST_CPU[0] gets its CPU time."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.PIPE)
    out = proc.stdout.read() if stdout == subprocess.PIPE else None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{err.decode(errors='replace')}")
    LAST_CPU[0] = usage.ru_utime + usage.ru_stime
    return seconds, usage.ru_maxrss / 1024, out


SIMD_FLAGS = ["sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512_bf16"]


def cpu_description():
    """The CPU's model and its SIMD flags, read from /proc/cpuinfo now (the kernel variant depends on them)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and model in ("", platform.machine()):
                    model = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    present = [f for f in SIMD_FLAGS if f in flags]
    return model, present, "avx512bw" in flags


def payload_bytes(path):
    seconds, rss, out = run(["sh", "-c", f"zstd -d -c '{path}' | wc -c"], stdout=subprocess.PIPE)
    return int(out.decode().strip())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.path.join(ROOT, "bench-data"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--peers", default="numpy,torch")
    ap.add_argument("--only", default=",".join(PRESETS + [MERGE]))
    ap.add_argument("--build-path", default=os.path.join(ROOT, ".build"), help="the build folder of this build")
    ap.add_argument("--baseline", help="another smoothd binary, timed in the same rounds")
    a = ap.parse_args()
    global SMOOTHD, BENCH
    SMOOTHD = os.path.join(a.build_path, "release/smoothd")
    BENCH = os.path.join(a.build_path, "release/smoothd-bench")
    os.makedirs(a.data, exist_ok=True)
    peers = [p for p in a.peers.split(",") if p]
    only = a.only.split(",")
    if MERGE in only:
        merge_benchmark(a.data, a.runs)
        only.remove(MERGE)
    if SERVE in only:
        serve_benchmark(a.data, a.runs, a.baseline)
        only.remove(SERVE)
    if START in only:
        start_benchmark(a.data, a.runs, a.baseline)
        only.remove(START)
    if not only:
        return
    rows = []
    comparisons = []
    for preset in only:
        path = os.path.join(a.data, preset + ".lshd.zst")
        if not os.path.exists(path):
            print(f"generating {path}", file=sys.stderr)
            run([BENCH, "generate", preset, path])
        size = payload_bytes(path)
        best = {"zstd": (1e9, 0, 0), "smoothd": (1e9, 0, 0), "baseline": (1e9, 0, 0)}  # seconds, peak RSS, CPU seconds
        commands = [("zstd", ["sh", "-c", f"zstd -q -d -c '{path}' > /dev/null"]), ("smoothd", [SMOOTHD, "eval", "--json", path])]
        if a.baseline:
            commands.append(("baseline", [a.baseline, "eval", "--json", path]))
        times = {name: [] for name, _ in commands}
        for index in range(a.runs):
            # Rotate the order, so that neither binary always runs right after the other (caches, load spikes).
            shift = index % len(commands)
            for name, cmd in commands[shift:] + commands[:shift]:
                seconds, rss, _ = run(cmd)
                times[name].append(seconds)
                peak = max(rss, best[name][1])  # the highest of every run, not only the fastest one's
                best[name] = (seconds, peak, LAST_CPU[0]) if seconds < best[name][0] else (best[name][0], peak, best[name][2])
        if a.baseline:
            comparisons.append((preset, {name: statistics.median(t) for name, t in times.items()}, best))
        peer_times = {}
        for engine in peers:
            try:
                seconds, rss, _ = run([sys.executable, PEER, "--engine", engine, path])
                peer_times[engine] = (seconds, rss)
            except SystemExit as e:
                print(f"peer {engine} skipped: {e}", file=sys.stderr)
        rows.append((preset, size, best, peer_times, {name: statistics.median(t) for name, t in times.items()}))
        print(f"{preset}: smoothd {best['smoothd'][0]:.3f}s zstd {best['zstd'][0]:.3f}s "
              + " ".join(f"{k} {v[0]:.2f}s" for k, v in peer_times.items()), file=sys.stderr)

    kernel = {}
    for dtype in ["float32", "bfloat16", "float16"]:
        for k in [32000, 10]:
            _, _, out = run([BENCH, "kernel", dtype, str(k), "2"], stdout=subprocess.PIPE)
            kernel[(dtype, k)] = float(out.decode().split()[-1])

    small_k = []
    if any(p.startswith("f32-k10") for p in only):
        _, _, out = run([BENCH, "small-k", "1"] + [str(k) for k in SMALL_K], stdout=subprocess.PIPE)
        small_k = [tuple(float(x) for x in line.split()) for line in out.decode().splitlines() if line.strip()]

    model, flags, has_avx512 = cpu_description()
    load = os.getloadavg()
    print(f"Machine: {platform.node()} ({os.cpu_count()} cores, {model}; SIMD flags: {' '.join(flags) or 'none'}), "
          f"{time.strftime('%Y-%m-%d %H:%M')}; load average {LOAD_AT_START[0]:.1f} at the start, {load[0]:.1f} at the end; "
          f"best of {a.runs} for smoothd and zstd (their medians in brackets), one run per peer.\n")
    head = "| shard | payload | smoothd | GB/s | zstd -d | smoothd / zstd | smoothd CPU | peak RSS |" + \
           "".join(f" {p} | {p} RSS | {p} / smoothd |" for p in peers)
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for preset, size, best, peer_times, median in rows:
        s, z = best["smoothd"], best["zstd"]
        cells = [preset, f"{size / 2**30:.2f} GiB", f"{s[0]:.3f} s", f"{size / s[0] / 1e9:.2f}", f"{z[0]:.3f} s",
                 f"{s[0] / z[0]:.2f} ({median['smoothd'] / median['zstd']:.2f})", f"{s[2]:.2f} s", f"{s[1]:.0f} MiB"]
        for p in peers:
            if p in peer_times:
                t, r = peer_times[p]
                cells += [f"{t:.2f} s", f"{r:.0f} MiB", f"{t / s[0]:.1f}×"]
            else:
                cells += ["-", "-", "-"]
        print("| " + " | ".join(cells) + " |")
    if comparisons:
        print(f"\nThis build against --baseline {a.baseline}: medians of {a.runs} interleaved runs of eval --json; "
              "ratio = this build / baseline (below 1: faster).\n")
        print("| shard | smoothd (median) | baseline (median) | ratio | zstd -d (median) | peak RSS | baseline peak RSS |")
        print("|---|---|---|---|---|---|---|")
        for preset, median, best in comparisons:
            print(f"| {preset} | {median['smoothd']:.3f} s | {median['baseline']:.3f} s | {median['smoothd'] / median['baseline']:.3f} "
                  f"| {median['zstd']:.3f} s | {best['smoothd'][1]:.0f} MiB | {best['baseline'][1]:.0f} MiB |")
    print("\nRow kernel alone, one thread, G logits/s:\n")
    print("| dtype | K = 32,000 | K = 10 |\n|---|---|---|")
    for dtype in ["float32", "bfloat16", "float16"]:
        print(f"| {dtype} | {kernel[(dtype, 32000)]:.2f} | {kernel[(dtype, 10)]:.3f} |")
    if small_k:
        variant = os.environ.get("SMOOTHD_KERNEL") or ("avx512" if has_avx512 else "avx2")
        print(f"\nSmall K, float32, one thread (its CPU time), the {variant} kernel variant, M rows/s, side by side in one run: before "
              "is the row-at-a-time kernel and `add` per row (what every K ran until issue 15), now the batch kernel (lanes for "
              "K <= 64) and the batch `add`; kernel alone, then kernel + exact accumulation as in a chunk:\n")
        print("| K | kernel before | kernel now | now / before | chunk before | chunk now | now / before |\n|---|---|---|---|---|---|---|")
        for k, before, now, chunk_before, chunk_now in small_k:
            print(f"| {k:.0f} | {before:.1f} | {now:.1f} | {now / before:.2f}× | {chunk_before:.1f} | {chunk_now:.1f} | {chunk_now / chunk_before:.2f}× |")
    print_goals(rows, small_k, has_avx512)


SMALL_K = [2, 3, 4, 8, 10, 16, 17, 32, 33, 48, 64]
LOAD_AT_START = os.getloadavg()

# Issue 15's goals for eval: (preset, smoothd / zstd -d at most); every one also keeps peak RSS <= 64 MiB.
GOALS = [("f32-k32000-1frame", 1.05), ("bf16-k32000-8frames", 0.65), ("f32-k10-10M", 1.10)]  # bf16: 0.60 on AVX-512


def print_goals(rows, small_k, has_avx512):
    """One table with every goal's figure next to its floor (zstd -d on the same file, same rounds)."""
    measured = {preset: (size, best, median) for preset, size, best, _, median in rows}
    print("\nGoals (issue 15, eval; best of the rounds, medians in brackets):\n")
    print("| goal | smoothd | zstd -d (floor) | ratio | target | peak RSS | |\n|---|---|---|---|---|---|---|")
    for preset, target in GOALS:
        if preset not in measured:
            continue
        size, best, median = measured[preset]
        s, z = best["smoothd"], best["zstd"]
        ratio = s[0] / z[0]
        note = ""
        if preset.startswith("bf16"):  # the issue asks 0.60 where the AVX-512 kernel runs, 0.65 on AVX2
            target, note = (0.60, " (AVX-512)") if has_avx512 else (0.65, " (AVX2)")
        extra = f", {10e6 / s[0] / 1e6:.1f} M rows/s" if preset == "f32-k10-10M" else ""
        met = "met" if ratio <= target and s[1] <= 64 else "not met"
        print(f"| {preset}: ≤ {target:.2f}× zstd -d{note} | {s[0]:.3f} s{extra} | {z[0]:.3f} s | {ratio:.2f} "
              f"({median['smoothd'] / median['zstd']:.2f}) | {target:.2f} | {s[1]:.0f} MiB | {met} |")
    if small_k:
        slowest = min(now / before for _, _, _, before, now in small_k)
        print(f"| every K in 2–64 faster than before (kernel + accumulation) | slowest gain {slowest:.2f}× | | | > 1 | | "
              f"{'met' if slowest > 1 else 'not met'} |")


def merge_benchmark(data, runs, shards=10_000, ranks=1_000):
    """`smoothd merge --json OUT` over 10,000 summaries, side by side with reading the same files (`cat`, the
    floor), the Python package's merge, and `smoothd eval` over the 10,000 shards themselves.

    The summaries are made once and kept in DATA/merge-10k/: 10,000 small shards (float32, K = 100, 64 rows,
    meta model/checkpoint/split/shard_index/num_shards: 10 checkpoints of 1,000 ranks, so 10 groups) written
    with the Python package, then one `smoothd serve --exit-when-idle` that evaluates them into out/ (and
    moves the shards to spool/done/, which the eval peer reads).
    """
    base = os.path.join(data, "merge-10k")
    spool, out = os.path.join(base, "spool"), os.path.join(base, "out")
    summaries = lambda: [n for n in os.listdir(out) if n.endswith(".summary.json")] if os.path.isdir(out) else []
    if len(summaries()) != shards:
        sys.path.insert(0, os.path.join(ROOT, "python"))
        import numpy as np
        import smoothd
        os.makedirs(spool, exist_ok=True)
        rng = np.random.default_rng(11)
        print(f"writing {shards} shards into {spool}", file=sys.stderr)
        for i in range(shards):
            checkpoint, rank = 100 * (1 + i // ranks), i % ranks
            logits = rng.normal(0, 2, (64, 100)).astype(np.float32)
            labels = rng.integers(0, 100, 64)
            meta = {"model": "bench", "checkpoint": checkpoint, "split": "validation", "shard_index": rank,
                    "num_shards": ranks}
            name = f"bench.{checkpoint}.r{rank}.lshd.zst"
            smoothd.write_shard(os.path.join(spool, "." + name + ".tmp"), logits, labels, meta=meta, threads=1)
            os.rename(os.path.join(spool, "." + name + ".tmp"), os.path.join(spool, name))
        print("serve --exit-when-idle over them", file=sys.stderr)
        seconds, _, _ = run([SMOOTHD, "serve", "--spool", spool, "--output", out, "--metrics-listen", "none",
                             "--exit-when-idle"])
        print(f"serve took {seconds:.1f} s", file=sys.stderr)
    assert len(summaries()) == shards, f"{out} holds {len(summaries())} summaries, not {shards}"
    files = sorted(os.path.join(out, n) for n in summaries())
    cases = [("`cat` of the summaries (floor)", ["sh", "-c", f"cat '{out}'/*.summary.json > /dev/null"]),
             ("`smoothd merge --json OUT`", [SMOOTHD, "merge", "--json", out]),
             ("`smoothd merge OUT` (table)", [SMOOTHD, "merge", out]),
             ("`smoothd eval --json` of the 10,000 shards (SPOOL/done/)",
              ["sh", "-c", f"'{SMOOTHD}' eval --json '{spool}'/done/*.lshd.zst > /dev/null"]),
             ("Python `results.merge(results.load(OUT))`",
              [sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); from smoothd import results; "
                                     "results.dumps(results.merge(results.load(sys.argv[2])))",
               os.path.join(ROOT, "python"), out])]
    best = {}
    for _ in range(runs):
        for name, cmd in cases:
            seconds, rss, _ = run(cmd)
            if seconds < best.get(name, (1e9, 0))[0]:
                best[name] = (seconds, rss)
    floor = best[cases[0][0]][0]
    merge = best[cases[1][0]][0]
    print(f"\n`smoothd merge` of {len(files)} summaries ({sum(os.path.getsize(f) for f in files) / 2**20:.0f} MiB, "
          f"{shards // ranks} groups); best of {runs}:\n")
    print("| command | wall | / cat | / merge --json | peak RSS |\n|---|---|---|---|---|")
    for name, _ in cases:
        seconds, rss = best[name]
        print(f"| {name} | {seconds:.3f} s | {seconds / floor:.1f} | {seconds / merge:.2f} | {rss:.0f} MiB |")
    print(f"\nGoal: merge of 10,000 summaries under 2 s: {merge:.3f} s ({'met' if merge < 2 else 'not met'}).")


def write_small_shards(spool, count, prefix, rows=200, k=2):
    """`count` small shards (float32, K = `k`, `rows` rows, meta of one run, one rank each) written with the Python
    package under temporary names and renamed, as producers do."""
    sys.path.insert(0, os.path.join(ROOT, "python"))
    import numpy as np
    import smoothd
    os.makedirs(spool, exist_ok=True)
    rng = np.random.default_rng(5)
    for i in range(count):
        logits = rng.normal(0, 2, (rows, k)).astype(np.float32)
        labels = rng.integers(0, k, rows)
        meta = {"model": "bench", "checkpoint": 1, "split": "validation", "shard_index": i, "num_shards": count}
        name = f"{prefix}.r{i}.lshd.zst"
        smoothd.write_shard(os.path.join(spool, "." + name + ".tmp"), logits, labels, meta=meta, threads=1)
        os.rename(os.path.join(spool, "." + name + ".tmp"), os.path.join(spool, name))


def rename_fsync_floor(directory, count, keep=False):
    """Seconds for `count` renames each followed by an fsync of their directory: one durable directory change per
    shard, the least a spool daemon that moves every shard does (the floor of the serve benchmark). With `keep`, the
    files are left for the caller to delete later (see serve_benchmark)."""
    os.makedirs(directory, exist_ok=True)
    names = [os.path.join(directory, f"f{i}") for i in range(count)]
    for n in names:
        with open(n, "wb") as f:
            f.write(b"x")
    dfd = os.open(directory, os.O_RDONLY)
    start = time.perf_counter()
    for n in names:
        os.rename(n, n + ".moved")
        os.fsync(dfd)
    seconds = time.perf_counter() - start
    os.close(dfd)
    if not keep:
        subprocess.run(["rm", "-rf", directory], check=True)
    return seconds


def table(title, columns, rows):
    """Prints `title`, then a Markdown table."""
    print(title + "\n")
    print("| " + " | ".join(columns) + " |\n|" + "---|" * len(columns))
    for cells in rows:
        print("| " + " | ".join(cells) + " |")


def interleaved(binaries, runs, measure, floor_name, floor):
    """`runs` rounds of `measure(binary)` -> (seconds, RSS) for each of `binaries` (their order rotating from round
    to round) and of `floor()` -> seconds; returns the times by name and each binary's peak RSS."""
    times = {name: [] for name, _ in binaries}
    times[floor_name] = []
    rss = {}
    for index in range(runs):
        for name, binary in binaries[index % len(binaries):] + binaries[:index % len(binaries)]:
            seconds, r = measure(binary)
            times[name].append(seconds)
            rss[name] = max(rss.get(name, 0), r)
        times[floor_name].append(floor())
    return times, rss


def serve_benchmark(data, runs, baseline, shards=2000):
    """`smoothd serve --exit-when-idle` over 2,000 small shards (K = 2, 200 rows) preloaded in the spool, this build
    and --baseline in the same rounds (order rotating), each time on a fresh copy of the shards and an empty output;
    the floor is a loop of rename + directory fsync, once per shard, timed in the same rounds. Then one more run
    of each under `strace -f -c -e trace=fsync,fdatasync,syncfs` for the fsyncs per shard."""
    base = os.path.join(data, "serve-2k")
    source = os.path.join(base, "shards")
    if not os.path.isdir(source) or len([n for n in os.listdir(source) if n.endswith(".lshd.zst")]) != shards:
        subprocess.run(["rm", "-rf", source], check=True)
        print(f"writing {shards} shards into {source}", file=sys.stderr)
        write_small_shards(source, shards, "serve")
    binaries = [("smoothd", SMOOTHD)] + ([("baseline", baseline)] if baseline else [])
    # Every run gets directories of its own, all deleted at the end: on an ext4 without a journal (this VM's), each
    # file created skips the inodes deleted in the last minute or so (`recently_deleted`), so deleting the previous
    # run's 6,000 files just before a run made its record creations about 20 % of its CPU.
    rounds = os.path.join(base, "rounds")
    subprocess.run(["rm", "-rf", rounds], check=True)
    counter = [0]

    def serve(binary, prefix=()):
        counter[0] += 1
        spool, out = os.path.join(rounds, str(counter[0]), "spool"), os.path.join(rounds, str(counter[0]), "out")
        os.makedirs(os.path.dirname(spool))
        subprocess.run(["cp", "-r", source, spool], check=True)
        seconds, rss, _ = run(list(prefix) + [binary, "serve", "--spool", spool, "--output", out, "--metrics-listen", "none",
                                              "--exit-when-idle"])
        done = len(os.listdir(os.path.join(spool, "done")))
        assert done == shards, f"{binary}: {done} of {shards} shards in done/"
        return seconds, rss

    def floor_run():
        counter[0] += 1
        return rename_fsync_floor(os.path.join(rounds, str(counter[0]), "floor"), shards, keep=True)

    times, rss = interleaved(binaries, runs, serve, "floor", floor_run)
    fsyncs = {}
    for name, binary in binaries:
        trace = os.path.join(base, f"strace-{name}.txt")
        serve(binary, prefix=["strace", "-f", "-c", "-e", "trace=fsync,fdatasync,syncfs", "-o", trace])
        calls = 0
        for line in open(trace):
            parts = line.split()
            if parts and parts[-1] in ("fsync", "fdatasync", "syncfs"):
                calls += int(parts[3])
        fsyncs[name] = calls
    subprocess.run(["rm", "-rf", rounds], check=True)
    floor = statistics.median(times["floor"])
    medians = {name: statistics.median(times[name]) for name, _ in binaries}
    table(f"\n`smoothd serve --exit-when-idle` over {shards} small shards (K = 2, 200 rows) preloaded; medians of {runs} "
          f"interleaved runs; floor: {shards} × (rename + fsync of the directory) = {floor:.3f} s ({shards / floor:.0f}/s).",
          ["binary", "wall (median)", "shards/s", "/ floor", "fsync calls per shard (strace)", "peak RSS"],
          [[name, f"{medians[name]:.3f} s", f"{shards / medians[name]:.0f}", f"{medians[name] / floor:.2f}",
            f"{fsyncs[name] / shards:.2f}", f"{rss[name]:.0f} MiB"] for name, _ in binaries])
    if baseline:
        print(f"\nratio this build / baseline (wall): {statistics.median(times['smoothd']) / statistics.median(times['baseline']):.3f}")


def start_benchmark(data, runs, baseline, summaries=100_000):
    """The start of `smoothd serve` with 100,000 summaries in the output directory: the time from exec to the log
    line "totals reconciled" (the records read and merged, totals.json written: what stands between a start and
    READY) and the peak RSS of `serve --exit-when-idle` over an empty spool, this build and --baseline in the same
    rounds; the floor is `cat` of the summaries. The summaries are made once: one shard (float32, K = 16, 64 rows,
    meta of one run) evaluated by `smoothd serve`, and its summary copied 100,000 times under other shard names,
    checkpoints and ranks: 100 groups (checkpoints) of 1,000 ranks, as in merge-10k (writing 100,000 real shards
    takes hours here: every producer write is fsynced twice)."""
    base = os.path.join(data, "start-100k")
    out, spool = os.path.join(base, "out"), os.path.join(base, "spool")
    count = lambda: len([n for n in os.listdir(out) if n.endswith(".summary.json")]) if os.path.isdir(out) else 0
    if count() != summaries:
        subprocess.run(["rm", "-rf", base], check=True)
        write_small_shards(spool, 1, "start", rows=64, k=16)
        run([SMOOTHD, "serve", "--spool", spool, "--output", out, "--metrics-listen", "none", "--exit-when-idle", "--delete-processed"])
        template = open(os.path.join(out, "start.r0.lshd.zst.summary.json")).read()
        assert all(k in template for k in ['"shard_index": 0', '"num_shards": 1', '"checkpoint": 1']), "unexpected summary layout"
        print(f"writing {summaries} summaries into {out}", file=sys.stderr)
        for i in range(summaries):
            text = template.replace("start.r0.lshd.zst", f"start.r{i}.lshd.zst").replace('"shard_index": 0', f'"shard_index": {i % 1000}') \
                .replace('"num_shards": 1', '"num_shards": 1000').replace('"checkpoint": 1', f'"checkpoint": {1 + i // 1000}')
            with open(os.path.join(out, f"start.r{i}.lshd.zst.summary.json"), "w") as f:
                f.write(text)
        os.unlink(os.path.join(out, "totals.json"))
    assert count() == summaries, f"{out} holds {count()} summaries"
    binaries = [("smoothd", SMOOTHD)] + ([("baseline", baseline)] if baseline else [])

    def start(binary):
        begin = time.perf_counter()
        proc = subprocess.Popen([binary, "serve", "--spool", spool, "--output", out, "--metrics-listen", "none", "--exit-when-idle",
                                 "--delete-processed"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        ready = None
        for line in proc.stderr:
            if ready is None and "totals reconciled" in line:
                ready = time.perf_counter() - begin
        _, status, usage = os.wait4(proc.pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0 and ready is not None, f"{binary} failed to start"
        return ready, usage.ru_maxrss / 1024

    cat = ["sh", "-c", f"find '{out}' -maxdepth 1 -name '*.summary.json' -print0 | xargs -0 cat > /dev/null"]
    times, rss = interleaved(binaries, runs, start, "cat", lambda: run(cat)[0])
    floor = statistics.median(times["cat"])
    medians = {name: statistics.median(times[name]) for name, _ in binaries}
    table(f"\n`smoothd serve` start with {summaries} summaries in the output (to the \"totals reconciled\" log line); medians of "
          f"{runs} interleaved runs; floor: reading them (`cat`) {floor:.3f} s.",
          ["binary", "to ready (median)", "/ cat", "peak RSS"],
          [[name, f"{medians[name]:.3f} s", f"{medians[name] / floor:.1f}", f"{rss[name]:.0f} MiB"] for name, _ in binaries])


if __name__ == "__main__":
    main()
