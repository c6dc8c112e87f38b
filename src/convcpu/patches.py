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
    window = _geometry.window(spatial, kernel, stride, dilation, padding)
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
    window = _geometry.window(x.shape[1:3], kernel, _tf_pair(strides, "strides"),
                              _tf_pair(rates, "rates"), padding.lower())
    n, c = x.shape[0], x.shape[3]
    out_shape = (n, window.Ho, window.Wo, kernel[0] * kernel[1] * c)
    return _run_patches(x, window, True, out_shape, out, num_threads)


def col2im(cols, output_size, kernel_size, stride=1, padding=0, dilation=1, *, out=None,
           num_threads=None):
    """Sum sliding columns back into images, as ``torch.nn.functional.fold`` and
    ONNX ``Col2Im``: the adjoint of `im2col`.

    Parameters
    ----------
    cols : array_like, (N, C*prod(kernel_size), L), or (C*prod(kernel_size), L)
        for an unbatched result; rows ordered (c, *kernel offsets), the L
        columns the block positions in row-major order.
    output_size : int (two spatial axes, as PyTorch) or one int per spatial
        axis; any number of spatial axes (ONNX ``image_shape``).
    kernel_size, stride, dilation : int or one int per spatial axis, >= 1.
    padding : int, one int per axis, (before, after) pairs per axis (ONNX
        pads), "valid", "same" or "same_lower".
    out : optional C-contiguous array of the result's shape and dtype.
    num_threads : threads for this call.  Each (sample, channel) image is
        summed by one thread in a fixed order: no write races, and the same
        result for any thread count.

    Returns
    -------
    numpy.ndarray, (N, C, *output_size), float32 or float64.  L must equal the
    number of block positions, prod(floor((size + before + after -
    dilation*(k-1) - 1) / stride) + 1), else ValueError.

    Examples
    --------
    >>> import numpy as np, convcpu
    >>> convcpu.col2im(np.ones((1, 4, 4)), (3, 3), 2)[0, 0]
    array([[1., 2., 1.],
           [2., 4., 2.],
           [1., 2., 1.]])
    """
    cols = _arrays.as_array(cols, "cols")
    dtype = _arrays.compute_dtype(cols)
    threads, use_openmp = _threads.resolve(num_threads)
    if isinstance(output_size, (tuple, list, np.ndarray)):
        nspatial = len(output_size)
        if nspatial == 0:
            raise ValueError("output_size must name at least one spatial axis")
    else:
        nspatial = 2
    sizes = _geometry.expand(output_size, nspatial, "output_size")
    for name, value in (("kernel_size", kernel_size), ("stride", stride), ("dilation", dilation)):
        if isinstance(value, (tuple, list, np.ndarray)) and len(value) != nspatial:
            raise ValueError(f"{name} has {len(value)} entries, but output_size {tuple(sizes)} "
                             f"has {nspatial} spatial axes")
    kernel = _geometry.expand(kernel_size, nspatial, "kernel_size")
    stride = _geometry.expand(stride, nspatial, "stride")
    dilation = _geometry.expand(dilation, nspatial, "dilation")
    pads = _geometry.resolve_padding(padding, sizes, kernel, stride, dilation)
    blocks = tuple(_geometry.output_size(sizes[i], kernel[i], stride[i], dilation[i], pads[i],
                                         f"output_size[{i}]") for i in range(nspatial))
    if cols.ndim not in (2, 3):
        raise ValueError(f"cols must have 3 dimensions (N, C*prod(kernel_size), L) or 2 "
                         f"(unbatched), got shape {cols.shape}")
    unbatched = cols.ndim == 2
    cb = cols[np.newaxis] if unbatched else cols
    taps, positions = int(np.prod(kernel)), int(np.prod(blocks))
    if cb.shape[1] % taps:
        raise ValueError(f"cols has {cb.shape[1]} rows, not a multiple of "
                         f"prod(kernel_size) = {taps} (kernel_size {kernel})")
    if cb.shape[2] != positions:
        raise ValueError(
            f"cols has {cb.shape[2]} columns; output_size {sizes} with kernel_size {kernel}, "
            f"stride {stride}, padding {pads} and dilation {dilation} has {positions} "
            f"block positions {blocks}")
    channels = cb.shape[1] // taps
    out_shape = (cb.shape[0], channels) + sizes
    result = _arrays.check_out(out, out_shape[1:] if unbatched else out_shape, dtype,
                               {"cols": cols})
    if result.size == 0:
        return result
    if cb.size == 0:
        result[...] = 0
        return result
    outer, inner = _fold_tables(sizes, kernel, stride, dilation, pads, blocks)
    planes = cb.shape[0] * channels
    _core.col2im_forward(_arrays.contiguous(cb, dtype).reshape(planes, -1),
                         result.reshape(planes, -1), outer, inner, threads, use_openmp)
    return result


def _fold_tables(sizes, kernel, stride, dilation, pads, blocks):
    """Offset tables of col2im: for the last spatial axis (kernel tap, block
    position) -> offset in the image, and the same for all leading axes
    together; -1 where the position is padding."""
    element_strides = np.cumprod((1,) + tuple(sizes[:0:-1]))[::-1]
    per_axis = []
    for i in range(len(sizes)):
        coord = (np.arange(blocks[i]) * stride[i] - pads[i][0])[None, :] + \
            (np.arange(kernel[i]) * dilation[i])[:, None]
        offset = np.where((coord >= 0) & (coord < sizes[i]), coord * element_strides[i], -1)
        per_axis.append(offset.astype(np.intp))
    outer = np.zeros((1, 1), np.intp)
    for table in per_axis[:-1]:
        combined = outer[:, None, :, None] + table[None, :, None, :]
        combined[(outer[:, None, :, None] < 0) | (table[None, :, None, :] < 0)] = -1
        outer = combined.reshape(outer.shape[0] * table.shape[0], -1)
    return np.ascontiguousarray(outer), np.ascontiguousarray(per_axis[-1])
