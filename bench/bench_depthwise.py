"""Depthwise, grouped and separable convolution against torch and onnxruntime,
side by side (issue 3 layers).

    python bench/bench_depthwise.py [--threads 2] [--rounds 15] [--batch 1]

Each layer: convcpu (NCHW and NHWC, into a preallocated out=), torch and ORT
(NCHW, the layouts they run natively) and, for the depthwise layers, a copy of
the layer's bytes (two threads, each copying half of the input into an output
buffer) that gives the memory bandwidth of this process at that moment; all
timed interleaved in this process (medians).  Printed: times, the ratios
convcpu / min(torch, ORT) for both layouts, and for depthwise layers the
fraction of the copy bandwidth the kernel moves its input and output at.
The separable block is also timed as convcpu depthwise + convcpu 1x1 called
separately (the unfused baseline).
"""
import os
import sys
import threading

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import anchors  # noqa: E402
import harness  # noqa: E402

import convcpu  # noqa: E402

# name, kind, C_in, C_out, size, stride, groups (separable: C_out is the pointwise K)
LAYERS = [
    ("MobileNetV2 dw 3x3 144ch @56 s1", "depthwise", 144, 144, 56, 1, 144),
    ("dw 3x3 96ch @112 s2", "depthwise", 96, 96, 112, 2, 96),
    ("ResNeXt 3x3 g=32 256->256 @28", "grouped", 256, 256, 28, 1, 32),
    ("separable dw 3x3 144 + 1x1 144->24 @56", "separable", 144, 24, 56, 1, 144),
]


def copy_pair(src, dst):
    """Copy src into dst with two Python threads (NumPy releases the GIL), each
    half of the bytes: the bandwidth reference of a memory-bound kernel."""
    a, b = src.reshape(-1), dst.reshape(-1)
    half = a.size // 2

    def part(lo, hi):
        np.copyto(b[lo:hi], a[lo:hi])

    def run():
        t = threading.Thread(target=part, args=(0, half))
        t.start()
        part(half, a.size)
        t.join()
    return run


def ort_separable(x, wd, wp, stride, threads):
    """Depthwise Conv + pointwise Conv as one ORT graph (see anchors.ort_graph)."""
    try:
        from onnx import helper
    except ImportError:
        return None
    nodes = [helper.make_node("Conv", ["x", "wd"], ["t"], group=x.shape[1], kernel_shape=[3, 3],
                              pads=[1, 1, 1, 1], strides=[stride, stride]),
             helper.make_node("Conv", ["t", "wp"], ["y"], kernel_shape=[1, 1])]
    return anchors.ort_graph(nodes, x, {"wd": wd, "wp": wp}, threads)


def torch_separable(x, wd, wp, stride, threads):
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    xt, wdt, wpt = torch.from_numpy(x), torch.from_numpy(wd), torch.from_numpy(wp)
    c = x.shape[1]

    def run():
        with torch.inference_mode():
            t = torch.nn.functional.conv2d(xt, wdt, None, stride, 1, 1, c)
            return torch.nn.functional.conv2d(t, wpt)
    return run


