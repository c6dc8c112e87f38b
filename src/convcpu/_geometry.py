"""Every shape rule of convcpu in one place: layouts, weight formats, stride,
dilation, padding forms, padding modes and output sizes."""
import operator

import numpy as np

_DATA_FORMATS = {
    1: {"NCL": False, "NCW": False, "NLC": True, "NWC": True},
    2: {"NCHW": False, "NHWC": True},
    3: {"NCDHW": False, "NDHWC": True},
}
_SPATIAL_LETTERS = {1: ("W",), 2: ("H", "W"), 3: ("D", "H", "W")}
_PADDING_STRINGS = ("valid", "same", "same_lower")
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def channels_last(data_format, nspatial):
    """True for NHWC-like layouts, False for NCHW-like ones; ValueError otherwise."""
    formats = _DATA_FORMATS[nspatial]
    if not isinstance(data_format, str) or data_format.upper() not in formats:
        raise ValueError(
            f"data_format must be one of {sorted(formats)} for a {nspatial}-D op, got {data_format!r}")
    return formats[data_format.upper()]


def default_weight_format(nspatial, is_channels_last, transposed=False):
    """PyTorch's OI<spatial> with channels-first data, TensorFlow's <spatial>IO with
    channels-last; for transposed convolutions IO<spatial> and <spatial>OI."""
    spatial = "".join(_SPATIAL_LETTERS[nspatial])
    if transposed:
        return spatial + "OI" if is_channels_last else "IO" + spatial
    return spatial + "IO" if is_channels_last else "OI" + spatial


def _check_weight_format(weight_format, nspatial, transposed):
    """The format upper-cased (1-D "L" read as "W"); TypeError / ValueError if it
    does not order the letters O, I and the spatial ones."""
    if not isinstance(weight_format, str):
        raise TypeError(f"weight_format must be a string, got {type(weight_format).__name__}")
    fmt = weight_format.upper()
    if nspatial == 1:
        fmt = fmt.replace("L", "W")
    wanted = ("O", "I") + _SPATIAL_LETTERS[nspatial]
    if len(fmt) != len(wanted) or sorted(fmt) != sorted(wanted):
        example = default_weight_format(nspatial, False, transposed)
        raise ValueError(
            f"weight_format {weight_format!r} must order the letters of {example!r} "
            f"(e.g. {example!r}, {default_weight_format(nspatial, True, transposed)!r})")
    return fmt


def weight_to_oi(weight, weight_format, nspatial, transposed=False):
    """View `weight` (laid out as `weight_format`) as (O, I, *kernel).

    The format names each axis with O (output channels), I (input channels per
    group) and the spatial letters (H, W; D for 3-D; W or L for 1-D): for example
    "OIHW" (PyTorch), "HWIO" (TensorFlow), "OHWI".
    """
    return weight.transpose(weight_axes(weight.shape, weight_format, nspatial, transposed))


def weight_axes(shape, weight_format, nspatial, transposed=False):
    """The axes that view a weight of `shape` (laid out as `weight_format`) as
    (O, I, *kernel): the checks of `weight_to_oi`."""
    key = (weight_format, nspatial, transposed, len(shape)) if type(weight_format) is str \
        else None
    axes = _FORMAT_AXES.get(key)  # a format checked before: its axes (0.8 us a call)
    if axes is None:
        fmt = _check_weight_format(weight_format, nspatial, transposed)
        wanted = ("O", "I") + _SPATIAL_LETTERS[nspatial]
        axes = tuple(_oi_axes(weight_format, fmt, wanted, shape))
        if key is not None:
            _FORMAT_AXES[key] = axes
    return axes


# Valid weight formats met so far (keys of weight_to_oi): bounded, as a valid
# format is one of the orders (and letter cases) of at most five letters.
_FORMAT_AXES = {}


def shape_to_oi(shape, weight_format, nspatial):
    """The (O, I, *kernel) shape of a weight of `shape` laid out as `weight_format`
    (the checks of `weight_to_oi`, on a shape alone)."""
    fmt = _check_weight_format(weight_format, nspatial, False)
    wanted = ("O", "I") + _SPATIAL_LETTERS[nspatial]
    return tuple(shape[i] for i in _oi_axes(weight_format, fmt, wanted, tuple(shape)))


