"""Checks of the runs reference itself (Fixtures/runs_reference.py) against Fixtures/runs/expected.json.

    python3 -m unittest discover -s Fixtures -t Fixtures -p 'test_*.py'

Group metrics are recomputed by brute force: the live shards' rows concatenated and evaluated once with
the textbook formulas (logsumexp, softmax, explicit ECE bins), not the reference's rearranged per-shard
sums merged with fsum. Order, supersession and completeness are recomputed from the files list.
"""
from __future__ import annotations

import json
import math
import os
import sys
import unittest
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import reference  # noqa: E402
import runs_reference  # noqa: E402

EXPECTED = json.loads((HERE / "runs" / "expected.json").read_text(encoding="utf-8"))
FILES = {f["file"]: f for f in EXPECTED["files"]}
BAD_RANK = "runs/lm-b.100.validation.r3-of-3.lshd.zst"  # an error under every --group-by
DEFAULT = EXPECTED["group_by"]["model,checkpoint,split"]


def rows_of(rel):
    it = reference.read_shard(HERE / rel)
    header = next(it)
    chunks = list(it)
    return header, np.concatenate([c[0] for c in chunks]), np.concatenate([c[1] for c in chunks])


def brute_force(files, eps=(0.0, 0.1), top_k=5, bins=15):
    """Metrics of the concatenated counted rows of files, in one pass of textbook float64 formulas."""
    counted = {"nll": [], "uniform": [], "others": [], "conf": [], "correct": [], "topk": [], "brier": [],
               "entropy": []}
    rows = ignored = nonfinite = 0
    for rel in files:
        header, y, z = rows_of(rel)
        rows += len(y)
        keep = y != header["ignore_index"]
        ignored += int((~keep).sum())
        finite = np.isfinite(z).all(axis=1)
        nonfinite += int((keep & ~finite).sum())
        y, z = y[keep & finite], z[keep & finite]
        K = z.shape[1]
        m = z.max(axis=1, keepdims=True)
        lse = (m + np.log(np.exp(z - m).sum(axis=1, keepdims=True)))[:, 0]
        q = np.exp(z - lse[:, None])
        zy = z[np.arange(len(y)), y]
        nll = lse - zy
        u = lse - z.mean(axis=1)
        # Rank with the lowest index winning ties, counted directly.
        rank = np.array([int((z[i] > zy[i]).sum() + (z[i, :y[i]] == zy[i]).sum()) for i in range(len(y))])
        onehot = np.eye(K)[y]
        counted["nll"].append(nll)
        counted["uniform"].append(u)
        counted["others"].append((K * u - nll) / (K - 1))
        counted["conf"].append(q.max(axis=1))
        counted["correct"].append(rank == 0)
        counted["topk"].append(rank < top_k)
        counted["brier"].append(((q - onehot) ** 2).sum(axis=1))
        counted["entropy"].append(lse - (q * z).sum(axis=1))
    c = {k: np.concatenate(v) for k, v in counted.items()}
    n = len(c["nll"])
    b = np.minimum(np.floor(c["conf"] * bins).astype(int), bins - 1)
    ece = sum(abs(c["correct"][b == i].mean() - c["conf"][b == i].mean()) * (b == i).sum() / n
              for i in range(bins) if (b == i).any())
    out = {"rows": rows, "counted_rows": n, "ignored_rows": ignored, "nonfinite_rows": nonfinite,
           "nll": c["nll"].mean(), "perplexity": math.exp(c["nll"].mean()), "accuracy": c["correct"].mean(),
           "mean_confidence": c["conf"].mean(), "entropy": c["entropy"].mean(), "brier": c["brier"].mean(),
           "top_k_accuracy": {str(top_k): c["topk"].mean()}, "ece": {str(bins): ece},
           "loss": {mode: {repr(e): ((1 - e) * c["nll"] + e * c[mode]).mean() for e in eps}
                    for mode in ("uniform", "others")}}
    return out


def group(result, **key):
    matches = [g for g in result["groups"] if g["key"] == key]
    assert len(matches) == 1, key
    return matches[0]


