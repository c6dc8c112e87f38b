"""Workspaces are bounded tiles: a convolution's peak memory is its output plus
a few MB, whatever the image (no whole-tensor im2col)."""
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import resource, sys
    import numpy as np
    import convcpu
    fmt = sys.argv[1]
    shape = (8, 64, 224, 224) if fmt == "NCHW" else (8, 224, 224, 64)
    x = np.ones(shape, np.float32)
    w = np.ones((64, 64, 3, 3) if fmt == "NCHW" else (3, 3, 64, 64), np.float32)
    convcpu.conv2d(x[:1, ..., :8, :8] if fmt == "NCHW" else x[:1, :8, :8],
                   w, padding=1, data_format=fmt)  # load everything once
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    y = convcpu.conv2d(x, w, padding=1, data_format=fmt)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(after - before, y.nbytes)
""")


@pytest.mark.parametrize("fmt", ["NCHW", "NHWC"])
def test_peak_memory_is_output_plus_bounded_workspace(fmt):
    result = subprocess.run([sys.executable, "-c", SCRIPT, fmt], capture_output=True, text=True,
                            timeout=600, check=True)
    growth, output_bytes = map(int, result.stdout.split())
    assert growth <= output_bytes + 16 * 2**20, (growth, output_bytes)
