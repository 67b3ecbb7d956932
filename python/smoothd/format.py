"""LSHD v1 constants and the fixed header (docs/SHARD-FORMAT.md is the contract)."""
from __future__ import annotations

import struct

import numpy as np

__all__ = ["MAGIC", "VERSION", "HEADER", "U32", "HEADER_SIZE", "MAX_NUM_CLASSES", "MAX_META_LEN",
           "MAX_META_DEPTH", "LOGIT_DTYPES", "LABEL_DTYPES", "LOGIT_CODES", "LABEL_CODES"]

MAGIC = b"LSHD"
VERSION = 1
MAX_NUM_CLASSES = 16_777_216
MAX_META_LEN = 1_048_576
# smoothd's JSON parser refuses deeper nesting.
MAX_META_DEPTH = 256
# magic, version, logit dtype code, label dtype code, num_classes, meta_len, ignore_index, num_rows
HEADER = struct.Struct("<4sHBBIIqQ")
HEADER_SIZE = HEADER.size
U32 = struct.Struct("<I")
# name -> (code in the header, little-endian storage dtype); bfloat16 is stored as its uint16 bits
LOGIT_DTYPES = {"float32": (1, np.dtype("<f4")), "float16": (2, np.dtype("<f2")), "bfloat16": (3, np.dtype("<u2"))}
LABEL_DTYPES = {"int32": (1, np.dtype("<i4")), "int64": (2, np.dtype("<i8"))}
LOGIT_CODES = {code: (name, dt) for name, (code, dt) in LOGIT_DTYPES.items()}
LABEL_CODES = {code: (name, dt) for name, (code, dt) in LABEL_DTYPES.items()}
