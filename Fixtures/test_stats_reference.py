"""Checks of the issue-14 reference (Fixtures/stats_reference.py) and Fixtures/stats/expected.json against
other formulations: textbook float64 softmax (logsumexp, q = exp(x - lse)), explicit bin loops, a naive
sorted loop for adaptive ECE, finite differences and scipy's bounded minimiser for the best temperature,
statistics.stdev for the standard errors, and Fixtures/reference.py at T = 1.

    python3 -m unittest discover -s Fixtures -t Fixtures -p 'test_*.py'
"""
from __future__ import annotations

import json
import math
import statistics
import sys
import unittest
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import reference  # noqa: E402
import stats_reference as S  # noqa: E402

EXPECTED = json.loads((HERE / "stats" / "expected.json").read_text(encoding="utf-8"))
OPTION_SETS = {name: S.Options(o["smoothing"], o["smoothing_mode"], o["top_k"], o["ece_bins"], o["temperatures"])
               for name, o in EXPECTED["option_sets"].items()}
SMALL = ["stats/temp_k10.lshd.zst", "stats/temp_k1000_bf16.lshd.zst", "stats/confident.lshd.zst"]
_ROWS = {}


def rows_of(rel) -> S.Rows:
    if rel not in _ROWS:
        _ROWS[rel] = S.load_rows(HERE / rel)[1]
    return _ROWS[rel]


def pool_rows(pool) -> S.Rows:
    return S.Rows.concat([rows_of(f) for f in EXPECTED["pools"][pool]["files"]])


def textbook(z, y, T, opts):
    """Per-row quantities of softmax(z/T) by the textbook formulas (no rearrangement)."""
    n, K = z.shape
    x = z / T
    mx = x.max(axis=1, keepdims=True)
    lse = (mx + np.log(np.exp(x - mx).sum(axis=1, keepdims=True)))[:, 0]
    q = np.exp(x - lse[:, None])
    r = np.arange(n)
    nll = lse - x[r, y]
    U = lse - x.mean(axis=1)
    W = (K * U - nll) / (K - 1)
    loss = (1 - opts.smoothing) * nll + opts.smoothing * (U if opts.mode == "uniform" else W)
    conf = q.max(axis=1)
    brier = (q * q).sum(axis=1) - 2 * q[r, y] + 1
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.where(q > 0, q * np.log(q), 0.0).sum(axis=1)
    order = np.argsort(-z, axis=1, kind="stable")  # ties: lower index first
    rank = np.argmax(order == y[:, None], axis=1)
    omc = np.sort(q, axis=1)[:, :-1].sum(axis=1)  # 1 - conf as a sum of the other probabilities
    return dict(nll=nll, loss=loss, conf=conf, brier=brier, entropy=entropy, correct=rank == 0,
                topk=rank < opts.top_k, omc=omc)


def small_cases():
    """(file, rows, option set name, options, textbook terms at T = 1) for the small fixtures."""
    for rel in SMALL:
        rows = rows_of(rel)
        for name, opts in OPTION_SETS.items():
            yield rel, rows, name, opts, textbook(rows.z, rows.y, 1.0, opts)


def binned(conf, correct, B):
    """(ECE, MCE) by an explicit loop over equal-width bins of accuracy and mean confidence."""
    n = len(conf)
    ece, gaps = 0.0, []
    for b in range(B):
        lo, hi = b / B, (b + 1) / B
        sel = (conf >= lo) & ((conf < hi) if b < B - 1 else (conf <= 1.0))
        if sel.any():
            gap = abs(correct[sel].mean() - conf[sel].mean())
            ece += sel.sum() / n * gap
            gaps.append(gap)
    return ece, max(gaps)


