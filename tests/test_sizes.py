"""Sizes: arrays of more than 2**31 elements are indexed correctly (every
family), BLAS dimensions beyond its 32-bit ints are split, and absurd
geometries are refused before anything is allocated.

The big inputs are np.zeros (calloc: pages nobody writes stay unallocated)
with a few values set near their far end, so a 8.6 GB input costs a few
pages; each case runs in a child process that reports its peak RSS growth.
"""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import convcpu
import convcpu.grad

# H x W = 2,147,778,569 > 2**31; with a 3x3 kernel and stride 16384 the output is
# 5 x 3 windows, the last one reading elements beyond index 2**31.
SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import convcpu, convcpu.grad

    H, W, S = 65539, 32771, 16384
    BIG = 2**31 + 5

    def status(field):
        with open("/proc/self/status") as handle:
            return next(int(l.split()[1]) for l in handle if l.startswith(field)) * 1024

    def image(last=False):
        # A 1-channel image, zero but for window (0, 0) and the last window (4, 2),
        # whose centres hold 3 and 2, and one more value at its far corner.
        x = np.zeros((1, H, W, 1) if last else (1, 1, H, W), np.float32)
        v = x[0, :, :, 0] if last else x[0, 0]
        v[1, 1], v[H - 2, W - 2], v[H - 1, W - 1] = 3, 2, 5
        return x

    rng = np.random.default_rng(0)
    w3 = rng.standard_normal((3, 3)).astype(np.float32)

    def windows(scale_centre, scale_corner=0.0):
        # The expected 5 x 3 map: window (0, 0) sees 3 at its centre, window
        # (4, 2) 2 at its centre and 5 at its bottom-right corner.
        out = np.zeros((5, 3), np.float32)
        out[0, 0] = 3 * scale_centre
        out[4, 2] = 2 * scale_centre + 5 * scale_corner
        return out

    def check(got, expected):
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)

    case = sys.argv[1]
    before = status("VmRSS")
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")  # reset VmHWM to the current RSS
    if case == "conv2d-NCHW":
        y = convcpu.conv2d(image(), w3[None, None], stride=S)
        check(y[0, 0], windows(w3[1, 1], w3[2, 2]))
    elif case == "conv2d-NHWC":
        y = convcpu.conv2d(image(True), w3[:, :, None, None], stride=S, data_format="NHWC")
        check(y[0, :, :, 0], windows(w3[1, 1], w3[2, 2]))
    elif case == "conv1d-channels":
        # 32771 channels x 65539 samples: the channel offset passes 2**31.
        x = np.zeros((1, W, H), np.float32)
        x[0, W - 1, H - 2] = 2
        wt = np.zeros((1, W, 3), np.float32)
        wt[0, W - 1] = w3[0]
        y = convcpu.conv1d(x, wt, stride=S)
        check(y[0, 0], [0, 0, 0, 0, 2 * w3[0, 1]])
    elif case == "depthwise-NHWC":
        y = convcpu.depthwise_conv2d(image(True), w3[:, :, None, None], None, S)
        check(y[0, :, :, 0], windows(w3[1, 1], w3[2, 2]))
    elif case == "depthwise-NCHW":
        y = convcpu.depthwise_conv2d(image(), w3[:, :, None, None], None, S, data_format="NCHW")
        check(y[0, 0], windows(w3[1, 1], w3[2, 2]))
    elif case == "separable-NHWC":
        y = convcpu.separable_conv2d(image(True), w3[:, :, None, None],
                                     np.array([[2.0, -1.0]], np.float32), None, S)
        check(y[0, :, :, 1], -windows(w3[1, 1], w3[2, 2]))
    elif case == "im2col":
        y = convcpu.im2col(image(), 3, stride=S)
        check(y[0, 4].reshape(5, 3), windows(1))
        check(y[0, 8].reshape(5, 3), windows(0, 1))
    elif case == "extract_image_patches":
        y = convcpu.extract_image_patches(image(True), 3, S, 1)
        check(y[0, :, :, 4], windows(1))
    elif case == "local_conv2d":
        wl = rng.standard_normal((15, 9, 1)).astype(np.float32)
        y = convcpu.local_conv2d(image(True), wl, None, 3, S)
        check(y[0, :, :, 0], windows(1) * wl[:, 4, 0].reshape(5, 3)
              + windows(0, 1) * wl[:, 8, 0].reshape(5, 3))
    elif case == "deform_conv2d":
        offset = np.zeros((1, 18, 5, 3), np.float32)
        offset[0, 8:10, 4, 2] = -0.5  # centre tap of the last window: (H - 2.5, W - 2.5)
        y = convcpu.deform_conv2d(image(), offset, w3[None, None], stride=S)
        expected = windows(w3[1, 1], w3[2, 2])
        expected[4, 2] = 0.25 * 2 * w3[1, 1] + 5 * w3[2, 2]
        check(y[0, 0], expected)
    elif case == "grad.conv2d_weight":
        y = convcpu.grad.conv2d_weight(image(), (1, 1, 3, 3), np.ones((1, 1, 5, 3), np.float32),
                                       stride=S)
        expected = np.zeros((3, 3), np.float32)
        expected[1, 1], expected[2, 2] = 5, 5
        check(y[0, 0], expected)
    elif case == "blas-k":
        # A 1x1 convolution over 2**31 + 5 channels: the GEMM's k is split.
        x = np.zeros((1, BIG, 1, 1), np.float32)
        wt = np.zeros((1, BIG, 1, 1), np.float32)
        x[0, 7], wt[0, 7], x[0, BIG - 2], wt[0, BIG - 2] = 1, 5, 3, 2
        y = convcpu.conv2d(x, wt)
        check(y.ravel(), [11])
    elif case == "blas-ld":
        # The same channels-last: x's leading dimension is 2**31 + 5.
        x = np.zeros((1, 1, 1, BIG), np.float32)
        wt = np.zeros((1, 1, BIG, 1), np.float32)
        x[..., 7], wt[0, 0, 7], x[..., BIG - 2], wt[0, 0, BIG - 2] = 1, 5, 3, 2
        y = convcpu.conv2d(x, wt, data_format="NHWC")
        check(y.ravel(), [11])
    # Big outputs (8.6 GB): the tests run them only with the memory to spare.
    elif case == "conv_transpose2d":
        x = windows(1) + windows(0, 1)  # 3 and 7 at the two corners of the 5 x 3 grid
        y = convcpu.conv_transpose2d(x[None, None], w3[None, None], stride=S)
        check(y[0, 0, :3, :3], 3 * w3)
        check(y[0, 0, H - 3:, W - 3:], 7 * w3)
        assert not y[0, 0, 3:H - 3:997, ::991].any()
    elif case == "col2im":
        cols = np.zeros((1, 9, 15), np.float32)
        cols[0, :, 0], cols[0, :, 14] = w3.ravel(), 2 * w3.ravel()
        y = convcpu.col2im(cols, (H, W), 3, stride=S)
        check(y[0, 0, :3, :3], w3)
        check(y[0, 0, H - 3:, W - 3:], 2 * w3)
    elif case == "grad.conv2d_input":
        dy = np.zeros((1, 1, 5, 3), np.float32)
        dy[0, 0, 4, 2] = 2
        y = convcpu.grad.conv2d_input((1, 1, H, W), w3[None, None], dy, stride=S)
        check(y[0, 0, H - 3:, W - 3:], 2 * w3)
        assert not y[0, 0, :H - 3:1001, ::1003].any()
    elif case == "correlate2d":
        y = convcpu.correlate2d(image()[0, 0], w3, "valid")
        check(y[H - 3, W - 3], 2 * w3[1, 1] + 5 * w3[2, 2])
        check(y[0, 0], 3 * w3[1, 1])
    else:
        raise SystemExit(f"unknown case {case}")
    print(status("VmHWM") - before, y.nbytes)
