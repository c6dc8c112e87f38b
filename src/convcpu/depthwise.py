"""Depthwise, separable and grouped convolution on the direct kernels of _direct.pyx.

A GEMM with one row per group is the wrong tool for depthwise convolution: the
direct kernels sum the taps of register blocks (output channels x output
columns channels-first, channels x output pixels channels-last) at close to
memory speed.  ``conv2d`` / ``conv1d`` route here when every group has one
input channel (any multiplier), and grouped convolutions with few channels
per group, in both layouts (see `use_direct`); the separable convolution
feeds the depthwise result of each band of output rows to the pointwise
product (float32: the own GEMM's kernels when they run, else the direct row
kernel) while it is in cache, with no whole intermediate tensor.
"""
import numpy as np

from convcpu import _arrays, _core, _direct, _geometry, _threads

# A task's gathered input band (channels first) or depthwise tile (separable)
# stays within the L2 cache.
BAND_BYTES = 256 * 1024
# A channels-first separable convolution's depthwise tile stays within L2.
L2_BYTES = 1024 * 1024
# Channels-first grouped convolutions run on the direct kernel when a group's
# reduction (Cg*R*S) and its output channels are at most these, else on BLAS
# GEMMs over im2col tiles.  Measured at one point only: ResNeXt g=32 (72, 8)
# takes 0.16 ms direct vs 0.30+ ms on GEMMs (docs/BENCHMARKS.md); the bounds
# themselves are a first guess, not a measured crossover.
DIRECT_MAX_REDUCTION = 256
# ... except on the implicit convolution (AMD Zen 4), measured faster with
# groups of at least 8 input channels (interleaved, 2 threads, implicit /
# direct: ResNeXt g=32 256 @28 0.87, batch 4 0.66, 512 @14 0.79, 1024 @7
# 0.97; with 4 input channels a group 1.05-1.09, so those stay direct).
GROUPED_IMPLICIT_MIN_IN = 8
DIRECT_MAX_GROUP_OUT = 32
# Channels-last grouped convolutions (Cg > 1) run on the direct kernel when a
# group has at most this many input channels and its output channels fill
# whole 32-byte vectors (8 float32 / 4 float64), at most DIRECT_MAX_GROUP_OUT.
# Measured (2 threads, 3x3, direct / GEMM time): Cg 2 / Kg 8 0.23, Cg 8 /
# Kg 8 (ResNeXt g=32 @28) 0.51, Cg 8 / Kg 16 0.71, Cg 16 / Kg 16 1.08-1.49.
DIRECT_MAX_GROUP_IN_LAST = 8


