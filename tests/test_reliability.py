"""Every public op (tests/opinfo.py) under threads, processes, interrupts and
long loops: the same bits for 1, 2 and 4 threads and from many Python threads
at once, complete in forked and spawned children, usable after a
KeyboardInterrupt, and flat RSS over 10,000 calls."""
import multiprocessing
import os
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
from opinfo import OPS, example

import convcpu
from convcpu import _core, _threads

IDS = [op.name for op in OPS]


def _large(op):
    """Changes to an op's typical case that give several tiles and tasks."""
    if op.family == "signal":
        return dict(in1=(120, 97))
    if "1d" in op.name:
        return dict(sizes=(301,), batch=3)
    return dict(sizes=(61, 47), batch=3)


def _cases():
    return [example(op.name, 11, dtype, **changes) for op in OPS
            for dtype in (np.float32, np.float64) for changes in ({}, _large(op))]


@pytest.mark.parametrize("op", OPS, ids=IDS)
def test_same_bits_for_1_2_and_4_threads(op):
    for dtype in (np.float32, np.float64):
        for changes in ({}, _large(op)):
            case = example(op.name, 12, dtype, **changes)
            one = case.call(num_threads=1)
            for n in (2, 4):
                np.testing.assert_array_equal(case.call(num_threads=n), one, err_msg=str(n))


@pytest.fixture
def region_schedule():
    """Restores the parallel regions' task schedule after the test."""
    before = _threads.region_schedule()
    yield _threads.region_schedule
    _threads.region_schedule(before)


@pytest.mark.parametrize("op", OPS, ids=IDS)
def test_same_bits_for_either_region_schedule(op, region_schedule):
    """A parallel region hands each thread a contiguous range of tasks (then
    what is left of the others'), or deals them out from one counter: every
    task is run once either way, by whichever thread, so 2, 3 (ranges of
    unequal length) and 5 threads (more than some ops' tasks) give the
    serial bits under each schedule ("ranges", the default, takes ranges
    only with many tasks: "always ranges" runs them on these small cases)."""
    for dtype in (np.float32, np.float64):
        for changes in ({}, _large(op)):
            case = example(op.name, 14, dtype, **changes)
            one = case.call(num_threads=1)
            for schedule in ("ranges", "shared", "always ranges"):
                assert region_schedule(schedule) == schedule
                for n in (2, 3, 5):
                    np.testing.assert_array_equal(case.call(num_threads=n), one,
                                                  err_msg=f"{schedule}, {n} threads")


def test_region_schedule_names(region_schedule):
    from convcpu import _direct
    assert region_schedule() == "ranges"  # the default
    assert region_schedule("shared") == "shared"
    assert _core._region_mode() == _direct._region_mode() == 0  # both modules
    with pytest.raises(ValueError, match="region schedule"):
        region_schedule("static")


@pytest.mark.parametrize("op", OPS, ids=IDS)
def test_same_bits_on_a_machine_with_more_or_fewer_cpus(op, monkeypatch):
    """Plans split work into more tasks on a machine with more CPUs
    (_core.MIN_TASKS, from the process's CPU mask at import).  On convcpu's
    own float32 kernels no split changes a sum's order, so 1, 2 or 32 CPUs
    (or a process pinned to one) give the same bits; float64 runs BLAS, whose
    rounding may follow the block shapes (README, Threads): equal to a few ulp."""
    cases = [example(op.name, 13, dtype, **changes)
             for dtype in (np.float32, np.float64) for changes in ({}, _large(op))]
    results = {}
    for cpus in (1, 2, 32):
        monkeypatch.setattr(_core, "MIN_TASKS", 2 * cpus)
        results[cpus] = [case.call(num_threads=2) for case in cases]
    for cpus in (2, 32):
        for a, b in zip(results[cpus], results[1]):
            if a.dtype == np.float32 and _core.gemm_backend() == "convcpu":
                np.testing.assert_array_equal(a, b, err_msg=str(cpus))
            else:
                scale = float(np.abs(b).max(initial=1.0))
                np.testing.assert_allclose(a, b, rtol=0, atol=8 * np.finfo(b.dtype).eps * scale,
                                           err_msg=str(cpus))


