"""Shared helpers: tolerances, layout conversions and awkward arrays."""
import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from convcpu._reference import same_pads

# The property tests (test_properties.py): 100 fixed examples per op by default,
# the same on every run; `pytest --hypothesis-profile=long` draws 2,000 fresh ones.
_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large]
settings.register_profile("ci", max_examples=100, derandomize=True, deadline=None,
                          suppress_health_check=_QUIET)
settings.register_profile("long", max_examples=2000, deadline=None, suppress_health_check=_QUIET)
settings.load_profile("ci")

# Tolerance relative to the magnitude of the reference (float64) result.
TOLERANCE = {np.float32: 2e-5, np.float64: 1e-12}


def assert_close(got, expected, dtype):
    expected = np.asarray(expected, dtype=np.float64)
    scale = max(1.0, float(np.nanmax(np.abs(expected))) if expected.size else 1.0)
    np.testing.assert_allclose(got.astype(np.float64), expected, rtol=0,
                               atol=TOLERANCE[np.dtype(dtype).type] * scale * 10)


def to_channels_last(a):
    """(N, C, *spatial) -> (N, *spatial, C)."""
    return np.moveaxis(a, 1, -1)


def weight_oi_to_io_last(w):
    """(O, I, *kernel) -> (*kernel, I, O): TensorFlow's HWIO / WIO."""
    return np.moveaxis(np.moveaxis(w, 0, -1), 0, -2)


def awkward_variants(a):
    """The same values laid out awkwardly: a strided view, a view with permuted
    axes, a reversed (negative-stride) view, an unaligned view, byte-swapped,
    read-only and Fortran-ordered.  Every op must give the same bits for each."""
    a = np.asarray(a)
    strided = np.empty(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)[..., ::2]
    strided[...] = a
    axes = tuple(range(a.ndim))[::-1]
    permuted = np.ascontiguousarray(a.transpose(axes)).transpose(axes)
    reversed_ = np.ascontiguousarray(a[..., ::-1])[..., ::-1]
    raw = np.zeros(a.nbytes + 1, np.uint8)
    unaligned = raw[1:].view(a.dtype).reshape(a.shape) if a.size else a.copy()
    unaligned[...] = a
    swapped = a.astype(a.dtype.newbyteorder())
    readonly = a.copy()
    readonly.flags.writeable = False
    return {"strided": strided, "permuted": permuted, "reversed": reversed_,
            "unaligned": unaligned, "byteswapped": swapped, "readonly": readonly,
            "fortran": np.asfortranarray(a)}


def special_values(a, rng):
    """a with a few NaN, +Inf and -Inf entries (float inputs only)."""
    a = np.array(a, copy=True)
    flat = a.reshape(-1)
    if flat.size:
        picks = rng.choice(flat.size, size=min(3, flat.size), replace=False)
        flat[picks] = [np.nan, np.inf, -np.inf][:len(picks)]
    return a


def optional(module):
    """Import an oracle or skip the test cleanly."""
    return pytest.importorskip(module)


def explicit_pads(padding, size, kernel, stride, dilation):
    """Any padding form of the spec as (before, after) pairs, one per spatial axis."""
    nsp = len(size)
    if padding == "valid":
        return ((0, 0),) * nsp
    if padding in ("same", "same_lower"):
        return tuple(same_pads(size[i], kernel[i], stride[i], dilation[i], padding == "same_lower")
                     for i in range(nsp))
    if isinstance(padding, int):
        return ((padding, padding),) * nsp
    return tuple((p, p) if isinstance(p, int) else tuple(p) for p in padding)
