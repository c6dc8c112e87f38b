"""Deformable convolution against convcpu's own conv2d and onnxruntime's
DeformConv, side by side (issue 7).

    python bench/bench_deform.py [--threads 2] [--rounds 15] [--batch 1]

Each layer (3x3, padding 1, random offsets of about 2 pixels, so most taps
sample between pixels and some outside the image): convcpu deform_conv2d
without a mask (DCNv1) and with one (DCNv2), convcpu conv2d of the same shape,
and ORT's DeformConv (CPU provider, the offsets and the mask as initializers)
v1 and v2; all timed interleaved in this process (medians).  Printed: times,
deform / conv2d (the target is <= 2.5) and deform / ORT DeformConv.
"""
import os
import sys

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import anchors  # noqa: E402
import harness  # noqa: E402

import convcpu  # noqa: E402

# name, C_in, C_out, size, stride, offset groups
LAYERS = [
    ("deform 3x3 64->64 @56", 64, 64, 56, 1, 1),
    ("deform 3x3 256->256 @28 (ResNet stage 3)", 256, 256, 28, 1, 1),
    ("deform 3x3 64->64 @56, 4 offset groups", 64, 64, 56, 1, 4),
]


def ort_deform(x, w, offset, mask, stride, threads):
    """ONNX Runtime DeformConv (see anchors.ort_node)."""
    operands = [w, offset] if mask is None else [w, offset, np.zeros(w.shape[0], w.dtype), mask]
    return anchors.ort_node("DeformConv", x, operands, threads, strides=[stride, stride],
                            pads=[1, 1, 1, 1], kernel_shape=[3, 3],
                            offset_group=offset.shape[1] // 18)


def run_layer(layer, batch, threads, rounds):
    name, cin, cout, size, stride, groups = layer
    rng = np.random.default_rng(0)
    osz = (size + 2 - 3) // stride + 1
    x = rng.standard_normal((batch, cin, size, size)).astype(np.float32)
    w = (rng.standard_normal((cout, cin, 3, 3)) * 0.05).astype(np.float32)
    offset = (rng.standard_normal((batch, 2 * groups * 9, osz, osz)) * 2).astype(np.float32)
    mask = rng.random((batch, groups * 9, osz, osz)).astype(np.float32)
    out = np.empty((batch, cout, osz, osz), np.float32)
    contenders = {
        "deform": lambda: convcpu.deform_conv2d(x, offset, w, None, stride, 1, out=out,
                                                num_threads=threads),
        "deform_mask": lambda: convcpu.deform_conv2d(x, offset, w, None, stride, 1, mask=mask,
                                                     out=out, num_threads=threads),
        "conv2d": lambda: convcpu.conv2d(x, w, None, stride, 1, out=out, num_threads=threads),
    }
    for label, m in (("ort", None), ("ort_mask", mask)):
        fn = ort_deform(x, w, offset, m, stride, threads)
        if fn is not None:
            contenders[label] = fn
    for label, mine in (("ort", "deform"), ("ort_mask", "deform_mask")):
        if label in contenders:
            expect = contenders[mine]().copy()
            other = np.asarray(contenders[label]())
            err = float(np.abs(other - expect).max() / (np.abs(expect).max() + 1e-30))
            assert err < 1e-4, (name, label, err)
    medians = harness.interleaved(contenders, rounds=rounds)
    return name, {k: v * 1e3 for k, v in medians.items()}


def main(argv=None):
    args = harness.arguments(__doc__, argv, batch=True)
    rows = []
    with threadpool_limits(limits=args.threads, user_api="blas"):
        for layer in LAYERS:
            name, ms = run_layer(layer, args.batch, args.threads, args.rounds)
            fmt = lambda key: f"{ms[key]:.3f}" if key in ms else "-"  # noqa: E731
            ratio = lambda a, b: (f"{ms[a] / ms[b]:.2f}"  # noqa: E731
                                  if a in ms and b in ms else "-")
            rows.append([f"{name} b{args.batch}", fmt("deform"), fmt("deform_mask"),
                         fmt("conv2d"), fmt("ort"), fmt("ort_mask"),
                         ratio("deform", "conv2d"), ratio("deform_mask", "conv2d"),
                         ratio("deform", "ort"), ratio("deform_mask", "ort_mask")])
            print(" | ".join(rows[-1]), flush=True)
    print()
    print(harness.markdown_table(
        ["layer", "deform ms", "deform+mask ms", "conv2d ms", "ORT DeformConv ms",
         "ORT +mask ms", "deform / conv2d", "+mask / conv2d", "deform / ORT",
         "+mask / ORT +mask"], rows))


if __name__ == "__main__":
    main()