def test_many_python_threads_calling_every_op_match_serial():
    cases = _cases()
    serial = [case.call() for case in cases]
    workers = 8
    results = [[None] * len(cases) for _ in range(workers)]
    errors = []
    barrier = threading.Barrier(workers)

    def work(k):
        try:
            barrier.wait()
            order = np.random.default_rng(k).permutation(len(cases))
            for _ in range(2):
                for i in order:
                    results[k][i] = cases[i].call(num_threads=1 + k % 3)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
        assert not t.is_alive()
    assert not errors, errors
    for k in range(workers):
        for i, expected in enumerate(serial):
            np.testing.assert_array_equal(results[k][i], expected, err_msg=f"{k} {i}")
    assert _threads._blas_depth == 0 and _threads._blas_limiter is None


def _every_op(queue):
    queue.put([case.call(num_threads=2) for case in _cases()])


def _in_child(method):
    ctx = multiprocessing.get_context(method)
    queue = ctx.Queue()
    child = ctx.Process(target=_every_op, args=(queue,))
    child.start()
    got = queue.get(timeout=300)
    child.join(timeout=60)
    assert child.exitcode == 0
    return got


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_child_processes_complete_every_op(method):
    if method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"no {method} here")
    expected = [case.call(num_threads=2) for case in _cases()]  # the parent's pool exists
    got = _in_child(method)
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)


def _thread_masks():
    """{thread id: the CPUs it may run on} for this process's threads."""
    masks = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            masks[int(tid)] = os.sched_getaffinity(int(tid))
        except OSError:  # the thread has ended
            pass
    return masks


def _placed(queue, pin, min_tasks):
    # The parent's plans (a pinned child would count fewer CPUs: that case
    # is test_same_bits_on_a_machine_with_more_or_fewer_cpus).
    _core.MIN_TASKS = min_tasks
    if pin:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    cases = _cases()
    first = [case.call(num_threads=2) for case in cases]  # the pool starts here
    before = _thread_masks()
    again = []
    for case in cases:
        time.sleep(0.01)  # long enough for the pool's workers to go to sleep
        again.append(case.call(num_threads=2))
    queue.put((first, again, before, _thread_masks()))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux thread affinity")
@pytest.mark.parametrize("placement", ["free", "one cpu", "OMP_PROC_BIND"])
def test_workers_woken_anywhere_give_the_same_bits(placement, monkeypatch):
    """Each region's tasks go to whichever thread runs (src/convcpu/_region.h):
    a worker woken on the caller's CPU moves to another CPU of its mask (and
    keeps its mask), and one that cannot move (a process pinned to one CPU,
    every thread on it) leaves its tasks to the caller, who yields the CPU
    at the end.  Calls after pauses, which wake the workers, give the bits of
    one thread, and no thread's CPU mask changes; threads the user binds
    (OMP_PROC_BIND) are not moved."""
    if placement == "OMP_PROC_BIND":
        monkeypatch.setenv("OMP_PROC_BIND", "close")
    expected = [case.call(num_threads=1) for case in _cases()]
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=_placed, args=(queue, placement == "one cpu", _core.MIN_TASKS))
    child.start()
    first, again, before, after = queue.get(timeout=300)
    child.join(timeout=60)
    assert child.exitcode == 0
    for got in (first, again):
        assert len(got) == len(expected)
        for a, b in zip(got, expected):
            np.testing.assert_array_equal(a, b)
    assert len(before) > 1  # the caller and its pool
    assert {tid: before[tid] for tid in after if tid in before} == \
        {tid: after[tid] for tid in after if tid in before}


