"""depthwise_conv2d, separable_conv2d and grouped conv2d (the direct kernels)
against the NumPy reference, PyTorch and TensorFlow; seed 004's example."""
import numpy as np
import pytest
from conftest import assert_close, awkward_variants, explicit_pads, optional, to_channels_last

import convcpu
from convcpu import _arrays, _direct, depthwise
from convcpu._reference import conv_reference

DTYPES = [np.float32, np.float64]


def depthwise_reference(x, w, bias=None, stride=1, pads=0, dilation=1, padding_mode="zeros"):
    """x (N, C, H, W), w (R, S, C, M) (TensorFlow): output channel c*M + m."""
    R, S, C, M = w.shape
    w_oi = np.asarray(w).transpose(2, 3, 0, 1).reshape(C * M, 1, R, S)
    return conv_reference(x, w_oi, bias, stride, pads, dilation, C, padding_mode)


def separable_reference(x, wd, wp, bias=None, stride=1, pads=0, dilation=1):
    mid = depthwise_reference(x, wd, None, stride, pads, dilation)
    out = np.einsum("nchw,ck->nkhw", mid, np.asarray(wp, np.float64).reshape(mid.shape[1], -1))
    if bias is not None:
        out += np.asarray(bias, np.float64)[:, None, None]
    return out


# (N, C, M, (H, W), (R, S), stride, padding, dilation)
GEOMETRIES = [
    (2, 3, 1, (7, 9), (3, 3), (1, 1), 1, (1, 1)),
    (1, 5, 2, (8, 8), (3, 3), (2, 2), "same", (1, 1)),
    (2, 4, 3, (9, 6), (5, 5), (1, 1), "same", (2, 2)),
    (1, 16, 1, (11, 13), (3, 3), (2, 2), "valid", (1, 1)),
    (1, 2, 2, (1, 1), (3, 3), (1, 1), 1, (1, 1)),                 # 1-pixel image
    (3, 7, 1, (5, 4), (2, 3), (3, 1), ((0, 2), (1, 0)), (1, 1)),   # asymmetric, stride > kernel
    (1, 33, 1, (17, 19), (3, 3), (1, 2), "same_lower", (1, 1)),   # channel tails
    (1, 24, 1, (6, 40), (7, 7), (1, 1), 3, (1, 1)),
    (2, 9, 1, (10, 10), (3, 1), (2, 3), (1, 0), (3, 1)),
    (1, 3, 1, (4, 4), (4, 4), (1, 1), "valid", (1, 1)),            # kernel == input
]


def _case(rng, geometry, dtype):
    n, c, m, size, kernel, stride, padding, dilation = geometry
    x = rng.standard_normal((n, c) + size).astype(dtype)
    w = rng.standard_normal(kernel + (c, m)).astype(dtype)
    b = rng.standard_normal(c * m).astype(dtype)
    pads = explicit_pads(padding, size, kernel, stride, dilation)
    return x, w, b, pads


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_depthwise_matches_reference(geometry, channels_last, dtype):
    rng = np.random.default_rng(0)
    x, w, b, pads = _case(rng, geometry, dtype)
    stride, padding, dilation = geometry[5:]
    expected = depthwise_reference(x, w, b, stride, pads, dilation)
    if channels_last:
        got = convcpu.depthwise_conv2d(to_channels_last(x), w, b, stride, padding, dilation)
        got = np.moveaxis(got, -1, 1)
    else:
        got = convcpu.depthwise_conv2d(x, w, b, stride, padding, dilation, data_format="NCHW")
    assert got.dtype == dtype
    assert_close(got, expected, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_separable_matches_reference(geometry, channels_last, dtype):
    rng = np.random.default_rng(1)
    x, w, _, pads = _case(rng, geometry, dtype)
    k = 1 + geometry[1] % 5 * 7  # 1 .. 29 pointwise filters
    wp = rng.standard_normal((1, 1, w.shape[2] * w.shape[3], k)).astype(dtype)
    bias = rng.standard_normal(k).astype(dtype)
    stride, padding, dilation = geometry[5:]
    expected = separable_reference(x, w, wp, bias, stride, pads, dilation)
    if channels_last:
        got = np.moveaxis(convcpu.separable_conv2d(to_channels_last(x), w, wp, bias, stride,
                                                   padding, dilation), -1, 1)
    else:
        got = convcpu.separable_conv2d(x, w, wp[0, 0], bias, stride, padding, dilation,
                                       data_format="NCHW")
    assert_close(got, expected, dtype)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_fused_separable_is_the_unfused_sum_bit_for_bit(geometry, channels_last):
    """Float32 on the own GEMM, both layouts: the fused separable conv's
    pointwise step runs the GEMM on its depthwise tile, the same chains (bias,
    then the channels in order) as a 1x1 conv2d on the depthwise output, so
    the same bits as the two ops called one after the other."""
    from convcpu import _core
    if _core.gemm_backend() != "convcpu":
        pytest.skip("float32 products run on BLAS on this CPU")
    rng = np.random.default_rng(7)
    x, w, _, _ = _case(rng, geometry, np.float32)
    k = 1 + geometry[1] % 5 * 7
    wp = rng.standard_normal((w.shape[2] * w.shape[3], k)).astype(np.float32)
    bias = rng.standard_normal(k).astype(np.float32)
    stride, padding, dilation = geometry[5:]
    layout = "NHWC" if channels_last else "NCHW"
    if channels_last:
        x = to_channels_last(x)
    fused = convcpu.separable_conv2d(x, w, wp, bias, stride, padding, dilation,
                                     data_format=layout)
    mid = convcpu.depthwise_conv2d(x, w, None, stride, padding, dilation, data_format=layout)
    pointwise = wp[None, None] if channels_last else np.ascontiguousarray(wp.T)[:, :, None, None]
    unfused = convcpu.conv2d(mid, pointwise, bias, data_format=layout)
    np.testing.assert_array_equal(fused.view(np.uint32), unfused.view(np.uint32))


@pytest.mark.parametrize("P", [1, 7, 24, 33, 127, 128, 130])
def test_channels_last_pointwise_step_transposed(P, monkeypatch):
    """Channels-last float32 separable whose pointwise step has P output
    channels, P not a multiple of 16 and at most _direct.POINTWISE_T_MAX:
    the step runs transposed (pixels along the vector, blocks of 128 pixels
    transposed into the output; 128 and 130 do not).  The same bits as the
    step by rows (POINTWISE_T_MAX = 0), as the unfused ops, on 1 and 2
    threads, the reference's values; with and without a bias, bands of
    several blocks and a ragged last one, strides 1 and 2, and a 7x7 map
    (bands of few pixels: by rows where P fills its vectors better)."""
    from convcpu import _core
    if _core.gemm_backend() != "convcpu":
        pytest.skip("float32 products run on BLAS on this CPU")
    rng = np.random.default_rng(P)
    w = rng.standard_normal((3, 3, 12, 2)).astype(np.float32)
    wp = rng.standard_normal((24, P)).astype(np.float32)
    x = rng.standard_normal((2, 9, 150, 12)).astype(np.float32)  # NHWC
    small = rng.standard_normal((1, 7, 7, 12)).astype(np.float32)  # bands of few pixels
    for x, bias, stride in ((x, None, 1), (x, rng.standard_normal(P).astype(np.float32), 1),
                            (x, rng.standard_normal(P).astype(np.float32), 2),
                            (small, rng.standard_normal(P).astype(np.float32), 1)):
        x_before = x.copy()
        size = x.shape[1:3]
        args = dict(stride=stride, padding="same")
        runs = [convcpu.separable_conv2d(x, w, wp, bias, num_threads=t, **args) for t in (1, 2)]
        with monkeypatch.context() as m:
            m.setattr(_direct, "POINTWISE_T_MAX", 0)
            runs.append(convcpu.separable_conv2d(x, w, wp, bias, **args))
        mid = convcpu.depthwise_conv2d(x, w, None, **args)
        runs.append(convcpu.conv2d(mid, wp[None, None], bias, data_format="NHWC"))
        for got in runs[1:]:
            np.testing.assert_array_equal(got.view(np.uint32), runs[0].view(np.uint32))
        expected = separable_reference(np.moveaxis(x, -1, 1), w, wp, bias, (stride,) * 2,
                                       explicit_pads("same", size, (3, 3), (stride,) * 2,
                                                     (1, 1)))
        assert_close(np.moveaxis(runs[0], -1, 1), expected, np.float32)
        np.testing.assert_array_equal(x, x_before)


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_depthwise_padding_modes(mode, channels_last):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 5, 9, 11))
    w = rng.standard_normal((3, 3, 5, 2))
    expected = depthwise_reference(x, w, None, (1, 2), ((2, 2), (1, 1)), 1, mode)
    fmt = "NHWC" if channels_last else "NCHW"
    xin = to_channels_last(x) if channels_last else x
    got = convcpu.depthwise_conv2d(xin, w, None, (1, 2), (2, 1), data_format=fmt,
                                   padding_mode=mode)
    assert_close(np.moveaxis(got, -1, 1) if channels_last else got, expected, np.float64)


