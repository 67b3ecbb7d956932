"""smoothd's Python side: write LSHD v1 shards from an eval loop, read shards, read and merge results.

    import smoothd
    with smoothd.ShardedEval("/var/spool/smoothd", num_classes=V, model="my-lm", checkpoint="step-500",
                             split="validation", rank=rank, world_size=world_size) as shard:
        for batch in loader:
            shard.write(logits, labels)

Needs numpy and zstandard; torch is optional (tensors are accepted, never required).
"""
from . import results
from .eval import ShardedEval
from .format import LABEL_DTYPES, LOGIT_DTYPES
from .reader import Shard, ShardError, read_shard
from .writer import DEFAULT_FRAME_BYTES, DEFAULT_LEVEL, LSHDWriter, write_shard

__version__ = "0.1.0"
__all__ = ["LSHDWriter", "write_shard", "ShardedEval", "read_shard", "Shard", "ShardError", "results",
           "LOGIT_DTYPES", "LABEL_DTYPES", "DEFAULT_LEVEL", "DEFAULT_FRAME_BYTES"]
