"""Every public op of convcpu described once, as PyTorch's OpInfo does: how to
draw a random valid geometry for it (a hypothesis strategy), how to build a
call from a geometry, and what the call must return (a plain NumPy/SciPy
reference, plus torch / TensorFlow as an oracle where installed).  The
property, awkward-input, thread, fork, interrupt and memory tests all run over
OPS, so a new op is covered everywhere by adding one entry here."""
import dataclasses
import importlib
from typing import Callable

import numpy as np
import scipy.signal
from conftest import explicit_pads
from hypothesis import strategies as st

import convcpu
import convcpu.grad
from convcpu._reference import (
    col2im_reference,
    conv_reference,
    conv_transpose_reference,
    deform_conv_reference,
    local_conv_reference,
    patches_reference,
    same_pads,
)

# |got - expected| <= RTOL[result dtype] * (the reference run on |inputs|) + tiny:
# the forward error bound of a sum of products, which is what every op computes.
RTOL = {np.dtype(np.float32): 2e-5, np.dtype(np.float64): 1e-13}


@dataclasses.dataclass
class Case:
    """One call: op(*args, **kwargs) must equal reference(*args, **kwargs).
    `arrays` names the positions (ints) / keywords (str) holding input arrays;
    `signed` the ones that are positions, not magnitudes (deform's offsets)."""
    op: "OpInfo"
    args: list
    kwargs: dict
    arrays: tuple
    signed: tuple = ()

    def call(self, **extra):
        return self.op.fn(*self.args, **{**self.kwargs, **extra})

    def replaced(self, key, value):
        """The same call with input array `key` replaced."""
        args, kwargs = list(self.args), dict(self.kwargs)
        if isinstance(key, int):
            args[key] = value
        else:
            kwargs[key] = value
        return dataclasses.replace(self, args=args, kwargs=kwargs)

    def get(self, key):
        return self.args[key] if isinstance(key, int) else self.kwargs.get(key)

    def expected(self):
        return self.op.reference(*self.args, **self.kwargs)

    def magnitude(self):
        """The reference on |inputs| (positions kept): the scale of each result's
        rounding error."""
        case = self
        for key in self.arrays:
            if key not in self.signed and self.get(key) is not None:
                case = case.replaced(key, np.abs(np.asarray(self.get(key), np.float64)))
        return case.op.reference(*case.args, **case.kwargs)

    def oracle(self):
        """torch / TensorFlow / SciPy's answer, or None when not installed."""
        return None if self.op.oracle is None else self.op.oracle(*self.args, **self.kwargs)


@dataclasses.dataclass
class OpInfo:
    name: str
    fn: Callable
    geometry: st.SearchStrategy  # draws a dict
    build: Callable              # (geometry, rng, dtype) -> (args, kwargs, arrays[, signed])
    reference: Callable          # same arguments as fn -> float64 result
    oracle: Callable = None      # same arguments as fn -> float64, or None when absent
    family: str = ""

    def case(self, geometry, rng, dtype=np.float32):
        built = self.build(geometry, rng, dtype)
        return Case(self, *built)


def assert_matches(got, case, expected=None, rtol=None):
    """got equals the case's reference within the rounding-error bound of its dtype;
    NaN where the reference has NaN, the same infinities."""
    expected = case.expected() if expected is None else expected
    assert got.shape == expected.shape, (got.shape, expected.shape)
    rtol = RTOL[got.dtype] if rtol is None else rtol
    with np.errstate(invalid="ignore"):
        bound = rtol * np.nan_to_num(case.magnitude(), nan=0.0, posinf=0.0) + 1e-30
        got64 = got.astype(np.float64)
        np.testing.assert_array_equal(np.isnan(got64), np.isnan(expected))
        finite = np.isfinite(expected)
        np.testing.assert_array_equal(got64[~finite & ~np.isnan(expected)],
                                      expected[~finite & ~np.isnan(expected)])
        err = np.abs(got64 - expected)[finite]
        assert np.all(err <= bound[finite]), (err.max(), (err - bound[finite]).max())


def _torch():
    try:
        return importlib.import_module("torch")
    except ImportError:
        return None


def _tf():
    try:
        return importlib.import_module("tensorflow")
    except ImportError:
        return None


# ---------------------------------------------------------------- geometry

LAYOUTS = {1: ("NCL", "NLC"), 2: ("NCHW", "NHWC")}


@st.composite
def _axis(draw, string_padding=True, max_kernel=4, modes=("zeros",)):
    """One spatial axis: (kernel, stride, dilation, pads (before, after), size)."""
    kernel = draw(st.integers(1, max_kernel))
    stride = draw(st.integers(1, 4))
    dilation = draw(st.integers(1, 3))
    pads = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    span = dilation * (kernel - 1) + 1
    size = draw(st.integers(max(1, span - sum(pads), 3 if "reflect" in modes else 1),
                            max(1, span - sum(pads)) + 7))
    return kernel, stride, dilation, pads, size


