"""conv1d / conv2d against the NumPy reference, torch and TensorFlow."""
import itertools

import numpy as np
import pytest
from conftest import (assert_close, awkward_variants, optional, to_channels_last,
                      weight_oi_to_io_last)

import convcpu
from convcpu._reference import conv_reference, same_pads

DTYPES = [np.float32, np.float64]

# (N, C_in, C_out, spatial, kernel, stride, padding, dilation, groups)
GEOMETRIES_2D = [
    (2, 3, 4, (7, 9), (3, 3), (1, 1), 1, (1, 1), 1),
    (1, 4, 6, (10, 7), (3, 2), (2, 1), ((1, 0), (2, 1)), (1, 2), 2),
    (3, 6, 6, (5, 5), (1, 1), (1, 1), 0, (1, 1), 3),
    (1, 5, 2, (11, 13), (5, 3), (3, 2), ((2, 2), (0, 3)), (2, 1), 1),
    (2, 8, 4, (6, 6), (1, 1), (2, 2), 0, (1, 1), 4),
    (1, 2, 3, (4, 4), (4, 4), (1, 1), 0, (1, 1), 1),
    (1, 1, 1, (1, 1), (1, 1), (1, 1), 0, (1, 1), 1),
    (2, 16, 32, (9, 8), (3, 3), (1, 2), 2, (3, 2), 1),
    (1, 4, 8, (3, 17), (2, 5), (2, 3), ((0, 1), (4, 2)), (1, 1), 2),
]
GEOMETRIES_1D = [
    (2, 3, 5, (17,), (3,), (1,), 1, (1,), 1),
    (1, 4, 4, (20,), (4,), (3,), ((2, 1),), (2,), 2),
    (3, 6, 3, (5,), (1,), (2,), 0, (1,), 3),
    (1, 8, 16, (31,), (7,), (2,), 3, (3,), 1),
]


def _explicit_pads(padding, spatial):
    if isinstance(padding, int):
        return tuple((padding, padding) for _ in spatial)
    return padding