def _oi_axes(weight_format, fmt, wanted, shape):
    if len(shape) != len(wanted):
        raise ValueError(
            f"weight must have {len(wanted)} dimensions ({weight_format}), got shape {shape}")
    return [fmt.index(letter) for letter in wanted]


def _as_int(value, name):
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an int, got bool")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int or a tuple of ints, got {value!r}") from None


def expand(value, nspatial, name, minimum=1):
    """An int or one int per spatial axis, each >= minimum, as a tuple."""
    if type(value) is int and value >= minimum:  # the common case, first
        return (value,) * nspatial
    if isinstance(value, (tuple, list, np.ndarray)):
        values = tuple(_as_int(v, name) for v in value)
        if len(values) != nspatial:
            raise ValueError(f"{name} must have {nspatial} entries (one per spatial axis), got {value!r}")
    else:
        values = (_as_int(value, name),) * nspatial
    if any(v < minimum for v in values):
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return values


def same_padding(size, kernel, stride, dilation, lower=False):
    """TensorFlow / ONNX SAME: output ceil(size / stride), the odd pixel at the end
    (SAME_UPPER) or, with lower=True, at the start (SAME_LOWER)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    small, large = total // 2, total - total // 2
    return (large, small) if lower else (small, large)


def resolve_padding(padding, sizes, kernel, stride, dilation):
    """Padding as ((before, after), ...) per spatial axis.

    Accepts an int, one int per axis, one (before, after) pair per axis,
    "valid", "same" (SAME_UPPER) or "same_lower".
    """
    n = len(sizes)
    if isinstance(padding, str):
        mode = padding.lower()
        if mode not in _PADDING_STRINGS:
            raise ValueError(f"padding must be an int, a tuple or one of {_PADDING_STRINGS}, got {padding!r}")
        if mode == "valid":
            return ((0, 0),) * n
        return tuple(same_padding(sizes[i], kernel[i], stride[i], dilation[i], mode == "same_lower")
                     for i in range(n))
    if isinstance(padding, (tuple, list, np.ndarray)):
        entries = list(padding)
        if len(entries) != n:
            raise ValueError(
                f"padding must have {n} entries (an int or a (before, after) pair per spatial axis), "
                f"got {padding!r}")
        pairs = []
        for entry in entries:
            if isinstance(entry, (tuple, list, np.ndarray)):
                if len(entry) != 2:
                    raise ValueError(f"padding pairs must be (before, after), got {entry!r} in {padding!r}")
                pairs.append((_as_int(entry[0], "padding"), _as_int(entry[1], "padding")))
            else:
                value = _as_int(entry, "padding")
                pairs.append((value, value))
    else:
        value = _as_int(padding, "padding")
        pairs = [(value, value)] * n
    if any(p < 0 for pair in pairs for p in pair):
        raise ValueError(f"padding must be >= 0, got {padding!r}")
    return tuple(pairs)


# The index tables hold one entry per padded position of an axis (8 bytes
# each), so an axis is limited before anything is allocated: at most
# MAX_AXIS positions in all, at most MAX_PADDING of them padding.
MAX_AXIS = 2**31 - 1
MAX_PADDING = 2**26


def output_size(size, kernel, stride, dilation, pad, axis_name="spatial"):
    """floor((size + before + after - dilation*(kernel-1) - 1) / stride) + 1, which must be >= 1."""
    span = dilation * (kernel - 1) + 1
    padded = size + pad[0] + pad[1]
    if pad[0] + pad[1] > MAX_PADDING or padded > MAX_AXIS:
        raise ValueError(
            f"the {axis_name} axis is too long: input size {size} padded by {pad}; convcpu "
            f"takes at most {MAX_PADDING} padded positions and {MAX_AXIS} positions in all "
            "per spatial axis (its index tables hold one entry per position)")
    if padded < span:
        raise ValueError(
            f"the {axis_name} axis is too small: input size {size} padded by {pad} is {padded}, "
            f"less than the dilated kernel size {span} (kernel {kernel}, dilation {dilation})")
    return (padded - span) // stride + 1


def index_map(size, pad, mode):
    """For each padded coordinate, the input index it reads, or -1 for a zero.

    PyTorch's padding_mode semantics: 'reflect' mirrors without repeating the
    edge (needs pad < size), 'replicate' repeats the edge, 'circular' wraps
    (needs pad <= size).
    """
    before, after = pad
    index = np.arange(size, dtype=np.intp)
    if mode == "zeros":
        return np.pad(index, pad, mode="constant", constant_values=-1)
    if mode == "reflect" and max(pad) >= size:
        raise ValueError(
            f"padding_mode='reflect' needs padding < input size, got padding {pad} for size {size}")
    if mode == "circular" and max(pad) > size:
        raise ValueError(
            f"padding_mode='circular' needs padding <= input size, got padding {pad} for size {size}")
    numpy_mode = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}[mode]
    return np.pad(index, (before, after), mode=numpy_mode)


def check_padding_mode(padding_mode):
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")


def interior_range(size, kernel, stride, dilation, pad_before, out_size):
    """For each kernel tap s, the output indices [lo, hi) whose input index
    o*stride + s*dilation - pad_before lies inside [0, size)."""
    taps = np.arange(kernel) * dilation - pad_before
    lo = -((taps) // stride)  # ceil(-tap / stride)
    hi = (size - 1 - taps) // stride + 1
    lo = np.clip(lo, 0, out_size)
    hi = np.clip(hi, lo, out_size)
    return lo.astype(np.intp), hi.astype(np.intp)


class Window:
    """The sliding window of a 1-D or 2-D op, resolved once: padding pairs,
    output sizes and the index tables the kernels read.  A 1-D window is held
    as a 2-D one of height 1 (kernel height 1, no vertical padding)."""

    def __init__(self, spatial, kernel, stride, dilation, padding, padding_mode="zeros"):
        nspatial = len(spatial)
        check_padding_mode(padding_mode)
        self.stride = expand(stride, nspatial, "stride")
        self.dilation = expand(dilation, nspatial, "dilation")
        self.pads = resolve_padding(padding, spatial, kernel, self.stride, self.dilation)
        names = ("height", "width") if nspatial == 2 else ("length",)
        self.out_spatial = tuple(
            output_size(spatial[i], kernel[i], self.stride[i], self.dilation[i], self.pads[i],
                        names[i]) for i in range(nspatial))
        lift = (lambda t, one: (one,) + tuple(t)) if nspatial == 1 else (lambda t, one: tuple(t))
        (self.H, self.W), (self.R, self.S) = lift(spatial, 1), lift(kernel, 1)
        (self.Ho, self.Wo) = lift(self.out_spatial, 1)
        stride2, dilation2 = lift(self.stride, 1), lift(self.dilation, 1)
        pads2 = lift(self.pads, (0, 0))
        self.hmap = index_map(self.H, pads2[0], padding_mode)
        self.wmap = index_map(self.W, pads2[1], padding_mode)
        self.ow_lo, self.ow_hi = interior_range(self.W, self.S, stride2[1], dilation2[1],
                                                pads2[1][0], self.Wo)
        self.unpadded_1x1 = (self.R == self.S == 1 and stride2 == (1, 1)
                             and pads2 == ((0, 0), (0, 0)))
        self._strides2, self._dilations2, self._pad_left = stride2, dilation2, pads2[1][0]
        # Values an op derives from this window and its other arguments alone,
        # kept for the next call of a cached window (see depthwise.run_direct).
        self.derived = {}
        # Output columns whose every tap reads inside the image.
        self.int_lo = int(self.ow_lo.max())
        self.int_hi = max(self.int_lo, int(self.ow_hi.min()))
        for table in self.tables():  # shared by every call of a cached window
            table.flags.writeable = False

    def dims(self, channels, out_channels, groups=1):
        """The geometry tuple the _core kernels take."""
        return (channels, self.H, self.W, out_channels, self.R, self.S, self.Ho, self.Wo,
                self._strides2[0], self._strides2[1], self._dilations2[0], self._dilations2[1],
                self._pad_left, groups)

    def tables(self):
        return self.hmap, self.wmap, self.ow_lo, self.ow_hi


def window(spatial, kernel, stride, dilation, padding, padding_mode="zeros"):
    """Window(...), cached: a layer called again with the same geometry reuses
    its resolved window (its index tables are read-only).  Arguments that do
    not freeze into a key (or any bool, float, ...: see `_freeze`) go
    uncached, so every check still runs on them."""
    key = _freeze((tuple(spatial), tuple(kernel), stride, dilation, padding, padding_mode))
    return _cached(_WINDOWS, key,
                   lambda: Window(spatial, kernel, stride, dilation, padding, padding_mode))


def _cached(cache, key, make):
    """cache[key], made by make() if absent (key None: made, not kept); a
    full cache starts again empty."""
    found = None if key is None else cache.get(key)
    if found is None:
        found = make()
        if key is not None:
            if len(cache) >= _MAX_WINDOWS:
                cache.clear()
            cache[key] = found
    return found


_WINDOWS = {}
_MAX_WINDOWS = 256


def _freeze(value):
    """A hashable key that tells apart every argument `Window` treats
    differently: Python ints and strings as themselves, sequences as tuples of
    keys; None for anything else (numpy scalars, bools, floats, ...)."""
    kind = type(value)
    if kind is int or kind is str:
        return value
    if kind is tuple and _plain(value):  # the common case: the key is the value itself
        return value
    if isinstance(value, (tuple, list)):
        items = ["seq"]  # a loop, not a generator: this runs on every call (0.8 us saved)
        for v in value:
            kind = type(v)
            if kind is not int and kind is not str:
                v = _freeze(v)
                if v is None:
                    return None
            items.append(v)
        return tuple(items)
    return None


def _plain(value):
    """True for a tuple of Python ints, strings and such tuples (nothing
    else): a key as it stands, told apart from the keys `_freeze` builds
    (tuples that start with "seq")."""
    for v in value:
        kind = type(v)
        if kind is not int and kind is not str and (kind is not tuple or not _plain(v)):
            return False
    return not value or value[0] != "seq"


# Transposed convolution ---------------------------------------------------------

def transpose_output(spatial, kernel, stride, dilation, padding, output_padding, output_size):
    """Padding pairs and output sizes of a transposed convolution.

    out = (in - 1)*stride - before - after + dilation*(k - 1) + 1 + output_padding.
    Explicit padding (int, per-axis ints or (before, after) pairs) takes any
    output_padding >= 0 (ONNX); with `output_size` the output_padding is chosen
    and must lie in [0, max(stride, dilation)) (PyTorch).  "same"/"valid"
    (TensorFlow's conv2d_transpose) take the padding the forward convolution
    of an `output_size` image would use; without `output_size` the output is
    in*stride ("same") or in*stride + max(dilated kernel - stride, 0) ("valid"),
    as Keras' Conv2DTranspose; they take no output_padding (a nonzero one is a
    ValueError: `output_size` picks the size there).  An unreachable
    `output_size` is a ValueError naming the reachable range.
    """
    n = len(spatial)
    stride = expand(stride, n, "stride")
    dilation = expand(dilation, n, "dilation")
    extra = expand(output_padding, n, "output_padding", minimum=0)
    if output_size is not None:
        output_size = expand(output_size, n, "output_size", minimum=0)
    spans = [dilation[i] * (kernel[i] - 1) + 1 for i in range(n)]
    if isinstance(padding, str) and padding.lower() in _PADDING_STRINGS:
        mode = padding.lower()
        if any(extra):
            raise ValueError(
                f"output_padding={output_padding!r} needs explicit padding; with "
                f"padding={padding!r} give output_size (TensorFlow's output_shape) instead")
        if output_size is None:
            output_size = tuple(spatial[i] * stride[i] +
                                (max(spans[i] - stride[i], 0) if mode == "valid" else 0)
                                for i in range(n))
        pads = []
        for i in range(n):
            if mode == "valid":
                low = (spatial[i] - 1) * stride[i] + spans[i]
                high = low + stride[i] - 1
            else:
                low, high = (spatial[i] - 1) * stride[i] + 1, spatial[i] * stride[i]
            if not low <= output_size[i] <= high:
                raise ValueError(
                    f"output_size {output_size[i]} on spatial axis {i} cannot be reached with "
                    f"padding={padding!r}: an input of {spatial[i]} with stride {stride[i]} and "
                    f"kernel {kernel[i]} (dilation {dilation[i]}) gives {low}..{high}")
            pads.append(((0, 0) if mode == "valid" else
                         same_padding(output_size[i], kernel[i], stride[i], dilation[i],
                                      mode == "same_lower")))
        return tuple(pads), tuple(output_size)
    pads = resolve_padding(padding, spatial, kernel, stride, dilation)
    base = [(spatial[i] - 1) * stride[i] - sum(pads[i]) + spans[i] for i in range(n)]
    if output_size is not None:
        for i in range(n):
            high = base[i] + max(stride[i], dilation[i]) - 1
            if not base[i] <= output_size[i] <= high:
                raise ValueError(
                    f"output_size {output_size[i]} on spatial axis {i} cannot be reached: "
                    f"input {spatial[i]}, stride {stride[i]}, padding {pads[i]}, kernel "
                    f"{kernel[i]}, dilation {dilation[i]} give {base[i]}..{high}")
            if extra[i] and extra[i] != output_size[i] - base[i]:
                raise ValueError(
                    f"output_padding {extra[i]} contradicts output_size {output_size[i]} on "
                    f"spatial axis {i} (it needs output_padding {output_size[i] - base[i]})")
        extra = tuple(output_size[i] - base[i] for i in range(n))
    out = tuple(base[i] + extra[i] for i in range(n))
    for i in range(n):
        if out[i] < 0:  # an empty output is allowed, as in PyTorch
            raise ValueError(
                f"the transposed convolution's output would be negative on spatial axis {i}: "
                f"({spatial[i]} - 1)*{stride[i]} - {sum(pads[i])} + {spans[i]} + {extra[i]} "
                f"= {out[i]} (input, stride, padding, dilated kernel, output_padding)")
    return pads, out


class TransposeGeometry:
    """The shape-only work of a transposed convolution: stride and dilation
    expanded, padding pairs and output size (transpose_output), and, built
    on first use, the 2-D tables of its algorithms (a 1-D one lifted to a
    height of 1): `ranges()` for the columns algorithm, `phases()` for the
    phases one.  Cached by `transpose_geometry`: its tables are read-only."""

    def __init__(self, spatial, kernel, stride, dilation, padding, output_padding, output_size):
        n = len(spatial)
        self.stride = expand(stride, n, "stride")
        self.dilation = expand(dilation, n, "dilation")
        self.pads, self.out_spatial = transpose_output(spatial, kernel, stride, dilation,
                                                       padding, output_padding, output_size)
        lift = (1,) if n == 1 else ()
        self.spatial2 = lift + tuple(spatial)
        self.kernel2 = lift + tuple(kernel)
        self.stride2 = lift + self.stride
        self.dilation2 = lift + self.dilation
        self.pads2 = (((0, 0),) if n == 1 else ()) + tuple(self.pads)
        self.out2 = lift + tuple(self.out_spatial)
        self._ranges = self._phases = None

    def ranges(self):
        """(ih_lo, ih_hi, iw_lo, iw_hi): scatter_range of both axes."""
        if self._ranges is None:
            self._ranges = _read_only(
                scatter_range(self.spatial2[i], self.out2[i], self.kernel2[i], self.stride2[i],
                              self.dilation2[i], self.pads2[i][0])[j]
                for i in range(2) for j in range(2))
        return self._ranges

    def phases(self):
        """[(a, b, taps_h, taps_w, window)] over the output phases; window:
        the phase's PhaseWindow, None when no tap reaches the phase."""
        if self._phases is None:
            axes = [transpose_phases(self.spatial2[i], self.out2[i], self.kernel2[i],
                                     self.stride2[i], self.dilation2[i], self.pads2[i][0])
                    for i in range(2)]
            phases = []
            for a, n_h, taps_h, base_h, sub_dh in axes[0]:
                for b, n_w, taps_w, base_w, sub_dw in axes[1]:
                    window = None
                    if taps_h and taps_w:
                        window = PhaseWindow(self.spatial2, (n_h, n_w),
                                             (len(taps_h), len(taps_w)), (sub_dh, sub_dw),
                                             (base_h, base_w))
                        _read_only(window.tables())
                    phases.append((a, b, taps_h, taps_w, window))
            self._phases = phases
        return self._phases


