"""Independent float64 NumPy reference for issue 14: temperature sweeps, the best temperature, adaptive ECE,
analytic standard errors, paired checkpoint differences and a Poisson bootstrap, written from the issue's
agreed definitions (Fixtures/stats/README.md states them) and knowing nothing of the Swift code.

Only the shard reader (reference.read_shard) is shared with Fixtures/reference.py; the row math is written
here again. Rows are *counted* when their label is not ignore_index and all their logits are finite.

Per counted row z (K float64 logits), label y, inverse temperature beta = 1/T and x = beta*z, with
m = max x, d = m - x >= 0, e = exp(-d), s = sum e and s - 1 summed without the exp(0) of one maximum:
    nll_T   = (m - x_y) + log1p(s - 1)                  lse(x) - x_y, without cancelling near 0
    U_T     = sum(d)/K + log1p(s - 1)                   lse(x) - mean(x)              (mode uniform)
    W_T     = (sum_{k!=y} d_k + (K-1) log1p(s - 1))/(K-1) = (K U_T - nll_T)/(K-1)     (mode others)
    loss_T  = (1 - eps) nll_T + eps U_T  (or eps W_T)
    conf_T  = 1/s,  1 - conf_T = (s - 1)/s               (kept apart: ECE near confidence 1)
    brier_T = (sum_{k!=y} q_k)^2 + sum_{k!=y} q_k^2      = sum q^2 - 2 q_y + 1
    entropy = log1p(s - 1) + sum_k q_k d_k               = -sum q log q
    d nll_T / d beta   = sum_k q_k (z_k - z_y)            = E_q[z] - z_y
    d2 nll_T / d beta2 = sum_k q_k (z_k - E_q[z])^2       = Var_q(z) >= 0   (nll is convex in beta)
Correct / top-k use the rank of the label: #{k: z_k > z_y} + #{k < y: z_k = z_y} (T does not change it).
Every sum over rows is math.fsum (exactly rounded), so pooled results do not depend on chunking or order.

best_temperature: the mean nll over beta is convex, so the minimiser is bracketed by doubling beta until
the derivative turns positive, narrowed by golden-section search on the mean nll to a bracket 1e-6 wide
(relative), then polished by Newton steps on the derivative (exact fsum sums of the first and second
derivative), each kept inside the bracket (bisection otherwise), until a step is below 1e-10 relative.
It reports {"temperature": 1/beta*, "nll": mean nll(beta*), "ece": ece at beta* (the configured bins)}.

adaptive_ece: counted rows sorted by confidence ascending (stable: ties keep row order; the sort key is
1 - conf, descending, computed without cancellation), numpy.array_split into B bins (sizes differ by at most
one, larger bins first), sum over bins |sum(correct - conf)| / n.

Standard errors: nll and loss sd(ddof=1)/sqrt(n); accuracy and top-k sqrt(p(1-p)/n); paired difference of
checkpoints sd(d_i)/sqrt(n) over the per-row differences d_i = m_b,i - m_a,i, unpaired sqrt(se_a^2 + se_b^2).

Bootstrap (a sanity figure, not the Swift generator): weight w_{r,i} ~ Poisson(1) by inversion of PCG64 raw
bits (table CDF, no libm in the draw), one stream per shard seeded from meta shard_index (same for two
checkpoints: paired), else from the file name; a replicate's metric is the weighted metric of the rows;
intervals are numpy.percentile(…, [2.5, 97.5]) (linear) over the replicates.

    python3 Fixtures/stats_reference.py [--temperatures 0.5,1,2] [--smoothing 0.1] [--smoothing-mode uniform]
        [--top-k 5] [--ece-bins 15] [--bootstrap R] SHARD...       prints one JSON document
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference import read_shard  # noqa: E402  (the reader only; the math is below)

GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0
GOLDEN_TOL = 1e-6  # relative bracket width after golden-section search
NEWTON_TOL = 1e-10  # relative Newton step that ends the polish
DEFAULT_TEMPERATURES = ()
POISSON_KMAX = 30  # P(Poisson(1) > 30) < 1e-33: beyond any 2^-53 uniform


def temperature_key(t: float) -> str:
    """The shortest decimal that reads back as t, always with '.' or an exponent ("1.0", "0.5", "1e-05")."""
    return repr(float(t))


def unique_temperatures(temperatures):
    out = []
    for t in temperatures:
        t = float(t)
        if not (t > 0 and math.isfinite(t)):
            raise ValueError(f"temperature {t!r} must be finite and > 0")
        if t not in out:
            out.append(t)
    return out


# ------------------------------------------------------------------------------------------------
# Rows
# ------------------------------------------------------------------------------------------------
class Rows:
    """All rows of one or more shards: labels, float64 logits, and which rows are counted."""

    def __init__(self, labels, logits, ignore_index=-100, shard_ids=None, row_index=None, name=None):
        self.y_all = np.asarray(labels, dtype=np.int64).reshape(-1)
        self.z_all = np.asarray(logits, dtype=np.float64).reshape(len(self.y_all), -1)
        self.K = self.z_all.shape[1]
        self.ignore_index = int(ignore_index)
        n = len(self.y_all)
        # Bootstrap identity of every row: the shard's seed and the 0-based row index in its shard.
        self.shard_ids = np.zeros(n, np.int64) if shard_ids is None else np.asarray(shard_ids, np.int64)
        self.row_index = np.arange(n, dtype=np.int64) if row_index is None else np.asarray(row_index, np.int64)
        keep = self.y_all != self.ignore_index
        finite = np.isfinite(self.z_all).all(axis=1)
        self.rows, self.ignored = n, int((~keep).sum())
        self.nonfinite = int((keep & ~finite).sum())
        self.counted_mask = keep & finite
        self.y = self.y_all[self.counted_mask]
        self.z = self.z_all[self.counted_mask]
        if ((self.y < 0) | (self.y >= self.K)).any():
            raise ValueError("labels must be in [0, K) or equal to ignore_index")
        self.n = len(self.y)
        self.names = [name] if name else []

    @staticmethod
    def concat(parts):
        """Pool several Rows (same K) into one, keeping each row's bootstrap identity."""
        if len({p.K for p in parts}) != 1:
            raise ValueError("pooled shards must have one K")
        out = Rows.__new__(Rows)
        out.K = parts[0].K
        out.ignore_index = None
        for attr in ("y_all", "shard_ids", "row_index", "counted_mask", "y"):
            setattr(out, attr, np.concatenate([getattr(p, attr) for p in parts]))
        out.z_all = np.concatenate([p.z_all for p in parts])
        out.z = np.concatenate([p.z for p in parts])
        out.rows = sum(p.rows for p in parts)
        out.ignored = sum(p.ignored for p in parts)
        out.nonfinite = sum(p.nonfinite for p in parts)
        out.n = sum(p.n for p in parts)
        out.names = [n for p in parts for n in p.names]
        return out


