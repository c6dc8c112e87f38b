"""Side-by-side timing: every contender of a case runs in the same process,
interleaved round by round, and is summarised by its median.  The machine is
shared and noisy, so only ratios measured this way are trusted."""
import argparse
import statistics
import time

# After a call, OpenMP (libgomp), ONNX Runtime and OpenBLAS workers spin for a
# while before sleeping (OpenBLAS's for up to ~2**28 cycles); on a 2-core
# machine a spinning pool of one contender steals the cores of the next
# (measured: a 2-thread sgemm just before convcpu made it 1.6x slower).  A
# pause (not timed) before each contender's turn lets every pool go idle, so
# each library runs in its default configuration.
SETTLE_SECONDS = 0.15


# After the pause the first calls of any library run slow on this VM (threads
# and caches waking up, the core ramping: measured 0.75 -> 0.50 -> 0.37 ->
# 0.34 ms for the same 0.34 ms call), so each turn starts with untimed calls
# for at least WARM_SECONDS (`--warm-ms`).  The longer `--warm-ms 20`
# measures the steady state of a network's layer after layer.  (Once, 2 ms
# made convcpu's direct kernels look 1.5-1.7x slower: its OpenMP worker woke
# on the caller's CPU after the pause; src/convcpu/_region.h handles that
# now, docs/BENCHMARKS.md.)
WARM_SECONDS = 0.002


def interleaved(contenders, rounds=15, warmup=2, burst=3):
    """Time each callable of {name: fn} in rounds, interleaved: in every round
    each contender runs untimed for WARM_SECONDS (at least once: its threads
    wake up) then `burst` timed times.  Returns {name: median seconds over all
    timed calls}.
    """
    for fn in contenders.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, fn in contenders.items():
            time.sleep(SETTLE_SECONDS)
            start = time.perf_counter()
            fn()
            while time.perf_counter() - start < WARM_SECONDS:
                fn()
            for _ in range(burst):
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(values) for name, values in times.items()}


def markdown_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def geomean(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    product = 1.0
    for v in values:
        product *= v
    return product ** (1.0 / len(values))


def environment_line(threads):
    """One line naming what the figures were measured on."""
    import os
    import platform

    import threadpoolctl
    blas = [f"{lib['internal_api']} {lib.get('version')} ({lib.get('architecture')})"
            for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"]
    coretype = os.environ.get("OPENBLAS_CORETYPE", "unset")
    return (f"{platform.machine()}, {os.cpu_count()} cores, {threads} threads; BLAS: "
            f"{'; '.join(blas)}; OPENBLAS_CORETYPE={coretype}; "
            f"warm-up {WARM_SECONDS * 1e3:g} ms per turn")


def arguments(doc, argv=None, rounds=15, batch=False, only=False):
    """The command line every bench script takes (--threads, --rounds, and
    --batch / --only where it has them), parsed; SciPy's BLAS loaded so that
    the environment line printed here lists it."""
    global WARM_SECONDS
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--warm-ms", type=float, default=WARM_SECONDS * 1e3,
                        help="untimed calls of each contender's turn, at least this long")
    if batch:
        parser.add_argument("--batch", type=int, default=1)
    if only:
        parser.add_argument("--only", default=None, help="substring of the layer names to run")
    args = parser.parse_args(argv)
    WARM_SECONDS = args.warm_ms / 1e3
    import scipy.linalg  # noqa: F401
    print(environment_line(args.threads), flush=True)
    return args
