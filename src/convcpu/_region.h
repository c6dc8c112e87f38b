/* How convcpu's parallel regions hand out their tasks and end.
 *
 * Why not a plain `prange`: after a pause (a few ms without a parallel
 * region), GCC's OpenMP workers sleep on a futex.  The calling thread wakes
 * them at the next region, and on a VM (this machine: KVM, 2 vCPUs) Linux
 * often places the woken worker on the caller's own CPU, because the other,
 * idle vCPU is halted by the host and looks busy.  The caller then finishes
 * its share and spins in libgomp's end barrier (GOMP_SPINCOUNT, about 4 ms
 * here) while the worker waits for that very CPU: the first call after a
 * pause took 3.8 ms for 0.14 ms of work, and the next one 2.2 ms, while the
 * worker, now spinning next to the caller, was left there (measured with a
 * plain C `omp parallel`: worker and caller on one CPU, 4-6 ms calls).
 *
 * So tasks are taken dynamically (a thread that runs takes the next task, so
 * a worker that cannot run leaves its share to the others), a worker woken on
 * the caller's CPU moves itself to another CPU of its affinity mask at once
 * (and keeps its mask: it is set to "every CPU but the caller's" and back,
 * which makes the kernel migrate it), and a thread done with the tasks waits
 * for the others with sched_yield() after a short spin, so that a worker
 * sharing its CPU gets to run, before it enters libgomp's end barrier.
 * Nothing of this changes which task computes what: results stay the same
 * for any thread count and any placement.
 *
 * The move is skipped when the user binds threads (OMP_PROC_BIND /
 * OMP_PLACES / GOMP_CPU_AFFINITY: omp_get_proc_bind() says so) and when the
 * mask has no other CPU.
 *
 * Many tasks (CONVCPU_REGION_MIN_RANGE a thread) are cut into one contiguous
 * range per thread, each with its own counter on its own cache line; a
 * thread takes the tasks of its range in order, then those left in the
 * others'.  One shared counter (still used for fewer tasks) dealt the
 * tasks out alternately: neighbouring tasks (the next channel plane, the
 * next block of output channels of the same im2col tile) went to different
 * threads, and every take moved the counter's line between the cores.
 * C harness, 144 depthwise 3x3 planes 56x56, 2 threads: one counter 66.7-
 * 67.4 us, static ranges 60.8-60.9 us. */
#ifndef CONVCPU_REGION_H
#define CONVCPU_REGION_H
#include <Python.h>

#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__linux__)
#include <sched.h>
#define CONVCPU_HAVE_SCHED 1
#else
#define CONVCPU_HAVE_SCHED 0
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CONVCPU_PAUSE() _mm_pause()
#else
#define CONVCPU_PAUSE() ((void)0)
#endif

/* Spins (pause instructions, about 13 ns each here) before a waiting thread
 * starts to yield its CPU: ~25 us, longer than most waits for a last task. */
#define CONVCPU_REGION_SPINS 2000

/* Threads with a range of their own (more threads share them). */
#define CONVCPU_REGION_RANGES 16
/* Ranges only with at least this many tasks a thread: a few tasks of unequal
 * cost (a conv's last pixel tile is smaller) balance better dealt out in
 * turn (3x3 128->128 @28, 4 tasks of 416, 416, 368, 368 pixels, 2 threads:
 * ranges 1.037x the time). */
#define CONVCPU_REGION_MIN_RANGE 8
/* 1: ranges from CONVCPU_REGION_MIN_RANGE tasks a thread on; 0: never (one
 * counter deals every task out in turn); 2: always (tests).  Each extension
 * module has its own (an A/B switch). */
static int convcpu_region_ranges = 1;
static int convcpu_region_ranges_get(void) { return convcpu_region_ranges; }
static int convcpu_region_ranges_set(int mode)
{
    convcpu_region_ranges = mode >= 0 && mode <= 2 ? mode : 1;
    return convcpu_region_ranges;
}

typedef struct {
    Py_ssize_t next; /* the range's next task */
    Py_ssize_t end;  /* the range's end */
    char pad[64 - 2 * sizeof(Py_ssize_t)];
} convcpu_range;

