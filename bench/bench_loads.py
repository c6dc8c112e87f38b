"""The implicit convolution's two ways of reading its panels, side by side.

    python bench/bench_loads.py [--threads 2] [--rounds 15] [--only NAME] [--warm-ms 20]

`convcpu._core.implicit_loads()` is "masked" (zero-masked 512-bit loads) or
"and" (plain loads and'ed with each tap's lane vector where they stay inside
the input; the default on AMD Zen 4).  Both give the same bits (checked
here); each layer of bench_conv.py that runs on the implicit convolution
(the 3x3 and dilated layers, conv1 7x7/2 and conv1d) is timed under each in
one process, interleaved, and the ratio and/masked printed.
"""
import os
import sys

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from bench_conv import LAYERS  # noqa: E402

import convcpu  # noqa: E402
from convcpu import _core  # noqa: E402


def run_layer(layer, threads, rounds):
    name, batch, cin, cout, size, k, stride, pad, dil, nsp = layer
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, cin) + (size,) * nsp).astype(np.float32)
    w = (rng.standard_normal((cout, cin) + (k,) * nsp) * 0.1).astype(np.float32)
    op = convcpu.conv2d if nsp == 2 else convcpu.conv1d

    def under(loads):
        def call():
            _core.implicit_loads(loads)
            return op(x, w, None, stride, pad, dil, num_threads=threads)
        return call

    contenders = {"masked": under("masked"), "and": under("and")}
    bits = {key: fn().view(np.uint32) for key, fn in contenders.items()}
    assert np.array_equal(bits["masked"], bits["and"]), name
    return harness.interleaved(contenders, rounds=rounds)


def main(argv=None):
    args = harness.arguments(__doc__, argv, only=True)
    before = _core.implicit_loads()
    rows, ratios = [], []
    try:
        with threadpool_limits(limits=args.threads, user_api="blas"):
            for layer in LAYERS:
                if layer[5] == 1 or (args.only and args.only not in layer[0]):
                    continue  # 1x1 layers run on the packed GEMM, not these loads
                medians = run_layer(layer, args.threads, args.rounds)
                ratio = medians["and"] / medians["masked"]
                ratios.append(ratio)
                rows.append([layer[0], f"{medians['masked'] * 1e3:.3f}",
                             f"{medians['and'] * 1e3:.3f}", f"{ratio:.3f}"])
                print(" | ".join(rows[-1]), flush=True)
    finally:
        _core.implicit_loads(before)
    print()
    print(harness.markdown_table(["layer", "masked ms", "and ms", "and / masked"], rows))
    if ratios:
        print(f"\ngeomean and / masked: {harness.geomean(ratios):.3f}")


if __name__ == "__main__":
    main()