# conv2d with groups: (N, C_in, C_out, size, kernel, stride, padding, dilation, groups)
GROUPED = [
    (1, 6, 6, (9, 9), (3, 3), 1, 1, 1, 6),        # depthwise
    (2, 4, 12, (7, 8), (3, 3), 2, 1, 1, 4),       # depthwise, multiplier 3
    (1, 64, 64, (14, 14), (3, 3), 1, 1, 1, 16),   # ResNeXt-like, 4 channels per group
    (2, 12, 18, (11, 7), (3, 5), (2, 1), (1, 2), (1, 2), 3),
    (1, 8, 40, (6, 6), (1, 1), 1, 0, 1, 2),       # 1x1 grouped, 20 outputs per group
    (1, 96, 96, (5, 5), (3, 3), 1, 1, 1, 2),      # large groups: the GEMM path
    (3, 10, 5, (4, 9), (2, 2), 1, 0, 1, 5),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("geometry", GROUPED)
def test_grouped_conv2d_matches_reference(geometry, channels_last, dtype):
    n, cin, cout, size, kernel, stride, padding, dilation, groups = geometry
    rng = np.random.default_rng(3)
    x = rng.standard_normal((n, cin) + size).astype(dtype)
    w = rng.standard_normal((cout, cin // groups) + kernel).astype(dtype)
    b = rng.standard_normal(cout).astype(dtype)
    pair = lambda v: (v,) * 2 if isinstance(v, int) else v  # noqa: E731
    pads = explicit_pads(padding, size, kernel, pair(stride), pair(dilation))
    expected = conv_reference(x, w, b, stride, pads, dilation, groups)
    if channels_last:
        got = convcpu.conv2d(to_channels_last(x), w.transpose(2, 3, 1, 0), b, stride, padding,
                             dilation, groups, data_format="NHWC")
        got = np.moveaxis(got, -1, 1)
    else:
        got = convcpu.conv2d(x, w, b, stride, padding, dilation, groups)
    assert_close(got, expected, dtype)


def test_routing_rule():
    f32, f64 = np.float32, np.float64
    assert depthwise.use_direct(32, 64, 32, (3, 3), True, f32)       # depthwise, NHWC
    assert depthwise.use_direct(256, 256, 32, (3, 3), False, f32)    # ResNeXt g=32
    assert depthwise.use_direct(256, 256, 32, (3, 3), True, f32)     # the same, NHWC
    assert depthwise.use_direct(128, 128, 32, (3, 3), True, f64)     # Kg 4: whole vectors
    assert not depthwise.use_direct(128, 128, 32, (3, 3), True, f32)  # Kg 4 of 8 lanes
    assert not depthwise.use_direct(512, 512, 32, (3, 3), True, f32)  # Cg 16 NHWC: GEMM
    assert not depthwise.use_direct(96, 96, 2, (3, 3), False, f32)   # big groups: GEMM
    assert not depthwise.use_direct(8, 8, 1, (3, 3), False, f32)
    # Given the window: channels-first float32 groups of >= 8 input channels
    # with zero "same" columns go to the implicit convolution where its loads
    # are the and'ed ones (AMD Zen 4), and stay direct elsewhere.
    from convcpu import _core, _geometry
    same = _geometry.window((28, 28), (3, 3), 1, 1, 1)
    valid = _geometry.window((28, 28), (3, 3), 1, 1, 0)
    zen4 = _core.gemm_backend() == "convcpu" and _core.implicit_loads() == "and"
    assert depthwise.use_direct(256, 256, 32, (3, 3), False, f32, same) is not zen4
    assert depthwise.use_direct(256, 256, 32, (3, 3), False, f32, same, "reflect")
    assert depthwise.use_direct(256, 256, 32, (3, 3), False, f32, valid)  # columns lost
    assert depthwise.use_direct(256, 256, 32, (3, 3), False, f64, same)
    assert depthwise.use_direct(128, 128, 32, (3, 3), False, f32, same)  # Cg 4
    assert depthwise.use_direct(256, 256, 32, (3, 3), True, f32, same)  # NHWC
    one = _geometry.window((28, 28), (1, 1), 1, 1, 0)  # unpadded 1x1: stays direct
    assert depthwise.use_direct(256, 256, 32, (1, 1), False, f32, one)
    # at most _core.IMPLICIT_MAX_TAPS (the kernels' CG_TAPS) taps
    taps64 = _geometry.window((28, 28), (8, 8), 1, 1, "same")
    taps81 = _geometry.window((28, 28), (9, 9), 1, 1, 4)
    assert _core.IMPLICIT_MAX_TAPS == 64
    assert depthwise._implicit_takes_groups(8, taps64, "zeros", f32) is zen4
    assert not depthwise._implicit_takes_groups(8, taps81, "zeros", f32)


@pytest.mark.parametrize("seed", range(12))
def test_grouped_channels_first_both_routes(seed, monkeypatch):
    """Channels-first float32 grouped convolutions with groups of 8-24 input
    channels, on the direct kernel and (where it takes them: zero padding
    keeping every input column, the and'ed loads of AMD Zen 4) on the
    implicit convolution: both the reference's values, the input untouched.
    Strides, dilations, batches, 1-D and 2-D, uneven "same" pads."""
    rng = np.random.default_rng(700 + seed)
    nsp = 1 if seed % 4 == 3 else 2
    groups = int(rng.choice([2, 4, 8]))
    cg, kg = int(rng.integers(8, 25)), int(rng.integers(1, 33))
    # (a group's reduction cg*R*S <= DIRECT_MAX_REDUCTION: the direct kernel's)
    kernel = tuple(int(rng.integers(1, 4 if nsp == 2 else 6)) for _ in range(nsp))
    stride = tuple(int(rng.integers(1, 3)) for _ in range(nsp))
    dilation = tuple(int(rng.integers(1, 3)) for _ in range(nsp))
    spatial = tuple(int(rng.integers(4, 30)) for _ in range(nsp))
    x = rng.standard_normal((int(rng.integers(1, 4)), groups * cg) + spatial).astype(np.float32)
    w = rng.standard_normal((groups * kg, cg) + kernel).astype(np.float32)
    b = rng.standard_normal(groups * kg).astype(np.float32)
    op = convcpu.conv2d if nsp == 2 else convcpu.conv1d
    x_before = x.copy()
    expected = conv_reference(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64),
                              stride, _same_pads(spatial, kernel, stride, dilation), dilation,
                              groups)
    from convcpu import _core, _geometry
    window = _geometry.window(spatial, kernel, stride, dilation, "same")
    zen4 = _core.gemm_backend() == "convcpu" and _core.implicit_loads() == "and"
    results = []
    for min_in in (10 ** 9, 8):  # the direct kernel; then the implicit rule
        monkeypatch.setattr(depthwise, "GROUPED_IMPLICIT_MIN_IN", min_in)
        direct = depthwise.use_direct(groups * cg, groups * kg, groups, kernel, False,
                                      np.float32, window)
        assert direct is not (zen4 and min_in == 8 and not window.unpadded_1x1)
        results.append(op(x, w, b, stride, "same", dilation, groups))
    np.testing.assert_array_equal(x, x_before)
    for got in results:
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def _same_pads(spatial, kernel, stride, dilation):
    """TensorFlow's "same" pads (odd padding at the end), one pair an axis."""
    pads = []
    for n, k, s, d in zip(spatial, kernel, stride, dilation):
        total = max((-(-n // s) - 1) * s + (k - 1) * d + 1 - n, 0)
        pads.append((total // 2, total - total // 2))
    return tuple(pads)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_grouped_channels_last_direct_kernel(dtype):
    """Grouped NHWC convolutions with small groups (the direct kernel: vectors
    of a group's output channels, interior pixels eight at a time, border
    pixels one at a time) against the reference, over strides, dilations,
    padding forms and modes, widths around the interior blocks and 1-D."""
    rng = np.random.default_rng(21)
    lanes = 32 // np.dtype(dtype).itemsize
    cases = 0
    for trial in range(40):
        groups, cg = int(rng.integers(2, 5)), int(rng.integers(2, 9))
        kg = lanes * int(rng.integers(1, 3))
        H, W = int(rng.integers(1, 9)), int(rng.integers(1, 27))
        R, S = int(rng.integers(1, 4)), int(rng.integers(1, 5))
        stride = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
        dilation = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
        pads = tuple((int(rng.integers(0, 3)), int(rng.integers(0, 3))) for _ in range(2))
        mode = ("zeros", "reflect", "replicate", "circular")[trial % 4]
        if any(n + sum(p) < (k - 1) * d + 1
               for n, p, k, d in zip((H, W), pads, (R, S), dilation)):
            continue
        if mode in ("reflect", "circular") and any(max(p) >= n for n, p in zip((H, W), pads)):
            continue
        x = rng.standard_normal((int(rng.integers(1, 3)), H, W, groups * cg)).astype(dtype)
        w = rng.standard_normal((R, S, cg, groups * kg)).astype(dtype)
        b = rng.standard_normal(groups * kg).astype(dtype)
        assert depthwise.use_direct(groups * cg, groups * kg, groups, (R, S), True, dtype)
        got = convcpu.conv2d(x, w, b, stride, pads, dilation, groups, data_format="NHWC",
                             padding_mode=mode)
        w_oi = w.transpose(3, 2, 0, 1)
        expected = conv_reference(np.moveaxis(x, -1, 1), w_oi, b, stride, pads, dilation,
                                  groups, padding_mode=mode)
        assert_close(np.moveaxis(got, -1, 1), expected, dtype)
        cases += 1
    x1 = rng.standard_normal((2, 37, 24)).astype(dtype)  # conv1d, NLC
    w1 = rng.standard_normal((3, 4, 2 * lanes * 3)).astype(dtype)
    got = convcpu.conv1d(x1, w1, None, 1, 1, 2, 6, data_format="NLC")
    expected = conv_reference(np.moveaxis(x1, -1, 1), w1.transpose(2, 1, 0), None, 1, 1, 2, 6)
    assert_close(np.moveaxis(got, -1, 1), expected, dtype)
    assert cases >= 20


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_grouped_direct_kernel_pairs_of_groups(dtype, monkeypatch):
    """With as many input and output channels per group as a 32-byte vector
    has lanes (ResNeXt's 8 / 8 in float32), the direct grouped kernel runs
    two groups per 64-byte vector (a permute spreads each group's input
    channel over its half); an odd last group goes alone.  Against the
    reference, and (float32, on the own GEMM) against the im2col + GEMM route,
    whose sums run in the same order (bias, then r, s, ci): the same bits in
    the release build, where both fuse each multiply-add; to float32 rounding
    here, as a build at -O1 (tools/memcheck.sh) does not fuse the direct
    kernel's."""
    from convcpu import _core
    rng = np.random.default_rng(33)
    lanes = 32 // np.dtype(dtype).itemsize
    for trial in range(16):
        groups = 2 + trial % 6
        H, W = int(rng.integers(1, 7)), int(rng.integers(1, 30))
        R, S = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        stride = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
        dilation = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
        pads = tuple((int(rng.integers(0, 3)), int(rng.integers(0, 3))) for _ in range(2))
        if any(n + sum(p) < (k - 1) * d + 1
               for n, p, k, d in zip((H, W), pads, (R, S), dilation)):
            continue
        x = rng.standard_normal((int(rng.integers(1, 3)), H, W, groups * lanes)).astype(dtype)
        w = rng.standard_normal((R, S, lanes, groups * lanes)).astype(dtype)
        b = rng.standard_normal(groups * lanes).astype(dtype) if trial % 3 else None
        args = (stride, pads, dilation, groups)
        assert depthwise.use_direct(groups * lanes, groups * lanes, groups, (R, S), True, dtype)
        got = convcpu.conv2d(x, w, b, *args, data_format="NHWC")
        expected = conv_reference(np.moveaxis(x, -1, 1), w.transpose(3, 2, 0, 1), b, *args)
        assert_close(np.moveaxis(got, -1, 1), expected, dtype)
        if dtype == np.float32 and _core.gemm_backend() == "convcpu":
            with monkeypatch.context() as m:
                m.setattr(depthwise, "DIRECT_MAX_GROUP_IN_LAST", 0)
                gemm = convcpu.conv2d(x, w, b, *args, data_format="NHWC")
            np.testing.assert_allclose(got, gemm, rtol=1e-5, atol=1e-5)


def _at_offset(shape, dtype, offset, rng):
    """A C-contiguous array of `shape` whose data starts `offset` bytes past a
    64-byte boundary (NumPy itself aligns to 16 bytes only)."""
    n = int(np.prod(shape))
    itemsize = np.dtype(dtype).itemsize
    buf = np.empty(n + 128 // itemsize, dtype)
    start = (-buf.ctypes.data % 64 + offset) // itemsize
    x = buf[start:start + n].reshape(shape)
    x[...] = rng.standard_normal(shape)
    assert x.ctypes.data % 64 == offset
    return x


def _band_operands(rng, shape, channels, k, dtype, offset, trial):
    """x of `shape` starting `offset` bytes past a line (an inf and a NaN when
    trial % 6 == 0), a (k, k, channels, 1) weight, and a bias on odd trials."""
    x = _at_offset(shape, dtype, offset, rng)
    if trial % 6 == 0:
        x[0, 0, 0, 0] = np.inf
        x[-1, -1, -1, -1] = np.nan
    w = rng.standard_normal((k, k, channels, 1)).astype(dtype)
    b = rng.standard_normal(channels).astype(dtype) if trial % 2 else None
    return x, w, b


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_depthwise_band_kernel_is_the_row_sum(dtype, monkeypatch):
    """Channels-last depthwise convolutions with a multiplier of 1 and a 3x3
    or 5x5 kernel run a band of rows a vector of channels at a time
    (CONVCPU_DW_FIXED), their vectors aligned on the input's 64-byte lines
    when a pixel is whole lines (a head and a tail in half and quarter
    vectors, at stride 1 the interior ones as one vector across two pixels;
    the rest one channel at a time).  The same sums in the same
    order as the row kernel, so the same bits, and the reference's values:
    inputs starting 0, 16, 32, 48 bytes past a line (and 4: no alignment),
    channels in whole lines or not, strides 1-3 (1 and 2 by input columns,
    3 tap by tap), dilations, uneven and "same" padding, images narrower than
    the kernel's interior, bias or none, an inf and a NaN."""
    rng = np.random.default_rng(808)
    itemsize = np.dtype(dtype).itemsize
    for trial in range(40):
        k = 3 if trial % 3 else 5
        lanes = 64 // itemsize
        C = lanes * int(rng.integers(1, 5)) if trial % 4 else int(rng.integers(1, 3 * lanes))
        offset = (0, 16, 32, 48, 4 if itemsize == 4 else 8)[trial % 5]
        H, W = int(rng.integers(1, 13)), int(rng.integers(1, 40))
        stride = (int(rng.integers(1, 3)), (1, 2, 3)[trial // 2 % 3])
        dilation = (int(rng.integers(1, 3)), 2 if trial % 4 == 0 or trial % 7 == 2 else 1)
        pads = "same" if trial % 2 else tuple(
            (int(rng.integers(0, 4)), int(rng.integers(0, 4))) for _ in range(2))
        if pads != "same" and any(n + sum(p) < (k - 1) * d + 1
                                  for n, p, d in zip((H, W), pads, dilation)):
            continue
        x, w, b = _band_operands(rng, (int(rng.integers(1, 3)), H, W, C), C, k, dtype, offset,
                                 trial)
        x_before = x.copy()
        args = dict(stride=stride, padding=pads, dilation=dilation)
        band = convcpu.depthwise_conv2d(x, w, b, **args)
        with monkeypatch.context() as m:
            m.setattr(_direct, "USE_DW_FIXED", False)
            row = convcpu.depthwise_conv2d(x, w, b, **args)
        np.testing.assert_array_equal(x, x_before)
        np.testing.assert_array_equal(band.view(np.uint8), row.view(np.uint8))
        if trial % 6:
            expected = conv_reference(np.moveaxis(x, -1, 1), w.transpose(2, 3, 0, 1), b,
                                      stride, explicit_pads(pads, (H, W), (k, k), stride,
                                                            dilation), dilation, C)
            assert_close(np.moveaxis(band, -1, 1), expected, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_depthwise_channels_last_bands_within_l2(dtype, monkeypatch):
    """A channels-last depthwise convolution whose band of input rows (all
    channels) would not fit in L2 runs in more bands than cores (depthwise
    L2_BYTES, made small here): each band's halo rows are read again, and the
    result is the reference's, the same bits on 1 and 2 threads and as with
    the real L2 (one band per image here)."""
    rng = np.random.default_rng(77)
    for stride, k, H in ((1, 3, 23), (2, 3, 31), (2, 5, 18), (1, 5, 9)):
        x = rng.standard_normal((2, H, 40, 32)).astype(dtype)
        w = rng.standard_normal((k, k, 32, 1)).astype(dtype)
        b = rng.standard_normal(32).astype(dtype)
        args = dict(stride=stride, padding="same")
        whole = convcpu.depthwise_conv2d(x, w, b, num_threads=2, **args)
        with monkeypatch.context() as m:
            m.setattr(depthwise, "L2_BYTES", 32 * 1024)
            window = depthwise._geometry.window((H, 40), (k, k), stride, 1, "same")
            band = depthwise._band(window, 2, 1, 32, 32, x.itemsize, True, False)
            assert band < -(-window.Ho // 2), (stride, k, band)
            runs = [convcpu.depthwise_conv2d(x, w, b, num_threads=t, **args) for t in (1, 2)]
            # the calls ran those bands (run_direct keeps them per window)
            assert (window.derived.get(("direct", 2, 32, 32, 32, x.itemsize, True, False,
                                        depthwise.BAND_BYTES, 32 * 1024,
                                        depthwise._core.MIN_TASKS))[1] == band)
        for got in runs:
            np.testing.assert_array_equal(got, whole)
        expected = conv_reference(np.moveaxis(x, -1, 1), w.transpose(2, 3, 0, 1), b, stride,
                                  explicit_pads("same", (H, 40), (k, k), (stride,) * 2, (1, 1)),
                                  1, 32)
        assert_close(np.moveaxis(whole, -1, 1), expected, dtype)


def _depthwise_or_separable(rng, trial, x, w, b, args):
    """A call of the band tests: trial % 7 == 3 the separable convolution
    (its depthwise step on the same kernels; pointwise to 3 channels, no
    bias), else depthwise_conv2d."""
    if trial % 7 == 3:
        pw = rng.standard_normal((w.shape[2], 3)).astype(w.dtype)
        return lambda: convcpu.separable_conv2d(x, w, pw, None, **args)
    return lambda: convcpu.depthwise_conv2d(x, w, b, **args)


@pytest.mark.parametrize("dtype", DTYPES)
def test_depthwise_plane_kernel_is_the_gathered_sum(dtype, monkeypatch):
    """Channels-first depthwise convolutions with a multiplier of 1, a 3x3 or
    5x5 kernel, strides 1 and 2 and output rows of at least a vector run a
    band of a plane on CONVCPU_DWC: rows gathered in whole aligned vectors (an
    inner vector loaded, the edges' vectors permuted and masked, stride 2
    split into its two phases), then NR rows x JB vectors at a time from
    shuffles of aligned loads (other dilations and mixed strides tap by tap),
    the last vector of a row stored in part.  The same sums in the same order
    as the gathered band on the row kernel, so the same bits, and the
    reference's values: rows around one to three vectors wide, uneven and
    wide padding (whole vectors of zeros), every padding mode, inputs at
    odd offsets, bias or none, an inf and a NaN, one or two threads, and the
    separable convolution's depthwise step."""
    rng = np.random.default_rng(909)
    itemsize = np.dtype(dtype).itemsize
    lanes = 64 // itemsize
    modes = ("zeros", "reflect", "replicate", "circular")
    for trial in range(48):
        k = 3 if trial % 3 else 5
        stride = ((1, 1), (2, 2), (1, 2), (2, 1))[trial % 4]
        dilation = (1, 1) if trial % 5 else (1 + trial % 2, 2)
        mode = modes[trial % 4] if trial % 8 < 4 else "zeros"
        H = int(rng.integers(1 if mode == "zeros" else 6, 10))
        W = int(rng.integers(stride[1] * lanes - 2, 3 * stride[1] * lanes + 6))
        wide = mode == "zeros" and trial % 6 == 1
        if trial % 2:
            pads = "same"
        else:
            limit = min(H, W) if mode in ("reflect", "circular") else 4
            pads = tuple((int(rng.integers(0, limit)), int(rng.integers(0, limit)))
                         for _ in range(2))
            if wide:
                pads = (pads[0], (lanes + 1, lanes + 3))
        if pads != "same" and any(n + sum(p) < (k - 1) * d + 1
                                  for n, p, d in zip((H, W), pads, dilation)):
            continue
        C = int(rng.integers(1, 5))
        x, w, b = _band_operands(rng, (int(rng.integers(1, 3)), C, H, W), C, k, dtype,
                                 (0, 1, 2, 7)[trial % 4] * itemsize, trial)
        x_before = x.copy()
        args = dict(stride=stride, padding=pads, dilation=dilation, data_format="NCHW",
                    padding_mode=mode, num_threads=1 + trial % 2)
        run = _depthwise_or_separable(rng, trial, x, w, b, args)
        plane = run()
        with monkeypatch.context() as m:
            m.setattr(_direct, "USE_DWC_FIXED", False)
            gathered = run()
        np.testing.assert_array_equal(x, x_before)
        np.testing.assert_array_equal(plane.view(np.uint8), gathered.view(np.uint8))
        if trial % 6 and trial % 7 != 3:
            expected = depthwise_reference(x, w, b, stride,
                                           explicit_pads(pads, (H, W), (k, k), stride,
                                                         dilation), dilation, mode)
            assert_close(plane, expected, dtype)


def test_depthwise_masked_plane_kernel_is_the_gathered_sum(monkeypatch):
    """Channels-first float32 depthwise convolutions with a 3x3 or 5x5 kernel
    at strides 1x1 and 2x2, dilation 1 and columns padded with zeros run on
    convcpu_dwc512 on AVX-512 CPUs: loads straight from the plane, the
    image's edges masked out of them, rows of padding read from a row of
    zeros.  The same bits as CONVCPU_DWC (or, where its geometry does not
    fit, the gathered band on the row kernel) and as the row kernel, and the
    reference's values: rows from 1 pixel to five vectors wide (every fifth
    trial 49-64 output columns: one block of four vectors), padding wider
    than a vector, "valid", rows padded by reflection (the columns then go
    to the gathered kernels), inputs at odd offsets, bias or none, an inf and
    a NaN, one or two threads, 1-pixel images, and the separable
    convolution's depthwise step.  Rows of at most 8 output columns (every
    third trial) run on the 8-lane kernels where they are the default (AMD
    Zen 4), and give the same bits on the 16-lane ones."""
    rng = np.random.default_rng(1010)
    for trial in range(96):
        k = 3 if trial % 3 else 5
        s = 1 + trial % 2
        H, W = int(rng.integers(1, 12)), int(rng.integers(1, 5 * 16 * s + 6))
        if trial % 5 == 1:
            W = int(rng.integers(49, 65)) * s
        elif trial % 3 == 2:
            W = int(rng.integers(1, 8 * s + 4))
        if trial % 9 == 4:
            H = W = 1
        if trial % 4 == 0:
            pads = "same"
        elif trial % 4 == 1:
            pads = "valid"
        else:
            pads = tuple((int(rng.integers(0, 4)), int(rng.integers(0, 4))) for _ in range(2))
            if trial % 8 == 2:
                pads = (pads[0], (17, 19))
        if pads != "same" and any(n + sum(p) < k for n, p in
                                  zip((H, W), pads if pads != "valid" else ((0, 0),) * 2)):
            continue
        mode = "reflect" if trial % 10 == 7 and pads != "valid" and min(H, W) > 4 else "zeros"
        C = int(rng.integers(1, 5))
        x, w, b = _band_operands(rng, (int(rng.integers(1, 3)), C, H, W), C, k, np.float32,
                                 (0, 1, 2, 7)[trial % 4] * 4, trial)
        x_before = x.copy()
        args = dict(stride=s, padding=pads, data_format="NCHW", padding_mode=mode,
                    num_threads=1 + trial % 2)
        run = _depthwise_or_separable(rng, trial, x, w, b, args)
        masked = run()
        lanes = _direct.dwc512_narrow_lanes()
        try:
            _direct.dwc512_narrow_lanes(24 - lanes)  # the other one (where it runs)
            other_lanes = run()
        finally:
            _direct.dwc512_narrow_lanes(lanes)
        with monkeypatch.context() as m:
            m.setattr(_direct, "USE_DWC512", False)
            gathered = run()
            m.setattr(_direct, "USE_DWC_FIXED", False)
            row = run()
        np.testing.assert_array_equal(x, x_before)
        np.testing.assert_array_equal(masked.view(np.uint8), other_lanes.view(np.uint8))
        np.testing.assert_array_equal(masked.view(np.uint8), gathered.view(np.uint8))
        np.testing.assert_array_equal(masked.view(np.uint8), row.view(np.uint8))
        if trial % 6 and trial % 7 != 3:
            expected = depthwise_reference(
                x, w, b, s, explicit_pads(pads, (H, W), (k, k), (s, s), (1, 1)), 1, mode)
            assert_close(masked, expected, np.float32)


def test_dwc512_narrow_lanes_switch():
    """The switch names its argument on a bad value and keeps its setting."""
    lanes = _direct.dwc512_narrow_lanes()
    assert lanes in (8, 16)
    with pytest.raises(ValueError, match="lanes must be 8 or 16"):
        _direct.dwc512_narrow_lanes(12)
    assert _direct.dwc512_narrow_lanes() == lanes


def test_conv1d_depthwise():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 6, 30))
    w = rng.standard_normal((12, 1, 5))
    expected = conv_reference(x, w, None, 2, ((2, 2),), 1, 6)
    assert_close(convcpu.conv1d(x, w, None, 2, 2, groups=6), expected, np.float64)
    got = convcpu.conv1d(np.moveaxis(x, 1, -1), w.transpose(2, 1, 0), None, 2, 2, groups=6,
                         data_format="NLC")
    assert_close(np.moveaxis(got, -1, 1), expected, np.float64)


def test_seed004_example():
    x = np.array([2, 5, 3, 3, 8, 2, 6, 1, 1, 2, 5, 4, 7, 9, 2, 3, -1, 3],
                 np.float32).reshape(1, 3, 3, 2)
    k = np.array([3, 1, -2, 2, -1, -3, 4, 5], np.float32).reshape(2, 2, 2, 1)
    expected = np.array([[[-2, 18], [12, 21]], [[17, -7], [-13, 16]]], np.float32)
    np.testing.assert_array_equal(convcpu.depthwise_conv2d(x, k, None, 1, "valid")[0], expected)
    # conv2d on each channel separately, as the seed explains, is the same thing.
    per_channel = [convcpu.conv2d(x[..., c:c + 1], k[:, :, c:c + 1], data_format="NHWC")
                   for c in range(2)]
    np.testing.assert_array_equal(np.concatenate(per_channel, -1)[0], expected)


@pytest.mark.parametrize("channels_last", [False, True])
def test_batch0_unbatched_out_and_awkward_inputs(channels_last):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 6, 9, 10)).astype(np.float32)
    w = rng.standard_normal((3, 3, 6, 2)).astype(np.float32)
    b = rng.standard_normal(12).astype(np.float32)
    fmt = "NHWC" if channels_last else "NCHW"
    xin = np.ascontiguousarray(to_channels_last(x)) if channels_last else x
    expected = convcpu.depthwise_conv2d(xin, w, b, 2, "same", data_format=fmt)
    empty = convcpu.depthwise_conv2d(xin[:0], w, b, 2, "same", data_format=fmt)
    assert empty.shape == (0,) + expected.shape[1:]
    single = convcpu.depthwise_conv2d(xin[1], w, b, 2, "same", data_format=fmt)
    np.testing.assert_array_equal(single, expected[1])
    out = np.empty_like(expected)
    assert convcpu.depthwise_conv2d(xin, w, b, 2, "same", data_format=fmt, out=out) is out
    np.testing.assert_array_equal(out, expected)
    for name, variant in awkward_variants(xin).items():
        np.testing.assert_array_equal(
            convcpu.depthwise_conv2d(variant, w, b, 2, "same", data_format=fmt), expected, name)
    for name, variant in awkward_variants(w).items():
        np.testing.assert_array_equal(
            convcpu.depthwise_conv2d(xin, variant, b, 2, "same", data_format=fmt), expected, name)
    copies = [a.copy() for a in (xin, w, b)]
    convcpu.separable_conv2d(xin, w, rng.standard_normal((12, 4)), b[:4], 1, 1, data_format=fmt)
    for before, after in zip(copies, (xin, w, b)):
        np.testing.assert_array_equal(before, after)


def test_uint8_image_promotes():
    img = np.arange(2 * 8 * 8 * 3, dtype=np.uint8).reshape(2, 8, 8, 3)
    w = np.ones((3, 3, 3, 1), np.float32)
    got = convcpu.depthwise_conv2d(img, w, None, 1, 1)
    assert got.dtype == np.float32
    assert_close(np.moveaxis(got, -1, 1),
                 depthwise_reference(np.moveaxis(img, -1, 1).astype(np.float64), w, None, 1, 1),
                 np.float32)


@pytest.mark.parametrize("channels_last", [False, True])
def test_results_independent_of_thread_count(channels_last):
    rng = np.random.default_rng(6)
    fmt = "NHWC" if channels_last else "NCHW"
    x = rng.standard_normal((1, 37, 45, 16) if channels_last else (1, 16, 37, 45)).astype(
        np.float32)
    w = rng.standard_normal((3, 3, 16, 2)).astype(np.float32)
    wp = rng.standard_normal((32, 24)).astype(np.float32)
    wg = rng.standard_normal((32, 4, 3, 3)).astype(np.float32)
    wg = wg.transpose(2, 3, 1, 0) if channels_last else wg
    runs = [(convcpu.depthwise_conv2d(x, w, None, 1, 1, data_format=fmt, num_threads=t),
             convcpu.separable_conv2d(x, w, wp, None, 2, 1, data_format=fmt, num_threads=t),
             convcpu.conv2d(x, wg, None, 1, 1, 1, 4, data_format=fmt, num_threads=t))
            for t in (1, 2, 3, 4)]
    for run in runs[1:]:
        for got, want in zip(run, runs[0]):
            np.testing.assert_array_equal(got, want)


def test_bad_inputs():
    x = np.zeros((1, 8, 8, 4), np.float32)
    with pytest.raises(ValueError, match=r"weight .* has C=3; x .* has 4 channels"):
        convcpu.depthwise_conv2d(x, np.zeros((3, 3, 3, 1)))
    with pytest.raises(ValueError, match="weight must be 4-D"):
        convcpu.depthwise_conv2d(x, np.zeros((3, 3, 4)))
    with pytest.raises(ValueError, match="empty kernel or depth multiplier"):
        convcpu.depthwise_conv2d(x, np.zeros((3, 3, 4, 0)))
    with pytest.raises(ValueError, match=r"bias must have shape \(8,\)"):
        convcpu.depthwise_conv2d(x, np.zeros((3, 3, 4, 2)), np.zeros(4))
    with pytest.raises(ValueError, match=r"pointwise_weight must have shape \(1, 1, 8, K_out\)"):
        convcpu.separable_conv2d(x, np.zeros((3, 3, 4, 2)), np.zeros((1, 1, 4, 5)))
    with pytest.raises(ValueError, match="depthwise_weight .* has C=2"):
        convcpu.separable_conv2d(x, np.zeros((3, 3, 2, 1)), np.zeros((2, 5)))
    with pytest.raises(ValueError, match="too small"):
        convcpu.depthwise_conv2d(x, np.zeros((9, 3, 4, 1)))
    with pytest.raises(ValueError, match="data_format"):
        convcpu.depthwise_conv2d(x, np.zeros((3, 3, 4, 1)), data_format="NCL")
    with pytest.raises(TypeError):
        convcpu.separable_conv2d(x, np.zeros((3, 3, 4, 1)), np.zeros((4, 2), complex))
    # The library still works after each error.
    assert convcpu.depthwise_conv2d(x, np.ones((3, 3, 4, 1))).shape == (1, 6, 6, 4)


# Oracles ---------------------------------------------------------------------------

def test_against_torch_groups_equal_channels():
    torch = optional("torch")
    rng = np.random.default_rng(7)
    for trial in range(30):
        c = int(rng.integers(1, 20))
        m = int(rng.integers(1, 4))
        r, s = (int(v) for v in rng.integers(1, 6, 2))
        stride = tuple(int(v) for v in rng.integers(1, 4, 2))
        dilation = tuple(int(v) for v in rng.integers(1, 3, 2))
        padding = tuple(int(v) for v in rng.integers(0, 3, 2))
        h = int(rng.integers(dilation[0] * (r - 1) + 1, 30))
        w_ = int(rng.integers(dilation[1] * (s - 1) + 1, 40))
        dtype = (np.float32, np.float64)[trial % 2]
        x = rng.standard_normal((int(rng.integers(1, 3)), c, h, w_)).astype(dtype)
        w = rng.standard_normal((c * m, 1, r, s)).astype(dtype)
        b = rng.standard_normal(c * m).astype(dtype)
        expected = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w),
                                              torch.from_numpy(b), stride, padding, dilation,
                                              c).numpy()
        assert_close(convcpu.conv2d(x, w, b, stride, padding, dilation, c), expected, dtype)
        got = convcpu.conv2d(to_channels_last(x), w.transpose(2, 3, 1, 0), b, stride, padding,
                             dilation, c, data_format="NHWC")
        assert_close(np.moveaxis(got, -1, 1), expected, dtype)


def test_against_torch_resnext_grouped():
    torch = optional("torch")
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 64, 15, 15)).astype(np.float32)
    w = rng.standard_normal((64, 2, 3, 3)).astype(np.float32)
    expected = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), None, 2, 1,
                                          1, 32).numpy()
    assert_close(convcpu.conv2d(x, w, None, 2, 1, 1, 32), expected, np.float32)


def _tf():
    tf = optional("tensorflow")
    return tf


@pytest.mark.parametrize("padding,stride,rate", [
    ("SAME", 2, 1), ("SAME", 1, 2), ("VALID", 1, 1), ("VALID", 3, 1), ("SAME", 1, 1),
    ("VALID", 1, 3)])
@pytest.mark.parametrize("multiplier", [1, 2, 3])
def test_against_tensorflow(padding, stride, rate, multiplier):
    tf = _tf()
    rng = np.random.default_rng(stride * 10 + rate + multiplier)
    x = rng.standard_normal((2, 13, 10, 5)).astype(np.float32)
    w = rng.standard_normal((3, 3, 5, multiplier)).astype(np.float32)
    wp = rng.standard_normal((1, 1, 5 * multiplier, 7)).astype(np.float32)
    strides, dilations = [1, stride, stride, 1], [rate, rate]
    expected = tf.nn.depthwise_conv2d(x, w, strides, padding, dilations=dilations).numpy()
    got = convcpu.depthwise_conv2d(x, w, None, stride, padding.lower(), rate)
    assert got.shape == expected.shape
    assert_close(got, expected, np.float32)
    got_nchw = convcpu.depthwise_conv2d(np.moveaxis(x, -1, 1), w, None, stride, padding.lower(),
                                        rate, data_format="NCHW")
    assert_close(np.moveaxis(got_nchw, 1, -1), expected, np.float32)
    expected = tf.nn.separable_conv2d(x, w, wp, strides, padding, dilations=dilations).numpy()
    assert_close(convcpu.separable_conv2d(x, w, wp, None, stride, padding.lower(), rate),
                 expected, np.float32)
    got_nchw = convcpu.separable_conv2d(np.moveaxis(x, -1, 1), w, wp, None, stride,
                                        padding.lower(), rate, data_format="NCHW")
    assert_close(np.moveaxis(got_nchw, 1, -1), expected, np.float32)


def test_against_keras_separable_layer_with_bias():
    optional("tensorflow")
    tf_keras = optional("tf_keras")
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 12, 12, 6)).astype(np.float32)
    layer = tf_keras.layers.SeparableConv2D(10, 3, strides=2, padding="same", depth_multiplier=2,
                                            bias_initializer="random_normal")
    expected = layer(x).numpy()
    wd, wp, bias = (v.numpy() for v in layer.weights)
    assert_close(convcpu.separable_conv2d(x, wd, wp, bias, 2, "same"), expected, np.float32)


