"""Forward convolutions: conv1d and conv2d (cross-correlation, as in deep learning)."""
import numpy as np

from convcpu import _arrays, _core, _geometry, _threads, depthwise


def conv1d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
           data_format="NCL", weight_format=None, padding_mode="zeros", out=None,
           num_threads=None):
    """1-D convolution (cross-correlation), as ``torch.nn.functional.conv1d`` / ``tf.nn.conv1d``.

    Parameters
    ----------
    x : array_like, (N, C_in, L) for "NCL"/"NCW" or (N, L, C_in) for "NLC"/"NWC";
        an unbatched (C_in, L) / (L, C_in) input gives an unbatched output.
    weight : array_like, (C_out, C_in/groups, K) ("OIW", the default with NCL) or
        (K, C_in/groups, C_out) ("WIO", the default with NLC), or as `weight_format`.
    bias : (C_out,) or None.
    stride, dilation : int or 1-tuple, >= 1.
    padding : int, (p,), ((before, after),), "valid", "same" or "same_lower"
        (TensorFlow / ONNX SAME: output ceil(L / stride), odd padding at the end,
        for any stride).
    groups : int dividing C_in and C_out.
    padding_mode : "zeros", "reflect", "replicate" or "circular" (PyTorch).
    out : optional C-contiguous array of the result's exact shape and dtype.
    num_threads : threads for this call (None: `convcpu.get_num_threads()`).

    Returns
    -------
    numpy.ndarray, (N, C_out, L_out) or (N, L_out, C_out), float32 or float64
    (``np.result_type`` of the inputs, at least float32).

    Examples
    --------
    >>> import numpy as np, convcpu
    >>> x = np.arange(5, dtype=np.float32).reshape(1, 1, 5)
    >>> convcpu.conv1d(x, np.array([[[1, -1]]], dtype=np.float32))
    array([[[-1., -1., -1., -1.]]], dtype=float32)
    """
    return _conv(1, x, weight, bias, stride, padding, dilation, groups, data_format,
                 weight_format, padding_mode, out, num_threads)


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
           data_format="NCHW", weight_format=None, padding_mode="zeros", out=None,
           num_threads=None):
    """2-D convolution (cross-correlation), as ``torch.nn.functional.conv2d``,
    ``tf.nn.conv2d`` and ONNX ``Conv``.

    Parameters
    ----------
    x : array_like, (N, C_in, H, W) for "NCHW" or (N, H, W, C_in) for "NHWC";
        an unbatched 3-D input gives an unbatched output.
    weight : array_like, (C_out, C_in/groups, R, S) ("OIHW", PyTorch, the default
        with NCHW) or (R, S, C_in/groups, C_out) ("HWIO", TensorFlow, the default
        with NHWC); any order of those letters through `weight_format` ("OHWI", ...).
    bias : (C_out,) or None.
    stride, dilation : int or (sh, sw), >= 1.
    padding : int, (ph, pw), ((top, bottom), (left, right)) (asymmetric, as ONNX
        pads), "valid", "same" (TensorFlow / ONNX SAME_UPPER: output
        ceil(in / stride) for any stride, odd padding at the end) or "same_lower".
    groups : int dividing C_in and C_out.
    padding_mode : "zeros", "reflect", "replicate" or "circular" (PyTorch).
    out : optional C-contiguous array of the result's exact shape and dtype.
    num_threads : threads for this call (None: `convcpu.get_num_threads()`).

    Returns
    -------
    numpy.ndarray, (N, C_out, H_out, W_out) or (N, H_out, W_out, C_out) with
    H_out = floor((H + top + bottom - dilation*(R-1) - 1) / stride) + 1;
    float32 or float64 (``np.result_type`` of the inputs, at least float32).

    Examples
    --------
    >>> import numpy as np, convcpu
    >>> x = (np.arange(16, dtype=np.float32) * 0.1).reshape(1, 4, 4, 1)
    >>> convcpu.conv2d(x, np.ones((3, 3, 1, 1), np.float32), padding="valid",
    ...                data_format="NHWC")[0, :, :, 0].round(4)
    array([[4.5, 5.4],
           [8.1, 9. ]], dtype=float32)
    """
    return _conv(2, x, weight, bias, stride, padding, dilation, groups, data_format,
                 weight_format, padding_mode, out, num_threads)


def _conv(nspatial, x, weight, bias, stride, padding, dilation, groups, data_format,
          weight_format, padding_mode, out, num_threads):
    key = _arrays.call_key((x, weight, bias, out),
                           (nspatial, stride, padding, dilation, groups, data_format,
                            weight_format, padding_mode))
    call = _CALLS.get(key) if key is not None else None
    if call is None:
        return _conv_checked(key, nspatial, x, weight, bias, stride, padding, dilation, groups,
                             data_format, weight_format, padding_mode, out, num_threads)
    # A call like one that passed every check: only what depends on the
    # arrays' memory is checked again (the Python of a depthwise conv2d: 8 ->
    # 5 us a call on a tiny input, 13 -> 8-9 us on 144 channels @56).
    threads, use_openmp = _threads.resolve(num_threads)
    result, result_b = _arrays.cached_output(out, call.result_shape, call.batched_shape,
                                             call.dtype, {"x": x, "weight": weight, "bias": bias})
    return _run(nspatial, x[None] if call.unbatched else x, weight.transpose(call.axes), bias,
                call, result, result_b, padding_mode, threads, use_openmp)


