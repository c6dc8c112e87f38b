"""Deformable convolution (DCNv1 / DCNv2), as ``torchvision.ops.deform_conv2d``
and ONNX ``DeformConv``.

Every kernel tap of every output pixel reads the input at its regular
position moved by a learned (dy, dx) offset, bilinearly interpolated, and
(DCNv2) scaled by a mask.  The engine is the core's: the im2col of each tile of
output pixels samples through a per-thread table of corner indices and
weights, and the same GEMM driver as `conv2d` does the rest, so the workspace
is a bounded tile whatever the image.
"""
from convcpu import _arrays, _core, _geometry, _threads


def deform_conv2d(x, offset, weight, bias=None, stride=1, padding=0, dilation=1, mask=None, *,
                  out=None, num_threads=None):
    """Deformable 2-D convolution, as ``torchvision.ops.deform_conv2d`` (DCNv1; DCNv2
    with `mask`) and ONNX ``DeformConv``.  NCHW only.

    Tap (r, s) of output pixel (i, j) reads channel c at
    ``(i*sh - top + r*dh + dy, j*sw - left + s*dw + dx)``, where (dy, dx) is the
    offset of tap (r, s) in the offset group of c; the value is interpolated
    bilinearly from the four neighbouring pixels, pixels outside the image
    count as zero, and the sample is multiplied by the mask of the tap.

    Parameters
    ----------
    x : array_like, (N, C, H, W); an unbatched (C, H, W) input (with unbatched
        `offset` and `mask`) gives an unbatched output.
    offset : array_like, (N, 2*O*R*S, H_out, W_out): for offset group o and tap
        (r, s), channel ``2*((o*R + r)*S + s)`` holds dy and the next one dx
        (torchvision's and ONNX's layout).  O, the number of offset groups,
        follows from the channel count and must divide C; offset group o
        covers input channels ``o*C/O .. (o+1)*C/O - 1``.
    weight : array_like, (K, C/groups, R, S) (OIHW); groups = C / weight.shape[1].
    bias : (K,) or None.
    stride, dilation : int or (sh, sw), >= 1.
    padding : int, (ph, pw), ((top, bottom), (left, right)) (ONNX's asymmetric
        pads), "valid", "same" or "same_lower", as `conv2d`.  Padding only
        moves the regular grid: samples outside the image are zero.
    mask : array_like (N, O*R*S, H_out, W_out) or None (DCNv1: a mask of ones).
    out : optional C-contiguous (N, K, H_out, W_out) array of the result's dtype.
    num_threads : threads for this call (None: `convcpu.get_num_threads()`).

    Returns
    -------
    numpy.ndarray (N, K, H_out, W_out), float32 or float64 (``np.result_type``
    of the inputs, at least float32).

    Notes
    -----
    The interpolation is torchvision's: the four corner products are summed in
    the order top-left, top-right, bottom-left, bottom-right and the mask
    multiplies the sum.  A corner whose weight is zero is not read, so a sample
    at an integer position is exactly that pixel (zero offsets sample exactly
    `conv2d`'s patches: the same bits where the product is convcpu's own
    float32 GEMM; on SciPy's BLAS the rounding may follow its block shapes), and an Inf or NaN pixel reaches only the samples that touch it
    (torchvision would multiply it by 0 and give NaN).  A NaN offset gives a
    NaN sample; an infinite one lies outside the image and samples zero.
    A position is the integer window position plus the offset, split into its
    floor and fraction: exact in float32 at any image size (torchvision's
    float32 positions lose the fraction, then whole pixels, beyond 2**24).

    Examples
    --------
    ONNX's ``test_basic_deform_conv_without_padding``: tap (0, 0) of output
    (0, 0) moves down half a pixel, tap (1, 0) of output (0, 1) left 0.1.

    >>> import numpy as np, convcpu
    >>> x = np.arange(9, dtype=np.float32).reshape(1, 1, 3, 3)
    >>> offset = np.zeros((1, 8, 2, 2), np.float32)
    >>> offset[0, 0, 0, 0] = 0.5
    >>> offset[0, 5, 0, 1] = -0.1
    >>> convcpu.deform_conv2d(x, offset, np.ones((1, 1, 2, 2), np.float32))
    array([[[[ 9.5, 11.9],
             [20. , 24. ]]]], dtype=float32)
    """
    x = _arrays.as_array(x, "x")
    offset = _arrays.as_array(offset, "offset")
    weight = _arrays.as_array(weight, "weight")
    bias = None if bias is None else _arrays.as_array(bias, "bias")
    mask = None if mask is None else _arrays.as_array(mask, "mask")
    dtype = _arrays.compute_dtype(x, offset, weight, bias, mask)
    threads, use_openmp = _threads.resolve(num_threads)

    xb, unbatched, channels, spatial = _arrays.batched(x, 2, "NCHW", False)
    if weight.ndim != 4:
        raise ValueError(f"weight must be 4-D (K, C/groups, R, S), got shape {weight.shape}")
    out_channels, in_per_group, R, S = weight.shape
    if R < 1 or S < 1:
        raise ValueError(f"weight {weight.shape} has an empty kernel")
    if in_per_group < 1 or channels % in_per_group:
        raise ValueError(
            f"weight {weight.shape} has {in_per_group} input channels per group, which must "
            f"divide the {channels} channels of x {x.shape}")
    groups = channels // in_per_group
    if out_channels % groups:
        raise ValueError(
            f"weight {weight.shape}: groups = {channels} / {in_per_group} = {groups} must divide "
            f"the {out_channels} output channels")
    _arrays.check_bias(bias, out_channels)

    window = _geometry.window(spatial, (R, S), stride, dilation, padding)
    batch = xb.shape[0]
    lead = () if unbatched else (batch,)
    taps = R * S
    if (offset.ndim != x.ndim or offset.shape[:-3] != lead
            or offset.shape[-2:] != window.out_spatial or offset.shape[-3] % (2 * taps)
            or offset.shape[-3] == 0):
        raise ValueError(
            f"offset must have shape {lead + ('2*O*R*S',) + window.out_spatial} "
            f"(2*O*{R}*{S} channels for O offset groups), got {offset.shape}")
    offset_groups = offset.shape[-3] // (2 * taps)
    if channels % offset_groups:
        raise ValueError(
            f"offset {offset.shape} has {offset_groups} offset groups (2*O*R*S channels), "
            f"which must divide the {channels} channels of x")
    mask_shape = lead + (offset_groups * taps,) + window.out_spatial
    if mask is not None and mask.shape != mask_shape:
        raise ValueError(f"mask must have shape {mask_shape} (O*R*S = {offset_groups}*{R}*{S} "
                         f"channels), got {mask.shape}")

    result, result_b = _arrays.allocate_output(
        out, batch, out_channels, window.out_spatial, False, unbatched, dtype,
        {"x": x, "offset": offset, "weight": weight, "bias": bias, "mask": mask})
    if result.size == 0:
        return result
    xc = _arrays.contiguous(xb, dtype)
    offset_c = _arrays.contiguous(offset, dtype)
    mask_c = None if mask is None else _arrays.contiguous(mask, dtype)
    w_packed = _arrays.contiguous(weight, dtype).reshape(out_channels, -1)
    bias_c = None if bias is None else _arrays.contiguous(bias, dtype)
    with _threads.blas_single_threaded(dtype):
        _core.deform_forward(xc, offset_c, mask_c, w_packed, bias_c, result_b, *window.tables(),
                             window.dims(channels, out_channels, groups), window.pads[0][0],
                             offset_groups, threads, use_openmp)
    return result
