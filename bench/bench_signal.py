"""correlate2d against scipy.signal.correlate2d and scipy.ndimage.correlate, and
the gradients against the forward convolution, side by side (issue 6).

    python bench/bench_signal.py [--threads 2] [--rounds 9]

Image: 1080x1920 float32; kernels 3x3, 5x5, 15x15; mode "same", zero fill
(ndimage: mode="constant").  Gradients: conv2d_input and conv2d_weight of a
3x3 64->64 layer at 56x56 (batch 1 and 8) against conv2d of the same layer.
"""
import os
import sys

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

import convcpu  # noqa: E402
import convcpu.grad  # noqa: E402


def correlate_rows(threads, rounds):
    from scipy import ndimage, signal
    rng = np.random.default_rng(0)
    image = rng.random((1080, 1920), dtype=np.float32)
    rows = []
    for size in (3, 5, 15):
        kernel = rng.standard_normal((size, size)).astype(np.float32)
        out = np.empty_like(image)
        expect = signal.correlate2d(image, kernel, "same")
        got = convcpu.correlate2d(image, kernel, "same", num_threads=threads)
        assert np.abs(got - expect).max() <= 1e-4 * np.abs(expect).max()
        contenders = {
            "convcpu": lambda: convcpu.correlate2d(image, kernel, "same", out=out,
                                                   num_threads=threads),
            "scipy.signal": lambda: signal.correlate2d(image, kernel, "same"),
            "scipy.ndimage": lambda: ndimage.correlate(image, kernel, mode="constant"),
        }
        medians = harness.interleaved(contenders, rounds=rounds if size < 15 else 3, burst=1)
        best = min(medians["scipy.signal"], medians["scipy.ndimage"])
        rows.append([f"{size}x{size}", f"{medians['convcpu'] * 1e3:.2f}",
                     f"{medians['scipy.signal'] * 1e3:.1f}",
                     f"{medians['scipy.ndimage'] * 1e3:.1f}",
                     f"{best / medians['convcpu']:.1f}x"])
        print(" | ".join(rows[-1]), flush=True)
    return rows


def gradient_rows(threads, rounds):
    rows = []
    for batch in (1, 8):
        rng = np.random.default_rng(1)
        x = rng.standard_normal((batch, 64, 56, 56)).astype(np.float32)
        w = rng.standard_normal((64, 64, 3, 3)).astype(np.float32)
        dy = rng.standard_normal((batch, 64, 56, 56)).astype(np.float32)
        contenders = {
            "conv2d": lambda: convcpu.conv2d(x, w, None, 1, 1, num_threads=threads),
            "conv2d_input": lambda: convcpu.grad.conv2d_input(x.shape, w, dy, 1, 1,
                                                              num_threads=threads),
            "conv2d_weight": lambda: convcpu.grad.conv2d_weight(x, w.shape, dy, 1, 1,
                                                                num_threads=threads),
        }
        medians = harness.interleaved(contenders, rounds=rounds)
        fwd = medians["conv2d"]
        rows.append([f"3x3 64->64 @56 b{batch}", f"{fwd * 1e3:.2f}",
                     f"{medians['conv2d_input'] * 1e3:.2f}",
                     f"{medians['conv2d_input'] / fwd:.2f}",
                     f"{medians['conv2d_weight'] * 1e3:.2f}",
                     f"{medians['conv2d_weight'] / fwd:.2f}"])
        print(" | ".join(rows[-1]), flush=True)
    return rows


def main(argv=None):
    args = harness.arguments(__doc__, argv, rounds=9)
    with threadpool_limits(limits=args.threads, user_api="blas"):
        corr = correlate_rows(args.threads, args.rounds)
        grads = gradient_rows(args.threads, args.rounds)
    print()
    print("correlate2d, 1080x1920 float32, mode 'same', zero fill")
    print(harness.markdown_table(["kernel", "convcpu ms", "scipy.signal ms", "scipy.ndimage ms",
                                  "faster of SciPy / convcpu"], corr))
    print()
    print(harness.markdown_table(["layer", "conv2d ms", "conv2d_input ms", "input / forward",
                                  "conv2d_weight ms", "weight / forward"], grads))


if __name__ == "__main__":
    main()
