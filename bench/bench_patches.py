"""Patches and locally connected layers (issue 5), side by side.

    python bench/bench_patches.py [--threads 2] [--rounds 7]

1. local_conv2d, NHWC 16x64x64x16, 3x3 kernel, 16 filters, valid: convcpu vs
   tf_keras LocallyConnected2D (implementations 1 and 3; 2 builds a dense
   (H*W*C) x (Ho*Wo*F) kernel of 16 GB here and is left out) vs NumPy
   sliding_window_view + einsum.
2. Peak RSS growth of that local_conv2d call, in a fresh process, minus the output.
3. extract_image_patches (NHWC 8x112x112x32, 3x3, SAME) against a plain copy of
   the same number of output bytes (np.copyto): the fraction of memory-copy
   bandwidth reached.
"""
import os
import subprocess
import sys
import textwrap

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

import convcpu  # noqa: E402

N, H, W, C, F, K = 16, 64, 64, 16, 16, 3


def local_contenders(threads):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, H, W, C)).astype(np.float32)
    ho, wo = H - K + 1, W - K + 1
    weight = (rng.standard_normal((ho * wo, K * K * C, F)) * 0.1).astype(np.float32)
    bias = rng.standard_normal((ho, wo, F)).astype(np.float32)
    out = np.empty((N, ho, wo, F), np.float32)
    contenders = {"convcpu": lambda: convcpu.local_conv2d(x, weight, bias, K, out=out,
                                                          num_threads=threads)}
    w6 = weight.reshape(ho, wo, K, K, C, F)
    path = np.einsum_path("nhwcrs,hwrscf->nhwf",
                          np.lib.stride_tricks.sliding_window_view(x, (K, K), axis=(1, 2)), w6,
                          optimize="optimal")[0]

    def numpy_einsum():
        windows = np.lib.stride_tricks.sliding_window_view(x, (K, K), axis=(1, 2))
        return np.einsum("nhwcrs,hwrscf->nhwf", windows, w6, optimize=path) + bias
    contenders["numpy einsum"] = numpy_einsum
    try:
        import tensorflow as tf
        import tf_keras
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        for impl in (1, 3):
            layer = tf_keras.layers.LocallyConnected2D(F, K, implementation=impl)
            layer.build((None, H, W, C))
            if impl == 1:
                layer.set_weights([weight, bias])
            call = tf.function(layer)
            xt = tf.constant(x)
            call(xt)
            contenders[f"keras impl {impl}"] = (lambda c=call: c(xt).numpy())
    except ImportError:
        pass
    expected = contenders["convcpu"]().copy()
    np.testing.assert_allclose(numpy_einsum(), expected, rtol=1e-4, atol=1e-3)
    if "keras impl 1" in contenders:
        np.testing.assert_allclose(contenders["keras impl 1"](), expected, rtol=1e-4, atol=1e-3)
    return contenders


RSS_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import convcpu

    def status(field):  # this process's own figures (ru_maxrss is inherited from a parent)
        with open("/proc/self/status") as handle:
            return next(int(l.split()[1]) for l in handle if l.startswith(field)) * 1024
    N, H, W, C, F, K = 16, 64, 64, 16, 16, 3
    x = np.ones((N, H, W, C), np.float32)
    w = np.ones(((H - K + 1) * (W - K + 1), K * K * C, F), np.float32)
    convcpu.local_conv2d(x[:1, :8, :8], w[:36], None, K)
    before = status("VmRSS")
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")  # reset the high-water mark VmHWM to the current RSS
    y = convcpu.local_conv2d(x, w, None, K, num_threads=int(sys.argv[1]))
    print(status("VmHWM") - before, y.nbytes)
""")


def main(argv=None):
    args = harness.arguments(__doc__, argv, rounds=7)

    medians = harness.interleaved(local_contenders(args.threads), rounds=args.rounds)
    best_other = min(v for k, v in medians.items() if k != "convcpu")
    rows = [[name, f"{t * 1e3:.2f}", f"{t / medians['convcpu']:.1f}x"]
            for name, t in medians.items()]
    print("\nlocal_conv2d NHWC 16x64x64x16, 3x3, 16 filters")
    print(harness.markdown_table(["contender", "ms", "time / convcpu"], rows))
    print(f"convcpu is {best_other / medians['convcpu']:.1f}x faster than the best other")

    growth, out_bytes = map(int, subprocess.run(
        [sys.executable, "-c", RSS_SCRIPT, str(args.threads)], capture_output=True, text=True,
        check=True).stdout.split())
    print(f"\npeak RSS growth {growth / 2**20:.1f} MB for a {out_bytes / 2**20:.1f} MB output: "
          f"{(growth - out_bytes) / 2**20:.1f} MB beyond the output")

    rng = np.random.default_rng(1)
    x = rng.standard_normal((8, 112, 112, 32)).astype(np.float32)
    patches = np.empty((8, 112, 112, 9 * 32), np.float32)
    src = np.ones_like(patches)
    dst = np.empty_like(patches)
    medians = harness.interleaved({
        "extract_image_patches": lambda: convcpu.extract_image_patches(
            x, 3, 1, 1, "SAME", out=patches, num_threads=args.threads),
        "np.copyto (same bytes)": lambda: np.copyto(dst, src)}, rounds=args.rounds)
    gb = patches.nbytes / 1e9
    t_p, t_c = medians["extract_image_patches"], medians["np.copyto (same bytes)"]
    print(f"\nextract_image_patches 8x112x112x32 3x3 SAME -> {patches.nbytes / 2**20:.0f} MB: "
          f"{t_p * 1e3:.2f} ms ({gb / t_p:.1f} GB/s written); np.copyto of the same bytes "
          f"{t_c * 1e3:.2f} ms ({2 * gb / t_c:.1f} GB/s read+written); "
          f"patches reach {100 * t_c / t_p:.0f}% of the copy's speed")


if __name__ == "__main__":
    main()