def _random_case(rng, geometry, dtype, bias=True):
    n, cin, cout, spatial, kernel, stride, padding, dilation, groups = geometry
    x = rng.standard_normal((n, cin) + spatial).astype(dtype)
    w = rng.standard_normal((cout, cin // groups) + kernel).astype(dtype)
    b = rng.standard_normal(cout).astype(dtype) if bias else None
    return x, w, b


def _run(op, x, w, b, geometry, channels_last, threads=None, **kwargs):
    stride, padding, dilation, groups = geometry[5:]
    nsp = x.ndim - 2
    if channels_last:
        fmt = "NHWC" if nsp == 2 else "NLC"
        got = op(to_channels_last(x), weight_oi_to_io_last(w), b, stride, padding, dilation,
                 groups, data_format=fmt, num_threads=threads, **kwargs)
        return np.moveaxis(got, -1, 1)
    return op(x, w, b, stride, padding, dilation, groups, num_threads=threads, **kwargs)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("channels_last", [False, True], ids=["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("geometry", GEOMETRIES_2D + GEOMETRIES_1D, ids=str)
def test_matches_reference(geometry, dtype, channels_last, threads):
    rng = np.random.default_rng(abs(hash(geometry)) % 2**32)
    x, w, b = _random_case(rng, geometry, dtype)
    op = convcpu.conv2d if x.ndim == 4 else convcpu.conv1d
    got = _run(op, x, w, b, geometry, channels_last, threads)
    assert got.dtype == dtype
    expected = conv_reference(x, w, b, geometry[5], _explicit_pads(geometry[6], geometry[3]),
                              geometry[7], geometry[8])
    assert_close(got, expected, dtype)


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
@pytest.mark.parametrize("channels_last", [False, True], ids=["NCHW", "NHWC"])
@pytest.mark.parametrize("geometry", [GEOMETRIES_2D[0], GEOMETRIES_2D[1], GEOMETRIES_2D[3],
                                      GEOMETRIES_1D[0], GEOMETRIES_1D[1]], ids=str)
def test_padding_modes(geometry, channels_last, mode):
    rng = np.random.default_rng(1)
    x, w, b = _random_case(rng, geometry, np.float64)
    op = convcpu.conv2d if x.ndim == 4 else convcpu.conv1d
    got = _run(op, x, w, b, geometry, channels_last, padding_mode=mode)
    expected = conv_reference(x, w, b, geometry[5], _explicit_pads(geometry[6], geometry[3]),
                              geometry[7], geometry[8], padding_mode=mode)
    assert_close(got, expected, np.float64)


@pytest.mark.parametrize("lower", [False, True], ids=["same", "same_lower"])
@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("channels_last", [False, True], ids=["NCHW", "NHWC"])
def test_same_padding(stride, lower, channels_last):
    rng = np.random.default_rng(stride)
    x = rng.standard_normal((2, 3, 10, 7))
    w = rng.standard_normal((4, 3, 4, 3))
    geometry = (2, 3, 4, (10, 7), (4, 3), (stride, stride), "same_lower" if lower else "same",
                (1, 2), 1)
    got = _run(convcpu.conv2d, x, w, None, geometry, channels_last)
    pads = (same_pads(10, 4, stride, 1, lower), same_pads(7, 3, stride, 2, lower))
    assert got.shape[2:] == (-(-10 // stride), -(-7 // stride))
    assert_close(got, conv_reference(x, w, None, stride, pads, (1, 2)), np.float64)


@pytest.mark.parametrize("form", ["int", "tuple", "pairs", "list-pairs"])
def test_padding_forms_agree(form):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 2, 6, 5)).astype(np.float32)
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    padding = {"int": 2, "tuple": (2, 2), "pairs": ((2, 2), (2, 2)),
               "list-pairs": [[2, 2], [2, 2]]}[form]
    np.testing.assert_array_equal(convcpu.conv2d(x, w, padding=padding),
                                  convcpu.conv2d(x, w, padding=2))


@pytest.mark.parametrize("fmt", ["OIHW", "HWIO", "OHWI", "IOHW"])
@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
def test_weight_formats(fmt, data_format):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 4, 6, 5))
    w = rng.standard_normal((6, 2, 3, 2))  # OIHW, groups=2
    w_fmt = np.transpose(w, ["OIHW".index(c) for c in fmt])
    xin = to_channels_last(x) if data_format == "NHWC" else x
    got = convcpu.conv2d(xin, w_fmt, groups=2, padding=1, data_format=data_format,
                         weight_format=fmt)
    if data_format == "NHWC":
        got = np.moveaxis(got, -1, 1)
    assert_close(got, conv_reference(x, w, None, 1, 1, 1, 2), np.float64)


@pytest.mark.parametrize("fmt", ["OIW", "WIO", "OWI", "OIL", "LIO"])
def test_weight_formats_1d(fmt):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 3, 9))
    w = rng.standard_normal((5, 3, 4))
    w_fmt = np.transpose(w, ["OIW".index(c) for c in fmt.replace("L", "W")])
    got = convcpu.conv1d(x, w_fmt, weight_format=fmt, padding=((1, 2),))
    assert_close(got, conv_reference(x, w, None, 1, ((1, 2),)), np.float64)


def test_unbatched():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((3, 8, 8)).astype(np.float32)
    w = rng.standard_normal((5, 3, 3, 3)).astype(np.float32)
    got = convcpu.conv2d(x, w, padding=1)
    assert got.shape == (5, 8, 8)
    np.testing.assert_array_equal(got, convcpu.conv2d(x[None], w, padding=1)[0])
    got_nhwc = convcpu.conv2d(to_channels_last(x[None])[0], weight_oi_to_io_last(w), padding=1,
                              data_format="NHWC")
    assert got_nhwc.shape == (8, 8, 5)
    x1 = rng.standard_normal((3, 10))
    w1 = rng.standard_normal((2, 3, 3))
    assert convcpu.conv1d(x1, w1).shape == (2, 8)
    out = np.empty((2, 8))
    assert convcpu.conv1d(x1, w1, out=out) is out
    np.testing.assert_array_equal(out, convcpu.conv1d(x1[None], w1)[0])


