#!/usr/bin/env python3
"""Deterministic fixtures for issue 14 (temperature sweep, best temperature, adaptive ECE, bootstrap, compare).

    python3 Fixtures/make_stats_fixtures.py           # (re)write Fixtures/stats/*.lshd.zst and Fixtures/stats/expected.json
    python3 Fixtures/make_stats_fixtures.py --check   # regenerate in a temp dir; fail unless the committed files agree

Shards are written with the fixtures' own writer (Fixtures/lshd.py) from PCG64 raw bits (make_fixtures.Rng);
labels are drawn from softmax of a "true" logit matrix and the stored logits are a rescaled copy, so the best
temperature is known to be away from 1. Expected values come from Fixtures/stats_reference.py (float64 NumPy)
reading the files back. Every counted row's confidence stays >= 1e-6 (in units of a bin) from an inner ECE bin
edge at every listed temperature and at T = 1, for both bin counts, so equal-width bins are unambiguous.
Fixtures/stats/README.md documents the files, the definitions and expected.json's layout.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import lshd  # noqa: E402
import reference  # noqa: E402
import stats_reference as S  # noqa: E402
from make_fixtures import Rng, subdir_main, write_expected, split_frames  # noqa: E402

SUBDIR = "stats"
TEMPERATURES = [0.5, 0.75, 1.0, 1.5, 2.0, 3.0]
OPTION_SETS = {
    "uniform_b15": S.Options(0.1, "uniform", 5, 15, TEMPERATURES),
    "others_b10": S.Options(0.1, "others", 5, 10, TEMPERATURES),
}
BOOTSTRAP_R = 200
LARGE_BOOTSTRAP_R = 1000  # for the bootstrap-width fixtures (boot_large and the checkpoint pools)
LARGE_BOOTSTRAP = {"boot_large"}
ECE_EDGE_MARGIN = 1e-6
# At T*: another implementation's T* agrees to ~1e-12 relative, which moves a confidence by ~1e-11.
T_STAR_EDGE_MARGIN = 1e-8
SIZE_BUDGET = 2_000_000
CKPT_ROWS = (8000, 7000, 6000)


# ------------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------------
def softmax_labels(rng: Rng, truth):
    """A label per row drawn from softmax(truth) by inversion of one uniform."""
    p = np.exp(truth - truth.max(axis=1, keepdims=True))
    cdf = np.cumsum(p, axis=1)
    u = rng.uniform(len(truth))[:, None] * cdf[:, -1:]
    return np.minimum((u >= cdf).sum(axis=1), truth.shape[1] - 1).astype(np.int64)


def on_grid(z, step):
    """Round to multiples of step (exact in the stored dtype when step is a power of two): compresses well."""
    return np.round(z / step) * step


def stored(z, dtype):
    return reference.decode_logits(lshd.encode_logits(z, dtype), dtype)


def margin_violations(z, y, ignore_index):
    """Counted rows whose conf*B is within ECE_EDGE_MARGIN of an inner edge at T = 1 or a listed T."""
    keep = (y != ignore_index) & np.isfinite(z).all(axis=1)
    bad = np.zeros(len(y), bool)
    idx = np.flatnonzero(keep)
    if len(idx) < 2:
        return bad
    for T in sorted(set(TEMPERATURES) | {1.0}):
        conf = S.row_terms(z[idx], y[idx], 1.0 / T)["conf"]
        for B in sorted({o.ece_bins for o in OPTION_SETS.values()}):
            x = conf * B
            near = (x < B - 0.5) & (np.abs(x - np.round(x)) < ECE_EDGE_MARGIN)
            bad[idx[near]] = True
    return bad


def clear_of_edges(z, y, dtype, ignore_index, step):
    """Nudge the largest logit of rows too close to an ECE edge by one grid step until none is."""
    z = z.copy()
    for _ in range(50):
        bad = margin_violations(stored(z, dtype), y, ignore_index)
        if not bad.any():
            return z
        rows = np.flatnonzero(bad)
        z[rows, z[rows].argmax(axis=1)] += step
    raise AssertionError("could not clear the ECE bin edges")


def temp_k10():
    """K=10, float32 on a 1/64 grid: rows of three sharpness levels (mostly overconfident), ignored rows."""
    rng = Rng(14001)
    n, K = 5000, 10
    truth = rng.normal(n, K) * 1.2
    y = softmax_labels(rng, truth)
    scale = np.array([3.0, 2.0, 0.7])[rng.integers(0, 3, n)]
    z = on_grid(truth * scale[:, None] + 0.3 * rng.normal(n, K), 1 / 64)
    y[rng.uniform(n) < 0.03] = -100
    return y, clear_of_edges(z, y, "float32", -100, 1 / 64)


def temp_k1000_bf16():
    """K=1000, bfloat16 on a 1/16 grid, 200 rows, overconfident by about 2.5."""
    rng = Rng(14002)
    n, K = 200, 1000
    truth = rng.normal(n, K) * 1.5
    truth[np.arange(n), rng.integers(0, K, n)] += 5.0  # a likely class per row
    y = softmax_labels(rng, truth)
    z = on_grid(truth * 2.5, 1 / 16)
    y[rng.uniform(n) < 0.05] = -100
    return y, clear_of_edges(z, y, "bfloat16", -100, 1 / 8)


def confident():
    """K=50 float32: 1 - conf from 1e-3 to 1e-12 (right and wrong), exact duplicate rows, two-way ties at the
    maximum, and some ordinary rows; shuffled."""
    rng = Rng(14003)
    K = 50
    parts_z, parts_y = [], []

    def peaked(n, omc_lo, omc_hi, correct):
        # All logits 0 but one at g: 1 - conf = (K-1) e^-g / (1 + (K-1) e^-g).
        omc = np.exp(np.log(omc_lo) + (np.log(omc_hi) - np.log(omc_lo)) * rng.uniform(n))
        g = np.log((K - 1) * (1 - omc) / omc)
        z = np.zeros((n, K))
        peak = rng.integers(0, K, n)
        z[np.arange(n), peak] = g
        y = peak if correct else (peak + rng.integers(1, K, n)) % K
        return z, y

    for n, lo, hi, correct in ((700, 1e-12, 1e-3, True), (120, 1e-12, 1e-3, False), (60, 1e-3, 0.05, False)):
        z, y = peaked(n, lo, hi, correct)
        parts_z.append(z)
        parts_y.append(y)
    # Exact duplicates: 6 distinct rows, 40 copies each (ties in confidence, some right, some wrong).
    base_z, base_y = peaked(6, 1e-9, 1e-4, True)
    base_y[::3] = (base_y[::3] + 1) % K
    parts_z.append(np.repeat(base_z, 40, axis=0))
    parts_y.append(np.repeat(base_y, 40))
    # Two-way ties at the maximum: the label is one of the tied classes (rank 0 only for the lower index).
    n = 100
    z = np.zeros((n, K))
    a = rng.integers(0, K, n)
    b = (a + rng.integers(1, K, n)) % K
    g = 2.0 + 4.0 * rng.uniform(n)
    z[np.arange(n), a] = g
    z[np.arange(n), b] = g
    parts_z.append(z)
    parts_y.append(np.where(rng.uniform(n) < 0.5, a, b))
    # Ordinary rows.
    n = 200
    z = rng.normal(n, K) * 2.5
    parts_z.append(z)
    parts_y.append(softmax_labels(rng, z / 2.5))
    z = np.concatenate(parts_z)
    y = np.concatenate(parts_y).astype(np.int64)
    order = np.argsort(rng.uniform(len(y)), kind="stable")
    z, y = z[order], y[order]
    y[rng.uniform(len(y)) < 0.02] = -100
    return y, clear_of_edges(z, y, "float32", -100, 2.0 ** -10)


def boot_large():
    """K=4, 100,000 rows, bfloat16 on a 1/4 grid (small on disk), mildly overconfident, int32 labels."""
    rng = Rng(14004)
    n, K = 100_000, 4
    truth = rng.normal(n, K) * 1.3
    y = softmax_labels(rng, truth)
    z = on_grid(truth * 1.4, 1 / 4)
    y[rng.uniform(n) < 0.01] = -100
    return y, clear_of_edges(z, y, "bfloat16", -100, 1 / 4)


def checkpoints(seed):
    """Checkpoint a's shards and b = a + a small correlated change (b a little better): same labels."""
    rng = Rng(seed)
    K = 10
    out_a, out_b = [], []
    for n in CKPT_ROWS:
        truth = rng.normal(n, K) * 1.5
        y = softmax_labels(rng, truth)
        za = truth * 1.6 + 0.8 * rng.normal(n, K)
        zb = za + 0.1 * rng.normal(n, K)
        zb[np.arange(n), y] += 0.1
        y[rng.uniform(n) < 0.02] = -100
        za = clear_of_edges(on_grid(za, 1 / 16), y, "bfloat16", -100, 1 / 16)
        zb = clear_of_edges(on_grid(zb, 1 / 16), y, "bfloat16", -100, 1 / 16)
        out_a.append((y, za))
        out_b.append((y, zb))
    return out_a, out_b


