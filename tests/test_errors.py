"""Every bad input of conv1d / conv2d raises the right error, naming the argument,
leaves the inputs untouched, and the next call still works."""
import numpy as np
import pytest

import convcpu

X = np.random.default_rng(0).standard_normal((2, 4, 6, 6)).astype(np.float32)
W = np.random.default_rng(1).standard_normal((6, 4, 3, 3)).astype(np.float32)
B = np.zeros(6, np.float32)

# (id, overrides of the call, exception, fragment of the message)
CASES = [
    ("x rank 2", dict(x=np.ones((4, 6))), ValueError, "x must have 4 dimensions"),
    ("x rank 5", dict(x=np.ones((1, 2, 4, 6, 6))), ValueError, "x must have 4 dimensions"),
    ("weight rank", dict(weight=np.ones((6, 4, 3))), ValueError, "weight must have 4 dimensions"),
    ("channel mismatch", dict(weight=np.ones((6, 3, 3, 3))), ValueError, "input channels"),
    ("groups divide in", dict(groups=3), ValueError, "groups=3 must divide"),
    ("groups divide out", dict(weight=np.ones((5, 2, 3, 3)), groups=2), ValueError, "groups=2"),
    ("groups zero", dict(groups=0), ValueError, "groups must be >= 1"),
    ("groups float", dict(groups=1.5), TypeError, "groups"),
    ("bias shape", dict(bias=np.zeros(5)), ValueError, "bias must have shape (6,)"),
    ("bias 2-D", dict(bias=np.zeros((6, 1))), ValueError, "bias"),
    ("stride zero", dict(stride=0), ValueError, "stride must be >= 1"),
    ("stride negative", dict(stride=(1, -2)), ValueError, "stride"),
    ("stride length", dict(stride=(1, 1, 1)), ValueError, "stride must have 2 entries"),
    ("stride float", dict(stride=1.0), TypeError, "stride"),
    ("stride bool", dict(stride=True), TypeError, "stride"),
    ("dilation zero", dict(dilation=0), ValueError, "dilation must be >= 1"),
    ("padding negative", dict(padding=-1), ValueError, "padding must be >= 0"),
    ("padding pair negative", dict(padding=((0, -1), (0, 0))), ValueError, "padding"),
    ("padding string", dict(padding="full"), ValueError, "padding must be"),
    ("padding length", dict(padding=(1, 1, 1)), ValueError, "padding must have 2 entries"),
    ("padding triple", dict(padding=((1, 1, 1), (0, 0))), ValueError, "(before, after)"),
    ("padding float", dict(padding=0.5), TypeError, "padding"),
    ("padding_mode", dict(padding_mode="mirror"), ValueError, "padding_mode must be one of"),
    ("reflect too wide", dict(padding=6, padding_mode="reflect"), ValueError, "padding < input size"),
    ("circular too wide", dict(padding=7, padding_mode="circular"), ValueError, "padding <= input"),
    ("data_format", dict(data_format="CHWN"), ValueError, "data_format must be one of"),
    ("data_format type", dict(data_format=None), ValueError, "data_format"),
    ("weight_format", dict(weight_format="OIHWX"), ValueError, "weight_format"),
    ("weight_format letters", dict(weight_format="OIHH"), ValueError, "weight_format"),
    ("weight_format type", dict(weight_format=3), TypeError, "weight_format"),
    ("kernel too large", dict(weight=np.ones((6, 4, 7, 3))), ValueError, "height axis is too small"),
    ("dilated too large", dict(dilation=(1, 4)), ValueError, "width axis is too small"),
    ("empty kernel", dict(weight=np.ones((6, 4, 0, 3))), ValueError, "empty kernel"),
    ("complex x", dict(x=X.astype(np.complex64)), TypeError, "x is complex"),
    ("complex weight", dict(weight=W.astype(np.complex128)), TypeError, "weight is complex"),
    ("object x", dict(x=X.astype(object)), TypeError, "x must hold real numbers"),
    ("string x", dict(x=np.full((2, 4, 6, 6), "a")), TypeError, "x must hold real numbers"),
    ("ragged x", dict(x=[[1, 2], [3]]), TypeError, "x must be array-like"),
    ("longdouble", dict(x=X.astype(np.longdouble)), TypeError, "float32 or float64"),
    ("out shape", dict(out=np.empty((2, 6, 4, 5), np.float32)), ValueError, "out has shape"),
    ("out dtype", dict(out=np.empty((2, 6, 4, 4), np.float64)), TypeError, "out has dtype"),
    ("out strided", dict(out=np.empty((2, 6, 4, 8), np.float32)[..., ::2]), ValueError,
     "C-contiguous"),
    ("out type", dict(out=[0.0]), TypeError, "out must be a numpy.ndarray"),
    ("out readonly", dict(out=np.lib.stride_tricks.as_strided(np.empty(1, np.float32), (2, 6, 4, 4),
                                                              (0, 0, 0, 0))), ValueError, "out"),
    ("num_threads zero", dict(num_threads=0), ValueError, "num_threads must be >= 1"),
    ("num_threads str", dict(num_threads="2"), TypeError, "num_threads must be an int"),
    ("num_threads bool", dict(num_threads=True), TypeError, "num_threads must be an int"),
]


