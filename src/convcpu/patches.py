"""Patches: im2col (PyTorch unfold) and extract_image_patches (TensorFlow)."""
import numpy as np

from convcpu import _arrays, _core, _geometry, _threads


def _run_patches(x, window, channels_last, out_shape, out, num_threads, unbatched=False):
    dtype = _arrays.compute_dtype(x)
    threads, use_openmp = _threads.resolve(num_threads)
    result = _arrays.check_out(out, out_shape[1:] if unbatched else out_shape, dtype, {"x": x})
    if result.size == 0:
        return result
    xb = x[np.newaxis] if unbatched else x
    channels = xb.shape[-1] if channels_last else xb.shape[1]
    _core.patches_forward(_arrays.contiguous(xb, dtype), result.reshape(out_shape),
                          *window.tables(), window.dims(channels, 1), channels_last,
                          threads, use_openmp)
    return result


def im2col(x, kernel_size, stride=1, padding=0, dilation=1, *, out=None, num_threads=None):
    """Sliding patches of an NCHW batch as columns, as ``torch.nn.functional.unfold``.

    Parameters
    ----------
    x : array_like, (N, C, H, W), or (C, H, W) for an unbatched result.
    kernel_size, stride, dilation : int or (h, w), >= 1.
    padding : int, (ph, pw), ((top, bottom), (left, right)), "valid", "same" or
        "same_lower" (zeros).
    out : optional C-contiguous array of the result's shape and dtype.

    Returns
    -------
    numpy.ndarray, (N, C*R*S, L) with rows ordered (c, r, s) and the L = H_out*W_out
    columns the output positions in row-major order; float32 or float64.

    Examples
    --------
    >>> import numpy as np, convcpu
    >>> convcpu.im2col(np.arange(9.).reshape(1, 1, 3, 3), 2)[0]
    array([[0., 1., 3., 4.],
           [1., 2., 4., 5.],
           [3., 4., 6., 7.],
           [4., 5., 7., 8.]])
    """
    x = _arrays.as_array(x, "x")
    xb, unbatched, c, spatial = _arrays.batched(x, 2, "NCHW", False)
    kernel = _geometry.expand(kernel_size, 2, "kernel_size")
    window = _geometry.Window(spatial, kernel, stride, dilation, padding)
    n = xb.shape[0]
    out_shape = (n, c * kernel[0] * kernel[1], window.Ho * window.Wo)
    return _run_patches(x, window, False, out_shape, out, num_threads, unbatched)


def _tf_pair(value, name):
    """TensorFlow's [1, a, b, 1] form, or (a, b), or an int."""
    if isinstance(value, (tuple, list, np.ndarray)) and len(value) == 4:
        if value[0] != 1 or value[3] != 1:
            raise ValueError(f"{name} in the 4-entry form must be [1, {name}_rows, "
                             f"{name}_cols, 1], got {list(value)}")
        value = (value[1], value[2])
    return _geometry.expand(value, 2, name)


def extract_image_patches(x, sizes, strides, rates, padding="VALID", *, out=None,
                          num_threads=None):
    """Patches of an NHWC batch, as ``tf.image.extract_patches``.

    Parameters
    ----------
    x : array_like, (N, H, W, C).
    sizes, strides, rates : [1, a, b, 1] (TensorFlow's form), (a, b) or an int;
        rates is the dilation of the patch.
    padding : "VALID" or "SAME" (case-insensitive; SAME pads with zeros, any odd
        pixel at the end).

    Returns
    -------
    numpy.ndarray, (N, H_out, W_out, R*S*C), each patch in (r, s, c) order.
    """
    x = _arrays.as_array(x, "x")
    if x.ndim != 4:
        raise ValueError(f"x must have 4 dimensions (N, H, W, C), got shape {x.shape}")
    if not isinstance(padding, str) or padding.upper() not in ("SAME", "VALID"):
        raise ValueError(f"padding must be 'SAME' or 'VALID', got {padding!r}")
    kernel = _tf_pair(sizes, "sizes")
    window = _geometry.Window(x.shape[1:3], kernel, _tf_pair(strides, "strides"),
                              _tf_pair(rates, "rates"), padding.lower())
    n, c = x.shape[0], x.shape[3]
    out_shape = (n, window.Ho, window.Wo, kernel[0] * kernel[1] * c)
    return _run_patches(x, window, True, out_shape, out, num_threads)
