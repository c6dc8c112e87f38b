"""convcpu's own float32 GEMM (_gemm.h) against float64 NumPy and against
SciPy's sgemm, over the shapes that cross its blocks (12-row register blocks,
32-column panels, 256-term reduction blocks, 240-row A blocks), every
transpose and beta; then whole convolutions under both backends."""
import ctypes
import mmap

import numpy as np
import pytest

import convcpu
from convcpu import _core

OWN = _core.gemm_backend() == "convcpu"
BACKENDS = ["convcpu", "blas"] if OWN else ["blas"]


# How the implicit convolution reads its panels (_core.implicit_loads) and
# cuts a tile into them (_core.implicit_panels): every combination gives the
# same bits; "and" and "wide" are the defaults on AMD Zen 4 only, so the
# tests run each on every machine with the own kernels.
IMPLICIT = ([("masked", "narrow"), ("and", "wide"), ("and", "narrow"), ("masked", "wide")]
            if OWN else [("masked", "narrow")])


@pytest.fixture(params=IMPLICIT, ids="-".join)
def implicit(request):
    before = _core.implicit_loads(), _core.implicit_panels()
    loads, panels = request.param
    assert (_core.implicit_loads(loads), _core.implicit_panels(panels)) == request.param
    yield request.param
    _core.implicit_loads(before[0])
    _core.implicit_panels(before[1])


@pytest.fixture
def backend(request):
    before = _core.gemm_backend()
    _core.gemm_backend(request.param)
    yield request.param
    _core.gemm_backend(before)


SHAPES = [(1, 1, 1), (12, 32, 256), (13, 33, 257), (64, 49, 576), (5, 3136, 27),
          (241, 70, 300), (500, 17, 513), (11, 16, 0), (0, 5, 3), (7, 0, 9), (64, 1, 4608)]


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
@pytest.mark.parametrize("m,n,k", SHAPES)
@pytest.mark.parametrize("ta,tb", [("N", "N"), ("T", "N"), ("N", "T"), ("T", "T")])
@pytest.mark.parametrize("beta", [0.0, 1.0, 0.5])
def test_gemm_matches_float64(backend, m, n, k, ta, tb, beta):
    rng = np.random.default_rng(m * 1000 + n * 10 + k)
    a = rng.standard_normal((m, k) if ta == "N" else (k, m)).astype(np.float32)
    b = rng.standard_normal((k, n) if tb == "N" else (n, k)).astype(np.float32)
    c0 = rng.standard_normal((m, n)).astype(np.float32)
    c = np.asfortranarray(c0.copy())
    if beta == 0:
        c[...] = np.nan  # BLAS semantics: beta = 0 ignores C, NaN included
    got = _core._gemm_for_tests(ta, tb, np.asfortranarray(a), np.asfortranarray(b), beta, c)
    opa = a if ta == "N" else a.T
    opb = b if tb == "N" else b.T
    want = opa.astype(np.float64) @ opb + (beta * c0 if beta else 0)
    bound = np.abs(opa).astype(np.float64) @ np.abs(opb) + np.abs(beta * c0)
    assert np.all(np.abs(got - want) <= 1e-6 * (k + 2) * bound + 1e-30)


@pytest.mark.skipif(not OWN, reason="this CPU has no AVX-512: BLAS only")
def test_own_gemm_is_one_fma_chain_per_element():
    """Every element is c + a[i, 0] b[0, j] + ... in order, each step one
    fused multiply-add: independent of how the product is cut into blocks
    (which is what makes results independent of tiles and threads)."""
    rng = np.random.default_rng(7)
    m, n, k = 29, 45, 600
    a = np.asfortranarray(rng.standard_normal((m, k)).astype(np.float32))
    b = np.asfortranarray(rng.standard_normal((k, n)).astype(np.float32))
    c0 = rng.standard_normal((m, n)).astype(np.float32)
    whole = _core._gemm_for_tests("N", "N", a, b, 1.0, np.asfortranarray(c0.copy()))
    # The same product as two GEMMs over halves of the columns, and one over
    # a single row: the same bits.
    left = _core._gemm_for_tests("N", "N", a, np.asfortranarray(b[:, :20]), 1.0,
                                 np.asfortranarray(c0[:, :20].copy()))
    row = _core._gemm_for_tests("N", "N", np.asfortranarray(a[3:4]), b, 1.0,
                                np.asfortranarray(c0[3:4].copy()))
    assert np.array_equal(whole[:, :20], left)
    assert np.array_equal(whole[3:4], row)
    # Columns 32..44 of `whole` are a last panel of <= 16 columns, which runs
    # on the half-width kernel; as part of a full panel (columns 20..44): the
    # same bits.
    mid = _core._gemm_for_tests("N", "N", a, np.asfortranarray(b[:, 20:]), 1.0,
                                np.asfortranarray(c0[:, 20:].copy()))
    assert np.array_equal(whole[:, 20:], mid)
    # Two GEMMs over the first 300 and the last 300 terms, the second
    # accumulating onto the first: the same chain, so the same bits.
    part = _core._gemm_for_tests("N", "N", np.asfortranarray(a[:, :300]),
                                 np.asfortranarray(b[:300]), 1.0, np.asfortranarray(c0.copy()))
    part = _core._gemm_for_tests("N", "N", np.asfortranarray(a[:, 300:]),
                                 np.asfortranarray(b[300:]), 1.0, part)
    assert np.array_equal(whole, part)


