#!/usr/bin/env python3
"""End-to-end cross-check of `smoothd eval` against the float64 reference, on shards it has never seen.

    python3 Scripts/check_eval.py --smoothd .build/release/smoothd [--torch] [--seed N] [--keep DIR]

Generates random shards with the smoothd package's LSHDWriter (float32/float16/bfloat16, K = 2 ... 32000,
several ignore indexes, NaN/Inf rows, many zstd frames, stated num_rows, an all-ignored shard), runs

    smoothd eval --json --smoothing 0.1 --smoothing-mode MODE --report-smoothing 0,0.3 --top-k 5 --ece-bins 15 FILES

for MODE = uniform and others, and compares every per-shard value and the pooled total with
Fixtures/reference.py (counts exact, ECE within 1e-4 absolute, everything else within 1e-6 relative).
With --torch (and torch importable) the uniform-mode losses are also compared with
torch.nn.functional.cross_entropy(label_smoothing=e) in float64 (1e-5 relative). Then a few invalid shards
must give exit status 1 and ok=false entries with the reference's kind and offset and a reason.
Prints a table and exits 1 on any mismatch. Needs numpy and zstandard; torch is optional.
"""
from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import math
import os
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import zstandard

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "python"))  # the package in this tree (an installed copy may be older)
sys.path.insert(0, str(ROOT / "Fixtures"))
import reference  # noqa: E402
import smoothd  # noqa: E402

SMOOTHING = 0.1
REPORT_ARG = "0,0.3"  # --report-smoothing
EPSILONS = (SMOOTHING, 0.0, 0.3)  # losses_by_smoothing keys, as Python reprs
TOP_K = 5
ECE_BINS = 15
MODES = ("uniform", "others")
REL_TOL = 1e-6
ECE_ABS_TOL = 1e-4
TORCH_REL_TOL = 1e-5
# Rows whose conf*15 is this close to a bin edge are nudged away, so that float32-level differences in
# the confidence cannot move a row into the neighbouring bin (ECE is then compared to 1e-4).
ECE_EDGE_MARGIN = 1e-5
COUNTS = ("rows", "counted_rows", "ignored_rows", "nonfinite_rows")
MEANS = ("loss", "nll", "perplexity", "accuracy", "top_k_accuracy", "mean_confidence", "entropy", "brier")


# ------------------------------------------------------------------------------------------------
# Shard generation
# ------------------------------------------------------------------------------------------------
def random_logits(rng, n, K, dtype):
    """Rows with temperatures from sharp to flat, some with a dominant class."""
    temp = np.exp(rng.uniform(np.log(0.2), np.log(6.0), n))
    z = rng.standard_normal((n, K)) * temp[:, None]
    peaked = rng.uniform(size=n) < 0.3
    z[peaked, rng.integers(0, K, peaked.sum())] += rng.uniform(2, 12, peaked.sum())
    return clear_ece_edges(z.astype(np.float32), dtype)


def clear_ece_edges(z, dtype):
    """Scale rows whose stored confidence lies near an ECE bin edge until it no longer does."""
    for _ in range(50):
        s = reference.decode_logits(smoothd.writer.encode_logits(z, dtype), dtype)
        with np.errstate(invalid="ignore", over="ignore"):
            conf = 1.0 / np.exp(s - s.max(axis=1, keepdims=True)).sum(axis=1)
        x = conf * ECE_BINS
        near = np.isfinite(x) & (x < ECE_BINS - 0.5) & (np.abs(x - np.round(x)) < ECE_EDGE_MARGIN)
        if not near.any():
            return z
        z[near] *= np.float32(1.01)
    raise RuntimeError("could not move confidences away from the ECE bin edges")


def labels_for(rng, z, ignore_index, p_ignore):
    n, K = z.shape
    y = np.where(rng.uniform(size=n) < 0.6, z.argmax(axis=1), rng.integers(0, K, n))
    y = np.where(rng.uniform(size=n) < p_ignore, ignore_index, y)
    return y.astype(np.int64)


def poison(rng, z, count):
    """Put NaN, +Inf or -Inf into `count` random rows (reported as nonfinite unless ignored)."""
    rows = rng.choice(len(z), size=min(count, len(z)), replace=False)
    for i, r in enumerate(rows):
        z[r, rng.integers(0, z.shape[1])] = (np.nan, np.inf, -np.inf)[i % 3]


