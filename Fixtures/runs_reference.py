"""Independent NumPy reference for runs (issue 10): group keys, group order, identity, supersession,
completeness and per-group metrics, written from the issue and Fixtures/runs/README.md alone.

It builds on reference.py (reader and float64 metrics) and knows nothing of the Swift code:

    shards = [load(path, name) for path, name in files_in_argument_order]
    result = evaluate_runs(shards, group_by=("model", "checkpoint", "split"))

The rules (Fixtures/runs/README.md states them for the Swift side):
  * group key: {KEY: meta[KEY] or null when absent} for the --group-by keys, in --group-by order; a shard
    without meta has every key null. A group-by key whose value is an array or object is an error for
    that shard (kind group_key_not_scalar, offset 32); it is in no group and not in the total.
  * shard_index / num_shards that are not integers >= 0 / >= 1, or shard_index >= num_shards: an error for
    that shard (kind bad_shard_index, offset 32) under every --group-by.
  * order of groups: by key, the keys' values compared left to right; per value null < false < true <
    numbers (by value) < strings (by Unicode code points, i.e. by UTF-8 bytes, no locale, no natural sort);
    values equal in this order are one value (1 and 1.0).
  * run key: the same, over the --group-by keys plus model, checkpoint and split (so a coarser --group-by
    never makes shards of different checkpoints collide). Identity: (run key, shard_index) when meta has
    shard_index, else ("name", file name without directory). A later shard (argument order for eval,
    arrival order for serve) with a recorded identity supersedes it: only the newest is counted.
  * completeness, per run of live shards that state num_shards: N = the largest num_shards stated (a
    warning names the shards when they disagree), present = distinct live shard_index values in [0, N),
    missing = the others. A group reports the sums over its runs; missing lists indexes when the group
    holds one run, {"run": RUN KEY, "shard_index": i} objects when it holds several.
"""
from __future__ import annotations

import json
import os

import reference

DEFAULT_GROUP_BY = ("model", "checkpoint", "split")
RUN_KEYS = ("model", "checkpoint", "split")
INDEX_KEY, COUNT_KEY = "shard_index", "num_shards"
META_OFFSET = 32  # payload offset of meta: where a group-key error is reported
OPTIONS = dict(top_ks=(5,), ece_bins=(15,), epsilons=(0.0, 0.1))


def value_token(v):
    """Sort token of one scalar JSON value: null < false < true < numbers < strings."""
    if v is None:
        return (0,)
    if isinstance(v, bool):
        return (1, v)
    if isinstance(v, (int, float)):
        return (2, v)  # Python compares int and float exactly, by value
    if isinstance(v, str):
        return (3, v)  # Python compares str by code point
    raise TypeError(f"not a scalar JSON value: {v!r}")


def key_token(key: dict, keys):
    return tuple(value_token(key[k]) for k in keys)


def same_token(v):
    """Equality token: scalars by value_token (1 and 1.0 are one value, true and 1 are not); arrays and
    objects (possible in a run key outside the --group-by) by their canonical JSON."""
    return ("json", canonical(v)) if isinstance(v, (list, dict)) else value_token(v)


def canonical(v) -> str:
    return json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class GroupKeyError(Exception):
    def __init__(self, key, value):
        kind = "array" if isinstance(value, list) else "object"
        super().__init__(f"meta key {key!r} is a JSON {kind} ({canonical(value)}); a group-by key must be "
                         f"a string, number, boolean or null")
        self.key, self.value = key, value


def group_key(meta, keys) -> dict:
    """{KEY: value or None} in keys order; raises GroupKeyError for an array or object value."""
    meta = meta or {}
    out = {}
    for k in keys:
        v = meta.get(k)
        if isinstance(v, (list, dict)):
            raise GroupKeyError(k, v)
        out[k] = v
    return out


def run_keys(group_by) -> tuple:
    return tuple(group_by) + tuple(k for k in RUN_KEYS if k not in group_by)


def rank_problem(meta):
    """(key, reason) when meta's shard_index / num_shards are unusable, else None. Integral JSON numbers
    only (2.0 is 2; true, "2", 1.5 are not)."""
    meta = meta or {}

    def integral(v):
        return not isinstance(v, bool) and isinstance(v, (int, float)) and float(v).is_integer()

    if COUNT_KEY in meta and not (integral(meta[COUNT_KEY]) and meta[COUNT_KEY] >= 1):
        return COUNT_KEY, f"meta {COUNT_KEY} is {canonical(meta[COUNT_KEY])}; it must be an integer >= 1"
    if INDEX_KEY in meta:
        if not (integral(meta[INDEX_KEY]) and meta[INDEX_KEY] >= 0):
            return INDEX_KEY, f"meta {INDEX_KEY} is {canonical(meta[INDEX_KEY])}; it must be an integer >= 0"
        if COUNT_KEY in meta and meta[INDEX_KEY] >= meta[COUNT_KEY]:
            return INDEX_KEY, f"meta {INDEX_KEY} {meta[INDEX_KEY]} is not below {COUNT_KEY} {meta[COUNT_KEY]}"
    return None