@pytest.mark.skipif(not OWN, reason="this CPU has no AVX-512: BLAS only")
@pytest.mark.parametrize("m", [17, 20, 24, 33, 34, 36, 49, 52, 100, 196])
@pytest.mark.parametrize("ta,tb", [("N", "N"), ("T", "N"), ("N", "T"), ("T", "T")])
def test_own_gemm_ragged_tail_is_the_same_chain(m, ta, tb):
    """A product whose vector dimension ends 1-4 past a panel (33-36 left) or
    past a half panel (49-52: 32 + t, then 16) runs those on the tail
    kernels (CG_KERNEL_Z: lane i of a vector is row i of C); one of 17-24
    runs its rows in pairs, three vectors a pair (CG_KERNEL_P).  Each element
    is still one FMA chain, so the same bits as when that element is
    computed alone (a 1-wide product on the half-width kernel), over every
    transpose, rows of C from 1 to past two register blocks (odd and even),
    and terms past one block of the reduction (C accumulated between
    blocks)."""
    rng = np.random.default_rng(m)
    for n, k in [(1, 3), (2, 5), (7, 300), (19, 77), (26, 40)]:
        a = rng.standard_normal((m, k) if ta == "N" else (k, m)).astype(np.float32)
        b = rng.standard_normal((k, n) if tb == "N" else (n, k)).astype(np.float32)
        c0 = rng.standard_normal((m, n)).astype(np.float32)
        whole = _core._gemm_for_tests(ta, tb, np.asfortranarray(a), np.asfortranarray(b), 1.0,
                                      np.asfortranarray(c0.copy()))
        for i in range(m):
            ai = a[i:i + 1] if ta == "N" else a[:, i:i + 1]
            one = _core._gemm_for_tests(ta, tb, np.asfortranarray(ai), np.asfortranarray(b),
                                        1.0, np.asfortranarray(c0[i:i + 1].copy()))
            np.testing.assert_array_equal(whole[i:i + 1].view(np.uint32), one.view(np.uint32))
        opa = a if ta == "N" else a.T
        opb = b if tb == "N" else b.T
        want = opa.astype(np.float64) @ opb + c0
        bound = np.abs(opa).astype(np.float64) @ np.abs(opb) + np.abs(c0)
        assert np.all(np.abs(whole - want) <= 1e-6 * (k + 2) * bound)


@pytest.mark.skipif(not OWN, reason="this CPU has no AVX-512: BLAS only")
@pytest.mark.parametrize("n_cols", [5, 32, 45, 100])
def test_own_gemm_in_place_b_is_the_packed_chain(n_cols):
    """A row block of at most two register blocks (here 1-24 rows of A)
    reads B in place (CG_KERNEL_IN); more rows pack B's panels first.  The
    same rows computed both ways give the same bits: the first rows of a
    30-row product (packed) against the same rows alone (in place)."""
    rng = np.random.default_rng(n_cols)
    k = 300  # past one reduction block
    # Column-major operands of _gemm_for_tests: C^T = op(b)^T op(a)^T row-major,
    # so with "N", "N" the own GEMM's A is b^T (read by rows) and its B is
    # a^T (rows contiguous).
    a = np.asfortranarray(rng.standard_normal((n_cols, k)).astype(np.float32))
    b = np.asfortranarray(rng.standard_normal((k, 30)).astype(np.float32))
    c0 = rng.standard_normal((n_cols, 30)).astype(np.float32)
    packed = _core._gemm_for_tests("N", "N", a, b, 1.0, np.asfortranarray(c0.copy()))
    for rows in (1, 7, 13, 24):
        alone = _core._gemm_for_tests("N", "N", a, np.asfortranarray(b[:, :rows]), 1.0,
                                      np.asfortranarray(c0[:, :rows].copy()))
        np.testing.assert_array_equal(alone.view(np.uint32), packed[:, :rows].view(np.uint32))
    want = a.astype(np.float64) @ b.astype(np.float64) + c0
    bound = np.abs(a).astype(np.float64) @ np.abs(b) + np.abs(c0)
    assert np.all(np.abs(packed - want) <= 1e-6 * (k + 2) * bound)


