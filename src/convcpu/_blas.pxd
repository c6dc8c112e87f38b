# The only place convcpu touches BLAS: SciPy's Fortran BLAS through
# scipy.linalg.cython_blas, so nothing is linked at build time.
from scipy.linalg.cython_blas cimport sgemm, dgemm

# float32 products run on convcpu's own AVX-512 kernels where the CPU has them
# (_gemm.h, which says why); convcpu_sgemm returns 0 when BLAS must do it.
cdef extern from "_gemm.h" nogil:
    int convcpu_sgemm(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K,
                      const float* a, Py_ssize_t rsa, Py_ssize_t csa,
                      const float* b, Py_ssize_t rsb, Py_ssize_t csb,
                      float beta, float* c, Py_ssize_t ldc)
    int convcpu_sgemm_bias(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K,
                           const float* a, Py_ssize_t rsa, Py_ssize_t csa,
                           const float* b, Py_ssize_t rsb, Py_ssize_t csb,
                           const float* bias, float* c, Py_ssize_t ldc)
    int convcpu_sgemm_bias_t(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K,
                             const float* a, Py_ssize_t rsa, Py_ssize_t csa,
                             const float* b, Py_ssize_t rsb, Py_ssize_t csb,
                             const float* bias, float* c, Py_ssize_t ldc, float* ws)
    enum: CONVCPU_SGEMM_T_COLS
    int convcpu_sgemm_t_fills(Py_ssize_t M, Py_ssize_t N)
    int convcpu_gemm_get()
    int convcpu_gemm_set(int own)
    int convcpu_sgemm_panels(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K,
                             const float* a, Py_ssize_t rsa, Py_ssize_t csa,
                             const float* panels, float* c, Py_ssize_t ldc)
    int convcpu_im2col_panels(const float* xg, Py_ssize_t HW, Py_ssize_t W, Py_ssize_t Cg,
                              Py_ssize_t R, Py_ssize_t S, const Py_ssize_t* hmap,
                              Py_ssize_t sh, Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t pad_left,
                              Py_ssize_t Wo, Py_ssize_t p0, Py_ssize_t n, Py_ssize_t nsamp,
                              Py_ssize_t xstride, float* tile, Py_ssize_t j0, int last)
    int convcpu_sconv_implicit(Py_ssize_t M, Py_ssize_t C, Py_ssize_t R, Py_ssize_t S,
                               const float* a, Py_ssize_t lda, const float* x, Py_ssize_t cs,
                               Py_ssize_t PH, Py_ssize_t PW, Py_ssize_t H, Py_ssize_t W,
                               Py_ssize_t Ho, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pad_top,
                               Py_ssize_t pad_left, Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t p0,
                               Py_ssize_t n, float* c, Py_ssize_t ldc, int set,
                               const float* bias, Py_ssize_t lo, Py_ssize_t hi)
    int convcpu_implicit_and_get()
    int convcpu_implicit_and_set(int on)
    int convcpu_implicit_wide_get()
    int convcpu_implicit_wide_set(int on)
    enum: CONVCPU_GEMM_PANEL

ctypedef fused floating:
    float
    double


# BLAS takes 32-bit ints.  A call with a larger dimension is split into
# blocks of at most BLAS_BLOCK rows / columns / reduction terms (later
# reduction blocks accumulate with beta = 1); a leading dimension beyond the
# int range is passed only for blocks one stored column wide, where BLAS
# reads a single column and any leading dimension >= its rows is equivalent.
cdef enum:
    INT_LIMIT = 2147483647
    BLAS_BLOCK = 1073741824


# The own kernels that load straight from the input (convcpu_sconv_implicit,
# _dwc512.h's convcpu_dwc512) mask the image's edges out of their loads, so
# they take zero padding only.
cdef inline bint _zero_padding(const Py_ssize_t* index, Py_ssize_t n, Py_ssize_t pad,
                               Py_ssize_t size) noexcept nogil:
    """Whether an index table (hmap / wmap) of n padded coordinates is zero
    padding: padded q reads input q - pad, or a zero outside [0, size) (not
    reflect / replicate / circular)."""
    cdef Py_ssize_t q, i
    for q in range(n):
        i = q - pad
        if index[q] != (i if 0 <= i < size else -1):
            return False
    return True


cdef inline void _fill_bias(floating* c, Py_ssize_t row_stride, Py_ssize_t col_stride,
                            const floating* bias, Py_ssize_t rows,
                            Py_ssize_t cols) noexcept nogil:
    """c[r*row_stride + j*col_stride] = bias[r] (0 when bias is NULL) for r < rows,
    j < cols: the bias rows a GEMM then adds onto (contiguous rows vectorise)."""
    cdef Py_ssize_t r, j
    cdef floating v
    cdef floating* row
    for r in range(rows):
        v = bias[r] if bias != NULL else 0
        row = c + r * row_stride
        if col_stride == 1:
            for j in range(cols):
                row[j] = v
        else:
            for j in range(cols):
                row[j * col_stride] = v