def shard_seed(meta, path) -> int:
    """The bootstrap stream of a shard: meta shard_index when present, else a stable hash of the file name."""
    if isinstance(meta, dict) and isinstance(meta.get("shard_index"), int) and not isinstance(meta["shard_index"], bool):
        return int(meta["shard_index"])
    name = os.path.basename(str(path)).encode()
    return (1 << 40) + sum((i + 1) * c for i, c in enumerate(name))


def load_rows(path):
    """(header, Rows) of one shard, read with the strict reference reader."""
    it = read_shard(path)
    header = next(it)
    chunks = list(it)
    K = header["num_classes"]
    y = np.concatenate([c[0] for c in chunks]) if chunks else np.zeros(0, np.int64)
    z = np.concatenate([c[1] for c in chunks]) if chunks else np.zeros((0, K))
    seed = shard_seed(header["meta"], path)
    return header, Rows(y, z, header["ignore_index"], np.full(len(y), seed, np.int64), name=str(path))


# ------------------------------------------------------------------------------------------------
# Per-row terms at an inverse temperature
# ------------------------------------------------------------------------------------------------
def ranks(z, y):
    """Rank of the label: larger logits, plus equal logits at lower indexes."""
    n, K = z.shape
    zy = z[np.arange(n), y][:, None]
    lower = np.arange(K)[None, :] < y[:, None]
    return (z > zy).sum(axis=1) + ((z == zy) & lower).sum(axis=1)


