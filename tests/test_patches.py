"""im2col (torch unfold) and extract_image_patches (tf.image.extract_patches)."""
import itertools

import numpy as np
import pytest
from conftest import awkward_variants, optional

import convcpu
from convcpu._reference import patches_reference, same_pads

SEED_000_PATCHES = np.array([
    [0, 0, 0, 0, 0, 1, 0, 5, 6], [0, 0, 0, 0, 1, 2, 5, 6, 7], [0, 0, 0, 1, 2, 3, 6, 7, 8],
    [0, 0, 0, 2, 3, 4, 7, 8, 9], [0, 0, 0, 3, 4, 0, 8, 9, 0],
    [0, 0, 1, 0, 5, 6, 0, 10, 11], [0, 1, 2, 5, 6, 7, 10, 11, 12], [1, 2, 3, 6, 7, 8, 11, 12, 13],
    [2, 3, 4, 7, 8, 9, 12, 13, 14], [3, 4, 0, 8, 9, 0, 13, 14, 0],
    [0, 5, 6, 0, 10, 11, 0, 15, 16], [5, 6, 7, 10, 11, 12, 15, 16, 17],
    [6, 7, 8, 11, 12, 13, 16, 17, 18], [7, 8, 9, 12, 13, 14, 17, 18, 19],
    [8, 9, 0, 13, 14, 0, 18, 19, 0],
    [0, 10, 11, 0, 15, 16, 0, 20, 21], [10, 11, 12, 15, 16, 17, 20, 21, 22],
    [11, 12, 13, 16, 17, 18, 21, 22, 23], [12, 13, 14, 17, 18, 19, 22, 23, 24],
    [13, 14, 0, 18, 19, 0, 23, 24, 0],
    [0, 15, 16, 0, 20, 21, 0, 0, 0], [15, 16, 17, 20, 21, 22, 0, 0, 0],
    [16, 17, 18, 21, 22, 23, 0, 0, 0], [17, 18, 19, 22, 23, 24, 0, 0, 0],
    [18, 19, 0, 23, 24, 0, 0, 0, 0]], dtype=np.float32)


def test_seed_000_patch_matrix():
    image = np.arange(25, dtype=np.float32).reshape(1, 5, 5, 1)
    patches = convcpu.extract_image_patches(image, [1, 3, 3, 1], [1, 1, 1, 1], [1, 1, 1, 1],
                                            padding="SAME")
    assert patches.shape == (1, 5, 5, 9)
    np.testing.assert_array_equal(patches.reshape(25, 9), SEED_000_PATCHES)


def test_seed_000_patches_times_kernel_is_conv2d():
    image = np.arange(5 * 5 * 3, dtype=np.float32).reshape(1, 5, 5, 3)
    kernel = np.arange(3 * 3 * 3 * 64, dtype=np.float32).reshape(3, 3, 3, 64)
    patches = convcpu.extract_image_patches(image, [1, 3, 3, 1], [1, 1, 1, 1], [1, 1, 1, 1],
                                            "SAME").reshape(-1, 27)
    actual = (patches @ kernel.reshape(27, 64)).reshape(1, 5, 5, 64)
    expected = convcpu.conv2d(image, kernel, padding="same", data_format="NHWC")
    assert np.sum(expected - actual) == 0.0
    np.testing.assert_array_equal(actual, expected)


IM2COL_CASES = [
    ((2, 3, 7, 8), 3, 1, 1, 1), ((1, 2, 9, 6), (2, 3), (2, 1), (0, 2), (2, 1)),
    ((3, 1, 5, 5), 1, 2, 0, 1), ((1, 4, 4, 4), 4, 1, 0, 1), ((2, 2, 11, 3), (3, 1), 3, 2, (3, 1)),
    ((1, 5, 1, 1), 1, 1, 0, 1),
]