def block_sizes(rng, n, largest):
    sizes = []
    while n > 0:
        sizes.append(min(n, int(rng.integers(1, largest + 1))))
        n -= sizes[-1]
    return sizes


def spec(name, K, rows, dtype, label_dtype="int64", ignore_index=-100, p_ignore=0.05, nonfinite=0,
         largest_block=None, style="random", **writer_options):
    return dict(name=name, K=K, rows=rows, dtype=dtype, label_dtype=label_dtype, ignore_index=ignore_index,
                p_ignore=p_ignore, nonfinite=nonfinite, largest_block=largest_block or rows, style=style,
                writer_options=writer_options)


SHARDS = [
    spec("k2_f32", 2, 4000, "float32", nonfinite=6, largest_block=700, frame_bytes=8192),
    spec("k1000_f16_ignore0", 1000, 1500, "float16", "int32", ignore_index=0, p_ignore=0.10, nonfinite=4,
         largest_block=400, frame_bytes=1 << 20),
    spec("k32000_bf16", 32000, 96, "bfloat16", nonfinite=3, largest_block=64, frame_bytes=2 << 20,
         meta={"model": "check", "K": 32000}),
    spec("k1000_bf16_ignore5", 1000, 800, "bfloat16", ignore_index=5, num_rows=800),
    spec("k7_f32_many_frames", 7, 500, "float32", "int32", ignore_index=-1, p_ignore=0.10, nonfinite=2,
         largest_block=5, frame_bytes=64, meta={"split": "x"}),
    # Some logits beyond float16's range: stored as +inf, so those rows are nonfinite.
    spec("k257_f16_overflow", 257, 300, "float16", p_ignore=0.0, style="overflow"),
    # Small integer logits: ties everywhere, so the rank's tie rule decides accuracy and top-k.
    spec("k16_int_ties", 16, 1000, "float32", largest_block=250, style="ties"),
    spec("k50_all_ignored", 50, 40, "float16", p_ignore=1.0, nonfinite=1, largest_block=20),
]


def make_shards(rng, outdir: Path):
    paths = []
    for s in SHARDS:
        n, K, dtype = s["rows"], s["K"], s["dtype"]
        if s["style"] == "ties":
            z = clear_ece_edges(rng.integers(-3, 4, (n, K)).astype(np.float32), dtype)
        else:
            z = random_logits(rng, n, K, dtype)
        if s["style"] == "overflow":
            z[rng.uniform(size=n) < 0.05, 0] = 1e5
        poison(rng, z, s["nonfinite"])
        y = labels_for(rng, z, s["ignore_index"], s["p_ignore"])
        path = outdir / f"{s['name']}.lshd.zst"
        with smoothd.LSHDWriter(path, K, logit_dtype=dtype, label_dtype=s["label_dtype"],
                             ignore_index=s["ignore_index"], **s["writer_options"]) as w:
            start = 0
            for size in block_sizes(rng, n, s["largest_block"]):
                w.write(z[start:start + size], y[start:start + size])
                start += size
        paths.append(path)
    return paths


