"""convcpu: fast, faithful CPU convolutions for NumPy arrays.

Deep-learning convolutions (cross-correlation) in NCHW and NHWC layouts with
PyTorch / TensorFlow / ONNX semantics, computed by OpenMP-parallel tiled
im2col and SciPy's BLAS.  See SPEC.md for the contract.
"""
from convcpu import grad
from convcpu._threads import get_num_threads, set_num_threads
from convcpu.conv import conv1d, conv2d
from convcpu.deform import deform_conv2d
from convcpu.depthwise import depthwise_conv2d, separable_conv2d
from convcpu.local import local_conv1d, local_conv2d
from convcpu.patches import col2im, extract_image_patches, im2col
from convcpu.signal import convolve2d, correlate2d
from convcpu.transpose import conv_transpose1d, conv_transpose2d

__version__ = "0.1.0"

__all__ = ["col2im", "conv1d", "conv2d", "conv_transpose1d", "conv_transpose2d", "convolve2d",
           "correlate2d", "deform_conv2d", "depthwise_conv2d", "extract_image_patches", "get_num_threads", "grad", "im2col",
           "local_conv1d", "local_conv2d", "separable_conv2d", "set_num_threads", "__version__"]
