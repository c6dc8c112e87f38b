"""Transposed convolutions: conv_transpose1d and conv_transpose2d.

Two algorithms, chosen by shape (`_algorithm`, measured in docs/BENCHMARKS.md):

"phases": the transposed convolution is split by output phase: along an axis with stride
s, the outputs a, a+s, a+2s, ... (a < s) receive only the kernel taps whose
offset matches a, and read the input as a stride-1 correlation with those
taps flipped.  Each phase is one forward convolution of the core engine
(tiled im2col + GEMM) that writes its strided slice of the output through the
per-thread tile: no zeros are inserted or multiplied, nothing is scattered
with additions, and no column buffer the size of the output exists.  Stride 1
is a single phase: a forward convolution with the flipped, transposed kernel.
Phases with no tap (stride > dilated kernel) hold the bias.  Its cost
beyond the GEMMs is re-laying the weight out for every phase.

"columns" (NCHW): GEMM straight from the (C_in, C_out/groups, R, S) weight into
per-thread column tiles (a band of input rows x a block of output channels),
then col2im adds each column into the output channels the task owns (no write
races).  Its cost beyond the GEMM is the col2im, ~R*S/(sh*sw) reads and adds
per output element, and it needs no copy of a PyTorch-layout weight.
"""
import numpy as np

from convcpu import _arrays, _core, _geometry, _threads


def conv_transpose1d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1, *, output_size=None, data_format="NCL", weight_format=None,
                     out=None, num_threads=None):
    """1-D transposed convolution, as ``torch.nn.functional.conv_transpose1d`` and
    ONNX ``ConvTranspose``.

    Parameters
    ----------
    x : array_like, (N, C_in, L) for "NCL"/"NCW" or (N, L, C_in) for "NLC"/"NWC";
        an unbatched 2-D input gives an unbatched output.
    weight : (C_in, C_out/groups, K) ("IOW", the default with NCL) or
        (K, C_out/groups, C_in) ("WOI", the default with NLC), or as `weight_format`.
    padding, output_padding, output_size : see `conv_transpose2d`.

    Returns
    -------
    numpy.ndarray, (N, C_out, L_out) or (N, L_out, C_out) with
    L_out = (L - 1)*stride - before - after + dilation*(K - 1) + 1 + output_padding.

    Examples
    --------
    >>> import numpy as np, convcpu
    >>> convcpu.conv_transpose1d(np.ones((1, 1, 3)), np.ones((1, 1, 2)), stride=2)
    array([[[1., 1., 1., 1., 1., 1.]]])
    """
    return _conv_transpose(1, x, weight, bias, stride, padding, output_padding, groups,
                           dilation, output_size, data_format, weight_format, out, num_threads)


def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1, *, output_size=None, data_format="NCHW", weight_format=None,
                     out=None, num_threads=None):
    """2-D transposed convolution (the adjoint of `conv2d`), as
    ``torch.nn.functional.conv_transpose2d``, ``tf.nn.conv2d_transpose`` and ONNX
    ``ConvTranspose``.

    Parameters
    ----------
    x : array_like, (N, C_in, H, W) for "NCHW" or (N, H, W, C_in) for "NHWC";
        an unbatched 3-D input gives an unbatched output.
    weight : (C_in, C_out/groups, R, S) ("IOHW", PyTorch, the default with NCHW)
        or (R, S, C_out/groups, C_in) ("HWOI", TensorFlow's conv2d_transpose
        filter, the default with NHWC); other orders through `weight_format`.
    bias : (C_out,) or None.
    stride, dilation : int or (sh, sw), >= 1.
    padding : int, (ph, pw) or ((top, bottom), (left, right)): the padding of
        the forward convolution this one transposes (PyTorch / ONNX pads);
        or "same" / "valid" / "same_lower" (TensorFlow): the padding that the
        forward convolution of an `output_size` image uses.
    output_padding : int or (oh, ow), >= 0: rows / columns added at the end
        (any value, as ONNX; PyTorch keeps it below max(stride, dilation)).
        Explicit padding only: with "same" / "valid" a nonzero one is a
        ValueError (`output_size` sets the size there).
    groups : int dividing C_in and C_out.
    output_size : (H_out, W_out) or None.  With explicit padding it picks
        output_padding (which must then be in [0, max(stride, dilation)), as
        in PyTorch); with "same"/"valid" it is the spatial part of TensorFlow's
        `output_shape`.  Without it, "same" gives in*stride and "valid"
        in*stride + max((R-1)*dilation + 1 - stride, 0) (Keras).  An
        unreachable size is a ValueError naming the reachable range.
    out : optional C-contiguous array of the result's exact shape and dtype.
    num_threads : threads for this call (None: `convcpu.get_num_threads()`).

    Returns
    -------
    numpy.ndarray, (N, C_out, H_out, W_out) or (N, H_out, W_out, C_out) with
    H_out = (H - 1)*stride - top - bottom + dilation*(R - 1) + 1 + output_padding.

    Examples
    --------
    Seed 003: a 2x2 input and a 3x3 kernel of ones, VALID, stride 1 and 2.

    >>> import numpy as np, convcpu
    >>> x, k = np.ones((1, 2, 2, 1)), np.ones((3, 3, 1, 1))
    >>> convcpu.conv_transpose2d(x, k, padding="valid", data_format="NHWC").shape
    (1, 4, 4, 1)
    >>> convcpu.conv_transpose2d(x, k, stride=2, padding="valid", data_format="NHWC")[0, ..., 0]
    array([[1., 1., 2., 1., 1., 0.],
           [1., 1., 2., 1., 1., 0.],
           [2., 2., 4., 2., 2., 0.],
           [1., 1., 2., 1., 1., 0.],
           [1., 1., 2., 1., 1., 0.],
           [0., 0., 0., 0., 0., 0.]])
    """
    return _conv_transpose(2, x, weight, bias, stride, padding, output_padding, groups,
                           dilation, output_size, data_format, weight_format, out, num_threads)


