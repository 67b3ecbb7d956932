#!/usr/bin/env python3
"""Deterministic fixtures for runs (issue 10): two models, checkpoints, splits, ranks, an incomplete group,
re-runs, meta-less shards, a non-scalar group key, disagreeing num_shards, non-finite and ignored rows.

    python3 Fixtures/make_run_fixtures.py           # (re)write Fixtures/runs/*.lshd.zst and Fixtures/runs/expected.json
    python3 Fixtures/make_run_fixtures.py --check   # regenerate in a temp dir; fail unless the committed files agree

Shards are written with the fixtures' own writer (Fixtures/lshd.py); expected values come from
Fixtures/runs_reference.py (float64 NumPy, on top of Fixtures/reference.py) reading the files back.
The order in which the files are given (eval) or dropped (serve) is part of the fixture: it is the
`files` list of expected.json, because git does not keep mtimes. See Fixtures/runs/README.md.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import lshd  # noqa: E402
import reference  # noqa: E402
import runs_reference  # noqa: E402
from make_fixtures import ECE_EDGE_MARGIN, Rng, subdir_main, write_expected, plausible_labels  # noqa: E402

SUBDIR = "runs"
GROUP_BYS = {"model,checkpoint,split": ("model", "checkpoint", "split"), "model": ("model",), "none": ()}
MAX_SHARD_BYTES = 8_000  # small enough to read in a diff tool; the whole set stays near 100 kB


def ranked(model, checkpoint, step, split, K, dtype, num_shards, indexes, rows, quality, **extra):
    """Rank shards of one run: (name, spec) for each shard_index in indexes."""
    out = []
    for i in indexes:
        n = num_shards[i] if isinstance(num_shards, list) else num_shards
        meta = {"model": model, "checkpoint": checkpoint, "step": step, "split": split,
                "shard_index": i, "num_shards": n}
        name = f"{model}.{checkpoint}.{split}.r{i}.lshd.zst"
        spec = dict(K=K, dtype=dtype, rows=rows + 7 * i, quality=quality, meta=meta, **extra)
        spec["nonfinite"] = i in extra.get("nonfinite", ())
        out.append((name, spec))
    return out


def shard_specs():
    """Every shard in argument / drop order: (file name under runs/, spec)."""
    a, b = "lm-a", "lm-b"
    specs = []
    specs += ranked(a, "ckpt-100", 100, "validation", 32, "bfloat16", 4, [0, 1, 2, 3], 30, 0.30)
    specs += ranked(a, "ckpt-250", 250, "validation", 32, "float32", 4, [0, 1, 2, 3], 30, 0.45)
    # Incomplete: rank 2 of 4 never arrived.
    specs += ranked(a, "ckpt-1000", 1000, "validation", 32, "float16", 4, [0, 1, 3], 30, 0.60)
    specs += ranked(a, "ckpt-1000", 1000, "test", 32, "float32", 2, [0, 1], 40, 0.62, label_dtype="int32")
    specs += ranked(b, 100, 100, "validation", 7, "float16", 3, [0, 1, 2], 60, 0.40)
    # A rank outside [0, num_shards): an error for that shard under every --group-by.
    specs += [("lm-b.100.validation.r3-of-3.lshd.zst",
               dict(K=7, dtype="float16", rows=30, quality=0.4,
                    meta={"model": b, "checkpoint": 100, "step": 100, "split": "validation",
                          "shard_index": 3, "num_shards": 3}))]
    # Ranks disagree on num_shards (2, 3, 3): a warning; the largest (3) is used.
    specs += ranked(b, 250, 250, "validation", 7, "float32", [2, 3, 3], [0, 1, 2], 60, 0.55)
    # Rank 1 has NaN/±Inf logits in some rows (and one ignored row with a NaN, which is only ignored).
    specs += ranked(b, 1000, 1000, "validation", 7, "float16", 2, [0, 1], 80, 0.70, nonfinite=(1,))
    specs += [
        # One shard, no ranks: identity by file name; a string checkpoint after lm-b's numeric ones.
        ("lm-b.final.validation.lshd.zst", dict(K=7, dtype="bfloat16", rows=50, quality=0.72,
                                                meta={"model": b, "checkpoint": "final", "step": 1200,
                                                      "split": "validation"})),
        # No checkpoint: sorts first among lm-a's groups (null first).
        ("lm-a.adhoc.lshd.zst", dict(K=32, dtype="float32", rows=25, quality=0.5,
                                     meta={"model": a, "split": "validation", "note": "no checkpoint"})),
        # A group-by key that is an array: an error under the default --group-by, fine under model/none.
        ("lm-b.1000.mixed-splits.lshd.zst", dict(K=7, dtype="float32", rows=40, quality=0.7,
                                                 meta={"model": b, "checkpoint": 1000, "step": 1000,
                                                       "split": ["validation", "test"]})),
        # The all-null group: no meta at all, and meta without any group-by key.
        ("plain-0.lshd.zst", dict(K=3, dtype="float32", rows=20, quality=0.6, meta=None)),
        ("plain-1.lshd.zst", dict(K=5, dtype="float16", rows=35, quality=0.5, meta={"note": "no run keys"},
                                  ignore_index=0)),
        # Re-runs, after what they supersede: same (run, shard_index) under another name; same file name
        # in another directory (identity by name).
        ("lm-a.ckpt-250.validation.r1.rerun.lshd.zst",
         dict(K=32, dtype="bfloat16", rows=33, quality=0.47,
              meta={"model": a, "checkpoint": "ckpt-250", "step": 250, "split": "validation",
                    "shard_index": 1, "num_shards": 4})),
        ("rerun/plain-0.lshd.zst", dict(K=3, dtype="float32", rows=22, quality=0.65, meta=None)),
    ]
    return specs


def seed_of(name: str) -> int:
    """A stable seed from the name (no hash(): it is salted per process)."""
    return 5000 + sum((i + 1) * c for i, c in enumerate(name.encode()))


def make_shard(path: Path, name: str, spec):
    rng = Rng(seed_of(name))
    K, n, q = spec["K"], spec["rows"], spec["quality"]
    ignore_index = spec.get("ignore_index", -100)
    # Better checkpoints: larger logit scale and more often the argmax.
    z = rng.normal(n, K) * (1.0 + 2.5 * q)
    y = plausible_labels(rng, z, q, ignore_index if ignore_index < 0 else None, 0.1)
    if ignore_index >= 0:
        y[rng.uniform(n) < 0.1] = ignore_index  # the padding id is also a class: rows with it are skipped
    if spec.get("nonfinite"):
        z[1, 2] = np.nan
        z[4, :] = np.inf
        z[9, 0] = -np.inf
        z[15, y[15] if y[15] != ignore_index else 0] = np.inf
        z[20, 3] = 1e6  # beyond float16's range: stored as +inf, so non-finite
        z[30, 5] = np.nan
        y[30] = ignore_index  # ignored, not non-finite
    z = z.astype(np.float32)
    cuts = sorted({0, n, n // 3, n // 3 + 1, (2 * n) // 3})  # blocks of several sizes, one of one row
    blocks = [(y[s:e], z[s:e]) for s, e in zip(cuts, cuts[1:])]
    path.parent.mkdir(parents=True, exist_ok=True)
    with lshd.LSHDWriter(path, K, logit_dtype=spec["dtype"], label_dtype=spec.get("label_dtype", "int64"),
                         ignore_index=ignore_index, meta=spec["meta"], frame_bytes=2048) as w:
        for by, bz in blocks:
            w.write(bz, by)
    return blocks


def verify(path: Path, name: str, spec, blocks):
    """Read back: header as intended, data as intended, ECE bins unambiguous."""
    it = reference.read_shard(path)
    hdr = next(it)
    assert hdr["num_classes"] == spec["K"] and hdr["logit_dtype"] == spec["dtype"], name
    assert hdr["meta"] == spec["meta"], f"{name}: meta read back differs"
    got = list(it)
    y = np.concatenate([g[0] for g in got])
    z = np.concatenate([g[1] for g in got])
    want_y = np.concatenate([b[0] for b in blocks])
    want_z = reference.decode_logits(lshd.encode_logits(np.concatenate([b[1] for b in blocks]), spec["dtype"]),
                                     spec["dtype"])
    assert np.array_equal(y, want_y) and np.array_equal(z, want_z, equal_nan=True), f"{name}: data read back differs"
    margin = reference.ece_bin_margin(z, y, hdr["ignore_index"], runs_reference.OPTIONS["ece_bins"])
    assert margin >= ECE_EDGE_MARGIN, f"{name}: a confidence is {margin:.3g} from an ECE bin edge"


def file_entry(rel, shard):
    h, r = shard["header"], shard["acc"].result()
    entry = {"file": rel, "num_classes": h["num_classes"], "logit_dtype": h["logit_dtype"],
             "label_dtype": h["label_dtype"], "ignore_index": h["ignore_index"], "meta": h["meta"]}
    for k in ("rows", "counted_rows", "ignored_rows", "nonfinite_rows", "nll", "accuracy", "loss"):
        entry[k] = r[k]
    return entry


def build(outdir: Path) -> dict:
    root = outdir / SUBDIR
    for old in root.rglob("*.lshd.zst"):
        old.unlink()
    shards, files = [], []
    for name, spec in shard_specs():
        rel = f"{SUBDIR}/{name}"
        blocks = make_shard(outdir / rel, name, spec)
        verify(outdir / rel, name, spec, blocks)
        size = (outdir / rel).stat().st_size
        assert size <= MAX_SHARD_BYTES, f"{rel} is {size} bytes, over {MAX_SHARD_BYTES}"
        shard = runs_reference.load(outdir / rel, rel)
        shards.append(shard)
        files.append(file_entry(rel, shard))
    expected = {"generator": "Fixtures/make_run_fixtures.py",
                "options": {"top_k": 5, "ece_bins": 15, "smoothing": [0.0, 0.1], "smoothing_modes": ["uniform", "others"]},
                "files": files,
                "group_by": {arg: runs_reference.evaluate_runs(shards, keys) for arg, keys in GROUP_BYS.items()}}
    return write_expected(root / "expected.json", expected)


def main() -> int:
    return subdir_main(__doc__, SUBDIR, build, "Fixtures/make_run_fixtures.py", "run")


if __name__ == "__main__":
    sys.exit(main())
