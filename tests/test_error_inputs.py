"""The error-input catalogue of every public op (as PyTorch's OpInfo
error_inputs): each bad argument raises ValueError / TypeError with a message
naming the argument, no input is modified, and the next call still gives the
right answer."""
import inspect

import numpy as np
import pytest
from opinfo import BY_NAME, OPS, example

# Op-specific shape rules: (op, id, changes {argument: value or callable(case)},
# exception, fragment of the message).
SPECIFIC = [
    ("conv2d", "input channels", {1: lambda c: c.get(1)[:, :1]}, ValueError, "channels"),
    ("conv2d", "groups divide", {"groups": 4}, ValueError, "groups=4"),
    ("conv2d", "groups zero", {"groups": 0}, ValueError, "groups"),
    ("conv2d", "bias shape", {2: np.zeros(5, np.float32)}, ValueError, "bias"),
    ("conv2d", "kernel larger than input", {1: np.ones((6, 2, 20, 2), np.float32)}, ValueError,
     "too small"),
    ("conv2d", "padding_mode", {"padding_mode": "mirror"}, ValueError, "padding_mode"),
    ("conv2d", "weight_format", {"weight_format": "OIHX"}, ValueError, "weight_format"),
    ("conv1d", "input channels", {1: lambda c: c.get(1)[:, :1]}, ValueError, "channels"),
    ("conv1d", "bias shape", {2: np.zeros(7, np.float32)}, ValueError, "bias"),
    ("conv_transpose2d", "input channels", {1: lambda c: c.get(1)[:3]}, ValueError, "channels"),
    ("conv_transpose2d", "output_padding negative", {"output_padding": (0, -1)}, ValueError,
     "output_padding"),
    ("conv_transpose2d", "output_size unreachable", {"output_size": (100, 100)}, ValueError,
     "output_size"),
    ("conv_transpose2d", "groups divide", {"groups": 3}, ValueError, "groups"),
    ("conv_transpose1d", "bias shape", {2: np.zeros(2, np.float32)}, ValueError, "bias"),
    ("depthwise_conv2d", "weight channels", {1: lambda c: c.get(1)[:, :, :1]}, ValueError,
     "weight"),
    ("depthwise_conv2d", "bias shape", {2: np.zeros(3, np.float32)}, ValueError, "bias"),
    ("separable_conv2d", "pointwise rows", {2: lambda c: c.get(2)[..., :3, :]}, ValueError,
     "pointwise_weight"),
    ("separable_conv2d", "pointwise rank", {2: np.ones((8,), np.float32)}, ValueError,
     "pointwise_weight"),
    ("local_conv2d", "positions", {1: lambda c: c.get(1)[:-1]}, ValueError, "weight"),
    ("local_conv2d", "patch length", {1: lambda c: c.get(1)[:, :-1]}, ValueError, "weight"),
    ("local_conv2d", "bias shape", {2: np.zeros((2, 2, 6), np.float32)}, ValueError, "bias"),
    ("local_conv2d", "kernel_size missing", {"kernel_size": None}, TypeError, "kernel_size"),
    ("local_conv1d", "patch length", {1: lambda c: c.get(1)[:, :-1]}, ValueError, "weight"),
    ("im2col", "kernel larger than input", {"kernel_size": (20, 3)}, ValueError, "too small"),
    ("col2im", "rows not a multiple", {0: lambda c: c.get(0)[:, :-1]}, ValueError, "cols"),
    ("col2im", "block count", {0: lambda c: c.get(0)[:, :, :-1]}, ValueError, "cols"),
    ("col2im", "output_size rank", {1: (9, 8, 7)}, ValueError, "output_size"),
    ("extract_image_patches", "TF form", {1: [2, 3, 3, 1]}, ValueError, "sizes"),
    ("extract_image_patches", "padding", {4: "FULL"}, ValueError, "padding"),
    ("correlate2d", "mode", {2: "fill"}, ValueError, "mode"),
    ("correlate2d", "boundary", {3: "mirror"}, ValueError, "boundary"),
    ("correlate2d", "valid needs one inside the other", {0: np.ones((3, 9)), 1: np.ones((5, 2)),
                                                         2: "valid"}, ValueError, "valid"),
    ("convolve2d", "fillvalue", {4: "zero"}, (TypeError, ValueError), "fillvalue"),
    ("convolve2d", "empty input", {0: np.ones((0, 3))}, ValueError, "in1"),
    ("deform_conv2d", "offset channels", {1: lambda c: c.get(1)[:, :-2]}, ValueError, "offset"),
    ("deform_conv2d", "offset pixels", {1: lambda c: c.get(1)[..., :-1]}, ValueError, "offset"),
    ("deform_conv2d", "mask channels", {"mask": lambda c: c.get("mask")[:, :-1]}, ValueError,
     "mask"),
    ("deform_conv2d", "input channels", {2: lambda c: c.get(2)[:, :1]}, ValueError, "channels"),
    ("grad.conv2d_input", "grad_output shape", {2: lambda c: c.get(2)[..., :-1]}, ValueError,
     "grad_output"),
    ("grad.conv2d_input", "input_shape rank", {0: (2, 4, 9)}, ValueError, "input_shape"),
    ("grad.conv2d_weight", "grad_output shape", {2: lambda c: c.get(2)[:, :-1]}, ValueError,
     "grad_output"),
    ("grad.conv2d_weight", "weight_shape", {1: (6, 3, 3, 2)}, ValueError, "weight_shape"),
    ("grad.conv1d_input", "grad_output shape", {2: lambda c: c.get(2)[..., :-1]}, ValueError,
     "grad_output"),
    ("grad.conv1d_weight", "weight_shape type", {1: "6x2x3"}, (TypeError, ValueError),
     "weight_shape"),
]