@pytest.mark.parametrize("batch", [0, 1])
def test_batch_zero_and_one(batch):
    x = np.ones((batch, 2, 5, 5), np.float32)
    w = np.ones((3, 2, 3, 3), np.float32)
    got = convcpu.conv2d(x, w, bias=np.arange(3, dtype=np.float32))
    assert got.shape == (batch, 3, 3, 3)
    if batch:
        np.testing.assert_array_equal(got[0, :, 1, 1], 18 + np.arange(3))


def test_zero_output_channels_and_zero_input_channels():
    assert convcpu.conv2d(np.ones((1, 2, 4, 4)), np.ones((0, 2, 3, 3))).shape == (1, 0, 2, 2)
    bias = np.array([1.0, -2.0])
    got = convcpu.conv2d(np.ones((1, 0, 4, 4)), np.ones((2, 0, 3, 3)), bias)
    np.testing.assert_array_equal(got, np.broadcast_to(bias[None, :, None, None], (1, 2, 2, 2)))
    got = convcpu.conv2d(np.ones((1, 4, 4, 0)), np.ones((3, 3, 0, 2)), bias, data_format="NHWC")
    np.testing.assert_array_equal(got, np.broadcast_to(bias, (1, 2, 2, 2)))


@pytest.mark.parametrize("variant", ["strided", "byteswapped", "readonly", "fortran"])
@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
def test_awkward_inputs(variant, data_format):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 5, 7, 3)).astype(np.float32)
    w = rng.standard_normal((3, 3, 3, 4)).astype(np.float32) if data_format == "NHWC" else \
        rng.standard_normal((4, 5, 3, 3)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    expected = convcpu.conv2d(x, w, b, padding=1, data_format=data_format)
    xs, ws, bs = (awkward_variants(a)[variant] for a in (x, w, b))
    saved = [a.copy() for a in (xs, ws, bs)]
    got = convcpu.conv2d(xs, ws, bs, padding=1, data_format=data_format)
    np.testing.assert_array_equal(got, expected)
    for before, after in zip(saved, (xs, ws, bs)):
        np.testing.assert_array_equal(before, after)


def test_dtype_promotion():
    rng = np.random.default_rng(12)
    img = rng.integers(0, 256, (1, 1, 6, 6), dtype=np.uint8)
    w = np.array([[[[1, -1]]]], dtype=np.float32)
    got = convcpu.conv2d(img, w)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, img[..., :-1].astype(np.float32) - img[..., 1:])
    assert convcpu.conv2d(img, w.astype(np.float64)).dtype == np.float64
    assert convcpu.conv2d(img.astype(np.int64), w).dtype == np.float64
    assert convcpu.conv2d(img.astype(np.float16), w.astype(np.float16)).dtype == np.float32
    assert convcpu.conv2d(img.tolist(), w.tolist()).dtype == np.float64


def test_nan_and_inf_propagate():
    x = np.ones((1, 1, 5, 5), np.float32)
    x[0, 0, 2, 2] = np.nan
    x[0, 0, 0, 4] = np.inf
    got = convcpu.conv2d(x, np.ones((1, 1, 3, 3), np.float32))
    assert np.isnan(got[0, 0]).all()  # every window sees the NaN
    x[0, 0, 2, 2] = 1
    got = convcpu.conv2d(x, np.ones((1, 1, 2, 2), np.float32))
    assert np.isinf(got[0, 0, 0, 3]) and np.isfinite(got[0, 0, 3, 0])


def test_out_argument():
    rng = np.random.default_rng(13)
    x = rng.standard_normal((2, 3, 6, 6))
    w = rng.standard_normal((4, 3, 3, 3))
    out = np.full((2, 4, 4, 4), np.nan)
    result = convcpu.conv2d(x, w, out=out)
    assert result is out
    assert_close(out, conv_reference(x, w), np.float64)


def test_seed_003_same_valid_shapes():
    """seed 003: tf.nn.conv2d on ones, 3x3x3x1 kernel, stride 2."""
    kernel = np.ones((3, 3, 3, 1), np.float32)
    for size, same, valid in [(4, (1, 2, 2, 1), (1, 1, 1, 1)), (6, (1, 3, 3, 1), (1, 2, 2, 1))]:
        x = np.ones((1, size, size, 3), np.float32)
        assert convcpu.conv2d(x, kernel, stride=2, padding="SAME", data_format="NHWC").shape == same
        assert convcpu.conv2d(x, kernel, stride=2, padding="VALID",
                              data_format="NHWC").shape == valid