cdef inline void _gemm_call(char transa, char transb, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                            const floating* a, Py_ssize_t lda, const floating* b, Py_ssize_t ldb,
                            floating beta, floating* c, Py_ssize_t ldc) noexcept nogil:
    cdef int im = <int>m, in_ = <int>n, ik = <int>k
    cdef int ilda = <int>lda, ildb = <int>ldb, ildc = <int>ldc
    cdef floating one = 1
    if floating is float:
        sgemm(&transa, &transb, &im, &in_, &ik, &one, <float*>a, &ilda,
              <float*>b, &ildb, &beta, c, &ildc)
    else:
        dgemm(&transa, &transb, &im, &in_, &ik, &one, <double*>a, &ilda,
              <double*>b, &ildb, &beta, c, &ildc)


cdef inline Py_ssize_t _block(Py_ssize_t ld, bint indexes_columns) noexcept nogil:
    """The block length along a dimension: 1 when it indexes the stored columns
    of a matrix whose leading dimension overflows an int, else BLAS_BLOCK."""
    return 1 if (indexes_columns and ld > INT_LIMIT) else BLAS_BLOCK


cdef inline Py_ssize_t _ld(Py_ssize_t ld, Py_ssize_t rows) noexcept nogil:
    return ld if ld <= INT_LIMIT else (rows if rows > 1 else 1)


cdef inline void gemm_trans(char transa, char transb, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                            const floating* a, Py_ssize_t lda,
                            const floating* b, Py_ssize_t ldb,
                            floating beta, floating* c, Py_ssize_t ldc) noexcept nogil:
    """C[m, n] = op(A) @ op(B) + beta * C, column-major; op is 'N' (as stored)
    or 'T' (transposed): op(A) is m x k, op(B) k x n.  Any sizes: dimensions
    beyond the 32-bit BLAS limit are split into blocks (see above)."""
    cdef bint ta = transa == c'T', tb = transb == c'T'
    cdef Py_ssize_t mb, nb, kb, i0, j0, l0, mi, nj, kl
    cdef const floating* ap
    cdef const floating* bp
    # Column-major C (m x n) is row-major C' (n x m) = op(B)^T op(A)^T.
    if floating is float:
        if convcpu_sgemm(n, m, k, b, 1 if tb else ldb, ldb if tb else 1,
                         a, 1 if ta else lda, lda if ta else 1, beta, c, ldc):
            return
    if (m <= INT_LIMIT and n <= INT_LIMIT and k <= INT_LIMIT and lda <= INT_LIMIT
            and ldb <= INT_LIMIT and ldc <= INT_LIMIT):
        _gemm_call(transa, transb, m, n, k, a, lda, b, ldb, beta, c, ldc)
        return
    # A's stored columns are indexed by l ('N') or i ('T'); B's by j ('N') or
    # l ('T'); C's by j.
    mb = _block(lda, ta)
    kb = min(_block(lda, not ta), _block(ldb, tb))
    nb = min(_block(ldb, not tb), _block(ldc, True))
    i0 = 0
    while i0 < m:
        mi = min(mb, m - i0)
        j0 = 0
        while j0 < n:
            nj = min(nb, n - j0)
            l0 = 0
            while True:  # k == 0 still scales C by beta once
                kl = min(kb, k - l0)
                ap = a + (l0 + i0 * lda if ta else i0 + l0 * lda)
                bp = b + (j0 + l0 * ldb if tb else l0 + j0 * ldb)
                _gemm_call(transa, transb, mi, nj, kl, ap, _ld(lda, kl if ta else mi),
                           bp, _ld(ldb, nj if tb else kl), beta if l0 == 0 else 1,
                           c + i0 + j0 * ldc, _ld(ldc, mi))
                l0 += kl
                if l0 >= k:
                    break
            j0 += nj
        i0 += mi


cdef inline void gemm_colmajor(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                               const floating* a, Py_ssize_t lda,
                               const floating* b, Py_ssize_t ldb,
                               floating beta, floating* c, Py_ssize_t ldc) noexcept nogil:
    """C[m, n] = A[m, k] @ B[k, n] + beta * C, all column-major, no transposes.

    Every leading dimension >= max(1, rows) as BLAS requires.
    """
    gemm_trans(c'N', c'N', m, n, k, a, lda, b, ldb, beta, c, ldc)