@pytest.mark.parametrize("op", ["depthwise", "separable"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_repeated_call_takes_the_cached_front(op, channels_last, monkeypatch):
    """A depthwise_conv2d / separable_conv2d call like an earlier one skips
    the shape checks (depthwise._CALLS) and gives the same bits as the first
    call and the reference, with out= or without, batched or not, for any
    array of that shape (new values, strided, byte-swapped); out= is still
    checked for its memory on every call."""
    rng = np.random.default_rng(41)
    c, m, k = 5, 2, 7
    wd = rng.standard_normal((3, 3, c, m))
    wp = rng.standard_normal((1, 1, c * m, k)) if op == "separable" else None
    bias = rng.standard_normal(k if op == "separable" else c * m)
    layout = "NHWC" if channels_last else "NCHW"
    kwargs = dict(stride=(2, 1), padding=((1, 0), (2, 1)), data_format=layout)
    pads = ((1, 0), (2, 1))

    def call(x, out=None):
        if op == "separable":
            return convcpu.separable_conv2d(x, wd, wp, bias, out=out, **kwargs)
        return convcpu.depthwise_conv2d(x, wd, bias, out=out, **kwargs)

    checked = []  # the calls that took every check (they allocate their output there)
    real = _arrays.allocate_output
    depthwise._CALLS.clear()
    monkeypatch.setattr(_arrays, "allocate_output", lambda *a: checked.append(a) or real(*a))
    for unbatched in (False, True):
        shape = (c, 6, 8)
        if not unbatched:
            shape = (2,) + shape
        base = [rng.standard_normal(shape) for _ in range(2)]
        big = rng.standard_normal(shape[:-1] + (2 * shape[-1],))
        base.append(big[..., ::2])
        base.append(base[0].astype(base[0].dtype.newbyteorder()))
        for x_nchw in base:
            xb = np.asarray(x_nchw, np.float64)
            xb = xb if not unbatched else xb[None]
            expected = (separable_reference(xb, wd, wp, bias, (2, 1), pads) if op == "separable"
                        else depthwise_reference(xb, wd, bias, (2, 1), pads))
            if unbatched:
                expected = expected[0]
            x = x_nchw
            if channels_last:
                x = np.moveaxis(x_nchw, -3, -1)
                expected = np.moveaxis(expected, -3, -1)
            got = [call(x) for _ in range(3)]
            out = np.full(expected.shape, np.nan)
            got += [call(x, out).copy() for _ in range(2)]
            for g in got:
                assert_close(g, expected, np.float64)
                np.testing.assert_array_equal(g, got[0])
    # batched or not x (float64 / byte-swapped) x (out= / none): one checked
    # call each of 40
    assert len(depthwise._CALLS) == len(checked) == 8
    x = np.moveaxis(base[0], -3, -1) if channels_last else base[0]
    x = np.ascontiguousarray(x)
    good = np.empty(expected.shape)
    call(x, good)
    call(x, good)
    readonly = np.empty(expected.shape)
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        call(x, readonly)
    with pytest.raises(ValueError, match="C-contiguous"):
        call(x, np.empty(expected.shape[:-1] + (2 * expected.shape[-1],))[..., ::2])
    alias = np.empty(x.size + good.size)
    x_alias = alias[:x.size].reshape(x.shape)
    x_alias[...] = x
    call(x_alias, np.empty(good.shape))
    with pytest.raises(ValueError, match="overlap x"):
        call(x_alias, alias[x.size - 1:x.size - 1 + good.size].reshape(good.shape))