def test_seed_003_valid_example():
    """seed 003: 0.1*i on a 4x4 image, 3x3 ones kernel, VALID -> [[4.5, 5.4], [8.1, 9.0]]."""
    x = (np.arange(16) * 0.1).reshape(1, 4, 4, 1).astype(np.float32)
    got = convcpu.conv2d(x, np.ones((3, 3, 1, 1), np.float32), padding="VALID", data_format="NHWC")
    np.testing.assert_allclose(got[0, :, :, 0], [[4.5, 5.4], [8.1, 9.0]], rtol=1e-6)


def test_seed_001_conv1d_shapes():
    """seed 001: nn.Conv1d(256, 128, 3) on (32, 256, 15) -> (32, 128, 13)."""
    x = np.random.default_rng(0).standard_normal((32, 15, 256)).astype(np.float32)
    w = np.zeros((128, 256, 3), np.float32)
    assert convcpu.conv1d(np.swapaxes(x, 1, 2), w, np.zeros(128, np.float32)).shape == (32, 128, 13)
    assert convcpu.conv1d(x, w, data_format="NLC", weight_format="OIW").shape == (32, 13, 128)


def test_large_tiles_and_thread_counts_agree_with_reference():
    """A layer big enough to use several pixel tiles and channel blocks."""
    rng = np.random.default_rng(14)
    x = rng.standard_normal((1, 64, 30, 31)).astype(np.float32)
    w = rng.standard_normal((96, 64, 3, 3)).astype(np.float32)
    expected = conv_reference(x, w, None, 1, 1)
    for threads in (1, 2, 3):
        assert_close(convcpu.conv2d(x, w, padding=1, num_threads=threads), expected, np.float32)
        assert_close(np.moveaxis(convcpu.conv2d(to_channels_last(x), weight_oi_to_io_last(w),
                                                padding=1, data_format="NHWC",
                                                num_threads=threads), -1, 1),
                     expected, np.float32)


# --------------------------------------------------------------------------- oracles

TORCH_CASES = list(itertools.product(
    [(2, 4, 6, (9, 10), (3, 3), (1, 1), 1, (1, 1), 1),
     (1, 6, 9, (12, 11), (3, 5), (2, 3), (2, 1), (2, 1), 3),
     (3, 8, 8, (7, 7), (1, 1), (1, 1), 0, (1, 1), 8),
     (1, 4, 8, (10, 10), (2, 2), (2, 2), 0, (1, 1), 2),
     (2, 3, 5, (25,), (5,), (2,), 2, (3,), 1),
     (1, 6, 4, (16,), (3,), (1,), 1, (1,), 2)],
    ["zeros", "reflect", "replicate", "circular"], DTYPES))