def test_backend_switch_refuses_unknown():
    with pytest.raises(ValueError, match="gemm backend"):
        _core.gemm_backend("mkl")
    with pytest.raises(ValueError, match="implicit loads"):
        _core.implicit_loads("gather")
    with pytest.raises(ValueError, match="implicit panels"):
        _core.implicit_panels(64)


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
@pytest.mark.parametrize("fmt", ["NCHW", "NHWC"])
def test_conv2d_under_each_backend(backend, fmt):
    from convcpu._reference import conv_reference
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 19, 23, 13)).astype(np.float32)
    w = rng.standard_normal((37, 19, 3, 3)).astype(np.float32)
    want = conv_reference(x.astype(np.float64), w.astype(np.float64), stride=(1, 2),
                          pads=((1, 1), (2, 0)))
    xin = x.transpose(0, 2, 3, 1) if fmt == "NHWC" else x
    win = w.transpose(2, 3, 1, 0) if fmt == "NHWC" else w
    got = convcpu.conv2d(xin, win, stride=(1, 2), padding=((1, 1), (2, 0)), data_format=fmt)
    if fmt == "NHWC":
        got = got.transpose(0, 3, 1, 2)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("groups, out_channels, batch", [(32, 64, 1), (4, 64, 3), (1, 12, 2)])