class _Call:
    """What a conv1d / conv2d call that passed its checks derived from its
    arguments' shapes, dtypes and geometry (not from the arrays' memory)."""
    __slots__ = ("last", "dtype", "unbatched", "channels", "axes", "out_channels",
                 "in_per_group", "kernel", "groups", "window", "result_shape", "batched_shape")


# _arrays.call_key -> _Call
_CALLS = {}


def _conv_checked(key, nspatial, x, weight, bias, stride, padding, dilation, groups,
                  data_format, weight_format, padding_mode, out, num_threads):
    """Every check of a conv1d / conv2d call, then the call; what the checks
    derived kept under `key` (unless None)."""
    last = _geometry.channels_last(data_format, nspatial)
    x, weight, bias, dtype = _arrays.operands(x, weight, bias)
    threads, use_openmp = _threads.resolve(num_threads)

    xb, unbatched, channels, spatial = _arrays.batched(x, nspatial, data_format, last)

    if weight_format is None:
        weight_format = _geometry.default_weight_format(nspatial, last)
    axes = _geometry.weight_axes(weight.shape, weight_format, nspatial)
    w_oi = weight.transpose(axes)
    out_channels, in_per_group = w_oi.shape[:2]
    kernel = w_oi.shape[2:]
    groups = _geometry.expand(groups, 1, "groups")[0]
    if channels % groups or out_channels % groups:
        raise ValueError(
            f"groups={groups} must divide the input channels ({channels}) and the output "
            f"channels ({out_channels})")
    if in_per_group != channels // groups:
        raise ValueError(
            f"weight {weight.shape} ({weight_format}) has {in_per_group} input channels per group; "
            f"x {x.shape} ({data_format}) with groups={groups} needs {channels // groups}")
    if min(kernel, default=1) < 1:
        raise ValueError(f"weight {weight.shape} has an empty kernel")
    _arrays.check_bias(bias, out_channels)

    window = _geometry.window(spatial, kernel, stride, dilation, padding, padding_mode)
    result, result_b = _arrays.allocate_output(out, xb.shape[0], out_channels, window.out_spatial,
                                               last, unbatched, dtype,
                                               {"x": x, "weight": weight, "bias": bias})
    call = _Call()
    call.last, call.dtype, call.unbatched, call.channels = last, dtype, unbatched, channels
    call.axes, call.out_channels, call.in_per_group = axes, out_channels, in_per_group
    call.kernel, call.groups, call.window = kernel, groups, window
    call.result_shape, call.batched_shape = result.shape, result_b.shape
    _arrays.remember(_CALLS, key, call)
    return _run(nspatial, xb, w_oi, bias, call, result, result_b, padding_mode, threads,
                use_openmp)


def _run(nspatial, xb, w_oi, bias, call, result, result_b, padding_mode, threads, use_openmp):
    """Compute a checked call into result (result_b: its batched view)."""
    last, dtype, channels, kernel = call.last, call.dtype, call.channels, call.kernel
    out_channels, groups, window = call.out_channels, call.groups, call.window
    if result.size == 0:
        return result
    if call.in_per_group == 0:  # an empty reduction: the output is the bias
        fill = 0 if bias is None else bias.reshape((-1,) + (() if last else (1,) * nspatial))
        result_b[...] = fill
        return result

    # From here on a 1-D convolution is a 2-D one with a height of 1.
    if nspatial == 1:
        xb = xb[:, np.newaxis] if last else xb[:, :, np.newaxis]
        w_oi = w_oi[:, :, np.newaxis]
    if depthwise.use_direct(channels, out_channels, groups, kernel, last, dtype, window,
                            padding_mode):
        w_direct = depthwise.conv_weight(w_oi, channels, out_channels, last)
        depthwise.run_direct(xb, w_direct, bias, result_b, window, channels, out_channels,
                             groups, last, dtype, threads)
        return result
    xc = _arrays.contiguous(xb, dtype)
    if last:  # (R*S*Cg, K): TensorFlow's HWIO flattened
        w_packed = _arrays.contiguous(w_oi.transpose(2, 3, 1, 0), dtype).reshape(-1, out_channels)
    else:  # (K, Cg*R*S): PyTorch's OIHW flattened
        w_packed = _arrays.contiguous(w_oi, dtype).reshape(out_channels, -1)
    bias_c = None if bias is None else _arrays.contiguous(bias, dtype)
    with _threads.blas_single_threaded(dtype):
        _core.conv_forward(xc, w_packed, bias_c, result_b, *window.tables(),
                           window.dims(channels, out_channels, groups), last,
                           window.unpadded_1x1, threads, use_openmp)
    return result