def run_layer(layer, batch, threads, rounds):
    name, kind, cin, cout, size, stride, groups = layer
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, cin, size, size)).astype(np.float32)
    xh = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    osz = (size + 2 - 3) // stride + 1
    if kind == "separable":
        wd = (rng.standard_normal((cin, 1, 3, 3)) * 0.3).astype(np.float32)
        wp = (rng.standard_normal((cout, cin, 1, 1)) * 0.1).astype(np.float32)
        wd_tf = np.ascontiguousarray(wd[:, 0].transpose(1, 2, 0)[..., None])  # (3, 3, C, 1)
        wp_tf = np.ascontiguousarray(wp[:, :, 0, 0].T)  # (C, K)
        out = np.empty((batch, cout, osz, osz), np.float32)
        outh = np.empty((batch, osz, osz, cout), np.float32)
        mid = np.empty((batch, cin, osz, osz), np.float32)
        midh = np.empty((batch, osz, osz, cin), np.float32)
        contenders = {
            "convcpu": lambda: convcpu.separable_conv2d(
                x, wd_tf, wp_tf, None, stride, 1, data_format="NCHW", out=out,
                num_threads=threads),
            "convcpu_nhwc": lambda: convcpu.separable_conv2d(
                xh, wd_tf, wp_tf, None, stride, 1, out=outh, num_threads=threads),
            "unfused": lambda: convcpu.conv2d(
                convcpu.depthwise_conv2d(x, wd_tf, None, stride, 1, data_format="NCHW",
                                         out=mid, num_threads=threads),
                wp, out=out, num_threads=threads),
            "unfused_nhwc": lambda: convcpu.conv2d(
                convcpu.depthwise_conv2d(xh, wd_tf, None, stride, 1, out=midh,
                                         num_threads=threads),
                wp_tf[None, None], data_format="NHWC", out=outh, num_threads=threads),
        }
        for label, make in (("torch", torch_separable), ("ort", ort_separable)):
            fn = make(x, wd, wp, stride, threads)
            if fn is not None:
                contenders[label] = fn
        flops = 2.0 * batch * osz * osz * cin * (9 + cout)
    else:
        w = (rng.standard_normal((cout, cin // groups, 3, 3)) * 0.3).astype(np.float32)
        wh = np.ascontiguousarray(w.transpose(2, 3, 1, 0))
        out = np.empty((batch, cout, osz, osz), np.float32)
        outh = np.empty((batch, osz, osz, cout), np.float32)
        contenders = {
            "convcpu": lambda: convcpu.conv2d(x, w, None, stride, 1, 1, groups, out=out,
                                              num_threads=threads),
            "convcpu_nhwc": lambda: convcpu.conv2d(xh, wh, None, stride, 1, 1, groups,
                                                   data_format="NHWC", out=outh,
                                                   num_threads=threads),
        }
        for label, make in (("torch", anchors.torch_conv), ("ort", anchors.ort_conv)):
            fn = make(x, w, stride, 1, 1, groups, threads)
            if fn is not None:
                contenders[label] = fn
        if kind == "depthwise":
            copy_dst = np.empty_like(x)
            contenders["copy"] = copy_pair(x, copy_dst)
        flops = 2.0 * batch * cout * osz * osz * (cin // groups) * 9
    expect = contenders["convcpu"]().copy()
    got_h = contenders["convcpu_nhwc"]().transpose(0, 3, 1, 2)
    assert np.abs(got_h - expect).max() <= 1e-4 * (1 + np.abs(expect).max()), name
    for label in ("torch", "ort", "unfused"):
        if label in contenders:
            other = np.asarray(contenders[label]())
            err = float(np.abs(other - expect).max() / (np.abs(expect).max() + 1e-30))
            assert err < 1e-4, (name, label, err)
    medians = harness.interleaved(contenders, rounds=rounds)
    best = min((medians[a] for a in ("torch", "ort") if a in medians), default=None)
    ratio = lambda key: None if best is None else medians[key] / best  # noqa: E731
    bandwidth = None
    if "copy" in medians:
        moved = x.nbytes + out.nbytes
        copy_rate = 2 * x.nbytes / medians["copy"]
        bandwidth = (moved / medians["convcpu"] / copy_rate,
                     moved / medians["convcpu_nhwc"] / copy_rate, copy_rate / 1e9)
    return name, {k: v * 1e3 for k, v in medians.items()}, flops, ratio("convcpu"), \
        ratio("convcpu_nhwc"), bandwidth


def main(argv=None):
    args = harness.arguments(__doc__, argv, batch=True)
    rows = []
    fmt_r = lambda r: "-" if r is None else f"{r:.2f}"  # noqa: E731
    with threadpool_limits(limits=args.threads, user_api="blas"):
        for layer in LAYERS:
            name, ms, flops, r_nchw, r_nhwc, bw = run_layer(layer, args.batch, args.threads,
                                                            args.rounds)
            fmt = lambda key: f"{ms[key]:.3f}" if key in ms else "-"  # noqa: E731
            extra = "-"
            if bw is not None:
                extra = f"{bw[0]:.0%} / {bw[1]:.0%} of {bw[2]:.0f} GB/s"
            elif "unfused" in ms:
                extra = (f"unfused {fmt('unfused')} / {fmt('unfused_nhwc')} ms: fused "
                         f"{ms['unfused'] / ms['convcpu']:.2f}x / "
                         f"{ms['unfused_nhwc'] / ms['convcpu_nhwc']:.2f}x faster")
            rows.append([f"{name} b{args.batch}", fmt("convcpu"), fmt("convcpu_nhwc"),
                         fmt("torch"), fmt("ort"), fmt_r(r_nchw), fmt_r(r_nhwc),
                         f"{flops / ms['convcpu'] / 1e6:.1f}", extra])
            print(" | ".join(rows[-1]), flush=True)
    print()
    print(harness.markdown_table(
        ["layer", "convcpu NCHW ms", "convcpu NHWC ms", "torch ms", "ORT ms",
         "NCHW / min(torch, ORT)", "NHWC / min(torch, ORT)", "NCHW GFLOP/s",
         "copy-bandwidth fraction (NCHW / NHWC) or fusion gain"], rows))


if __name__ == "__main__":
    main()
