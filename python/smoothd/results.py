"""Reading smoothd's results and merging their exact states, bit-identically to smoothd itself.

    from smoothd import results
    runs = [results.load(p) for p in ("node1/out", "node2/out")]   # serve output directories
    doc = results.merge(runs, smoothing=0.1)                      # {"inputs", "groups", "total"}
    print(results.dumps(doc))

``load`` reads an ``eval --json`` output, a ``*.summary.json`` or ``*.error.json`` record, a ``totals.json``,
a merge document, or a ``serve`` output directory (its current summaries and error records; ``superseded/``
is not read). ``merge`` combines the shard records' ``state`` objects exactly (integer counts and
fixed-point sums) and computes every metric with the same float operations in the same order as smoothd,
so its numbers equal, bit for bit, those of one ``smoothd eval`` over all the underlying shards.
"""
from __future__ import annotations

import json
import math
import os
import warnings

from . import _stats

__all__ = ["load", "merge", "dumps", "Results", "State", "ExactSum", "ResultsError", "ResultsWarning",
           "DEFAULT_GROUP_BY"]

DEFAULT_GROUP_BY = ("model", "checkpoint", "split")
# ExactSum: small values in units of 2^-80 in a signed 128-bit integer ("fixed"); large values and
# overflow of it in a superaccumulator of 72 base-2^32 digits, digit i weighing 2^(32 i - 1074) ("wide").
_FIXED_SHIFT = 1074 - 80
_INT128 = (-(1 << 127), (1 << 127) - 1)
_DIGITS = 72
_SMOOTHING_MODES = {"uniform": "uniform", "pytorch": "uniform", "others": "others", "fairseq": "others"}


