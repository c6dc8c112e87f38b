# Direct kernels: where a GEMM is the wrong tool.
# - 2-D stencils (correlate2d / convolve2d): bands of output rows in parallel,
#   each gathered with its boundary (fill / wrap / symm) into a per-thread
#   tile and then swept tap by tap with vector loops (_kernels.h).
# - Grouped and depthwise convolution, channels first: a task is (sample,
#   group, band of output rows); the band of the group's input planes is
#   gathered (padding and column phases resolved) into a per-thread tile, and
#   register blocks of output channels x output columns sum their taps there.
#   Depthwise with a multiplier of 1 and a 3x3 / 5x5 kernel at strides 1 and 2
#   gathers the band's rows in aligned vectors as it goes and sums its taps
#   from shuffles of them, the weights in registers (CONVCPU_DWC). On AVX-512
#   CPUs the float32 ones at dilation 1 with columns padded by zeros skip the
#   row copy: masked loads straight from the plane (convcpu_dwc512, _dwc512.h).
# - Depthwise convolution, channels last: a task is (sample, band of output
#   rows), vectors over channels, read straight from the input.
# - Separable convolution: a task is (sample, band of output rows); its
#   depthwise result goes to a per-thread tile that the pointwise step (float32:
#   the own GEMM when it runs, from the bias, channels last to P not a multiple
#   of 16 transposed; else the register-blocked row kernel) turns into output
#   rows while it is still in cache.
from libc.stdint cimport uintptr_t
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy
from cython.parallel cimport parallel

cimport numpy as cnp

from convcpu._blas cimport (CONVCPU_SGEMM_T_COLS, _fill_bias, _zero_padding, convcpu_sgemm,
                            convcpu_sgemm_bias_t, convcpu_sgemm_t_fills, floating)
from convcpu._openmp cimport (CONVCPU_OPENMP, convcpu_region, convcpu_region_enter,
                              convcpu_region_init, convcpu_region_leave,
                              convcpu_region_ranges_get, convcpu_region_ranges_set,
                              convcpu_region_take)