def identity(shard, group_by):
    """(comparable identity, its JSON form for reports)."""
    meta = shard["meta"] or {}
    if INDEX_KEY in meta:
        run = {k: meta.get(k) for k in run_keys(group_by)}
        return ("index", tuple(same_token(v) for v in run.values()), meta[INDEX_KEY]), {"run": run, INDEX_KEY: meta[INDEX_KEY]}
    name = os.path.basename(shard["name"])
    return ("name", name), {"name": name}


def load(path, name):
    """One shard: header facts, its Accumulator (reference.OPTIONS metrics) and its own result."""
    header, acc = reference.accumulate_shard(path, **OPTIONS)
    return {"name": name, "path": path, "meta": header["meta"], "header": header, "acc": acc}


def merged(shards):
    acc = reference.Accumulator(2, -100, **OPTIONS)  # K and ignore_index unused: merging only
    for s in shards:
        acc.merge(s["acc"])
    return acc.result()


def completeness(live, group_by):
    """Completeness of one group's live shards, or None when none states num_shards; and warnings."""
    runs = {}
    for s in live:
        meta = s["meta"] or {}
        if INDEX_KEY in meta or COUNT_KEY in meta:
            run = {k: meta.get(k) for k in run_keys(group_by)}
            runs.setdefault(tuple(same_token(v) for v in run.values()), (run, []))[1].append(s)
    warnings, parts = [], []
    for run, members in runs.values():
        stated = [(s["name"], s["meta"][COUNT_KEY]) for s in members if COUNT_KEY in s["meta"]]
        if not stated:
            continue
        n = max(v for _, v in stated)
        if len({v for _, v in stated}) > 1:
            warnings.append({"kind": "num_shards_disagree", "run": run,
                             "shards": [{"file": f, "num_shards": v} for f, v in stated], "num_shards_used": n})
        have = {s["meta"][INDEX_KEY] for s in members if INDEX_KEY in s["meta"]}
        present = sorted(i for i in have if 0 <= i < n)
        parts.append((run, n, present, [i for i in range(n) if i not in have]))
    if not parts:
        return None, warnings
    parts.sort(key=lambda p: key_token(p[0], run_keys(group_by)))
    if len(parts) == 1:
        missing = parts[0][3]
    else:
        missing = [{"run": run, "shard_index": i} for run, _, _, miss in parts for i in miss]
    out = {"expected": sum(p[1] for p in parts), "present": sum(len(p[2]) for p in parts), "missing": missing}
    return out, warnings


def evaluate_runs(shards, group_by=DEFAULT_GROUP_BY):
    """Groups, total, supersession, warnings and errors for shards given in argument (arrival) order."""
    group_by = tuple(group_by)
    errors, keyed = [], []
    for s in shards:
        try:
            key = group_key(s["meta"], group_by)
        except GroupKeyError as e:
            errors.append({"file": s["name"], "kind": "group_key_not_scalar", "offset": META_OFFSET,
                           "key": e.key, "reason": str(e)})
            continue
        problem = rank_problem(s["meta"])
        if problem:
            errors.append({"file": s["name"], "kind": "bad_shard_index", "offset": META_OFFSET,
                           "key": problem[0], "reason": problem[1]})
            continue
        keyed.append((s, key))
    # Supersession: the newest shard of each identity is live.
    newest, superseded = {}, []
    for s, key in keyed:
        ident, shown = identity(s, group_by)
        if ident in newest:
            superseded.append({"superseded": newest[ident][0]["name"], "by": s["name"], "identity": shown})
        newest[ident] = (s, key)
    live_names = {s["name"] for s, _ in newest.values()}
    live = [(s, key) for s, key in keyed if s["name"] in live_names]

    groups, warnings = {}, []
    for s, key in live:
        groups.setdefault(key_token(key, group_by), (key, []))[1].append(s)
    out_groups = []
    for key, members in sorted(groups.values(), key=lambda g: key_token(g[0], group_by)):
        entry = {"key": key, "shards": len(members), "files": [s["name"] for s in members]}
        comp, warn = completeness(members, group_by)
        for w in warn:
            w["group"] = key
        warnings += warn
        if comp is not None:
            entry["completeness"] = comp
        entry.update(merged(members))
        out_groups.append(entry)
    for s, _ in live:
        n = s["acc"].nonfinite
        if n:
            warnings.append({"kind": "nonfinite_rows", "file": s["name"], "nonfinite_rows": n,
                             "rows": s["acc"].rows, "fraction": n / s["acc"].rows})
    total = {"shards_ok": len(live), "shards_failed": len(errors)}
    total.update(merged([s for s, _ in live]))
    return {"group_by": list(group_by), "groups": out_groups, "total": total, "superseded": superseded,
            "warnings": warnings, "errors": errors}
