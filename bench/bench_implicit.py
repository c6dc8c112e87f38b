"""The implicit convolution's ways of reading and cutting its panels, side by side.

    python bench/bench_implicit.py [--threads 2] [--rounds 15] [--only NAME] [--warm-ms 20]

`convcpu._core.implicit_loads()` is "masked" (zero-masked 512-bit loads) or
"and" (plain loads and'ed with each tap's lane vector where they stay inside
the input); `convcpu._core.implicit_panels()` is "narrow" (panels of 32, a
tile's last 1-4 pixels on the tail kernels) or "wide" (panels of 48, no tail
kernels).  "and" + "wide" is the default on AMD Zen 4, "masked" + "narrow"
elsewhere.  Every setting gives the same bits (checked here); each layer of
bench_conv.py that runs on the implicit convolution (the 3x3 and dilated
layers, conv1 7x7/2 and conv1d) is timed under masked/narrow, and/narrow and
and/wide in one process, interleaved, and the ratios to masked/narrow printed.
"""
import os
import sys

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from bench_conv import LAYERS, layer_inputs  # noqa: E402

from convcpu import _core  # noqa: E402


SETTINGS = [("masked", "narrow"), ("and", "narrow"), ("and", "wide")]


def run_layer(layer, threads, rounds):
    name, batch, cin, cout, size, k, stride, pad, dil, nsp = layer
    x, w, op = layer_inputs(layer)

    def under(loads, panels):
        def call():
            _core.implicit_loads(loads)
            _core.implicit_panels(panels)
            return op(x, w, None, stride, pad, dil, num_threads=threads)
        return call

    contenders = {f"{loads}/{panels}": under(loads, panels) for loads, panels in SETTINGS}
    bits = [fn().view(np.uint32) for fn in contenders.values()]
    assert all(np.array_equal(bits[0], b) for b in bits[1:]), name
    return harness.interleaved(contenders, rounds=rounds)


def main(argv=None):
    args = harness.arguments(__doc__, argv, only=True)
    before = _core.implicit_loads(), _core.implicit_panels()
    rows, ratios = [], {key: [] for key in ("and/narrow", "and/wide")}
    try:
        with threadpool_limits(limits=args.threads, user_api="blas"):
            for layer in LAYERS:
                if layer[5] == 1 or (args.only and args.only not in layer[0]):
                    continue  # 1x1 layers run on the packed GEMM, not these loads
                medians = run_layer(layer, args.threads, args.rounds)
                base = medians["masked/narrow"]
                row = [layer[0]] + [f"{medians[key] * 1e3:.3f}" for key in medians]
                for key in ratios:
                    ratios[key].append(medians[key] / base)
                    row.append(f"{medians[key] / base:.3f}")
                rows.append(row)
                print(" | ".join(row), flush=True)
    finally:
        _core.implicit_loads(before[0])
        _core.implicit_panels(before[1])
    print()
    print(harness.markdown_table(["layer"] + [f"{a}/{b} ms" for a, b in SETTINGS]
                                 + [f"{key} / masked/narrow" for key in ratios], rows))
    for key, values in ratios.items():
        if values:
            print(f"geomean {key} / masked/narrow: {harness.geomean(values):.3f}")


if __name__ == "__main__":
    main()