def _padding_form(draw, axes, string_padding):
    """The pads of `axes` written in one of the spec's forms; the explicit pairs."""
    forms = ["pairs", "int", "tuple"] + (["valid", "same", "same_lower"] if string_padding else [])
    form = draw(st.sampled_from(forms))
    pads = [a[3] for a in axes]
    if form in ("valid", "same", "same_lower"):
        if form == "valid" and any(a[4] < a[2] * (a[0] - 1) + 1 for a in axes):
            form = "same"
        if form == "valid":
            return "valid", [(0, 0)] * len(axes)
        return form, [same_pads(a[4], a[0], a[1], a[2], form == "same_lower") for a in axes]
    if form == "int":
        p = min(p[0] for p in pads)
        return p, [(p, p)] * len(axes)
    if form == "tuple":
        sym = [p[0] for p in pads]
        return tuple(sym), [(p, p) for p in sym]
    return tuple(pads), pads


@st.composite
def conv_geometry(draw, nsp, grouped=True, string_padding=True, modes=("zeros",),
                  max_batch=2, layouts=None):
    mode = draw(st.sampled_from(modes))
    axes = [draw(_axis(string_padding, modes=(mode,))) for _ in range(nsp)]
    padding, pads = _padding_form(draw, axes, string_padding)
    # A padded input must still hold the kernel (the form may have lowered the pads).
    sizes = [max(a[4], a[2] * (a[0] - 1) + 1 - sum(p)) for a, p in zip(axes, pads)]
    if mode == "reflect":
        sizes = [max(s, max(p) + 1) for s, p in zip(sizes, pads)]
    if mode == "circular":
        sizes = [max(s, max(p)) for s, p in zip(sizes, pads)]
    if isinstance(padding, str) and padding.startswith("same"):
        pads = [same_pads(s, a[0], a[1], a[2], padding == "same_lower")
                for s, a in zip(sizes, axes)]
    groups = draw(st.sampled_from([1, 1, 2, 3])) if grouped else 1
    return dict(
        batch=draw(st.integers(0, max_batch)),
        cin=groups * draw(st.integers(1, 3)), cout=groups * draw(st.integers(1, 3)),
        groups=groups, sizes=tuple(sizes), kernel=tuple(a[0] for a in axes),
        stride=tuple(a[1] for a in axes), dilation=tuple(a[2] for a in axes),
        padding=padding, pads=tuple(pads), padding_mode=mode,
        layout=draw(st.sampled_from(layouts or LAYOUTS[nsp])))


def _forward_out(g):
    """The window positions per axis of geometry g (output size, col2im blocks)."""
    return tuple((s + sum(p) - d * (k - 1) - 1) // st_ + 1 for s, p, k, st_, d in
                 zip(g["sizes"], g["pads"], g["kernel"], g["stride"], g["dilation"]))