def depthwise_conv2d(x, weight, bias=None, stride=1, padding="valid", dilation=1, *,
                     data_format="NHWC", padding_mode="zeros", out=None, num_threads=None):
    """Depthwise 2-D convolution, as ``tf.nn.depthwise_conv2d``.

    Every input channel c is convolved (cross-correlated) with its own
    `M` filters; output channel ``c*M + m`` is filter m of channel c.

    Parameters
    ----------
    x : array_like, (N, H, W, C) for "NHWC" (the default, as TensorFlow) or
        (N, C, H, W) for "NCHW"; an unbatched 3-D input gives an unbatched output.
    weight : array_like, (R, S, C, M): TensorFlow's filter for both layouts;
        M is the depth multiplier.
    bias : (C*M,) or None.
    stride, dilation : int or (sh, sw), >= 1.  TensorFlow refuses a stride > 1
        together with a dilation > 1; convcpu computes that too (as PyTorch).
    padding : as `conv2d`: int, (ph, pw), ((top, bottom), (left, right)),
        "valid" (the default), "same" or "same_lower".
    padding_mode : "zeros", "reflect", "replicate" or "circular" (PyTorch).
    out : optional C-contiguous array of the result's exact shape and dtype.
    num_threads : threads for this call (None: `convcpu.get_num_threads()`).

    Returns
    -------
    numpy.ndarray, (N, H_out, W_out, C*M) or (N, C*M, H_out, W_out).

    Examples
    --------
    Seed 004's example (TensorFlow prints the same):

    >>> import numpy as np, convcpu
    >>> x = np.array([2, 5, 3, 3, 8, 2, 6, 1, 1, 2, 5, 4, 7, 9, 2, 3, -1, 3],
    ...              np.float32).reshape(1, 3, 3, 2)
    >>> k = np.array([3, 1, -2, 2, -1, -3, 4, 5], np.float32).reshape(2, 2, 2, 1)
    >>> convcpu.depthwise_conv2d(x, k)[0]
    array([[[ -2.,  18.],
            [ 12.,  21.]],
    <BLANKLINE>
           [[ 17.,  -7.],
            [-13.,  16.]]], dtype=float32)
    """
    key = _arrays.call_key((x, weight, bias, out),
                           ("depthwise", stride, padding, dilation, data_format, padding_mode))
    call = _CALLS.get(key) if key is not None else None
    if call is None:  # every check (what it derived kept under key)
        last = _geometry.channels_last(data_format, 2)
        x, weight, bias, dtype = _arrays.operands(x, weight, bias)
        xb, unbatched, channels, spatial = _arrays.batched(x, 2, data_format, last)
        R, S, M = _depthwise_weight_shape(weight, channels, x.shape, data_format, "weight")
        window = _geometry.window(spatial, (R, S), stride, dilation, padding, padding_mode)
        K = channels * M
        _arrays.check_bias(bias, K)
        result, result_b = _arrays.allocate_output(out, xb.shape[0], K, window.out_spatial,
                                                   last, unbatched, dtype,
                                                   {"x": x, "weight": weight, "bias": bias})
        _arrays.remember(_CALLS, key, (last, dtype, unbatched, channels, K, window,
                                       result.shape, result_b.shape))
    else:  # a call like one that passed every check: only the arrays' memory
        last, dtype, unbatched, channels, K, window, result_shape, batched_shape = call
        result, result_b = _arrays.cached_output(out, result_shape, batched_shape, dtype,
                                                 {"x": x, "weight": weight, "bias": bias})
        xb = x[None] if unbatched else x
    if result.size == 0:
        return result
    run_direct(xb, _kernel_weight(weight, last), bias, result_b, window, channels, K, channels,
               last, dtype, num_threads)
    return result


