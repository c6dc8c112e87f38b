"""local_conv1d / local_conv2d against the NumPy reference and tf_keras
LocallyConnected1D/2D (implementation=1)."""
import numpy as np
import pytest
from conftest import assert_close

import convcpu
from convcpu._reference import local_conv_reference, same_pads

CASES_2D = [  # (N, H, W, C, F, kernel, stride, padding)
    (2, 6, 7, 3, 4, (3, 3), (1, 1), "valid"),
    (3, 9, 8, 2, 5, (2, 3), (2, 1), "valid"),
    (1, 5, 5, 4, 2, (1, 1), (1, 1), "valid"),
    (2, 7, 6, 3, 3, (3, 2), (2, 2), "same"),
    (1, 4, 5, 2, 3, (3, 3), (1, 2), ((1, 0), (2, 1))),
    (5, 3, 3, 1, 6, (3, 3), (1, 1), "valid"),
]


def _pads(padding, spatial, kernel, stride):
    if padding == "valid":
        return 0
    if padding == "same":
        return tuple(same_pads(spatial[i], kernel[i], stride[i], 1) for i in range(len(spatial)))
    return padding


def _nchw_weight(w, kernel, channels):
    """(positions, R*S*C, F) in (r, s, c) order -> (c, r, s) order."""
    positions, _, filters = w.shape
    return (w.reshape((positions,) + tuple(kernel) + (channels, filters))
            .transpose(0, 3, 1, 2, 4).reshape(positions, -1, filters))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES_2D, ids=str)
def test_local_conv2d_matches_reference(case, dtype):
    n, h, w_, c, f, kernel, stride, padding = case
    rng = np.random.default_rng(sum(case[:5]))
    x = rng.standard_normal((n, h, w_, c)).astype(dtype)
    pads = _pads(padding, (h, w_), kernel, stride)
    ho, wo = (convcpu.conv2d(x[:1], np.zeros(kernel + (c, 1), dtype), stride=stride,
                             padding=padding, data_format="NHWC").shape[1:3])
    weight = rng.standard_normal((ho * wo, kernel[0] * kernel[1] * c, f)).astype(dtype)
    bias = rng.standard_normal((ho, wo, f)).astype(dtype)
    expected = local_conv_reference(x, weight, bias, kernel, stride, pads)
    got = convcpu.local_conv2d(x, weight, bias, kernel, stride, padding)
    assert got.dtype == dtype and got.shape == (n, ho, wo, f)
    assert_close(got, expected, dtype)
    got = convcpu.local_conv2d(np.moveaxis(x, -1, 1), _nchw_weight(weight, kernel, c),
                               np.moveaxis(bias, -1, 0), kernel, stride, padding,
                               data_format="NCHW")
    assert_close(np.moveaxis(got, 1, -1), expected, dtype)
    per_filter = convcpu.local_conv2d(x, weight, bias[0, 0], kernel, stride, padding)
    assert_close(per_filter, local_conv_reference(x, weight, bias[0, 0], kernel, stride, pads),
                 dtype)


@pytest.mark.parametrize("channels_last", [True, False])
def test_local_conv1d_matches_reference(channels_last):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 11, 4))
    weight = rng.standard_normal((5, 3 * 4, 2))  # kernel 3, stride 2 -> 5 positions
    bias = rng.standard_normal((5, 2))
    expected = local_conv_reference(x, weight, bias, (3,), (2,), 0)
    if channels_last:
        got = convcpu.local_conv1d(x, weight, bias, 3, 2)
    else:
        w_cf = weight.reshape(5, 3, 4, 2).transpose(0, 2, 1, 3).reshape(5, 12, 2)
        got = np.moveaxis(convcpu.local_conv1d(np.moveaxis(x, -1, 1), w_cf, bias.T, 3, 2,
                                               data_format="NCL"), 1, -1)
    assert_close(got, expected, np.float64)


def test_unbatched_out_and_thread_counts():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((9, 10, 3)).astype(np.float32)
    weight = rng.standard_normal((7 * 8, 27, 4)).astype(np.float32)
    out = np.empty((7, 8, 4), np.float32)
    assert convcpu.local_conv2d(x, weight, None, 3, out=out) is out
    batched = [convcpu.local_conv2d(x[None], weight, None, 3, num_threads=t) for t in (1, 2, 3)]
    np.testing.assert_array_equal(out, batched[0][0])
    for other in batched[1:]:
        np.testing.assert_array_equal(batched[0], other)


def test_large_batch_is_split_into_sample_blocks():
    """More samples than one patch tile holds: several sample blocks per position."""
    rng = np.random.default_rng(9)
    x = rng.standard_normal((300, 5, 5, 64)).astype(np.float32)
    weight = rng.standard_normal((9, 9 * 64, 3)).astype(np.float32)
    from convcpu import _core
    saved = _core.TILE_BYTES
    _core.TILE_BYTES = 64 * 1024  # 28 samples a block
    try:
        got = convcpu.local_conv2d(x, weight, None, 3, num_threads=2)
    finally:
        _core.TILE_BYTES = saved
    assert_close(got, local_conv_reference(x, weight, None, 3), np.float32)


