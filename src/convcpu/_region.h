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
 * So tasks are taken from a shared counter (a dynamic schedule: a thread that
 * runs takes the next task, so a worker that cannot run leaves its share to
 * the others), a worker woken on the caller's CPU moves itself to another CPU
 * of its affinity mask at once (and keeps its mask: it is set to "every CPU
 * but the caller's" and back, which makes the kernel migrate it), and a
 * thread done with the tasks waits for the others with sched_yield() after a
 * short spin, so that a worker sharing its CPU gets to run, before it enters
 * libgomp's end barrier.  Nothing of this changes which task computes what:
 * results stay the same for any thread count and any placement.
 *
 * The move is skipped when the user binds threads (OMP_PROC_BIND /
 * OMP_PLACES / GOMP_CPU_AFFINITY: omp_get_proc_bind() says so) and when the
 * mask has no other CPU. */
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

typedef struct {
    Py_ssize_t next;  /* the next task to hand out */
    int done;         /* threads that found no task left */
    int caller_cpu;   /* the calling thread's CPU; -1: do not move workers */
} convcpu_region;

/* The calling thread, before the region. */
static inline void convcpu_region_init(convcpu_region *r)
{
    r->next = 0;
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

/* The next task for this thread (tasks >= the task count mean: none left). */
static inline Py_ssize_t convcpu_region_take(convcpu_region *r)
{
#if defined(__GNUC__) || defined(__clang__)
    return __atomic_fetch_add(&r->next, 1, __ATOMIC_RELAXED);
#else
    Py_ssize_t t;
#ifdef _OPENMP
#pragma omp critical(convcpu_region)
#endif
    t = r->next++;
    return t;
#endif
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