def ckpt_meta(checkpoint, i):
    return {"model": "stats-lm", "checkpoint": checkpoint, "split": "validation", "shard_index": i,
            "num_shards": len(CKPT_ROWS)}


def shard_specs():
    """(file name, labels, logits, writer options) in a fixed order."""
    specs = []
    y, z = temp_k10()
    meta = {"model": "stats-temp", "split": "validation"}
    specs.append(("temp_k10.lshd.zst", y, z, dict(logit_dtype="float32", meta=meta)))
    specs.append(("temp_k10_frames.lshd.zst", y, z, dict(logit_dtype="float32", meta=meta, frame_bytes=4096,
                                                         cuts=[0, 1, 700, 701, 2500, 5000])))
    y, z = temp_k1000_bf16()
    specs.append(("temp_k1000_bf16.lshd.zst", y, z, dict(logit_dtype="bfloat16", frame_bytes=100_000,
                                                         cuts=[0, 50, 51, 200])))
    y, z = confident()
    specs.append(("confident.lshd.zst", y, z, dict(logit_dtype="float32", cuts=[0, 300, len(y)])))
    y, z = boot_large()
    specs.append(("boot_large.lshd.zst", y, z, dict(logit_dtype="bfloat16", label_dtype="int32")))
    a, b = checkpoints(14005)
    u, _ = checkpoints(14006)  # other labels: an unpaired comparison
    for tag, shards in (("a", a), ("b", b), ("u", u)):
        for i, (y, z) in enumerate(shards):
            specs.append((f"ckpt_{tag}_{i}.lshd.zst", y, z,
                          dict(logit_dtype="bfloat16", meta=ckpt_meta(tag, i), frame_bytes=32_768,
                               cuts=[0, 1000, 1001, len(y)])))
    return specs