import numpy as np

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
    void convcpu_gather_f32(const float* plane, Py_ssize_t W, const Py_ssize_t* hmap,
                            const Py_ssize_t* wmap, Py_ssize_t Wpad, Py_ssize_t pad_left,
                            Py_ssize_t q0, Py_ssize_t nq, Py_ssize_t sw, Py_ssize_t Lt,
                            float* ws)
    void convcpu_gather_f64(const double* plane, Py_ssize_t W, const Py_ssize_t* hmap,
                            const Py_ssize_t* wmap, Py_ssize_t Wpad, Py_ssize_t pad_left,
                            Py_ssize_t q0, Py_ssize_t nq, Py_ssize_t sw, Py_ssize_t Lt,
                            double* ws)
    void convcpu_direct_row_f32(const float* ws, const Py_ssize_t* off, Py_ssize_t ntap,
                                const float* w, const float* bias, Py_ssize_t kn, Py_ssize_t Wo,
                                float* out, Py_ssize_t ldo)
    void convcpu_direct_row_f64(const double* ws, const Py_ssize_t* off, Py_ssize_t ntap,
                                const double* w, const double* bias, Py_ssize_t kn, Py_ssize_t Wo,
                                double* out, Py_ssize_t ldo)
    void convcpu_direct_row_w32_f32(const float* ws, const Py_ssize_t* off, Py_ssize_t ntap,
                                    const float* w, const float* bias, Py_ssize_t kn, Py_ssize_t Wo,
                                    float* out, Py_ssize_t ldo)
    void convcpu_dw_row_f32(const float* x, Py_ssize_t W, Py_ssize_t C, Py_ssize_t M,
                            const Py_ssize_t* hrow, Py_ssize_t dh, Py_ssize_t R, Py_ssize_t S,
                            const Py_ssize_t* wmap, Py_ssize_t sw, Py_ssize_t dw,
                            Py_ssize_t pad_left, Py_ssize_t int_lo, Py_ssize_t int_hi,
                            const float* w, const float* bias, float* out, Py_ssize_t Wo,
                            Py_ssize_t ldo, Py_ssize_t* scratch)
    void convcpu_direct_row_w32_f64(const double* ws, const Py_ssize_t* off, Py_ssize_t ntap,
                                    const double* w, const double* bias, Py_ssize_t kn,
                                    Py_ssize_t Wo, double* out, Py_ssize_t ldo)
    void convcpu_dw_row_f64(const double* x, Py_ssize_t W, Py_ssize_t C, Py_ssize_t M,
                            const Py_ssize_t* hrow, Py_ssize_t dh, Py_ssize_t R, Py_ssize_t S,
                            const Py_ssize_t* wmap, Py_ssize_t sw, Py_ssize_t dw,
                            Py_ssize_t pad_left, Py_ssize_t int_lo, Py_ssize_t int_hi,
                            const double* w, const double* bias, double* out, Py_ssize_t Wo,
                            Py_ssize_t ldo, Py_ssize_t* scratch)
    void convcpu_dw_fixed_f32(int k, const float* x, Py_ssize_t W, Py_ssize_t C,
                              const Py_ssize_t* hrow, Py_ssize_t sh, Py_ssize_t dh,
                              Py_ssize_t nrows, const Py_ssize_t* wmap, Py_ssize_t sw,
                              Py_ssize_t dw, Py_ssize_t pad_left, Py_ssize_t int_lo,
                              Py_ssize_t int_hi, const float* w, const float* bias, float* out,
                              Py_ssize_t Wo)
    void convcpu_dw_fixed_f64(int k, const double* x, Py_ssize_t W, Py_ssize_t C,
                              const Py_ssize_t* hrow, Py_ssize_t sh, Py_ssize_t dh,
                              Py_ssize_t nrows, const Py_ssize_t* wmap, Py_ssize_t sw,
                              Py_ssize_t dw, Py_ssize_t pad_left, Py_ssize_t int_lo,
                              Py_ssize_t int_hi, const double* w, const double* bias,
                              double* out, Py_ssize_t Wo)
    ctypedef struct convcpu_dwc_geom:
        pass
    int convcpu_dwc_geom_f32(convcpu_dwc_geom* g, Py_ssize_t W, const Py_ssize_t* wmap,
                             Py_ssize_t Wpad, Py_ssize_t pad_left, Py_ssize_t sw, Py_ssize_t KS,
                             Py_ssize_t dw, Py_ssize_t Wo)
    int convcpu_dwc_geom_f64(convcpu_dwc_geom* g, Py_ssize_t W, const Py_ssize_t* wmap,
                             Py_ssize_t Wpad, Py_ssize_t pad_left, Py_ssize_t sw, Py_ssize_t KS,
                             Py_ssize_t dw, Py_ssize_t Wo)
    Py_ssize_t convcpu_dwc_ws_elems(const convcpu_dwc_geom* g, Py_ssize_t nq,
                                    Py_ssize_t itemsize)
    void convcpu_dwc_f32(int k, const convcpu_dwc_geom* g, const float* plane,
                         const Py_ssize_t* hrow, Py_ssize_t sh, Py_ssize_t dh, Py_ssize_t nrows,
                         const Py_ssize_t* wmap, Py_ssize_t dw, const float* w, const float* bias,
                         float* out, float* ws)
    void convcpu_dwc_f64(int k, const convcpu_dwc_geom* g, const double* plane,
                         const Py_ssize_t* hrow, Py_ssize_t sh, Py_ssize_t dh, Py_ssize_t nrows,
                         const Py_ssize_t* wmap, Py_ssize_t dw, const double* w,
                         const double* bias, double* out, double* ws)
    void convcpu_grouped_row_f32(const float* x, Py_ssize_t W, Py_ssize_t C, Py_ssize_t groups,
                                 Py_ssize_t Kg, const Py_ssize_t* hrow, Py_ssize_t dh,
                                 Py_ssize_t R, Py_ssize_t S, const Py_ssize_t* wmap,
                                 Py_ssize_t sw, Py_ssize_t dw, Py_ssize_t pad_left,
                                 Py_ssize_t int_lo, Py_ssize_t int_hi, const float* w,
                                 const float* bias, float* out, Py_ssize_t Wo, Py_ssize_t ldo,
                                 Py_ssize_t* scratch)
    void convcpu_grouped_row_f64(const double* x, Py_ssize_t W, Py_ssize_t C, Py_ssize_t groups,
                                 Py_ssize_t Kg, const Py_ssize_t* hrow, Py_ssize_t dh,
                                 Py_ssize_t R, Py_ssize_t S, const Py_ssize_t* wmap,
                                 Py_ssize_t sw, Py_ssize_t dw, Py_ssize_t pad_left,
                                 Py_ssize_t int_lo, Py_ssize_t int_hi, const double* w,
                                 const double* bias, double* out, Py_ssize_t Wo, Py_ssize_t ldo,
                                 Py_ssize_t* scratch)

cdef extern from "_dwc512.h" nogil:
    int convcpu_dwc512_supported()
    Py_ssize_t convcpu_dwc512_ws_bytes(Py_ssize_t W, Py_ssize_t Wo, Py_ssize_t sw)
    void convcpu_dwc512(int k, int sw, const float* plane, Py_ssize_t W, const Py_ssize_t* hrow,
                        Py_ssize_t nrows, Py_ssize_t pl, Py_ssize_t Wo, const float* w,
                        const float* bias, float* out, void* ws)
    int convcpu_dwc512_narrow_get()
    int convcpu_dwc512_narrow_set(int on)