def _values(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


def _last(layout):
    return layout in ("NHWC", "NLC")


def _to_first(a, layout):
    """An activation in `layout` as channels-first float64."""
    a = np.asarray(a, np.float64)
    return np.moveaxis(a, -1, 1) if _last(layout) else a


def _from_first(a, layout):
    return np.moveaxis(a, 1, -1) if _last(layout) else a


def _oi_from(w, layout):
    """A weight in the layout's default format (OI* / *IO) as OI*."""
    w = np.asarray(w, np.float64)
    if not _last(layout):
        return w
    nsp = w.ndim - 2
    return w.transpose((nsp + 1, nsp) + tuple(range(nsp)))


def _oi_to(w, layout):
    if not _last(layout):
        return w
    nsp = w.ndim - 2
    return np.ascontiguousarray(w.transpose(tuple(range(2, 2 + nsp)) + (1, 0)))


# ---------------------------------------------------------------- conv1d / conv2d

def _build_conv(g, rng, dtype):
    x = _from_first(_values(rng, (g["batch"], g["cin"]) + g["sizes"], dtype), g["layout"])
    w = _oi_to(_values(rng, (g["cout"], g["cin"] // g["groups"]) + g["kernel"], dtype), g["layout"])
    b = _values(rng, (g["cout"],), dtype)
    kwargs = dict(stride=g["stride"], padding=g["padding"], dilation=g["dilation"],
                  groups=g["groups"], data_format=g["layout"], padding_mode=g["padding_mode"])
    return [np.ascontiguousarray(x), w, b], kwargs, (0, 1, 2)


def _ref_conv(x, w, b=None, stride=1, padding=0, dilation=1, groups=1, *, data_format,
              padding_mode="zeros"):
    xf, wf = _to_first(x, data_format), _oi_from(w, data_format)
    nsp = xf.ndim - 2
    stride, dilation = _tuple(stride, nsp), _tuple(dilation, nsp)
    pads = explicit_pads(padding, xf.shape[2:], wf.shape[2:], stride, dilation)
    return _from_first(conv_reference(xf, wf, b, stride, pads, dilation, groups, padding_mode),
                       data_format)


def _tuple(value, nsp):
    return (value,) * nsp if np.isscalar(value) else tuple(value)


def _torch_conv(x, w, b=None, stride=1, padding=0, dilation=1, groups=1, *, data_format,
                padding_mode="zeros"):
    torch = _torch()
    if torch is None:
        return None
    xf, wf = _to_first(x, data_format), _oi_from(w, data_format)
    nsp = xf.ndim - 2
    pads = explicit_pads(padding, xf.shape[2:], wf.shape[2:], _tuple(stride, nsp),
                    _tuple(dilation, nsp))
    flat = [p for pair in reversed(pads) for p in pair]  # torch's F.pad order
    mode = {"zeros": "constant", "replicate": "replicate", "reflect": "reflect",
            "circular": "circular"}[padding_mode]
    t = torch.nn.functional.pad(torch.from_numpy(xf), flat, mode=mode)
    conv = torch.nn.functional.conv2d if nsp == 2 else torch.nn.functional.conv1d
    out = conv(t, torch.from_numpy(wf), None if b is None else torch.from_numpy(
        np.asarray(b, np.float64)), stride, 0, dilation, groups).numpy()
    return _from_first(out, data_format)


# ---------------------------------------------------------------- transposed conv

@st.composite
def transpose_geometry(draw, nsp):
    g = draw(conv_geometry(nsp, string_padding=False))
    g["output_padding"] = tuple(draw(st.integers(0, max(s, d) - 1))
                                for s, d in zip(g["stride"], g["dilation"]))
    # The crop may not eat the whole output: keep at least one pixel.
    pads = []
    for size, k, s, d, extra, (before, after) in zip(g["sizes"], g["kernel"], g["stride"],
                                                     g["dilation"], g["output_padding"], g["pads"]):
        full = (size - 1) * s + d * (k - 1) + 1 + extra
        before = min(before, full - 1)
        pads.append((before, min(after, full - 1 - before)))
    g["pads"] = g["padding"] = tuple(pads)
    return g


def _build_transpose(g, rng, dtype):
    x = _from_first(_values(rng, (g["batch"], g["cin"]) + g["sizes"], dtype), g["layout"])
    # IO* (PyTorch) with channels-first, *OI (TensorFlow) with channels-last.
    w = _oi_to(_values(rng, (g["cin"], g["cout"] // g["groups"]) + g["kernel"], dtype),
               g["layout"])
    b = _values(rng, (g["cout"],), dtype)
    kwargs = dict(stride=g["stride"], padding=g["pads"], output_padding=g["output_padding"],
                  groups=g["groups"], dilation=g["dilation"], data_format=g["layout"])
    return [np.ascontiguousarray(x), w, b], kwargs, (0, 1, 2)


def _ref_transpose(x, w, b=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1,
                   *, data_format):
    xf, wf = _to_first(x, data_format), _oi_from(w, data_format)
    return _from_first(conv_transpose_reference(xf, wf, b, stride, padding, output_padding,
                                                dilation, groups), data_format)


def _torch_transpose(x, w, b=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1,
                     *, data_format):
    torch = _torch()
    if torch is None:
        return None
    xf, wf = _to_first(x, data_format), _oi_from(w, data_format)
    nsp = xf.ndim - 2
    # torch pads symmetrically: run with no padding and crop (before, after).
    op = (torch.nn.functional.conv_transpose2d if nsp == 2
          else torch.nn.functional.conv_transpose1d)
    stride, dilation, extra = (_tuple(v, nsp) for v in (stride, dilation, output_padding))
    full = op(torch.from_numpy(xf), torch.from_numpy(wf), None, stride, 0, 0, groups,
              dilation).numpy()
    # output_padding extends the end; negative room is zero-filled.
    grown = np.zeros(full.shape[:2] + tuple(full.shape[2 + i] + extra[i] for i in range(nsp)))
    grown[(slice(None), slice(None)) + tuple(slice(0, s) for s in full.shape[2:])] = full
    crop = tuple(slice(p[0], grown.shape[2 + i] - p[1]) for i, p in enumerate(padding))
    out = grown[(slice(None), slice(None)) + crop]
    if b is not None:
        out = out + np.asarray(b, np.float64).reshape((1, -1) + (1,) * nsp)
    return _from_first(out, data_format)


# ---------------------------------------------------------------- depthwise / separable

@st.composite
def depthwise_geometry(draw, separable=False):
    g = draw(conv_geometry(2, grouped=False, modes=("zeros", "reflect", "replicate")))
    g["multiplier"] = draw(st.integers(1, 3))
    if separable:
        g["padding_mode"] = "zeros"
        g["pointwise"] = draw(st.integers(1, 4))
        g["flat_pointwise"] = draw(st.booleans())
    return g


def _build_depthwise(g, rng, dtype):
    x = _from_first(_values(rng, (g["batch"], g["cin"]) + g["sizes"], dtype), g["layout"])
    w = _values(rng, g["kernel"] + (g["cin"], g["multiplier"]), dtype)
    b = _values(rng, (g["cin"] * g["multiplier"],), dtype)
    kwargs = dict(stride=g["stride"], padding=g["padding"], dilation=g["dilation"],
                  data_format=g["layout"], padding_mode=g["padding_mode"])
    return [np.ascontiguousarray(x), w, b], kwargs, (0, 1, 2)


def _depthwise_oi(w):
    """(R, S, C, M) -> (C*M, 1, R, S), output channel c*M + m."""
    r, s, c, m = w.shape
    return np.asarray(w, np.float64).transpose(2, 3, 0, 1).reshape(c * m, 1, r, s)


def _ref_depthwise(x, w, b=None, stride=1, padding="valid", dilation=1, *, data_format="NHWC",
                   padding_mode="zeros"):
    w_oi = _depthwise_oi(w)
    return _ref_conv(x, _oi_to(w_oi, data_format), b, stride, padding, dilation,
                     np.shape(w)[2], data_format=data_format, padding_mode=padding_mode)


def _build_separable(g, rng, dtype):
    (x, w, _), kwargs, _ = _build_depthwise(g, rng, dtype)
    cm = g["cin"] * g["multiplier"]
    wp = _values(rng, (cm, g["pointwise"]) if g["flat_pointwise"] else (1, 1, cm, g["pointwise"]),
                 dtype)
    b = _values(rng, (g["pointwise"],), dtype)
    del kwargs["padding_mode"]
    return [x, w, wp, b], kwargs, (0, 1, 2, 3)


def _ref_separable(x, wd, wp, b=None, stride=1, padding="valid", dilation=1, *,
                   data_format="NHWC"):
    mid = _to_first(_ref_depthwise(x, wd, None, stride, padding, dilation,
                                   data_format=data_format), data_format)
    wp = np.asarray(wp, np.float64).reshape(-1, np.shape(wp)[-1])
    out = np.einsum("nc...,ck->nk...", mid, wp)
    if b is not None:
        out += np.asarray(b, np.float64).reshape((1, -1) + (1,) * (out.ndim - 2))
    return _from_first(out, data_format)


def _torch_depthwise(x, w, b=None, stride=1, padding="valid", dilation=1, *, data_format="NHWC",
                     padding_mode="zeros"):
    return _torch_conv(x, _oi_to(_depthwise_oi(w), data_format), b, stride, padding, dilation,
                       np.shape(w)[2], data_format=data_format, padding_mode=padding_mode)


def _tf_separable(x, wd, wp, b=None, stride=1, padding="valid", dilation=1, *,
                  data_format="NHWC"):
    tf = _tf()
    stride, dilation = _tuple(stride, 2), _tuple(dilation, 2)
    if (tf is None or data_format != "NHWC" or np.shape(x)[0] == 0
            or not isinstance(padding, str) or padding == "same_lower"
            or (max(stride) > 1 and max(dilation) > 1) or stride[0] != stride[1]):
        return None  # TensorFlow has no such separable_conv2d
    wp4 = np.asarray(wp, np.float64).reshape(1, 1, -1, np.shape(wp)[-1])
    out = tf.nn.separable_conv2d(np.asarray(x, np.float64), np.asarray(wd, np.float64), wp4,
                                 (1,) + stride + (1,), padding.upper(), dilations=dilation).numpy()
    return out + (0 if b is None else np.asarray(b, np.float64))


# ---------------------------------------------------------------- locally connected

@st.composite
def local_geometry(draw, nsp):
    g = draw(conv_geometry(nsp, grouped=False, layouts=LAYOUTS[nsp]))
    g["dilation"] = (1,) * nsp
    g["pads"] = explicit_pads(g["padding"], g["sizes"], g["kernel"], g["stride"], g["dilation"])
    g["sizes"] = tuple(max(s, k - sum(p)) for s, k, p in zip(g["sizes"], g["kernel"], g["pads"]))
    g["pads"] = explicit_pads(g["padding"], g["sizes"], g["kernel"], g["stride"], g["dilation"])
    g["bias_form"] = draw(st.sampled_from(["full", "channels", None]))
    return g


def _build_local(g, rng, dtype):
    out = _forward_out(g)  # dilation 1
    x = _from_first(_values(rng, (g["batch"], g["cin"]) + g["sizes"], dtype), g["layout"])
    w = _values(rng, (int(np.prod(out)), int(np.prod(g["kernel"])) * g["cin"], g["cout"]), dtype)
    if g["bias_form"] == "full":
        b = _values(rng, out + (g["cout"],) if _last(g["layout"]) else (g["cout"],) + out, dtype)
    elif g["bias_form"] == "channels":
        b = _values(rng, (g["cout"],), dtype)
    else:
        b = None
    kwargs = dict(kernel_size=g["kernel"], stride=g["stride"], padding=g["padding"],
                  data_format=g["layout"])
    return [np.ascontiguousarray(x), w, b], kwargs, (0, 1, 2)


def _ref_local(x, w, b=None, kernel_size=None, stride=1, padding="valid", *, data_format):
    xl = np.moveaxis(_to_first(x, data_format), 1, -1)  # channels-last
    nsp = xl.ndim - 2
    kernel, stride = _tuple(kernel_size, nsp), _tuple(stride, nsp)
    pads = explicit_pads(padding, xl.shape[1:-1], kernel, stride, (1,) * nsp)
    w = np.asarray(w, np.float64)
    if not _last(data_format):  # (c, taps) patch order -> (taps, c)
        c = xl.shape[-1]
        w = (w.reshape((w.shape[0], c) + kernel + (w.shape[-1],))
             .transpose((0,) + tuple(range(2, 2 + nsp)) + (1, nsp + 2)).reshape(w.shape))
    bias = None
    if b is not None:
        bias = np.asarray(b, np.float64)
        if bias.ndim > 1 and not _last(data_format):
            bias = np.moveaxis(bias, 0, -1)
    out = local_conv_reference(xl, w, bias, kernel, stride, pads)
    return np.moveaxis(out, -1, 1) if not _last(data_format) else out


# ---------------------------------------------------------------- patches

def patches_geometry():
    return conv_geometry(2, grouped=False, layouts=("NCHW",))


def _build_im2col(g, rng, dtype):
    x = _values(rng, (g["batch"], g["cin"]) + g["sizes"], dtype)
    kwargs = dict(kernel_size=g["kernel"], stride=g["stride"], padding=g["padding"],
                  dilation=g["dilation"])
    return [x], kwargs, (0,)


def _ref_im2col(x, kernel_size, stride=1, padding=0, dilation=1):
    x = np.asarray(x, np.float64)
    pads = explicit_pads(padding, x.shape[2:], kernel_size, stride, dilation)
    p = patches_reference(np.moveaxis(x, 1, -1), kernel_size, stride, pads, dilation)
    n, ho, wo, _ = p.shape
    c = x.shape[1]
    p = p.reshape(n, ho * wo, kernel_size[0] * kernel_size[1], c)
    return p.transpose(0, 3, 2, 1).reshape(n, c * kernel_size[0] * kernel_size[1], ho * wo)


def _torch_im2col(x, kernel_size, stride=1, padding=0, dilation=1):
    torch = _torch()
    if torch is None:
        return None
    x = np.asarray(x, np.float64)
    pads = explicit_pads(padding, x.shape[2:], kernel_size, stride, dilation)
    if x.shape[0] == 0:
        return None  # unfold refuses an empty batch
    t = torch.nn.functional.pad(torch.from_numpy(x), [p for pair in reversed(pads) for p in pair])
    return torch.nn.functional.unfold(t, kernel_size, dilation, 0, stride).numpy()


def _build_col2im(g, rng, dtype):
    blocks = _forward_out(g)
    cols = _values(rng, (g["batch"], g["cin"] * int(np.prod(g["kernel"])),
                         int(np.prod(blocks))), dtype)
    kwargs = dict(kernel_size=g["kernel"], stride=g["stride"], padding=g["pads"],
                  dilation=g["dilation"])
    return [cols, g["sizes"]], kwargs, (0,)


def _ref_col2im(cols, output_size, kernel_size, stride=1, padding=0, dilation=1):
    """col2im_reference called with col2im's keywords (kernel_size, padding)."""
    return col2im_reference(cols, output_size, kernel_size, stride, padding, dilation)


def _torch_col2im(cols, output_size, kernel_size, stride=1, padding=0, dilation=1):
    torch = _torch()
    if torch is None or np.shape(cols)[0] == 0 or any(p[0] != p[1] for p in padding):
        return None  # fold takes a non-empty batch and symmetric padding
    return torch.nn.functional.fold(torch.from_numpy(np.asarray(cols, np.float64)),
                                    output_size, kernel_size, dilation,
                                    tuple(p[0] for p in padding), stride).numpy()


@st.composite
def tf_patches_geometry(draw):
    g = draw(conv_geometry(2, grouped=False, layouts=("NHWC",)))
    g["tf_padding"] = draw(st.sampled_from(["VALID", "SAME"]))
    g["tf_form"] = draw(st.booleans())
    if g["tf_padding"] == "VALID":
        g["sizes"] = tuple(max(s, d * (k - 1) + 1)
                           for s, k, d in zip(g["sizes"], g["kernel"], g["dilation"]))
    return g


def _build_extract(g, rng, dtype):
    x = _values(rng, (g["batch"],) + g["sizes"] + (g["cin"],), dtype)

    def form(v):
        return [1, v[0], v[1], 1] if g["tf_form"] else v
    return [x, form(g["kernel"]), form(g["stride"]), form(g["dilation"]), g["tf_padding"]], {}, (0,)


def _pair(v):
    return tuple(v[1:3]) if len(v) == 4 else tuple(v)


def _ref_extract(x, sizes, strides, rates, padding="VALID"):
    x = np.asarray(x, np.float64)
    kernel, stride, rate = _pair(sizes), _pair(strides), _pair(rates)
    pads = explicit_pads(padding.lower(), x.shape[1:3], kernel, stride, rate)
    return patches_reference(x, kernel, stride, pads, rate)


def _tf_extract(x, sizes, strides, rates, padding="VALID"):
    tf = _tf()
    if tf is None or np.shape(x)[0] == 0:
        return None
    kernel, stride, rate = _pair(sizes), _pair(strides), _pair(rates)
    return tf.image.extract_patches(np.asarray(x, np.float64), (1,) + kernel + (1,),
                                    (1,) + stride + (1,), (1,) + rate + (1,), padding).numpy()


# ---------------------------------------------------------------- scipy-style signal

@st.composite
def signal_geometry(draw):
    return dict(in1=(draw(st.integers(1, 9)), draw(st.integers(1, 9))),
                in2=(draw(st.integers(1, 6)), draw(st.integers(1, 6))),
                mode=draw(st.sampled_from(["full", "same", "valid"])),
                boundary=draw(st.sampled_from(["fill", "wrap", "symm"])),
                fillvalue=draw(st.sampled_from([0, 1.5])))


def _build_signal(g, rng, dtype):
    in1, in2 = g["in1"], g["in2"]
    if g["mode"] == "valid" and not (all(a >= b for a, b in zip(in1, in2))
                                     or all(b >= a for a, b in zip(in1, in2))):
        in2 = tuple(min(a, b) for a, b in zip(in1, in2))
    return ([_values(rng, in1, dtype), _values(rng, in2, dtype), g["mode"], g["boundary"],
             g["fillvalue"]], {}, (0, 1))


def _ref_signal(flip):
    def reference(in1, in2, mode="full", boundary="fill", fillvalue=0):
        op = scipy.signal.convolve2d if flip else scipy.signal.correlate2d
        return op(np.asarray(in1, np.float64), np.asarray(in2, np.float64), mode, boundary,
                  fillvalue)
    return reference


# ---------------------------------------------------------------- deformable

@st.composite
def deform_geometry(draw):
    g = draw(conv_geometry(2, string_padding=True, layouts=("NCHW",)))
    g["offset_groups"] = draw(st.sampled_from([1, 1, 2]))
    g["cin"] *= g["offset_groups"]
    g["groups"] = 1 if g["cin"] % g["groups"] else g["groups"]
    g["mask"] = draw(st.booleans())
    g["spread"] = draw(st.sampled_from([0.0, 0.7, 3.0]))
    return g


def _build_deform(g, rng, dtype):
    out = _forward_out(g)
    taps = int(np.prod(g["kernel"]))
    og = g["offset_groups"]
    x = _values(rng, (g["batch"], g["cin"]) + g["sizes"], dtype)
    offset = (rng.standard_normal((g["batch"], 2 * og * taps) + out) * g["spread"]
              ).astype(dtype)
    w = _values(rng, (g["cout"], g["cin"] // g["groups"]) + g["kernel"], dtype)
    b = _values(rng, (g["cout"],), dtype)
    kwargs = dict(stride=g["stride"], padding=g["padding"], dilation=g["dilation"])
    if g["mask"]:
        kwargs["mask"] = rng.uniform(0, 1, (g["batch"], og * taps) + out).astype(dtype)
    return [x, offset, w, b], kwargs, (0, 1, 2, 3, "mask"), (1,)


def _ref_deform(x, offset, w, b=None, stride=1, padding=0, dilation=1, mask=None):
    stride, dilation = _tuple(stride, 2), _tuple(dilation, 2)
    pads = explicit_pads(padding, np.shape(x)[2:], np.shape(w)[2:], stride, dilation)
    return deform_conv_reference(x, offset, w, b, stride, pads, dilation, mask)


# ---------------------------------------------------------------- gradients

def _build_grad_input(g, rng, dtype):
    shape_first = (g["batch"], g["cin"]) + g["sizes"]
    input_shape = (shape_first[0],) + g["sizes"] + (g["cin"],) if _last(g["layout"]) \
        else shape_first
    w = _oi_to(_values(rng, (g["cout"], g["cin"] // g["groups"]) + g["kernel"], dtype), g["layout"])
    dy = _from_first(_values(rng, (g["batch"], g["cout"]) + _forward_out(g), dtype), g["layout"])
    kwargs = dict(stride=g["stride"], padding=g["padding"], dilation=g["dilation"],
                  groups=g["groups"], data_format=g["layout"])
    return [input_shape, w, np.ascontiguousarray(dy)], kwargs, (1, 2)


def _ref_grad_input(input_shape, w, dy, stride=1, padding=0, dilation=1, groups=1, *,
                    data_format):
    wf, dyf = _oi_from(w, data_format), _to_first(dy, data_format)
    nsp = wf.ndim - 2
    sizes = tuple(input_shape[1:-1]) if _last(data_format) else tuple(input_shape[2:])
    stride, dilation = _tuple(stride, nsp), _tuple(dilation, nsp)
    pads = explicit_pads(padding, sizes, wf.shape[2:], stride, dilation)
    # The adjoint of the convolution is the transposed convolution with the same
    # weight (read as IO*), grown at the end to the input's size.
    natural = [(dyf.shape[2 + i] - 1) * stride[i] - sum(pads[i]) + dilation[i] * (
        wf.shape[2 + i] - 1) + 1 for i in range(nsp)]
    extra = tuple(sizes[i] - natural[i] for i in range(nsp))
    return _from_first(conv_transpose_reference(dyf, wf, None, stride, pads, extra, dilation,
                                                groups), data_format)


def _build_grad_weight(g, rng, dtype):
    x = _from_first(_values(rng, (g["batch"], g["cin"]) + g["sizes"], dtype), g["layout"])
    w_oi = np.empty((g["cout"], g["cin"] // g["groups"]) + g["kernel"])
    w_shape = _oi_to(w_oi, g["layout"]).shape
    dy = _from_first(_values(rng, (g["batch"], g["cout"]) + _forward_out(g), dtype), g["layout"])
    kwargs = dict(stride=g["stride"], padding=g["padding"], dilation=g["dilation"],
                  groups=g["groups"], data_format=g["layout"])
    return [np.ascontiguousarray(x), w_shape, np.ascontiguousarray(dy)], kwargs, (0, 2)


def _ref_grad_weight(x, w_shape, dy, stride=1, padding=0, dilation=1, groups=1, *, data_format):
    xf, dyf = _to_first(x, data_format), _to_first(dy, data_format)
    nsp = xf.ndim - 2
    oi_shape = _oi_from(np.empty(w_shape), data_format).shape
    kernel = oi_shape[2:]
    stride, dilation = _tuple(stride, nsp), _tuple(dilation, nsp)
    pads = explicit_pads(padding, xf.shape[2:], kernel, stride, dilation)
    # d<conv(x, w), dy>/dw[k, c, tap] = sum over samples and pixels of dy * patch.
    p = patches_reference(np.moveaxis(xf, 1, -1), kernel, stride, pads, dilation)
    n, c = xf.shape[:2]
    p = p.reshape((n, int(np.prod(p.shape[1:-1])), int(np.prod(kernel)), c))
    k, cg = oi_shape[:2]
    kg = k // groups
    grad = np.zeros(oi_shape)
    dyf = dyf.reshape(n, k, int(np.prod(dyf.shape[2:])))
    for gi in range(groups):
        part = np.einsum("nkl,nlt c->kct".replace(" ", ""), dyf[:, gi * kg:(gi + 1) * kg],
                         p[..., gi * cg:(gi + 1) * cg])
        grad[gi * kg:(gi + 1) * kg] = part.reshape((kg, cg) + tuple(kernel))
    return _oi_to(grad, data_format)


def _torch_grad(kind):
    def oracle(first, second, dy, stride=1, padding=0, dilation=1, groups=1, *, data_format):
        torch = _torch()
        if torch is None or np.shape(dy)[0] == 0:
            return None
        nsp = np.ndim(dy) - 2
        stride_, dilation_ = _tuple(stride, nsp), _tuple(dilation, nsp)
        if kind == "input":
            sizes = tuple(first[1:-1]) if _last(data_format) else tuple(first[2:])
            kernel = _oi_from(second, data_format).shape[2:]
        else:
            sizes = np.shape(_to_first(first, data_format))[2:]
            kernel = _oi_from(np.empty(second), data_format).shape[2:]
        pads = explicit_pads(padding, sizes, kernel, stride_, dilation_)
        if any(p[0] != p[1] for p in pads):
            return None  # torch.nn.grad pads symmetrically only
        sym = tuple(p[0] for p in pads)
        dyt = torch.from_numpy(_to_first(dy, data_format))
        g = torch.nn.grad
        if kind == "input":
            shape_first = (first[0], first[-1]) + sizes if _last(data_format) else tuple(first)
            fn = g.conv2d_input if nsp == 2 else g.conv1d_input
            res = fn(shape_first, torch.from_numpy(_oi_from(second, data_format)), dyt, stride_,
                     sym, dilation_, groups).numpy()
            return _from_first(res, data_format)
        fn = g.conv2d_weight if nsp == 2 else g.conv1d_weight
        oi = _oi_from(np.empty(second), data_format).shape
        res = fn(torch.from_numpy(_to_first(first, data_format)), oi, dyt, stride_, sym,
                 dilation_, groups).numpy()
        return _oi_to(res, data_format)
    return oracle


# ---------------------------------------------------------------- the table

OPS = [
    OpInfo("conv1d", convcpu.conv1d,
           conv_geometry(1, modes=("zeros", "reflect", "replicate", "circular")),
           _build_conv, _ref_conv, _torch_conv, "conv"),
    OpInfo("conv2d", convcpu.conv2d,
           conv_geometry(2, modes=("zeros", "reflect", "replicate", "circular")),
           _build_conv, _ref_conv, _torch_conv, "conv"),
    OpInfo("conv_transpose1d", convcpu.conv_transpose1d, transpose_geometry(1),
           _build_transpose, _ref_transpose, _torch_transpose, "transpose"),
    OpInfo("conv_transpose2d", convcpu.conv_transpose2d, transpose_geometry(2),
           _build_transpose, _ref_transpose, _torch_transpose, "transpose"),
    OpInfo("depthwise_conv2d", convcpu.depthwise_conv2d, depthwise_geometry(),
           _build_depthwise, _ref_depthwise, _torch_depthwise, "depthwise"),
    OpInfo("separable_conv2d", convcpu.separable_conv2d, depthwise_geometry(separable=True),
           _build_separable, _ref_separable, _tf_separable, "depthwise"),
    OpInfo("local_conv1d", convcpu.local_conv1d, local_geometry(1),
           _build_local, _ref_local, None, "local"),
    OpInfo("local_conv2d", convcpu.local_conv2d, local_geometry(2),
           _build_local, _ref_local, None, "local"),
    OpInfo("im2col", convcpu.im2col, patches_geometry(),
           _build_im2col, _ref_im2col, _torch_im2col, "patches"),
    OpInfo("col2im", convcpu.col2im, patches_geometry(),
           _build_col2im, _ref_col2im, _torch_col2im, "patches"),
    OpInfo("extract_image_patches", convcpu.extract_image_patches, tf_patches_geometry(),
           _build_extract, _ref_extract, _tf_extract, "patches"),
    OpInfo("correlate2d", convcpu.correlate2d, signal_geometry(),
           _build_signal, _ref_signal(False), None, "signal"),
    OpInfo("convolve2d", convcpu.convolve2d, signal_geometry(),
           _build_signal, _ref_signal(True), None, "signal"),
    OpInfo("deform_conv2d", convcpu.deform_conv2d, deform_geometry(),
           _build_deform, _ref_deform, None, "deform"),
    OpInfo("grad.conv1d_input", convcpu.grad.conv1d_input, conv_geometry(1),
           _build_grad_input, _ref_grad_input, _torch_grad("input"), "grad"),
    OpInfo("grad.conv2d_input", convcpu.grad.conv2d_input, conv_geometry(2),
           _build_grad_input, _ref_grad_input, _torch_grad("input"), "grad"),
    OpInfo("grad.conv1d_weight", convcpu.grad.conv1d_weight, conv_geometry(1),
           _build_grad_weight, _ref_grad_weight, _torch_grad("weight"), "grad"),
    OpInfo("grad.conv2d_weight", convcpu.grad.conv2d_weight, conv_geometry(2),
           _build_grad_weight, _ref_grad_weight, _torch_grad("weight"), "grad"),
]

BY_NAME = {op.name: op for op in OPS}


_BASE = {
    1: dict(batch=2, cin=4, cout=6, groups=2, sizes=(13,), kernel=(3,), stride=(2,),
            dilation=(2,), padding=((1, 0),), pads=((1, 0),), padding_mode="zeros",
            layout="NCL"),
    2: dict(batch=2, cin=4, cout=6, groups=2, sizes=(9, 8), kernel=(3, 2), stride=(2, 1),
            dilation=(1, 2), padding=((1, 0), (2, 1)), pads=((1, 0), (2, 1)),
            padding_mode="zeros", layout="NCHW"),
}
# One representative geometry per op, for the tests that need a fixed case
# (threads, processes, interrupts, memory loops).
TYPICAL = {
    "conv1d": dict(_BASE[1]), "conv2d": dict(_BASE[2]),
    "conv_transpose1d": dict(_BASE[1], output_padding=(1,)),
    "conv_transpose2d": dict(_BASE[2], output_padding=(1, 0)),
    "depthwise_conv2d": dict(_BASE[2], groups=1, multiplier=2),
    "separable_conv2d": dict(_BASE[2], groups=1, multiplier=2, pointwise=3,
                             flat_pointwise=False),
    "local_conv1d": dict(_BASE[1], groups=1, dilation=(1,), bias_form="full"),
    "local_conv2d": dict(_BASE[2], groups=1, dilation=(1, 1), bias_form="full"),
    "im2col": dict(_BASE[2], groups=1), "col2im": dict(_BASE[2], groups=1),
    "extract_image_patches": dict(_BASE[2], groups=1, layout="NHWC", tf_padding="SAME",
                                  tf_form=True),
    "correlate2d": dict(in1=(9, 8), in2=(3, 4), mode="same", boundary="symm", fillvalue=0),
    "convolve2d": dict(in1=(9, 8), in2=(3, 4), mode="full", boundary="fill", fillvalue=1.5),
    "deform_conv2d": dict(_BASE[2], offset_groups=2, mask=True, spread=1.5),
    "grad.conv1d_input": dict(_BASE[1]), "grad.conv2d_input": dict(_BASE[2]),
    "grad.conv1d_weight": dict(_BASE[1]), "grad.conv2d_weight": dict(_BASE[2]),
}


def example(name, seed=0, dtype=np.float32, **changes):
    """The typical case of op `name` (its TYPICAL geometry with `changes`)."""
    op = BY_NAME[name]
    geometry = dict(TYPICAL[name], **changes)
    if "pads" in changes and "padding" not in changes:
        geometry["padding"] = changes["pads"]
    return op.case(geometry, np.random.default_rng(seed), dtype)


# Awkward geometries (the shared generator's shapes): each is a change to an
# op's TYPICAL geometry, or None where the op has no such parameter.
EDGES = ["batch0", "one_pixel", "kernel_is_input", "stride_over_kernel", "large_dilation"]


def edge(name, kind):
    typical = TYPICAL[name]
    if "in1" in typical:  # correlate2d / convolve2d: no batch, stride or dilation
        return {"one_pixel": dict(in1=(1, 1), in2=(1, 1)),
                "kernel_is_input": dict(in2=typical["in1"])}.get(kind)
    nsp = len(typical["sizes"])
    zero = ((0, 0),) * nsp
    changes = {
        "batch0": dict(batch=0),
        "one_pixel": dict(sizes=(1,) * nsp, kernel=(1,) * nsp, pads=zero),
        "kernel_is_input": dict(kernel=typical["sizes"], dilation=(1,) * nsp, stride=(1,) * nsp,
                                pads=zero),
        "stride_over_kernel": dict(stride=(5,) * nsp),
        "large_dilation": dict(kernel=(2,) * nsp, dilation=(4,) * nsp, pads=zero),
    }[kind]
    if name.startswith("local") and kind == "large_dilation":
        return None  # locally connected layers have no dilation
    if "output_padding" in typical:
        changes["output_padding"] = (0,) * nsp
    if name == "extract_image_patches" and kind != "stride_over_kernel":
        changes["tf_padding"] = "VALID"
    return changes
