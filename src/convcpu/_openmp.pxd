# OpenMP shim with a serial fallback: when the compiler had no OpenMP the
# extension still builds, every prange runs serially and these report 1.
cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    #define CONVCPU_OPENMP 1
    #else
    #define CONVCPU_OPENMP 0
    static int omp_get_max_threads(void) { return 1; }
    static int omp_get_thread_num(void) { return 0; }
    #endif
    """
    bint CONVCPU_OPENMP
    int omp_get_max_threads() noexcept nogil
    int omp_get_thread_num() noexcept nogil


# Task hand-out and the end of convcpu's parallel regions (see _region.h):
#     convcpu_region_init(r, n_tasks, n)     # the caller, before the region
#     with parallel(num_threads=n):
#         convcpu_region_enter(r)
#         t = convcpu_region_take(r)
#         while t < n_tasks:
#             ...task t...
#             t = convcpu_region_take(r)
#         convcpu_region_leave(r)
cdef extern from "_region.h" nogil:
    ctypedef struct convcpu_region:
        pass
    int convcpu_region_ranges_get()
    int convcpu_region_ranges_set(int mode)
    void convcpu_region_init(convcpu_region* r, Py_ssize_t n_tasks, int threads)
    void convcpu_region_enter(const convcpu_region* r)
    Py_ssize_t convcpu_region_take(convcpu_region* r)
    void convcpu_region_leave(convcpu_region* r)
