"""ShardedEval: one shard per rank per (model, checkpoint, split), named and labelled for smoothd's groups."""
from __future__ import annotations

import hashlib
import json
import os
import re

from ._convert import json_meta
from .writer import LSHDWriter

__all__ = ["ShardedEval", "shard_name"]

_RESERVED = ("model", "checkpoint", "split", "step", "shard_index", "num_shards")
# smoothd accepts final names of at most 200 bytes.
_SLUG_BYTES = 48


def _slug(value) -> str:
    text = re.sub(r"[^A-Za-z0-9._-]+", "_", str(value)).strip("._") or "_"
    return text[:_SLUG_BYTES]


def shard_name(model, checkpoint, split, rank: int, world_size: int) -> str:
    """`MODEL.CHECKPOINT.SPLIT.HASH.rank-R-of-N.lshd.zst`: readable parts, plus a hash of the exact
    (model, checkpoint, split) so that names differing only in characters a file name cannot hold never
    collide. The same run, checkpoint, split and rank always get the same name (a re-run supersedes)."""
    exact = json.dumps([model, checkpoint, split], ensure_ascii=False, separators=(",", ":"))
    digest = hashlib.sha256(exact.encode("utf-8")).hexdigest()[:12]
    width = max(5, len(str(world_size - 1)))
    return (f"{_slug(model)}.{_slug(checkpoint)}.{_slug(split)}.{digest}."
            f"rank-{rank:0{width}d}-of-{world_size:0{width}d}.lshd.zst")


class ShardedEval:
    """The shard of one rank of a distributed evaluation, written into ``directory`` (a smoothd spool).

    meta carries ``model``, ``checkpoint``, ``split``, ``step`` (when given), ``shard_index = rank`` and
    ``num_shards = world_size``, the keys smoothd groups results by and checks completeness with; ``meta``
    may add more keys. Everything else (dtypes, frames, threads, level) goes to LSHDWriter.
    """

    def __init__(self, directory, *, num_classes: int, model, checkpoint, split, rank: int = 0,
                 world_size: int = 1, step=None, logit_dtype: str = "float32", meta: dict | None = None,
                 **writer_options):
        rank, world_size = int(rank), int(world_size)
        if world_size < 1:
            raise ValueError(f"world_size must be at least 1, not {world_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), not {rank}")
        for key, value in (("model", model), ("checkpoint", checkpoint), ("split", split)):
            value = json_meta(value, (key,))
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise TypeError(f"{key} must be a string or a number, not {type(value).__name__}")
        extra = dict(meta or {})
        clash = sorted(set(extra) & set(_RESERVED))
        if clash:
            raise ValueError(f"meta keys {clash} are set by ShardedEval from its arguments")
        full = {"model": model, "checkpoint": checkpoint, "split": split}
        if step is not None:
            full["step"] = step
        full.update({"shard_index": rank, "num_shards": world_size})
        full.update(extra)
        self.directory = os.fspath(directory)
        self.name = shard_name(model, checkpoint, split, rank, world_size)
        self.path = os.path.join(self.directory, self.name)
        self.rank, self.world_size = rank, world_size
        self.writer = LSHDWriter(self.path, num_classes, logit_dtype=logit_dtype, meta=full, **writer_options)
        self.meta = json_meta(full)

    def write(self, logits, labels, **kw) -> int:
        """Append rows (see LSHDWriter.write)."""
        return self.writer.write(logits, labels, **kw)

    def close(self) -> None:
        """Finish the shard: it appears in the directory under its final name."""
        self.writer.close()

    def abort(self) -> None:
        """Drop the shard; nothing appears in the directory."""
        self.writer.abort()

    @property
    def rows_written(self) -> int:
        return self.writer.rows_written

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        return self.writer.__exit__(exc_type, exc, tb)
