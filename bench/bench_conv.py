"""conv1d / conv2d against torch and onnxruntime, side by side (issue 2 layers).

    python bench/bench_conv.py [--threads 2] [--rounds 15] [--only NAME] [--markdown]

Each layer: convcpu, torch, ORT and the same-shape SciPy sgemm
(m = C_out/groups, n = N*H_out*W_out, k = C_in/groups*R*S) are timed interleaved
in this process; medians, GFLOP/s, the ratio convcpu / min(torch, ORT) and the
fraction of the same-shape sgemm rate that convcpu reaches are printed.
"""
import os
import sys

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import anchors  # noqa: E402
import harness  # noqa: E402

import convcpu  # noqa: E402

# name, batch, C_in, C_out, size, kernel, stride, padding, dilation, spatial dims
LAYERS = [
    ("resnet50 conv1 7x7/2 3->64 @224", 1, 3, 64, 224, 7, 2, 3, 1, 2),
    ("3x3 64->64 @56", 1, 64, 64, 56, 3, 1, 1, 1, 2),
    ("1x1 256->64 @56", 1, 256, 64, 56, 1, 1, 0, 1, 2),
    ("3x3 128->128 @28 b1", 1, 128, 128, 28, 3, 1, 1, 1, 2),
    ("3x3 128->128 @28 b8", 8, 128, 128, 28, 3, 1, 1, 1, 2),
    ("3x3 256->256 @14", 1, 256, 256, 14, 3, 1, 1, 1, 2),
    ("3x3 512->512 @7", 1, 512, 512, 7, 3, 1, 1, 1, 2),
    ("1x1 1024->256 @14", 1, 1024, 256, 14, 1, 1, 0, 1, 2),
    ("mobilenetv2 1x1 32->192 @112", 1, 32, 192, 112, 1, 1, 0, 1, 2),
    ("deeplab 3x3 d2 256->256 @28", 1, 256, 256, 28, 3, 1, 2, 2, 2),
    ("conv1d 256->128 k3 L1000", 1, 256, 128, 1000, 3, 1, 1, 1, 1),
    ("conv1d b32 256->128 k3 L15", 32, 256, 128, 15, 3, 1, 0, 1, 1),
]


def layer_inputs(layer):
    """A layer's input, weights (float32, seeded) and op (conv1d / conv2d)."""
    name, batch, cin, cout, size, k, stride, pad, dil, nsp = layer
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, cin) + (size,) * nsp).astype(np.float32)
    w = (rng.standard_normal((cout, cin) + (k,) * nsp) * 0.1).astype(np.float32)
    return x, w, convcpu.conv2d if nsp == 2 else convcpu.conv1d


def run_layer(layer, threads, rounds):
    name, batch, cin, cout, size, k, stride, pad, dil, nsp = layer
    x, w, op = layer_inputs(layer)
    out_size = (size + 2 * pad - dil * (k - 1) - 1) // stride + 1
    out = np.empty((batch, cout) + (out_size,) * nsp, np.float32)
    contenders = {
        "convcpu": lambda: op(x, w, None, stride, pad, dil, out=out, num_threads=threads)}
    for label, make in (("torch", anchors.torch_conv), ("ort", anchors.ort_conv)):
        fn = make(x, w, stride, pad, dil, 1, threads, nsp)
        if fn is not None:
            contenders[label] = fn
    m, n, kk = cout, batch * out_size ** nsp, cin * k ** nsp
    contenders["sgemm"] = anchors.sgemm_same_shape(m, n, kk, np.float32)
    ref = contenders.get("torch", contenders.get("ort"))
    if ref is not None:
        expect = np.asarray(ref())
        got = contenders["convcpu"]()
        err = float(np.abs(got - expect).max() / (np.abs(expect).max() + 1e-30))
        assert err < 1e-4, (name, err)
    medians = harness.interleaved(contenders, rounds=rounds)
    flops = 2.0 * m * n * kk
    best_anchor = min((medians[a] for a in ("torch", "ort") if a in medians), default=None)
    return {
        "name": name,
        "ms": {key: value * 1e3 for key, value in medians.items()},
        "gflops": flops / medians["convcpu"] / 1e9,
        "sgemm_gflops": flops / medians["sgemm"] / 1e9,
        "ratio": None if best_anchor is None else medians["convcpu"] / best_anchor,
        "of_sgemm": medians["sgemm"] / medians["convcpu"],
    }


def main(argv=None):
    args = harness.arguments(__doc__, argv, only=True)
    rows, ratios = [], []
    with threadpool_limits(limits=args.threads, user_api="blas"):
        for layer in LAYERS:
            if args.only and args.only not in layer[0]:
                continue
            r = run_layer(layer, args.threads, args.rounds)
            fmt = lambda key: f"{r['ms'][key]:.3f}" if key in r["ms"] else "-"  # noqa: E731
            ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
            rows.append([r["name"], fmt("convcpu"), fmt("torch"), fmt("ort"), fmt("sgemm"),
                         f"{r['gflops']:.1f}", f"{r['sgemm_gflops']:.1f}",
                         f"{100 * r['of_sgemm']:.0f}%", ratio])
            ratios.append(r["ratio"])
            print(" | ".join(str(c) for c in rows[-1]), flush=True)
    print()
    print(harness.markdown_table(
        ["layer", "convcpu ms", "torch ms", "ORT ms", "sgemm ms", "convcpu GFLOP/s",
         "sgemm GFLOP/s", "convcpu / sgemm rate", "convcpu / min(torch, ORT)"], rows))
    gm = harness.geomean(ratios)
    if gm is not None:
        print(f"\ngeomean convcpu / min(torch, ORT): {gm:.2f}; worst: {max(r for r in ratios if r):.2f}")


if __name__ == "__main__":
    main()