class BruteForceMetrics(unittest.TestCase):
    def assert_close(self, got, want, where=""):
        if isinstance(want, dict):
            self.assertEqual(sorted(got), sorted(want), where)
            for k in want:
                self.assert_close(got[k], want[k], f"{where}.{k}")
        elif isinstance(want, int):
            self.assertEqual(got, want, where)
        else:
            self.assertTrue(math.isclose(got, want, rel_tol=1e-10, abs_tol=1e-12), f"{where}: {got} vs {want}")

    def check(self, result, key, files):
        g = group(result, **key)
        self.assertEqual(g["files"], files)
        want = brute_force(files)
        self.assert_close({k: g[k] for k in want}, want, json.dumps(key))

    def test_rerun_group_counts_the_rerun_not_the_original(self):
        key = {"model": "lm-a", "checkpoint": "ckpt-250", "split": "validation"}
        files = [f"runs/lm-a.ckpt-250.validation.r{i}.lshd.zst" for i in (0, 2, 3)]
        self.check(DEFAULT, key, files + ["runs/lm-a.ckpt-250.validation.r1.rerun.lshd.zst"])

    def test_nonfinite_group(self):
        key = {"model": "lm-b", "checkpoint": 1000, "split": "validation"}
        files = [f"runs/lm-b.1000.validation.r{i}.lshd.zst" for i in (0, 1)]
        self.check(DEFAULT, key, files)
        self.assertEqual(group(DEFAULT, **key)["nonfinite_rows"], 5)

    def test_model_group_includes_the_shard_with_a_list_split(self):
        files = [f for f in FILES if FILES[f]["meta"] and FILES[f]["meta"].get("model") == "lm-b" and f != BAD_RANK]
        self.assertIn("runs/lm-b.1000.mixed-splits.lshd.zst", files)
        self.check(EXPECTED["group_by"]["model"], {"model": "lm-b"}, files)

    def test_none_pools_every_live_shard_and_equals_the_total(self):
        gone = {"runs/lm-a.ckpt-250.validation.r1.lshd.zst", "runs/plain-0.lshd.zst"}
        result = EXPECTED["group_by"]["none"]
        self.check(result, {}, [f for f in FILES if f not in gone and f != BAD_RANK])
        total = {k: v for k, v in result["total"].items() if k not in ("shards_ok", "shards_failed")}
        self.assertEqual(total, {k: v for k, v in result["groups"][0].items() if k in total})