def _read_only(arrays):
    arrays = tuple(arrays)
    for a in arrays:
        a.flags.writeable = False
    return arrays


def transpose_geometry(spatial, kernel, stride, dilation, padding, output_padding, output_size):
    """TransposeGeometry, cached (as `window`) for arguments of plain ints and
    strings (output_size may also be None)."""
    size_key = ("none",) if output_size is None else _freeze(output_size)
    parts = (tuple(spatial), tuple(kernel), stride, dilation, padding, output_padding)
    key = _freeze(parts)
    if key is not None and size_key is not None:
        key = (key, size_key)
    else:
        key = None
    return _cached(_TRANSPOSE_GEOMETRIES, key,
                   lambda: TransposeGeometry(spatial, kernel, stride, dilation, padding,
                                             output_padding, output_size))


_TRANSPOSE_GEOMETRIES = {}


def transpose_phases(size, out_size, kernel, stride, dilation, pad_before):
    """The output phases of one axis of a transposed convolution.

    Output o receives input i through tap r when o = i*stride - pad_before +
    r*dilation.  The outputs o = a + stride*t of phase a (0 <= a < stride) use
    only the taps with (a + pad_before - r*dilation) divisible by stride, and
    read input i = t + base + m*sub_dilation through the m-th of those taps in
    descending order: a stride-1 correlation with a flipped sub-kernel.
    Returns [(a, n_out, taps, base, sub_dilation)], taps possibly empty.
    """
    phases = []
    sub_dilation = dilation // np.gcd(stride, dilation)
    for a in range(min(stride, out_size)):
        n_out = (out_size - a + stride - 1) // stride
        taps = [r for r in range(kernel - 1, -1, -1)
                if (a + pad_before - r * dilation) % stride == 0]
        base = (a + pad_before - taps[0] * dilation) // stride if taps else 0
        phases.append((a, n_out, taps, base, int(sub_dilation)))
    return phases