def make_invalid_shards(rng, outdir: Path):
    """(path, kind, offset) for a few broken shards built by hand; offsets are confirmed by the reference."""
    K = 9
    z = rng.standard_normal((6, K)).astype("<f4")
    y = rng.integers(0, K, 6).astype("<i8")
    meta = b'{"split":"broken"}'

    def header(num_rows=0):
        return struct.pack("<4sHBBIIqQ", b"LSHD", 1, 1, 2, K, len(meta), -100, num_rows) + meta

    def blk(a, b, labels=None):
        lab = y[a:b] if labels is None else labels
        return struct.pack("<I", b - a) + lab.tobytes() + z[a:b].tobytes()

    def zst(payload):
        return zstandard.ZstdCompressor(write_checksum=True).compress(payload)

    good = header() + blk(0, 2) + blk(2, 6) + struct.pack("<I", 0)
    second = len(header()) + 4 + 2 * 8 + 2 * K * 4  # payload offset of the second block
    bad_labels = y[2:6].copy()
    bad_labels[3] = K
    cases = [
        ("truncated_in_block", "truncated", second + 10, zst(good[:second + 10])),
        ("label_is_k", "label_out_of_range", second + 4 + 3 * 8,
         zst(header() + blk(0, 2) + blk(2, 6, bad_labels) + struct.pack("<I", 0))),
        ("trailing", "trailing_bytes", len(good), zst(good) + zst(b"\x01")),
        ("num_rows_wrong", "num_rows_mismatch", len(good) - 4,
         zst(header(num_rows=7) + blk(0, 2) + blk(2, 6) + struct.pack("<I", 0))),
        ("bad_checksum", "zstd_error", None, zst(good)[:-1] + bytes([zst(good)[-1] ^ 0x55])),
        ("bad_magic", "bad_magic", 0, zst(b"LSHX" + good[4:])),
    ]
    out = []
    for name, kind, offset, data in cases:
        path = outdir / f"invalid_{name}.lshd.zst"
        path.write_bytes(data)
        _, err = reference.scan_shard(path)
        assert err is not None and err.kind == kind and (offset is None or err.offset == offset), \
            f"check_eval's own invalid shard {name}: reference says {err}"
        out.append((path, kind, offset))
    return out


# ------------------------------------------------------------------------------------------------
# Comparison
# ------------------------------------------------------------------------------------------------
class Table:
    """Per metric: how many values were compared, the worst error, and the failures."""

    def __init__(self):
        self.rows = {}
        self.failures = []

    def _row(self, metric, exact=False, against="ref"):
        row = self.rows.setdefault(metric, {"n_ref": 0, "n_torch": 0, "ref": None, "torch": None, "exact": exact})
        row["n_" + against] += 1
        return row

    def count(self, metric, where, got, want):
        self._row(metric, exact=True)
        if got != want or isinstance(got, bool) or not isinstance(got, int):
            self.failures.append(f"{where}: {metric} = {got!r}, expected {want!r}")

    def same(self, metric, where, got, want, detail=None):
        self._row(metric, exact=True)
        if got != want:
            extra = f" ({detail!r})" if detail is not None else ""
            self.failures.append(f"{where}: {metric} = {got!r}, expected {want!r}{extra}")

    def value(self, metric, where, got, want, against="ref"):
        row = self._row(metric, against=against)
        if want is None:
            if got is not None:
                self.failures.append(f"{where}: {metric} = {got!r}, expected null (no counted rows)")
            return
        if not isinstance(got, (int, float)) or isinstance(got, bool):
            self.failures.append(f"{where}: {metric} = {got!r}, expected a number close to {want!r}")
            return
        err = abs(got - want) / abs(want) if want else abs(got)
        if against == "torch":
            row["torch"] = max(row["torch"] or 0.0, err)
            ok = math.isclose(got, want, rel_tol=TORCH_REL_TOL, abs_tol=1e-12)
        elif metric == "ece":
            row["ref"] = max(row["ref"] or 0.0, abs(got - want))  # printed as an absolute error
            ok = abs(got - want) <= ECE_ABS_TOL
        else:
            row["ref"] = max(row["ref"] or 0.0, err)
            ok = math.isclose(got, want, rel_tol=REL_TOL, abs_tol=1e-15)
        if not ok:
            self.failures.append(f"{where}: {metric} = {got!r}, {against} {want!r} (rel err {err:.3g})")

    def fail(self, message):
        self.failures.append(message)

    def print(self):
        print(f"{'metric':<26} {'n':>4}  {'max err vs reference':>20}  {'n':>4}  {'max rel err vs torch':>20}")
        for metric, row in self.rows.items():
            if row["exact"]:
                ref = "exact"
            elif row["ref"] is None:
                ref = "-"
            else:
                ref = f"{row['ref']:.3g}" + (" abs" if metric == "ece" else " rel")
            torch_err = "-" if row["torch"] is None else f"{row['torch']:.3g}"
            print(f"{metric:<26} {row['n_ref']:>4}  {ref:>20}  {row['n_torch']:>4}  {torch_err:>20}")


