"""convcpu.grad against torch.nn.grad, finite differences and the forward op."""
import numpy as np
import pytest
from conftest import assert_close, optional, to_channels_last, weight_oi_to_io_last

import convcpu
import convcpu.grad as G

# (N, C_in, C_out, spatial, kernel, stride, padding, dilation, groups)
GEOMETRIES = [
    (2, 3, 4, (7, 9), (3, 3), (1, 1), 1, (1, 1), 1),
    (1, 4, 6, (10, 7), (3, 2), (2, 1), ((1, 0), (2, 1)), (1, 2), 2),
    (3, 6, 6, (5, 5), (1, 1), (1, 1), 0, (1, 1), 3),
    (1, 2, 3, (9, 8), (3, 3), (2, 2), "same", (1, 1), 1),
    (2, 3, 5, (17,), (3,), (2,), 1, (1,), 1),
    (1, 4, 4, (20,), (4,), (3,), ((2, 1),), (2,), 2),
]


def _case(geometry, dtype=np.float64):
    n, cin, cout, spatial, kernel, stride, padding, dilation, groups = geometry
    rng = np.random.default_rng(len(spatial) * 7 + cin)
    x = rng.standard_normal((n, cin) + spatial).astype(dtype)
    w = rng.standard_normal((cout, cin // groups) + kernel).astype(dtype)
    conv = convcpu.conv2d if len(spatial) == 2 else convcpu.conv1d
    y = conv(x, w, None, stride, padding, dilation, groups)
    dy = rng.standard_normal(y.shape).astype(dtype)
    return x, w, dy


def _ops(nsp):
    return (G.conv2d_input, G.conv2d_weight) if nsp == 2 else (G.conv1d_input, G.conv1d_weight)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=str)
def test_against_torch(geometry, dtype, threads):
    torch = optional("torch")
    x, w, dy = _case(geometry, dtype)
    stride, padding, dilation, groups = geometry[5:]
    if isinstance(padding, str) or not isinstance(padding, int) and \
            any(isinstance(p, tuple) for p in padding):
        pytest.skip("torch.nn.grad takes symmetric int padding only")
    nsp = x.ndim - 2
    tg = torch.nn.grad
    t_in, t_w = (tg.conv2d_input, tg.conv2d_weight) if nsp == 2 else (tg.conv1d_input,
                                                                      tg.conv1d_weight)
    expect_in = t_in(x.shape, torch.from_numpy(w), torch.from_numpy(dy), stride, padding,
                     dilation, groups).numpy()
    expect_w = t_w(torch.from_numpy(x), w.shape, torch.from_numpy(dy), stride, padding, dilation,
                   groups).numpy()
    grad_in, grad_w = _ops(nsp)
    got_in = grad_in(x.shape, w, dy, stride, padding, dilation, groups, num_threads=threads)
    got_w = grad_w(x, w.shape, dy, stride, padding, dilation, groups, num_threads=threads)
    assert got_in.dtype == dtype and got_w.dtype == dtype
    assert_close(got_in, expect_in, dtype)
    assert_close(got_w, expect_w, dtype)


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=str)
def test_finite_differences_and_layouts(geometry):
    """In float64, <dL/dx, e> and <dL/dw, e> match central differences of
    L = <conv(x, w), dy> along random directions; NHWC gives the same."""
    x, w, dy = _case(geometry)
    stride, padding, dilation, groups = geometry[5:]
    nsp = x.ndim - 2
    conv = convcpu.conv2d if nsp == 2 else convcpu.conv1d
    grad_in, grad_w = _ops(nsp)

    def loss(xx, ww):
        return float(np.vdot(conv(xx, ww, None, stride, padding, dilation, groups), dy))
    rng = np.random.default_rng(0)
    ex, ew, h = rng.standard_normal(x.shape), rng.standard_normal(w.shape), 1e-6
    gx = grad_in(x.shape, w, dy, stride, padding, dilation, groups)
    gw = grad_w(x, w.shape, dy, stride, padding, dilation, groups)
    numeric_x = (loss(x + h * ex, w) - loss(x - h * ex, w)) / (2 * h)
    numeric_w = (loss(x, w + h * ew) - loss(x, w - h * ew)) / (2 * h)
    np.testing.assert_allclose(np.vdot(gx, ex), numeric_x, rtol=1e-6)
    np.testing.assert_allclose(np.vdot(gw, ew), numeric_w, rtol=1e-6)
    fmt = "NHWC" if nsp == 2 else "NLC"
    w_last = weight_oi_to_io_last(w)
    gx_last = grad_in(to_channels_last(x).shape, w_last, to_channels_last(dy), stride, padding,
                      dilation, groups, data_format=fmt)
    gw_last = grad_w(to_channels_last(x), w_last.shape, to_channels_last(dy), stride, padding,
                     dilation, groups, data_format=fmt)
    np.testing.assert_allclose(gx_last, to_channels_last(gx), atol=1e-12)
    np.testing.assert_allclose(gw_last, weight_oi_to_io_last(gw), atol=1e-12)


def test_weight_gradient_is_deterministic():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((5, 8, 40, 40)).astype(np.float32)
    dy = rng.standard_normal((5, 16, 40, 40)).astype(np.float32)
    results = [G.conv2d_weight(x, (16, 8, 3, 3), dy, 1, 1, num_threads=t) for t in (1, 2, 3, 4)]
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])


def test_unbatched_and_empty():
    rng = np.random.default_rng(5)
    x, w = rng.standard_normal((3, 6, 6)), rng.standard_normal((2, 3, 3, 3))
    dy = rng.standard_normal((2, 4, 4))
    np.testing.assert_allclose(G.conv2d_weight(x, w.shape, dy),
                               G.conv2d_weight(x[None], w.shape, dy[None]))
    np.testing.assert_allclose(G.conv2d_input(x.shape, w, dy),
                               G.conv2d_input((1,) + x.shape, w, dy[None])[0])
    assert np.all(G.conv2d_weight(np.ones((0, 3, 6, 6)), w.shape, np.ones((0, 2, 4, 4))) == 0)


@pytest.mark.parametrize("call, match", [
    (lambda: G.conv2d_input((1, 3, 6, 6), np.ones((2, 3, 3, 3)), np.ones((1, 2, 5, 5))),
     "grad_output"),
    (lambda: G.conv2d_weight(np.ones((1, 3, 6, 6)), (2, 3, 3, 3), np.ones((1, 2, 4, 5))),
     "grad_output"),
    (lambda: G.conv2d_input((1, 4, 6, 6), np.ones((2, 3, 3, 3)), np.ones((1, 2, 4, 4))),
     "channels"),
    (lambda: G.conv2d_input((3, 6), np.ones((2, 3, 3, 3)), np.ones((1, 2, 4, 4))),
     "input_shape"),
    (lambda: G.conv2d_weight(np.ones((1, 3, 6, 6)), (2, 3, 3), np.ones((1, 2, 4, 4))),
     "dimensions"),
    (lambda: G.conv2d_weight(np.ones((1, 3, 6, 6)), (2, 3, 3, 3), np.ones((1, 2, 4, 4)),
                             stride=0), "stride"),
])
def test_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()