# Grouped channels-last convolutions on the direct kernel take output channels
# of a group in vectors of this many bytes (a group's Kg is a multiple of them).
GROUPED_VECTOR_BYTES = 32

# Channels-last depthwise convolutions with a multiplier of 1 and a 3x3 or
# 5x5 kernel run a band of rows a vector of channels at a time
# (CONVCPU_DW_FIXED); False: the row kernel, every channel of a row at once.
USE_DW_FIXED = True

# Channels-first depthwise convolutions with a multiplier of 1, a 3x3 or 5x5
# kernel, strides 1 or 2 and output rows of at least a vector run a band of
# rows of a plane on CONVCPU_DWC; False: the gathered band and the row kernel.
USE_DWC_FIXED = True

# Of those, float32 ones at strides 1x1 and 2x2, dilation 1, with columns
# padded by zeros, on AVX-512 CPUs: no gathered rows, the loads straight from
# the plane with the edges masked (convcpu_dwc512, _dwc512.h; the same bits).
USE_DWC512 = True

# Channels-last float32 separable convolutions whose pointwise step has at
# most this many output channels, not a multiple of 16, run that step
# transposed, the pixels along the vector (convcpu_sgemm_bias_t, _gemm.h:
# the same bits; 144 -> 24 channels 1.2x faster); 0: never.
POINTWISE_T_MAX = 127

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


def dwc512_narrow_lanes(lanes=None):
    """The lanes of convcpu_dwc512's vectors on rows of at most 8 output
    columns: 8 (the default on AMD Zen 4 with AVX-512VL) or 16.  The same
    sums and bits either way.  With `lanes`, select it first (8 falls back to
    16 without AVX-512VL); not thread-safe: for tests and benchmarks, between
    calls."""
    if lanes is not None:
        if lanes not in (8, 16):
            raise ValueError(f"lanes must be 8 or 16, got {lanes!r}")
        convcpu_dwc512_narrow_set(lanes == 8)
    return convcpu_dwc512_narrow_get()


def _region_mode(mode=None):
    """As _core._region_mode, for this module's regions."""
    if mode is not None:
        convcpu_region_ranges_set(mode)
    return convcpu_region_ranges_get()


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
    cdef convcpu_region region
    cdef convcpu_region* tasks = &region
    # Serial calls (and forked children, where GCC's OpenMP runtime would hang)
    # never enter a parallel region.
    if use_openmp and CONVCPU_OPENMP and num_threads > 1 and n_bands > 1:
        convcpu_region_init(tasks, n_bands, num_threads)
        b = 0  # firstprivate in the region (Cython): give the copies a value
        with nogil, parallel(num_threads=num_threads):
            convcpu_region_enter(tasks)
            ws = <char*>malloc(ws_bytes)
            if ws == NULL:
                failed_flag[0] = 1
            b = convcpu_region_take(tasks)
            while b < n_bands:
                if ws != NULL:
                    _stencil_band(single, img_p, ld, rows, cols, col_lo, col_hi, col_off, Wo,
                                  k_p, R, S, fill, out_p, b * band, min(band, Ho - b * band), ws)
                b = convcpu_region_take(tasks)
            convcpu_region_leave(tasks)
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


# Grouped / depthwise / separable ---------------------------------------------

# Vector width of the direct kernels, in bytes (CONVCPU_VBYTES): gathered
# rows are padded to a multiple of it.
VECTOR_BYTES = 64
# Channels-first row blocks of at least this many output channels use the
# wide vectors, others 32-byte ones.
cdef enum:
    WIDE_MIN_CHANNELS = 2


cdef struct DirectPlan:
    Py_ssize_t N, C, H, W, K, R, S, Ho, Wo, sh, sw, dh, dw, pad_left, groups, Cg, Kg
    Py_ssize_t M, Wpad, int_lo, int_hi
    Py_ssize_t band, n_bands, n_tasks, Lt, nq, cstride
    bint channels_last, separable
    int fixed                   # channels-last depthwise: 3 or 5 (CONVCPU_DW_FIXED), or 0
    int dwc_k                   # channels-first depthwise: 3 or 5 (CONVCPU_DWC), or 0
    bint dwc512                 # and it runs on convcpu_dwc512
    convcpu_dwc_geom dwc        # and its geometry
    Py_ssize_t P                # separable: pointwise output channels
    const Py_ssize_t* hmap
    const Py_ssize_t* wmap
    Py_ssize_t* off             # channels first: (c, r, s) tap offsets in a gathered band
    Py_ssize_t ntap
    const void* x
    const void* w               # NCHW: (K, Cg, R, S); NHWC depthwise: (M, R, S, C)
    const void* bias            # (K,) or NULL (separable: none before the pointwise)
    const void* pw              # separable: (C*M, P)
    const void* pbias           # separable: (P,) or NULL
    void* out
    Py_ssize_t ws_elems, tile_elems, scratch_elems
    Py_ssize_t tile_ld          # separable, channels first: tile row stride
    Py_ssize_t* pw_off          # separable, channels first: c * tile_ld
    Py_ssize_t pw_ld            # separable, channels last: pw's row stride
    bint pw_t                   # separable, channels last: the pointwise step transposed


