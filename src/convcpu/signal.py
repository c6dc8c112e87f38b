"""True convolution and correlation of images, as ``scipy.signal.convolve2d`` and
``correlate2d``: every mode and boundary, computed by a parallel, vectorised
direct stencil (`convcpu._direct.stencil2d`)."""
import numpy as np

from convcpu import _arrays, _direct, _threads

_BOUNDARIES = {"fill": "fill", "pad": "fill", "wrap": "wrap", "circular": "wrap",
               "symm": "symm", "symmetric": "symm"}
_NUMPY_PAD = {"wrap": "wrap", "symm": "symmetric"}


def correlate2d(in1, in2, mode="full", boundary="fill", fillvalue=0, *, out=None,
                num_threads=None):
    """Cross-correlate two 2-D arrays, as ``scipy.signal.correlate2d``.

    Parameters
    ----------
    in1, in2 : 2-D array_like of real numbers (complex is a TypeError).
    mode : "full" (H1 + H2 - 1, W1 + W2 - 1), "same" (the shape of in1, centred
        as SciPy) or "valid" (H1 - H2 + 1, W1 - W2 + 1; if in2 is the larger in
        every dimension the inputs are swapped and the result flipped, as SciPy;
        if neither is, ValueError).
    boundary : "fill" (with `fillvalue`), "wrap" (periodic) or "symm" (mirrored,
        repeating the edge); SciPy's aliases "pad", "circular", "symmetric" too.
    fillvalue : real scalar.
    out, num_threads : as every convcpu op.

    Returns
    -------
    numpy.ndarray, float32 or float64: the inputs promote like NumPy, then to at
    least float32 (so uint8 images give float32, where SciPy would return uint8
    that wraps around).

    Examples
    --------
    Seed 002: the edge detector [1, -1] finds the vertical edge of a 2x4 image.

    >>> import numpy as np, convcpu
    >>> image = np.array([[1, 1, 0, 0], [1, 1, 0, 0]], np.float32)
    >>> convcpu.correlate2d(image, [[1, -1]], mode="valid")
    array([[0., 1., 0.],
           [0., 1., 0.]], dtype=float32)
    """
    return _stencil(in1, in2, mode, boundary, fillvalue, out, num_threads, flip=False)


def convolve2d(in1, in2, mode="full", boundary="fill", fillvalue=0, *, out=None,
               num_threads=None):
    """Convolve two 2-D arrays (the kernel flipped), as ``scipy.signal.convolve2d``;
    arguments and dtypes as `correlate2d` ("valid" swaps the inputs when in2 is
    the larger, which convolution does not notice).

    Examples
    --------
    >>> import numpy as np, convcpu
    >>> convcpu.convolve2d(np.eye(2), [[1, 2]])
    array([[1., 2., 0.],
           [0., 1., 2.]])
    """
    return _stencil(in1, in2, mode, boundary, fillvalue, out, num_threads, flip=True)


def _padded_index(size, before, after, boundary):
    """The source index of each coordinate of an axis padded by (before, after):
    -1 for the fill value."""
    index = np.arange(size, dtype=np.intp)
    if boundary == "fill":
        return np.pad(index, (before, after), constant_values=-1)
    return np.pad(index, (before, after), mode=_NUMPY_PAD[boundary])


def _stencil(in1, in2, mode, boundary, fillvalue, out, num_threads, flip):
    name = "convolve2d" if flip else "correlate2d"
    in1 = _arrays.as_array(in1, "in1")
    in2 = _arrays.as_array(in2, "in2")
    for arg, array in (("in1", in1), ("in2", in2)):
        if array.ndim != 2:
            raise ValueError(f"{name}: {arg} must be a 2-D array, got shape {array.shape}")
        if array.size == 0:
            raise ValueError(f"{name}: {arg} must not be empty, got shape {array.shape}")
    if mode not in ("full", "same", "valid"):
        raise ValueError(f"mode must be 'full', 'same' or 'valid', got {mode!r}")
    if not isinstance(boundary, str) or boundary not in _BOUNDARIES:
        raise ValueError(f"boundary must be one of {sorted(_BOUNDARIES)}, got {boundary!r}")
    boundary = _BOUNDARIES[boundary]
    fill = _arrays.as_array(fillvalue, "fillvalue")
    if fill.size != 1:
        raise ValueError(f"fillvalue must be a scalar, got shape {fill.shape}")
    dtype = _arrays.compute_dtype(in1, in2)
    threads, use_openmp = _threads.resolve(num_threads)

    swapped = False
    if mode == "valid":
        fits1 = all(a >= b for a, b in zip(in1.shape, in2.shape))
        fits2 = all(b >= a for a, b in zip(in1.shape, in2.shape))
        if not (fits1 or fits2):
            raise ValueError("for 'valid' mode one input must be at least as large as the other "
                             f"in every dimension, got shapes {in1.shape} and {in2.shape}")
        if not fits1:
            in1, in2, swapped = in2, in1, True
    (H, W), (R, S) = in1.shape, in2.shape
    if mode == "full":
        offset, out_shape = (0, 0), (H + R - 1, W + S - 1)
    elif mode == "same":
        offset = ((R - 1) // 2, (S - 1) // 2) if flip else (R // 2, S // 2)
        out_shape = (H, W)
    else:
        offset, out_shape = (R - 1, S - 1), (H - R + 1, W - S + 1)
    result = _arrays.check_out(out, out_shape, dtype, {"in1": in1, "in2": in2})

    kernel = in2[::-1, ::-1] if flip else in2
    rows = _padded_index(H, R - 1, R - 1, boundary)[offset[0]:offset[0] + out_shape[0] + R - 1]
    cols = _padded_index(W, S - 1, S - 1, boundary)[offset[1]:offset[1] + out_shape[1] + S - 1]
    col_off = offset[1] - (S - 1)
    col_lo = int(np.clip(-col_off, 0, cols.size))
    col_hi = int(np.clip(W - col_off, col_lo, cols.size))
    _direct.stencil2d(_arrays.contiguous(in1, dtype), _arrays.contiguous(kernel, dtype), result,
                      np.ascontiguousarray(rows), np.ascontiguousarray(cols), col_lo, col_hi,
                      col_off, float(fill.reshape(())), threads, use_openmp)
    if swapped and not flip:
        # correlation is not symmetric: SciPy flips the swapped result back
        result[...] = result[::-1, ::-1].copy()
    return result