@pytest.mark.parametrize("geometry,mode,dtype", TORCH_CASES, ids=str)
def test_matches_torch(geometry, mode, dtype):
    torch = optional("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(21)
    x, w, b = _random_case(rng, geometry, dtype)
    stride, padding, dilation, groups = geometry[5:]
    nsp = x.ndim - 2
    fn = F.conv2d if nsp == 2 else F.conv1d
    xt = torch.from_numpy(x)
    if mode == "zeros":
        expected = fn(xt, torch.from_numpy(w), torch.from_numpy(b), stride, padding, dilation,
                      groups)
    else:
        p = (padding,) * nsp if isinstance(padding, int) else padding
        torch_pad = tuple(v for axis in reversed(p) for v in (axis, axis))
        expected = fn(F.pad(xt, torch_pad, mode=mode), torch.from_numpy(w), torch.from_numpy(b),
                      stride, 0, dilation, groups)
    op = convcpu.conv2d if nsp == 2 else convcpu.conv1d
    for channels_last in (False, True):
        got = _run(op, x, w, b, geometry, channels_last, padding_mode=mode)
        assert_close(got, expected.numpy(), dtype)


@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("size", [(7, 7), (8, 5), (1, 9)])
@pytest.mark.parametrize("dilation", [1, 2])
def test_matches_tensorflow_same(stride, size, dilation):
    tf = optional("tensorflow")
    if stride > 1 and dilation > 1:
        pytest.skip("tf.nn.conv2d rejects stride > 1 with dilation > 1")
    rng = np.random.default_rng(31)
    x = rng.standard_normal((2,) + size + (3,)).astype(np.float32)
    w = rng.standard_normal((3, 2, 3, 4)).astype(np.float32)  # HWIO
    expected = tf.nn.conv2d(x, w, strides=stride, padding="SAME", dilations=dilation).numpy()
    got = convcpu.conv2d(x, w, stride=stride, padding="same", dilation=dilation,
                         data_format="NHWC")
    assert_close(got, expected, np.float32)
    if size[0] >= 2 * dilation + 1 and size[1] >= dilation + 1:  # VALID has an output
        expected = tf.nn.conv2d(x, w, strides=stride, padding="VALID", dilations=dilation).numpy()
        got = convcpu.conv2d(x, w, stride=stride, padding="valid", dilation=dilation,
                             data_format="NHWC")
        assert_close(got, expected, np.float32)


@pytest.mark.parametrize("stride", [1, 2])
def test_matches_tensorflow_conv1d_same(stride):
    tf = optional("tensorflow")
    rng = np.random.default_rng(32)
    x = rng.standard_normal((2, 11, 3)).astype(np.float32)
    w = rng.standard_normal((4, 3, 5)).astype(np.float32)  # WIO
    expected = tf.nn.conv1d(x, w, stride=stride, padding="SAME").numpy()
    got = convcpu.conv1d(x, w, stride=stride, padding="same", data_format="NWC")
    assert_close(got, expected, np.float32)


@pytest.mark.parametrize("kernel", [(1, 1), (3, 3)])
@pytest.mark.parametrize("channels_last", [False, True], ids=["NCHW", "NHWC"])
def test_small_images_large_batch(kernel, channels_last):
    """Several whole samples share a tile (and the last tile has fewer)."""
    rng = np.random.default_rng(15)
    x = rng.standard_normal((7, 40, 5, 3)).astype(np.float32)
    w = rng.standard_normal((72, 40) + kernel).astype(np.float32)
    b = rng.standard_normal(72).astype(np.float32)
    geometry = (7, 40, 72, (5, 3), kernel, (1, 1), 0, (1, 1), 1)
    expected = conv_reference(x, w, b)
    results = [_run(convcpu.conv2d, x, w, b, geometry, channels_last, threads)
               for threads in (1, 2)]
    assert_close(results[0], expected, np.float32)
    np.testing.assert_array_equal(results[0], results[1])


@pytest.mark.parametrize("K", [1, 8, 16, 24, 33, 127, 128, 130])
def test_channels_last_ragged_output_channels_transposed(K, monkeypatch):
    """Channels-last float32 tasks with at most 16 output channels, or at most
    _core.NARROW_RAGGED_MAX_CHANNELS not a multiple of 16, run their GEMM
    transposed (convcpu_sgemm_bias_t: pixels along the vector, 128 at a time
    transposed into the output; 128 and 130 do not).  The same bits as by
    rows (both limits 0), on 1 and 2 threads, the reference's values: a 1x1
    on the input in place, a 3x3 at stride 2 on im2col tiles, groups, several
    small images to a task, a 7x7 map (49 pixels: by rows where the channels
    fill their vectors better, 40 and 127), and conv_transpose2d's OHWI rows
    (weight_by_rows)."""
    from convcpu import _core
    if _core.gemm_backend() != "convcpu":
        pytest.skip("float32 products run on BLAS on this CPU")
    rng = np.random.default_rng(K)
    for n, c, size, kernel, stride, groups in ((1, 40, (13, 150), (1, 1), 1, 1),
                                               (2, 12, (15, 21), (3, 3), 2, 1),
                                               (2, 8, (9, 30), (3, 3), 1, 2),
                                               (9, 6, (4, 3), (3, 3), 1, 1),
                                               (1, 96, (7, 7), (1, 1), 1, 1)):
        kg = K if K % groups == 0 else K * groups
        x = rng.standard_normal((n,) + size + (c,)).astype(np.float32)
        w = rng.standard_normal((kg, c // groups) + kernel).astype(np.float32)
        b = rng.standard_normal(kg).astype(np.float32)
        x_before = x.copy()

        def run(threads):
            return convcpu.conv2d(x, weight_oi_to_io_last(w), b, stride, 1, 1, groups,
                                  data_format="NHWC", num_threads=threads)
        runs = [run(1), run(2)]
        with monkeypatch.context() as m:
            m.setattr(_core, "NARROW_RAGGED_MAX_CHANNELS", 0)
            m.setattr(_core, "NARROW_MAX_CHANNELS", 0)
            runs.append(run(2))
        for got in runs[1:]:
            np.testing.assert_array_equal(got.view(np.uint32), runs[0].view(np.uint32))
        expected = conv_reference(np.moveaxis(x, -1, 1), w, b, stride, 1, 1, groups)
        assert_close(np.moveaxis(runs[0], -1, 1), expected, np.float32)
        np.testing.assert_array_equal(x, x_before)
    # conv_transpose2d at stride 1, channels last: the core's weight by rows
    x = rng.standard_normal((1, 11, 140, 20)).astype(np.float32)
    wt = rng.standard_normal((20, K, 3, 3)).astype(np.float32)  # (C_in, C_out, R, S)
    runs = [convcpu.conv_transpose2d(x, wt, None, 1, 1, data_format="NHWC",
                                     weight_format="IOHW")]
    with monkeypatch.context() as m:
        m.setattr(_core, "NARROW_RAGGED_MAX_CHANNELS", 0)
        m.setattr(_core, "NARROW_MAX_CHANNELS", 0)
        runs.append(convcpu.conv_transpose2d(x, wt, None, 1, 1, data_format="NHWC",
                                             weight_format="IOHW"))
    np.testing.assert_array_equal(runs[0].view(np.uint32), runs[1].view(np.uint32))


def _repeat_calls(call, times=3):
    """call() several times: the first takes every check, the others the
    cached front of conv1d / conv2d (conv._CALLS)."""
    return [call() for _ in range(times)]


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("route", ["depthwise", "dense"])
def test_repeated_call_takes_the_cached_front(layout, route, monkeypatch):
    """A call like an earlier one skips the shape checks (conv._CALLS) and
    gives the same bits as a fresh call, with out= or without, batched or not,
    for every array of that shape (new values, new memory, strided views,
    byte-swapped), with a weight format that needs its axes moved."""
    from convcpu import conv as conv_module
    rng = np.random.default_rng(31)
    channels, groups = (6, 6) if route == "depthwise" else (4, 1)
    w = rng.standard_normal((6, channels // groups, 3, 3)).astype(np.float32)
    wf = "OIHW" if layout == "NCHW" else "HWIO"
    w_given = w if layout == "NCHW" else np.ascontiguousarray(w.transpose(2, 3, 1, 0))
    kwargs = dict(stride=(1, 2), padding=((1, 0), (2, 1)), groups=groups, data_format=layout,
                  weight_format=wf)
    conv_module._CALLS.clear()
    checked = []
    real = conv_module._conv_checked
    monkeypatch.setattr(conv_module, "_conv_checked",
                        lambda key, *args: checked.append(key) or real(key, *args))
    for unbatched in (False, True):
        shape = (channels, 7, 9) if layout == "NCHW" else (7, 9, channels)
        if not unbatched:
            shape = (2,) + shape
        xs = [rng.standard_normal(shape).astype(np.float32) for _ in range(3)]
        # a strided view and a byte-swapped copy of the same shape
        big = rng.standard_normal(shape[:-1] + (2 * shape[-1],)).astype(np.float32)
        xs.append(big[..., ::2])
        xs.append(xs[0].astype(xs[0].dtype.newbyteorder()))
        for x in xs:
            x_nchw = np.asarray(x, np.float32)
            if layout == "NHWC":
                x_nchw = np.moveaxis(x_nchw, -1, -3)
            expected = conv_reference(x_nchw[None] if unbatched else x_nchw, w, None, (1, 2),
                                      ((1, 0), (2, 1)), 1, groups)
            if layout == "NHWC":
                expected = np.moveaxis(expected, 1, -1)
            if unbatched:
                expected = expected[0]
            got = _repeat_calls(lambda: convcpu.conv2d(x, w_given, **kwargs))
            for g in got:
                assert_close(g, expected, np.float32)
                np.testing.assert_array_equal(g, got[0])
            out = np.full(expected.shape, np.nan, np.float32)
            for _ in range(2):
                assert convcpu.conv2d(x, w_given, out=out, **kwargs) is out
                np.testing.assert_array_equal(out, got[0])
    # one checked call a key: batched or not, with or without out=, float32
    # or the byte-swapped dtype; every other call took the cached front
    assert len(checked) == len(set(checked)) == len(conv_module._CALLS) == 8


def test_cached_front_still_checks_out_memory():
    """After a call with a good out=, an out= of the same shape and dtype is
    still checked for what depends on its memory: layout, writeable,
    alignment and overlap with the inputs (the messages of the first call)."""
    rng = np.random.default_rng(32)
    x = rng.standard_normal((1, 4, 6, 6)).astype(np.float32)
    w = rng.standard_normal((4, 4, 3, 3)).astype(np.float32)
    good = np.empty((1, 4, 6, 6), np.float32)
    convcpu.conv2d(x, w, padding=1, out=good)
    convcpu.conv2d(x, w, padding=1, out=good)
    strided = np.empty((1, 4, 6, 12), np.float32)[..., ::2]
    readonly = np.empty((1, 4, 6, 6), np.float32)
    readonly.flags.writeable = False
    raw = np.zeros(4 * 36 * 4 + 1, np.uint8)
    unaligned = raw[1:].view(np.float32).reshape(1, 4, 6, 6)
    x_before = x.copy()
    for bad, message in [(strided, "C-contiguous"), (readonly, "writeable"),
                         (unaligned, "aligned"), (x, "overlap x")]:
        with pytest.raises(ValueError, match=message):
            convcpu.conv2d(x, w, padding=1, out=bad)
    np.testing.assert_array_equal(x, x_before)
    wbig = np.empty((4, 4, 3, 3), np.float32)
    convcpu.conv2d(x, wbig, padding=1, out=good)
    with pytest.raises(ValueError, match="overlap weight"):
        convcpu.conv2d(x, wbig, padding=1, out=wbig.reshape(-1)[:144].reshape(1, 4, 6, 6))


def test_cached_front_keys():
    """Only plain arrays and plain arguments are cached: a bool, float or
    NumPy scalar where an int goes, a list, or an ndarray subclass takes every
    check on every call (a bool stride is still refused after an int one)."""
    from convcpu import conv as conv_module
    x = np.ones((1, 2, 5, 5), np.float32)
    w = np.ones((2, 2, 3, 3), np.float32)
    conv_module._CALLS.clear()
    convcpu.conv2d(x, w, stride=1)
    assert len(conv_module._CALLS) == 1
    for stride in (True, np.int64(1), [1, 1]):
        if stride is True:
            with pytest.raises(TypeError, match="bool"):
                convcpu.conv2d(x, w, stride=stride)
        else:
            convcpu.conv2d(x, w, stride=stride)
    convcpu.conv2d(x, w, groups=1)

    class Sub(np.ndarray):
        pass
    convcpu.conv2d(x.view(Sub), w)
    assert len(conv_module._CALLS) == 1  # groups=1 is the default: the same key
    with pytest.raises(TypeError):
        convcpu.conv2d(x, w, groups=2.0)
    from convcpu import _arrays
    plain = ("NCHW", None, "zeros", 1, (1, 2), ((1, 0), (0, 1)), "same")
    assert _arrays.call_key((x, w, None), plain) is not None
    for odd in (True, 1.0, np.int64(1), [1, 1], (1, [1]), (1, 1.0), ("seq", 1)):
        assert _arrays.call_key((x, w, None), plain + (odd,)) is None
    assert _arrays.call_key((x, w, [1.0]), plain) is None
