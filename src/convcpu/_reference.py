"""Plain NumPy references, written for clarity, not speed: the tests and the
benchmark check the engine against these.  They share no code with it."""
import numpy as np

_NUMPY_PAD_MODES = {"zeros": "constant", "reflect": "reflect", "replicate": "edge",
                    "circular": "wrap"}


def _per_axis(value, nsp):
    """An int or a sequence as a tuple of nsp entries."""
    return (value,) * nsp if np.isscalar(value) else tuple(value)


def _pairs(pads, nsp):
    """An int or (before, after) pairs as a tuple of pairs."""
    return ((pads, pads),) * nsp if np.isscalar(pads) else tuple(tuple(p) for p in pads)


def same_pads(size, kernel, stride, dilation, lower=False):
    """TensorFlow SAME padding for one axis: ceil(size / stride) outputs."""
    out = (size + stride - 1) // stride
    total = max(0, (out - 1) * stride + dilation * (kernel - 1) + 1 - size)
    return (total - total // 2, total // 2) if lower else (total // 2, total - total // 2)


def conv_reference(x, w, bias=None, stride=1, pads=0, dilation=1, groups=1,
                   padding_mode="zeros"):
    """Direct N-D cross-correlation in float64.

    x: (N, C, *spatial); w: (K, C // groups, *kernel); pads: int or one
    (before, after) pair per spatial axis.  Returns (N, K, *out) float64.
    """
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    nsp = x.ndim - 2
    stride, dilation, pads = _per_axis(stride, nsp), _per_axis(dilation, nsp), _pairs(pads, nsp)
    mode = _NUMPY_PAD_MODES[padding_mode]
    xp = np.pad(x, ((0, 0), (0, 0)) + pads, mode=mode)
    n, c = x.shape[:2]
    k = w.shape[0]
    cg, kg = c // groups, k // groups
    kernel = w.shape[2:]
    out_size = [(xp.shape[2 + i] - dilation[i] * (kernel[i] - 1) - 1) // stride[i] + 1
                for i in range(nsp)]
    out = np.zeros((n, k) + tuple(out_size))
    for g in range(groups):
        xg = xp[:, g * cg:(g + 1) * cg]
        wg = w[g * kg:(g + 1) * kg]
        for tap in np.ndindex(*kernel):
            window = tuple(
                slice(tap[i] * dilation[i], tap[i] * dilation[i] + (out_size[i] - 1) * stride[i] + 1,
                      stride[i]) for i in range(nsp))
            patch = xg[(slice(None), slice(None)) + window]
            out[:, g * kg:(g + 1) * kg] += np.einsum("nc...,kc->nk...", patch,
                                                     wg[(slice(None), slice(None)) + tap])
    if bias is not None:
        out += np.asarray(bias, dtype=np.float64).reshape((1, -1) + (1,) * nsp)
    return out


def patches_reference(x, kernel, stride=1, pads=0, dilation=1):
    """Patches of a channels-last batch: x (N, *spatial, C) -> (N, *out, prod(kernel)*C),
    each patch in (kernel..., c) order, zero padding."""
    x = np.asarray(x, dtype=np.float64)
    nsp = x.ndim - 2
    kernel, stride = _per_axis(kernel, nsp), _per_axis(stride, nsp)
    dilation, pads = _per_axis(dilation, nsp), _pairs(pads, nsp)
    xp = np.pad(x, ((0, 0),) + pads + ((0, 0),))
    out_size = [(xp.shape[1 + i] - dilation[i] * (kernel[i] - 1) - 1) // stride[i] + 1
                for i in range(nsp)]
    taps = []
    for tap in np.ndindex(*kernel):
        window = tuple(
            slice(tap[i] * dilation[i], tap[i] * dilation[i] + (out_size[i] - 1) * stride[i] + 1,
                  stride[i]) for i in range(nsp))
        taps.append(xp[(slice(None),) + window])
    stacked = np.stack(taps, axis=-2)  # (N, *out, taps, C)
    return stacked.reshape(stacked.shape[:-2] + (stacked.shape[-2] * stacked.shape[-1],))


def local_conv_reference(x, weight, bias=None, kernel=1, stride=1, pads=0):
    """Locally connected layer on a channels-last batch: x (N, *spatial, C),
    weight (positions, prod(kernel)*C, F) in (kernel..., c) order, bias broadcastable
    to (*out, F).  Returns (N, *out, F) float64."""
    p = patches_reference(x, kernel, stride, pads)
    out_shape = p.shape[:-1]
    p = p.reshape(p.shape[0], int(np.prod(p.shape[1:-1])), p.shape[-1])
    out = np.einsum("nlp,lpf->nlf", p, np.asarray(weight, dtype=np.float64))
    out = out.reshape(out_shape + (out.shape[-1],))
    if bias is not None:
        out = out + np.asarray(bias, dtype=np.float64)
    return out


def conv_transpose_reference(x, w, bias=None, stride=1, pads=0, output_padding=0,
                             dilation=1, groups=1):
    """Transposed convolution by its definition: every input pixel scatters
    x[n, i] * w[i, o, tap] to output position in*stride - before + tap*dilation.

    x: (N, C_in, *spatial); w: (C_in, C_out // groups, *kernel) (PyTorch IOHW);
    pads: int or one (before, after) pair per axis.  Returns (N, C_out, *out) float64.
    """
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    nsp = x.ndim - 2
    stride, dilation = _per_axis(stride, nsp), _per_axis(dilation, nsp)
    extra, pads = _per_axis(output_padding, nsp), _pairs(pads, nsp)
    n, cin = x.shape[:2]
    kernel = w.shape[2:]
    cing, coutg = cin // groups, w.shape[1]
    full = [(x.shape[2 + i] - 1) * stride[i] + dilation[i] * (kernel[i] - 1) + 1 + extra[i]
            + max(0, -pads[i][1]) for i in range(nsp)]
    canvas = np.zeros((n, coutg * groups) + tuple(full))
    for g in range(groups):
        xg = x[:, g * cing:(g + 1) * cing]
        wg = w[g * cing:(g + 1) * cing]
        for tap in np.ndindex(*kernel):
            window = tuple(slice(tap[i] * dilation[i],
                                 tap[i] * dilation[i] + (x.shape[2 + i] - 1) * stride[i] + 1,
                                 stride[i]) for i in range(nsp))
            canvas[(slice(None), slice(g * coutg, (g + 1) * coutg)) + window] += np.einsum(
                "nc...,co->no...", xg, wg[(slice(None), slice(None)) + tap])
    out_size = [(x.shape[2 + i] - 1) * stride[i] - pads[i][0] - pads[i][1]
                + dilation[i] * (kernel[i] - 1) + 1 + extra[i] for i in range(nsp)]
    crop = tuple(slice(pads[i][0], pads[i][0] + out_size[i]) for i in range(nsp))
    out = canvas[(slice(None), slice(None)) + crop]
    if bias is not None:
        out = out + np.asarray(bias, dtype=np.float64).reshape((1, -1) + (1,) * nsp)
    return out


def col2im_reference(cols, output_size, kernel, stride=1, pads=0, dilation=1):
    """Fold by its definition: cols (N, C*prod(kernel), L) adds column l of row
    (c, tap) to image position block(l)*stride - before + tap*dilation when inside."""
    cols = np.asarray(cols, dtype=np.float64)
    nsp = len(output_size)
    kernel, stride = _per_axis(kernel, nsp), _per_axis(stride, nsp)
    dilation, pads = _per_axis(dilation, nsp), _pairs(pads, nsp)
    blocks = [(output_size[i] + sum(pads[i]) - dilation[i] * (kernel[i] - 1) - 1) // stride[i] + 1
              for i in range(nsp)]
    n = cols.shape[0]
    c = cols.shape[1] // int(np.prod(kernel))
    image = np.zeros((n, c) + tuple(output_size))
    values = cols.reshape((n, c) + kernel + tuple(blocks))
    every = (slice(None), slice(None))
    for tap in np.ndindex(*kernel):
        for block in np.ndindex(*blocks):
            pos = tuple(block[i] * stride[i] - pads[i][0] + tap[i] * dilation[i]
                        for i in range(nsp))
            if all(0 <= pos[i] < output_size[i] for i in range(nsp)):
                image[every + pos] += values[every + tap + block]
    return image


def deform_conv_reference(x, offset, w, bias=None, stride=1, pads=0, dilation=1, mask=None):
    """Deformable convolution (DCNv1, DCNv2 with a mask) by its definition, as
    torchvision's: tap (r, s) of output pixel (i, j) in offset group o reads
    x at (i*sh - top + r*dh + offset[n, o, r, s, 0, i, j],
          j*sw - left + s*dw + offset[n, o, r, s, 1, i, j]),
    bilinearly, zero outside the image, times mask[n, o, r, s, i, j].

    x: (N, C, H, W); offset: (N, 2*O*R*S, Ho, Wo); w: (K, C // groups, R, S);
    mask: (N, O*R*S, Ho, Wo) or None.  Returns (N, K, Ho, Wo) float64.
    """
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    n, c, h, wd = x.shape
    k, cg, r, s = w.shape
    groups = c // cg
    (sh, sw), (dh, dw) = _per_axis(stride, 2), _per_axis(dilation, 2)
    (top, _), (left, _) = _pairs(pads, 2)
    ho, wo = offset.shape[2:]
    og = offset.shape[1] // (2 * r * s)
    off = np.asarray(offset, dtype=np.float64).reshape(n, og, r, s, 2, ho, wo)
    m = (np.ones((n, og, r, s, ho, wo)) if mask is None
         else np.asarray(mask, dtype=np.float64).reshape(n, og, r, s, ho, wo))
    grid = np.ix_(range(r), range(s), range(ho), range(wo))
    ys = (grid[2] * sh - top + grid[0] * dh) + off[:, :, :, :, 0]  # (n, og, r, s, ho, wo)
    xs = (grid[3] * sw - left + grid[1] * dw) + off[:, :, :, :, 1]
    y0, x0 = np.floor(ys), np.floor(xs)
    cols = np.zeros((n, c, r, s, ho, wo))
    per_og = c // og
    batch = np.arange(n).reshape(n, 1, 1, 1, 1)
    for ch in range(c):
        o = ch // per_og
        for dy, dx in ((0, 0), (0, 1), (1, 0), (1, 1)):
            yy, xx = y0[:, o] + dy, x0[:, o] + dx
            weight = ((1 - np.abs(ys[:, o] - yy)) * (1 - np.abs(xs[:, o] - xx)))
            inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < wd)
            yi = np.where(inside, yy, 0).astype(np.intp)
            xi = np.where(inside, xx, 0).astype(np.intp)
            cols[:, ch] += np.where(inside, weight * x[batch, ch, yi, xi], 0)
        cols[:, ch] *= m[:, o]
    out = np.zeros((n, k, ho, wo))
    kg = k // groups
    for g in range(groups):
        out[:, g * kg:(g + 1) * kg] = np.einsum(
            "ncrsij,kcrs->nkij", cols[:, g * cg:(g + 1) * cg], w[g * kg:(g + 1) * kg])
    if bias is not None:
        out += np.asarray(bias, dtype=np.float64).reshape(1, -1, 1, 1)
    return out
