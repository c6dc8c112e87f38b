"""Workspaces are bounded tiles: a convolution's peak memory is its output plus
a few MB, whatever the image (no whole-tensor im2col)."""
import subprocess
import sys
import textwrap

import pytest

# Peak RSS during the call minus the RSS just before it.  The peak is this
# process's own high-water mark (VmHWM), reset just before the call; getrusage's
# ru_maxrss would not do: Linux carries it over from the parent across fork and
# exec (under pytest it is the size of the test process).
SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import convcpu

    def status(field):
        with open("/proc/self/status") as handle:
            return next(int(l.split()[1]) for l in handle if l.startswith(field)) * 1024

    op = sys.argv[1]
    if op == "local":
        x = np.ones((16, 64, 64, 16), np.float32)
        w = np.ones((62 * 62, 9 * 16, 16), np.float32)
        call = lambda xx, ww: convcpu.local_conv2d(xx, ww, None, 3)
        call(x[:1, :8, :8], w[:36])  # load everything once
    elif op.startswith("transpose"):
        fmt = op.split("-")[1]
        x = np.ones((8, 256, 64, 64) if fmt == "NCHW" else (8, 64, 64, 256), np.float32)
        w = np.ones((256, 128, 4, 4) if fmt == "NCHW" else (4, 4, 128, 256), np.float32)
        call = lambda xx, ww: convcpu.conv_transpose2d(xx, ww, None, 2, 1, data_format=fmt)
        call(x[:1, :, :8, :8] if fmt == "NCHW" else x[:1, :8, :8], w)
    elif op.startswith("separable"):
        # The depthwise intermediate (8 x 256 x 112 x 112, 103 MB) is never built.
        fmt = op.split("-")[1]
        x = np.ones((8, 256, 112, 112) if fmt == "NCHW" else (8, 112, 112, 256), np.float32)
        w = np.ones((3, 3, 256, 1), np.float32)
        wp = np.ones((256, 16), np.float32)
        call = lambda xx, ww: convcpu.separable_conv2d(xx, ww, wp, None, 1, 1, data_format=fmt)
        call(x[:1, :, :8, :8] if fmt == "NCHW" else x[:1, :8, :8], w)
    elif op == "deform":
        # Offsets of up to 3 pixels: every tile samples through the band buffer.
        x = np.ones((8, 64, 224, 224), np.float32)
        w = np.ones((64, 64, 3, 3), np.float32)
        offset = np.sin(np.arange(18 * 224 * 224, dtype=np.float32) * 3.0).reshape(
            1, 18, 224, 224) * 3
        offset = np.repeat(offset, 8, axis=0)
        call = lambda xx, ww: convcpu.deform_conv2d(xx, offset[:len(xx)], ww, None, 1, 1)
        call(x[:1], w)
    elif op == "NCHW-stride2":
        # the implicit convolution's phase copies: bounded bands of rows
        x = np.ones((8, 64, 224, 224), np.float32)
        w = np.ones((128, 64, 3, 3), np.float32)
        call = lambda xx, ww: convcpu.conv2d(xx, ww, stride=2, padding=1)
        call(x[:1, :, :8, :8], w)
    else:
        shape = (8, 64, 224, 224) if op == "NCHW" else (8, 224, 224, 64)
        x = np.ones(shape, np.float32)
        w = np.ones((64, 64, 3, 3) if op == "NCHW" else (3, 3, 64, 64), np.float32)
        call = lambda xx, ww: convcpu.conv2d(xx, ww, padding=1, data_format=op)
        call(x[:1, ..., :8, :8] if op == "NCHW" else x[:1, :8, :8], w)
    before = status("VmRSS")
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")  # reset VmHWM to the current RSS
    y = call(x, w)
    print(status("VmHWM") - before, y.nbytes)
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
@pytest.mark.parametrize("op", ["NCHW", "NCHW-stride2", "NHWC", "local", "transpose-NCHW",
                                "transpose-NHWC", "separable-NCHW", "separable-NHWC", "deform"])
def test_peak_memory_is_output_plus_bounded_workspace(op):
    result = subprocess.run([sys.executable, "-c", SCRIPT, op], capture_output=True, text=True,
                            timeout=600, check=True)
    growth, output_bytes = map(int, result.stdout.split())
    assert growth <= output_bytes + 16 * 2**20, (growth, output_bytes)
