"""Gradients of conv1d / conv2d, as ``torch.nn.grad``: with respect to the input
(a transposed convolution) and to the weight (im2col tiles + GEMM, per-slot
partial sums added in a fixed order, so the result is deterministic)."""
import numpy as np

from convcpu import _arrays, _core, _geometry, _threads
from convcpu.transpose import _conv_transpose


def conv1d_input(input_shape, weight, grad_output, stride=1, padding=0, dilation=1, groups=1,
                 *, data_format="NCL", weight_format=None, num_threads=None):
    """Gradient of `conv1d` with respect to its input, as ``torch.nn.grad.conv1d_input``;
    see `conv2d_input`."""
    return _input_grad(1, input_shape, weight, grad_output, stride, padding, dilation, groups,
                       data_format, weight_format, num_threads)


def conv2d_input(input_shape, weight, grad_output, stride=1, padding=0, dilation=1, groups=1,
                 *, data_format="NCHW", weight_format=None, num_threads=None):
    """Gradient of `conv2d` with respect to its input, as ``torch.nn.grad.conv2d_input``.

    Parameters
    ----------
    input_shape : the shape of the forward input ((N, C, H, W) for NCHW,
        (N, H, W, C) for NHWC; unbatched shapes work as in `conv2d`).
    weight : the forward weight (OIHW with NCHW, HWIO with NHWC, or `weight_format`).
    grad_output : the gradient of the forward output, of its exact shape.
    stride, padding, dilation, groups : those of the forward call (every
        padding form of `conv2d`; zeros padding).

    Returns
    -------
    numpy.ndarray of `input_shape`: conv_transpose2d(grad_output, weight) with the
    output_padding that gives back the input size.

    Examples
    --------
    >>> import numpy as np, convcpu.grad
    >>> convcpu.grad.conv2d_input((1, 1, 3, 3), np.ones((1, 1, 2, 2)), np.ones((1, 1, 2, 2)))[0, 0]
    array([[1., 2., 1.],
           [2., 4., 2.],
           [1., 2., 1.]])
    """
    return _input_grad(2, input_shape, weight, grad_output, stride, padding, dilation, groups,
                       data_format, weight_format, num_threads)


def conv1d_weight(input, weight_shape, grad_output, stride=1, padding=0, dilation=1, groups=1,
                  *, data_format="NCL", weight_format=None, num_threads=None):
    """Gradient of `conv1d` with respect to its weight, as ``torch.nn.grad.conv1d_weight``;
    see `conv2d_weight`."""
    return _weight_grad(1, input, weight_shape, grad_output, stride, padding, dilation, groups,
                        data_format, weight_format, num_threads)


def conv2d_weight(input, weight_shape, grad_output, stride=1, padding=0, dilation=1, groups=1,
                  *, data_format="NCHW", weight_format=None, num_threads=None):
    """Gradient of `conv2d` with respect to its weight, as ``torch.nn.grad.conv2d_weight``.

    Parameters
    ----------
    input : the forward input (NCHW or NHWC as `data_format`).
    weight_shape : the shape of the weight, in `weight_format` (default OIHW with
        NCHW, HWIO with NHWC).
    grad_output : the gradient of the forward output, of its exact shape.

    Returns
    -------
    numpy.ndarray of `weight_shape`.  The sum over samples and pixels is split
    into chunks by shape alone and added in a fixed order: the same bits for any
    thread count.

    Examples
    --------
    >>> import numpy as np, convcpu.grad
    >>> x = np.arange(9.0).reshape(1, 1, 3, 3)
    >>> convcpu.grad.conv2d_weight(x, (1, 1, 2, 2), np.ones((1, 1, 2, 2)))[0, 0]
    array([[ 8., 12.],
           [20., 24.]])
    """
    return _weight_grad(2, input, weight_shape, grad_output, stride, padding, dilation, groups,
                        data_format, weight_format, num_threads)


def _shape(value, name):
    try:
        shape = tuple(_geometry._as_int(v, name) for v in value)
    except TypeError:
        raise TypeError(f"{name} must be a tuple of ints, got {value!r}") from None
    if any(v < 0 for v in shape):
        raise ValueError(f"{name} must not have negative entries, got {value!r}")
    return shape