def scatter_range(size, out_size, kernel, stride, dilation, pad_before):
    """For each kernel tap r, the inputs [lo, hi) whose transposed-convolution
    output i*stride - pad_before + r*dilation lies inside [0, out_size)."""
    lo, hi = [], []
    for r in range(kernel):  # plain ints: a few taps, called on every call
        shift = pad_before - r * dilation
        lo.append(min(max(-(-shift // stride), 0), size))
        hi.append(min(max((out_size - 1 + shift) // stride + 1, lo[-1]), size))
    return np.array(lo, dtype=np.intp), np.array(hi, dtype=np.intp)


def offset_map(size, start, length):
    """index_map for a window that starts at input index `start` (any sign): entry
    q reads input q + start, or -1 (a zero) outside [0, size)."""
    index = np.arange(length, dtype=np.intp) + start
    index[(index < 0) | (index >= size)] = -1
    return index


class PhaseWindow:
    """The stride-1 correlation of one phase of a transposed convolution, with
    the interface of Window (tables(), dims(), unpadded_1x1, Ho, Wo): output
    (n_h, n_w), sub-kernel (R, S) with dilations (dh, dw), reading input row
    i + base_h + m*dh (columns likewise)."""

    def __init__(self, spatial2, out2, kernel2, dilation2, base2):
        (self.H, self.W), (self.Ho, self.Wo) = spatial2, out2
        (self.R, self.S), (self.dh, self.dw) = kernel2, dilation2
        base_h, base_w = base2
        self.hmap = offset_map(self.H, base_h, self.Ho + (self.R - 1) * self.dh)
        self.wmap = offset_map(self.W, base_w, self.Wo + (self.S - 1) * self.dw)
        self.ow_lo, self.ow_hi = interior_range(self.W, self.S, 1, self.dw, -base_w, self.Wo)
        self.pad_left = -base_w
        self.unpadded_1x1 = (self.R == self.S == 1 and base2 == (0, 0)
                             and out2 == tuple(spatial2))

    def dims(self, channels, out_channels, groups=1):
        return (channels, self.H, self.W, out_channels, self.R, self.S, self.Ho, self.Wo,
                1, 1, self.dh, self.dw, self.pad_left, groups)

    def tables(self):
        return self.hmap, self.wmap, self.ow_lo, self.ow_hi
