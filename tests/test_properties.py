"""Property tests over every public op (tests/opinfo.py): random valid geometry
against the NumPy/SciPy reference and, where installed, torch or TensorFlow;
the shared awkward inputs (memory layouts, awkward geometries, NaN/Inf, uint8
and float16) give the reference's answer and are never modified."""
import numpy as np
import pytest
from conftest import awkward_variants, special_values
from hypothesis import given
from hypothesis import strategies as st
from opinfo import EDGES, OPS, assert_matches, edge, example

# The oracles compute in float32 or float64 in their own order; their answers are
# compared with a bound a few times the reference's.
ORACLE_RTOL = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-11}
DTYPES = st.sampled_from([np.float32, np.float64])
IDS = [op.name for op in OPS]


@pytest.mark.parametrize("op", OPS, ids=IDS)
@given(data=st.data(), dtype=DTYPES, threads=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_random_geometry_matches_reference_and_oracle(op, data, dtype, threads, seed):
    geometry = data.draw(op.geometry, label="geometry")
    case = op.case(geometry, np.random.default_rng(seed), dtype)
    got = case.call(num_threads=threads)
    assert got.dtype == np.dtype(dtype)
    assert_matches(got, case)
    oracle = case.oracle()
    if oracle is not None:
        assert_matches(got, case, oracle, ORACLE_RTOL[got.dtype])


def _inputs(case):
    return {key: case.get(key) for key in case.arrays if case.get(key) is not None}


@pytest.mark.parametrize("op", OPS, ids=IDS)
def test_awkward_layouts_give_the_same_bits_and_are_not_modified(op):
    for layout in ("first", "last"):
        if layout == "last" and _last_layout(op) is None:
            continue
        case = example(op.name, 3, **({} if layout == "first" else dict(layout=_last_layout(op))))
        expected = case.call()
        for key, value in _inputs(case).items():
            for kind, variant in awkward_variants(value).items():
                before = variant.copy()
                got = case.replaced(key, variant).call()
                np.testing.assert_array_equal(got, expected, err_msg=f"{key} {kind}")
                np.testing.assert_array_equal(variant, before, err_msg=f"{key} {kind} modified")


def _last_layout(op):
    """The other layout of an op that takes both; None for the fixed-layout ops."""
    if op.family in ("patches", "signal", "deform"):
        return None
    return "NLC" if "1d" in op.name else "NHWC"


@pytest.mark.parametrize("kind", EDGES)
@pytest.mark.parametrize("op", OPS, ids=IDS)
def test_awkward_geometry_matches_reference(op, kind):
    changes = edge(op.name, kind)
    if changes is None:
        pytest.skip(f"{op.name} has no {kind} case")
    for dtype in (np.float32, np.float64):
        case = example(op.name, 5, dtype, **changes)
        got = case.call(num_threads=2)
        assert got.dtype == np.dtype(dtype)
        assert_matches(got, case)


@pytest.mark.parametrize("op", OPS, ids=IDS)
def test_nan_and_inf_propagate_like_the_reference(op):
    """NaN and +-Inf in the data inputs give NaN / Inf exactly where the
    reference (IEEE arithmetic on the same sums) has them."""
    case = example(op.name, 7, np.float64)
    rng = np.random.default_rng(8)
    key = next(k for k in case.arrays if k not in case.signed)
    case = case.replaced(key, special_values(case.get(key), rng))
    got = case.call()
    assert np.isnan(got).any() or np.isinf(got).any()
    assert_matches(got, case)


@pytest.mark.parametrize("small", [np.uint8, np.float16, np.int16])
@pytest.mark.parametrize("op", OPS, ids=IDS)
def test_small_dtypes_promote_to_float32(op, small):
    """uint8 images, float16 and int16 data promote with a float32 weight to
    float32 (NumPy's rule, at least float32); every array input of one small
    dtype computes in float32 too."""
    case = example(op.name, 9, np.float32)
    rng = np.random.default_rng(10)

    def small_values(shape):
        if np.issubdtype(small, np.integer):
            return rng.integers(0, 200 if small == np.uint8 else 3000, shape).astype(small)
        return rng.standard_normal(shape).astype(small)

    first = case.arrays[0]
    promoted = case.replaced(first, small_values(np.shape(case.get(first))))
    got = promoted.call()
    assert got.dtype == np.float32
    assert_matches(got, promoted)
    every = promoted
    for key in case.arrays[1:]:
        if case.get(key) is not None and key not in case.signed:
            every = every.replaced(key, small_values(np.shape(case.get(key))))
    got = every.call()
    assert got.dtype == np.float32
    assert_matches(got, every)