def _forward_window(nspatial, input_shape, weight_oi_shape, stride, padding, dilation, groups,
                    data_format, last, names):
    """Check the forward geometry and return (batched input shape, unbatched,
    channels, spatial, Window, forward output shape).  `names`: what the caller
    calls the forward input and weight ("input_shape", "weight" or "input",
    "weight_shape"), for the messages."""
    if len(input_shape) not in (nspatial + 1, nspatial + 2):
        raise ValueError(f"{names[0]} must have {nspatial + 2} entries ({data_format}) or "
                         f"{nspatial + 1} (unbatched), got {input_shape}")
    unbatched = len(input_shape) == nspatial + 1
    shape_b = ((1,) if unbatched else ()) + tuple(input_shape)
    channels = shape_b[-1] if last else shape_b[1]
    spatial = shape_b[1:-1] if last else shape_b[2:]
    out_channels, in_per_group = weight_oi_shape[:2]
    groups = _geometry.expand(groups, 1, "groups")[0]
    if channels % groups or out_channels % groups or in_per_group != channels // groups:
        raise ValueError(
            f"{names[1]} (OI order: {out_channels} output and {in_per_group} input channels "
            f"per group) does not fit {names[0]} of {channels} channels with groups={groups}")
    window = _geometry.window(spatial, weight_oi_shape[2:], stride, dilation, padding)
    out_shape = ((shape_b[0],) + window.out_spatial + (out_channels,) if last
                 else (shape_b[0], out_channels) + window.out_spatial)
    return shape_b, unbatched, channels, spatial, window, out_shape, groups


def _check_grad_output(grad_output, out_shape, unbatched):
    expected = out_shape[1:] if unbatched else out_shape
    if grad_output.shape != expected:
        raise ValueError(f"grad_output has shape {grad_output.shape}; the forward output of "
                         f"these arguments has shape {expected}")
    return grad_output[np.newaxis] if unbatched else grad_output


def _input_grad(nspatial, input_shape, weight, grad_output, stride, padding, dilation, groups,
                data_format, weight_format, num_threads):
    last = _geometry.channels_last(data_format, nspatial)
    input_shape = _shape(input_shape, "input_shape")
    weight = _arrays.as_array(weight, "weight")
    grad_output = _arrays.as_array(grad_output, "grad_output")
    if weight_format is None:
        weight_format = _geometry.default_weight_format(nspatial, last)
    w_oi = _geometry.weight_to_oi(weight, weight_format, nspatial)
    _, unbatched, _, spatial, window, out_shape, groups = _forward_window(
        nspatial, input_shape, w_oi.shape, stride, padding, dilation, groups, data_format, last,
        ("input_shape", "weight"))
    _check_grad_output(grad_output, out_shape, unbatched)
    # The forward weight read as a transposed-convolution weight: its O (the
    # forward output channels) is the transposed input, its I the output.
    swapped = weight_format.upper().translate(str.maketrans("OI", "IO"))
    return _conv_transpose(nspatial, grad_output, weight, None, window.stride, window.pads, 0,
                           groups, window.dilation, tuple(spatial), data_format, swapped,
                           None, num_threads)


def _weight_grad(nspatial, input, weight_shape, grad_output, stride, padding, dilation, groups,
                 data_format, weight_format, num_threads):
    last = _geometry.channels_last(data_format, nspatial)
    x = _arrays.as_array(input, "input")
    grad_output = _arrays.as_array(grad_output, "grad_output")
    weight_shape = _shape(weight_shape, "weight_shape")
    if weight_format is None:
        weight_format = _geometry.default_weight_format(nspatial, last)
    oi_shape = _geometry.shape_to_oi(weight_shape, weight_format, nspatial)
    dtype = _arrays.compute_dtype(x, grad_output)
    threads, use_openmp = _threads.resolve(num_threads)
    _, unbatched, channels, _, window, out_shape, groups = _forward_window(
        nspatial, x.shape, oi_shape, stride, padding, dilation, groups, data_format, last,
        ("input", "weight_shape"))
    dy = _check_grad_output(grad_output, out_shape, unbatched)
    xb = x[np.newaxis] if unbatched else x
    if nspatial == 1:
        xb = xb[:, np.newaxis] if last else xb[:, :, np.newaxis]
        dy = dy[:, np.newaxis] if last else dy[:, :, np.newaxis]
    out_channels = oi_shape[0]
    if min(oi_shape) == 0 or xb.shape[0] == 0:
        flat = np.zeros((out_channels, int(np.prod(oi_shape[1:]))), dtype)
    else:
        with _threads.blas_single_threaded(dtype):
            flat = _core.weight_grad(_arrays.contiguous(xb, dtype), _arrays.contiguous(dy, dtype),
                                     *window.tables(), window.dims(channels, out_channels, groups),
                                     last, threads, use_openmp)
        if last:  # (R*S*Cg, K) -> (K, Cg, R, S) below
            flat = flat.reshape(oi_shape[2:] + oi_shape[1:2] + (out_channels,))
            flat = np.moveaxis(flat, (-1, -2), (0, 1))
    w_oi = flat.reshape(oi_shape)
    # back to the caller's weight format
    fmt = weight_format.upper().replace("L", "W")
    letters = ("O", "I") + (("H", "W") if nspatial == 2 else ("W",))
    return np.ascontiguousarray(w_oi.transpose([letters.index(c) for c in fmt]))