INTERRUPT = textwrap.dedent("""
    import os, signal, sys, threading, time
    import numpy as np
    sys.path.insert(0, sys.argv[2])
    from opinfo import example
    import convcpu
    from convcpu import _threads

    name = sys.argv[1]
    long = {"conv2d": dict(sizes=(700, 700), cin=32, cout=32, batch=2, groups=1),
            "depthwise_conv2d": dict(sizes=(1500, 1500), cin=32, batch=2),
            "conv_transpose2d": dict(sizes=(300, 300), cin=32, cout=32, batch=2, groups=1),
            "deform_conv2d": dict(sizes=(300, 300), cin=32, cout=32, batch=2, groups=1),
            "correlate2d": dict(in1=(4000, 4000), in2=(15, 15)),
            "grad.conv2d_weight": dict(sizes=(700, 700), cin=32, cout=32, batch=2, groups=1)}
    small = example(name, 1)
    expected = small.call()
    case = example(name, 2, **long[name])
    start = time.monotonic()
    case.call(num_threads=1)
    alone = time.monotonic() - start
    threading.Timer(alone / 4, os.kill, (os.getpid(), signal.SIGINT)).start()
    try:
        case.call(num_threads=2)
        time.sleep(alone)  # the handler runs at the latest here
    except KeyboardInterrupt:
        pass
    else:
        raise SystemExit("no KeyboardInterrupt")
    # Usable afterwards: the BLAS limit lifted, the same answers on any threads.
    assert _threads._blas_depth == 0 and _threads._blas_limiter is None
    for n in (1, 2):
        np.testing.assert_array_equal(small.call(num_threads=n), expected)
    print("ok", round(alone, 2))
""")


