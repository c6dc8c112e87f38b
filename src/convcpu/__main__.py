"""python -m convcpu info | check | demo [IMAGE] [--out DIR]

info   versions, the BLAS and OpenMP runtimes, threads and the CPU.
check  runs a few convolutions against the NumPy reference and prints the
       largest error and the speed of each.
demo   edges, Sobel and Laplacian of an image (the bundled sample or IMAGE)
       written as PNGs to DIR, then seed 002's "learn a kernel" experiment
       (needs matplotlib: pip install "convcpu[demo]").
"""
import argparse
import os
import platform
import sys
import time

import numpy as np


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def info():
    import scipy
    import threadpoolctl

    import convcpu
    from convcpu import _core, _direct

    print(f"convcpu {convcpu.__version__}  (numpy {np.__version__}, scipy {scipy.__version__}, "
          f"threadpoolctl {threadpoolctl.__version__}, Python {platform.python_version()})")
    print(f"CPU: {_cpu_name()}, {os.cpu_count()} logical cores")
    print(f"OpenMP: {'yes' if _core.HAVE_OPENMP else 'no (serial build)'}; "
          f"convcpu threads: {convcpu.get_num_threads()}")
    print(f"float32 GEMM: {_core.gemm_backend()} "
          "(convcpu: own AVX-512 kernels; blas: SciPy's sgemm); float64 GEMM: blas")
    if _core.gemm_backend() == "convcpu":
        print(f"implicit convolution: {_core.implicit_loads()} loads, "
              f"{_core.implicit_panels()} panels (and, wide: AMD Zen 4; masked, narrow: "
              "elsewhere)")
        print(f"channels-first depthwise rows of <= 8 columns: "
              f"{_direct.dwc512_narrow_lanes()} lanes (8: AMD Zen 4; 16: elsewhere)")
    env = {k: v for k, v in os.environ.items()
           if k.startswith(("CONVCPU_", "OMP_", "OPENBLAS_", "GOMP_"))}
    if env:
        print("environment: " + ", ".join(f"{k}={v}" for k, v in sorted(env.items())))
    print("runtimes (threadpoolctl):")
    for lib in threadpoolctl.threadpool_info():
        extra = ", ".join(f"{key} {lib[key]}" for key in ("architecture", "threading_layer")
                          if lib.get(key))
        print(f"  {lib['user_api']:7s} {lib['internal_api']:9s} {lib.get('version') or '?':14s} "
              f"threads {lib['num_threads']:3d}  {extra}  {os.path.basename(lib['filepath'])}")


def check():
    import convcpu
    from convcpu._reference import conv_reference

    rng = np.random.default_rng(0)
    cases = [("3x3 64->64 @56 NCHW", (1, 64, 56, 56), (64, 64, 3, 3), 1, "NCHW"),
             ("1x1 256->64 @28 NHWC", (1, 28, 28, 256), (1, 1, 256, 64), 0, "NHWC"),
             ("7x7/2 3->64 @112 NCHW", (1, 3, 112, 112), (64, 3, 7, 7), 3, "NCHW")]
    for name, xshape, wshape, pad, fmt in cases:
        x = rng.standard_normal(xshape).astype(np.float32)
        w = rng.standard_normal(wshape).astype(np.float32)
        stride = 2 if "/2" in name else 1
        convcpu.conv2d(x, w, stride=stride, padding=pad, data_format=fmt)
        start = time.perf_counter()
        got = convcpu.conv2d(x, w, stride=stride, padding=pad, data_format=fmt)
        elapsed = time.perf_counter() - start
        if fmt == "NHWC":
            ref = conv_reference(np.moveaxis(x, -1, 1), w.transpose(3, 2, 0, 1), None, stride, pad)
            ref = np.moveaxis(ref, 1, -1)
        else:
            ref = conv_reference(x, w, None, stride, pad)
        err = float(np.abs(got - ref).max() / np.abs(ref).max())
        flops = 2.0 * got.size * np.prod(wshape) / wshape[0 if fmt == "NCHW" else 3]
        print(f"{name:24s} max rel. error {err:.1e}  {elapsed * 1e3:7.2f} ms  "
              f"{flops / elapsed / 1e9:6.1f} GFLOP/s")
        if err > 1e-4:
            print("  MISMATCH against the NumPy reference", file=sys.stderr)
            return 1
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m convcpu", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["info", "check", "demo"], help="what to run")
    parser.add_argument("image", nargs="?", default=None,
                        help="demo: an image file (default: the bundled sample)")
    parser.add_argument("--out", default="convcpu-demo", help="demo: where to write the PNGs")
    args = parser.parse_args(argv)
    if args.command == "info":
        info()
        return 0
    if args.command == "demo":
        try:
            from convcpu import demo
            demo.run(args.image, args.out)
        except ImportError as exc:
            print(f"the demo needs matplotlib ({exc}): pip install \"convcpu[demo]\"",
                  file=sys.stderr)
            return 1
        except (OSError, ValueError) as exc:
            print(f"demo: {exc}", file=sys.stderr)
            return 1
        return 0
    if args.image is not None:
        parser.error(f"{args.command} takes no image")
    return check()


if __name__ == "__main__":
    sys.exit(main())
