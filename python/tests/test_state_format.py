"""docs/STATE-FORMAT.md checked on its own terms: a reader written from that text alone (not from smoothd's
code, and not using smoothd.results) turns the states smoothd eval writes into the metrics of the
independent NumPy reference (Fixtures/expected.json, Fixtures/runs/expected.json), merges them per group into
the reference's group metrics, and reproduces eval's own numbers bit for bit. smoothd.results is then checked
against this reader."""
from __future__ import annotations

import json
import math
import subprocess
import unittest
import warnings

from support import FIXTURES, skip_without_binary

from smoothd import results

INT128 = (-(1 << 127), (1 << 127) - 1)


# ------------------------------------------------------------------------------------------------
# The reader, from docs/STATE-FORMAT.md
# ------------------------------------------------------------------------------------------------
def exact(sum_obj) -> int:
    """S in units of 2^-1074: F·2^994 + Σ d·2^(32 i)."""
    return int(sum_obj["fixed"]) * (1 << 994) + sum(d << (32 * i) for i, d in sum_obj["wide"])


def rounded(sum_obj) -> float:
    """"Rounding an exact sum to a double", steps 1-4."""
    t = exact(sum_obj)
    m = abs(t)
    digits = [(m >> (32 * i)) & 0xFFFFFFFF for i in range(71)] + [m >> (32 * 71)]
    r = 0.0
    for i in range(71, -1, -1):
        if digits[i]:
            try:
                r = r + math.ldexp(float(digits[i]), 32 * i - 1074)
            except OverflowError:
                r = math.inf
    return -r if t < 0 else r


SUMS = ("nll_sum", "uniform_sum", "others_sum", "entropy_sum", "confidence_sum", "brier_sum")
COUNTS = ("rows", "counted_rows", "ignored_rows", "nonfinite_rows", "correct", "top_k_hits")


def read_state(state: dict) -> dict:
    """Version check ("Members"): no state_version is version 1; anything else but 1 or 2 is refused."""
    if state.get("state_version", 1) not in (1, 2):
        raise ValueError(f"unknown state_version {state['state_version']}")
    return state


def consistency_problems(s: dict) -> list[str]:
    """The "Consistency" section, rule by rule."""
    problems = []
    if s["rows"] != s["counted_rows"] + s["ignored_rows"] + s["nonfinite_rows"]:
        problems.append("rows")
    if not s["correct"] <= s["top_k_hits"] <= s["counted_rows"]:
        problems.append("top_k_hits")
    if sum(s["bin_counts"]) != s["counted_rows"] or sum(s["bin_correct"]) != s["correct"]:
        problems.append("bins")
    if any(c > n for c, n in zip(s["bin_correct"], s["bin_counts"])):
        problems.append("bin_correct")
    if sum(exact(b) for b in s["bin_confidence"]) != exact(s["confidence_sum"]):
        problems.append("confidence")
    if s["counted_rows"] == 0 and any(exact(s[k]) for k in SUMS):
        problems.append("zero sums")
    for name in SUMS:
        for sum_obj in [s[name]] + (s["bin_confidence"] if name == "confidence_sum" else []):
            indexes = [i for i, _ in sum_obj["wide"]]
            if indexes != sorted(set(indexes)) or any(d == 0 or not (0 <= d < 1 << 32 or (i == 71 and abs(d) < 1 << 32))
                                                      for i, d in sum_obj["wide"]):
                problems.append(f"{name} wide")
    return problems