POOLS = {"ckpt_a": ["ckpt_a_0", "ckpt_a_1", "ckpt_a_2"], "ckpt_b": ["ckpt_b_0", "ckpt_b_1", "ckpt_b_2"],
         "ckpt_u": ["ckpt_u_0", "ckpt_u_1", "ckpt_u_2"]}
COMPARES = {"ckpt_a_vs_b": ("ckpt_a", "ckpt_b"), "ckpt_a_vs_u": ("ckpt_a", "ckpt_u")}
SAME_RESULTS = [["stats/temp_k10.lshd.zst", "stats/temp_k10_frames.lshd.zst"]]


# ------------------------------------------------------------------------------------------------
# Writing and expected values
# ------------------------------------------------------------------------------------------------
def write(path: Path, y, z, opts):
    opts = dict(opts)
    cuts = opts.pop("cuts", [0, len(y)])
    with lshd.LSHDWriter(path, z.shape[1], **opts) as w:
        for s, e in zip(cuts, cuts[1:]):
            w.write(z[s:e], y[s:e])


def verify(path: Path, y, z, opts):
    header, rows = S.load_rows(path)
    assert header["meta"] == opts.get("meta"), f"{path.name}: meta read back differs"
    assert np.array_equal(rows.y_all, y), f"{path.name}: labels read back differ"
    assert np.array_equal(rows.z_all, stored(z, opts["logit_dtype"])), f"{path.name}: logits read back differ"
    assert not margin_violations(rows.z_all, rows.y_all, header["ignore_index"]).any(), path.name
    return header, rows


