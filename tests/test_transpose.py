"""conv_transpose1d / conv_transpose2d and col2im against the NumPy reference,
torch, TensorFlow and the ONNX reference implementation; seed 003's examples."""
import numpy as np
import pytest
from conftest import assert_close, awkward_variants, optional, to_channels_last

import convcpu
from convcpu import transpose
from convcpu._reference import col2im_reference, conv_transpose_reference

DTYPES = [np.float32, np.float64]

# (N, C_in, C_out, spatial, kernel, stride, padding, output_padding, dilation, groups)
GEOMETRIES_2D = [
    (2, 3, 4, (5, 6), (3, 3), (1, 1), 1, 0, (1, 1), 1),
    (1, 4, 6, (4, 5), (4, 4), (2, 2), 1, 0, (1, 1), 2),          # DCGAN-like
    (2, 6, 3, (3, 4), (2, 2), (2, 2), 0, 0, (1, 1), 3),          # U-Net-like, stride == kernel
    (1, 2, 5, (4, 3), (3, 2), (3, 2), ((1, 0), (0, 1)), (2, 1), (1, 1), 1),
    (1, 2, 2, (3, 3), (2, 1), (4, 3), 0, (1, 2), (1, 1), 1),     # stride > kernel: bias-only phases
    (2, 4, 4, (5, 4), (3, 3), (2, 2), 2, (1, 1), (2, 3), 2),     # dilated and strided
    (1, 1, 1, (1, 1), (1, 1), (1, 1), 0, 0, (1, 1), 1),
    (1, 3, 8, (1, 1), (3, 3), (2, 2), 0, 1, (1, 1), 1),          # 1-pixel input
    (1, 16, 32, (7, 7), (3, 3), (1, 2), ((2, 0), (1, 1)), (0, 3), (1, 1), 1),
    (1, 2, 3, (3, 4), (3, 3), (2, 1), 1, (3, 2), (1, 1), 1),     # output_padding > stride (ONNX)
]
GEOMETRIES_1D = [
    (2, 3, 5, (9,), (4,), (2,), (1,), 0, (1,), 1),
    (1, 4, 4, (7,), (3,), (3,), ((0, 2),), (2,), (2,), 2),
    (3, 6, 3, (5,), (1,), (1,), 0, 0, (1,), 3),
]