def separable_conv2d(x, depthwise_weight, pointwise_weight, bias=None, stride=1,
                     padding="valid", dilation=1, *, data_format="NHWC", padding_mode="zeros",
                     out=None, num_threads=None):
    """Depthwise then pointwise (1x1) convolution, fused, as ``tf.nn.separable_conv2d``
    (and Keras ``SeparableConv2D`` with its bias).

    Parameters
    ----------
    x : array_like, (N, H, W, C) for "NHWC" (default) or (N, C, H, W) for "NCHW";
        an unbatched 3-D input gives an unbatched output.
    depthwise_weight : (R, S, C, M), as `depthwise_conv2d`.
    pointwise_weight : (1, 1, C*M, K) (TensorFlow) or (C*M, K).
    bias : (K,) or None, added after the pointwise convolution (as Keras);
        the depthwise step has no bias.
    stride, padding, dilation, padding_mode : of the depthwise step, as
        `depthwise_conv2d`.
    out, num_threads : as `conv2d`.

    Returns
    -------
    numpy.ndarray, (N, H_out, W_out, K) or (N, K, H_out, W_out).

    Each band of output rows is computed depthwise into a per-thread tile
    (<= 256 KB) and multiplied by the pointwise weight straight into the
    output; the (N, H_out, W_out, C*M) intermediate is never built.  In
    float32 on the own GEMM (AVX-512 CPUs) the bias starts each pointwise
    sum in both layouts: the same bits as `depthwise_conv2d` followed by a
    1x1 `conv2d`.  Otherwise channels last adds it after the sum, and the two
    layouts may differ in the last bit.
    """
    key = _arrays.call_key((x, depthwise_weight, pointwise_weight, bias, out),
                           ("separable", stride, padding, dilation, data_format, padding_mode))
    call = _CALLS.get(key) if key is not None else None
    if call is None:  # every check (what it derived kept under key)
        last = _geometry.channels_last(data_format, 2)
        x = _arrays.as_array(x, "x")
        depthwise_weight = _arrays.as_array(depthwise_weight, "depthwise_weight")
        pointwise_weight = _arrays.as_array(pointwise_weight, "pointwise_weight")
        bias = None if bias is None else _arrays.as_array(bias, "bias")
        dtype = _arrays.compute_dtype(x, depthwise_weight, pointwise_weight, bias)
        xb, unbatched, channels, spatial = _arrays.batched(x, 2, data_format, last)
        R, S, M = _depthwise_weight_shape(depthwise_weight, channels, x.shape, data_format,
                                          "depthwise_weight")
        K = channels * M
        pw = pointwise_weight
        if pw.ndim == 4 and pw.shape[:2] == (1, 1):
            pw = pw[0, 0]
        if pw.ndim != 2 or pw.shape[0] != K:
            raise ValueError(
                f"pointwise_weight must have shape (1, 1, {K}, K_out) or ({K}, K_out) for "
                f"{channels} channels x depth multiplier {M}, got {pointwise_weight.shape}")
        P = pw.shape[1]
        _arrays.check_bias(bias, P)
        window = _geometry.window(spatial, (R, S), stride, dilation, padding, padding_mode)
        result, result_b = _arrays.allocate_output(
            out, xb.shape[0], P, window.out_spatial, last, unbatched, dtype,
            {"x": x, "depthwise_weight": depthwise_weight, "pointwise_weight": pointwise_weight,
             "bias": bias})
        _arrays.remember(_CALLS, key, (last, dtype, unbatched, channels, K, P, window,
                                       result.shape, result_b.shape))
    else:  # a call like one that passed every check: only the arrays' memory
        last, dtype, unbatched, channels, K, P, window, result_shape, batched_shape = call
        result, result_b = _arrays.cached_output(
            out, result_shape, batched_shape, dtype,
            {"x": x, "depthwise_weight": depthwise_weight, "pointwise_weight": pointwise_weight,
             "bias": bias})
        xb = x[None] if unbatched else x
        pw = pointwise_weight[0, 0] if pointwise_weight.ndim == 4 else pointwise_weight
    if result.size == 0:
        return result
    if K == 0:  # no input channels: an empty reduction
        result_b[...] = 0 if bias is None else (bias if last else bias[:, None, None])
        return result
    if last:  # rows padded to whole vectors: the pointwise kernel reads them
        lanes = _direct.VECTOR_BYTES // np.dtype(dtype).itemsize
        pw_padded = np.zeros((K, -(-P // lanes) * lanes), dtype)
        pw_padded[:, :P] = pw
        pw = pw_padded
    else:
        pw = pw.T
    run_direct(xb, _kernel_weight(depthwise_weight, last), None, result_b, window, channels, K,
               channels, last, dtype, num_threads, pointwise=pw, pointwise_bias=bias,
               pointwise_cols=P)
    return result


def use_direct(channels, out_channels, groups, kernel, last, dtype, window=None,
               padding_mode="zeros"):
    """Whether conv1d / conv2d run on the direct kernels: depthwise (one input
    channel per group, any multiplier) in both layouts; grouped convolutions
    with small groups (channels last: whole vectors of output channels per
    group), but not channels-first ones the implicit convolution takes
    (_implicit_takes_groups; given the call's window)."""
    if groups <= 1:
        return False
    if channels == groups:
        return True
    in_per_group, out_per_group = channels // groups, out_channels // groups
    if out_per_group > DIRECT_MAX_GROUP_OUT:
        return False
    if (not last and window is not None
            and _implicit_takes_groups(in_per_group, window, padding_mode, dtype)):
        return False
    if last:
        lanes = _direct.GROUPED_VECTOR_BYTES // np.dtype(dtype).itemsize
        return in_per_group <= DIRECT_MAX_GROUP_IN_LAST and out_per_group % lanes == 0
    return in_per_group * int(np.prod(kernel)) <= DIRECT_MAX_REDUCTION


def _implicit_takes_groups(in_per_group, window, padding_mode, dtype):
    """Whether a channels-first grouped convolution goes to conv_forward's
    implicit convolution rather than the direct kernel: float32 with at least
    GROUPED_IMPLICIT_MIN_IN input channels a group, zero padding that keeps
    every input column (ceil(W / stride) <= Wo), at most
    _core.IMPLICIT_MAX_TAPS taps (CG_TAPS), not an unpadded stride-1 1x1
    (conv_forward runs those on the GEMM, below IMPLICIT_1X1_CHANNELS), where
    the implicit kernels' loads are the and'ed ones (AMD Zen 4)."""
    return (np.dtype(dtype) == np.float32 and in_per_group >= GROUPED_IMPLICIT_MIN_IN
            and padding_mode == "zeros" and window.R * window.S <= _core.IMPLICIT_MAX_TAPS
            and not window.unpadded_1x1
            and -(-window.W // window.stride[-1]) <= window.Wo
            and _core.gemm_backend() == "convcpu" and _core.implicit_loads() == "and")


def _kernel_weight(weight, last):
    """TensorFlow's (R, S, C, M) depthwise weight as the direct kernels take it:
    (C*M, 1, R, S) channels first, (M, R, S, C) channels last."""
    R, S, C, M = weight.shape
    return weight.transpose(3, 0, 1, 2) if last else \
        weight.transpose(2, 3, 0, 1).reshape(C * M, 1, R, S)


def conv_weight(w_oi, channels, out_channels, last):
    """The direct kernels' weight from conv2d's (K, Cg, R, S): itself channels
    first; channels last (M, R, S, C) for depthwise, (R, S, Cg, K) (HWIO) for
    other grouped convolutions."""
    if not last:
        return w_oi
    R, S = w_oi.shape[2:]
    if w_oi.shape[1] > 1:
        return w_oi.transpose(2, 3, 1, 0)
    return w_oi.reshape(channels, out_channels // channels, R, S).transpose(1, 2, 3, 0)


def run_direct(xb, w, bias, result_b, window, channels, out_channels, groups, last, dtype,
               num_threads, pointwise=None, pointwise_bias=None, pointwise_cols=0):
    """Run _direct.direct_conv on checked operands (result_b batched, non-empty)."""
    threads, use_openmp = _threads.resolve(num_threads)
    itemsize = np.dtype(dtype).itemsize
    n_batch = xb.shape[0]
    xc = _arrays.contiguous(xb, dtype)
    wc = _arrays.contiguous(w, dtype)
    bc = None if bias is None else _arrays.contiguous(bias, dtype)
    pc = None if pointwise is None else _arrays.contiguous(pointwise, dtype)
    pbc = None if pointwise_bias is None else _arrays.contiguous(pointwise_bias, dtype)
    separable = pointwise is not None
    # (the module's tuning constants are part of the key: tests change them)
    key = ("direct", n_batch, channels, out_channels, groups, itemsize, last, separable,
           BAND_BYTES, L2_BYTES, _core.MIN_TASKS)
    found = window.derived.get(key)  # 0.6 us a call
    if found is None:
        dims = window.dims(channels, out_channels, groups) + (window.int_lo, window.int_hi)
        band = _band(window, n_batch, channels // groups, groups, out_channels, itemsize, last,
                     separable)
        if len(window.derived) >= 64:
            window.derived.clear()
        found = window.derived[key] = (dims, band)
    dims, band = found
    _direct.direct_conv(xc, wc, bc, result_b, window.hmap, window.wmap, dims, last, band,
                        threads, use_openmp, pc, pbc, pointwise_cols)


def _band(window, n_batch, in_per_group, groups, out_channels, itemsize, last, separable):
    """Output rows per task, from the shape alone: a task's working set
    (gathered input band, or separable tile) within BAND_BYTES, and enough
    tasks for every core (the row split costs a little halo); one band per
    core for channels-last depthwise and channels-first separable."""
    Ho, Wo = window.Ho, window.Wo
    sh, sw = window._strides2
    dh, dw = window._dilations2
    per_core = min(Ho, -(-(_core.MIN_TASKS // 2) // n_batch))  # bands for one per core
    if last and not separable:
        if in_per_group > 1 or out_channels != groups:
            return 1  # one output row per task, read in place
        # Depthwise, multiplier 1: a band of rows per task (a vector of channels
        # at a time through it on 3x3 and 5x5); one band per core (144ch
        # @56, 2 threads: 28 rows 0.060 ms, 14 rows 0.074, 4 rows 0.086),
        # and more bands when a band's input rows (all channels) would not
        # fit in L2: a vector's pass through the band reads one 64-byte line
        # per pixel, and the L2 fetches the next line with it, which the next
        # vector's pass reads if it is still there (96ch @112 stride 2, a
        # direct_conv loop: 28-row bands, 2.4 MB of input each, 0.066 ms on 2
        # threads and 0.124 on 1; 14 rows 0.051 / 0.094; 7 rows 0.052 / 0.095).
        in_rows = L2_BYTES // max(1, window.W * out_channels * itemsize)
        max_band = max(1, (in_rows - (window.R - 1) * dh - 1) // sh + 1)
        return -(-Ho // max(per_core, -(-Ho // max_band)))
    lanes = _direct.VECTOR_BYTES // itemsize
    row_elems = sw * (-(-Wo // lanes) * lanes + ((window.S - 1) * dw) // sw)
    if separable and not last:
        # One band per core while the tile fits in L2: every band gathers its
        # halo and runs a GEMM per band (144 -> 24 @56, 2 threads, in one
        # process: 28-row bands 0.137-0.154 ms, 14 rows 0.145-0.162, 4 rows
        # 0.161-0.180; unfused 0.153-0.184).
        per_row = Wo * out_channels + sh * row_elems
        max_band = max(1, L2_BYTES // (per_row * itemsize))
        return -(-Ho // max(-(-Ho // max_band), per_core))
    if separable:  # channels last
        per_row = Wo * out_channels
        max_band = max(1, BAND_BYTES // (per_row * itemsize))
        parallel = n_batch
    else:
        max_rows = BAND_BYTES // (in_per_group * row_elems * itemsize)
        max_band = max(1, (max_rows - (window.R - 1) * dh - 1) // sh + 1)
        parallel = n_batch * groups
    n_bands = -(-Ho // max_band)
    min_rows = 1 if last else 4
    while parallel * n_bands < 4 * _core.MIN_TASKS and -(-Ho // (n_bands + 1)) >= min_rows:
        n_bands += 1
    return -(-Ho // n_bands)


# _arrays.call_key (tagged with the op) -> what the checks of a
# depthwise_conv2d or separable_conv2d call derived from its arguments.
_CALLS = {}


def _depthwise_weight_shape(weight, channels, x_shape, data_format, name):
    if weight.ndim != 4:
        raise ValueError(f"{name} must be 4-D (R, S, C, M), got shape {weight.shape}")
    R, S, C, M = weight.shape
    if C != channels:
        raise ValueError(
            f"{name} {weight.shape} (R, S, C, M) has C={C}; x {x_shape} ({data_format}) "
            f"has {channels} channels")
    if min(R, S, M) < 1:
        raise ValueError(f"{name} {weight.shape} (R, S, C, M) has an empty kernel or "
                         "depth multiplier")
    return R, S, M
