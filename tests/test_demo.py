"""python -m convcpu demo, and seed 002's learn-a-kernel experiment."""
import os
import subprocess
import sys

import numpy as np
import pytest

import convcpu
from convcpu import demo

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_learn_kernel_reaches_the_edge_detector():
    kernel, losses = demo.learn_kernel(steps=20, report=lambda line: None)
    assert losses[-1] < 1e-3
    assert min(i for i, loss in enumerate(losses) if loss < 1e-3) < 20
    np.testing.assert_allclose(kernel[0], [1.0, -1.0], atol=0.05)
    assert all(b < a for a, b in zip(losses, losses[1:]))  # the loss falls at every step


def test_responses_are_seed002_edges():
    image = np.ones((6, 8), np.float32)
    image[:, 2:6] = 0
    maps = demo.responses(image)
    # "same" with mirrored borders: the valid part is seed 002's output
    np.testing.assert_array_equal(maps["edges_vertical"][:, :7],
                                  convcpu.correlate2d(image, [[1, -1]], "valid"))
    assert np.all(maps["edges_horizontal"] == 0)


@pytest.mark.parametrize("user_image", [False, True])
def test_demo_writes_valid_pngs(tmp_path, user_image):
    pytest.importorskip("matplotlib")
    args = [sys.executable, "-m", "convcpu", "demo", "--out", str(tmp_path / "out")]
    if user_image:
        from matplotlib import pyplot as plt
        rgb = np.random.default_rng(0).random((20, 30, 3))
        plt.imsave(tmp_path / "mine.png", rgb)
        args.insert(4, str(tmp_path / "mine.png"))
    result = subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    names = ["image", "edges_vertical", "edges_horizontal", "sobel", "laplacian", "figure"]
    from matplotlib import image as mpimg
    for name in names:
        path = tmp_path / "out" / f"{name}.png"
        assert path.read_bytes()[:8] == PNG_SIGNATURE
        assert mpimg.imread(path).ndim == 3
        assert str(path) in result.stdout  # it says where the files went
    assert "step 20" in result.stdout and "learned" in result.stdout
    expected_shape = (20, 30) if user_image else (120, 160)
    assert mpimg.imread(tmp_path / "out" / "image.png").shape[:2] == expected_shape


def test_demo_bad_image_is_a_clear_error(tmp_path):
    result = subprocess.run([sys.executable, "-m", "convcpu", "demo", str(tmp_path / "none.png"),
                             "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert "none.png" in result.stderr


def test_sample_image_ships_with_the_package():
    assert os.path.getsize(demo.SAMPLE_IMAGE) < 16 * 1024
    assert demo.load_grey(demo.SAMPLE_IMAGE).shape == (120, 160)


def test_info_names_the_kernel_settings(capsys):
    """python -m convcpu info: versions, threads, and which kernels run."""
    from convcpu import __main__ as cli
    from convcpu import _core, _direct
    cli.info()
    out = capsys.readouterr().out
    assert out.startswith(f"convcpu {convcpu.__version__}")
    assert f"convcpu threads: {convcpu.get_num_threads()}" in out
    assert f"float32 GEMM: {_core.gemm_backend()}" in out
    if _core.gemm_backend() == "convcpu":
        assert f"{_core.implicit_loads()} loads, {_core.implicit_panels()} panels" in out
        assert f"<= 8 columns: {_direct.dwc512_narrow_lanes()} lanes" in out