class ResultsError(ValueError):
    """A result file or record that cannot be used; the message names the file."""

    def __init__(self, path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


class ResultsWarning(UserWarning):
    """Something worth knowing in otherwise usable results (a re-run counted once, disagreeing num_shards)."""


# ------------------------------------------------------------------------------------------------
# The exact state
# ------------------------------------------------------------------------------------------------
def _count(value, what, where, minimum=0):
    # smoothd reads integers, or floats holding an integer below 9e15.
    if isinstance(value, float) and value.is_integer() and abs(value) < 9.0e15:
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ResultsError(where, f"state: missing or bad {what}")
    return value


class ExactSum:
    """smoothd's order-independent sum: ``fixed`` (an Int128 of 2^-80 units) plus ``wide`` (an integer of
    2^-1074 units, or None). Merging copies smoothd's arithmetic, overflow spills included, so a merged
    state is encoded exactly as smoothd encodes it."""

    __slots__ = ("fixed", "wide")

    def __init__(self, fixed: int = 0, wide: int | None = None):
        self.fixed, self.wide = fixed, wide

    @classmethod
    def from_json(cls, obj, where, what):
        if not isinstance(obj, dict) or not isinstance(obj.get("fixed"), str) or not isinstance(obj.get("wide"), list):
            raise ResultsError(where, f"state: bad exact sum {what}")
        text = obj["fixed"]
        try:
            fixed = int(text, 10)
        except ValueError:
            raise ResultsError(where, f"state: bad exact sum {what}") from None
        if not _INT128[0] <= fixed <= _INT128[1] or text.strip() != text or "_" in text:
            raise ResultsError(where, f"state: bad exact sum {what}")
        wide = 0
        last = -1
        for pair in obj["wide"]:
            if (not isinstance(pair, list) or len(pair) != 2 or any(isinstance(x, bool) or not isinstance(x, int) for x in pair)
                    or not 0 <= pair[0] < _DIGITS or not -(1 << 63) <= pair[1] < (1 << 63)):
                raise ResultsError(where, f"state: bad wide-sum digit {pair!r} in {what}")
            # docs/STATE-FORMAT.md: written normalized (ascending, non-zero, below 2^32; the top digit signed).
            i, d = pair
            if i <= last or d == 0 or not (-(1 << 32) < d < (1 << 32) if i == _DIGITS - 1 else 0 <= d < (1 << 32)):
                raise ResultsError(where, f"state: wide-sum digit {pair!r} in {what} is not normalized")
            last = i
            wide += d << (32 * i)
        return cls(fixed, wide if wide else None)

    def add(self, other: "ExactSum") -> None:
        s = self.fixed + other.fixed
        if _INT128[0] <= s <= _INT128[1]:
            self.fixed = s
        else:  # smoothd spills the old fixed part into the wide sum and keeps the other's
            self.wide = (self.wide or 0) + (self.fixed << _FIXED_SHIFT)
            self.fixed = other.fixed
        if other.wide is not None:
            self.wide = (self.wide or 0) + other.wide

    @property
    def exact(self) -> int:
        """The represented value in units of 2^-1074 (fixed and wide parts together)."""
        return (self.wide or 0) + (self.fixed << _FIXED_SHIFT)

    def copy(self) -> "ExactSum":
        return ExactSum(self.fixed, self.wide)

    @property
    def value(self) -> float:
        """The sum rounded as smoothd rounds it: digits of the magnitude added to a double from the top down."""
        total = (self.wide or 0) + (self.fixed << _FIXED_SHIFT)
        magnitude = abs(total)
        result = 0.0
        for i in range(_DIGITS - 1, -1, -1):
            digit = magnitude >> (32 * i) if i == _DIGITS - 1 else (magnitude >> (32 * i)) & 0xFFFFFFFF
            if digit:
                try:
                    term = math.ldexp(float(digit), 32 * i - 1074)
                except OverflowError:
                    term = math.inf
                result += term
        return -result if total < 0 else result

    def to_json(self) -> dict:
        digits = []
        if self.wide is not None:
            for i in range(_DIGITS):
                d = self.wide >> (32 * i) if i == _DIGITS - 1 else (self.wide >> (32 * i)) & 0xFFFFFFFF
                if d:
                    digits.append([i, d])
        return {"fixed": str(self.fixed), "wide": digits}


_SUMS = ("nll_sum", "uniform_sum", "others_sum", "entropy_sum", "confidence_sum", "brier_sum")
_COUNTS = ("rows", "counted_rows", "ignored_rows", "nonfinite_rows", "correct", "top_k_hits")


class State:
    """smoothd's mergeable metric state (MetricAccumulator): integer counts, exact sums, ECE bins."""

    def __init__(self, top_k: int = 5, ece_bins: int = 15):
        self.top_k, self.ece_bins = top_k, ece_bins
        self.version = None  # state_version of the input, when it had one
        for name in _COUNTS:
            setattr(self, name, 0)
        for name in _SUMS:
            setattr(self, name, ExactSum())
        self.bin_counts = [0] * ece_bins
        self.bin_correct = [0] * ece_bins
        self.bin_confidence = [ExactSum() for _ in range(ece_bins)]
        self.temperatures = []  # state_version 2: one _stats.Sweep per temperature
        self.histogram = {}  # state_version 2: {bin: [count, correct, ExactSum]}; None when a version-1 state is merged in

    @classmethod
    def from_json(cls, obj, where) -> "State":
        """Reads a ``state`` object, checking it as smoothd does and that its counts add up."""
        if not isinstance(obj, dict):
            raise ResultsError(where, "state is not an object")
        version = obj.get("state_version")
        if version is not None and version not in (1, 2):
            raise ResultsError(where, f"unknown state_version {version!r} (this reader knows 1 and 2)")
        top_k = _count(obj.get("top_k"), "top_k", where)
        bins = _count(obj.get("ece_bins"), "ece_bins", where)
        if top_k < 1 or not 1 <= bins <= 10_000:
            raise ResultsError(where, "state: bad top_k or ece_bins")
        if "bootstrap" in obj:
            # Dropping the replicates would silently lose the intervals; smoothd merge keeps them.
            raise ResultsError(where, "state: it keeps bootstrap replicates (smoothd --bootstrap R), which this reader "
                                      "does not merge; merge such results with smoothd merge --bootstrap R")
        state = cls(top_k, bins)
        state.version = version
        for name in _COUNTS:
            setattr(state, name, _count(obj.get(name), name, where))
        for name in _SUMS:
            if name not in obj:
                raise ResultsError(where, f"state: missing {name}")
            setattr(state, name, ExactSum.from_json(obj[name], where, name))
        counts, correct, confidence = obj.get("bin_counts"), obj.get("bin_correct"), obj.get("bin_confidence")
        if not all(isinstance(a, list) and len(a) == bins for a in (counts, correct, confidence)):
            raise ResultsError(where, "state: bad ECE bins")
        state.bin_counts = [_count(v, f"ECE bin {b}", where) for b, v in enumerate(counts)]
        state.bin_correct = [_count(v, f"ECE bin {b}", where) for b, v in enumerate(correct)]
        state.bin_confidence = [ExactSum.from_json(v, where, f"bin_confidence[{b}]") for b, v in enumerate(confidence)]

        def error(text):
            raise ResultsError(where, text)

        class _Sum(ExactSum):  # errors name this record
            @classmethod
            def from_json(cls, obj, _where, what):
                return ExactSum.from_json(obj, where, what)

        if version == 2:
            state.temperatures = _stats.read_sweeps(obj, bins, _Sum, error, lambda v, what: _count(v, what, where))
            state.histogram = _stats.read_histogram(obj, _Sum, error)
        else:
            state.histogram = None
        state._check_consistent(where)
        return state

    def _check_consistent(self, where):
        problems = []
        if self.rows != self.counted_rows + self.ignored_rows + self.nonfinite_rows:
            problems.append(f"rows {self.rows} != counted {self.counted_rows} + ignored {self.ignored_rows} "
                            f"+ nonfinite {self.nonfinite_rows}")
        if not self.correct <= self.top_k_hits <= self.counted_rows:
            problems.append(f"correct {self.correct} <= top_k_hits {self.top_k_hits} <= counted_rows "
                            f"{self.counted_rows} does not hold")
        if sum(self.bin_counts) != self.counted_rows:
            problems.append(f"ECE bins hold {sum(self.bin_counts)} rows, counted_rows is {self.counted_rows}")
        if sum(self.bin_correct) != self.correct or any(c > n for c, n in zip(self.bin_correct, self.bin_counts)):
            problems.append("ECE bins' correct rows do not match correct")
        if sum(s.exact for s in self.bin_confidence) != self.confidence_sum.exact:
            problems.append("confidence_sum is not the sum of bin_confidence")
        if self.counted_rows == 0 and any(getattr(self, name).exact for name in _SUMS):
            problems.append("no row is counted but a sum is not 0")
        for t in self.temperatures:
            if sum(t.bin_counts) != self.counted_rows or sum(t.bin_correct) != self.correct:
                problems.append(f"temperature {t.temperature}: its ECE bins do not hold the counted rows")
        if self.histogram is not None and (sum(v[0] for v in self.histogram.values()) != self.counted_rows
                                           or sum(v[1] for v in self.histogram.values()) != self.correct):
            problems.append("confidence_histogram does not hold the counted rows")
        if problems:
            raise ResultsError(where, "state counts do not add up: " + "; ".join(problems))

    def copy(self) -> "State":
        new = State(self.top_k, self.ece_bins)
        new.version = self.version
        for name in _COUNTS:
            setattr(new, name, getattr(self, name))
        for name in _SUMS:
            setattr(new, name, getattr(self, name).copy())
        new.bin_counts, new.bin_correct = list(self.bin_counts), list(self.bin_correct)
        new.bin_confidence = [s.copy() for s in self.bin_confidence]
        new.temperatures = [t.copy(ExactSum) for t in self.temperatures]
        new.histogram = _stats.merge_histograms(self.histogram, {})
        return new

    def merge(self, other: "State") -> None:
        if (self.top_k, self.ece_bins) != (other.top_k, other.ece_bins):
            raise ValueError("merging states computed with different top-k or ECE bins")
        for name in _COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name in _SUMS:
            getattr(self, name).add(getattr(other, name))
        for b in range(self.ece_bins):
            self.bin_counts[b] += other.bin_counts[b]
            self.bin_correct[b] += other.bin_correct[b]
            self.bin_confidence[b].add(other.bin_confidence[b])
        if [t.temperature for t in self.temperatures] != [t.temperature for t in other.temperatures]:
            if self.temperatures:
                raise ValueError("merging states computed with different temperatures")
            self.temperatures = [t.copy(ExactSum) for t in other.temperatures]  # an empty state takes the sweep
        else:
            for mine, theirs in zip(self.temperatures, other.temperatures):
                mine.merge(theirs)
        self.histogram = _stats.merge_histograms(self.histogram, other.histogram)

    def to_json(self) -> dict:
        """The state in smoothd's layout (``state_version`` first when the inputs carried one)."""
        out = {} if self.version is None else {"state_version": self.version}
        out.update({"top_k": self.top_k, "ece_bins": self.ece_bins})
        out.update({name: getattr(self, name) for name in _COUNTS})
        out.update({name: getattr(self, name).to_json() for name in _SUMS})
        out.update({"bin_counts": list(self.bin_counts), "bin_correct": list(self.bin_correct),
                    "bin_confidence": [s.to_json() for s in self.bin_confidence]})
        if self.version == 2:
            out["temperatures"] = [t.to_json() for t in self.temperatures]
            out["confidence_histogram"] = _stats.histogram_json(self.histogram)
        return out

    def metric_fields(self, options: "_Options") -> dict:
        """Counts and metrics in report order, computed with smoothd's float operations in its order."""
        out = {"rows": self.rows, "counted_rows": self.counted_rows, "ignored_rows": self.ignored_rows,
               "nonfinite_rows": self.nonfinite_rows}
        names = ("loss", "nll", "perplexity", "accuracy", "top_k_accuracy", "mean_confidence", "entropy", "brier", "ece",
                 "mce")
        if self.counted_rows == 0:
            out.update({name: None for name in names})
            out["adaptive_ece"] = None
            out["losses_by_smoothing"] = {_smoothing_key(e): None for e in options.all_smoothing}
            out["reliability"] = self.reliability()
            out.update(self._sweep_fields(options))
            return out
        n = float(self.counted_rows)
        nll = self.nll_sum.value / n
        term = (self.uniform_sum if options.mode == "uniform" else self.others_sum).value / n

        def smoothed(e):
            return (1 - e) * nll + e * term

        try:
            perplexity = math.exp(nll)
        except OverflowError:
            perplexity = math.inf
        gap = max_gap = 0.0
        for b in range(self.ece_bins):
            if self.bin_counts[b] > 0:
                bin_gap = abs(float(self.bin_correct[b]) - self.bin_confidence[b].value)
                gap += bin_gap
                max_gap = max(max_gap, bin_gap / float(self.bin_counts[b]))
        values = {
            "loss": smoothed(options.smoothing), "nll": nll, "perplexity": perplexity,
            "accuracy": float(self.correct) / n, "top_k_accuracy": float(self.top_k_hits) / n,
            "mean_confidence": self.confidence_sum.value / n, "entropy": self.entropy_sum.value / n,
            "brier": self.brier_sum.value / n, "ece": gap / n, "mce": max_gap,
        }
        out.update({k: _finite_or_none(v) for k, v in values.items()})
        aece = _stats.adaptive_ece(self.histogram, self.ece_bins)
        out["adaptive_ece"] = None if aece is None else _finite_or_none(aece)
        out["losses_by_smoothing"] = {_smoothing_key(e): _finite_or_none(smoothed(e)) for e in options.all_smoothing}
        out["reliability"] = self.reliability()
        out.update(self._sweep_fields(options))
        return out

    def _sweep_fields(self, options) -> dict:
        """by_temperature and best_temperature, only with a sweep."""
        if not self.temperatures:
            return {}
        values = [_stats.temperature_values(t, self.counted_rows, options.smoothing, options.mode) for t in self.temperatures]
        best = _stats.best_temperature(self.temperatures, values, self.counted_rows)
        return {"by_temperature": {_smoothing_key(t.temperature): {k: None if v is None else _finite_or_none(v) for k, v in vals.items()}
                                   for t, vals in zip(self.temperatures, values)},
                "best_temperature": best}

    def reliability(self) -> list:
        """Every confidence bin, lowest first: its edges, rows, and accuracy and mean confidence (None when empty)."""
        bins = float(self.ece_bins)
        out = []
        for b in range(self.ece_bins):
            count = self.bin_counts[b]
            out.append({"lower": b / bins, "upper": (b + 1) / bins, "count": count,
                        "accuracy": float(self.bin_correct[b]) / float(count) if count else None,
                        "mean_confidence": _finite_or_none(self.bin_confidence[b].value / float(count)) if count else None})
        return out


def _finite_or_none(v: float):
    return v if math.isfinite(v) else None  # smoothd writes non-finite numbers as null


def _smoothing_key(e: float) -> str:
    return _format_double(float(e))


class _Options:
    def __init__(self, smoothing, smoothing_mode, report_smoothing, top_k, ece_bins, temperatures=()):
        mode = _SMOOTHING_MODES.get(smoothing_mode)
        if mode is None:
            raise ValueError(f"smoothing_mode must be one of {sorted(_SMOOTHING_MODES)}, not {smoothing_mode!r}")
        if isinstance(report_smoothing, (int, float)):
            report_smoothing = (report_smoothing,)
        values = [float(smoothing)]
        for e in report_smoothing:
            if float(e) not in values:
                values.append(float(e))
        for e in values:
            if not 0 <= e <= 1:
                raise ValueError(f"smoothing {e} is outside [0, 1]")
        if int(top_k) < 1:
            raise ValueError(f"top_k must be at least 1 (got {top_k})")
        if not 1 <= int(ece_bins) <= 10_000:
            raise ValueError(f"ece_bins must be in [1, 10000] (got {ece_bins})")
        self.smoothing, self.mode, self.all_smoothing = float(smoothing), mode, values
        self.top_k, self.ece_bins = int(top_k), int(ece_bins)
        self.temperatures = []
        for t in temperatures:
            if not (float(t) > 0 and math.isfinite(float(t))):
                raise ValueError(f"temperature {t} is not a finite number > 0")
            if float(t) not in self.temperatures:
                self.temperatures.append(float(t))

    def settings(self) -> dict:
        out = {"smoothing": self.smoothing, "smoothing_mode": self.mode, "top_k": self.top_k, "ece_bins": self.ece_bins}
        if self.temperatures:
            out["temperatures"] = list(self.temperatures)
        return out


# ------------------------------------------------------------------------------------------------
# Loading
# ------------------------------------------------------------------------------------------------
class Results:
    """What one file or directory holds: ``kind`` ("eval", "summary", "error", "totals", "merge",
    "directory"), the shard records ``shards`` (dicts as smoothd wrote them, ``ok`` true or false),
    and the document's own ``total`` and ``groups`` when it has them (else None)."""

    def __init__(self, path, kind, shards, total=None, groups=None, inputs=None, sources=None):
        self.path, self.kind, self.shards = os.fspath(path), kind, shards
        self.total, self.groups, self.inputs = total, groups, inputs
        # Where each record came from, for messages: its file, or the document and the record's shard.
        self.sources = sources or [self.path if kind in ("summary", "error") else f"{self.path} ({r.get('shard')})"
                                   for r in shards]

    def __repr__(self):
        ok = sum(1 for s in self.shards if s.get("ok") is True)
        return f"Results({self.path!r}, kind={self.kind!r}, shards_ok={ok}, shards_failed={len(self.shards) - ok})"

    def __iter__(self):
        return iter(self.shards)

    def __len__(self):
        return len(self.shards)


def _read_json(path):
    def no_constants(name):
        raise ValueError(f"{name} is not JSON")

    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ResultsError(path, f"cannot read: {e.strerror}") from None
    if not data.strip():
        raise ResultsError(path, "empty file (not a smoothd result)")
    try:
        return json.loads(data.decode("utf-8"), parse_constant=no_constants)
    except UnicodeDecodeError:
        raise ResultsError(path, "not UTF-8 (not a smoothd result)") from None
    except ValueError as e:
        raise ResultsError(path, f"not JSON ({e}); a truncated or foreign file") from None


def _check_record(record, path):
    if not isinstance(record, dict) or not isinstance(record.get("shard"), str) or not isinstance(record.get("ok"), bool):
        raise ResultsError(path, "a shard record needs \"shard\" (a string) and \"ok\" (true or false)")
    return record


def load(path) -> Results:
    """Reads one result file or a ``serve`` output directory; raises ResultsError naming the file."""
    path = os.fspath(path)
    if os.path.isdir(path):
        shards, sources = [], []
        total = groups = None
        for name in sorted(os.listdir(path)):
            full = os.path.join(path, name)
            if not os.path.isfile(full):
                continue  # superseded/ and anything else that is not a record
            if name.endswith(".summary.json") or name.endswith(".error.json"):
                shards.append(_check_record(_read_json(full), full))
                sources.append(full)
            elif name == "totals.json":
                doc = _read_json(full)
                if isinstance(doc, dict):
                    total, groups = doc, doc.get("groups")
        return Results(path, "directory", shards, total, groups, sources=sources)
    doc = _read_json(path)
    if not isinstance(doc, dict):
        raise ResultsError(path, "not a smoothd result (a JSON object was expected)")
    if isinstance(doc.get("inputs"), list) and isinstance(doc.get("groups"), list) and isinstance(doc.get("total"), dict):
        return Results(path, "merge", [], doc["total"], doc["groups"], doc["inputs"])
    if isinstance(doc.get("shards"), list) and isinstance(doc.get("total"), dict):
        shards = [_check_record(r, f"{path} (shards[{i}])") for i, r in enumerate(doc["shards"])]
        return Results(path, "eval", shards, doc["total"], doc.get("groups"))
    if "shard" in doc and "ok" in doc:
        record = _check_record(doc, path)
        return Results(path, "summary" if record["ok"] else "error", [record])
    if "shards_ok" in doc and "shards_failed" in doc:
        return Results(path, "totals", [], doc, doc.get("groups"))
    raise ResultsError(path, "not a smoothd result (no \"shards\", \"shard\", \"shards_ok\" or \"inputs\")")


# ------------------------------------------------------------------------------------------------
# Merging
# ------------------------------------------------------------------------------------------------
def _inputs(records):
    """[(Results, records)] from a Results, a path, a record, or an iterable of those."""
    if isinstance(records, (Results, str, os.PathLike, dict)):
        records = [records]
    out, loose = [], []
    for item in records:
        if isinstance(item, Results):
            out.append(item)
        elif isinstance(item, (str, os.PathLike)):
            out.append(load(item))
        elif isinstance(item, dict):
            loose.append(_check_record(item, item.get("shard", "<record>")))
        else:
            raise TypeError(f"cannot merge a {type(item).__name__}: pass results.load() objects, paths or records")
    if loose:
        out.append(Results("<records>", "records", loose))
    return out


def _scalar_key(value):
    """Sort key of a key value: null < false < true < numbers (by value) < strings (by code point)."""
    if value is None:
        return (0, 0)
    if isinstance(value, bool):
        return (1, value)
    if isinstance(value, (int, float)):
        return (2, value)
    if isinstance(value, str):
        return (3, value)
    return (4, json.dumps(value, sort_keys=True))  # a non-scalar in a run key (not a group key)


def _key_order(key: dict):
    return tuple(_scalar_key(v) for v in key.values())


def _as_int(v):
    """An integer, integral JSON numbers included (2.0 is 2); None for anything else (true, "2", 1.5)."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return None


def _rank_problem(meta):
    """Why shard_index/num_shards are unusable (kind bad_shard_index), or None."""
    n = _as_int(meta.get("num_shards"))
    if "num_shards" in meta and (n is None or n < 1):
        return f"meta num_shards {json.dumps(meta['num_shards'])} is not an integer >= 1"
    if "shard_index" in meta:
        i = _as_int(meta["shard_index"])
        if i is None or i < 0:
            return f"meta shard_index {json.dumps(meta['shard_index'])} is not an integer >= 0"
        if n is not None and i >= n:
            return f"meta shard_index {i} is not below num_shards {n}"
    return None


def merge(records, smoothing: float = 0.1, smoothing_mode: str = "uniform", report_smoothing=(),
          group_by=DEFAULT_GROUP_BY, top_k: int = 5, ece_bins: int = 15, temperatures=()) -> dict:
    """The ``merge --json`` document ``{"inputs": [...], "groups": [...], "total": {...}}`` of shard records.

    records: results.load() objects, paths (loaded here), shard records (dicts), or a list of them.
    Valid records must carry ``state``; states computed with another top_k, ece_bins or temperatures (the
    ``--temperatures`` list, in order) are refused.
    group_by: meta keys (default model, checkpoint, split); None, () or "none" puts every shard in one group.
    The rules are those of Fixtures/runs/README.md: a shard whose group-by value is an array or object
    counts as failed (warning ``group_key_not_scalar``); a shard's identity is (run key, ``shard_index``)
    when meta has ``shard_index``, else its file name, the run key being the group-by keys plus model,
    checkpoint and split; an identity seen twice is counted once, the newer record (later
    ``processed_at``, else later in the input), with a warning; completeness is per run.
    """
    options = _Options(smoothing, smoothing_mode, report_smoothing, top_k, ece_bins, temperatures)
    if group_by is None or group_by == "none" or group_by == ():
        keys = ()
    else:
        keys = tuple(k.strip() for k in group_by.split(",")) if isinstance(group_by, str) else tuple(group_by)
    run_keys = keys + tuple(k for k in DEFAULT_GROUP_BY if k not in keys)
    inputs = []
    chosen = {}  # identity -> (record, state, source, order, group key, run key)
    failed = 0
    order = 0
    for res in _inputs(records):
        if res.kind in ("totals", "merge"):
            raise ResultsError(res.path, f"a {res.kind} document has no shard records to merge; merge the serve "
                                         f"output directory, its summaries or the eval --json outputs instead")
        ok = bad = 0
        for i, record in enumerate(res.shards):
            where = res.sources[i]
            if record["ok"] is not True:
                bad += 1
                continue
            if "state" not in record:
                raise ResultsError(where, "the record has no exact \"state\" to merge (use serve summaries or an "
                                          "eval --json from a smoothd that writes states)")
            state = State.from_json(record["state"], where)
            if (state.top_k, state.ece_bins) != (options.top_k, options.ece_bins):
                raise ResultsError(where, f"state computed with top-k {state.top_k} and {state.ece_bins} ECE bins; "
                                          f"this merge uses top-k {options.top_k} and {options.ece_bins} bins "
                                          f"(pass top_k= and ece_bins= to match)")
            if [t.temperature for t in state.temperatures] != options.temperatures:
                raise ResultsError(where, f"state computed with temperatures {[t.temperature for t in state.temperatures]}; this "
                                          f"merge uses {options.temperatures} (pass temperatures= to match)")
            meta = record.get("meta") if isinstance(record.get("meta"), dict) else {}
            wrong = next((k for k in keys if isinstance(meta.get(k), (dict, list))), None)
            problem = None
            if wrong is not None:
                what = "an array" if isinstance(meta[wrong], list) else "an object"
                problem = f"group_key_not_scalar: meta[{wrong!r}] is {what}, not a scalar"
            else:
                rank = _rank_problem(meta)
                problem = rank and f"bad_shard_index: {rank}"
            if problem:
                warnings.warn(f"{where}: {problem}; the shard is counted as failed", ResultsWarning, stacklevel=2)
                bad += 1
                continue
            ok += 1
            key = {k: meta.get(k) for k in keys}
            run = {k: meta.get(k) for k in run_keys}
            if "shard_index" in meta:
                identity = ("index", _key_order(run), _as_int(meta["shard_index"]))
            else:
                identity = ("name", os.path.basename(record["shard"]))
            order += 1
            entry = (record, state, where, order, key, run)
            old = chosen.get(identity)
            if old is not None:
                kept, dropped = (entry, old) if _newer(record, old[0]) else (old, entry)
                warnings.warn(f"{kept[2]} supersedes {dropped[2]} (the same shard: {_identity_text(identity, run)}); "
                              f"counting only {kept[2]}", ResultsWarning, stacklevel=2)
                chosen[identity] = kept
            else:
                chosen[identity] = entry
        failed += bad
        # smoothd merge's INPUT; "errors" stays empty because a bad input raises here.
        inputs.append({"path": res.path, "kind": res.kind, "shards_ok": ok, "shards_failed": bad, "errors": []})

    groups = {}
    total = State(options.top_k, options.ece_bins)
    version = next((e[1].version for e in chosen.values() if e[1].version is not None), None)
    for record, state, where, _, key, run in sorted(chosen.values(), key=lambda e: e[3]):
        # Values equal in the key order are one group (1 and 1.0), shown as the first shard's value.
        g = groups.setdefault(_key_order(key), {"key": key, "state": State(options.top_k, options.ece_bins),
                                                "shards": 0, "runs": {}})
        g["state"].merge(state)
        total.merge(state)
        g["shards"] += 1
        r = g["runs"].setdefault(_key_order(run), {"run": run, "indexes": set(), "num_shards": []})
        meta = record.get("meta") if isinstance(record.get("meta"), dict) else {}
        if "shard_index" in meta:
            r["indexes"].add(_as_int(meta["shard_index"]))
        if "num_shards" in meta:
            r["num_shards"].append((where, _as_int(meta["num_shards"])))

    out_groups = []
    for g in sorted(groups.values(), key=lambda g: _key_order(g["key"])):
        item = {"key": g["key"], "shards": g["shards"]}
        completeness = _completeness(g)
        if completeness is not None:
            item["completeness"] = completeness
        item.update(g["state"].metric_fields(options))
        g["state"].version = version
        item["state"] = g["state"].to_json()
        out_groups.append(item)

    total.version = version
    total_doc = {"shards_ok": len(chosen), "shards_failed": failed}
    total_doc.update(options.settings())
    total_doc.update(total.metric_fields(options))
    total_doc["state"] = total.to_json()
    return {"inputs": inputs, "groups": out_groups, "total": total_doc}


def _completeness(group):
    """{"expected", "present", "missing"} over the group's runs that state num_shards, or None."""
    runs = [r for r in sorted(group["runs"].values(), key=lambda r: _key_order(r["run"])) if r["num_shards"]]
    if not runs:
        return None
    expected = present = 0
    missing = []
    for r in runs:
        stated = {n for _, n in r["num_shards"]}
        n = max(stated)
        if len(stated) > 1:
            warnings.warn(f"num_shards_disagree in run {json.dumps(r['run'])}: "
                          + ", ".join(f"{w}: {v}" for w, v in r["num_shards"]) + f"; using {n}",
                          ResultsWarning, stacklevel=3)
        have = {i for i in r["indexes"] if 0 <= i < n}
        expected += n
        present += len(have)
        gaps = sorted(set(range(n)) - have)
        missing += gaps if len(runs) == 1 else [{"run": r["run"], "shard_index": i} for i in gaps]
    return {"expected": expected, "present": present, "missing": missing}


def _newer(record, old) -> bool:
    a, b = record.get("processed_at"), old.get("processed_at")
    if isinstance(a, str) and isinstance(b, str):
        return a >= b  # fixed-width UTC timestamps sort as strings
    return True


def _identity_text(identity, run) -> str:
    if identity[0] == "name":
        return f"file name {identity[1]}"
    return f"run {json.dumps(run)}, shard_index {identity[2]}"


# ------------------------------------------------------------------------------------------------
# Writing JSON the way smoothd does
# ------------------------------------------------------------------------------------------------
def _format_double(v: float) -> str:
    """smoothd's (Swift's) shortest round-tripping form: 0.1, 2.0, 1e-05, 1e+16; non-finite -> null."""
    if not math.isfinite(v):
        return "null"
    return repr(v)


def _escape(s: str) -> str:
    out = ['"']
    for ch in s:
        c = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif c < 0x20 or c == 0x7F or c in (0x2028, 0x2029):
            out.append(f"\\u{c:04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def dumps(value, pretty: bool = True) -> str:
    """JSON text as smoothd writes it (2-space indent when pretty, shortest round-tripping doubles)."""
    parts = []

    def write(v, indent):
        if v is None:
            parts.append("null")
        elif v is True:
            parts.append("true")
        elif v is False:
            parts.append("false")
        elif isinstance(v, int):
            parts.append(str(v))
        elif isinstance(v, float):
            parts.append(_format_double(v))
        elif isinstance(v, str):
            parts.append(_escape(v))
        elif isinstance(v, (list, tuple)):
            if not v:
                parts.append("[]")
                return
            parts.append("[")
            for i, item in enumerate(v):
                if i:
                    parts.append(",")
                if pretty:
                    parts.append("\n" + "  " * (indent + 1))
                write(item, indent + 1)
            if pretty:
                parts.append("\n" + "  " * indent)
            parts.append("]")
        elif isinstance(v, dict):
            if not v:
                parts.append("{}")
                return
            parts.append("{")
            for i, (k, item) in enumerate(v.items()):
                if i:
                    parts.append(",")
                if pretty:
                    parts.append("\n" + "  " * (indent + 1))
                parts.append(_escape(str(k)))
                parts.append(": " if pretty else ":")
                write(item, indent + 1)
            if pretty:
                parts.append("\n" + "  " * indent)
            parts.append("}")
        else:
            raise TypeError(f"{type(v).__name__} is not a JSON value")

    write(value, 0)
    return "".join(parts)