def row_terms(z, y, beta: float, derivatives: bool = False) -> dict:
    """Per-row float64 terms of softmax(beta*z) for counted rows (see the module docstring)."""
    n, K = z.shape
    r = np.arange(n)
    x = beta * z
    m = x.max(axis=1)
    d = m[:, None] - x
    e = np.exp(-d)
    e_rest = e.copy()
    e_rest[r, x.argmax(axis=1)] = 0.0
    s_minus_1 = e_rest.sum(axis=1)
    s = 1.0 + s_minus_1
    log_s = np.log1p(s_minus_1)
    q = e / s[:, None]
    q_not_y = q.copy()
    q_not_y[r, y] = 0.0
    d_not_y = d.copy()
    d_not_y[r, y] = 0.0
    rest = q_not_y.sum(axis=1)  # 1 - q_y
    out = {
        "nll": (m - x[r, y]) + log_s,
        "uniform": d.sum(axis=1) / K + log_s,
        "others": (d_not_y.sum(axis=1) + (K - 1) * log_s) / (K - 1),
        "conf": 1.0 / s,
        "one_minus_conf": s_minus_1 / s,
        "brier": rest * rest + (q_not_y * q_not_y).sum(axis=1),
        "entropy": log_s + (q * d).sum(axis=1),
    }
    if derivatives:
        dz = z - z[r, y][:, None]  # z_k - z_y: exact differences of the logits
        g = (q * dz).sum(axis=1)
        out["dnll"] = g
        # Var_q(z) = E_q[(z - z_y)^2] - g^2 would cancel; centre on E_q[z] instead.
        out["d2nll"] = (q * (dz - g[:, None]) ** 2).sum(axis=1)
    return out


def bins_of(conf, B: int):
    """Equal-width bin of each confidence: [b/B, (b+1)/B), the last bin including 1."""
    return np.minimum(np.floor(conf * B).astype(np.int64), B - 1)


def correct_minus_conf(terms, correct):
    """correct - conf per row, 1 - conf kept exact for correct rows."""
    return np.where(correct, terms["one_minus_conf"], -terms["conf"])


def ece_mce(terms, correct, B: int):
    """(ECE, MCE) with B equal-width bins; sums per bin with fsum."""
    n = len(correct)
    b = bins_of(terms["conf"], B)
    cmc = correct_minus_conf(terms, correct)
    ece_terms, gaps = [], []
    for k in range(B):
        sel = b == k
        cnt = int(sel.sum())
        if cnt:
            total = abs(math.fsum(cmc[sel]))
            ece_terms.append(total)
            gaps.append(total / cnt)
    return math.fsum(ece_terms) / n, max(gaps)


def adaptive_ece(terms, correct, B: int):
    """Equal-mass ECE by sorting (None without rows): array_split of the rows sorted by conf ascending."""
    n = len(correct)
    if n == 0:
        return None
    order = np.argsort(-terms["one_minus_conf"], kind="stable")  # conf ascending, ties in row order
    cmc = correct_minus_conf(terms, correct)[order]
    return math.fsum(abs(math.fsum(part)) for part in np.array_split(cmc, B)) / n


def ece_margin(conf, B: int) -> float:
    """Smallest distance of conf*B from an inner bin edge (inf without rows): how robust a bin assignment is."""
    x = conf * B
    inner = x < B - 0.5
    return float(np.abs(x[inner] - np.round(x[inner])).min()) if inner.any() else math.inf


