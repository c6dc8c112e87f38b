"""The demo of seed 002: edges of an image by correlation, and a kernel learned
back from (input, output) pairs with convcpu.grad.  Needs matplotlib (the
"demo" extra).  Run as ``python -m convcpu demo [IMAGE] [--out DIR]``."""
import os
import time

import numpy as np

import convcpu
import convcpu.grad

SAMPLE_IMAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "sample.png")
EDGE = np.array([[1.0, -1.0]], np.float32)  # seed 002's finite difference
SOBEL_X = np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], np.float32)
LAPLACIAN = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], np.float32)


def load_grey(path):
    """An image file as a float32 grey image in [0, 1] (RGB(A) by luminance)."""
    from matplotlib import image as mpimg
    data = np.asarray(mpimg.imread(path), dtype=np.float32)
    if data.dtype.kind in "ui" or data.max() > 1.0:
        data = data / 255.0
    if data.ndim == 3:
        data = data[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32)
    if data.ndim != 2 or min(data.shape) < 3:
        raise ValueError(f"{path}: expected a 2-D image of at least 3x3 pixels, got {data.shape}")
    return np.ascontiguousarray(data)


def responses(image):
    """{name: response}: seed 002's edges, Sobel and Laplacian ("same", mirrored borders)."""
    sobel_x = convcpu.correlate2d(image, SOBEL_X, "same", "symm")
    sobel_y = convcpu.correlate2d(image, SOBEL_X.T, "same", "symm")
    return {
        "edges_vertical": convcpu.correlate2d(image, EDGE, "same", "symm"),
        "edges_horizontal": convcpu.correlate2d(image, EDGE.T, "same", "symm"),
        "sobel": np.hypot(sobel_x, sobel_y),
        "laplacian": convcpu.convolve2d(image, LAPLACIAN, "same", "symm"),
    }


def learn_kernel(steps=20, lr=3e-2, seed=0, report=print):
    """Seed 002's experiment: learn the (1, 2) kernel that maps its 6x8 image X
    to Y = corr2d(X, [1, -1]) by gradient descent on the summed squared error,
    the gradient from convcpu.grad.conv2d_weight.  Returns (kernel, losses)."""
    x = np.ones((1, 1, 6, 8), np.float64)
    x[..., 2:6] = 0
    y = convcpu.conv2d(x, EDGE.astype(np.float64)[None, None])
    rng = np.random.default_rng(seed)
    weight = rng.uniform(-1 / np.sqrt(2), 1 / np.sqrt(2), (1, 1, 1, 2))  # PyTorch's init
    losses = []
    for step in range(1, steps + 1):
        residual = convcpu.conv2d(x, weight) - y
        losses.append(float(np.sum(residual ** 2)))
        weight -= lr * convcpu.grad.conv2d_weight(x, weight.shape, 2 * residual)
        report(f"  step {step:2d}  loss {losses[-1]:.6f}  kernel {weight[0, 0, 0].round(4)}")
    return weight[0, 0], losses


def _style(name, data):
    """Colour map and limits: grey for the image, a diverging map centred on 0
    for signed responses, magma for the Sobel magnitude."""
    if name == "image":
        return {"cmap": "gray", "vmin": 0, "vmax": 1}
    limit = float(np.abs(data).max()) or 1.0
    if name == "sobel":
        return {"cmap": "magma", "vmin": 0, "vmax": limit}
    return {"cmap": "seismic", "vmin": -limit, "vmax": limit}


def run(image_path=None, out_dir="convcpu-demo", report=print):
    """Write the PNGs and run the experiment; returns the paths written."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    image_path = image_path or SAMPLE_IMAGE
    os.makedirs(out_dir, exist_ok=True)
    report(f"[1/4] reading {image_path}")
    image = load_grey(image_path)
    report(f"      {image.shape[1]}x{image.shape[0]} pixels, {convcpu.get_num_threads()} threads")
    report("[2/4] correlating: [1, -1], its transpose, Sobel, Laplacian")
    start = time.perf_counter()
    maps = responses(image)
    report(f"      {1e3 * (time.perf_counter() - start):.1f} ms")
    report(f"[3/4] writing PNGs to {os.path.abspath(out_dir)}")
    panels = {"image": image, **maps}
    written = []
    for name, data in panels.items():
        written.append(os.path.join(out_dir, f"{name}.png"))
        plt.imsave(written[-1], data, **_style(name, data))
    figure, axes = plt.subplots(1, len(panels), figsize=(17, 3.6))
    for axis, (name, data) in zip(axes, panels.items()):
        axis.imshow(data, **_style(name, data))
        axis.set_title(name.replace("_", " "))
        axis.axis("off")
    figure.tight_layout()
    written.append(os.path.join(out_dir, "figure.png"))
    figure.savefig(written[-1], dpi=80)
    plt.close(figure)
    for path in written:
        report(f"      {path}")
    report("[4/4] learning seed 002's kernel back from (X, Y) with convcpu.grad")
    kernel, losses = learn_kernel(report=report)
    report(f"      learned {kernel[0].round(4)}, true [ 1. -1.]; final loss {losses[-1]:.2e}")
    return written
