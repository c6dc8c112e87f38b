"""convcpu: fast, faithful CPU convolutions for NumPy arrays.

Deep-learning convolutions (cross-correlation) in NCHW and NHWC layouts with
PyTorch / TensorFlow / ONNX semantics, computed by OpenMP-parallel tiled
im2col and SciPy's BLAS.  See SPEC.md for the contract.
"""
from convcpu._threads import get_num_threads, set_num_threads
from convcpu.conv import conv1d, conv2d

__version__ = "0.1.0"

__all__ = ["conv1d", "conv2d", "get_num_threads", "set_num_threads", "__version__"]
