"""Issue 14 in the Python reader: state_version 2's temperature sweep and confidence histogram (docs/STATE-FORMAT.md),
merged exactly, and the report members computed from them with smoothd's float operations in its order
(adaptive_ece, by_temperature, best_temperature), so merges stay bit-identical to smoothd's."""
from __future__ import annotations

HISTOGRAM_RESOLUTION = {"linear_bins": 256, "octave_bins": 16, "octaves": 56}
BIN_COUNT = 256 + 16 * 56 + 1
T_SUMS = ("nll_sum", "uniform_sum", "others_sum", "confidence_sum", "entropy_sum", "brier_sum", "slope_sum", "curvature_sum")


class Sweep:
    """One temperature's exact sums and equal-width bins."""

    def __init__(self, temperature: float, ece_bins: int, exact_sum):
        self.temperature = temperature
        self.sums = {name: exact_sum() for name in T_SUMS}
        self.bin_counts = [0] * ece_bins
        self.bin_correct = [0] * ece_bins
        self.bin_confidence = [exact_sum() for _ in range(ece_bins)]

    def copy(self, exact_sum):
        new = Sweep(self.temperature, len(self.bin_counts), exact_sum)
        new.sums = {k: v.copy() for k, v in self.sums.items()}
        new.bin_counts, new.bin_correct = list(self.bin_counts), list(self.bin_correct)
        new.bin_confidence = [s.copy() for s in self.bin_confidence]
        return new

    def merge(self, other: "Sweep") -> None:
        for name in T_SUMS:
            self.sums[name].add(other.sums[name])
        for b in range(len(self.bin_counts)):
            self.bin_counts[b] += other.bin_counts[b]
            self.bin_correct[b] += other.bin_correct[b]
            self.bin_confidence[b].add(other.bin_confidence[b])

    def to_json(self) -> dict:
        out = {"temperature": self.temperature}
        out.update({name: self.sums[name].to_json() for name in T_SUMS})
        out.update({"bin_counts": list(self.bin_counts), "bin_correct": list(self.bin_correct),
                    "bin_confidence": [s.to_json() for s in self.bin_confidence]})
        return out


def read_sweeps(obj, ece_bins, exact_sum_type, error, count):
    """The `temperatures` member: a list of Sweep (error(text) raises)."""
    items = obj.get("temperatures")
    if not isinstance(items, list):
        error("state: temperatures is missing or not an array")
    sweeps = []
    for i, item in enumerate(items):
        t = item.get("temperature") if isinstance(item, dict) else None
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not t > 0 or t in [s.temperature for s in sweeps]:
            error(f"state: temperatures[{i}].temperature is not a new number > 0")
        sweep = Sweep(float(t), ece_bins, exact_sum_type)
        for name in T_SUMS:
            sweep.sums[name] = exact_sum_type.from_json(item.get(name), None, f"temperatures[{i}].{name}")
        lists = [item.get(k) for k in ("bin_counts", "bin_correct", "bin_confidence")]
        if not all(isinstance(v, list) and len(v) == ece_bins for v in lists):
            error(f"state: temperatures[{i}] has bad ECE bins")
        sweep.bin_counts = [count(v, f"temperatures[{i}] bin {b}") for b, v in enumerate(lists[0])]
        sweep.bin_correct = [count(v, f"temperatures[{i}] bin {b}") for b, v in enumerate(lists[1])]
        sweep.bin_confidence = [exact_sum_type.from_json(v, None, f"temperatures[{i}].bin_confidence[{b}]") for b, v in enumerate(lists[2])]
        sweeps.append(sweep)
    return sweeps


def read_histogram(obj, exact_sum_type, error):
    """The `confidence_histogram` member: {index: [count, correct, ExactSum]}, or None for null."""
    if "confidence_histogram" not in obj:
        error("state: confidence_histogram is missing")
    h = obj["confidence_histogram"]
    if h is None:
        return None
    if not isinstance(h, dict) or any(h.get(k) != v for k, v in HISTOGRAM_RESOLUTION.items()):
        error("state: confidence_histogram has another resolution than linear_bins 256, octave_bins 16, octaves 56")
    out = {}
    last = -1
    for item in h.get("bins", None) or []:
        if not (isinstance(item, list) and len(item) == 4 and all(isinstance(x, int) and not isinstance(x, bool) for x in item[:3])):
            error(f"state: confidence_histogram bin {item!r} is not [index, count, correct, sum]")
        index, n, correct, total = item
        if not last < index < BIN_COUNT or n <= 0 or not 0 <= correct <= n:
            error(f"state: confidence_histogram bin {item[:3]!r} is out of order or its counts are wrong")
        if isinstance(total, str):
            total = {"fixed": total, "wide": []}
        out[index] = [n, correct, exact_sum_type.from_json(total, None, f"confidence_histogram bin {index}")]
        last = index
    return out


def merge_histograms(a, b):
    if a is None or b is None:
        return None
    out = {i: [v[0], v[1], v[2].copy()] for i, v in a.items()}
    for i, (n, correct, total) in b.items():
        if i in out:
            out[i][0] += n
            out[i][1] += correct
            out[i][2].add(total)
        else:
            out[i] = [n, correct, total.copy()]
    return out