def results(rows, large_bootstrap=False):
    out = {name: S.evaluate(rows, opts) for name, opts in OPTION_SETS.items()}
    for name, r in out.items():
        search = r.get("best_temperature_search")
        if search:
            # The derivative at the optimum is rounding noise (~1e-17): not reproducible to 1e-12 relative.
            search.pop("dnll_dbeta", None)
            # How many polish steps reach the tolerance depends on those last bits too: 33 on one machine, 35 on
            # another (NumPy's SIMD sums differ between AVX2 and AVX-512), for the same beta to 1e-16.
            search.pop("newton_steps", None)
            assert search["ece_bin_margin"] >= T_STAR_EDGE_MARGIN, f"ECE(T*) bins are ambiguous ({name}: {search})"
    # R = 200 leaves ~7 % noise in a percentile interval's width; R = 1000 ~3 %.
    for key, R in [("bootstrap", BOOTSTRAP_R)] + ([(f"bootstrap_r{LARGE_BOOTSTRAP_R}", LARGE_BOOTSTRAP_R)]
                                                  if large_bootstrap else []):
        summaries = S.bootstrap_summaries(rows, list(OPTION_SETS.values()), R,
                                          [r["standard_errors"] for r in out.values()])
        for r, summary in zip(out.values(), summaries):
            r[key] = summary
    return out


def build(outdir: Path) -> dict:
    root = outdir / SUBDIR
    root.mkdir(parents=True, exist_ok=True)
    for old in root.glob("*.lshd.zst"):
        old.unlink()
    files, loaded = {}, {}
    for name, y, z, opts in shard_specs():
        rel = f"{SUBDIR}/{name}"
        write(outdir / rel, y, z, opts)
        header, rows = verify(outdir / rel, y, z, opts)
        loaded[name.removesuffix(".lshd.zst")] = rows
        frames = sum(1 for f in split_frames((outdir / rel).read_bytes()) if f[0] == "zstd")
        files[rel] = {"num_classes": header["num_classes"], "logit_dtype": header["logit_dtype"],
                      "label_dtype": header["label_dtype"], "ignore_index": header["ignore_index"],
                      "meta": header["meta"], "frames": frames,
                      "results": results(rows, name.removesuffix(".lshd.zst") in LARGE_BOOTSTRAP)}
    pools = {}
    for pool, members in POOLS.items():
        meta = ckpt_meta(pool.removeprefix("ckpt_"), 0)
        pools[pool] = {"files": [f"{SUBDIR}/{m}.lshd.zst" for m in members],
                       "group": {k: meta[k] for k in ("model", "checkpoint", "split")},
                       "results": results(S.Rows.concat([loaded[m] for m in members]), True)}
    compares = {}
    for cname, (pa, pb) in COMPARES.items():
        ra = S.Rows.concat([loaded[m] for m in POOLS[pa]])
        rb = S.Rows.concat([loaded[m] for m in POOLS[pb]])
        compares[cname] = {"a": pa, "b": pb, "selectors": {"a": f"checkpoint={pa[-1]}", "b": f"checkpoint={pb[-1]}"},
                           "results": {name: S.compare(ra, rb, opts, BOOTSTRAP_R) for name, opts in OPTION_SETS.items()}}
    for group in SAME_RESULTS:
        first = {k: v for k, v in files[group[0]]["results"].items()}
        for other in group[1:]:
            for name in OPTION_SETS:
                a = {k: v for k, v in first[name].items() if k != "bootstrap"}
                b = {k: v for k, v in files[other]["results"][name].items() if k != "bootstrap"}
                assert a == b, f"{other} differs from {group[0]}"
    expected = {"generator": "Fixtures/make_stats_fixtures.py",
                "option_sets": {k: o.as_json() for k, o in OPTION_SETS.items()},
                "bootstrap_replicates": BOOTSTRAP_R,
                "files": files, "pools": pools, "compare": compares, "same_results": SAME_RESULTS}
    return write_expected(root / "expected.json", expected)


def main() -> int:
    return subdir_main(__doc__, SUBDIR, build, "Fixtures/make_stats_fixtures.py", "stats", size_budget=SIZE_BUDGET)


if __name__ == "__main__":
    sys.exit(main())