cdef inline Py_ssize_t _cdiv(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    return (a + b - 1) // b


cdef void _gather(const DirectPlan* p, const floating* plane, Py_ssize_t i0, Py_ssize_t nq,
                  floating* ws) noexcept nogil:
    if floating is float:
        convcpu_gather_f32(plane, p.W, p.hmap, p.wmap, p.Wpad, p.pad_left, i0 * p.sh, nq,
                           p.sw, p.Lt, ws)
    else:
        convcpu_gather_f64(plane, p.W, p.hmap, p.wmap, p.Wpad, p.pad_left, i0 * p.sh, nq,
                           p.sw, p.Lt, ws)


cdef void _direct_rows(const DirectPlan* p, const floating* ws, const floating* w,
                       const floating* bias, Py_ssize_t kn, Py_ssize_t nrows, floating* out,
                       Py_ssize_t ldo) noexcept nogil:
    """Rows 0..nrows-1 of the band in ws into out (rows Wo apart, planes ldo apart)."""
    cdef Py_ssize_t ii
    cdef Py_ssize_t row = p.sw * p.Lt
    # Blocks of several channels load a broadcast weight per channel and tap:
    # wide vectors halve those loads.  One channel (depthwise) blocks along
    # the row: narrow vectors waste fewer columns at its end (measured).
    cdef bint wide = kn >= WIDE_MIN_CHANNELS
    for ii in range(nrows):
        if floating is float:
            if wide:
                convcpu_direct_row_f32(ws + ii * p.sh * row, p.off, p.ntap, w, bias, kn, p.Wo,
                                       out + ii * p.Wo, ldo)
            else:
                convcpu_direct_row_w32_f32(ws + ii * p.sh * row, p.off, p.ntap, w, bias, kn,
                                           p.Wo, out + ii * p.Wo, ldo)
        else:
            if wide:
                convcpu_direct_row_f64(ws + ii * p.sh * row, p.off, p.ntap, w, bias, kn, p.Wo,
                                       out + ii * p.Wo, ldo)
            else:
                convcpu_direct_row_w32_f64(ws + ii * p.sh * row, p.off, p.ntap, w, bias, kn,
                                           p.Wo, out + ii * p.Wo, ldo)


cdef void _dwc_band(const DirectPlan* p, const floating* plane, Py_ssize_t i0, Py_ssize_t nrows,
                    const floating* w, const floating* bias, floating* out,
                    floating* ws) noexcept nogil:
    """Output rows i0..i0+nrows-1 of one channel plane (CONVCPU_DWC) into out
    (rows Wo apart); ws: the task's workspace, aligned here to 64 bytes."""
    cdef floating* aligned = <floating*>((<uintptr_t>ws + 63) & ~(<uintptr_t>63))
    if floating is float:
        if p.dwc512:  # set only where convcpu_dwc512_supported(): p.dwc is not filled in
            convcpu_dwc512(p.dwc_k, p.sw, plane, p.W, p.hmap + i0 * p.sh, nrows, p.pad_left,
                           p.Wo, w, bias, out, ws)
            return
        convcpu_dwc_f32(p.dwc_k, &p.dwc, plane, p.hmap + i0 * p.sh, p.sh, p.dh, nrows, p.wmap,
                        p.dw, w, bias, out, aligned)
    else:
        convcpu_dwc_f64(p.dwc_k, &p.dwc, plane, p.hmap + i0 * p.sh, p.sh, p.dh, nrows, p.wmap,
                        p.dw, w, bias, out, aligned)


cdef void _rows_nhwc(const DirectPlan* p, Py_ssize_t n, Py_ssize_t i0, Py_ssize_t nrows,
                     floating* out, Py_ssize_t* scratch) noexcept nogil:
    """Output rows i0..i0+nrows-1 of sample n, channels last, into out (rows
    Wo*K apart, pixels K apart): depthwise (Cg == 1) or grouped kernel rows."""
    cdef const floating* x = <const floating*>p.x + n * p.H * p.W * p.C
    cdef const Py_ssize_t* hrow
    cdef floating* row
    cdef Py_ssize_t i
    if p.fixed:
        hrow = p.hmap + i0 * p.sh
        if floating is float:
            convcpu_dw_fixed_f32(p.fixed, x, p.W, p.C, hrow, p.sh, p.dh, nrows, p.wmap, p.sw,
                                 p.dw, p.pad_left, p.int_lo, p.int_hi, <const float*>p.w,
                                 <const float*>p.bias, out, p.Wo)
        else:
            convcpu_dw_fixed_f64(p.fixed, x, p.W, p.C, hrow, p.sh, p.dh, nrows, p.wmap, p.sw,
                                 p.dw, p.pad_left, p.int_lo, p.int_hi, <const double*>p.w,
                                 <const double*>p.bias, out, p.Wo)
        return
    for i in range(i0, i0 + nrows):
        hrow = p.hmap + i * p.sh
        row = out + (i - i0) * p.Wo * p.K
        if floating is float:
            if p.Cg == 1:
                convcpu_dw_row_f32(x, p.W, p.C, p.M, hrow, p.dh, p.R, p.S, p.wmap, p.sw, p.dw,
                                   p.pad_left, p.int_lo, p.int_hi, <const float*>p.w,
                                   <const float*>p.bias, row, p.Wo, p.K, scratch)
            else:
                convcpu_grouped_row_f32(x, p.W, p.C, p.groups, p.Kg, hrow, p.dh, p.R, p.S,
                                        p.wmap, p.sw, p.dw, p.pad_left, p.int_lo, p.int_hi,
                                        <const float*>p.w, <const float*>p.bias, row, p.Wo,
                                        p.K, scratch)
        else:
            if p.Cg == 1:
                convcpu_dw_row_f64(x, p.W, p.C, p.M, hrow, p.dh, p.R, p.S, p.wmap, p.sw, p.dw,
                                   p.pad_left, p.int_lo, p.int_hi, <const double*>p.w,
                                   <const double*>p.bias, row, p.Wo, p.K, scratch)
            else:
                convcpu_grouped_row_f64(x, p.W, p.C, p.groups, p.Kg, hrow, p.dh, p.R, p.S,
                                        p.wmap, p.sw, p.dw, p.pad_left, p.int_lo, p.int_hi,
                                        <const double*>p.w, <const double*>p.bias, row, p.Wo,
                                        p.K, scratch)


cdef void _direct_task(const DirectPlan* p, Py_ssize_t t, floating* ws, floating* tile,
                       Py_ssize_t* scratch) noexcept nogil:
    cdef Py_ssize_t b = t % p.n_bands
    cdef Py_ssize_t rest = t // p.n_bands
    cdef Py_ssize_t i0 = b * p.band
    cdef Py_ssize_t nrows = p.band if p.Ho - i0 > p.band else p.Ho - i0
    cdef Py_ssize_t nq = (nrows - 1) * p.sh + (p.R - 1) * p.dh + 1
    cdef Py_ssize_t HoWo = p.Ho * p.Wo
    cdef Py_ssize_t npix = nrows * p.Wo
    cdef const floating* x = <const floating*>p.x
    cdef const floating* w = <const floating*>p.w
    cdef const floating* bias = <const floating*>p.bias
    cdef const floating* pbias = <const floating*>p.pbias
    cdef floating* out = <floating*>p.out
    cdef Py_ssize_t n, g, c, k, j
    cdef floating* dst
    if not p.separable:
        if p.channels_last:  # channels last: rest is the sample
            _rows_nhwc(p, rest, i0, nrows, out + (rest * HoWo + i0 * p.Wo) * p.K, scratch)
            return
        g = rest % p.groups
        n = rest // p.groups
        if p.dwc_k:  # depthwise, multiplier 1: plane g into output plane g
            _dwc_band(p, x + (n * p.C + g) * p.H * p.W, i0, nrows, w + g * p.R * p.S,
                      bias + g if bias != NULL else NULL,
                      out + (n * p.K + g) * HoWo + i0 * p.Wo, ws)
            return
        for c in range(p.Cg):
            _gather(p, x + ((n * p.C + g * p.Cg + c) * p.H) * p.W, i0, nq, ws + c * p.cstride)
        _direct_rows(p, ws, w + g * p.Kg * p.Cg * p.R * p.S,
                     bias + g * p.Kg if bias != NULL else NULL, p.Kg, nrows,
                     out + (n * p.K + g * p.Kg) * HoWo + i0 * p.Wo, HoWo)
        return
    # Separable: depthwise band into the tile, then tile x pointwise -> out.
    n = rest
    if p.channels_last:
        _rows_nhwc(p, n, i0, nrows, tile, scratch)
        # Pointwise: out[pix, k] = sum_c tile[pix, c] * pw[c, k] (pw: (C*M,
        # pw_ld), rows padded with zeros by the caller).  Float32: on the own
        # GEMM when it runs, bias first, then the channels in order (the
        # chains of a 1x1 conv2d on the depthwise output: the unfused ops'
        # bits; as fast as the row below on 144 -> 24 @56).  Else a direct row
        # of P columns for each "channel" pix, tap c reading pw row c.
        dst = out + (n * HoWo + i0 * p.Wo) * p.P
        if floating is float:
            # P not whole vectors: out^T = pw^T tile^T (pixels along the
            # vector, where they fill them at least as well), its columns
            # from the bias, transposed into dst in blocks through the tile's
            # tail (the same chains, the same bits).
            if (p.pw_t and convcpu_sgemm_t_fills(p.P, npix)
                    and convcpu_sgemm_bias_t(p.P, npix, p.K, <const float*>p.pw, 1, p.pw_ld,
                                             tile, 1, p.K, pbias, dst, p.P,
                                             tile + p.band * p.Wo * p.K)):
                return
            for j in range(npix):  # bias along the rows (_fill_bias would stride)
                for k in range(p.P):
                    dst[j * p.P + k] = pbias[k] if pbias != NULL else 0
            if convcpu_sgemm(npix, p.P, p.K, tile, p.K, 1, <const float*>p.pw, p.pw_ld, 1, 1,
                             dst, p.P):
                return
            convcpu_direct_row_f32(<const float*>p.pw, p.pw_off, p.K, tile, NULL, npix, p.P,
                                   dst, p.P)
        else:
            convcpu_direct_row_f64(<const double*>p.pw, p.pw_off, p.K, tile, NULL, npix, p.P,
                                   dst, p.P)
        if pbias != NULL:
            for j in range(npix):
                for k in range(p.P):
                    dst[j * p.P + k] += pbias[k]
    else:
        for c in range(p.C):
            if p.dwc_k:
                _dwc_band(p, x + ((n * p.C + c) * p.H) * p.W, i0, nrows, w + c * p.R * p.S,
                          <const floating*>NULL, tile + c * p.tile_ld, ws)
                continue
            _gather(p, x + ((n * p.C + c) * p.H) * p.W, i0, nq, ws)
            _direct_rows(p, ws, w + c * p.M * p.R * p.S, <const floating*>NULL, p.M, nrows,
                         tile + c * p.M * p.tile_ld, p.tile_ld)
        # The pointwise step is a direct row of npix columns whose tap c reads
        # tile row c (pw: (P, C*M), transposed by the caller).
        dst = out + n * p.P * HoWo + i0 * p.Wo
        if floating is float:
            # On the own GEMM when it runs (the same chains: bias, then the
            # channels in order; 2-7% faster on 144 -> 24 @56), else the row.
            _fill_bias(dst, HoWo, 1, pbias, p.P, npix)
            if convcpu_sgemm(p.P, npix, p.K, <const float*>p.pw, p.K, 1, tile, p.tile_ld, 1, 1,
                             dst, HoWo):
                return
            convcpu_direct_row_f32(tile, p.pw_off, p.K, <const float*>p.pw, pbias, p.P, npix,
                                   dst, HoWo)
        else:
            convcpu_direct_row_f64(tile, p.pw_off, p.K, <const double*>p.pw, pbias, p.P, npix,
                                   dst, HoWo)


cdef int _run_direct(const DirectPlan* p, floating* typed, int num_threads,
                     bint use_openmp) noexcept nogil:
    cdef int failed = 0
    cdef int* failed_flag = &failed
    cdef Py_ssize_t t
    cdef floating* ws = NULL
    cdef floating* tile = NULL
    cdef Py_ssize_t* scratch = NULL
    cdef size_t ws_bytes = (p.ws_elems if p.ws_elems > 0 else 1) * sizeof(floating)
    cdef size_t tile_bytes = (p.tile_elems if p.tile_elems > 0 else 1) * sizeof(floating)
    cdef size_t scratch_bytes = (p.scratch_elems if p.scratch_elems > 0 else 1) * sizeof(Py_ssize_t)
    cdef convcpu_region region
    cdef convcpu_region* tasks = &region
    if use_openmp and CONVCPU_OPENMP and num_threads > 1 and p.n_tasks > 1:
        convcpu_region_init(tasks, p.n_tasks, num_threads)
        t = 0  # firstprivate in the region (Cython): give the copies a value
        with parallel(num_threads=num_threads):
            convcpu_region_enter(tasks)
            ws = <floating*>malloc(ws_bytes)
            tile = <floating*>malloc(tile_bytes)
            scratch = <Py_ssize_t*>malloc(scratch_bytes)
            if ws == NULL or tile == NULL or scratch == NULL:
                failed_flag[0] = 1
            t = convcpu_region_take(tasks)
            while t < p.n_tasks:
                if ws != NULL and tile != NULL and scratch != NULL:
                    _direct_task(p, t, ws, tile, scratch)
                t = convcpu_region_take(tasks)
            convcpu_region_leave(tasks)
            free(ws)
            free(tile)
            free(scratch)
    else:
        ws = <floating*>malloc(ws_bytes)
        tile = <floating*>malloc(tile_bytes)
        scratch = <Py_ssize_t*>malloc(scratch_bytes)
        if ws != NULL and tile != NULL and scratch != NULL:
            for t in range(p.n_tasks):
                _direct_task(p, t, ws, tile, scratch)
        else:
            failed = 1
        free(ws)
        free(tile)
        free(scratch)
    return -1 if failed else 0


def direct_conv(cnp.ndarray x, cnp.ndarray w, object bias, cnp.ndarray out,
                cnp.ndarray hmap, cnp.ndarray wmap, tuple dims, bint channels_last,
                Py_ssize_t band, int num_threads, bint use_openmp,
                object pointwise=None, object pointwise_bias=None,
                Py_ssize_t pointwise_cols=0):
    """Grouped / depthwise convolution with the direct kernels (checked by the caller).

    dims: (C, H, W, K, R, S, Ho, Wo, sh, sw, dh, dw, pad_left, groups, int_lo, int_hi).
    Channels first (any groups): x (N, C, H, W), w (K, Cg, R, S), out (N, K, Ho, Wo).
    Channels last: x (N, H, W, C), out (N, Ho, Wo, K); depthwise (K = C*M):
    w (M, R, S, C); grouped with Cg > 1: w (R, S, Cg, K), and Kg a multiple of
    GROUPED_VECTOR_BYTES // itemsize.  bias (K,) or None.  band: output rows
    per task.
    Separable (pointwise given, pointwise_bias (P,) or None): the depthwise
    result (no bias) of each band goes through the pointwise step, on the
    direct row kernel, into out (N, P, Ho, Wo) / (N, Ho, Wo, P).  Channels
    first pointwise is (P, K); channels last (K, Pld): the (K, P) weight with
    its rows padded by zeros to Pld >= round_up(P, VECTOR_BYTES), and
    pointwise_cols = P.  All arrays C-contiguous, one
    dtype; hmap / wmap as for _core.conv_forward.
    """
    cdef DirectPlan p
    cdef Py_ssize_t c, r, s, L, fixed_size
    cdef int status = 0
    cdef cnp.ndarray arr
    cdef cnp.ndarray offsets
    cdef cnp.ndarray pw_offsets
    cdef Py_ssize_t pw_ld = 0
    (p.C, p.H, p.W, p.K, p.R, p.S, p.Ho, p.Wo, p.sh, p.sw, p.dh, p.dw, p.pad_left,
     p.groups, p.int_lo, p.int_hi) = dims
    p.N = x.shape[0]
    p.Cg = p.C // p.groups
    p.Kg = p.K // p.groups
    p.M = p.K // p.C
    p.Wpad = wmap.shape[0]
    p.channels_last = channels_last
    p.separable = pointwise is not None
    p.hmap = <const Py_ssize_t*>cnp.PyArray_DATA(hmap)
    p.wmap = <const Py_ssize_t*>cnp.PyArray_DATA(wmap)
    p.x = cnp.PyArray_DATA(x)
    p.w = cnp.PyArray_DATA(w)
    p.out = cnp.PyArray_DATA(out)
    p.bias = NULL
    p.pw = NULL
    p.pbias = NULL
    p.P = 0
    if bias is not None:
        arr = bias
        p.bias = cnp.PyArray_DATA(arr)
    if pointwise is not None:
        arr = pointwise
        p.pw = cnp.PyArray_DATA(arr)
        p.P = arr.shape[0]
        pw_ld = arr.shape[1]
        if pointwise_bias is not None:
            arr = pointwise_bias
            p.pbias = cnp.PyArray_DATA(arr)
    p.band = band
    p.n_bands = _cdiv(p.Ho, band)
    p.n_tasks = p.N * p.n_bands * (1 if (channels_last or p.separable) else p.groups)
    # Gathered rows: every vector of the last (rounded-up) output columns, plus
    # the widest tap offset.
    L = (VECTOR_BYTES if (p.M if p.separable else p.Kg) >= WIDE_MIN_CHANNELS else 32) // x.itemsize
    p.Lt = _cdiv(p.Wo, L) * L + ((p.S - 1) * p.dw) // p.sw
    p.nq = (band - 1) * p.sh + (p.R - 1) * p.dh + 1
    p.cstride = p.nq * p.sw * p.Lt
    # Tap (c, r, s) of an output row reads its gathered band at
    # c*cstride + r*dh*(sw*Lt) + (column phase of s)*Lt + (its offset).
    p.ntap = (1 if p.separable else p.Cg) * p.R * p.S
    offsets = np.empty(max(p.ntap, 1), dtype=np.intp)
    p.off = <Py_ssize_t*>cnp.PyArray_DATA(offsets)
    for c in range(p.ntap // (p.R * p.S)):
        for r in range(p.R):
            for s in range(p.S):
                p.off[(c * p.R + r) * p.S + s] = (c * p.cstride + r * p.dh * p.sw * p.Lt
                                                  + ((s * p.dw) % p.sw) * p.Lt
                                                  + (s * p.dw) // p.sw)
    if channels_last and not p.separable and p.Cg > 1 and \
            p.Kg % (GROUPED_VECTOR_BYTES // x.itemsize) != 0:
        raise ValueError("convcpu: grouped channels-last direct kernel needs whole vectors "
                         f"of output channels per group, got {p.Kg}")
    # Depthwise, multiplier 1, a 3x3 or 5x5 kernel: the band kernels' size, or 0.
    fixed_size = p.R if (p.Cg == 1 and p.M == 1 and p.R == p.S and p.R in (3, 5)) else 0
    p.fixed = fixed_size if (channels_last and USE_DW_FIXED) else 0
    if channels_last:
        p.ws_elems = 0
        p.scratch_elems = 2 * p.R + p.S * p.Wo
    else:
        p.ws_elems = p.cstride * (1 if p.separable else p.Cg)
        p.scratch_elems = 0
    p.dwc_k = 0
    p.dwc512 = False
    if (fixed_size and not channels_last and USE_DWC_FIXED and USE_DWC512
            and x.dtype.num == cnp.NPY_FLOAT and p.sh == p.sw and p.sw in (1, 2)
            and p.dh == 1 and p.dw == 1 and _zero_padding(p.wmap, p.Wpad, p.pad_left, p.W)
            and convcpu_dwc512_supported()):
        p.dwc_k = fixed_size
        p.dwc512 = True
        p.ws_elems = max(p.ws_elems, _cdiv(convcpu_dwc512_ws_bytes(p.W, p.Wo, p.sw), 4))
    elif fixed_size and not channels_last and USE_DWC_FIXED:
        if x.dtype.num == cnp.NPY_FLOAT:
            status = convcpu_dwc_geom_f32(&p.dwc, p.W, p.wmap, p.Wpad, p.pad_left, p.sw, p.S,
                                          p.dw, p.Wo)
        else:
            status = convcpu_dwc_geom_f64(&p.dwc, p.W, p.wmap, p.Wpad, p.pad_left, p.sw, p.S,
                                          p.dw, p.Wo)
        if status == 0:
            p.dwc_k = fixed_size
            p.ws_elems = max(p.ws_elems, convcpu_dwc_ws_elems(&p.dwc, p.nq, x.itemsize))
        status = 0
    p.tile_elems = band * p.Wo * p.K if p.separable else 0
    p.tile_ld = 0
    p.pw_off = NULL
    p.pw_ld = 0
    p.pw_t = False
    if p.separable and channels_last:
        p.P = pointwise_cols
        p.pw_ld = pw_ld
        p.pw_t = (x.dtype.num == cnp.NPY_FLOAT and p.P % (VECTOR_BYTES // 4) != 0
                  and p.P <= POINTWISE_T_MAX)
        if p.pw_t:
            p.tile_elems += p.P * CONVCPU_SGEMM_T_COLS
        pw_offsets = np.arange(p.K, dtype=np.intp) * pw_ld
        p.pw_off = <Py_ssize_t*>cnp.PyArray_DATA(pw_offsets)
    if p.separable and not channels_last:
        # Tile rows padded to whole wide vectors (the pointwise row kernel
        # reads them; the padding only feeds discarded lanes).
        L = VECTOR_BYTES // x.itemsize
        p.tile_ld = _cdiv(band * p.Wo, L) * L
        p.tile_elems = p.tile_ld * p.K
        pw_offsets = np.arange(p.K, dtype=np.intp) * p.tile_ld
        p.pw_off = <Py_ssize_t*>cnp.PyArray_DATA(pw_offsets)
    if x.dtype.num == cnp.NPY_FLOAT:
        with nogil:
            status = _run_direct(&p, <float*>p.out, num_threads, use_openmp)
    else:
        with nogil:
            status = _run_direct(&p, <double*>p.out, num_threads, use_openmp)
    if status != 0:
        raise MemoryError("convcpu: could not allocate a per-thread workspace")
    return out