def merge(a: dict, b: dict) -> dict:
    """"Merging states": equal top_k, ece_bins and temperatures; counts add, sums add (smoothd's text), bins add,
    each temperature's sums and bins add, histogram bins add by index (null if either is null)."""
    assert (a["top_k"], a["ece_bins"]) == (b["top_k"], b["ece_bins"])
    assert [t["temperature"] for t in a.get("temperatures", [])] == [t["temperature"] for t in b.get("temperatures", [])]
    out = {"state_version": 2, "top_k": a["top_k"], "ece_bins": a["ece_bins"]}
    for k in COUNTS:
        out[k] = a[k] + b[k]

    def add(x, y):
        wide = sum(d << (32 * i) for i, d in x["wide"]) + sum(d << (32 * i) for i, d in y["wide"])
        fx, fy = int(x["fixed"]), int(y["fixed"])
        if INT128[0] <= fx + fy <= INT128[1]:
            fixed = fx + fy
        else:
            wide += fx << 994
            fixed = fy
        digits = [[i, (wide >> (32 * i)) & 0xFFFFFFFF] for i in range(71)] + [[71, wide >> (32 * 71)]]
        return {"fixed": str(fixed), "wide": [p for p in digits if p[1]]}

    for k in SUMS:
        out[k] = add(a[k], b[k])
    out["bin_counts"] = [x + y for x, y in zip(a["bin_counts"], b["bin_counts"])]
    out["bin_correct"] = [x + y for x, y in zip(a["bin_correct"], b["bin_correct"])]
    out["bin_confidence"] = [add(x, y) for x, y in zip(a["bin_confidence"], b["bin_confidence"])]
    out["temperatures"] = []
    for x, y in zip(a.get("temperatures", []), b.get("temperatures", [])):
        t = {"temperature": x["temperature"]}
        t.update({k: add(x[k], y[k]) for k in x if k.endswith("_sum")})
        t["bin_counts"] = [p + q for p, q in zip(x["bin_counts"], y["bin_counts"])]
        t["bin_correct"] = [p + q for p, q in zip(x["bin_correct"], y["bin_correct"])]
        t["bin_confidence"] = [add(p, q) for p, q in zip(x["bin_confidence"], y["bin_confidence"])]
        out["temperatures"].append(t)
    ha, hb = a.get("confidence_histogram"), b.get("confidence_histogram")
    if ha is None or hb is None:
        out["confidence_histogram"] = None
    else:
        def as_sum(v):
            return {"fixed": v, "wide": []} if isinstance(v, str) else v
        bins = {i: [n, c, as_sum(t)] for i, n, c, t in ha["bins"]}
        for i, n, c, t in hb["bins"]:
            if i in bins:
                bins[i] = [bins[i][0] + n, bins[i][1] + c, add(bins[i][2], as_sum(t))]
            else:
                bins[i] = [n, c, as_sum(t)]
        out["confidence_histogram"] = {k: ha[k] for k in ("linear_bins", "octave_bins", "octaves")}
        out["confidence_histogram"]["bins"] = [[i, n, c, t["fixed"] if not t["wide"] else t] for i, (n, c, t) in sorted(bins.items())]
    return out


def metrics(s: dict, mode: str, eps: float) -> dict:
    """"From a state to the metrics", in the order the table gives."""
    bins = float(s["ece_bins"])
    reliability = [{"lower": b / bins, "upper": (b + 1) / bins, "count": c,
                    "accuracy": s["bin_correct"][b] / float(c) if c else None,
                    "mean_confidence": rounded(s["bin_confidence"][b]) / float(c) if c else None}
                   for b, c in enumerate(s["bin_counts"])]
    if s["counted_rows"] == 0:
        return dict({k: None for k in ("nll", "loss", "perplexity", "accuracy", "top_k_accuracy", "mean_confidence",
                                       "entropy", "brier", "ece", "mce")}, reliability=reliability)
    n = float(s["counted_rows"])
    nll = rounded(s["nll_sum"]) / n
    term = rounded(s["uniform_sum" if mode == "uniform" else "others_sum"]) / n
    g = m = 0.0
    for b in range(s["ece_bins"]):
        if s["bin_counts"][b] > 0:
            gap = abs(float(s["bin_correct"][b]) - rounded(s["bin_confidence"][b]))
            g = g + gap
            m = max(m, gap / s["bin_counts"][b])
    return {"nll": nll, "loss": (1 - eps) * nll + eps * term, "perplexity": math.exp(nll),
            "accuracy": s["correct"] / n, "top_k_accuracy": s["top_k_hits"] / n,
            "mean_confidence": rounded(s["confidence_sum"]) / n, "entropy": rounded(s["entropy_sum"]) / n,
            "brier": rounded(s["brier_sum"]) / n, "ece": g / n, "mce": m, "reliability": reliability}


# ------------------------------------------------------------------------------------------------
def close(got, want, rel=1e-6, absolute=0.0):
    if got is None or want is None:
        return got is None and want is None
    return abs(got - want) <= max(rel * abs(want), absolute)