typedef struct {
    convcpu_range ranges[CONVCPU_REGION_RANGES]; /* the first n_ranges in use */
    Py_ssize_t n_tasks;
    int n_ranges;
    int done;       /* threads that found no task left */
    int caller_cpu; /* the calling thread's CPU; -1: do not move workers */
} convcpu_region;

/* The calling thread, before the region of `threads` threads that runs tasks
 * 0 .. n_tasks-1. */
static inline void convcpu_region_init(convcpu_region *r, Py_ssize_t n_tasks, int threads)
{
    int n = threads < CONVCPU_REGION_RANGES ? threads : CONVCPU_REGION_RANGES;
    if (convcpu_region_ranges == 0 || n < 1
        || (convcpu_region_ranges == 1 && n_tasks < (Py_ssize_t)CONVCPU_REGION_MIN_RANGE * threads))
        n = 1;
    for (int k = 0; k < n; k++) {
        r->ranges[k].next = n_tasks * k / n;
        r->ranges[k].end = n_tasks * (k + 1) / n;
    }
    r->n_tasks = n_tasks;
    r->n_ranges = n;
    r->done = 0;
    r->caller_cpu = -1;
#if defined(_OPENMP) && CONVCPU_HAVE_SCHED
    if (omp_get_proc_bind() == omp_proc_bind_false)
        r->caller_cpu = sched_getcpu();
#endif
}

/* Every thread, first thing in the region: a worker woken on the caller's CPU
 * moves to another CPU it may run on. */
static inline void convcpu_region_enter(const convcpu_region *r)
{
#if defined(_OPENMP) && CONVCPU_HAVE_SCHED
    cpu_set_t mask, others;
    if (r->caller_cpu < 0 || omp_get_thread_num() == 0 || sched_getcpu() != r->caller_cpu)
        return;
    if (sched_getaffinity(0, sizeof mask, &mask) != 0)
        return;
    others = mask;
    CPU_CLR(r->caller_cpu, &others);
    if (CPU_COUNT(&others) == 0)
        return;
    if (sched_setaffinity(0, sizeof others, &others) == 0)
        sched_setaffinity(0, sizeof mask, &mask);
#else
    (void)r;
#endif
}

/* The next task of a range, or its end when none is left. */
static inline Py_ssize_t convcpu_range_take(convcpu_range *g)
{
#if defined(__GNUC__) || defined(__clang__)
    if (__atomic_load_n(&g->next, __ATOMIC_RELAXED) >= g->end)
        return g->end; /* (no write to another thread's line) */
    return __atomic_fetch_add(&g->next, 1, __ATOMIC_RELAXED);
#else
    Py_ssize_t t;
#ifdef _OPENMP
#pragma omp critical(convcpu_region)
#endif
    t = g->next < g->end ? g->next++ : g->end;
    return t;
#endif
}

/* The next task for this thread: its own range's next, else the next one
 * left in the others' (the task count: none left). */
static inline Py_ssize_t convcpu_region_take(convcpu_region *r)
{
#ifdef _OPENMP
    const int own = omp_get_thread_num() % r->n_ranges;
#else
    const int own = 0;
#endif
    for (int k = 0; k < r->n_ranges; k++) {
        convcpu_range *g = &r->ranges[(own + k) % r->n_ranges];
        const Py_ssize_t t = convcpu_range_take(g);
        if (t < g->end)
            return t;
    }
    return r->n_tasks;
}

static inline int convcpu_region_done_count(convcpu_region *r, int add)
{
#if defined(__GNUC__) || defined(__clang__)
    return __atomic_add_fetch(&r->done, add, __ATOMIC_ACQ_REL);
#else
    int d;
#ifdef _OPENMP
#pragma omp critical(convcpu_region)
#endif
    d = (r->done += add);
    return d;
#endif
}

/* Every thread, last thing in the region: wait until every thread of the
 * team is done, yielding the CPU after a short spin. */
static inline void convcpu_region_leave(convcpu_region *r)
{
#ifdef _OPENMP
    const int team = omp_get_num_threads();
    long spins = 0;
    convcpu_region_done_count(r, 1);
    while (convcpu_region_done_count(r, 0) < team) {
        if (++spins < CONVCPU_REGION_SPINS) {
            CONVCPU_PAUSE();
        } else {
#if CONVCPU_HAVE_SCHED
            sched_yield();
#endif
        }
    }
#else
    (void)r;
#endif
}

#endif