def _call(overrides):
    kwargs = dict(x=X, weight=W, bias=B, stride=1, padding=0, dilation=1, groups=1)
    kwargs.update(overrides)
    x, weight = kwargs.pop("x"), kwargs.pop("weight")
    return convcpu.conv2d(x, weight, **kwargs)


@pytest.mark.parametrize("overrides,exc,fragment", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input(overrides, exc, fragment):
    saved = {k: (v.copy() if isinstance(v, np.ndarray) and v.dtype != object else v)
             for k, v in overrides.items()}
    snapshot = X.copy(), W.copy()
    with pytest.raises(exc) as info:
        _call(overrides)
    assert fragment in str(info.value)
    np.testing.assert_array_equal(X, snapshot[0])
    np.testing.assert_array_equal(W, snapshot[1])
    for key, value in overrides.items():
        if isinstance(value, np.ndarray) and value.dtype != object and key != "out":
            np.testing.assert_array_equal(value, saved[key])
    # The library is still usable afterwards.
    assert _call({}).shape == (2, 6, 4, 4)


def test_out_overlapping_input():
    buffer = np.zeros(2 * 4 * 6 * 6, np.float32)
    x = buffer.reshape(2, 4, 6, 6)
    out = buffer[: 2 * 6 * 4 * 4].reshape(2, 6, 4, 4)
    with pytest.raises(ValueError, match="out must not overlap x"):
        convcpu.conv2d(x, W, out=out)


def test_conv1d_padding_is_not_guessed():
    """For one spatial axis a bare (a, b) is ambiguous: pairs must be nested."""
    with pytest.raises(ValueError, match="padding must have 1 entries"):
        convcpu.conv1d(np.ones((1, 1, 8)), np.ones((1, 1, 3)), padding=(1, 2))
    assert convcpu.conv1d(np.ones((1, 1, 8)), np.ones((1, 1, 3)), padding=((1, 2),)).shape == \
        (1, 1, 9)


def test_conv1d_bad_layout_and_rank():
    with pytest.raises(ValueError, match="data_format must be one of"):
        convcpu.conv1d(np.ones((1, 1, 8)), np.ones((1, 1, 3)), data_format="NCHW")
    with pytest.raises(ValueError, match="x must have 3 dimensions"):
        convcpu.conv1d(np.ones((1, 1, 1, 8)), np.ones((1, 1, 3)))


def test_set_num_threads_validation():
    with pytest.raises(ValueError, match="n must be >= 1"):
        convcpu.set_num_threads(0)
    with pytest.raises(TypeError):
        convcpu.set_num_threads(1.5)


def test_bad_environment_thread_count(monkeypatch):
    # the variable is read at the first call and after set_num_threads(None);
    # a bad value is not kept, so every call raises until it is fixed
    monkeypatch.setenv("CONVCPU_NUM_THREADS", "many")
    convcpu.set_num_threads(None)
    for _ in range(2):
        with pytest.raises(ValueError, match="CONVCPU_NUM_THREADS"):
            convcpu.conv2d(X, W)
    monkeypatch.setenv("CONVCPU_NUM_THREADS", "0")
    convcpu.set_num_threads(None)
    with pytest.raises(ValueError, match="CONVCPU_NUM_THREADS"):
        convcpu.conv2d(X, W)
    monkeypatch.setenv("CONVCPU_NUM_THREADS", "1")
    np.testing.assert_array_equal(convcpu.conv2d(X, W), convcpu.conv2d(X, W, num_threads=1))
    convcpu.set_num_threads(None)
    assert convcpu.get_num_threads() == 1
    monkeypatch.delenv("CONVCPU_NUM_THREADS")
    convcpu.set_num_threads(None)


def test_window_cache_keys_tell_apart_what_the_checks_tell_apart():
    """Geometry is cached under a key of Python ints, strings and sequences of
    them; a bool, float or NumPy scalar (equal and hashing equal to an int)
    gives no key, so its call goes through every check again.  A tuple of
    ints, strings and such tuples is its own key; other sequences become
    tuples tagged "seq", which no such tuple can equal."""
    from convcpu._geometry import _freeze
    assert _freeze((1, (2, 3), "same")) == (1, (2, 3), "same")
    assert _freeze([1, [2, 3], "same"]) == ("seq", 1, ("seq", 2, 3), "same")
    assert _freeze(((0, 1), (2, 3))) != _freeze((0, 1, 2, 3))
    assert _freeze([[0, 1], [2, 3]]) != _freeze([0, 1, 2, 3])
    assert _freeze(("seq", 2, 3)) != _freeze([2, 3])  # a user's "seq" is tagged too
    assert _freeze((("seq", 2), 3)) == ("seq", ("seq", "seq", 2), 3)
    for value in (True, 1.0, np.int64(1), None, (1, True), ((0, 1), (0, np.int32(1))),
                  [(1, 2), 1.5]):
        assert _freeze(value) is None
    convcpu.conv2d(X, W, stride=1, padding=1)
    with pytest.raises(TypeError, match="stride"):
        convcpu.conv2d(X, W, stride=True, padding=1)
    with pytest.raises(TypeError, match="padding"):
        convcpu.conv2d(X, W, stride=1, padding=((1, 1), (1, np.float64(1))))