def _conv_transpose(nspatial, x, weight, bias, stride, padding, output_padding, groups,
                    dilation, output_size, data_format, weight_format, out, num_threads):
    last = _geometry.channels_last(data_format, nspatial)
    x, weight, bias, dtype = _arrays.operands(x, weight, bias)
    threads, use_openmp = _threads.resolve(num_threads)
    xb, unbatched, channels, spatial = _arrays.batched(x, nspatial, data_format, last)

    if weight_format is None:
        weight_format = _geometry.default_weight_format(nspatial, last, transposed=True)
    w_oi = _geometry.weight_to_oi(weight, weight_format, nspatial, transposed=True)
    out_per_group, in_channels = w_oi.shape[:2]
    kernel = w_oi.shape[2:]
    groups = _geometry.expand(groups, 1, "groups")[0]
    if in_channels != channels:
        raise ValueError(
            f"weight {weight.shape} ({weight_format}) has {in_channels} input channels; "
            f"x {x.shape} ({data_format}) has {channels}")
    if channels % groups:
        raise ValueError(f"groups={groups} must divide the input channels ({channels})")
    if min(kernel, default=1) < 1:
        raise ValueError(f"weight {weight.shape} has an empty kernel")
    out_channels = out_per_group * groups
    _arrays.check_bias(bias, out_channels)

    geom = _geometry.transpose_geometry(spatial, kernel, stride, dilation, padding,
                                        output_padding, output_size)
    result, result_b = _arrays.allocate_output(out, xb.shape[0], out_channels, geom.out_spatial,
                                               last, unbatched, dtype,
                                               {"x": x, "weight": weight, "bias": bias})
    if result.size == 0:
        return result
    bias_c = None if bias is None else _arrays.contiguous(bias, dtype)

    # From here on a 1-D transposed convolution is a 2-D one with a height of 1
    # (geom's 2-D tables are lifted likewise).
    if nspatial == 1:
        xb = xb[:, np.newaxis] if last else xb[:, :, np.newaxis]
        w_oi = w_oi[:, :, np.newaxis]
        result_b = result_b[:, np.newaxis] if last else result_b[:, :, np.newaxis]
    in_per_group = channels // groups
    xc = _arrays.contiguous(xb, dtype)
    if in_per_group and _algorithm(geom.kernel2, last) == "columns":
        _transpose_by_columns(xc, w_oi, bias_c, result_b, geom, groups, last, dtype, threads,
                              use_openmp)
        return result
    phase_weight = _PhaseWeights(weight, weight_format, nspatial, groups, last, dtype)
    stride2 = geom.stride2
    scatter = stride2 != (1, 1)
    with _threads.blas_single_threaded(dtype):
        for a, b, taps_h, taps_w, window in geom.phases():
            if window is None or in_per_group == 0:
                _fill_bias(result_b, (a, b), stride2, bias_c, last)
                continue
            w_packed = phase_weight(taps_h, taps_w)
            _core.conv_forward(xc, w_packed, bias_c, result_b, *window.tables(),
                               window.dims(channels, out_channels, groups), last,
                               window.unpadded_1x1, threads, use_openmp,
                               geom.out2 + stride2 + (a, b) if scatter else None,
                               weight_by_rows=last)
    return result


