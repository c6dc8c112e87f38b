"""Locally connected (unshared-weight) convolutions, as Keras LocallyConnected1D/2D."""
import numpy as np

from convcpu import _arrays, _core, _geometry, _threads


def local_conv1d(x, weight, bias=None, kernel_size=None, stride=1, padding="valid", *,
                 data_format="NLC", out=None, num_threads=None):
    """1-D locally connected layer, as Keras ``LocallyConnected1D`` (implementation=1).

    x : (N, L, C) for "NLC"/"NWC" (default) or (N, C, L) for "NCL"/"NCW"; unbatched
        inputs give unbatched outputs.
    weight : (L_out, K*C, F), the kernel of each output position, patch order
        (k, c) for NLC and (c, k) for NCL.
    bias : (L_out, F) for NLC, (F, L_out) for NCL, or (F,).
    kernel_size : int (required: the weight does not determine it).
    stride : int; padding : as conv1d (Keras allows only "valid"; convcpu also takes
        "same" and explicit pads, with zeros).

    Returns (N, L_out, F) or (N, F, L_out).
    """
    return _local(1, x, weight, bias, kernel_size, stride, padding, data_format, out,
                  num_threads)


def local_conv2d(x, weight, bias=None, kernel_size=None, stride=1, padding="valid", *,
                 data_format="NHWC", out=None, num_threads=None):
    """2-D locally connected layer, as Keras ``LocallyConnected2D`` (implementation=1):
    every output position has its own kernel.

    x : (N, H, W, C) for "NHWC" (default) or (N, C, H, W) for "NCHW"; unbatched
        inputs give unbatched outputs.
    weight : (H_out*W_out, R*S*C, F), the kernel of each output position (row-major
        positions), patch order (r, s, c) for NHWC and (c, r, s) for NCHW.
    bias : (H_out, W_out, F) for NHWC, (F, H_out, W_out) for NCHW, or (F,); bias[f, i, j]
        (NCHW) is added to out[:, f, i, j].  (Keras's channels_first layer stores
        its bias as (H_out, W_out, F) and adds it reshaped, not transposed, to
        (F, H_out, W_out): pass ``keras_bias.reshape(F, H_out, W_out)``.)
    kernel_size : int or (R, S) (required: the weight does not determine it).
    stride : int or (sh, sw); padding : as conv2d (Keras allows only "valid"; convcpu
        also takes "same" and explicit pads, with zeros).

    Returns (N, H_out, W_out, F) or (N, F, H_out, W_out).  Per output position the
    work is a (N x R*S*C) @ (R*S*C x F) product; positions run in parallel, each
    thread gathering the patches of one position into a small buffer (never the
    whole patch tensor).
    """
    return _local(2, x, weight, bias, kernel_size, stride, padding, data_format, out,
                  num_threads)


def _local(nspatial, x, weight, bias, kernel_size, stride, padding, data_format, out,
           num_threads):
    last = _geometry.channels_last(data_format, nspatial)
    if kernel_size is None:
        raise TypeError("kernel_size is required: the weight's shape does not determine it")
    x, weight, bias, dtype = _arrays.operands(x, weight, bias)
    threads, use_openmp = _threads.resolve(num_threads)
    xb, unbatched, channels, spatial = _arrays.batched(x, nspatial, data_format, last)
    kernel = _geometry.expand(kernel_size, nspatial, "kernel_size")
    window = _geometry.window(spatial, kernel, stride, 1, padding)
    positions = window.Ho * window.Wo
    patch = int(np.prod(kernel)) * channels
    if weight.ndim != 3 or weight.shape[:2] != (positions, patch):
        raise ValueError(
            f"weight must have shape ({positions}, {patch}, filters): one "
            f"(kernel {'x'.join(map(str, kernel))} x {channels} channels = {patch}) by filters "
            f"matrix for each of the {positions} output positions "
            f"{'x'.join(map(str, window.out_spatial))}; got {weight.shape}")
    filters = weight.shape[2]
    out_spatial = window.out_spatial
    shapes = {"per position": out_spatial + (filters,) if last else (filters,) + out_spatial,
              "per filter": (filters,)}
    if bias is not None and bias.shape not in shapes.values():
        raise ValueError(f"bias must have shape {shapes['per position']} or ({filters},), "
                         f"got {bias.shape}")
    result, _ = _arrays.allocate_output(out, xb.shape[0], filters, out_spatial, last, unbatched,
                                        dtype, {"x": x, "weight": weight, "bias": bias})
    if result.size == 0:
        return result
    if bias is None:
        bias_rows = None
    elif bias.shape == (filters,):
        bias_rows = np.broadcast_to(bias, (positions, filters))
    else:
        bias_rows = bias.reshape(positions, filters) if last else bias.reshape(filters, -1).T
    if nspatial == 1:
        xb = xb[:, np.newaxis] if last else xb[:, :, np.newaxis]
    result_b = result.reshape((xb.shape[0], window.Ho, window.Wo, filters) if last
                              else (xb.shape[0], filters, window.Ho, window.Wo))
    if patch == 0:
        result_b[...] = 0 if bias_rows is None else (
            bias_rows.reshape(window.Ho, window.Wo, filters) if last
            else bias_rows.T.reshape(filters, window.Ho, window.Wo))
        return result
    with _threads.blas_single_threaded(dtype):
        _core.local_forward(_arrays.contiguous(xb, dtype), _arrays.contiguous(weight, dtype),
                            None if bias_rows is None else _arrays.contiguous(bias_rows, dtype),
                            result_b, *window.tables(), window.dims(channels, filters), last,
                            threads, use_openmp)
    return result