def _parameters(op):
    return list(inspect.signature(op.fn).parameters)


def _key(case, names, name):
    """Where the case passes argument `name`: its position, or the keyword."""
    position = names.index(name)
    return position if position < len(case.args) else name


def _generic(op):
    """The catalogue every op shares, where it has the argument: wrong rank,
    complex / object / str arrays, bad stride / dilation / padding / threads /
    layout, bad out=."""
    names = _parameters(op)
    case = example(op.name)
    cases = []
    for key in case.arrays:
        value = case.get(key)
        if value is None:
            continue
        name = names[key] if isinstance(key, int) else key
        cases += [
            (f"{name} rank", {key: np.asarray(value)[None, None]}, ValueError, name),
            (f"{name} complex", {key: np.asarray(value).astype(np.complex64)}, TypeError, name),
            (f"{name} object", {key: np.asarray(value).astype(object)}, TypeError, name),
            (f"{name} str", {key: np.full(np.shape(value), "a")}, TypeError, name),
            (f"{name} ragged", {key: [[1.0, 2.0], [3.0]]}, TypeError, name),
        ]
    for name in ("stride", "dilation", "strides", "rates", "sizes", "kernel_size"):
        if name in names:
            key = _key(case, names, name)
            cases += [(f"{name} zero", {key: 0}, ValueError, name),
                      (f"{name} negative", {key: -2}, ValueError, name),
                      (f"{name} float", {key: 1.5}, TypeError, name),
                      (f"{name} length", {key: (1,) * 5}, ValueError, name)]
    if "padding" in names and op.name != "extract_image_patches":
        cases += [("padding negative", {"padding": -1}, ValueError, "padding"),
                  ("padding string", {"padding": "full"}, ValueError, "padding"),
                  ("padding float", {"padding": 0.5}, TypeError, "padding")]
    if "data_format" in names:
        cases += [("data_format", {"data_format": "CHWN"}, ValueError, "data_format"),
                  ("data_format type", {"data_format": 4}, (TypeError, ValueError),
                   "data_format")]
    cases += [("num_threads zero", {"num_threads": 0}, ValueError, "num_threads"),
              ("num_threads negative", {"num_threads": -1}, ValueError, "num_threads"),
              ("num_threads str", {"num_threads": "2"}, TypeError, "num_threads")]
    if "out" in names:
        good = case.call()
        cases += [
            ("out shape", {"out": np.empty(good.shape + (1,), good.dtype)}, ValueError, "out"),
            ("out dtype", {"out": np.empty(good.shape, np.float64)}, TypeError, "out"),
            ("out strided", {"out": np.empty(good.shape + (2,), good.dtype)[..., 0]}, ValueError,
             "out"),
            ("out type", {"out": good.tolist()}, TypeError, "out"),
            ("out unaligned", {"out": np.zeros(good.nbytes + 1, np.uint8)[1:].view(good.dtype)
                               .reshape(good.shape)}, ValueError, "out must be aligned"),
            ("out byteswapped", {"out": np.empty(good.shape, good.dtype.newbyteorder())},
             (TypeError, ValueError), "out"),
        ]
    return cases


CATALOGUE = [(op.name,) + c for op in OPS for c in _generic(op)] + SPECIFIC


def _apply(case, changes):
    for key, value in changes.items():
        case = case.replaced(key, value(case) if callable(value) else value)
    return case


@pytest.mark.parametrize("name,changes,exc,fragment", [c[:1] + c[2:] for c in CATALOGUE],
                         ids=[f"{c[0]}-{c[1]}" for c in CATALOGUE])
def test_error_input(name, changes, exc, fragment):
    case = example(BY_NAME[name].name)
    expected = case.call()
    bad = _apply(case, changes)
    snapshot = {key: np.array(bad.get(key), copy=True) for key in bad.arrays
                if isinstance(bad.get(key), np.ndarray) and bad.get(key).dtype != object}
    with pytest.raises(exc) as info:
        bad.call()
    assert fragment in str(info.value), str(info.value)
    for key, before in snapshot.items():
        np.testing.assert_array_equal(bad.get(key), before)
    # No error leaves the library in a bad state.
    np.testing.assert_array_equal(case.call(), expected)


def test_catalogue_covers_every_op():
    assert {c[0] for c in CATALOGUE} == set(BY_NAME)
    assert len(CATALOGUE) >= 300
