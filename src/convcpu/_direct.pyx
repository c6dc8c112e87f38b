# Direct kernels: where a GEMM is the wrong tool.  2-D stencils (correlate2d /
# convolve2d): bands of output rows in parallel, each gathered with its
# boundary (fill / wrap / symm) into a per-thread tile and then swept tap by
# tap with vector loops (_kernels.h).
from libc.stdlib cimport malloc, free
from cython.parallel cimport prange, parallel

cimport numpy as cnp

from convcpu._openmp cimport CONVCPU_OPENMP

cnp.import_array()

cdef extern from "_kernels.h" nogil:
    void convcpu_stencil_f32(const float* img, Py_ssize_t ld, const Py_ssize_t* rowmap,
                             const Py_ssize_t* colmap, Py_ssize_t col_lo, Py_ssize_t col_hi,
                             Py_ssize_t col_off, Py_ssize_t Wo, const float* k, Py_ssize_t R,
                             Py_ssize_t S, float fill, float* out, Py_ssize_t row0,
                             Py_ssize_t nrows, float* ws)
    void convcpu_stencil_f64(const double* img, Py_ssize_t ld, const Py_ssize_t* rowmap,
                             const Py_ssize_t* colmap, Py_ssize_t col_lo, Py_ssize_t col_hi,
                             Py_ssize_t col_off, Py_ssize_t Wo, const double* k, Py_ssize_t R,
                             Py_ssize_t S, double fill, double* out, Py_ssize_t row0,
                             Py_ssize_t nrows, double* ws)

# A band's gathered tile stays within L2 (per thread).
STENCIL_TILE_BYTES = 256 * 1024


cdef inline void _stencil_band(bint single, const void* img, Py_ssize_t ld,
                               const Py_ssize_t* rows, const Py_ssize_t* cols, Py_ssize_t col_lo,
                               Py_ssize_t col_hi, Py_ssize_t col_off, Py_ssize_t Wo,
                               const void* k, Py_ssize_t R, Py_ssize_t S, double fill, void* out,
                               Py_ssize_t row0, Py_ssize_t nrows, char* ws) noexcept nogil:
    if single:
        convcpu_stencil_f32(<const float*>img, ld, rows, cols, col_lo, col_hi, col_off, Wo,
                            <const float*>k, R, S, <float>fill, <float*>out, row0, nrows,
                            <float*>ws)
    else:
        convcpu_stencil_f64(<const double*>img, ld, rows, cols, col_lo, col_hi, col_off, Wo,
                            <const double*>k, R, S, fill, <double*>out, row0, nrows,
                            <double*>ws)


def stencil2d(cnp.ndarray img, cnp.ndarray kernel, cnp.ndarray out, cnp.ndarray rowmap,
              cnp.ndarray colmap, Py_ssize_t col_lo, Py_ssize_t col_hi, Py_ssize_t col_off,
              double fill, int num_threads, bint use_openmp):
    """out (Ho, Wo) = correlation of the virtual padded image (rowmap / colmap,
    see convcpu_stencil) with kernel (R, S); img, kernel and out C-contiguous of
    one dtype (float32 or float64).  Bands of output rows are sized by shape
    only, and each element sums its taps in one fixed order: the result does
    not depend on the thread count."""
    cdef Py_ssize_t Ho = out.shape[0], Wo = out.shape[1]
    cdef Py_ssize_t R = kernel.shape[0], S = kernel.shape[1]
    cdef Py_ssize_t ld = img.shape[1]
    cdef Py_ssize_t Wp = Wo + S - 1
    cdef Py_ssize_t band = max(1, STENCIL_TILE_BYTES // max(Wp * img.itemsize, 1) - (R - 1))
    cdef Py_ssize_t n_bands = (Ho + band - 1) // band
    cdef Py_ssize_t ws_elems = (band + R - 1) * Wp
    cdef const Py_ssize_t* rows = <const Py_ssize_t*>cnp.PyArray_DATA(rowmap)
    cdef const Py_ssize_t* cols = <const Py_ssize_t*>cnp.PyArray_DATA(colmap)
    cdef void* img_p = cnp.PyArray_DATA(img)
    cdef void* k_p = cnp.PyArray_DATA(kernel)
    cdef void* out_p = cnp.PyArray_DATA(out)
    cdef bint single = img.dtype.num == cnp.NPY_FLOAT
    cdef int failed = 0
    cdef int* failed_flag = &failed
    cdef Py_ssize_t b
    cdef char* ws = NULL
    cdef size_t ws_bytes = ws_elems * img.itemsize
    # Serial calls (and forked children, where GCC's OpenMP runtime would hang)
    # never enter a parallel region.
    if use_openmp and CONVCPU_OPENMP and num_threads > 1 and n_bands > 1:
        with nogil, parallel(num_threads=num_threads):
            ws = <char*>malloc(ws_bytes)
            if ws == NULL:
                failed_flag[0] = 1
            for b in prange(n_bands, schedule='static'):
                if ws != NULL:
                    _stencil_band(single, img_p, ld, rows, cols, col_lo, col_hi, col_off, Wo,
                                  k_p, R, S, fill, out_p, b * band, min(band, Ho - b * band), ws)
            free(ws)
    else:
        ws = <char*>malloc(ws_bytes)
        if ws == NULL:
            failed = 1
        else:
            with nogil:
                for b in range(n_bands):
                    _stencil_band(single, img_p, ld, rows, cols, col_lo, col_hi, col_off, Wo,
                                  k_p, R, S, fill, out_p, b * band, min(band, Ho - b * band), ws)
            free(ws)
    if failed:
        raise MemoryError("convcpu: could not allocate a per-thread workspace")
    return out