# ------------------------------------------------------------------------------------------------
# Metrics of a set of rows
# ------------------------------------------------------------------------------------------------
class Options:
    def __init__(self, smoothing=0.1, smoothing_mode="uniform", top_k=5, ece_bins=15, temperatures=()):
        if smoothing_mode not in ("uniform", "others"):
            raise ValueError("smoothing_mode is uniform or others")
        self.smoothing, self.mode, self.top_k, self.ece_bins = float(smoothing), smoothing_mode, int(top_k), int(ece_bins)
        self.temperatures = unique_temperatures(temperatures)

    def as_json(self):
        return {"smoothing": self.smoothing, "smoothing_mode": self.mode, "top_k": self.top_k,
                "ece_bins": self.ece_bins, "temperatures": list(self.temperatures)}


def row_loss(terms, opts: Options):
    eps = opts.smoothing
    return (1.0 - eps) * terms["nll"] + eps * terms[opts.mode]


def mean(v, n):
    return math.fsum(v) / n


def metrics_at(rows: Rows, beta: float, opts: Options, correct) -> dict:
    """by_temperature entry: nll, loss, mean_confidence, ece, mce, brier, entropy of softmax(beta*z)."""
    t = row_terms(rows.z, rows.y, beta)
    n = rows.n
    ece, mce = ece_mce(t, correct, opts.ece_bins)
    return {"nll": mean(t["nll"], n), "loss": mean(row_loss(t, opts), n), "mean_confidence": mean(t["conf"], n),
            "ece": ece, "mce": mce, "brier": mean(t["brier"], n), "entropy": mean(t["entropy"], n)}


def mean_nll(rows: Rows, beta: float) -> float:
    """Mean nll_T at beta alone (the golden-section search needs nothing else)."""
    n, _ = rows.z.shape
    r = np.arange(n)
    x = beta * rows.z
    m = x.max(axis=1)
    e = np.exp(x - m[:, None])
    e[r, x.argmax(axis=1)] = 0.0
    return mean((m - x[r, rows.y]) + np.log1p(e.sum(axis=1)), n)


def mean_nll_and_derivatives(rows: Rows, beta: float):
    t = row_terms(rows.z, rows.y, beta, derivatives=True)
    n = rows.n
    return mean(t["nll"], n), mean(t["dnll"], n), mean(t["d2nll"], n)


def best_beta(rows: Rows):
    """(beta*, info) minimising the exact mean nll over beta > 0 (None when the minimum is not interior);
    cached on rows (it does not depend on the options)."""
    cached = getattr(rows, "_best_beta", None)
    if cached is None:
        cached = rows._best_beta = _search_beta(rows)
    return cached[0], dict(cached[1])


def _search_beta(rows: Rows, max_doublings: int = 200):
    f = lambda b: mean_nll(rows, b)  # noqa: E731
    df = lambda b: mean_nll_and_derivatives(rows, b)[1]  # noqa: E731
    # d nll/d beta at beta -> 0+ is mean(mean_k z - z_y): >= 0 means T* = infinity (no interior minimum).
    if df(0.0) >= 0:
        return None, {"reason": "nll does not decrease from beta = 0 (T* = infinity)"}
    lo, hi = 0.0, 1.0
    for _ in range(max_doublings):
        if df(hi) > 0:
            break
        lo, hi = hi, 2.0 * hi
    else:
        return None, {"reason": "nll decreases for every beta (separable rows: T* = 0)"}
    # Golden-section search on f over [lo, hi].
    a, b = lo, hi
    c, d = b - GOLDEN * (b - a), a + GOLDEN * (b - a)
    fc, fd = f(c), f(d)
    golden_steps = 0
    while b - a > GOLDEN_TOL * b:
        golden_steps += 1
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - GOLDEN * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + GOLDEN * (b - a)
            fd = f(d)
    beta = 0.5 * (a + b)
    # Newton polish on the derivative, inside a sign-change bracket (bisection when a step leaves it).
    a, b = lo, hi
    newton_steps = 0
    for _ in range(100):
        _, g, h = mean_nll_and_derivatives(rows, beta)
        if g > 0:
            b = min(b, beta)
        elif g < 0:
            a = max(a, beta)
        else:
            break
        step = -g / h if h > 0 else math.inf
        new = beta + step
        if not (a < new < b):
            new = 0.5 * (a + b)
        newton_steps += 1
        done = abs(new - beta) <= NEWTON_TOL * beta
        beta = new
        if done:
            break
    _, g, h = mean_nll_and_derivatives(rows, beta)
    return beta, {"beta": beta, "dnll_dbeta": g, "d2nll_dbeta2": h, "golden_steps": golden_steps,
                  "newton_steps": newton_steps}