def test_narrow_nhwc_conv_is_the_same_sum(groups, out_channels, batch, monkeypatch):
    """Channels-last float32 tasks with few output channels run the GEMM
    transposed (pixels along the vector) and store the tile channels-last: the
    same fused multiply-add chain per output as the plain path, so the same
    bits, and the reference's values (groups, bias, padding, stride, several
    samples gathered in one task)."""
    if _core.gemm_backend() != "convcpu":
        pytest.skip("the transposed tile runs on the own GEMM only")
    from convcpu import depthwise
    from convcpu._reference import conv_reference
    # Small groups with whole vectors of output channels (g=4: 2 in, 16 out)
    # would go to the direct grouped kernel; this test is about the GEMM's.
    monkeypatch.setattr(depthwise, "DIRECT_MAX_GROUP_IN_LAST", 0)
    rng = np.random.default_rng(groups)
    x = rng.standard_normal((batch, 15, 17, 2 * groups)).astype(np.float32)
    w = rng.standard_normal((3, 3, 2, out_channels)).astype(np.float32)
    b = rng.standard_normal(out_channels).astype(np.float32)
    args = dict(stride=(2, 1), padding=((1, 0), (1, 1)), groups=groups, data_format="NHWC")
    narrow = convcpu.conv2d(x, w, b, **args)
    monkeypatch.setattr(_core, "NARROW_MAX_CHANNELS", 0)
    plain = convcpu.conv2d(x, w, b, **args)
    np.testing.assert_array_equal(narrow, plain)
    want = conv_reference(x.transpose(0, 3, 1, 2).astype(np.float64),
                          w.transpose(3, 2, 0, 1).astype(np.float64), b.astype(np.float64),
                          stride=(2, 1), pads=((1, 0), (1, 1)), groups=groups)
    np.testing.assert_allclose(narrow.transpose(0, 3, 1, 2), want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("blocks", ["several", "one"])
@pytest.mark.parametrize("seed", range(24))
def test_im2col_into_panels_is_the_packed_sum(seed, blocks, monkeypatch):
    """NCHW float32 tiles shared by several blocks of output channels, or
    of one block with output rows shorter than IM2COL_PANELS_ROWS (here: any
    row), are written by the im2col straight into the own GEMM's panel
    layout (convcpu_im2col_panels, convcpu_sgemm_panels), with no packing
    pass: the same FMA chains as the packed path, so the same bits, and the
    reference's values.  Random geometries: rows wider and narrower than a
    panel (runs cut by panels and by output rows), several samples in one
    tile (a sample starting inside a panel), row strides, dilations,
    asymmetric pads, groups, 1-D, and reflect padding (left on the plain
    path)."""
    if _core.gemm_backend() != "convcpu":
        pytest.skip("the panels are the own GEMM's")
    from convcpu._reference import conv_reference
    if blocks == "several":
        monkeypatch.setattr(_core, "MIN_TASKS", 8)  # blocks of output channels
        monkeypatch.setattr(_core, "IM2COL_PANELS_ROWS", 0)
    else:
        monkeypatch.setattr(_core, "MIN_TASKS", 1)  # one block, one task
        monkeypatch.setattr(_core, "IM2COL_PANELS_ROWS", 10 ** 9)
    monkeypatch.setattr(_core, "IMPLICIT_GEMM", False)  # "same" columns would go there
    rng = np.random.default_rng(1200 + seed)
    nsp = 1 if seed % 6 == 5 else 2
    groups = 1 + seed % 4 // 3
    kernel = tuple(int(rng.integers(1, 5)) for _ in range(nsp))
    dilation = tuple(int(rng.integers(1, 3)) for _ in range(nsp))
    stride = (int(rng.integers(1, 3)), 1)[-nsp:]
    pads = tuple((int(rng.integers(0, 3)), int(rng.integers(0, 3))) for _ in range(nsp))
    spatial = tuple(int(rng.integers(max(1, (k - 1) * d), 40)) for k, d in zip(kernel, dilation))
    x = rng.standard_normal((int(rng.integers(1, 5)), 3 * groups) + spatial).astype(np.float32)
    w = rng.standard_normal((64 * groups, 3) + kernel).astype(np.float32)
    b = rng.standard_normal(64 * groups).astype(np.float32)
    mode = "reflect" if seed % 8 == 7 else "zeros"
    op = convcpu.conv2d if nsp == 2 else convcpu.conv1d
    args = dict(stride=stride, padding=pads if mode == "zeros" else max(kernel) // 2,
                dilation=dilation, groups=groups, padding_mode=mode)
    panels = op(x, w, b, **args)
    monkeypatch.setattr(_core, "IM2COL_PANELS", False)
    packed = op(x, w, b, **args)
    np.testing.assert_array_equal(panels.view(np.uint32), packed.view(np.uint32))
    if mode == "zeros":
        want = conv_reference(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64),
                              stride=stride, pads=pads, dilation=dilation, groups=groups)
        np.testing.assert_allclose(panels, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("seed", range(48))
def test_implicit_conv_is_the_im2col_sum(seed, implicit, monkeypatch):
    """Zero-padded NCHW float32 convolutions run with no im2col: the GEMM
    kernels read each tap of a 32-pixel panel from the input in place (stride
    1, output rows as wide as the input's), or from a task's copy of the
    input rows it reads in phase planes as wide as the output (a stride, or
    more padding), masked at the image's edges (convcpu_sconv_implicit).  The
    same FMA chains as the im2col + GEMM path, so the same bits, and the
    reference's values.  Random geometries: strides 1-3 per axis, columns
    padded to keep every input column (TensorFlow's "same" and more), split
    unevenly between left and right, any rows (taps above and below the
    image, outputs taller or shorter than the input), dilations, kernels up
    to 8 x 8 (64 taps) and wider in 1-D, groups, several samples per task,
    blocks of output channels, panels crossing output rows and ragged last
    panels (<= 16 pixels: the half-width kernels), tasks cut by a small
    TILE_BYTES (bands of phase rows); a NaN and an inf in the input, the inf
    next to a zero-padded edge."""
    if _core.gemm_backend() != "convcpu":
        pytest.skip("the implicit convolution runs on the own GEMM's kernels")
    from convcpu._reference import conv_reference
    rng = np.random.default_rng(3100 + seed)
    monkeypatch.setattr(_core, "MIN_TASKS", int(rng.choice([2, 4, 8])))
    if seed % 6 == 5:
        monkeypatch.setattr(_core, "TILE_BYTES", 16 * 1024)
    nsp = 1 if seed % 5 == 4 else 2
    groups = 1 + int(seed % 4 == 3)
    kmax = 9 if nsp == 2 else 65
    kernel = tuple(int(rng.integers(1, kmax)) for _ in range(nsp))
    while np.prod(kernel) > 64:
        kernel = tuple(max(1, k - 1) for k in kernel)
    dilation = tuple(int(rng.integers(1, 3)) for _ in range(nsp))
    stride = (1,) * nsp if seed % 3 == 0 else tuple(int(rng.integers(1, 4)) for _ in range(nsp))
    span = [(k - 1) * d for k, d in zip(kernel, dilation)]
    # the columns: pl + pr = span + e, e >= 0, so Wo = ceil((W + e) / sw) >= ceil(W / sw)
    e = int(rng.integers(0, stride[-1] + 1)) if stride[-1] > 1 or seed % 7 == 1 else 0
    left = int(rng.integers(0, span[-1] + 1))
    pads = [(left, span[-1] - left + e)]
    if nsp == 2:
        pads.insert(0, (int(rng.integers(0, span[0] + 2)), int(rng.integers(0, span[0] + 2))))
    spatial = tuple(int(rng.integers(max(1, s - sum(p) + 1), 40))
                    for s, p in zip(span, pads))
    cin, cout = int(rng.integers(1, 7)) * groups, int(rng.integers(1, 40)) * groups
    x = rng.standard_normal((int(rng.integers(1, 5)), cin) + spatial).astype(np.float32)
    w = rng.standard_normal((cout, cin // groups) + kernel).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    if seed % 8 == 0:
        x[0, 0].flat[0] = np.inf
        x[-1, -1].flat[x[0, 0].size // 2] = np.nan
    op = convcpu.conv2d if nsp == 2 else convcpu.conv1d
    args = dict(stride=stride, padding=tuple(pads), dilation=dilation, groups=groups)
    x_before = x.copy()
    implicit = op(x, w, b, **args)
    assert implicit.shape[-1] >= -(-x.shape[-1] // stride[-1])
    monkeypatch.setattr(_core, "IMPLICIT_GEMM", False)
    im2col = op(x, w, b, **args)
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_array_equal(implicit.view(np.uint32), im2col.view(np.uint32))
    want = conv_reference(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64),
                          stride=stride, pads=tuple(pads), dilation=dilation, groups=groups)
    np.testing.assert_allclose(implicit, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("seed", range(12))
def test_implicit_1x1_is_the_packed_gemm(seed, implicit, monkeypatch):
    """An unpadded stride-1 1x1 NCHW float32 convolution with at least
    IMPLICIT_1X1_CHANNELS input channels a group goes to the implicit
    convolution under the and'ed loads (here any 1x1: the threshold is set to
    1), and to the own GEMM on the input in place otherwise: the same bits
    either way, and the reference's values.  Batches, groups, odd image
    sizes (ragged panels), bias, 1-D, and the input left untouched."""
    if _core.gemm_backend() != "convcpu":
        pytest.skip("the implicit convolution runs on the own GEMM's kernels")
    from convcpu._reference import conv_reference
    rng = np.random.default_rng(5100 + seed)
    nsp = 1 if seed % 4 == 3 else 2
    groups = 1 + int(seed % 3 == 2)
    spatial = tuple(int(rng.integers(1, 30)) for _ in range(nsp))
    cin, cout = int(rng.integers(1, 300)) * groups, int(rng.integers(1, 90)) * groups
    x = rng.standard_normal((int(rng.integers(1, 4)), cin) + spatial).astype(np.float32)
    w = rng.standard_normal((cout, cin // groups) + (1,) * nsp).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32) if seed % 2 else None
    op = convcpu.conv2d if nsp == 2 else convcpu.conv1d
    x_before = x.copy()
    monkeypatch.setattr(_core, "IMPLICIT_1X1_CHANNELS", 1)
    implicit_1x1 = op(x, w, b, groups=groups)
    monkeypatch.setattr(_core, "IMPLICIT_1X1_CHANNELS", 10 ** 9)
    packed = op(x, w, b, groups=groups)
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_array_equal(implicit_1x1.view(np.uint32), packed.view(np.uint32))
    want = conv_reference(x.astype(np.float64), w.astype(np.float64),
                          None if b is None else b.astype(np.float64), groups=groups)
    np.testing.assert_allclose(implicit_1x1, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("seed", range(42))
def test_implicit_conv_ragged_tail_kernels(seed, implicit, monkeypatch):
    """A tile that ends 1-4 pixels past a panel (33-36 left) or past a half
    panel (17-20 left, or 51-52: a panel, then 16 + t) runs those pixels on
    the tail kernels of convcpu_sconv_implicit (CG_CONV_KERNEL_Z), which keep
    one vector per tail pixel with lane i for output channel i; 37-50 left
    run as one panel of 48 lanes, the third vector masked below 48, and 0-2
    tail pixels (CG_CONV_KERNEL3, blocks of 8 rows).  The same bits as the
    im2col path, and the reference's values, over outputs of those sizes
    (7x7, 6x6, 6x7, 10x10, 14x14, 1-D 33-52 ...), output channels from 1 to
    past two blocks of rows, several blocks of input channels (channel
    blocks after the first add to C), bias or none, edges padded, a NaN and
    an inf on a tail pixel's taps.  Wide panels (_core.implicit_panels, AMD
    Zen 4's default) run the same sizes on panels of 48 lanes + 0-2 (97-98
    left cut into 48 and 49-50), and their last 1-8 pixels (1-8 left, or
    51-56 left after a panel of 48: 52, 56, 99, 100, 14x14, 7x8; a lone
    image of 1-8 pixels) on the transposed tail kernel (CG_CONV_KERNEL_T:
    output channels along the vector, 16 rows of A transposed in registers,
    past one block of 16 rows with 24 and 37 output channels)."""
    if _core.gemm_backend() != "convcpu":
        pytest.skip("the implicit convolution runs on the own GEMM's kernels")
    from convcpu._reference import conv_reference
    rng = np.random.default_rng(5300 + seed)
    monkeypatch.setattr(_core, "MIN_TASKS", int(rng.choice([1, 2, 4])))
    sizes = [(7, 7), (6, 6), (10, 10), (14, 14), (3, 11), (4, 5), (1, 17), (4, 13),
             (5, 10), (2, 26), (33,), (36,), (49,), (52,), (68,), (100,), (6, 7), (37,),
             (48,), (3, 17), (97,), (7, 14), (99,), (7, 8), (56,), (53,), (2, 3), (1, 1),
             (8,), (98,)]
    spatial = sizes[seed % len(sizes)]
    nsp = len(spatial)
    kernel = tuple(int(k) for k in rng.choice([1, 3, 5], nsp))
    pads = tuple((k // 2, k // 2) for k in kernel)
    cin = int(rng.choice([1, 5, 40]))
    cout = int(rng.choice([1, 7, 9, 13, 24, 37]))
    x = rng.standard_normal((int(rng.integers(1, 3)), cin) + spatial).astype(np.float32)
    w = rng.standard_normal((cout, cin) + kernel).astype(np.float32)
    b = None if seed % 3 == 2 else rng.standard_normal(cout).astype(np.float32)
    if seed % 4 == 1:  # the image's last pixels are the tail's
        x[0, 0].flat[-1] = np.nan
        x[-1, -1].flat[-2] = np.inf
    op = convcpu.conv2d if nsp == 2 else convcpu.conv1d
    args = dict(padding=pads)
    implicit = op(x, w, b, **args)
    assert implicit.shape[2:] == spatial
    monkeypatch.setattr(_core, "IMPLICIT_GEMM", False)
    im2col = op(x, w, b, **args)
    np.testing.assert_array_equal(implicit.view(np.uint32), im2col.view(np.uint32))
    want = conv_reference(x.astype(np.float64), w.astype(np.float64),
                          None if b is None else b.astype(np.float64), pads=pads)
    np.testing.assert_allclose(implicit, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("tail", range(1, 9))
@pytest.mark.parametrize("lead", [0, 48, 96])
def test_implicit_transposed_tail(tail, lead, implicit, monkeypatch):
    """The last 1-8 pixels of a tile: alone, after a panel of 48 lanes, or
    after two (1-D outputs of tail, 48 + tail and 96 + tail pixels, one tile
    each).  Under wide panels those of 3-8 after a panel (1-8 when alone)
    run on the transposed tail kernel (CG_CONV_KERNEL_T), 1-2 after a panel
    on the 48-lane kernel's extra pixels.  The same bits as the im2col path
    and the reference's values, with two blocks of input channels (the
    second adds to C), 37 output channels (blocks of 16, 16 and 5 rows),
    bias or none, the edges zero-padded, a NaN weight (its output channel
    NaN) and, past 3 tail pixels, an inf in the input's last pixel."""
    if _core.gemm_backend() != "convcpu":
        pytest.skip("the implicit convolution runs on the own GEMM's kernels")
    from convcpu._reference import conv_reference
    monkeypatch.setattr(_core, "MIN_TASKS", 1)
    rng = np.random.default_rng(5700 + 10 * tail + lead)
    x = rng.standard_normal((1, 100, lead + tail)).astype(np.float32)
    w = rng.standard_normal((37, 100, 3)).astype(np.float32)
    b = rng.standard_normal(37).astype(np.float32) if tail % 2 else None
    w[5, 3, 1] = np.nan
    if tail > 3:
        x[0, 97, -1] = np.inf
    x_before = x.copy()
    implicit = convcpu.conv1d(x, w, b, padding=1)
    monkeypatch.setattr(_core, "IMPLICIT_GEMM", False)
    im2col = convcpu.conv1d(x, w, b, padding=1)
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_array_equal(implicit.view(np.uint32), im2col.view(np.uint32))
    want = conv_reference(x.astype(np.float64), w.astype(np.float64),
                          None if b is None else b.astype(np.float64), pads=((1, 1),))
    np.testing.assert_allclose(implicit, want, rtol=1e-4, atol=1e-4)
    assert np.isnan(implicit[0, 5]).all() and np.isfinite(implicit[0, 6:, :-2]).all()


@pytest.mark.parametrize("seed", range(16))
def test_implicit_conv_of_gathered_images(seed, implicit, monkeypatch):
    """Batches of small images with "same" rows and columns at stride 1 go to
    the implicit convolution several whole images to a task: copied one
    after another into a plane per channel, so that a panel's pixels run on
    from one image into the next (the tap masks restart at each image's
    first row), into an output tile stored image by image (plan_gathered).
    The same bits as the im2col path, and the reference's values: random
    kernels, dilations, uneven pads, groups, 1-D, bias or none, batches that
    leave a last task with fewer images, a NaN in one image only."""
    if _core.gemm_backend() != "convcpu":
        pytest.skip("the implicit convolution runs on the own GEMM's kernels")
    from convcpu._reference import conv_reference
    rng = np.random.default_rng(4200 + seed)
    monkeypatch.setattr(_core, "MIN_TASKS", int(rng.choice([1, 2])))
    nsp = 1 if seed % 4 == 3 else 2
    groups = 1 + int(seed % 5 == 2)
    kernel = tuple(int(rng.integers(1, 6)) for _ in range(nsp))
    dilation = tuple(int(rng.integers(1, 3)) for _ in range(nsp))
    span = [(k - 1) * d for k, d in zip(kernel, dilation)]
    pads = []
    for s in span:
        left = int(rng.integers(0, s + 1))
        pads.append((left, s - left))
    spatial = tuple(int(rng.integers(1, 16)) for _ in range(nsp))
    cin, cout = int(rng.integers(1, 6)) * groups, int(rng.integers(1, 70)) * groups
    x = rng.standard_normal((int(rng.integers(3, 14)), cin) + spatial).astype(np.float32)
    w = rng.standard_normal((cout, cin // groups) + kernel).astype(np.float32)
    b = None if seed % 3 == 1 else rng.standard_normal(cout).astype(np.float32)
    if seed % 4 == 0:
        x[1, 0].flat[-1] = np.nan
    op = convcpu.conv2d if nsp == 2 else convcpu.conv1d
    args = dict(padding=tuple(pads), dilation=dilation, groups=groups)
    gathered = op(x, w, b, **args)
    assert gathered.shape[2:] == x.shape[2:]
    monkeypatch.setattr(_core, "IMPLICIT_GEMM", False)
    im2col = op(x, w, b, **args)
    np.testing.assert_array_equal(gathered.view(np.uint32), im2col.view(np.uint32))
    want = conv_reference(x.astype(np.float64), w.astype(np.float64),
                          None if b is None else b.astype(np.float64), pads=tuple(pads),
                          dilation=dilation, groups=groups)
    np.testing.assert_allclose(gathered, want, rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(not OWN, reason="this CPU has no AVX-512: BLAS only")
@pytest.mark.parametrize("m", [1, 7, 13, 24, 30, 64])
@pytest.mark.parametrize("with_bias", [False, True])
def test_own_gemm_from_bias_is_the_preset_chain(m, with_bias):
    """convcpu_sgemm_bias (C = bias + A B, C not read: NaN there stays out)
    starts each chain from the bias: the same bits as presetting C to the
    bias and accumulating (beta 1), over every kind of panel (full, half,
    17-24 in row pairs, 33-36 with a ragged tail, B in place for few rows)
    and terms past one reduction block."""
    rng = np.random.default_rng(m + 100 * with_bias)
    for n in (5, 17, 20, 24, 33, 36, 45, 100, 196):
        for k in (1, 3, 300):
            a = rng.standard_normal((m, k)).astype(np.float32)
            b = rng.standard_normal((k, n)).astype(np.float32)
            bias = rng.standard_normal(m).astype(np.float32) if with_bias else None
            got = np.full((m, n), np.nan, np.float32)
            assert _core._gemm_bias_for_tests(a, b, bias, got)
            preset = np.zeros((m, n), np.float32)
            if with_bias:
                preset[...] = bias[:, None]
            # row-major C = A B is column-major C^T = B^T A^T
            want = _core._gemm_for_tests("N", "N", np.asfortranarray(b.T),
                                         np.asfortranarray(a.T), 1.0,
                                         np.asfortranarray(preset.T)).T
            np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
    empty = np.full((m, 0), np.nan, np.float32)
    assert _core._gemm_bias_for_tests(np.zeros((m, 4), np.float32),
                                      np.zeros((4, 0), np.float32), None, empty)


def _guarded(values, at_end):
    """A C-contiguous copy of values in memory with a PROT_NONE page right
    before it (at_end False) or right after it (at_end True): a read one
    element outside the array kills the process."""
    page = mmap.PAGESIZE
    nbytes = values.nbytes
    data_pages = -(-nbytes // page)
    buf = mmap.mmap(-1, (data_pages + 2) * page)
    offset = page + (data_pages * page - nbytes if at_end else 0)
    x = np.frombuffer(buf, values.dtype, values.size, offset).reshape(values.shape)
    x[...] = values
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    base = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    for start in (base, base + (data_pages + 1) * page):
        assert libc.mprotect(start, page, 0) == 0, ctypes.get_errno()  # PROT_NONE
    return x


@pytest.mark.skipif(not OWN, reason="this CPU has no AVX-512: BLAS only")
@pytest.mark.parametrize("panels", ["narrow", "wide"])
@pytest.mark.parametrize("seed", range(24))
def test_implicit_and_loads_stay_inside_the_input(seed, panels):
    """The "and" loads of the implicit convolution read all 32 lanes of a
    panel's row, the masked-out ones too, so a panel takes them only where
    every row of its channel block lies inside the input (or the task's
    copy of it): the first channel's taps above the image and the last
    channel's below it read before and past the array.  Inputs flush against
    a PROT_NONE page on either side (one sample: read in place), stride 1
    and "same" columns, narrow and wide panels (the 48-lane ones read 48 or
    64 values a row); no crash, and the bits of the masked loads."""
    rng = np.random.default_rng(5600 + seed)
    nsp = 1 if seed % 4 == 3 else 2
    kernel = tuple(int(rng.integers(1, 6)) for _ in range(nsp))
    dilation = tuple(int(rng.integers(1, 3)) for _ in range(nsp))
    span = [(k - 1) * d for k, d in zip(kernel, dilation)]
    left = int(rng.integers(0, span[-1] + 1))
    pads = [(left, span[-1] - left)]
    if nsp == 2:
        pads.insert(0, (int(rng.integers(0, span[0] + 2)), int(rng.integers(0, span[0] + 2))))
    spatial = tuple(int(rng.integers(max(1, s - sum(p) + 1), 40)) for s, p in zip(span, pads))
    cin, cout = int(rng.integers(1, 4)), int(rng.integers(1, 40))
    values = rng.standard_normal((1, cin) + spatial).astype(np.float32)
    w = rng.standard_normal((cout, cin) + kernel).astype(np.float32)
    op = convcpu.conv2d if nsp == 2 else convcpu.conv1d
    args = dict(padding=tuple(pads), dilation=dilation)
    before = _core.implicit_loads(), _core.implicit_panels()
    try:
        _core.implicit_panels(panels)
        _core.implicit_loads("masked")
        want = op(values, w, **args)
        _core.implicit_loads("and")
        for at_end in (False, True):
            got = op(_guarded(values, at_end), w, **args)
            np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
    finally:
        _core.implicit_loads(before[0])
        _core.implicit_panels(before[1])


@pytest.mark.skipif(not OWN, reason="this CPU has no AVX-512: BLAS only")
@pytest.mark.parametrize("m,k,n", [(40, 20, 8013), (192, 32, 1700), (25, 1, 11000), (61, 7, 5000)])
@pytest.mark.parametrize("with_bias", [False, True])
def test_own_gemm_sweeps_are_the_panel_by_panel_chain(m, k, n, with_bias):
    """A reduction of at most 32 terms into a C block past 1 MB runs each
    register block through groups of up to 16 packed panels (cg_gemm's
    sweeps, which store rows of C in long runs); the same product cut into
    narrow column slices (C blocks far under 1 MB: one panel at a time) gives
    the same bits, over rows past several register blocks, a column count
    that leaves a part group, a half panel and a ragged tail, and the bias."""
    rng = np.random.default_rng(m * k + n)
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    bias = rng.standard_normal(m).astype(np.float32) if with_bias else None
    whole = np.full((m, n), np.nan, np.float32)
    assert m * n * 4 > 1024 * 1024 and _core._gemm_bias_for_tests(a, b, bias, whole)
    for j0 in range(0, n, 96):
        part = np.full((m, min(96, n - j0)), np.nan, np.float32)
        assert _core._gemm_bias_for_tests(a, np.ascontiguousarray(b[:, j0:j0 + 96]), bias, part)
        np.testing.assert_array_equal(whole[:, j0:j0 + 96].view(np.uint32), part.view(np.uint32))
    want = a.astype(np.float64) @ b + (0 if bias is None else bias[:, None])
    bound = np.abs(a).astype(np.float64) @ np.abs(b) + (0 if bias is None else np.abs(bias)[:, None])
    assert np.all(np.abs(whole - want) <= 1e-6 * (k + 2) * bound)
