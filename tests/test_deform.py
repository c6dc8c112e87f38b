"""deform_conv2d against the NumPy reference, the ONNX reference (onnx.reference
DeformConv and the node test cases shipped in the onnx package) and
onnxruntime; its identities (zero offsets, a mask of ones, integer offsets)."""
import numpy as np
import pytest
from conftest import assert_close, awkward_variants, explicit_pads, optional

import convcpu
from convcpu import _core
from convcpu._reference import deform_conv_reference

DTYPES = [np.float32, np.float64]

# (N, C, K, groups, offset groups, (H, W), (R, S), stride, padding, dilation)
GEOMETRIES = [
    (1, 4, 6, 1, 1, (7, 9), (3, 3), (1, 1), 1, (1, 1)),
    (2, 6, 4, 2, 3, (8, 8), (3, 3), (2, 2), "same", (1, 1)),
    (2, 4, 4, 1, 2, (9, 6), (3, 3), (1, 1), "same", (2, 2)),
    (1, 8, 3, 1, 4, (11, 13), (2, 3), (2, 1), "valid", (1, 1)),
    (1, 2, 2, 1, 1, (1, 1), (3, 3), (1, 1), 1, (1, 1)),                 # 1-pixel image
    (3, 3, 5, 1, 3, (5, 4), (2, 3), (3, 1), ((0, 2), (1, 0)), (1, 1)),   # asymmetric; stride>kernel
    (1, 33, 7, 1, 1, (9, 10), (3, 3), (1, 2), "same_lower", (1, 1)),    # channel tail: 33 = 2*16+1
    (2, 6, 6, 3, 2, (10, 10), (1, 1), (1, 1), 0, (1, 1)),               # 1x1; og 2, groups 3
    (1, 4, 2, 2, 1, (6, 12), (5, 5), (1, 1), 2, (1, 2)),
    (1, 3, 2, 1, 1, (4, 4), (4, 4), (1, 1), "valid", (1, 1)),           # kernel == input
]