def standard_errors(rows: Rows, opts: Options, t, correct, topk):
    n = rows.n
    if n < 2:
        return {"nll": None, "loss": None, "accuracy": None, "top_k_accuracy": None, "ece": None}

    def sd_se(v):
        mu = mean(v, n)
        return math.sqrt(math.fsum((v - mu) ** 2) / (n - 1) / n)

    def p_se(hits):
        p = int(hits.sum()) / n
        return math.sqrt(p * (1.0 - p) / n)

    return {"nll": sd_se(t["nll"]), "loss": sd_se(row_loss(t, opts)), "accuracy": p_se(correct),
            "top_k_accuracy": p_se(topk), "ece": None}


def evaluate(rows: Rows, opts: Options, bootstrap: int = 0) -> dict:
    """Every issue-14 quantity of the pooled counted rows (the temperature-1 metrics too, as cross-checks)."""
    n = rows.n
    out = {"rows": rows.rows, "counted_rows": n, "ignored_rows": rows.ignored, "nonfinite_rows": rows.nonfinite}
    keys = [temperature_key(t) for t in opts.temperatures]
    if n == 0:
        out.update({k: None for k in ("loss", "nll", "accuracy", "top_k_accuracy", "mean_confidence", "entropy",
                                      "brier", "ece", "mce", "adaptive_ece")})
        out["by_temperature"] = {k: {m: None for m in ("nll", "loss", "mean_confidence", "ece", "mce", "brier",
                                                       "entropy")} for k in keys}
        if opts.temperatures:
            out["best_temperature"] = None
        out["standard_errors"] = standard_errors(rows, opts, None, None, None)
        return out
    rank = ranks(rows.z, rows.y)
    correct, topk = rank == 0, rank < opts.top_k
    t = row_terms(rows.z, rows.y, 1.0)
    ece, mce = ece_mce(t, correct, opts.ece_bins)
    out.update({"loss": mean(row_loss(t, opts), n), "nll": mean(t["nll"], n), "accuracy": int(correct.sum()) / n,
                "top_k_accuracy": int(topk.sum()) / n, "mean_confidence": mean(t["conf"], n),
                "entropy": mean(t["entropy"], n), "brier": mean(t["brier"], n), "ece": ece, "mce": mce})
    out["by_temperature"] = {k: metrics_at(rows, 1.0 / T, opts, correct) for k, T in zip(keys, opts.temperatures)}
    if opts.temperatures:
        beta, info = best_beta(rows)
        if beta is None:
            out["best_temperature"] = None
        else:
            at = metrics_at(rows, beta, opts, correct)
            out["best_temperature"] = {"temperature": 1.0 / beta, "nll": at["nll"], "ece": at["ece"]}
            tb = row_terms(rows.z, rows.y, beta)
            info["ece_bin_margin"] = ece_margin(tb["conf"], opts.ece_bins)
        out["best_temperature_search"] = info
    out["adaptive_ece"] = adaptive_ece(t, correct, opts.ece_bins)
    out["standard_errors"] = standard_errors(rows, opts, t, correct, topk)
    if bootstrap:
        out["bootstrap"] = bootstrap_summary(rows, opts, bootstrap, out["standard_errors"])
    return out