def expected_entry(result, mode):
    """The values smoothd should print for one shard, from a reference result with EPSILONS."""
    want = {k: result[k] for k in COUNTS}
    want["loss"] = result["loss"][mode][repr(SMOOTHING)]
    for k in ("nll", "perplexity", "accuracy", "mean_confidence", "entropy", "brier"):
        want[k] = result[k]
    want["top_k_accuracy"] = result["top_k_accuracy"][str(TOP_K)]
    want["ece"] = result["ece"][str(ECE_BINS)]
    want["losses_by_smoothing"] = {repr(e): result["loss"][mode][repr(e)] for e in EPSILONS}
    return want


def compare_values(table, where, got, want, required=True):
    """Compare a shard entry (every key required) or the total (only the keys it has)."""
    for k in COUNTS:
        if required or k in got:
            table.count(k, where, got.get(k), want[k])
    for k in MEANS + ("ece",):
        if required or k in got:
            table.value(k, where, got.get(k), want[k])
    if not required and "losses_by_smoothing" not in got:
        return
    lbs = got.get("losses_by_smoothing")
    if not isinstance(lbs, dict):
        table.fail(f"{where}: losses_by_smoothing = {lbs!r}, expected an object")
        return
    for key, value in want["losses_by_smoothing"].items():
        if key not in lbs:
            table.fail(f"{where}: losses_by_smoothing has no key {key!r} (keys: {sorted(lbs)})")
        else:
            table.value(f"losses_by_smoothing[{key}]", where, lbs[key], value)


def run_smoothd(smoothd, mode, files):
    cmd = [smoothd, "eval", "--json", "--smoothing", repr(SMOOTHING), "--smoothing-mode", mode,
           "--report-smoothing", REPORT_ARG, "--top-k", str(TOP_K), "--ece-bins", str(ECE_BINS)] + [str(f) for f in files]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError as e:
        report = None
        sys.stderr.write(f"$ {' '.join(cmd)}\nexit {proc.returncode}; stdout is not JSON ({e})\n"
                         f"--- stdout ---\n{proc.stdout[:2000]}\n--- stderr ---\n{proc.stderr[:2000]}\n")
    return proc.returncode, report, cmd


def entries_by_file(table, report, files, what):
    """Match report["shards"] to our files (by path, else by name); None when the report is unusable."""
    if not isinstance(report, dict) or not isinstance(report.get("shards"), list):
        table.fail(f"{what}: output has no \"shards\" list")
        return None
    out = {}
    for entry in report["shards"]:
        shard = str(entry.get("shard", ""))
        for f in files:
            if shard == str(f) or os.path.realpath(shard) == os.path.realpath(f) or os.path.basename(shard) == f.name:
                out[f] = entry
    for f in files:
        if f not in out:
            table.fail(f"{what}: no entry for {f.name}")
    return out


def torch_losses(path, header):
    """Mean cross_entropy(label_smoothing=e) over the shard in float64 for each e, or None."""
    import torch
    import torch.nn.functional as F
    sums = {e: 0.0 for e in EPSILONS}
    n = 0
    it = reference.read_shard(path)
    next(it)
    for y, z in it:
        finite = np.isfinite(z).all(axis=1)  # torch would turn the mean into NaN
        zt, yt = torch.from_numpy(z[finite]), torch.from_numpy(y[finite])
        n += int((yt != header["ignore_index"]).sum())
        for e in EPSILONS:
            sums[e] += F.cross_entropy(zt, yt, label_smoothing=e, ignore_index=header["ignore_index"],
                                       reduction="sum").item()
    return {e: s / n for e, s in sums.items()} if n else None