def _case(rng, geometry, dtype):
    n, cin, cout, spatial, kernel, stride, padding, output_padding, dilation, groups = geometry
    x = rng.standard_normal((n, cin) + spatial).astype(dtype)
    w = rng.standard_normal((cin, cout // groups) + kernel).astype(dtype)
    b = rng.standard_normal(cout).astype(dtype)
    return x, w, b


def _pairs(padding, nsp):
    if isinstance(padding, int):
        return ((padding, padding),) * nsp
    return tuple((p, p) if isinstance(p, int) else p for p in padding)


def _weight_last(w):
    """IOHW -> HWOI (TensorFlow's conv2d_transpose filter); IOW -> WOI."""
    return np.moveaxis(np.moveaxis(w, 0, -1), 0, -2)


def _run(x, w, b, geometry, channels_last, **kwargs):
    stride, padding, output_padding, dilation, groups = geometry[5:]
    nsp = x.ndim - 2
    op = convcpu.conv_transpose2d if nsp == 2 else convcpu.conv_transpose1d
    if channels_last:
        fmt = "NHWC" if nsp == 2 else "NLC"
        got = op(to_channels_last(x), _weight_last(w), b, stride, padding, output_padding,
                 groups, dilation, data_format=fmt, **kwargs)
        return np.moveaxis(got, -1, 1)
    return op(x, w, b, stride, padding, output_padding, groups, dilation, **kwargs)


@pytest.fixture(params=["chosen", "phases", "columns"])
def algorithm(request, monkeypatch):
    """Run with the algorithm convcpu picks, then with each one forced."""
    if request.param != "chosen":
        monkeypatch.setattr(transpose, "_algorithm", lambda *args: request.param)
    return request.param


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("channels_last", [False, True], ids=["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("geometry", GEOMETRIES_2D + GEOMETRIES_1D, ids=str)
def test_matches_reference(geometry, dtype, channels_last, threads, algorithm):
    rng = np.random.default_rng(abs(hash(geometry)) % 2**32)
    x, w, b = _case(rng, geometry, dtype)
    got = _run(x, w, b, geometry, channels_last, num_threads=threads)
    assert got.dtype == dtype
    expected = conv_transpose_reference(x, w, b, geometry[5], _pairs(geometry[6], x.ndim - 2),
                                        geometry[7], geometry[8], geometry[9])
    assert got.shape == expected.shape
    assert_close(got, expected, dtype)


@pytest.mark.parametrize("seed", range(40))
def test_random_geometry_against_torch(seed, algorithm):
    torch = optional("torch")
    rng = np.random.default_rng(seed)
    groups = int(rng.integers(1, 4))
    nsp = 1 + seed % 2
    spatial = tuple(int(v) for v in rng.integers(1, 8, nsp))
    kernel = tuple(int(v) for v in rng.integers(1, 5, nsp))
    stride = tuple(int(v) for v in rng.integers(1, 4, nsp))
    dilation = tuple(int(v) for v in rng.integers(1, 3, nsp))
    padding = tuple(int(min(rng.integers(0, 3), d * (k - 1))) for d, k in zip(dilation, kernel))
    output_padding = tuple(int(rng.integers(0, max(s, d))) for s, d in zip(stride, dilation))
    dtype = DTYPES[seed % 4 == 0]
    x = rng.standard_normal((int(rng.integers(0, 3)), groups * int(rng.integers(1, 4))) + spatial)
    w = rng.standard_normal((x.shape[1], int(rng.integers(1, 4))) + kernel)
    b = rng.standard_normal(w.shape[1] * groups)
    x, w, b = x.astype(dtype), w.astype(dtype), b.astype(dtype)
    fn = torch.nn.functional.conv_transpose2d if nsp == 2 else torch.nn.functional.conv_transpose1d
    expected = fn(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), stride, padding,
                  output_padding, groups, dilation).numpy()
    geometry = (None,) * 5 + (stride, padding, output_padding, dilation, groups)
    for channels_last in (False, True):
        got = _run(x, w, b, geometry, channels_last)
        assert got.shape == expected.shape
        assert_close(got, expected, dtype)


@pytest.mark.parametrize("seed", range(24))
def test_wide_rows_columns_col2im(seed, monkeypatch):
    """The columns algorithm's col2im adds kernel columns in blocks of the
    stride, interleaved along rows long enough for its vector loop; blocks cut
    by asymmetric pads, a last partial block (S not a multiple of the stride)
    and S < stride go tap by tap.  Kernel rows that do not overlap (R <=
    stride) cut the input rows into bands that own disjoint output rows, pads
    and output_padding included.  Against the reference, both dtypes."""
    monkeypatch.setattr(transpose, "_algorithm", lambda *args: "columns")
    rng = np.random.default_rng(500 + seed)
    kernel = (int(rng.integers(1, 4)), int(rng.integers(1, 7)))
    stride = (int(rng.integers(1, 4)), int(rng.integers(1, 5)))
    pads = tuple((int(rng.integers(0, k)), int(rng.integers(0, k))) for k in kernel)
    output_padding = tuple(int(rng.integers(0, s)) for s in stride)
    dtype = DTYPES[seed % 2]
    x = rng.standard_normal((int(rng.integers(1, 3)), 3, int(rng.integers(1, 20)),
                             int(rng.integers(17, 41))))
    w = rng.standard_normal((3, 2) + kernel)
    b = rng.standard_normal(2)
    x, w, b = x.astype(dtype), w.astype(dtype), b.astype(dtype)
    got = convcpu.conv_transpose2d(x, w, b, stride, pads, output_padding)
    expected = conv_transpose_reference(x, w, b, stride, pads, output_padding, (1, 1), 1)
    assert got.shape == expected.shape
    assert_close(got, expected, dtype)


@pytest.mark.parametrize("seed", range(12))
def test_kernel_equal_to_stride_stores_each_output_once(seed, monkeypatch):
    """A kernel equal to the stride with no padding (U-Net's 2x2/2) tiles the
    output: every element gets exactly one tap, and the col2im stores bias +
    value instead of filling the bias and adding (p.tiles).  Against the
    reference, with and without bias, groups, batch 1-3, 1-D and NaN/Inf in
    the input (they stay where the reference has them)."""
    monkeypatch.setattr(transpose, "_algorithm", lambda *args: "columns")
    rng = np.random.default_rng(700 + seed)
    dtype = DTYPES[seed % 2]
    kernel = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    groups = 1 + seed % 2
    x = rng.standard_normal((int(rng.integers(1, 4)), 2 * groups, int(rng.integers(1, 9)),
                             int(rng.integers(1, 40)))).astype(dtype)
    x[0, 0, 0, 0] = np.nan
    x[-1, -1, -1, -1] = np.inf
    w = rng.standard_normal((2 * groups, 3) + kernel).astype(dtype)
    b = rng.standard_normal(3 * groups).astype(dtype) if seed % 3 else None
    got = convcpu.conv_transpose2d(x, w, b, kernel, groups=groups)
    expected = conv_transpose_reference(x, w, b, kernel, 0, 0, (1, 1), groups)
    assert got.shape == expected.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    finite = np.isfinite(expected)
    np.testing.assert_array_equal(got[~finite], expected[~finite])
    assert_close(np.where(finite, got, 0), np.where(finite, expected, 0), dtype)
    got1 = convcpu.conv_transpose1d(x[:, :, 0], w[:, :, 0], b, kernel[1], groups=groups)
    expected1 = conv_transpose_reference(x[:, :, 0], w[:, :, 0], b, kernel[1], 0, 0, (1,),
                                         groups)
    np.testing.assert_array_equal(np.isnan(got1), np.isnan(expected1))


@pytest.mark.parametrize("small_tiles", [False, True], ids=["one_pass", "passes"])
@pytest.mark.parametrize("seed", range(16))
def test_gathered_col2im_is_the_scatter_bit_for_bit(seed, small_tiles, monkeypatch):
    """NCHW columns: when every output row takes its taps from one pass of a
    task's band loop, each row is gathered from the column tile
    (convcpu_col2im_gather) instead of the taps being added into the output
    one by one.  The gather takes the taps in the scatter's order, so the
    bits are the scatter's; checked over random strides, kernels larger and
    smaller than the stride, dilations, pads, output_padding (also > stride),
    groups, 1-D, both dtypes, a NaN, and (small_tiles) bands of input rows
    that take several passes (overlapping kernel rows: those go on by the
    scatter).  Also against the reference."""
    from convcpu import _core
    monkeypatch.setattr(transpose, "_algorithm", lambda *args: "columns")
    if small_tiles:
        monkeypatch.setattr(_core, "TRANSPOSE_TILE_BYTES", 512)
        monkeypatch.setattr(_core, "TILE_BYTES", 512)
    rng = np.random.default_rng(900 + seed)
    dtype = DTYPES[seed % 2]
    nsp = 1 if seed % 5 == 4 else 2
    groups = 1 + seed % 3 // 2
    kernel = tuple(int(rng.integers(1, 6)) for _ in range(nsp))
    stride = tuple(int(rng.integers(1, 4)) for _ in range(nsp))
    dilation = tuple(int(rng.integers(1, 3)) for _ in range(nsp))
    if small_tiles and seed % 2 == 0 and nsp == 2:  # kernel rows that do not overlap: bands
        kernel = (int(rng.integers(1, stride[0] + 1)),) + kernel[1:]
        dilation = (1,) + dilation[1:]
    pads = tuple((int(rng.integers(0, (k - 1) * d + 1)), int(rng.integers(0, (k - 1) * d + 1)))
                 for k, d in zip(kernel, dilation))
    output_padding = tuple(int(rng.integers(0, s + 2)) for s in stride)
    spatial = tuple(int(rng.integers(1, 13)) for _ in range(nsp))
    if small_tiles and nsp == 2:  # more rows than bands (16 tasks): bands of several passes
        spatial = (int(rng.integers(17, 40)), spatial[1])
    x = rng.standard_normal((int(rng.integers(1, 3)), 2 * groups) + spatial).astype(dtype)
    if seed % 3 == 0:  # a NaN: the gather's vectors must not carry it past its outputs
        x.flat[int(rng.integers(0, x.size))] = np.nan
    w = rng.standard_normal((2 * groups, int(rng.integers(1, 20))) + kernel).astype(dtype)
    b = rng.standard_normal(w.shape[1] * groups).astype(dtype) if seed % 4 else None
    op = convcpu.conv_transpose2d if nsp == 2 else convcpu.conv_transpose1d
    args = (x, w, b, stride, pads, output_padding, groups, dilation)
    try:
        expected = conv_transpose_reference(x, w, b, stride, pads, output_padding, dilation,
                                            groups)
    except ValueError:  # a negative output size: refused by both
        with pytest.raises(ValueError):
            op(*args)
        return
    gathered = op(*args, num_threads=2)
    monkeypatch.setattr(_core, "TRANSPOSE_GATHER", False)
    scattered = op(*args, num_threads=2)
    assert gathered.shape == expected.shape
    np.testing.assert_array_equal(gathered.view(np.uint8), scattered.view(np.uint8))
    np.testing.assert_array_equal(np.isnan(gathered), np.isnan(expected))
    finite = ~np.isnan(expected)
    assert_close(np.where(finite, gathered, 0), np.where(finite, expected, 0), dtype)


def test_geometry_is_cached_per_argument_set():
    """A layer called again reuses its TransposeGeometry (read-only tables);
    arguments that differ only in output_size (None or given), padding form
    or output_padding get their own, and each call matches the reference."""
    from convcpu import _geometry
    rng = np.random.default_rng(31)
    x = rng.standard_normal((1, 2, 5, 6)).astype(np.float32)
    w = rng.standard_normal((2, 3, 3, 3)).astype(np.float32)
    geom = _geometry.transpose_geometry((5, 6), (3, 3), 2, 1, 1, 0, None)
    assert _geometry.transpose_geometry((5, 6), (3, 3), 2, 1, 1, 0, None) is geom
    assert all(not t.flags.writeable for t in geom.ranges())
    for kwargs, pads, extra in [({"padding": 1}, 1, 0),
                                ({"padding": 1, "output_size": (10, 12)}, 1, 1),
                                ({"padding": 1, "output_padding": 1}, 1, 1),
                                ({"padding": (1, 0)}, ((1, 1), (0, 0)), 0),
                                ({"padding": [1, 1]}, 1, 0),
                                ({"padding": 1}, 1, 0)]:
        got = convcpu.conv_transpose2d(x, w, stride=2, **kwargs)
        expected = conv_transpose_reference(x, w, None, 2, pads, extra)
        assert got.shape == expected.shape, kwargs
        assert_close(got, expected, np.float32)


@pytest.mark.parametrize("kernel", [(1, 3), (3, 1), (2, 2)])
def test_empty_input_rows_give_the_bias(kernel, algorithm):
    """An input with no rows still has output rows when output_padding (any
    value, as ONNX) adds them: they hold the bias, with every algorithm and
    with kernel rows that do (3) and do not (1, 2 at stride 2) overlap."""
    rng = np.random.default_rng(12)
    x = np.zeros((2, 2, 0, 3), np.float32)
    w = rng.standard_normal((2, 3) + kernel).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    got = convcpu.conv_transpose2d(x, w, b, stride=2, output_padding=(3, 0))
    # H_out = (0 - 1)*2 + R - 1 + 1 + 3 = R + 1, W_out = (3 - 1)*2 + S
    assert got.shape == (2, 3, kernel[0] + 1, 4 + kernel[1])
    np.testing.assert_array_equal(got, np.broadcast_to(b[:, None, None], got.shape[1:])[None]
                                  .repeat(2, axis=0))


@pytest.mark.parametrize("padding", ["SAME", "VALID"])
@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("size", [(5, 7), (1, 4)])
def test_tensorflow_output_shape(size, stride, padding):
    tf = optional("tensorflow")
    rng = np.random.default_rng(stride)
    x = rng.standard_normal((2,) + size + (3,)).astype(np.float32)
    w = rng.standard_normal((3, 2, 4, 3)).astype(np.float32)  # HWOI
    low = [(s - 1) * stride + (1 if padding == "SAME" else k)
           for s, k in zip(size, w.shape[:2])]
    for extra in range(stride):  # every output_shape TensorFlow accepts
        out_size = tuple(v + extra for v in low)
        expected = tf.nn.conv2d_transpose(x, w, (2,) + out_size + (4,), stride, padding).numpy()
        got = convcpu.conv_transpose2d(x, w, stride=stride, padding=padding.lower(),
                                       output_size=out_size, data_format="NHWC")
        assert_close(got, expected, np.float32)


def test_keras_default_output_size():
    keras = optional("tf_keras")
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 5, 6, 2)).astype(np.float32)
    for padding, kernel, stride in (("same", 3, 2), ("valid", 3, 2), ("valid", 2, 3)):
        layer = keras.layers.Conv2DTranspose(4, kernel, stride, padding, use_bias=False)
        expected = layer(x).numpy()
        w = layer.get_weights()[0]  # (R, S, out, in): HWOI
        got = convcpu.conv_transpose2d(x, w, stride=stride, padding=padding, data_format="NHWC")
        assert_close(got, expected, np.float32)


def _onnx_conv_transpose(x, w, b, stride, pads, output_padding, dilation, groups):
    onnx = optional("onnx")
    from onnx.reference import ReferenceEvaluator
    nsp = x.ndim - 2
    node = onnx.helper.make_node(
        "ConvTranspose", ["x", "w", "b"], ["y"], strides=list(stride), dilations=list(dilation),
        group=groups, output_padding=list(output_padding),
        pads=[p[0] for p in pads] + [p[1] for p in pads], kernel_shape=list(w.shape[2:]))
    assert len(pads) == nsp
    return ReferenceEvaluator(node).run(None, {"x": x, "w": w, "b": b})[0]


@pytest.mark.parametrize("seed", range(8))
def test_onnx_asymmetric_pads(seed):
    rng = np.random.default_rng(100 + seed)
    x = rng.standard_normal((1, 4, 5, 4))
    w = rng.standard_normal((4, 3, 3, 2))
    b = rng.standard_normal(3)
    # onnx.reference's ConvTranspose fails on group > 1 and dilation > 1 (its
    # col2im miscounts the blocks): those are tested against torch.
    stride, dilation, groups = (2, 1), (1, 1), 1
    pads = tuple(tuple(int(v) for v in rng.integers(0, 3, 2)) for _ in range(2))
    # onnx.reference's col2im miscounts when output_padding >= stride: that is
    # tested against the NumPy reference (GEOMETRIES_2D)
    output_padding = tuple(int(rng.integers(0, s)) for s in stride)
    expected = _onnx_conv_transpose(x, w, b, stride, pads, output_padding, dilation, groups)
    got = convcpu.conv_transpose2d(x, w, b, stride, pads, output_padding, groups, dilation)
    assert_close(got, expected, np.float64)


def test_seed003_examples():
    """A 2x2 input and a 3x3 kernel of ones: 4x4 at stride 1 and 6x6 at stride 2,
    VALID, as tf.nn.conv2d_transpose prints them in seed 003."""
    x = np.array([4.5, 5.4, 8.1, 9.0], np.float32).reshape(1, 2, 2, 1)
    ones = np.ones((3, 3, 1, 1), np.float32)
    y1 = convcpu.conv_transpose2d(x, ones, padding="VALID".lower(), output_size=(4, 4),
                                  data_format="NHWC")[0, :, :, 0]
    np.testing.assert_allclose(y1, [[4.5, 9.9, 9.9, 5.4],
                                    [12.6, 27.0, 27.0, 14.4],
                                    [12.6, 27.0, 27.0, 14.4],
                                    [8.1, 17.1, 17.1, 9.0]], rtol=1e-6)
    y2 = convcpu.conv_transpose2d(x, ones, stride=2, padding="valid", output_size=(6, 6),
                                  data_format="NHWC")[0, :, :, 0]
    np.testing.assert_allclose(y2, [[4.5, 4.5, 9.9, 5.4, 5.4, 0],
                                    [4.5, 4.5, 9.9, 5.4, 5.4, 0],
                                    [12.6, 12.6, 27.0, 14.4, 14.4, 0],
                                    [8.1, 8.1, 17.1, 9.0, 9.0, 0],
                                    [8.1, 8.1, 17.1, 9.0, 9.0, 0],
                                    [0, 0, 0, 0, 0, 0]], rtol=1e-6)
    # the stride-2 output is the stride-1 output of the zero-inserted input
    inserted = np.zeros((1, 3, 3, 1), np.float32)
    inserted[:, ::2, ::2] = x
    y3 = convcpu.conv_transpose2d(inserted, ones, padding="valid", data_format="NHWC")
    np.testing.assert_allclose(y2[:5, :5], y3[0, :, :, 0], rtol=1e-6)


def test_unreachable_output_size_names_the_range():
    x = np.ones((1, 2, 2, 1), np.float32)
    ones = np.ones((3, 3, 1, 1), np.float32)
    with pytest.raises(ValueError, match=r"5\.\.6"):
        convcpu.conv_transpose2d(x, ones, stride=2, padding="valid", output_size=(7, 6),
                                 data_format="NHWC")
    with pytest.raises(ValueError, match=r"3\.\.4"):
        convcpu.conv_transpose2d(x, ones, stride=2, padding="same", output_size=(4, 2),
                                 data_format="NHWC")
    xc = np.ones((1, 1, 4, 4))
    with pytest.raises(ValueError, match=r"7\.\.8"):  # torch: [min, min + stride - 1]
        convcpu.conv_transpose2d(xc, np.ones((1, 1, 3, 3)), stride=2, padding=1,
                                 output_size=(9, 9))
    got = convcpu.conv_transpose2d(xc, np.ones((1, 1, 3, 3)), stride=2, padding=1,
                                   output_size=(8, 7))
    assert got.shape == (1, 1, 8, 7)


@pytest.mark.parametrize("padding", ["same", "valid", "SAME_LOWER"])
def test_output_padding_with_string_padding_is_refused(padding):
    """It would be ignored (the string padding fixes the size): an error, not a
    silently different output."""
    x = np.ones((1, 4, 4, 2), np.float32)
    w = np.ones((3, 3, 1, 2), np.float32)
    with pytest.raises(ValueError, match="output_padding=1 needs explicit padding"):
        convcpu.conv_transpose2d(x, w, stride=2, padding=padding, output_padding=1,
                                 data_format="NHWC")
    assert convcpu.conv_transpose2d(x, w, stride=2, padding=padding, output_padding=0,
                                    data_format="NHWC").shape[0] == 1


@pytest.mark.parametrize("geometry", [GEOMETRIES_2D[1], GEOMETRIES_2D[5], GEOMETRIES_1D[1]],
                         ids=str)
def test_adjoint_of_conv(geometry):
    """<conv(x), y> == <x, conv_transpose(y)> for the same weight and geometry."""
    rng = np.random.default_rng(7)
    n, cin, cout, spatial, kernel, stride, padding, _, dilation, groups = geometry
    # conv_transpose maps cin -> cout, so it is the adjoint of a conv cout -> cin.
    w = rng.standard_normal((cin, cout // groups) + kernel)
    fwd = convcpu.conv2d if len(spatial) == 2 else convcpu.conv1d
    tr = convcpu.conv_transpose2d if len(spatial) == 2 else convcpu.conv_transpose1d
    y = rng.standard_normal((n, cin) + spatial)
    z = tr(y, w, None, stride, padding, 0, groups, dilation)
    x = rng.standard_normal(z.shape)
    cx = fwd(x, w, None, stride, padding, dilation, groups)
    assert cx.shape == y.shape
    np.testing.assert_allclose(np.vdot(cx, y), np.vdot(x, z), rtol=1e-10)


def test_unbatched_out_awkward_and_threads(algorithm):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((3, 6, 5)).astype(np.float32)
    w = rng.standard_normal((3, 4, 3, 3)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    expected = convcpu.conv_transpose2d(x[None], w, b, 2, 1, 1)[0]
    got = convcpu.conv_transpose2d(x, w, b, 2, 1, 1)
    np.testing.assert_array_equal(got, expected)
    out = np.full(expected.shape, np.nan, np.float32)
    assert convcpu.conv_transpose2d(x, w, b, 2, 1, 1, out=out) is out
    np.testing.assert_array_equal(out, expected)
    for name, variant in awkward_variants(x).items():
        np.testing.assert_array_equal(convcpu.conv_transpose2d(variant, w, b, 2, 1, 1), expected,
                                      err_msg=name)
    for name, variant in awkward_variants(w).items():
        np.testing.assert_array_equal(convcpu.conv_transpose2d(x, variant, b, 2, 1, 1), expected,
                                      err_msg=name)
    big = rng.standard_normal((3, 16, 20, 20)).astype(np.float32)
    wb = rng.standard_normal((16, 8, 4, 4)).astype(np.float32)
    results = [convcpu.conv_transpose2d(big, wb, None, 2, 1, num_threads=t) for t in (1, 2, 3, 4)]
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])


def test_empty_and_promoted():
    w = np.ones((2, 3, 3, 3))
    assert convcpu.conv_transpose2d(np.ones((0, 2, 4, 4)), w).shape == (0, 3, 6, 6)
    got = convcpu.conv_transpose2d(np.ones((1, 0, 4, 4)), np.ones((0, 3, 3, 3)),
                                   np.arange(3.0))
    np.testing.assert_array_equal(got, np.broadcast_to(np.arange(3.0)[:, None, None], (1, 3, 6, 6)))
    img = np.arange(32, dtype=np.uint8).reshape(1, 2, 4, 4)
    got = convcpu.conv_transpose2d(img, w.astype(np.float32))
    assert got.dtype == np.float32
    assert_close(got, conv_transpose_reference(img, w), np.float32)


@pytest.mark.parametrize("kwargs, match", [
    ({"weight": np.ones((3, 2, 3, 3))}, "input channels"),
    ({"weight": np.ones((2, 2, 3))}, "dimensions"),
    ({"groups": 3}, "groups"),
    ({"bias": np.ones(3)}, "bias"),
    ({"stride": 0}, "stride"),
    ({"output_padding": -1}, "output_padding"),
    ({"padding": "full"}, "padding"),
    ({"padding": 9}, "negative"),
    ({"output_size": (20, 20)}, "cannot be reached"),
    ({"output_size": (10, 10), "output_padding": 2, "stride": 2}, "contradicts"),
    ({"data_format": "NCWH"}, "data_format"),
    ({"weight_format": "OIHX"}, "weight_format"),
])
def test_errors(kwargs, match):
    args = {"x": np.ones((1, 2, 4, 4)), "weight": np.ones((2, 2, 3, 3))}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        convcpu.conv_transpose2d(**args)


def test_type_errors_and_inputs_untouched():
    x = np.ones((1, 2, 4, 4))
    w = np.ones((2, 2, 3, 3))
    with pytest.raises(TypeError):
        convcpu.conv_transpose2d(x.astype(complex), w)
    with pytest.raises(TypeError):
        convcpu.conv_transpose2d(x, w, out=np.empty((1, 2, 6, 6), np.float32))
    before = (x.copy(), w.copy())
    convcpu.conv_transpose2d(x, w, np.ones(2), 2, 1)
    np.testing.assert_array_equal(x, before[0])
    np.testing.assert_array_equal(w, before[1])


# col2im -----------------------------------------------------------------------

# (N, C, output_size, kernel, stride, padding, dilation)
FOLDS = [
    (2, 3, (5, 6), (2, 3), (1, 1), 0, (1, 1)),
    (1, 2, (7, 7), (3, 3), (2, 2), 1, (1, 1)),
    (1, 1, (8, 5), (2, 2), (1, 2), ((1, 0), (2, 1)), (2, 1)),
    (3, 2, (9,), (3,), (2,), ((2, 1),), (2,)),
    (1, 2, (4, 5, 3), (2, 2, 2), (1, 2, 1), ((0, 1), (1, 0), (1, 1)), (1, 1, 2)),
    (0, 2, (4, 4), (2, 2), (1, 1), 0, (1, 1)),
]


def _fold_case(rng, fold, dtype):
    n, c, size, kernel, stride, padding, dilation = fold
    pads = _pairs(padding, len(size))
    blocks = [(size[i] + sum(pads[i]) - dilation[i] * (kernel[i] - 1) - 1) // stride[i] + 1
              for i in range(len(size))]
    cols = rng.standard_normal((n, c * int(np.prod(kernel)), int(np.prod(blocks))))
    return cols.astype(dtype), pads


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("fold", FOLDS, ids=str)
def test_col2im_reference(fold, dtype, threads):
    rng = np.random.default_rng(5)
    cols, pads = _fold_case(rng, fold, dtype)
    n, c, size, kernel, stride, padding, dilation = fold
    got = convcpu.col2im(cols, size, kernel, stride, padding, dilation, num_threads=threads)
    assert got.dtype == dtype and got.shape == (n, c) + size
    assert_close(got, col2im_reference(cols, size, kernel, stride, pads, dilation), dtype)


@pytest.mark.parametrize("fold", [f for f in FOLDS if len(f[2]) == 2 and isinstance(f[5], int)],
                         ids=str)
def test_col2im_torch_fold(fold):
    torch = optional("torch")
    rng = np.random.default_rng(6)
    cols, _ = _fold_case(rng, fold, np.float32)
    n, c, size, kernel, stride, padding, dilation = fold
    expected = torch.nn.functional.fold(torch.from_numpy(cols), size, kernel, dilation, padding,
                                        stride).numpy()
    assert_close(convcpu.col2im(cols, size, kernel, stride, padding, dilation), expected,
                 np.float32)


@pytest.mark.parametrize("fold", [f for f in FOLDS if f[0] > 0], ids=str)
def test_col2im_onnx(fold):
    onnx = optional("onnx")
    from onnx.reference import ReferenceEvaluator
    rng = np.random.default_rng(8)
    cols, pads = _fold_case(rng, fold, np.float64)
    n, c, size, kernel, stride, padding, dilation = fold
    node = onnx.helper.make_node("Col2Im", ["x", "image", "block"], ["y"],
                                 dilations=list(dilation), strides=list(stride),
                                 pads=[p[0] for p in pads] + [p[1] for p in pads])
    expected = ReferenceEvaluator(node).run(None, {
        "x": cols, "image": np.array(size, np.int64), "block": np.array(kernel, np.int64)})[0]
    assert_close(convcpu.col2im(cols, size, kernel, stride, padding, dilation), expected,
                 np.float64)


def test_col2im_is_the_adjoint_of_im2col():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 3, 7, 6))
    cols = convcpu.im2col(x, (3, 2), (2, 1), 1, (1, 2))
    y = rng.standard_normal(cols.shape)
    np.testing.assert_allclose(np.vdot(cols, y),
                               np.vdot(x, convcpu.col2im(y, (7, 6), (3, 2), (2, 1), 1, (1, 2))),
                               rtol=1e-12)
    # unbatched, and the same for any thread count
    single = convcpu.col2im(y[0], (7, 6), (3, 2), (2, 1), 1, (1, 2), num_threads=1)
    np.testing.assert_array_equal(
        single, convcpu.col2im(y, (7, 6), (3, 2), (2, 1), 1, (1, 2), num_threads=2)[0])


@pytest.mark.parametrize("args, match", [
    ((np.ones((1, 8, 10)), (4, 4), 2), "columns"),
    ((np.ones((1, 7, 9)), (4, 4), 2), "multiple"),
    ((np.ones((8, 9, 1, 1)), (4, 4), 2), "dimensions"),
    ((np.ones((1, 4, 9)), (4, 4), 2, 0), "stride"),
    ((np.ones((1, 4, 9)), (1, 4), 2), "too small"),
    ((np.ones((1, 4, 9)), (), 2), "output_size"),
])
def test_col2im_errors(args, match):
    with pytest.raises(ValueError, match=match):
        convcpu.col2im(*args)