class StateFormat(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.expected = json.loads((FIXTURES / "expected.json").read_text())
        cls.runs = json.loads((FIXTURES / "runs" / "expected.json").read_text())

    def eval_json(self, files, *flags):
        binary = skip_without_binary(self)
        proc = subprocess.run([binary, "eval", "--json", *flags, *files], cwd=FIXTURES, capture_output=True, text=True,
                              timeout=600)
        self.assertIn(proc.returncode, (0, 1), proc.stderr[-2000:])
        return json.loads(proc.stdout)

    def assert_reference(self, got: dict, want: dict, mode: str, k: str, bins: str, where: str):
        for key in ("nll", "perplexity", "accuracy", "mean_confidence", "entropy", "brier"):
            self.assertTrue(close(got[key], want[key]), f"{where} {key}: {got[key]} vs {want[key]}")
        self.assertTrue(close(got["top_k_accuracy"], want["top_k_accuracy"][k]), f"{where} top-{k}")
        self.assertTrue(close(got["ece"], want["ece"][bins], 1e-4, 1e-4), f"{where} ece {bins}")

    def test_the_recipe_gives_the_reference_metrics_of_every_valid_fixture(self):
        files = [v["file"] for v in self.expected["valid"]]
        for k, bins in (("5", "15"), ("1", "10")):
            report = self.eval_json(files, "--top-k", k, "--ece-bins", bins)
            for entry, want in zip(report["shards"], self.expected["valid"]):
                state = read_state(entry["state"])
                self.assertEqual(consistency_problems(state), [], want["file"])
                for key in ("rows", "counted_rows", "ignored_rows", "nonfinite_rows"):
                    self.assertEqual(state[key], want[key], f"{want['file']} {key}")
                for mode in ("uniform", "others"):  # one state, both modes, every ε
                    for eps_text, loss in want["loss"][mode].items():
                        got = metrics(state, mode, float(eps_text))
                        self.assertTrue(close(got["loss"], loss), f"{want['file']} {mode} ε={eps_text}")
                    self.assert_reference(metrics(state, mode, 0.1), want, mode, k, bins, want["file"])
                # The recipe is complete: it gives eval's own numbers, bit for bit.
                got = metrics(state, "uniform", 0.1)
                for key, value in got.items():
                    self.assertEqual(value, entry[key], f"{want['file']} {key}: the recipe differs from eval")

    def test_merging_per_the_text_gives_the_reference_groups_and_evals_states(self):
        files = [f["file"] for f in self.runs["files"]]
        report = self.eval_json(files, "--smoothing-mode", "others", "--report-smoothing", "0")
        entries = {e["shard"]: e for e in report["shards"]}
        result = self.runs["group_by"]["model,checkpoint,split"]
        for want, group in zip(result["groups"], report["groups"]):
            merged = None
            for file in want["files"]:
                state = read_state(entries[file]["state"])
                merged = state if merged is None else merge(merged, state)
            self.assertEqual(consistency_problems(merged), [])
            where = json.dumps(want["key"])
            got = metrics(merged, "others", 0.1)
            self.assertTrue(close(got["loss"], want["loss"]["others"]["0.1"]), where)
            self.assert_reference(got, want, "others", "5", "15", where)
            # The text of the merge is eval's group state, digit for digit.
            self.assertEqual(json.dumps(merged), json.dumps(group["state"]), where)
            # smoothd.results implements the same text.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", results.ResultsWarning)
                doc = results.merge([entries[f] for f in want["files"]], smoothing_mode="others", group_by=None)
            self.assertEqual(json.dumps(doc["total"]["state"]), json.dumps(merged), where)

    def test_versions_and_refusals(self):
        report = self.eval_json(["valid/k2.lshd.zst"])
        state = report["shards"][0]["state"]
        self.assertEqual(list(state)[:3], ["state_version", "top_k", "ece_bins"])
        self.assertEqual(state["state_version"], 2)
        # A state from before state_version existed reads as version 1, by the text and by smoothd.results.
        old = {k: v for k, v in state.items() if k not in ("state_version", "temperatures", "confidence_histogram")}
        self.assertEqual(read_state(old), old)
        self.assertEqual(results.State.from_json(old, "old").to_json(), old)
        with self.assertRaises(ValueError):
            read_state(dict(state, state_version=3))
        with self.assertRaisesRegex(results.ResultsError, "unknown state_version 3"):
            results.State.from_json(dict(state, state_version=3), "new")
        # Bootstrap replicates are refused by name rather than dropped (that would lose the intervals unsaid).
        booted = self.eval_json(["valid/k2.lshd.zst"], "--bootstrap", "3")["shards"][0]["state"]
        self.assertIn("bootstrap", booted)
        with self.assertRaisesRegex(results.ResultsError, "bootstrap replicates.*smoothd merge --bootstrap R"):
            results.State.from_json(booted, "booted")
        # Each consistency rule is enforced by smoothd.results as the text states it.
        broken = [dict(state, rows=state["rows"] + 1), dict(state, top_k_hits=state["correct"] - 1),
                  dict(state, bin_counts=[state["bin_counts"][0] + 1] + state["bin_counts"][1:]),
                  dict(state, confidence_sum={"fixed": str(int(state["confidence_sum"]["fixed"]) + 1), "wide": []})]
        for bad in broken:
            self.assertNotEqual(consistency_problems(bad), [])
            with self.assertRaisesRegex(results.ResultsError, "do not add up"):
                results.State.from_json(bad, "bad")


if __name__ == "__main__":
    unittest.main()
