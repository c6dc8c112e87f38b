"""correlate2d / convolve2d against scipy.signal and seed 002's printed tensors."""
import itertools

import numpy as np
import pytest
from conftest import assert_close, awkward_variants, optional

import convcpu

MODES = ["full", "same", "valid"]
BOUNDARIES = ["fill", "wrap", "symm"]
SHAPES = [((7, 9), (3, 3)), ((8, 6), (2, 4)), ((5, 5), (5, 5)), ((4, 6), (7, 3)),
          ((3, 4), (6, 8)), ((1, 1), (1, 1)), ((30, 41), (15, 15)), ((2, 9), (1, 9))]


@pytest.mark.parametrize("flip", [False, True], ids=["correlate2d", "convolve2d"])
@pytest.mark.parametrize("fillvalue", [0, 2.5])
@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shapes", SHAPES, ids=str)
def test_matches_scipy(shapes, mode, boundary, fillvalue, flip):
    signal = optional("scipy.signal")
    rng = np.random.default_rng(len(str(shapes)))
    a, k = rng.standard_normal(shapes[0]), rng.standard_normal(shapes[1])
    ours = convcpu.convolve2d if flip else convcpu.correlate2d
    theirs = signal.convolve2d if flip else signal.correlate2d
    try:
        expected = theirs(a, k, mode, boundary, fillvalue)
    except ValueError:
        with pytest.raises(ValueError, match="at least as large"):
            ours(a, k, mode, boundary, fillvalue)
        return
    for threads in (1, 2):
        got = ours(a, k, mode, boundary, fillvalue, num_threads=threads)
        assert got.shape == expected.shape and got.dtype == np.float64
        assert_close(got, expected, np.float64)


@pytest.mark.parametrize("dtype", [np.float32, np.uint8])
def test_dtypes(dtype):
    signal = optional("scipy.signal")
    rng = np.random.default_rng(0)
    image = (rng.random((37, 53)) * 200).astype(dtype)
    kernel = np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], np.float32)
    got = convcpu.correlate2d(image, kernel, "same", "symm")
    assert got.dtype == np.float32  # uint8 promotes (SciPy would wrap around in uint8)
    expected = signal.correlate2d(image.astype(np.float64), kernel.astype(np.float64), "same",
                                  "symm")
    assert_close(got, expected, np.float32)


def test_awkward_inputs_and_out():
    rng = np.random.default_rng(1)
    image, kernel = rng.standard_normal((20, 30)), rng.standard_normal((4, 5))
    expected = convcpu.convolve2d(image, kernel, "same", "wrap")
    for name, variant in itertools.chain(awkward_variants(image).items(),
                                         (("transposed", image.T.copy().T),)):
        np.testing.assert_array_equal(convcpu.convolve2d(variant, kernel, "same", "wrap"),
                                      expected, err_msg=name)
    out = np.empty_like(expected)
    assert convcpu.convolve2d(image, kernel, "same", "wrap", out=out) is out
    np.testing.assert_array_equal(out, expected)
    before = image.copy()
    convcpu.correlate2d(image, kernel)
    np.testing.assert_array_equal(image, before)


def test_large_image_threads_identical():
    rng = np.random.default_rng(2)
    image = rng.random((700, 300), dtype=np.float32)
    kernel = rng.standard_normal((5, 5)).astype(np.float32)
    results = [convcpu.correlate2d(image, kernel, "same", num_threads=t) for t in (1, 2, 3)]
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])


# Seed 002 ---------------------------------------------------------------------

EDGE_IMAGE = np.ones((6, 8), np.float32)
EDGE_IMAGE[:, 2:6] = 0
K = np.array([[1, -1]], np.float32)


def test_seed002_cross_correlation_example():
    x = np.arange(9, dtype=np.float32).reshape(3, 3)
    np.testing.assert_array_equal(convcpu.correlate2d(x, [[0, 1], [2, 3]], "valid"),
                                  [[19, 25], [37, 43]])


def test_seed002_edges():
    y = convcpu.correlate2d(EDGE_IMAGE, K, "valid")
    np.testing.assert_array_equal(y, np.tile([0, 1, 0, 0, 0, -1, 0], (6, 1)))
    np.testing.assert_array_equal(convcpu.correlate2d(EDGE_IMAGE.T, K, "valid"),
                                  np.zeros((8, 5)))
    both = convcpu.correlate2d(EDGE_IMAGE.T, K.T, "valid")
    np.testing.assert_array_equal(both, np.tile([[0], [1], [0], [0], [0], [-1], [0]], (1, 6)))
    # the same through the deep-learning op
    np.testing.assert_array_equal(convcpu.conv2d(EDGE_IMAGE[None, None], K[None, None])[0, 0], y)


def test_seed002_diagonal():
    z = np.ones((8, 8), np.float32)
    np.fill_diagonal(z, 0)
    expected = np.zeros((8, 7))
    for i in range(7):
        expected[i, i], expected[i + 1, i] = -1, 1
    np.testing.assert_array_equal(convcpu.correlate2d(z, K, "valid"), expected)
    np.testing.assert_array_equal(convcpu.correlate2d(z.T, K, "valid"), expected)
    np.testing.assert_array_equal(convcpu.correlate2d(z, K.T, "valid"), expected.T)


def test_convolution_flips_the_kernel():
    rng = np.random.default_rng(3)
    a, k = rng.standard_normal((9, 7)), rng.standard_normal((3, 2))
    for mode in MODES:
        np.testing.assert_allclose(convcpu.convolve2d(a, k, mode),
                                   convcpu.correlate2d(a, k[::-1, ::-1], "full")[
                                       _crop(mode, a.shape, k.shape)], rtol=1e-12)


def _crop(mode, a, k):
    if mode == "full":
        return (slice(None), slice(None))
    if mode == "same":  # convolve2d centres at (k - 1) // 2
        return tuple(slice((kk - 1) // 2, (kk - 1) // 2 + aa) for aa, kk in zip(a, k))
    return tuple(slice(kk - 1, aa) for aa, kk in zip(a, k))


@pytest.mark.parametrize("kwargs, error, match", [
    ({"in1": np.ones(5)}, ValueError, "2-D"),
    ({"in2": np.ones((2, 2, 2))}, ValueError, "2-D"),
    ({"in1": np.ones((0, 3))}, ValueError, "empty"),
    ({"mode": "wide"}, ValueError, "mode"),
    ({"boundary": "reflect"}, ValueError, "boundary"),
    ({"fillvalue": [1, 2]}, ValueError, "fillvalue"),
    ({"in1": np.ones((4, 2)), "mode": "valid"}, ValueError, "at least as large"),
    ({"in1": np.ones((4, 4), complex)}, TypeError, "complex"),
    ({"in2": np.array([["a"]])}, TypeError, "in2"),
    ({"out": np.ones((6, 6), np.float32)}, TypeError, "out"),
])
def test_errors(kwargs, error, match):
    args = {"in1": np.ones((4, 4)), "in2": np.ones((3, 3))}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        convcpu.correlate2d(**args)