# ------------------------------------------------------------------------------------------------
# Poisson bootstrap (sanity figures)
# ------------------------------------------------------------------------------------------------
def _poisson1_cdf():
    """CDF of Poisson(1) at 0..POISSON_KMAX, from exactly rounded sums (no libm beyond exp(-1))."""
    e1 = math.exp(-1.0)
    pmf, p = [], e1
    for k in range(POISSON_KMAX + 1):
        pmf.append(p)
        p = p / (k + 1)
    return np.array([math.fsum(pmf[:k + 1]) for k in range(POISSON_KMAX + 1)])


POISSON_CDF = _poisson1_cdf()


def poisson_weights(seed: int, num_rows: int, replicates: int, stream: int = 0):
    """[replicates, num_rows] Poisson(1) weights of one shard's rows 0..num_rows-1 (inversion of PCG64 bits)."""
    gen = np.random.PCG64([int(seed) & ((1 << 63) - 1), int(stream), 14])
    u = (gen.random_raw(replicates * num_rows) >> np.uint64(11)).astype(np.float64) * 2.0 ** -53
    return np.searchsorted(POISSON_CDF, u, side="right").reshape(replicates, num_rows).astype(np.float64)


def weights_for(rows: Rows, replicates: int, stream: int = 0):
    """[replicates, counted rows] weights: each shard's stream drawn for all its rows, then the counted ones."""
    W = np.zeros((replicates, rows.n))
    counted_ids = rows.shard_ids[rows.counted_mask]
    counted_idx = rows.row_index[rows.counted_mask]
    for sid in np.unique(counted_ids):
        sel = counted_ids == sid
        total = int(rows.row_index[rows.shard_ids == sid].max()) + 1
        W[:, sel] = poisson_weights(int(sid), total, replicates, stream)[:, counted_idx[sel]]
    return W


def replicate_metrics(rows: Rows, opts: Options, W) -> dict:
    """Per replicate: weighted loss, nll, accuracy, top-k accuracy and ECE (weighted bin sums)."""
    rank = ranks(rows.z, rows.y)
    correct, topk = rank == 0, rank < opts.top_k
    t = row_terms(rows.z, rows.y, 1.0)
    wsum = W.sum(axis=1)
    cmc = correct_minus_conf(t, correct)
    onehot = np.zeros((rows.n, opts.ece_bins))
    onehot[np.arange(rows.n), bins_of(t["conf"], opts.ece_bins)] = cmc
    return {"loss": W @ row_loss(t, opts) / wsum, "nll": W @ t["nll"] / wsum,
            "accuracy": W @ correct.astype(np.float64) / wsum, "top_k_accuracy": W @ topk.astype(np.float64) / wsum,
            "ece": np.abs(W @ onehot).sum(axis=1) / wsum}


def interval(values):
    lo, hi = np.percentile(values, [2.5, 97.5])
    return [float(lo), float(hi)]


def bootstrap_summary(rows: Rows, opts: Options, replicates: int, se: dict) -> dict:
    reps = replicate_metrics(rows, opts, weights_for(rows, replicates))
    out = {"replicates": replicates, "intervals": {}, "width_over_3.92_se": {}}
    for k, v in reps.items():
        out["intervals"][k] = interval(v)
        w = out["intervals"][k][1] - out["intervals"][k][0]
        out["width_over_3.92_se"][k] = w / (3.92 * se[k]) if se.get(k) else None
    return out


# ------------------------------------------------------------------------------------------------
# Paired checkpoints
# ------------------------------------------------------------------------------------------------
DIFF_METRICS = ("loss", "nll", "accuracy", "top_k_accuracy", "ece")


def aligned(a: Rows, b: Rows) -> bool:
    """Both evaluated the same rows: same labels at the same (shard seed, row index)."""
    ka = sorted(zip(a.shard_ids.tolist(), a.row_index.tolist(), a.y_all.tolist()))
    kb = sorted(zip(b.shard_ids.tolist(), b.row_index.tolist(), b.y_all.tolist()))
    return ka == kb


