"""Dtype promotion, contiguity and validation of array arguments."""
import functools
import math
import os

import numpy as np

from convcpu import _geometry

_NATIVE = (np.dtype(np.float32), np.dtype(np.float64))
_F32, _F64 = _NATIVE  # NumPy's own objects: a byte-swapped dtype is another one


def as_array(value, name):
    """np.asarray(value) with a TypeError naming `name` for non-numeric data."""
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be array-like of real numbers: {exc}") from None
    kind = array.dtype.kind
    if kind == "c":
        raise TypeError(f"{name} is complex ({array.dtype}); convcpu computes real convolutions only")
    if kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {array.dtype}")
    return array


def operands(x, weight, bias):
    """x, weight and bias (or None) as arrays, and the dtype they compute in."""
    x = as_array(x, "x")
    weight = as_array(weight, "weight")
    bias = None if bias is None else as_array(bias, "bias")
    return x, weight, bias, compute_dtype(x, weight, bias)


def batched(x, nspatial, data_format, channels_last):
    """(x with a batch axis, whether it was unbatched, channels, spatial sizes)
    for an input of nspatial spatial axes; ValueError for any other rank."""
    if x.ndim not in (nspatial + 1, nspatial + 2):
        raise ValueError(f"x must have {nspatial + 2} dimensions ({data_format}) or "
                         f"{nspatial + 1} (unbatched), got shape {x.shape}")
    unbatched = x.ndim == nspatial + 1
    xb = x[None] if unbatched else x
    if channels_last:
        return xb, unbatched, xb.shape[-1], xb.shape[1:-1]
    return xb, unbatched, xb.shape[1], xb.shape[2:]


def compute_dtype(*arrays):
    """np.result_type of the real inputs, then at least float32.

    float32 and float64 are computed natively; integers, bool and float16
    promote like NumPy (uint8 with float32 -> float32, int64 -> float64).
    """
    dtypes = [a.dtype for a in arrays if a is not None]
    first = dtypes[0]
    if first is _F32 or first is _F64:  # native float32 / float64: the common case
        for d in dtypes:
            if d is not first and d != first:
                break
        else:
            return first  # without NumPy's promotion machinery
    dtype = np.promote_types(np.result_type(*dtypes), np.float32)
    if dtype not in _NATIVE:
        raise TypeError(f"convcpu computes in float32 or float64; inputs promote to {dtype}")
    return dtype


def contiguous(array, dtype):
    """A C-contiguous, aligned, native-byte-order copy in `dtype` when needed; the
    input itself otherwise (it is only ever read).  (np.ascontiguousarray keeps an
    unaligned array as it is: the kernels' float loads need alignment.)"""
    result = np.ascontiguousarray(array, dtype=dtype)
    return result if result.flags.aligned else result.copy()


def check_out(out, shape, dtype, inputs):
    """Validate a user-supplied out= array, or allocate one."""
    if out is None:
        nbytes = math.prod(map(int, shape)) * np.dtype(dtype).itemsize  # no int64 overflow
        if nbytes > _physical_memory():
            raise MemoryError(f"the result would have shape {tuple(shape)} ({nbytes / 2**30:.4g} "
                              f"GiB), more than this machine's memory "
                              f"({_physical_memory() / 2**30:.4g} GiB)")
        return np.empty(shape, dtype=dtype)
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy.ndarray, got {type(out).__name__}")
    if out.dtype != dtype:
        raise TypeError(f"out has dtype {out.dtype}, the result has dtype {dtype}")
    if out.shape != tuple(shape):
        raise ValueError(f"out has shape {out.shape}, the result has shape {tuple(shape)}")
    return check_out_memory(out, inputs)


def check_out_memory(out, inputs):
    """The checks of an out= array of the right type, dtype and shape that
    depend on its memory (layout, writeable, alignment, overlap): `out`."""
    flags = out.flags
    if not flags.c_contiguous:
        raise ValueError("out must be C-contiguous")
    if not flags.writeable:
        raise ValueError("out must be writeable")
    if not out.dtype.isnative:
        raise ValueError("out must be in native byte order")
    if not flags.aligned:
        raise ValueError("out must be aligned to its dtype (the kernels store whole floats)")
    for name, array in inputs.items():
        if array is not None and np.may_share_memory(out, array):
            raise ValueError(f"out must not overlap {name}")
    return out


def allocate_output(out, batch, channels, spatial, channels_last, unbatched, dtype, inputs):
    """The result array of a convolution-like op (checked `out=` or a new one)
    and its batched view: (N, *spatial, C) channels-last, else (N, C, *spatial);
    the result drops N when the input was unbatched."""
    shape = ((batch,) + tuple(spatial) + (channels,) if channels_last
             else (batch, channels) + tuple(spatial))
    result = check_out(out, shape[1:] if unbatched else shape, dtype, inputs)
    return result, result.reshape(shape)


def cached_output(out, result_shape, batched_shape, dtype, inputs):
    """The result array of a call whose checks ran before with the same
    shapes (a new one, or `out` checked for its memory) and its batched view."""
    result = np.empty(result_shape, dtype) if out is None else check_out_memory(out, inputs)
    return result, result.reshape(batched_shape)


def call_key(arrays, args):
    """A key for a call from the shapes and dtypes of its arrays (or None
    for an absent one) and its other arguments as they are; None (do not
    cache) unless every array is a plain ndarray and every other argument an
    int, a string, None or a tuple of ints and strings (no bool, float, NumPy
    scalar or list: values that compare equal to an int or to each other but
    take other checks), so that two calls with equal keys take every check
    and every branch of an op's argument handling alike."""
    parts = []
    for array in arrays:
        if array is None:
            parts.append(None)
        elif type(array) is np.ndarray:
            parts.append((array.shape, array.dtype))
        else:
            return None
    for value in args:
        kind = type(value)
        if not (kind is int or kind is str or value is None
                or (kind is tuple and _geometry._plain(value))):
            return None
    return tuple(parts), args


def remember(cache, key, value, limit=256):
    """cache[key] = value unless key is None; a full cache starts again empty."""
    if key is not None:
        if len(cache) >= limit:
            cache.clear()
        cache[key] = value


def check_bias(bias, channels, name="bias"):
    """A bias (or None) must have shape (channels,)."""
    if bias is not None and bias.shape != (channels,):
        raise ValueError(f"{name} must have shape ({channels},), got {bias.shape}")



@functools.cache
def _physical_memory():
    """Bytes of RAM (no limit where the platform does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return float("inf")
