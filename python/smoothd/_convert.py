"""Turning what an eval loop holds (numpy arrays, torch tensors, Python and numpy scalars) into shard bytes.

torch is never imported here: tensors are recognised by their methods, so numpy-only installs work.
"""
from __future__ import annotations

import json
import math

import numpy as np

from .format import LOGIT_DTYPES, MAX_META_DEPTH

# torch dtype name -> the logit dtype whose raw bits it holds
_TORCH_HALF = {"torch.float16": "float16", "torch.bfloat16": "bfloat16"}
_TORCH_FLOAT = {"torch.float32": "float32", "torch.float16": "float16", "torch.bfloat16": "bfloat16"}


def is_tensor(x) -> bool:
    """True for a torch.Tensor (duck-typed: torch need not be importable)."""
    return hasattr(x, "detach") and hasattr(x, "dtype") and str(getattr(x, "dtype", "")).startswith("torch.")


def labels_to_numpy(y) -> np.ndarray:
    """Labels as a numpy array (a tensor is moved to the CPU; labels are 1/K of the data)."""
    if is_tensor(y):
        return y.detach().cpu().numpy()
    return np.asarray(y)


# ------------------------------------------------------------------------------------------------
# Logits
# ------------------------------------------------------------------------------------------------
def _f64_to_f32_round_to_odd(x):
    """float64 -> float32 rounded to odd, as uint32 bits.

    Rounding to odd keeps the sticky information, so a second round-to-nearest-even to a format with
    at least two fewer bits (bfloat16 has 8 vs 24) equals one correct rounding of the float64 value.
    """
    f = x.astype(np.float32)  # round to nearest even (overflow -> inf)
    back = f.astype(np.float64)
    inexact = (back != x) & np.isfinite(x)
    bits = f.view(np.uint32).copy()
    # Sign-magnitude: subtracting one from the bits moves one step toward zero (inf -> max finite).
    bits[inexact & (np.abs(back) > np.abs(x))] -= np.uint32(1)
    bits[inexact] |= np.uint32(1)
    return bits


def float_to_bfloat16_bits(x: np.ndarray) -> np.ndarray:
    """Round float16/32/64 values to nearest-even bfloat16 bits (uint16); NaN stays NaN (quiet), overflow -> inf."""
    if x.dtype == np.float64:
        bits = _f64_to_f32_round_to_odd(x)
    else:
        bits = x.astype(np.float32).view(np.uint32)
    # Add 0x7FFF plus the lowest kept bit, then drop 16 bits: ties go to the even neighbour.
    # Only NaN bit patterns can wrap around, and they are replaced below.
    rounded = (bits + (np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1)))) >> np.uint32(16)
    nan = (bits & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)
    quiet_nan = (bits >> np.uint32(16)) | np.uint32(0x0040)
    return np.where(nan, quiet_nan, rounded).astype("<u2")


def check_logit_dtype(x, logit_dtype: str, raw: bool) -> None:
    """Raises TypeError for logits the writer cannot store, before anything is written."""
    store = LOGIT_DTYPES[logit_dtype][1]
    if is_tensor(x):
        kind = "f" if x.dtype.is_floating_point else "c" if x.dtype.is_complex else "i"
        size = x.element_size()
    else:
        dtype = np.asarray(x).dtype  # x is an array already: no copy
        kind, size = ("f" if getattr(dtype, "name", "") == "bfloat16" else dtype.kind), dtype.itemsize
    if raw:
        if size != store.itemsize or kind not in "uif":
            raise TypeError(f"raw {logit_dtype} logits must be {store.itemsize}-byte integers holding the bits, "
                            f"got {getattr(x, 'dtype', None)}")
    elif kind not in "biuf":
        raise TypeError(f"logits must be floating point (or integers), got {getattr(x, 'dtype', None)}")


def _contiguous(x: np.ndarray, copy: bool) -> np.ndarray:
    return np.array(x, order="C") if copy else np.ascontiguousarray(x)


