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