def _per_row(rows: Rows, opts: Options):
    rank = ranks(rows.z, rows.y)
    t = row_terms(rows.z, rows.y, 1.0)
    return {"loss": row_loss(t, opts), "nll": t["nll"], "accuracy": (rank == 0).astype(np.float64),
            "top_k_accuracy": (rank < opts.top_k).astype(np.float64)}


def _order(rows: Rows):
    """Counted rows ordered by (shard seed, row index): how two aligned checkpoints' rows are matched."""
    return np.lexsort((rows.row_index[rows.counted_mask], rows.shard_ids[rows.counted_mask]))


def compare(a: Rows, b: Rows, opts: Options, bootstrap: int = 0) -> dict:
    """difference = b - a per metric with analytic SEs; paired SE when both sides have the same rows and the
    same counted rows (else null)."""
    ra, rb = evaluate(a, opts), evaluate(b, opts)
    paired = aligned(a, b)
    same_counted = paired and np.array_equal(a.counted_mask[np.lexsort((a.row_index, a.shard_ids))],
                                             b.counted_mask[np.lexsort((b.row_index, b.shard_ids))])
    pa, pb = _per_row(a, opts), _per_row(b, opts)
    oa, ob = _order(a), _order(b)
    out = {"paired": paired, "differences": {}}
    for m in DIFF_METRICS:
        entry = {"a": ra[m], "b": rb[m], "difference": rb[m] - ra[m]}
        sa, sb = ra["standard_errors"][m], rb["standard_errors"][m]
        entry["se_unpaired"] = math.sqrt(sa * sa + sb * sb) if sa is not None and sb is not None else None
        if m != "ece" and same_counted and a.n > 1:
            dlt = pb[m][ob] - pa[m][oa]
            mu = math.fsum(dlt) / a.n
            entry["se_paired"] = math.sqrt(math.fsum((dlt - mu) ** 2) / (a.n - 1) / a.n)
        else:
            entry["se_paired"] = None
        out["differences"][m] = entry
    if bootstrap:
        out["bootstrap"] = compare_bootstrap(a, b, opts, bootstrap, paired)
    return out


def compare_bootstrap(a: Rows, b: Rows, opts: Options, replicates: int, paired: bool) -> dict:
    """Percentile intervals of b - a: with shared weights (paired: the same row gets the same weight on both
    sides) and with independent streams (unpaired)."""
    ma = replicate_metrics(a, opts, weights_for(a, replicates, 0))
    out = {"replicates": replicates}
    variants = [("unpaired", 1)] + ([("paired", 0)] if paired else [])
    for label, stream in variants:
        mb = replicate_metrics(b, opts, weights_for(b, replicates, stream))
        out[label] = {m: interval(mb[m] - ma[m]) for m in DIFF_METRICS}
    return out


# ------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------
def parse_floats(text):
    return [float(x) for x in text.split(",") if x.strip()] if text else []


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--temperatures", default="", help="T1,T2,… (each > 0)")
    ap.add_argument("--smoothing", type=float, default=0.1)
    ap.add_argument("--smoothing-mode", choices=("uniform", "others"), default="uniform")
    ap.add_argument("--top-k", type=int, default=5)
    ap.add_argument("--ece-bins", type=int, default=15)
    ap.add_argument("--bootstrap", type=int, default=0, help="R Poisson replicates (sanity figures)")
    ap.add_argument("shards", nargs="+")
    args = ap.parse_args(argv)
    opts = Options(args.smoothing, args.smoothing_mode, args.top_k, args.ece_bins, parse_floats(args.temperatures))
    parts, shards = [], []
    for path in args.shards:
        header, rows = load_rows(path)
        parts.append(rows)
        shards.append({"shard": path, "num_classes": header["num_classes"], "meta": header["meta"],
                       **evaluate(rows, opts, args.bootstrap)})
    doc = {"options": opts.as_json(), "shards": shards}
    if len({p.K for p in parts}) == 1:
        doc["total"] = evaluate(Rows.concat(parts), opts, args.bootstrap)
    print(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
