# The only place convcpu touches BLAS: SciPy's Fortran BLAS through
# scipy.linalg.cython_blas, so nothing is linked at build time.
from scipy.linalg.cython_blas cimport sgemm, dgemm

ctypedef fused floating:
    float
    double


cdef inline void gemm_trans(char transa, char transb, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                            const floating* a, Py_ssize_t lda,
                            const floating* b, Py_ssize_t ldb,
                            floating beta, floating* c, Py_ssize_t ldc) noexcept nogil:
    """C[m, n] = op(A) @ op(B) + beta * C, column-major; op is 'N' (as stored)
    or 'T' (transposed): op(A) is m x k, op(B) k x n."""
    cdef int im = <int>m, in_ = <int>n, ik = <int>k
    cdef int ilda = <int>lda, ildb = <int>ldb, ildc = <int>ldc
    cdef floating one = 1
    if floating is float:
        sgemm(&transa, &transb, &im, &in_, &ik, &one, <float*>a, &ilda,
              <float*>b, &ildb, &beta, c, &ildc)
    else:
        dgemm(&transa, &transb, &im, &in_, &ik, &one, <double*>a, &ilda,
              <double*>b, &ildb, &beta, c, &ildc)


cdef inline void gemm_colmajor(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                               const floating* a, Py_ssize_t lda,
                               const floating* b, Py_ssize_t ldb,
                               floating beta, floating* c, Py_ssize_t ldc) noexcept nogil:
    """C[m, n] = A[m, k] @ B[k, n] + beta * C, all column-major, no transposes.

    Callers keep every dimension below 2**31 (the Python layer checks it), and
    every leading dimension >= max(1, rows) as BLAS requires.
    """
    gemm_trans(c'N', c'N', m, n, k, a, lda, b, ldb, beta, c, ldc)