class _PhaseWeights:
    """The forward-convolution weight of one phase, packed for the core:
    (C_out, C_in/groups * Mh * Mw) for NCHW, (C_out, Mh * Mw * C_in/groups)
    for NHWC (conv_forward's weight_by_rows), taps in the order given
    (descending: flipped).  A phase's taps are an arithmetic progression
    (transpose_phases), so they are a strided view of the weight, and one
    transposing copy makes the packing: for TensorFlow's HWOI weight it
    copies whole runs of input channels.  (DCGAN 4x4/2 512->256 @8x8 NHWC, 2
    threads: 6.5 ms with np.take and a (Mh * Mw * C_in/groups, C_out) packing,
    whose copy read 2 KB apart, into a new array per phase; 1.05 ms now.)"""

    def __init__(self, weight, weight_format, nspatial, groups, last, dtype):
        letters = weight_format.upper().replace("L", "W")
        self.weight = _arrays.contiguous(weight, dtype)
        if nspatial == 1:
            self.weight, letters = self.weight[np.newaxis], "H" + letters
        self.letters, self.groups, self.last = letters, groups, last
        # Every phase's packing goes into this one buffer (a phase has at most
        # all the taps): the pages are touched once per call, not per phase.
        self.buffer = np.empty(self.weight.size, self.weight.dtype)

    def __call__(self, taps_h, taps_w):
        """The packing of one phase, valid until the next call."""
        index = [slice(None)] * self.weight.ndim
        index[self.letters.index("H")] = _descending(taps_h)
        index[self.letters.index("W")] = _descending(taps_w)
        sub = self.weight[tuple(index)]  # a view
        sub = sub.transpose([self.letters.index(c) for c in "OIHW"])  # (O/g, I, Mh, Mw)
        out_per_group, channels, mh, mw = sub.shape
        split = sub.reshape(out_per_group, self.groups, channels // self.groups, mh, mw)
        # (g, O/g, Mh, Mw, I/g) NHWC: the core's weight_by_rows form; else
        # (g, O/g, I/g, Mh, Mw)
        split = split.transpose((1, 0, 3, 4, 2) if self.last else (1, 0, 2, 3, 4))
        packed = self.buffer[:split.size].reshape(split.shape)
        np.copyto(packed, split)
        return packed.reshape(out_per_group * self.groups, -1)


def _descending(taps):
    """The slice picking `taps`, a descending arithmetic progression."""
    step = taps[0] - taps[1] if len(taps) > 1 else 1
    assert step > 0 and list(taps) == list(range(taps[0], taps[-1] - 1, -step)), taps
    return slice(taps[0], taps[-1] - 1 if taps[-1] > 0 else None, -step)


def _algorithm(kernel, channels_last):
    """"phases" or "columns", by layout and kernel (docs/BENCHMARKS.md, issue 4:
    both timed on DCGAN, U-Net, 1-D, 1x1 and 3x3 layers, batch 1-16).  NCHW:
    columns is faster on every kernel but 1x1, where a phase is a plain GEMM on
    the input.  NHWC: phases, as its column tiles would need a transposed
    weight copy, transposed GEMM operands and a col2im strided by C_out."""
    if channels_last or tuple(kernel) == (1, 1):
        return "phases"
    return "columns"


def _transpose_by_columns(xc, w_oi, bias, result_b, geom, groups, last, dtype, threads,
                          use_openmp):
    """The "columns" algorithm on 2-D operands (1-D already lifted; geom: the
    call's TransposeGeometry)."""
    w_io = _arrays.contiguous(w_oi.transpose(1, 0, 2, 3), dtype)  # IOHW, as PyTorch's
    channels, out_channels = w_io.shape[0], w_io.shape[1] * groups
    (h, w), (r, s), (out_h, out_w) = geom.spatial2, geom.kernel2, geom.out2
    dims = (channels, h, w, out_channels, r, s, out_h, out_w) + geom.stride2 + geom.dilation2 + (
        geom.pads2[0][0], geom.pads2[1][0], groups)
    with _threads.blas_single_threaded(dtype):
        _core.transpose_forward(xc, w_io, bias, result_b, *geom.ranges(), dims, last, threads,
                                use_openmp)


def _fill_bias(result_b, phase, stride, bias, last):
    """The outputs of a phase no kernel tap reaches hold the bias (or zero)."""
    rows, cols = (slice(phase[i], None, stride[i]) for i in range(2))
    if last:
        result_b[:, rows, cols, :] = 0 if bias is None else bias
    else:
        result_b[:, :, rows, cols] = 0 if bias is None else bias[:, None, None]