@pytest.mark.parametrize("shape,kernel,stride,padding,dilation", IM2COL_CASES, ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_im2col_matches_reference_and_torch(shape, kernel, stride, padding, dilation, dtype):
    x = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    got = convcpu.im2col(x, kernel, stride, padding, dilation)
    assert got.dtype == dtype
    k = (kernel,) * 2 if np.isscalar(kernel) else kernel
    p = (padding,) * 2 if np.isscalar(padding) else padding
    ref = patches_reference(np.moveaxis(x, 1, -1), k, stride, tuple((q, q) for q in p), dilation)
    # reference patches are (N, Ho, Wo, R*S*C) in (r, s, c) order; unfold is (N, C*R*S, L)
    n, ho, wo = ref.shape[:3]
    c = shape[1]
    ref = ref.reshape(n, ho * wo, k[0] * k[1], c).transpose(0, 3, 2, 1).reshape(n, -1, ho * wo)
    np.testing.assert_array_equal(got, ref.astype(dtype))
    torch = pytest.importorskip("torch")
    expected = torch.nn.functional.unfold(torch.from_numpy(x), k, dilation, padding, stride)
    np.testing.assert_array_equal(got, expected.numpy())


def test_im2col_asymmetric_padding_unbatched_and_out():
    x = np.random.default_rng(1).standard_normal((2, 5, 6))
    out = np.empty((2 * 9, 5 * 4))
    got = convcpu.im2col(x, 3, padding=((1, 1), (0, 0)), out=out)
    assert got is out
    expected = convcpu.im2col(np.pad(x, ((0, 0), (1, 1), (0, 0)))[None], 3)[0]
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("variant", ["strided", "byteswapped", "readonly", "fortran"])
def test_awkward_inputs(variant):
    x = np.random.default_rng(2).standard_normal((2, 3, 6, 7)).astype(np.float32)
    expected = convcpu.im2col(x, 3, padding=1)
    awkward = awkward_variants(x)[variant]
    np.testing.assert_array_equal(convcpu.im2col(awkward, 3, padding=1), expected)
    nhwc = awkward_variants(np.moveaxis(x, 1, -1).copy())[variant]
    np.testing.assert_array_equal(
        convcpu.extract_image_patches(nhwc, 3, 1, 1, "SAME"),
        convcpu.extract_image_patches(np.moveaxis(x, 1, -1), 3, 1, 1, "SAME"))


TF_CASES = list(itertools.product([1, 2, 3, 4], [1, 2, 3], [1, 2], ["SAME", "VALID"]))


@pytest.mark.parametrize("size,stride,rate,padding", TF_CASES, ids=str)
def test_extract_image_patches_matches_reference_and_tensorflow(size, stride, rate, padding):
    rng = np.random.default_rng(size * 100 + stride * 10 + rate)
    x = rng.standard_normal((2, 9, 8, 3)).astype(np.float32)
    if padding == "VALID" and (size - 1) * rate + 1 > 8:
        pytest.skip("no VALID output")
    got = convcpu.extract_image_patches(x, [1, size, size, 1], [1, stride, stride, 1],
                                        [1, rate, rate, 1], padding)
    pads = ((same_pads(9, size, stride, rate), same_pads(8, size, stride, rate))
            if padding == "SAME" else 0)
    np.testing.assert_array_equal(got, patches_reference(x, size, stride, pads, rate)
                                  .astype(np.float32))
    tf = optional("tensorflow")
    expected = tf.image.extract_patches(x, [1, size, size, 1], [1, stride, stride, 1],
                                        [1, rate, rate, 1], padding).numpy()
    np.testing.assert_array_equal(got, expected)


def test_extract_image_patches_odd_sizes_and_dtypes():
    x = np.random.default_rng(3).integers(0, 255, (1, 7, 5, 2), dtype=np.uint8)
    got = convcpu.extract_image_patches(x, (2, 3), (2, 1), 1, "same")
    assert got.dtype == np.float32 and got.shape == (1, 4, 5, 12)
    ref = patches_reference(x, (2, 3), (2, 1), (same_pads(7, 2, 2, 1), same_pads(5, 3, 1, 1)))
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_thread_counts_agree(threads):
    x = np.random.default_rng(4).standard_normal((3, 16, 33, 31)).astype(np.float32)
    np.testing.assert_array_equal(convcpu.im2col(x, 3, padding=1, num_threads=threads),
                                  convcpu.im2col(x, 3, padding=1, num_threads=1))


@pytest.mark.parametrize("call,exc,fragment", [
    (lambda: convcpu.im2col(np.ones((2, 3, 4)), 5), ValueError, "too small"),
    (lambda: convcpu.im2col(np.ones((4, 4)), 2), ValueError, "x must have 4 dimensions"),
    (lambda: convcpu.im2col(np.ones((1, 1, 4, 4)), 0), ValueError, "kernel_size must be >= 1"),
    (lambda: convcpu.im2col(np.ones((1, 1, 4, 4)), 2, stride=0), ValueError, "stride"),
    (lambda: convcpu.im2col(np.ones((1, 1, 4, 4)) * 1j, 2), TypeError, "complex"),
    (lambda: convcpu.im2col(np.ones((1, 1, 4, 4)), 2, out=np.ones((1, 4, 8))), ValueError,
     "out has shape"),
    (lambda: convcpu.extract_image_patches(np.ones((1, 4, 4)), 2, 1, 1), ValueError,
     "4 dimensions"),
    (lambda: convcpu.extract_image_patches(np.ones((1, 4, 4, 1)), [2, 2, 2, 1], 1, 1),
     ValueError, "sizes in the 4-entry form"),
    (lambda: convcpu.extract_image_patches(np.ones((1, 4, 4, 1)), 2, 1, 1, "FULL"), ValueError,
     "'SAME' or 'VALID'"),
    (lambda: convcpu.extract_image_patches(np.ones((1, 4, 4, 1)), 5, 1, 1), ValueError,
     "too small"),
])
def test_bad_input(call, exc, fragment):
    with pytest.raises(exc, match=fragment):
        call()