def histogram_json(h):
    if h is None:
        return None
    bins = []
    for i in sorted(h):
        n, correct, total = h[i]
        encoded = total.to_json()
        bins.append([i, n, correct, encoded["fixed"] if not encoded["wide"] else encoded])
    return dict(HISTOGRAM_RESOLUTION, bins=bins)


def adaptive_ece(h, groups: int):
    """smoothd's ConfidenceHistogram.adaptiveECE: equal-mass groups cut through the bins in order."""
    if h is None:
        return None
    bins = [h[i] for i in sorted(h)]
    n = sum(b[0] for b in bins)
    if n == 0:
        return None
    base, larger = divmod(n, groups)
    state = {"group": 0, "need": base + (1 if larger > 0 else 0), "gap": 0.0, "correct": 0.0, "conf": 0.0}

    def close():
        state["gap"] += abs(state["correct"] - state["conf"])
        state["correct"] = 0.0
        state["conf"] = 0.0
        state["group"] += 1
        state["need"] = base + (1 if state["group"] < larger else 0)

    while state["need"] == 0 and state["group"] < groups:
        close()
    for count, correct, total in bins:
        left = count
        m, bin_correct, bin_conf = float(count), float(correct), total.value
        while left > 0:
            take = min(left, state["need"])
            if take == count:
                state["correct"] += bin_correct
                state["conf"] += bin_conf
            else:
                fraction = float(take) / m
                state["correct"] += bin_correct * fraction
                state["conf"] += bin_conf * fraction
            left -= take
            state["need"] -= take
            if state["need"] == 0:
                close()
                while state["need"] == 0 and state["group"] < groups:
                    close()
    return state["gap"] / float(n)


def _calibration(counts, correct, confidence, rows):
    gap = max_gap = 0.0
    for b in range(len(counts)):
        if counts[b] > 0:
            bin_gap = abs(float(correct[b]) - confidence[b].value)
            gap += bin_gap
            max_gap = max(max_gap, bin_gap / float(counts[b]))
    return gap / rows, max_gap


def temperature_values(sweep: Sweep, counted_rows: int, smoothing: float, mode: str) -> dict:
    names = ("nll", "loss", "mean_confidence", "ece", "mce", "brier", "entropy")
    if counted_rows == 0:
        return {k: None for k in names}
    rows = float(counted_rows)
    nll = sweep.sums["nll_sum"].value / rows
    term = sweep.sums["uniform_sum" if mode == "uniform" else "others_sum"].value / rows
    ece, mce = _calibration(sweep.bin_counts, sweep.bin_correct, sweep.bin_confidence, rows)
    return {"nll": nll, "loss": (1 - smoothing) * nll + smoothing * term,
            "mean_confidence": sweep.sums["confidence_sum"].value / rows, "ece": ece, "mce": mce,
            "brier": sweep.sums["brier_sum"].value / rows, "entropy": sweep.sums["entropy_sum"].value / rows}


def _hermite_minimum(h, f0, g0, c0, f1, g1, c1):
    df, hg0, hg1, hc0, hc1 = f1 - f0, h * g0, h * g1, h * h * c0, h * h * c1
    a = [f0, hg0, hc0 / 2,
         10 * df - 6 * hg0 - 4 * hg1 - 1.5 * hc0 + 0.5 * hc1,
         -15 * df + 8 * hg0 + 7 * hg1 + 1.5 * hc0 - hc1,
         6 * df - 3 * hg0 - 3 * hg1 - 0.5 * hc0 + 0.5 * hc1]

    def p(t):
        r = 0.0
        for c in reversed(a):
            r = r * t + c
        return r

    def dp(t):
        return ((((5 * a[5] * t + 4 * a[4]) * t + 3 * a[3]) * t + 2 * a[2]) * t + a[1])

    lo, hi = 0.0, 1.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if mid == lo or mid == hi:
            break
        if dp(mid) < 0:
            lo = mid
        else:
            hi = mid
    t = (lo + hi) / 2
    return t, p(t)


def best_temperature(sweeps, values, counted_rows):
    """smoothd's BestTemperature (README, "Temperature sweep")."""
    if not sweeps or counted_rows == 0:
        return None
    n = float(counted_rows)
    points = sorted(((1 / s.temperature, v["nll"], s.sums["slope_sum"].value / n, s.sums["curvature_sum"].value / n, v["ece"])
                     for s, v in zip(sweeps, values)), key=lambda p: p[0])
    best = min(range(len(points)), key=lambda i: points[i][1])
    beta, f, g, h, ece = points[best]
    neighbour = best + 1 if g < 0 else best - 1
    inside = 0 <= neighbour < len(points)
    if g == 0:
        return {"temperature": 1 / beta, "nll": f, "ece": ece, "within_grid": True}
    if inside and (points[neighbour][2] > 0) == (g < 0):
        a, b = (points[best], points[neighbour]) if g < 0 else (points[neighbour], points[best])
        t, nll = _hermite_minimum(b[0] - a[0], a[1], a[2], a[3], b[1], b[2], b[3])
        return {"temperature": 1 / (a[0] + t * (b[0] - a[0])), "nll": nll, "ece": a[4] + t * (b[4] - a[4]), "within_grid": True}
    if h > 0 and beta - g / h > 0:
        return {"temperature": 1 / (beta - g / h), "nll": f - g * g / (2 * h), "ece": ece, "within_grid": inside}
    return {"temperature": 1 / beta, "nll": f, "ece": ece, "within_grid": False}