@pytest.mark.parametrize("call,exc,fragment", [
    (lambda: convcpu.local_conv2d(np.ones((1, 5, 5, 2)), np.ones((8, 18, 3)), None, 3),
     ValueError, r"weight must have shape \(9, 18, filters\)"),
    (lambda: convcpu.local_conv2d(np.ones((1, 5, 5, 2)), np.ones((9, 9, 3)), None, 3),
     ValueError, r"weight must have shape \(9, 18, filters\)"),
    (lambda: convcpu.local_conv2d(np.ones((1, 5, 5, 2)), np.ones((9, 18)), None, 3),
     ValueError, "weight must have shape"),
    (lambda: convcpu.local_conv2d(np.ones((1, 2, 5, 2)), np.ones((9, 18, 3)), None, 3),
     ValueError, "height axis is too small"),
    (lambda: convcpu.local_conv2d(np.ones((1, 5, 5, 2)), np.ones((9, 18, 3)), np.ones(4), 3),
     ValueError, r"bias must have shape \(3, 3, 3\) or \(3,\)"),
    (lambda: convcpu.local_conv2d(np.ones((1, 5, 5, 2)), np.ones((9, 18, 3))), TypeError,
     "kernel_size is required"),
    (lambda: convcpu.local_conv2d(np.ones((5, 5)), np.ones((9, 18, 3)), None, 3), ValueError,
     "x must have 4 dimensions"),
    (lambda: convcpu.local_conv1d(np.ones((1, 5, 2)), np.ones((3, 6, 1)), None, 3,
                                  data_format="NHWC"), ValueError, "data_format"),
])
def test_bad_input(call, exc, fragment):
    with pytest.raises(exc, match=fragment):
        call()


# --------------------------------------------------------------------------- tf_keras

def _keras():
    pytest.importorskip("tensorflow")
    return pytest.importorskip("tf_keras")


@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("stride", [(1, 1), (2, 1), (2, 3)])
def test_matches_keras_locally_connected_2d(channels_last, stride):
    keras = _keras()
    rng = np.random.default_rng(10)
    n, h, w_, c, f, kernel = 2, 8, 9, 3, 4, (3, 2)
    shape = (h, w_, c) if channels_last else (c, h, w_)
    layer = keras.layers.LocallyConnected2D(
        f, kernel, strides=stride, implementation=1,
        data_format="channels_last" if channels_last else "channels_first")
    x = rng.standard_normal((n,) + shape).astype(np.float32)
    layer.build((None,) + shape)
    kernel_w, bias = [rng.standard_normal(v.shape).astype(np.float32) for v in layer.weights]
    layer.set_weights([kernel_w, bias])
    expected = layer(x).numpy()
    ho, wo = (expected.shape[1:3] if channels_last else expected.shape[2:])
    if not channels_last:
        # Keras stores a channels_first bias as (Ho, Wo, F) and adds it reshaped,
        # not transposed, to (F, Ho, Wo).
        assert bias.shape == (ho, wo, f)
        bias = bias.reshape(f, ho, wo)
    got = convcpu.local_conv2d(x, kernel_w, bias, kernel, stride,
                               data_format="NHWC" if channels_last else "NCHW")
    assert_close(got, expected, np.float32)


@pytest.mark.parametrize("channels_last", [True, False])
def test_matches_keras_locally_connected_1d(channels_last):
    keras = _keras()
    rng = np.random.default_rng(11)
    shape = (13, 3) if channels_last else (3, 13)
    layer = keras.layers.LocallyConnected1D(
        4, 3, strides=2, implementation=1,
        data_format="channels_last" if channels_last else "channels_first")
    layer.build((None,) + shape)
    weights = [rng.standard_normal(v.shape).astype(np.float32) for v in layer.weights]
    layer.set_weights(weights)
    x = rng.standard_normal((2,) + shape).astype(np.float32)
    expected = layer(x).numpy()
    kernel_w, bias = weights
    if not channels_last:
        bias = bias.reshape(expected.shape[1:]) if bias.shape != expected.shape[1:] else bias
    got = convcpu.local_conv1d(x, kernel_w, bias, 3, 2,
                               data_format="NLC" if channels_last else "NCL")
    assert_close(got, expected, np.float32)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("channels_last", [True, False])
def test_direct_kernel_and_blas_paths_agree_with_reference(dtype, channels_last):
    """Few filters run the direct kernel, many (> LOCAL_DIRECT_MAX_FILTERS) one
    BLAS call per position; odd row and filter counts exercise the remainders."""
    from convcpu import _core
    rng = np.random.default_rng(12)
    x = rng.standard_normal((11, 5, 6, 3)).astype(dtype)
    for filters in (3, 17, _core.LOCAL_DIRECT_MAX_FILTERS + 5):
        weight = rng.standard_normal((3 * 4, 27, filters)).astype(dtype)
        bias = rng.standard_normal(filters).astype(dtype)
        expected = local_conv_reference(x, weight, bias, 3)
        if channels_last:
            got = convcpu.local_conv2d(x, weight, bias, 3)
        else:
            got = np.moveaxis(convcpu.local_conv2d(np.moveaxis(x, -1, 1),
                                                   _nchw_weight(weight, (3, 3), 3), bias, 3,
                                                   data_format="NCHW"), 1, -1)
        assert_close(got, expected, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_in_place_patches_give_the_gathered_bits(dtype):
    """Channels-last positions whose taps all lie inside the image read their
    patches in place; the others gather them (zeros for the padding).  With the
    zeros written into the image instead, every position reads in place: the
    bits are the same."""
    rng = np.random.default_rng(21)
    x = rng.standard_normal((9, 7, 8, 5)).astype(dtype)
    w = rng.standard_normal((7 * 8, 3 * 3 * 5, 6)).astype(dtype)
    b = rng.standard_normal(6).astype(dtype)
    gathered = convcpu.local_conv2d(x, w, b, 3, 1, ((1, 1), (1, 1)))
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    np.testing.assert_array_equal(convcpu.local_conv2d(padded, w, b, 3, 1, "valid"), gathered)
