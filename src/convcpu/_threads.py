"""Thread count, the BLAS thread limit and fork handling.

The thread count is resolved once per call here, in Python; the kernels only
receive it.  Inside convcpu's OpenMP regions BLAS must run single-threaded
(each OpenMP thread calls GEMM on its own tile), so every kernel call is
wrapped in `blas_single_threaded(dtype)`.

threadpoolctl finds the BLAS libraries, but its limits are not used for
OpenBLAS: threadpoolctl (3.8) lets only one Python thread, the first that set
a limit, change OpenBLAS's process-wide setting, and silently ignores the
others, so a convcpu call from a worker thread would run a multi-threaded
OpenBLAS inside every OpenMP thread (seen here).  convcpu calls OpenBLAS's
own get/set functions instead, reference-counted across concurrent calls.

Fork: GCC's libgomp keeps its thread pool across fork(), so a child that
enters a parallel region after its parent did hangs forever.  After a fork
convcpu runs the child's kernels without OpenMP (serially): slower, never hung.
"""
import contextlib
import ctypes
import os
import threading

import numpy as np
from threadpoolctl import ThreadpoolController

from convcpu import _core, _geometry

_lock = threading.Lock()
_library_setting = None
_in_forked_child = False
_controller = None
_blas_depth = 0
_blas_limiter = None


def _mark_forked_child():
    global _in_forked_child, _lock, _blas_depth, _blas_limiter, _controller
    _in_forked_child = True
    # The parent's lock and counters may have been held by a thread that does
    # not exist in the child: start afresh.
    _lock = threading.Lock()
    _blas_depth = 0
    _blas_limiter = None
    _controller = None


os.register_at_fork(after_in_child=_mark_forked_child)


def _available_cores():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def _check_count(n, name):
    n = _geometry._as_int(n, name)
    if n < 1:
        raise ValueError(f"{name} must be >= 1, got {n}")
    return n


_UNREAD = object()
_environment_setting = _UNREAD  # CONVCPU_NUM_THREADS as read: an int, None or _UNREAD


def _environment_threads():
    """CONVCPU_NUM_THREADS, read at the first call that needs it and again
    after `set_num_threads(None)` (as OpenMP reads OMP_NUM_THREADS once):
    reading os.environ took 1.2 us of a call's 2.7 us thread count, and a
    depthwise layer takes 90 us.  A bad value is not kept: every call raises."""
    global _environment_setting
    if _environment_setting is _UNREAD:
        env = os.environ.get("CONVCPU_NUM_THREADS")
        value = None
        if env:
            try:
                value = int(env)
            except ValueError:
                raise ValueError(
                    f"CONVCPU_NUM_THREADS must be an integer >= 1, got {env!r}") from None
            value = _check_count(value, "CONVCPU_NUM_THREADS")
        _environment_setting = value
    return _environment_setting


def _default_threads():
    env = _environment_threads()
    if env is not None:
        return env
    # the usable cores are counted on every call (0.5 us): a process may be
    # pinned to fewer after its first convolution
    return max(1, min(_core.openmp_max_threads(), _available_cores()))


def set_num_threads(n):
    """Set the library-wide thread count.  None restores the default:
    CONVCPU_NUM_THREADS (read again now), else the OpenMP default capped by
    the usable cores."""
    global _library_setting, _environment_setting
    if n is None:
        _library_setting = None
        _environment_setting = _UNREAD
    else:
        _library_setting = _check_count(n, "n")


def get_num_threads():
    """The thread count a call with num_threads=None uses."""
    return _library_setting if _library_setting is not None else _default_threads()


def resolve(num_threads):
    """(threads, use_openmp) for one call."""
    n = get_num_threads() if num_threads is None else _check_count(num_threads, "num_threads")
    if _in_forked_child or not _core.HAVE_OPENMP:
        return 1, False
    return n, True


# convcpu_region_ranges (src/convcpu/_region.h) 0, 1, 2
REGION_SCHEDULES = ("shared", "ranges", "always ranges")


def region_schedule(name=None):
    """How the parallel regions of every extension module hand out their
    tasks: "ranges" (the default: with at least 8 tasks a thread, a
    contiguous range per thread, then what is left of the others'; fewer are
    dealt out in turn by one counter), "shared" (always one counter) or
    "always ranges".  The same results either way.  With `name`, select it
    first; not thread-safe: for tests and benchmarks, between calls."""
    from convcpu import _direct
    if name is not None:
        if name not in REGION_SCHEDULES:
            raise ValueError(f"region schedule must be one of {REGION_SCHEDULES}, got {name!r}")
        mode = REGION_SCHEDULES.index(name)
        _direct._region_mode(mode)
        _core._region_mode(mode)
    return REGION_SCHEDULES[_core._region_mode()]


def _openblas_functions(filepath):
    """(get, set) thread-count functions of the OpenBLAS at filepath, or None."""
    try:
        dll = ctypes.CDLL(filepath)
    except OSError:
        return None
    for prefix, suffix in (("", ""), ("scipy_", ""), ("scipy_", "64_")):
        get = getattr(dll, f"{prefix}openblas_get_num_threads{suffix}", None)
        set_ = getattr(dll, f"{prefix}openblas_set_num_threads{suffix}", None)
        if get is not None and set_ is not None:
            return get, set_
    return None


def _blas_controller():
    """[(get_num_threads, set_num_threads)] for each loaded BLAS (cached)."""
    global _controller
    if _controller is None:
        functions = []
        for lib in ThreadpoolController().select(user_api="blas").lib_controllers:
            found = None
            if lib.internal_api == "openblas" and lib.info().get("threading_layer") != "openmp":
                found = _openblas_functions(lib.filepath)
            functions.append(found or (lib.get_num_threads, lib.set_num_threads))
        _controller = functions
    return _controller


def blas_single_threaded(dtype):
    """Limit BLAS to one thread while a convcpu kernel of `dtype` runs; a
    no-op for float32 while convcpu's own GEMM is on (`_core.gemm_backend()`),
    which then does every float32 product itself.

    The limit is not free: setting OpenBLAS's thread count wakes its thread
    pool, which then spins on the cores the kernel runs on (measured: 40% of a
    loop of bare limits, 7% of a U-Net transposed conv).  Should the own GEMM's
    32 KB panel buffer of a thread not be had, that product goes to BLAS
    without the limit: the same result, possibly run by more threads.
    """
    if dtype == np.float32 and _core.gemm_backend() == "convcpu":
        return contextlib.nullcontext()
    return _blas_limit()


@contextlib.contextmanager
def _blas_limit():
    """Reference-counted so that concurrent calls from many Python threads do not
    restore the user's setting while another call is still computing."""
    global _blas_depth, _blas_limiter
    with _lock:
        if _blas_depth == 0:
            functions = _blas_controller()
            _blas_limiter = [(set_, get()) for get, set_ in functions]
            for set_, _ in _blas_limiter:
                set_(1)
        _blas_depth += 1
    try:
        yield
    finally:
        with _lock:
            _blas_depth -= 1
            if _blas_depth == 0 and _blas_limiter is not None:
                for set_, original in _blas_limiter:
                    if original is not None and original >= 1:
                        set_(original)
                _blas_limiter = None