def check_valid(args, table, paths):
    results, accs = {}, []
    for p in paths:
        header, a = reference.accumulate_shard(p, top_ks=(TOP_K,), ece_bins=(ECE_BINS,), epsilons=EPSILONS)
        results[p] = (header, a.result())
        accs.append(a)
    # The total pools the rows of all shards (ECE over pooled bins); merging reuses the first accumulator.
    pooled = functools.reduce(lambda a, b: a.merge(b), accs).result()

    torch_ref = {}
    if args.torch:
        if importlib.util.find_spec("torch") is None:
            print("torch is not importable: skipping the torch comparison")
        else:
            torch_ref = {p: torch_losses(p, results[p][0]) for p in paths}

    for mode in MODES:
        rc, report, cmd = run_smoothd(args.smoothd, mode, paths)
        what = f"eval --smoothing-mode {mode}"
        if rc != 0:
            table.fail(f"{what}: exit status {rc}, expected 0 ($ {' '.join(cmd)})")
        entries = entries_by_file(table, report, paths, what)
        if entries is None:
            continue
        for p, entry in entries.items():
            header, result = results[p]
            where = f"{mode}:{p.name}"
            table.same("ok", where, entry.get("ok"), True, detail=entry.get("error"))
            if entry.get("ok") is not True:
                continue
            table.same("num_classes", where, entry.get("num_classes"), header["num_classes"])
            table.same("logit_dtype", where, entry.get("logit_dtype"), header["logit_dtype"])
            table.same("smoothing", where, entry.get("smoothing"), SMOOTHING)
            table.same("smoothing_mode", where, entry.get("smoothing_mode"), mode)
            table.same("top_k", where, entry.get("top_k"), TOP_K)
            table.same("meta", where, entry.get("meta"), header["meta"])
            compare_values(table, where, entry, expected_entry(result, mode))
            t = torch_ref.get(p)
            if mode == "uniform" and t is not None:
                table.value("loss", where, entry.get("loss"), t[SMOOTHING], against="torch")
                table.value("nll", where, entry.get("nll"), t[0.0], against="torch")
                for e in EPSILONS:
                    got = (entry.get("losses_by_smoothing") or {}).get(repr(e))
                    table.value(f"losses_by_smoothing[{e!r}]", where, got, t[e], against="torch")
        total = report.get("total")
        if not isinstance(total, dict):
            table.fail(f"{what}: output has no \"total\" object")
        else:
            compare_values(table, f"{mode}:total", total, expected_entry(pooled, mode), required=False)


def check_invalid(args, table, good_path, invalid):
    files = [good_path] + [p for p, _, _ in invalid]
    rc, report, cmd = run_smoothd(args.smoothd, "uniform", files)
    what = "eval with invalid shards"
    if rc != 1:
        table.fail(f"{what}: exit status {rc}, expected 1 ($ {' '.join(cmd)})")
    entries = entries_by_file(table, report, files, what)
    if entries is None:
        return
    table.same("ok", f"invalid:{good_path.name}", entries.get(good_path, {}).get("ok"), True)
    for path, kind, offset in invalid:
        entry = entries.get(path)
        if entry is None:
            continue
        where = f"invalid:{path.name}"
        table.same("ok", where, entry.get("ok"), False)
        err = entry.get("error")
        if not isinstance(err, dict):
            table.fail(f"{where}: no error object in {entry!r}")
            continue
        table.same("error.kind", where, err.get("kind"), kind)
        if offset is not None:
            table.same("error.offset", where, err.get("offset"), offset)
        reason = err.get("reason")
        table.same("error.reason", where, isinstance(reason, str) and bool(reason.strip()), True)
        if any(k in entry and entry[k] is not None for k in ("loss", "nll", "accuracy")):
            table.fail(f"{where}: an invalid shard reports metrics {entry!r}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoothd", required=True, help="path to the smoothd binary")
    ap.add_argument("--torch", action="store_true", help="also compare the uniform loss with PyTorch")
    ap.add_argument("--seed", type=int, default=20250601, help="seed for the random shards")
    ap.add_argument("--keep", metavar="DIR", help="write the shards to DIR and keep them")
    args = ap.parse_args()
    if not os.access(args.smoothd, os.X_OK):
        ap.error(f"{args.smoothd} is not an executable")

    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory(prefix="check-eval-") as tmp:
        outdir = Path(args.keep or tmp)
        outdir.mkdir(parents=True, exist_ok=True)
        paths = make_shards(rng, outdir)
        invalid = make_invalid_shards(rng, outdir)
        print(f"{len(paths)} shards, {sum(p.stat().st_size for p in paths) / 1e6:.1f} MB, seed {args.seed}, in {outdir}")
        table = Table()
        check_valid(args, table, paths)
        check_invalid(args, table, paths[0], invalid)
    table.print()
    if table.failures:
        print(f"\n{len(table.failures)} mismatch(es):")
        for f in table.failures[:200]:
            print("  " + f)
        return 1
    print("\nall values agree")
    return 0


if __name__ == "__main__":
    sys.exit(main())