class Structure(unittest.TestCase):
    def test_value_order(self):
        values = ["ckpt-250", 1000, None, "ckpt-1000", True, 2.5, "ckpt-100", False, 100, "Z", "é"]
        got = sorted(values, key=runs_reference.value_token)
        self.assertEqual(got, [None, False, True, 2.5, 100, 1000, "Z", "ckpt-100", "ckpt-1000", "ckpt-250", "é"])

    def test_groups_are_sorted_and_distinct(self):
        for arg, result in EXPECTED["group_by"].items():
            keys = result["group_by"]
            tokens = [runs_reference.key_token(g["key"], keys) for g in result["groups"]]
            self.assertEqual(tokens, sorted(tokens), arg)
            self.assertEqual(len(set(map(repr, tokens))), len(tokens), arg)
            for g in result["groups"]:
                self.assertEqual(list(g["key"]), keys, arg)

    def test_default_order_is_lexical_for_strings_numeric_for_numbers(self):
        got = [(g["key"]["model"], g["key"]["checkpoint"], g["key"]["split"]) for g in DEFAULT["groups"]]
        self.assertEqual(got, [(None, None, None), ("lm-a", None, "validation"),
                               ("lm-a", "ckpt-100", "validation"), ("lm-a", "ckpt-1000", "test"),
                               ("lm-a", "ckpt-1000", "validation"), ("lm-a", "ckpt-250", "validation"),
                               ("lm-b", 100, "validation"), ("lm-b", 250, "validation"),
                               ("lm-b", 1000, "validation"), ("lm-b", "final", "validation")])

    def test_every_file_is_live_in_one_group_or_superseded_or_an_error(self):
        for arg, result in EXPECTED["group_by"].items():
            live = [f for g in result["groups"] for f in g["files"]]
            gone = [s["superseded"] for s in result["superseded"]]
            failed = [e["file"] for e in result["errors"]]
            self.assertEqual(sorted(live + gone + failed), sorted(FILES), arg)
            self.assertEqual(sum(g["shards"] for g in result["groups"]), result["total"]["shards_ok"], arg)
            for k in ("rows", "counted_rows", "ignored_rows", "nonfinite_rows"):
                self.assertEqual(sum(g[k] for g in result["groups"]), result["total"][k], f"{arg} {k}")
        self.assertEqual([(e["file"], e["kind"], e["key"]) for e in DEFAULT["errors"]],
                         [(BAD_RANK, "bad_shard_index", "shard_index"),
                          ("runs/lm-b.1000.mixed-splits.lshd.zst", "group_key_not_scalar", "split")])
        for arg in ("model", "none"):
            self.assertEqual([e["file"] for e in EXPECTED["group_by"][arg]["errors"]], [BAD_RANK])

    def test_superseded_by_the_later_file_with_the_same_identity(self):
        order = list(FILES)
        for result in EXPECTED["group_by"].values():
            self.assertEqual([(s["superseded"], s["by"]) for s in result["superseded"]],
                             [("runs/lm-a.ckpt-250.validation.r1.lshd.zst",
                               "runs/lm-a.ckpt-250.validation.r1.rerun.lshd.zst"),
                              ("runs/plain-0.lshd.zst", "runs/rerun/plain-0.lshd.zst")])
            for s in result["superseded"]:
                self.assertLess(order.index(s["superseded"]), order.index(s["by"]))

    def test_completeness_from_the_files(self):
        """Per default group: expected = largest num_shards, missing = indexes without a live file."""
        for g in DEFAULT["groups"]:
            metas = [FILES[f]["meta"] or {} for f in g["files"]]
            stated = [m["num_shards"] for m in metas if "num_shards" in m]
            if not stated:
                self.assertNotIn("completeness", g)
                continue
            have = {m["shard_index"] for m in metas}
            n = max(stated)
            self.assertEqual(g["completeness"], {"expected": n, "present": len(have),
                                                 "missing": [i for i in range(n) if i not in have]})
        self.assertEqual(group(DEFAULT, model="lm-a", checkpoint="ckpt-1000", split="validation")["completeness"],
                         {"expected": 4, "present": 3, "missing": [2]})
        lm_a = group(EXPECTED["group_by"]["model"], model="lm-a")["completeness"]
        self.assertEqual(lm_a, {"expected": 14, "present": 13, "missing": [
            {"run": {"model": "lm-a", "checkpoint": "ckpt-1000", "split": "validation"}, "shard_index": 2}]})

    def test_warnings(self):
        kinds = [(w["kind"], w.get("file")) for w in DEFAULT["warnings"]]
        self.assertEqual(kinds, [("num_shards_disagree", None),
                                 ("nonfinite_rows", "runs/lm-b.1000.validation.r1.lshd.zst")])
        disagree = DEFAULT["warnings"][0]
        self.assertEqual([s["num_shards"] for s in disagree["shards"]], [2, 3, 3])
        self.assertEqual(disagree["num_shards_used"], 3)

    def test_identity_ignores_the_directory_for_name_identity(self):
        a = {"name": "runs/plain-0.lshd.zst", "meta": None}
        b = {"name": os.path.join("elsewhere", "plain-0.lshd.zst"), "meta": None}
        self.assertEqual(runs_reference.identity(a, ())[0], runs_reference.identity(b, ())[0])
        ranked = {"name": "x", "meta": {"model": "m", "checkpoint": 1, "shard_index": 0}}
        other_ckpt = {"name": "y", "meta": {"model": "m", "checkpoint": 2, "shard_index": 0}}
        # --group-by none must not make rank 0 of two checkpoints one identity.
        self.assertNotEqual(runs_reference.identity(ranked, ())[0], runs_reference.identity(other_ckpt, ())[0])

    def test_rank_problems(self):
        for meta in ({"shard_index": 3, "num_shards": 3}, {"shard_index": -1}, {"shard_index": "1"},
                     {"shard_index": True}, {"shard_index": 1.5}, {"num_shards": 0}, {"num_shards": 2.5}):
            self.assertIsNotNone(runs_reference.rank_problem(meta), meta)
        for meta in (None, {}, {"shard_index": 2, "num_shards": 3}, {"shard_index": 2.0, "num_shards": 3.0},
                     {"shard_index": 7}, {"num_shards": 1}):
            self.assertIsNone(runs_reference.rank_problem(meta), meta)

    def test_numbers_equal_by_value_are_one_group(self):
        shards = [{"name": n, "meta": {"checkpoint": c}, "acc": None} for n, c in (("a", 1), ("b", 1.0), ("c", True))]
        tokens = {runs_reference.key_token(runs_reference.group_key(s["meta"], ("checkpoint",)), ("checkpoint",))
                  for s in shards}
        self.assertEqual(len(tokens), 2)

    def test_non_scalar_group_key_is_an_error(self):
        with self.assertRaises(runs_reference.GroupKeyError):
            runs_reference.group_key({"split": {"a": 1}}, ("split",))
        self.assertEqual(runs_reference.group_key({"split": ["a"]}, ("model",)), {"model": None})


if __name__ == "__main__":
    unittest.main()