def _case(rng, geometry, dtype, spread=2.0, with_mask=True):
    n, c, k, groups, og, size, kernel, stride, padding, dilation = geometry
    pads = explicit_pads(padding, size, kernel, stride, dilation)
    out = tuple((size[i] + sum(pads[i]) - dilation[i] * (kernel[i] - 1) - 1) // stride[i] + 1
                for i in range(2))
    taps = kernel[0] * kernel[1]
    x = rng.standard_normal((n, c) + size).astype(dtype)
    w = rng.standard_normal((k, c // groups) + kernel).astype(dtype)
    b = rng.standard_normal(k).astype(dtype)
    offset = (rng.standard_normal((n, 2 * og * taps) + out) * spread).astype(dtype)
    mask = rng.random((n, og * taps) + out).astype(dtype) if with_mask else None
    return x, offset, w, b, mask, stride, padding, dilation, pads


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("with_mask", [False, True])
def test_matches_reference(geometry, dtype, with_mask):
    rng = np.random.default_rng(abs(hash((geometry, with_mask))) % 2**32)
    x, offset, w, b, mask, stride, padding, dilation, pads = _case(rng, geometry, dtype,
                                                                   with_mask=with_mask)
    got = convcpu.deform_conv2d(x, offset, w, b, stride, padding, dilation, mask)
    assert got.dtype == dtype
    assert_close(got, deform_conv_reference(x, offset, w, b, stride, pads, dilation, mask), dtype)


@pytest.mark.parametrize("seed", range(12))
def test_random_geometry_matches_reference(seed):
    rng = np.random.default_rng(seed)
    og, groups = int(rng.integers(1, 4)), int(rng.integers(1, 3))
    c = og * groups * int(rng.integers(1, 4))
    kernel = tuple(int(v) for v in rng.integers(1, 4, 2))
    stride = tuple(int(v) for v in rng.integers(1, 3, 2))
    dilation = tuple(int(v) for v in rng.integers(1, 3, 2))
    size = tuple(int(v) for v in rng.integers(max(kernel) * max(dilation), 15, 2))
    padding = tuple((int(rng.integers(0, 3)), int(rng.integers(0, 3))) for _ in range(2))
    geometry = (int(rng.integers(0, 3)), c, groups * int(rng.integers(1, 4)), groups, og, size,
                kernel, stride, padding, dilation)
    dtype = DTYPES[seed % 2]
    x, offset, w, b, mask, stride, padding, dilation, pads = _case(rng, geometry, dtype,
                                                                   spread=float(rng.random() * 4))
    got = convcpu.deform_conv2d(x, offset, w, b, stride, padding, dilation, mask)
    assert_close(got, deform_conv_reference(x, offset, w, b, stride, pads, dilation, mask), dtype)


@pytest.mark.parametrize("spread", [0.5, 3.0, 40.0])
def test_large_image_several_tiles_and_far_offsets(spread):
    """Several pixel tiles per image, offsets from sub-pixel to far outside the
    image (the band buffer then holds every row)."""
    geometry = (1, 8, 4, 1, 2, (150, 170), (3, 3), (1, 1), 1, (1, 1))
    rng = np.random.default_rng(7)
    x, offset, w, b, mask, stride, padding, dilation, pads = _case(rng, geometry, np.float32,
                                                                   spread=spread)
    got = convcpu.deform_conv2d(x, offset, w, b, stride, padding, dilation, mask)
    assert_close(got, deform_conv_reference(x, offset, w, b, stride, pads, dilation, mask),
                 np.float32)


@pytest.mark.parametrize("dtype", DTYPES)
def test_wide_band_falls_back_to_planes(dtype):
    """Three rows of 512 channels x 600 columns (3.7 MB in float32) are more than
    the band buffer: the kernel samples from the planes."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 512, 3, 600)).astype(dtype)
    w = rng.standard_normal((2, 512, 1, 3)).astype(dtype)
    offset = rng.standard_normal((1, 6, 3, 598)).astype(dtype)
    mask = rng.random((1, 3, 3, 598)).astype(dtype)
    got = convcpu.deform_conv2d(x, offset, w, mask=mask)
    assert_close(got, deform_conv_reference(x, offset, w, mask=mask), dtype)


# conv2d takes its direct kernels for grouped layers with few channels per
# group; on its GEMM path (here: groups=1) zero offsets sample conv2d's own
# patches, exactly.  The products then give the same bits where each output
# is one FMA chain however the GEMM is cut (float32 on the own kernels); on
# SciPy's BLAS (float64, or float32 without AVX-512) the rounding can follow
# its block shapes, which differ between the two paths' calls (OpenBLAS's
# SkylakeX dgemm, 4 of these 7 geometries: 68-87% of the outputs, by at
# most 1e-15 of the largest): there, to 1e-12.
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("geometry", [g for g in GEOMETRIES if g[3] == 1])
def test_zero_offsets_equal_conv2d_exactly(geometry, dtype):
    rng = np.random.default_rng(11)
    x, offset, w, b, _, stride, padding, dilation, _ = _case(rng, geometry, dtype)
    got = convcpu.deform_conv2d(x, np.zeros_like(offset), w, b, stride, padding, dilation)
    want = convcpu.conv2d(x, w, b, stride, padding, dilation)
    if dtype == np.float32 and _core.gemm_backend() == "convcpu":
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * np.abs(want).max())


@pytest.mark.parametrize("geometry", [g for g in GEOMETRIES if g[3] > 1])
def test_zero_offsets_grouped_equal_conv2d(geometry):
    rng = np.random.default_rng(12)
    x, offset, w, b, _, stride, padding, dilation, _ = _case(rng, geometry, np.float64)
    got = convcpu.deform_conv2d(x, np.zeros_like(offset), w, b, stride, padding, dilation)
    assert_close(got, convcpu.conv2d(x, w, b, stride, padding, dilation, groups=geometry[3]),
                 np.float64)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("geometry", GEOMETRIES[:4])
def test_mask_of_ones_equals_v1_exactly(geometry, dtype):
    rng = np.random.default_rng(13)
    x, offset, w, b, mask, stride, padding, dilation, _ = _case(rng, geometry, dtype)
    v1 = convcpu.deform_conv2d(x, offset, w, b, stride, padding, dilation)
    v2 = convcpu.deform_conv2d(x, offset, w, b, stride, padding, dilation, np.ones_like(mask))
    np.testing.assert_array_equal(v1, v2)


def _shifted(x, dy, dx):
    """x moved so that out[..., h, w] = x[..., h + dy, w + dx], zero outside."""
    out = np.zeros_like(x)
    H, W = x.shape[-2:]
    out[..., max(0, -dy):min(H, H - dy), max(0, -dx):min(W, W - dx)] = \
        x[..., max(0, dy):min(H, H + dy), max(0, dx):min(W, W + dx)]
    return out


@pytest.mark.parametrize("dy, dx", [(1, 0), (0, -2), (-3, 2), (2, 5), (9, 0)])
def test_integer_offsets_equal_a_shifted_conv(dy, dx):
    """The same integer offset on every tap reads the image moved by it: exactly
    conv2d of the shifted image (zero where it moved out).  Unpadded: with
    padding, a moved tap of a border pixel reads the image where conv2d reads
    its zero padding."""
    rng = np.random.default_rng(14)
    x = rng.standard_normal((2, 5, 9, 11)).astype(np.float32)
    w = rng.standard_normal((4, 5, 3, 3)).astype(np.float32)
    offset = np.zeros((2, 18, 7, 9), np.float32)
    offset[:, 0::2], offset[:, 1::2] = dy, dx
    got = convcpu.deform_conv2d(x, offset, w)
    np.testing.assert_array_equal(got, convcpu.conv2d(_shifted(x, dy, dx), w))


def test_batch_zero_unbatched_and_out():
    rng = np.random.default_rng(15)
    x, offset, w, b, mask, stride, padding, dilation, pads = _case(rng, GEOMETRIES[1], np.float32)
    empty = convcpu.deform_conv2d(x[:0], offset[:0], w, b, stride, padding, dilation, mask[:0])
    assert empty.shape == (0, 4, 4, 4)
    full = convcpu.deform_conv2d(x, offset, w, b, stride, padding, dilation, mask)
    single = convcpu.deform_conv2d(x[1], offset[1], w, b, stride, padding, dilation, mask[1])
    np.testing.assert_array_equal(single, full[1])
    out = np.full_like(full, np.nan)
    assert convcpu.deform_conv2d(x, offset, w, b, stride, padding, dilation, mask, out=out) is out
    np.testing.assert_array_equal(out, full)


def test_awkward_inputs_give_the_same_result_and_are_not_modified():
    rng = np.random.default_rng(16)
    x, offset, w, b, mask, stride, padding, dilation, _ = _case(rng, GEOMETRIES[0], np.float32)
    expected = convcpu.deform_conv2d(x, offset, w, b, stride, padding, dilation, mask)
    for name in ("x", "offset", "mask", "w"):
        for kind, variant in awkward_variants({"x": x, "offset": offset, "mask": mask,
                                               "w": w}[name]).items():
            args = {"x": x, "offset": offset, "mask": mask, "w": w}
            args[name] = variant
            before = variant.copy()
            got = convcpu.deform_conv2d(args["x"], args["offset"], args["w"], b, stride,
                                        padding, dilation, args["mask"])
            np.testing.assert_array_equal(got, expected, err_msg=f"{name} {kind}")
            np.testing.assert_array_equal(variant, before)


def test_uint8_image_promotes_to_float32():
    rng = np.random.default_rng(17)
    x = rng.integers(0, 255, (1, 3, 8, 8), dtype=np.uint8)
    w = rng.standard_normal((2, 3, 3, 3)).astype(np.float32)
    offset = rng.standard_normal((1, 18, 6, 6)).astype(np.float32)
    got = convcpu.deform_conv2d(x, offset, w)
    assert got.dtype == np.float32
    assert_close(got, deform_conv_reference(x, offset, w), np.float32)


def test_nan_offset_gives_nan_and_inf_pixel_stays_local():
    rng = np.random.default_rng(18)
    x = rng.standard_normal((1, 2, 8, 8))
    w = rng.standard_normal((1, 2, 3, 3))
    offset = np.zeros((1, 18, 6, 6))
    offset[0, 4, 2, 3] = np.nan
    got = convcpu.deform_conv2d(x, offset, w)
    assert np.isnan(got[0, 0, 2, 3])
    assert np.isnan(got).sum() == 1
    x[0, 1, 0, 0] = np.inf  # read only by output (0, 0), tap (0, 0), at an integer position
    got = convcpu.deform_conv2d(x, np.zeros((1, 18, 6, 6)), w)
    assert np.isinf(got[0, 0, 0, 0]) and np.isfinite(got).sum() == 35
    offset = np.full((1, 18, 6, 6), np.inf)  # every sample outside the image: zeros
    np.testing.assert_array_equal(convcpu.deform_conv2d(x, offset, w, np.ones(1)), 1.0)


def test_results_identical_for_any_thread_count():
    rng = np.random.default_rng(19)
    x, offset, w, b, mask, stride, padding, dilation, _ = _case(
        rng, (2, 16, 24, 1, 2, (40, 37), (3, 3), (1, 1), 1, (1, 1)), np.float32)
    results = [convcpu.deform_conv2d(x, offset, w, b, stride, padding, dilation, mask,
                                     num_threads=n) for n in (1, 2, 3, 4)]
    for other in results[1:]:
        np.testing.assert_array_equal(results[0], other)


def test_docstring_example_is_onnx_test_case():
    x = np.arange(9, dtype=np.float32).reshape(1, 1, 3, 3)
    offset = np.zeros((1, 8, 2, 2), np.float32)
    offset[0, 0, 0, 0], offset[0, 5, 0, 1] = 0.5, -0.1
    got = convcpu.deform_conv2d(x, offset, np.ones((1, 1, 2, 2), np.float32))
    np.testing.assert_allclose(got, [[[[9.5, 11.9], [20.0, 24.0]]]], rtol=1e-6)


# --- errors ---------------------------------------------------------------

def _good():
    x = np.zeros((2, 4, 6, 6), np.float32)
    return dict(x=x, offset=np.zeros((2, 36, 4, 4), np.float32),
                weight=np.zeros((6, 2, 3, 3), np.float32))


@pytest.mark.parametrize("change, message", [
    (dict(offset=np.zeros((2, 17, 4, 4))), r"offset must have shape \(2, '2\*O\*R\*S', 4, 4\)"),
    (dict(offset=np.zeros((2, 18, 5, 4))), r"offset must have shape .*got \(2, 18, 5, 4\)"),
    (dict(offset=np.zeros((1, 18, 4, 4))), r"offset must have shape"),
    (dict(offset=np.zeros((18, 4, 4))), r"offset must have shape"),
    (dict(offset=np.zeros((2, 0, 4, 4))), r"offset must have shape"),
    (dict(offset=np.zeros((2, 54, 4, 4))), r"3 offset groups .* must divide the 4 channels"),
    (dict(mask=np.zeros((2, 9, 4, 4))),
     r"mask must have shape \(2, 18, 4, 4\) \(O\*R\*S = 2\*3\*3"),
    (dict(mask=np.zeros((2, 9, 4))), r"mask must have shape"),
    (dict(weight=np.zeros((6, 2, 3))), r"weight must be 4-D"),
    (dict(weight=np.zeros((6, 3, 3, 3))), r"3 input channels per group, which must divide the 4"),
    (dict(weight=np.zeros((5, 2, 3, 3))), r"groups = 4 / 2 = 2 must divide the 5 output"),
    (dict(weight=np.zeros((6, 0, 3, 3))), r"0 input channels per group"),
    (dict(weight=np.zeros((6, 2, 0, 3))), r"empty kernel"),
    (dict(bias=np.zeros(5)), r"bias must have shape \(6,\)"),
    (dict(x=np.zeros((4, 6, 6))), r"offset must have shape \('2\*O\*R\*S', 4, 4\)"),
    (dict(x=np.zeros((6, 6))), r"x must have 4 dimensions"),
    (dict(stride=0), r"stride"),
    (dict(padding="bogus"), r"padding"),
])
def test_bad_arguments_raise_value_error(change, message):
    args = _good()
    args.update(change)
    with pytest.raises(ValueError, match=message):
        convcpu.deform_conv2d(**args)


def test_bad_types_raise_type_error():
    args = _good()
    with pytest.raises(TypeError, match="offset"):
        convcpu.deform_conv2d(args["x"], args["offset"].astype(complex), args["weight"])
    with pytest.raises(TypeError, match="mask"):
        convcpu.deform_conv2d(args["x"], args["offset"], args["weight"],
                              mask=np.zeros((2, 18, 4, 4), object))
    with pytest.raises(TypeError, match="out has dtype"):
        convcpu.deform_conv2d(**args, out=np.zeros((2, 6, 4, 4)))


# --- ONNX and onnxruntime -------------------------------------------------

def _onnx_attributes(node):
    from onnx import helper
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _call_like_onnx(node, inputs):
    """deform_conv2d with the inputs and attributes of an ONNX DeformConv node."""
    attrs = _onnx_attributes(node)
    x, w, offset = inputs[:3]
    bias = inputs[3] if len(inputs) > 3 else None
    mask = inputs[4] if len(inputs) > 4 else None
    pads = attrs.get("pads", [0, 0, 0, 0])
    return convcpu.deform_conv2d(x, offset, w, bias, attrs.get("strides", 1),
                                 ((pads[0], pads[2]), (pads[1], pads[3])),
                                 attrs.get("dilations", 1), mask)


def test_onnx_node_test_cases():
    """The DeformConv cases of onnx/backend/test/case/node/deformconv.py, with
    the outputs they print."""
    optional("onnx")
    from onnx.backend.test.case.node import deformconv
    cases = []
    original = deformconv.expect
    deformconv.expect = lambda node, inputs, outputs, name: cases.append(
        (node, inputs, outputs, name))
    try:
        for attr in dir(deformconv.DeformConv):
            if attr.startswith("export"):
                getattr(deformconv.DeformConv, attr)()
    finally:
        deformconv.expect = original
    assert len(cases) >= 4
    for node, inputs, outputs, name in cases:
        np.testing.assert_allclose(_call_like_onnx(node, inputs), outputs[0], rtol=1e-5,
                                   atol=1e-5, err_msg=name)


def _onnx_node(x, w, offset, b, mask, stride, pads, dilation, og):
    from onnx import helper
    names = ["X", "W", "offset"] + (["B", "mask"] if mask is not None else [])
    return helper.make_node("DeformConv", names, ["Y"], strides=list(stride),
                            pads=[pads[0][0], pads[1][0], pads[0][1], pads[1][1]],
                            dilations=list(dilation), group=x.shape[1] // w.shape[1],
                            offset_group=og, kernel_shape=list(w.shape[2:]))


# Small: onnx.reference computes DeformConv one pixel and channel pair at a time.
ONNX_GEOMETRIES = [
    (1, 2, 2, 1, 1, (5, 6), (3, 3), (1, 1), 1, (1, 1)),
    (2, 4, 2, 2, 2, (6, 5), (2, 2), (2, 1), ((1, 0), (0, 2)), (1, 1)),
    (1, 2, 3, 1, 2, (7, 7), (3, 2), (1, 2), 0, (2, 1)),
]


@pytest.mark.parametrize("geometry", ONNX_GEOMETRIES)
def test_matches_onnx_reference(geometry):
    optional("onnx")
    from onnx.reference.ops.op_deform_conv import DeformConv
    rng = np.random.default_rng(20)
    x, offset, w, b, mask, stride, _, dilation, pads = _case(rng, geometry, np.float64)
    node = _onnx_node(x, w, offset, b, mask, stride, pads, dilation, geometry[4])
    attrs = _onnx_attributes(node)
    expected = DeformConv.eval(x, w, offset, b, mask, **attrs)
    # The reference's GridSample rounds its coordinates to float32.
    assert_close(convcpu.deform_conv2d(x, offset, w, b, stride, pads, dilation, mask),
                 expected, np.float32)


@pytest.mark.parametrize("seed", range(6))
def test_matches_onnxruntime(seed):
    ort = optional("onnxruntime")
    from onnx import TensorProto, helper
    rng = np.random.default_rng(100 + seed)
    og, groups = int(rng.integers(1, 3)), int(rng.integers(1, 3))
    geometry = (int(rng.integers(1, 3)), og * groups * 2, groups * int(rng.integers(1, 4)),
                groups, og, tuple(int(v) for v in rng.integers(5, 20, 2)), (3, 3),
                tuple(int(v) for v in rng.integers(1, 3, 2)), 1,
                tuple(int(v) for v in rng.integers(1, 3, 2)))
    x, offset, w, b, mask, stride, _, dilation, pads = _case(rng, geometry, np.float32)
    node = _onnx_node(x, w, offset, b, mask, stride, pads, dilation, og)
    arrays = {"X": x, "W": w, "offset": offset, "B": b, "mask": mask}
    graph = helper.make_graph(
        [node], "deform",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(arrays[n].shape))
         for n in node.input],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    model.ir_version = 9
    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    expected = session.run(None, {n: arrays[n] for n in node.input})[0]
    assert_close(convcpu.deform_conv2d(x, offset, w, b, stride, pads, dilation, mask),
                 expected, np.float32)
