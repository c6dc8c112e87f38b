"""conv_transpose1d / conv_transpose2d against torch and onnxruntime, side by side
(issue 4 layers), and the peak memory of a large transposed convolution.

    python bench/bench_transpose.py [--threads 2] [--rounds 15] [--batch 1]

Each layer: convcpu, torch and ORT timed interleaved in this process (medians);
the ratio convcpu / min(torch, ORT) is printed.  Then, in a fresh process, the
peak RSS growth of one large conv_transpose2d beyond its output.
"""
import os
import subprocess
import sys
import textwrap

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import anchors  # noqa: E402
import harness  # noqa: E402

import convcpu  # noqa: E402

# name, C_in, C_out, size, kernel, stride, padding, spatial dims
LAYERS = [
    ("DCGAN 4x4/2 pad 1 512->256 @8x8", 512, 256, 8, 4, 2, 1, 2),
    ("U-Net 2x2/2 128->64 @64x64", 128, 64, 64, 2, 2, 0, 2),
    ("conv_transpose1d 4/2 256->128 L500", 256, 128, 500, 4, 2, 1, 1),
]


def run_layer(layer, batch, threads, rounds):
    name, cin, cout, size, k, stride, pad, nsp = layer
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, cin) + (size,) * nsp).astype(np.float32)
    w = (rng.standard_normal((cin, cout) + (k,) * nsp) * 0.05).astype(np.float32)
    op = convcpu.conv_transpose2d if nsp == 2 else convcpu.conv_transpose1d
    out_size = (size - 1) * stride - 2 * pad + k
    out = np.empty((batch, cout) + (out_size,) * nsp, np.float32)
    contenders = {"convcpu": lambda: op(x, w, None, stride, pad, out=out, num_threads=threads)}
    for label, make in (("torch", anchors.torch_conv_transpose),
                        ("ort", anchors.ort_conv_transpose)):
        fn = make(x, w, stride, pad, threads, nsp)
        if fn is not None:
            contenders[label] = fn
    for label in ("torch", "ort"):
        if label in contenders:
            expect = np.asarray(contenders[label]())
            got = contenders["convcpu"]()
            err = float(np.abs(got - expect).max() / (np.abs(expect).max() + 1e-30))
            assert err < 1e-4, (name, label, err)
    medians = harness.interleaved(contenders, rounds=rounds)
    best = min((medians[a] for a in ("torch", "ort") if a in medians), default=None)
    flops = 2.0 * batch * cin * cout * size ** nsp * k ** nsp
    return name, {key: value * 1e3 for key, value in medians.items()}, \
        flops / medians["convcpu"] / 1e9, None if best is None else medians["convcpu"] / best


MEMORY_SCRIPT = textwrap.dedent("""
    import numpy as np
    import convcpu

    def status(field):
        for line in open("/proc/self/status"):
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    x = np.ones((8, 256, 64, 64), np.float32)
    w = np.ones((256, 128, 4, 4), np.float32)
    out = np.ones((8, 128, 128, 128), np.float32)  # touched: its pages are not growth
    convcpu.conv_transpose2d(x[:1, :, :8, :8], w, None, 2, 1, num_threads=2)  # load everything
    open("/proc/self/clear_refs", "w").write("5")
    before = status("VmRSS")
    convcpu.conv_transpose2d(x, w, None, 2, 1, out=out, num_threads=2)
    print(status("VmHWM") - before, out.nbytes / 2**20)
""")


def peak_memory():
    """Peak RSS growth (MB) of conv_transpose2d 8x256x64x64 -> 8x128x128x128, 4x4/2,
    written to a preallocated out=: the workspace alone (the output is 64 MB)."""
    result = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT], capture_output=True,
                            text=True, check=True)
    growth, out_mb = (float(v) for v in result.stdout.split())
    return growth, out_mb


def main(argv=None):
    args = harness.arguments(__doc__, argv, batch=True)
    rows, ratios = [], []
    with threadpool_limits(limits=args.threads, user_api="blas"):
        for layer in LAYERS:
            name, ms, gflops, ratio = run_layer(layer, args.batch, args.threads, args.rounds)
            fmt = lambda key: f"{ms[key]:.3f}" if key in ms else "-"  # noqa: E731
            rows.append([f"{name} b{args.batch}", fmt("convcpu"), fmt("torch"), fmt("ort"),
                         f"{gflops:.1f}", "-" if ratio is None else f"{ratio:.2f}"])
            ratios.append(ratio)
            print(" | ".join(rows[-1]), flush=True)
    print()
    print(harness.markdown_table(["layer", "convcpu ms", "torch ms", "ORT ms",
                                  "convcpu GFLOP/s", "convcpu / min(torch, ORT)"], rows))
    growth, out_mb = peak_memory()
    print(f"\npeak RSS growth of conv_transpose2d 8x256x64x64 -> 8x128x128x128 (4x4/2) into "
          f"out= ({out_mb:.0f} MB output): {growth:.1f} MB")


if __name__ == "__main__":
    main()