def encode_numpy(x: np.ndarray, logit_dtype: str, *, raw: bool = False, copy: bool = True) -> np.ndarray:
    """numpy logits -> a C-contiguous array in the stored representation.

    copy=False allows the result to share memory with x (the writer copies it into its frame anyway).
    raw=True: x holds the stored bit patterns already (uint16/int16 for float16 and bfloat16).
    """
    store = LOGIT_DTYPES[logit_dtype][1]
    if raw:
        if x.dtype.itemsize != store.itemsize or x.dtype.kind not in "uif":
            raise TypeError(f"raw {logit_dtype} logits must be {store.itemsize}-byte integers holding the bits, "
                            f"got {x.dtype}")
        return _contiguous(x, copy).view(store)
    if getattr(x.dtype, "name", "") == "bfloat16" and x.dtype.itemsize == 2:  # ml_dtypes' bfloat16
        if logit_dtype == "bfloat16":
            return _contiguous(x, copy).view(store)
        x = x.astype(np.float32)  # exact
        copy = False
    elif x.dtype not in (np.float16, np.float32, np.float64):
        if x.dtype.kind not in "biuf":
            raise TypeError(f"logits must be floating point (or integers), got {x.dtype}")
        x = x.astype(np.float32)
        copy = False
    with np.errstate(over="ignore", invalid="ignore"):  # overflow to inf is the IEEE result we want
        if logit_dtype == "bfloat16":
            return float_to_bfloat16_bits(x)
        if x.dtype == store:
            return _contiguous(x, copy)
        # numpy's float64 -> float16 cast rounds once to nearest even, as IEEE requires.
        return np.ascontiguousarray(x.astype(store))


def encode_tensor(t, logit_dtype: str, *, raw: bool = False, copy: bool = True) -> np.ndarray:
    """A torch tensor slice -> stored representation, converting on the tensor's device.

    float16/bfloat16 tensors stored as their own dtype are reinterpreted (t.view(torch.int16)), never
    rounded through float32; CUDA tensors are copied to the CPU slice by slice.
    """
    import torch  # only reached with a tensor, so torch is importable

    t = t.detach()
    name = str(t.dtype)
    fresh = False  # True once t is a private copy (so the caller may reuse its tensor)
    if not raw:
        if name == "torch.float64" or name not in _TORCH_FLOAT:
            # float64 needs one correct rounding (torch rounds float64 through float32); integers are values.
            x = t.cpu().numpy()
            return encode_numpy(x, logit_dtype, copy=copy and t.device.type == "cpu")
        if _TORCH_FLOAT[name] != logit_dtype:
            # float32 -> float16/bfloat16 and half -> float32 are single roundings (or exact) in torch.
            t = t.to({"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[logit_dtype])
            fresh = True
            name = str(t.dtype)
        if name in _TORCH_HALF:
            t = t.view(torch.int16)  # raw bits: numpy has no bfloat16
    if not t.is_contiguous():
        t = t.contiguous()
        fresh = True
    if t.device.type != "cpu":
        t = t.cpu()
        fresh = True
    return encode_numpy(t.numpy(), logit_dtype, raw=True, copy=copy and not fresh)


# ------------------------------------------------------------------------------------------------
# Metadata
# ------------------------------------------------------------------------------------------------
def _where(path) -> str:
    return "meta" + "".join(f"[{p!r}]" for p in path)


def json_meta(value, path=(), depth=0):
    """A copy of meta in plain JSON types; numpy/torch scalars and 0-d tensors become numbers.

    Raises ValueError/TypeError naming the key for NaN, ±Inf and values JSON cannot hold.
    """
    if depth > MAX_META_DEPTH:
        raise ValueError(f"{_where(path)}: nested deeper than {MAX_META_DEPTH} levels (smoothd's limit)")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{_where(path)}: {float(value)!r} is not valid JSON (use null or a finite number)")
        return float(value)
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{_where(path + (k,))}: keys must be strings, not {type(k).__name__}")
            out[k] = json_meta(v, path + (k,), depth + 1)
        return out
    if isinstance(value, (list, tuple)):
        return [json_meta(v, path + (i,), depth + 1) for i, v in enumerate(value)]
    if isinstance(value, np.generic) or isinstance(value, np.ndarray) or is_tensor(value):
        shape = tuple(value.shape) if hasattr(value, "shape") else ()
        if shape != ():
            raise TypeError(f"{_where(path)}: an array of shape {list(shape)} is not a scalar "
                            f"(pass .tolist() for a list)")
        item = value.detach().cpu().item() if is_tensor(value) else value.item()
        if not isinstance(item, (bool, int, float, str)):
            raise TypeError(f"{_where(path)}: {type(value).__name__} of {type(item).__name__} is not a JSON value")
        return json_meta(item, path, depth)
    raise TypeError(f"{_where(path)}: {type(value).__name__} is not a JSON value")


def meta_bytes(meta) -> bytes:
    """The UTF-8 JSON of meta (a dict or None)."""
    if meta is None:
        return b""
    if not isinstance(meta, dict):
        raise TypeError("meta must be a dict (a JSON object) or None")
    clean = json_meta(meta)
    return json.dumps(clean, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