@pytest.mark.skipif(not hasattr(os, "kill") or sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("name", ["conv2d", "depthwise_conv2d", "conv_transpose2d",
                                  "deform_conv2d", "correlate2d", "grad.conv2d_weight"])
def test_keyboard_interrupt_during_a_long_call_leaves_the_process_usable(name):
    result = subprocess.run([sys.executable, "-c", INTERRUPT, name, os.path.dirname(__file__)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0 and result.stdout.startswith("ok"), result.stderr[-3000:]


LOOP = textwrap.dedent("""
    import sys
    import numpy as np
    sys.path.insert(0, sys.argv[2])
    from opinfo import example
    import convcpu

    def rss():
        with open("/proc/self/status") as handle:
            return next(int(l.split()[1]) for l in handle if l.startswith("VmRSS")) * 1024

    name, calls = sys.argv[1], int(sys.argv[3])
    if name == "errors":  # the error paths: a bad call, then a good one
        case = example("conv2d", 0)
        bad = case.replaced(1, case.get(1)[:, :1])
        def call():
            try:
                bad.call()
            except ValueError:
                pass
            return case.call()
    else:
        case = example(name, 0)
        call = lambda: case.call(num_threads=2)
    for _ in range(2000):  # warm-up: the allocator arenas of every thread settle
        call()
    before = rss()
    for _ in range(calls):
        call()
    print(rss() - before)
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
@pytest.mark.parametrize("name", IDS + ["errors"])
def test_rss_stays_flat_over_10000_calls(name):
    """After a warm-up of 2,000 calls, 10,000 more grow RSS by less than 256 KB:
    a leak of 26 bytes per call would show.  (Measured: a one-time growth of
    0.2-0.4 MB within the first calls, then flat; 40,000 calls grow no more
    than 2,000.)"""
    result = subprocess.run([sys.executable, "-c", LOOP, name, os.path.dirname(__file__),
                             "10000"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    growth = int(result.stdout)
    assert growth < 256 * 1024, growth


def test_library_setting_and_explicit_threads_agree():
    case = example("conv2d", 13, **_large(OPS[1]))
    try:
        convcpu.set_num_threads(3)
        via_setting = case.call()
    finally:
        convcpu.set_num_threads(None)
    np.testing.assert_array_equal(via_setting, case.call(num_threads=3))


PLANS = textwrap.dedent("""
    from convcpu import _core

    def busiest_ok(batch, spt, per_group):
        # the samples of the busiest core, tasks dealt in order to the least
        # loaded: no more than with the groups made even
        def busiest(size):
            loads = [0] * _core.CORES
            for n0 in range(0, batch, size):
                for _ in range(per_group):
                    loads[loads.index(min(loads))] += min(size, batch - n0)
            return max(loads)
        even = -(-batch // -(-batch // spt))
        assert busiest(spt) <= busiest(even), (batch, spt, per_group)

    for min_tasks in (2, 4, 6, 8, 12, 16, 32, 64):
        _core.MIN_TASKS = min_tasks
        for batch in (1, 2, 3, 4, 5, 7, 8, 16, 33):
            for pixels in (1, 15, 26, 49, 196, 3136):
                for channels in (1, 8, 32, 64, 256):
                    for own_panels in (False, True):
                        spt, ptile, kblock, _ = _core.plan_tiles(batch, 1, pixels, channels,
                                                                 576, 4, False, False, own_panels)
                        assert 1 <= spt <= batch and 1 <= ptile <= pixels, (batch, pixels)
                        assert 1 <= kblock <= channels, (batch, pixels, channels)
                        busiest_ok(batch, spt, -(-pixels // ptile) * -(-channels // kblock))
                    # the implicit convolution's plan: whole panels, every pixel
                    spt, ptile, kblock = _core.plan_implicit(batch, 1, pixels, channels)
                    assert spt == 1 and 1 <= kblock <= channels, (batch, pixels, channels)
                    assert ptile == pixels or (ptile % 32 == 0 and ptile < pixels), ptile
                    tasks = batch * -(-pixels // ptile) * -(-channels // kblock)
                    assert tasks >= min(min_tasks, batch * -(-pixels // 32)
                                        * max(1, channels // 48)), (batch, pixels, channels)
                    # small images gathered whole: every image, every channel
                    spt, ptile, kblock = _core.plan_gathered(batch, 1, pixels, channels, 4096)
                    assert 1 <= spt <= batch and ptile == pixels, (batch, pixels, channels)
                    assert 1 <= kblock <= channels, (batch, pixels, channels)
                    busiest_ok(batch, spt, -(-channels // kblock))
    # sample groups as even as one size allows when that unloads the busiest
    # core: 16 samples of 49 pixels in 4 (not 5, 5, 5, 1); 6 in 5, 1 with 2
    # tasks a group (each core 6 samples either way)
    _core.CORES, _core.MIN_TASKS = 2, 4
    assert _core.plan_gathered(16, 1, 49, 128, 128 * 81 * 4)[0] == 4
    assert _core.plan_gathered(6, 1, 49, 256, 256 * 49 * 4)[0] == 5
    # NCHW float32 on the own GEMM: one task a core when the busiest core
    # then runs fewer 32-column panels (conv1d batch 32 L15: 2 tiles of 16
    # samples, 6.5 panels each, not 4 of 8 at 3.5); else the plan stays
    assert _core.plan_tiles(32, 1, 13, 128, 768, 4, False, False)[0] == 8
    assert _core.plan_tiles(32, 1, 13, 128, 768, 4, False, False, True)[0] == 16
    assert (_core.plan_tiles(8, 1, 784, 128, 1152, 4, False, False, True)
            == _core.plan_tiles(8, 1, 784, 128, 1152, 4, False, False))
    _core.MIN_TASKS = 2  # one task a core: 16 as 8 + 8, not 9 + 7; 6 as 3 + 3
    assert _core.plan_tiles(16, 1, 49, 128, 1152, 4, False, True)[0] == 8
    assert _core.plan_gathered(6, 1, 49, 256, 256 * 49 * 4)[0] == 3
    print("ok")
""")


def test_tile_plans_end_whatever_the_cpu_count():
    """The tile planner splits until there are MIN_TASKS (2 per CPU) tasks:
    every split must make progress.  4 samples gathered 2 per tile, on a
    machine with 4 CPUs, once split into ceil(4 / 3) = 2 per tile again,
    forever (a hang in any small-batch conv2d there).  Shapes x CPU counts,
    in a child with a time limit; the implicit convolution's planners too."""
    result = subprocess.run([sys.executable, "-c", PLANS], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and result.stdout.startswith("ok"), result.stderr[-3000:]