def naive_adaptive(omc, conf, correct, B):
    n = len(conf)
    order = sorted(range(n), key=lambda i: (-omc[i], i))
    sizes = [n // B + (1 if b < n % B else 0) for b in range(B)]
    total, start = 0.0, 0
    for size in sizes:
        part = order[start:start + size]
        start += size
        total += abs(sum(float(correct[i]) for i in part) - sum(conf[i] for i in part))
    return total / n


def close(test, got, want, rel, what, abs_tol=0.0):
    test.assertTrue(math.isclose(got, want, rel_tol=rel, abs_tol=abs_tol), f"{what}: {got!r} vs {want!r}")


class TemperatureMetrics(unittest.TestCase):
    def test_by_temperature_matches_textbook_softmax(self):
        for rel in SMALL:
            rows = rows_of(rel)
            for name, opts in OPTION_SETS.items():
                got = EXPECTED["files"][rel]["results"][name]["by_temperature"]
                self.assertEqual(list(got), [S.temperature_key(t) for t in opts.temperatures])
                for key, T in zip(got, opts.temperatures):
                    t = textbook(rows.z, rows.y, T, opts)
                    for m, v in (("nll", t["nll"]), ("loss", t["loss"]), ("mean_confidence", t["conf"]),
                                 ("brier", t["brier"]), ("entropy", t["entropy"])):
                        close(self, got[key][m], v.mean(), 1e-9, f"{rel} {name} T={key} {m}", 1e-12)
                    ece, mce = binned(t["conf"], t["correct"], opts.ece_bins)
                    close(self, got[key]["ece"], ece, 1e-9, f"{rel} {name} T={key} ece", 1e-12)
                    close(self, got[key]["mce"], mce, 1e-9, f"{rel} {name} T={key} mce", 1e-12)

    def test_temperature_one_equals_reference_py(self):
        for rel in SMALL + ["stats/boot_large.lshd.zst"]:
            rows = rows_of(rel)
            for name, opts in OPTION_SETS.items():
                want = reference.evaluate_arrays(rows.K, rows.y_all, rows.z_all, -100, top_ks=(opts.top_k,),
                                                 ece_bins=(opts.ece_bins,), epsilons=(opts.smoothing,))
                got = EXPECTED["files"][rel]["results"][name]
                eps = repr(opts.smoothing)
                pairs = [("nll", want["nll"]), ("accuracy", want["accuracy"]), ("brier", want["brier"]),
                         ("entropy", want["entropy"]), ("mean_confidence", want["mean_confidence"]),
                         ("top_k_accuracy", want["top_k_accuracy"][str(opts.top_k)]),
                         ("ece", want["ece"][str(opts.ece_bins)]), ("loss", want["loss"][opts.mode][eps])]
                for m, v in pairs:
                    close(self, got[m], v, 1e-12, f"{rel} {name} {m}")
                    if m not in ("accuracy", "top_k_accuracy"):
                        close(self, got["by_temperature"]["1.0"][m], v, 1e-12, f"{rel} {name} T=1 {m}")
                self.assertEqual(got["counted_rows"], want["counted_rows"])
                self.assertEqual(got["ignored_rows"], want["ignored_rows"])

    def test_frames_do_not_change_results(self):
        for group in EXPECTED["same_results"]:
            first = EXPECTED["files"][group[0]]
            for other in group[1:]:
                self.assertGreater(EXPECTED["files"][other]["frames"], first["frames"])
                for name in OPTION_SETS:
                    a = {k: v for k, v in first["results"][name].items() if k != "bootstrap"}
                    b = {k: v for k, v in EXPECTED["files"][other]["results"][name].items() if k != "bootstrap"}
                    self.assertEqual(a, b, other)

    def test_keys_and_repeats(self):
        self.assertEqual([S.temperature_key(t) for t in (0.5, 1, 2, 1e-5, 0.1)], ["0.5", "1.0", "2.0", "1e-05", "0.1"])
        self.assertEqual(S.unique_temperatures([2, 1, 2.0, 0.5]), [2.0, 1.0, 0.5])
        for bad in (0, -1, math.inf, math.nan):
            with self.assertRaises(ValueError):
                S.unique_temperatures([bad])

    def test_no_counted_rows(self):
        rows = S.Rows(np.full(4, -100), np.zeros((4, 3)))
        out = S.evaluate(rows, OPTION_SETS["uniform_b15"])
        self.assertEqual(out["counted_rows"], 0)
        self.assertIsNone(out["adaptive_ece"])
        self.assertIsNone(out["best_temperature"])
        self.assertTrue(all(v is None for e in out["by_temperature"].values() for v in e.values()))


class BestTemperature(unittest.TestCase):
    def mean_nll(self, rows, beta):
        return float(textbook(rows.z, rows.y, 1.0 / beta, OPTION_SETS["uniform_b15"])["nll"].mean())

    def test_optimum_is_stationary_and_minimal(self):
        cases = [(rel, rows_of(rel), EXPECTED["files"][rel]) for rel in SMALL]
        cases.append(("ckpt_a", pool_rows("ckpt_a"), EXPECTED["pools"]["ckpt_a"]))
        for what, rows, entry in cases:
            best = entry["results"]["uniform_b15"]["best_temperature"]
            self.assertEqual(best, {k: entry["results"]["others_b10"]["best_temperature"][k] for k in ("temperature", "nll")}
                             | {"ece": best["ece"]})
            beta = 1.0 / best["temperature"]
            h = 1e-4 * beta
            f0, fp, fm = self.mean_nll(rows, beta), self.mean_nll(rows, beta + h), self.mean_nll(rows, beta - h)
            close(self, best["nll"], f0, 1e-12, f"{what} nll(T*)")
            curvature = (fp - 2 * f0 + fm) / (h * h)
            slope = (fp - fm) / (2 * h)
            # A stationary point: the slope (with O(h^2) and rounding error) is tiny against the curvature.
            self.assertLess(abs(slope), 1e-6 * max(1.0, curvature), f"{what}: slope {slope} at beta*")
            self.assertLessEqual(f0, min(fp, fm), what)
            close(self, curvature, entry["results"]["uniform_b15"]["best_temperature_search"]["d2nll_dbeta2"], 1e-3,
                  f"{what} curvature")
            for key, v in entry["results"]["uniform_b15"]["by_temperature"].items():
                self.assertLessEqual(best["nll"], v["nll"], f"{what}: grid T={key} beats T*")
            self.assertNotAlmostEqual(best["temperature"], 1.0, places=2)

    def test_scipy_bounded_minimiser_agrees(self):
        try:
            from scipy.optimize import minimize_scalar
        except ImportError:
            self.skipTest("scipy is not installed")
        for rel in SMALL:
            rows = rows_of(rel)
            res = minimize_scalar(lambda b: self.mean_nll(rows, b), bounds=(0.05, 5.0), method="bounded",
                                  options={"xatol": 1e-10})
            want = 1.0 / res.x
            got = EXPECTED["files"][rel]["results"]["uniform_b15"]["best_temperature"]["temperature"]
            close(self, got, want, 1e-6, f"{rel} T* vs scipy")

    def test_derivatives_match_finite_differences(self):
        rows = rows_of("stats/temp_k1000_bf16.lshd.zst")
        for beta in (0.3, 1.0, 2.0):
            f, g, h = S.mean_nll_and_derivatives(rows, beta)
            d = 1e-5
            fp, fm = S.mean_nll(rows, beta + d), S.mean_nll(rows, beta - d)
            close(self, f, self.mean_nll(rows, beta), 1e-12, "mean nll")
            close(self, g, (fp - fm) / (2 * d), 1e-6, f"first derivative at {beta}", 1e-9)
            gp, gm = S.mean_nll_and_derivatives(rows, beta + d)[1], S.mean_nll_and_derivatives(rows, beta - d)[1]
            close(self, h, (gp - gm) / (2 * d), 1e-6, f"second derivative at {beta}", 1e-9)

    def test_grid_derivatives(self):
        for rel in SMALL:
            rows = rows_of(rel)
            got = EXPECTED["files"][rel]["results"]["uniform_b15"]
            for key, d in got["by_temperature_derivatives"].items():
                beta, h = 1.0 / float(key), 1e-5
                fp, f0, fm = (self.mean_nll(rows, beta + h), self.mean_nll(rows, beta), self.mean_nll(rows, beta - h))
                close(self, d["dnll_dbeta"], (fp - fm) / (2 * h), 1e-6, f"{rel} T={key} d nll", 1e-8)
                close(self, d["d2nll_dbeta2"], (fp - 2 * f0 + fm) / (h * h), 1e-3, f"{rel} T={key} d2 nll", 1e-5)

    def test_newton_from_the_best_grid_point_moves_toward_the_optimum(self):
        # The refinement the issue asks for: a Newton step on the grid's stored derivative sums.
        entries = [EXPECTED["files"][rel] for rel in EXPECTED["files"]] + list(EXPECTED["pools"].values())
        for entry in entries:
            r = entry["results"]["uniform_b15"]
            key = min(r["by_temperature"], key=lambda k: r["by_temperature"][k]["nll"])
            d = r["by_temperature_derivatives"][key]
            beta_grid, beta_star = 1.0 / float(key), 1.0 / r["best_temperature"]["temperature"]
            beta_newton = beta_grid - d["dnll_dbeta"] / d["d2nll_dbeta2"]
            self.assertLess(abs(beta_newton - beta_star), abs(beta_grid - beta_star), key)

    def test_cubic_hermite_between_bracketing_grid_points(self):
        # The README's claim: interpolating d nll/d beta between the grid points that bracket its sign change
        # (values and second derivatives at both ends) lands within 1e-3 of T* (2.1e-4 at worst here).
        entries = [EXPECTED["files"][rel] for rel in EXPECTED["files"]] + list(EXPECTED["pools"].values())
        bracketed = 0
        for entry in entries:
            r = entry["results"]["uniform_b15"]
            pts = sorted((1.0 / float(k), d["dnll_dbeta"], d["d2nll_dbeta2"])
                         for k, d in r["by_temperature_derivatives"].items())
            for (b0, g0, h0), (b1, g1, h1) in zip(pts, pts[1:]):
                if not g0 < 0 <= g1:
                    continue
                L = b1 - b0

                def g(b):
                    t = (b - b0) / L
                    return ((2 * t**3 - 3 * t**2 + 1) * g0 + (t**3 - 2 * t**2 + t) * L * h0
                            + (-2 * t**3 + 3 * t**2) * g1 + (t**3 - t**2) * L * h1)

                lo, hi = b0, b1
                for _ in range(80):
                    mid = 0.5 * (lo + hi)
                    lo, hi = (mid, hi) if g(mid) < 0 else (lo, mid)
                err = abs(1.0 / lo - r["best_temperature"]["temperature"])
                self.assertLess(err, 3e-4, f"Hermite estimate off by {err}")
                bracketed += 1
        self.assertEqual(bracketed, len(entries) - 1)  # all but confident (T* beyond the grid)

    def test_within_grid(self):
        entries = [EXPECTED["files"][rel] for rel in EXPECTED["files"]] + list(EXPECTED["pools"].values())
        for entry in entries:
            for name in OPTION_SETS:
                r = entry["results"][name]
                best, inside = r["best_temperature"], r["best_temperature_within_grid"]
                temps = [float(k) for k in r["by_temperature"]]
                self.assertTrue(min(temps) <= inside["temperature"] <= max(temps))
                self.assertGreaterEqual(inside["nll"], best["nll"])
                self.assertLessEqual(inside["nll"], min(v["nll"] for v in r["by_temperature"].values()))
                if min(temps) <= best["temperature"] <= max(temps):
                    self.assertEqual(inside, best)
        # T* of confident lies beyond the grid's largest T: the constrained optimum is that end.
        r = EXPECTED["files"]["stats/confident.lshd.zst"]["results"]["uniform_b15"]
        self.assertGreater(r["best_temperature"]["temperature"], 3.0)
        self.assertEqual(r["best_temperature_within_grid"]["temperature"], 3.0)
        self.assertEqual(r["best_temperature_within_grid"]["nll"], r["by_temperature"]["3.0"]["nll"])

    def test_no_interior_minimum(self):
        # Every row correct and separable: nll falls for every beta (T* = 0).
        z = np.array([[3.0, 0.0], [0.0, 2.0]])
        out = S.evaluate(S.Rows([0, 1], z), OPTION_SETS["uniform_b15"])
        self.assertIsNone(out["best_temperature"])
        # Every row wrong: nll grows with beta from 0 (T* = infinity).
        out = S.evaluate(S.Rows([1, 0], z), OPTION_SETS["uniform_b15"])
        self.assertIsNone(out["best_temperature"])


class AdaptiveECE(unittest.TestCase):
    def test_sorted_against_naive_loop(self):
        for rel, _, name, opts, t in small_cases():
            want = naive_adaptive(t["omc"], t["conf"], t["correct"], opts.ece_bins)
            got = EXPECTED["files"][rel]["results"][name]["adaptive_ece"]
            close(self, got, want, 1e-9, f"{rel} {name} adaptive_ece", 1e-12)

    def test_array_split_semantics(self):
        # 7 rows into 3 bins: sizes 3, 2, 2; rows sorted by confidence ascending.
        conf = np.array([0.9, 0.5, 0.7, 0.6, 0.95, 0.55, 0.8])
        correct = np.array([1, 0, 1, 1, 1, 0, 0], bool)
        terms = {"conf": conf, "one_minus_conf": 1 - conf}
        order = np.argsort(conf)
        bins = [order[:3], order[3:5], order[5:]]
        want = sum(abs(correct[b].sum() - conf[b].sum()) for b in bins) / 7
        self.assertAlmostEqual(S.adaptive_ece(terms, correct, 3), want, places=15)

    def test_resolves_confidence_near_one(self):
        rows = rows_of("stats/confident.lshd.zst")
        omc = S.row_terms(rows.z, rows.y, 1.0)["one_minus_conf"]
        self.assertLess(omc.min(), 2e-12)
        self.assertGreater((omc < 1e-6).sum(), 300)
        # More than half the rows sit in the top equal-width bin, so adaptive bins split them there.
        self.assertGreater((1 - omc >= 14 / 15).mean(), 0.5)


class StandardErrorsAndCompare(unittest.TestCase):
    def test_analytic_standard_errors(self):
        for rel, rows, name, _, t in small_cases():
            se = EXPECTED["files"][rel]["results"][name]["standard_errors"]
            n = rows.n
            close(self, se["nll"], statistics.stdev(t["nll"].tolist()) / math.sqrt(n), 1e-9, f"{rel} se nll")
            close(self, se["loss"], statistics.stdev(t["loss"].tolist()) / math.sqrt(n), 1e-9, f"{rel} se loss")
            p = t["correct"].mean()
            close(self, se["accuracy"], math.sqrt(p * (1 - p) / n), 1e-12, f"{rel} se accuracy")
            p = t["topk"].mean()
            close(self, se["top_k_accuracy"], math.sqrt(p * (1 - p) / n), 1e-12, f"{rel} se top-k")
            self.assertIsNone(se["ece"])

    def test_paired_differences(self):
        opts = OPTION_SETS["uniform_b15"]
        a, b = pool_rows("ckpt_a"), pool_rows("ckpt_b")
        self.assertTrue(np.array_equal(a.y_all, b.y_all))
        ta, tb = textbook(a.z, a.y, 1.0, opts), textbook(b.z, b.y, 1.0, opts)
        got = EXPECTED["compare"]["ckpt_a_vs_b"]["results"]["uniform_b15"]
        self.assertTrue(got["paired"])
        for m, key in (("nll", "nll"), ("loss", "loss"), ("accuracy", "correct"), ("top_k_accuracy", "topk")):
            d = tb[key].astype(float) - ta[key].astype(float)
            entry = got["differences"][m]
            close(self, entry["difference"], d.mean(), 1e-9, f"difference {m}", 1e-12)
            close(self, entry["se_paired"], statistics.stdev(d.tolist()) / math.sqrt(len(d)), 1e-9, f"paired se {m}")
            self.assertLess(entry["se_paired"], entry["se_unpaired"] / 3, m)
            iv = got["bootstrap"]
            self.assertLess(iv["paired"][m][1] - iv["paired"][m][0], iv["unpaired"][m][1] - iv["unpaired"][m][0], m)
        ece = got["differences"]["ece"]
        self.assertEqual(ece["difference"], ece["b"] - ece["a"])
        self.assertIsNone(ece["se_paired"])

    def test_unpaired_when_labels_differ(self):
        for name in OPTION_SETS:
            got = EXPECTED["compare"]["ckpt_a_vs_u"]["results"][name]
            self.assertFalse(got["paired"])
            self.assertTrue(all(e["se_paired"] is None for e in got["differences"].values()))
            self.assertNotIn("paired", got["bootstrap"])


class Bootstrap(unittest.TestCase):
    def test_poisson_weights(self):
        w = S.poisson_weights(7, 200_000, 1)
        self.assertAlmostEqual(w.mean(), 1.0, delta=0.01)
        self.assertAlmostEqual(w.var(), 1.0, delta=0.02)
        self.assertAlmostEqual((w == 0).mean(), math.exp(-1), delta=0.005)
        # Deterministic per seed, and the seed (shard identity) matters.
        self.assertTrue(np.array_equal(S.poisson_weights(7, 50, 3), S.poisson_weights(7, 50, 3)))
        self.assertFalse(np.array_equal(S.poisson_weights(7, 50, 3), S.poisson_weights(8, 50, 3)))

    def test_widths_near_analytic(self):
        # A percentile interval's width from R replicates has a relative sd of about 1/sqrt(R/10): ~7 % at
        # R = 200, ~3 % at R = 1000. The bounds are about 3.5 sd.
        entries = [EXPECTED["files"]["stats/boot_large.lshd.zst"]] + [EXPECTED["pools"][p] for p in EXPECTED["pools"]]
        for entry in entries:
            for name in OPTION_SETS:
                for key, bound in (("bootstrap", 0.25), ("bootstrap_r1000", 0.12)):
                    ratio = entry["results"][name][key]["width_over_3.92_se"]
                    for m in ("nll", "accuracy", "loss"):
                        self.assertLessEqual(abs(ratio[m] - 1), bound, f"{name} {key} {m}: {ratio[m]}")

    def test_chunked_replicates(self):
        # R = 200 is one chunk (stream 0); R = 1000 starts with the same 200 replicates.
        rows = rows_of("stats/temp_k1000_bf16.lshd.zst")
        opts = OPTION_SETS["uniform_b15"]
        small, large = S.bootstrap_replicates(rows, [opts], 200)[0], S.bootstrap_replicates(rows, [opts], 450)[0]
        self.assertEqual(len(large["nll"]), 450)
        self.assertTrue(np.array_equal(small["nll"], large["nll"][:200]))
        self.assertFalse(np.array_equal(large["nll"][:200], large["nll"][200:400]))

    def test_weighted_replicate_with_unit_weights_is_the_metric(self):
        rows = rows_of("stats/temp_k10.lshd.zst")
        opts = OPTION_SETS["others_b10"]
        reps = S.replicate_metrics(rows, opts, np.ones((1, rows.n)))
        got = EXPECTED["files"]["stats/temp_k10.lshd.zst"]["results"]["others_b10"]
        for m in S.DIFF_METRICS:
            close(self, float(reps[m][0]), got[m], 1e-12, m)


class CommandLine(unittest.TestCase):
    def test_cli_prints_the_expected_result(self):
        import contextlib
        import io
        rel = "stats/confident.lshd.zst"
        o = EXPECTED["option_sets"]["others_b10"]
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            status = S.main(["--temperatures", ",".join(map(str, o["temperatures"])), "--smoothing", str(o["smoothing"]),
                             "--smoothing-mode", o["smoothing_mode"], "--top-k", str(o["top_k"]),
                             "--ece-bins", str(o["ece_bins"]), str(HERE / rel)])
        self.assertEqual(status, 0)
        doc = json.loads(buf.getvalue())
        self.assertEqual(doc["options"], o)
        want = EXPECTED["files"][rel]["results"]["others_b10"]
        for got in (doc["shards"][0], doc["total"]):
            for key in ("nll", "loss", "by_temperature", "best_temperature", "adaptive_ece", "standard_errors"):
                self.assertEqual(got[key], want[key], key)


if __name__ == "__main__":
    unittest.main()