""")

SMALL_OUTPUT = ["conv2d-NCHW", "conv2d-NHWC", "conv1d-channels", "depthwise-NHWC",
                "depthwise-NCHW", "separable-NHWC", "im2col", "extract_image_patches",
                "local_conv2d", "deform_conv2d", "grad.conv2d_weight", "blas-k", "blas-ld"]
BIG_OUTPUT = ["conv_transpose2d", "col2im", "grad.conv2d_input", "correlate2d"]
OUTPUT_BYTES = 65539 * 32771 * 4


def _available():
    with open("/proc/meminfo") as handle:
        return next(int(line.split()[1]) for line in handle
                    if line.startswith("MemAvailable")) * 1024


def _run(case):
    result = subprocess.run([sys.executable, "-c", SCRIPT, case], capture_output=True, text=True,
                            timeout=900, env=dict(os.environ, CONVCPU_NUM_THREADS="2"))
    assert result.returncode == 0, result.stderr[-3000:]
    return map(int, result.stdout.split())


linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


@linux
@pytest.mark.parametrize("case", SMALL_OUTPUT)
def test_inputs_beyond_2_31_elements(case):
    """Every family reads an 8.6 GB input past element 2**31 correctly, without
    copying it (peak RSS grows by less than 64 MB)."""
    growth, _ = _run(case)
    assert growth < 64 * 2**20, growth


@linux
@pytest.mark.parametrize("case", BIG_OUTPUT)
def test_outputs_beyond_2_31_elements(case):
    if _available() < OUTPUT_BYTES + 4 * 2**30:
        pytest.skip(f"needs {OUTPUT_BYTES / 2**30 + 4:.1f} GiB of free memory")
    growth, nbytes = _run(case)
    assert nbytes > 4 * 2**31
    assert growth < nbytes + 64 * 2**20, (growth, nbytes)


X = np.ones((1, 2, 5, 5), np.float32)
W3 = np.ones((3, 2, 3, 3), np.float32)
HUGE = 2**40
ABSURD = [
    ("conv2d padding", lambda: convcpu.conv2d(X, W3, padding=HUGE), ValueError, "too long"),
    ("conv2d dilation", lambda: convcpu.conv2d(X, W3, dilation=HUGE), ValueError, "too small"),
    ("conv1d padding", lambda: convcpu.conv1d(X[:, :, 0], W3[:, :, 0], padding=HUGE),
     ValueError, "too long"),
    ("conv2d NHWC padding", lambda: convcpu.conv2d(X.transpose(0, 2, 3, 1),
                                                   W3.transpose(2, 3, 1, 0), padding=HUGE,
                                                   data_format="NHWC"), ValueError, "too long"),
    ("transpose stride", lambda: convcpu.conv_transpose2d(X, W3.transpose(1, 0, 2, 3),
                                                          stride=HUGE), MemoryError, "GiB"),
    ("transpose output_padding", lambda: convcpu.conv_transpose2d(
        X, W3.transpose(1, 0, 2, 3), output_padding=HUGE), MemoryError, "GiB"),
    ("transpose output_size", lambda: convcpu.conv_transpose2d(
        X, W3.transpose(1, 0, 2, 3), stride=2**20, output_size=(2**22 + 3,) * 2), MemoryError,
     "GiB"),
    ("depthwise padding", lambda: convcpu.depthwise_conv2d(X, np.ones((3, 3, 2, 1)), None, 1,
                                                           HUGE, data_format="NCHW"),
     ValueError, "too long"),
    ("local padding", lambda: convcpu.local_conv2d(X, np.ones((1, 18, 3)), None, 3,
                                                   padding=HUGE, data_format="NCHW"),
     ValueError, "too long"),
    ("im2col padding", lambda: convcpu.im2col(X, 3, padding=HUGE), ValueError, "too long"),
    ("col2im output_size", lambda: convcpu.col2im(np.ones((1, 18, 9)), (HUGE, HUGE), 3,
                                                  stride=HUGE), ValueError, "too long"),
    ("extract rates", lambda: convcpu.extract_image_patches(X.transpose(0, 2, 3, 1), 3, 1,
                                                            HUGE, "SAME"), ValueError, "too long"),
    ("deform padding", lambda: convcpu.deform_conv2d(X, np.zeros((1, 18, 3, 3)), W3,
                                                     padding=HUGE), ValueError, "too long"),
    ("grad input_shape", lambda: convcpu.grad.conv2d_input((1, 2, HUGE, HUGE), W3,
                                                           np.ones((1, 3, 3, 3)), stride=HUGE),
     ValueError, "too long"),
    ("grad weight_shape", lambda: convcpu.grad.conv2d_weight(X, (3, 2, HUGE, HUGE),
                                                             np.ones((1, 3, 3, 3))),
     ValueError, "too small"),
    ("conv1d 2**31 samples", lambda: convcpu.conv1d(
        np.broadcast_to(np.float32(0), (1, 1, 2**31)), np.ones((1, 1, 3), np.float32)),
     ValueError, "too long"),
    ("separable padding", lambda: convcpu.separable_conv2d(
        X, np.ones((3, 3, 2, 1)), np.ones((2, 4)), None, 1, HUGE, data_format="NCHW"),
     ValueError, "too long"),
    ("correlate2d huge", lambda: convcpu.correlate2d(
        np.broadcast_to(np.float32(0), (2**20, 2**20)), np.ones((3, 3)), "full"), MemoryError,
     "GiB"),
]


@pytest.mark.parametrize("call,exc,fragment", [a[1:] for a in ABSURD], ids=[a[0] for a in ABSURD])
def test_absurd_geometry_is_refused_before_allocating(call, exc, fragment):
    with pytest.raises(exc, match=fragment):
        call()
