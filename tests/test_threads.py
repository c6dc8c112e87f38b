"""Thread settings, determinism across thread counts, concurrent callers (every op's
threads, forked / spawned children: tests/test_reliability.py)."""
import threading
import time

import numpy as np
import pytest

import convcpu
from convcpu import _core, _threads


def _layer(seed=0, channels_last=False):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 32, 23, 29)).astype(np.float32)
    w = rng.standard_normal((48, 32, 3, 3)).astype(np.float32)
    b = rng.standard_normal(48).astype(np.float32)
    if channels_last:
        return np.moveaxis(x, 1, -1).copy(), w.transpose(2, 3, 1, 0).copy(), b, "NHWC"
    return x, w, b, "NCHW"


@pytest.mark.parametrize("channels_last", [False, True])
def test_results_identical_for_any_thread_count(channels_last):
    x, w, b, fmt = _layer(1, channels_last)
    results = [convcpu.conv2d(x, w, b, padding=1, data_format=fmt, num_threads=n)
               for n in (1, 2, 3, 4)]
    for other in results[1:]:
        np.testing.assert_array_equal(results[0], other)
    x1 = np.random.default_rng(2).standard_normal((1, 256, 40)).astype(np.float32)
    w1 = np.random.default_rng(3).standard_normal((128, 256, 3)).astype(np.float32)
    np.testing.assert_array_equal(convcpu.conv1d(x1, w1, num_threads=1),
                                  convcpu.conv1d(x1, w1, num_threads=2))


def test_concurrent_python_threads_match_serial():
    cases = [_layer(seed, channels_last=seed % 2 == 1) for seed in range(8)]
    serial = [convcpu.conv2d(x, w, b, padding=1, data_format=fmt) for x, w, b, fmt in cases]
    results = [None] * len(cases)
    barrier = threading.Barrier(len(cases))

    def work(i):
        x, w, b, fmt = cases[i]
        barrier.wait()
        for _ in range(5):
            results[i] = convcpu.conv2d(x, w, b, padding=1, data_format=fmt)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(cases))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
        assert not t.is_alive()
    for expected, got in zip(serial, results):
        np.testing.assert_array_equal(expected, got)
    # The BLAS limit is reference-counted: with every caller gone it is lifted.
    assert _threads._blas_depth == 0 and _threads._blas_limiter is None


def test_blas_is_single_threaded_inside_calls_from_any_thread():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    seen = {}

    def probe(name):
        with _threads.blas_single_threaded(np.float64):
            seen[name] = [lib["num_threads"] for lib in threadpoolctl.threadpool_info()
                          if lib["user_api"] == "blas"]

    probe("main")
    worker = threading.Thread(target=probe, args=("worker",))
    worker.start()
    worker.join()
    assert seen["main"] and all(n == 1 for n in seen["main"])
    assert seen["worker"] and all(n == 1 for n in seen["worker"])


@pytest.mark.parametrize("backend", ["convcpu", "blas"])
def test_blas_limit_only_where_blas_runs(backend):
    """float32 under convcpu's own GEMM never calls BLAS, so its pool is left
    alone (setting it wakes the pool's spinning threads); float64, and float32
    on SciPy's sgemm, run with BLAS limited to one thread."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    previous = _core.gemm_backend()
    try:
        chosen = _core.gemm_backend(backend)
        with threadpoolctl.threadpool_limits(2, user_api="blas"):
            before = [lib["num_threads"] for lib in threadpoolctl.threadpool_info()
                      if lib["user_api"] == "blas"]
            for dtype in (np.float32, np.float64):
                with _threads.blas_single_threaded(dtype):
                    inside = [lib["num_threads"] for lib in threadpoolctl.threadpool_info()
                              if lib["user_api"] == "blas"]
                if dtype == np.float32 and chosen == "convcpu":
                    assert inside == before
                else:
                    assert inside and all(n == 1 for n in inside)
    finally:
        _core.gemm_backend(previous)


def test_gil_is_released_during_compute():
    """A Python thread keeps running while a convolution computes: its loop
    advances during the call at a rate comparable to its rate during a sleep
    of the same length (with the GIL held it would get one 5 ms switch
    interval at most).  Up to three tries: on this shared machine another
    process (or a pool of spinning BLAS threads left by an earlier test) can
    take the ticker's core for a while, but a held GIL would fail every try."""
    x = np.random.default_rng(4).standard_normal((4, 64, 96, 96)).astype(np.float32)
    w = np.random.default_rng(5).standard_normal((64, 64, 3, 3)).astype(np.float32)
    ticks = [0]
    stop = threading.Event()

    def ticker():
        while not stop.is_set():
            ticks[0] += 1

    t = threading.Thread(target=ticker)
    t.start()
    tries = []
    try:
        for _ in range(3):
            start_ticks, start = ticks[0], time.monotonic()
            convcpu.conv2d(x, w, padding=1, num_threads=1)
            conv_ticks, elapsed = ticks[0] - start_ticks, time.monotonic() - start
            start_ticks = ticks[0]
            time.sleep(elapsed)
            sleep_ticks = ticks[0] - start_ticks
            tries.append((conv_ticks, sleep_ticks, elapsed))
            if conv_ticks > 0.25 * sleep_ticks:
                break
    finally:
        stop.set()
        t.join()
    assert any(c > 0.25 * s for c, s, _ in tries), tries


def test_set_and_get_num_threads(monkeypatch):
    monkeypatch.delenv("CONVCPU_NUM_THREADS", raising=False)
    default = convcpu.get_num_threads()
    assert default >= 1
    try:
        convcpu.set_num_threads(3)
        assert convcpu.get_num_threads() == 3
        monkeypatch.setenv("CONVCPU_NUM_THREADS", "5")
        assert convcpu.get_num_threads() == 3  # the explicit setting wins
        convcpu.set_num_threads(None)
        assert convcpu.get_num_threads() == 5
        # the variable is read once, like OMP_NUM_THREADS, and again on a reset
        monkeypatch.setenv("CONVCPU_NUM_THREADS", "2")
        assert convcpu.get_num_threads() == 5
        convcpu.set_num_threads(None)
        assert convcpu.get_num_threads() == 2
    finally:
        convcpu.set_num_threads(None)
