# Tiled im2col + GEMM convolution driver.
#
# A convolution is cut into tasks (sample, group, tile of output pixels, block
# of output channels).  Each task copies the input patches of its pixel tile
# into a small per-thread buffer (im2col), presets the output tile with the
# bias and runs one GEMM over the whole reduction (C_in/groups * R * S), so
# each output element is produced by one GEMM call whose shape depends only on
# the convolution shape (and, with convcpu's own float32 GEMM, by one FMA chain
# in a fixed order): results do not depend on the thread count.  A
# zero-padded NCHW float32 conv whose output rows keep every input column
# skips the im2col: the own GEMM's kernels read the taps from the input, or
# with a stride from a task's copy of its rows in phase planes
# (convcpu_sconv_implicit; plan_implicit, _phase_copy), with the same sums.
#
# Padding never materialises: hmap / wmap map a padded coordinate to the input
# row / column it reads, or -1 for a zero (built in Python for every
# padding_mode), and ow_lo / ow_hi give for each kernel column the output
# columns whose input column is inside the image, where the copy is a plain
# (strided) run.
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy, memset
from cython.parallel cimport parallel

cimport numpy as cnp

from convcpu._blas cimport (CONVCPU_GEMM_PANEL, CONVCPU_SGEMM_T_COLS, convcpu_gemm_get,
                            convcpu_gemm_set,
                            convcpu_implicit_and_get, convcpu_implicit_and_set,
                            convcpu_implicit_wide_get, convcpu_implicit_wide_set,
                            convcpu_im2col_panels, convcpu_sconv_implicit,
                            convcpu_sgemm_bias, convcpu_sgemm_bias_t, convcpu_sgemm_panels,
                            convcpu_sgemm_t_fills, floating,
                            gemm_colmajor, gemm_trans,
                            _fill_bias, _zero_padding)
from convcpu._openmp cimport (CONVCPU_OPENMP, convcpu_region, convcpu_region_enter,
                              convcpu_region_init, convcpu_region_leave,
                              convcpu_region_ranges_get, convcpu_region_ranges_set,
                              convcpu_region_take, omp_get_max_threads)

import functools
import heapq
import os

import numpy as np

from convcpu import _geometry

cnp.import_array()

cdef extern from "_kernels.h" nogil:
    void convcpu_prefetch(const void* p, Py_ssize_t nbytes)
    void convcpu_small_gemm_f32(Py_ssize_t rows, Py_ssize_t depth, Py_ssize_t cols,
                                const float* a, Py_ssize_t lda, const float* w,
                                float* out, Py_ssize_t ldo)
    void convcpu_small_gemm_f64(Py_ssize_t rows, Py_ssize_t depth, Py_ssize_t cols,
                                const double* a, Py_ssize_t lda, const double* w,
                                double* out, Py_ssize_t ldo)
    void convcpu_strided_copy_f32(float* dst, const float* src, Py_ssize_t n,
                                  Py_ssize_t stride)
    void convcpu_strided_copy_f64(double* dst, const double* src, Py_ssize_t n,
                                  Py_ssize_t stride)
    void convcpu_col2im_row_f32(float* dst, const float* src, Py_ssize_t src_stride,
                                Py_ssize_t taps, Py_ssize_t n, const float* first)
    void convcpu_col2im_row_f64(double* dst, const double* src, Py_ssize_t src_stride,
                                Py_ssize_t taps, Py_ssize_t n, const double* first)
    void convcpu_col2im_gather_f32(float* out, Py_ssize_t out_plane, Py_ssize_t kn,
                                   Py_ssize_t Wo, Py_ssize_t o_lo, Py_ssize_t o_hi,
                                   const float* cols, Py_ssize_t npix, Py_ssize_t ih_lo,
                                   Py_ssize_t ih_hi, Py_ssize_t W, Py_ssize_t R, Py_ssize_t S,
                                   Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t dh, Py_ssize_t dw,
                                   Py_ssize_t pt, Py_ssize_t pl, const float* first,
                                   float* tmp, Py_ssize_t* idx)
    void convcpu_col2im_gather_f64(double* out, Py_ssize_t out_plane, Py_ssize_t kn,
                                   Py_ssize_t Wo, Py_ssize_t o_lo, Py_ssize_t o_hi,
                                   const double* cols, Py_ssize_t npix, Py_ssize_t ih_lo,
                                   Py_ssize_t ih_hi, Py_ssize_t W, Py_ssize_t R, Py_ssize_t S,
                                   Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t dh, Py_ssize_t dw,
                                   Py_ssize_t pt, Py_ssize_t pl, const double* first,
                                   double* tmp, Py_ssize_t* idx)
    void convcpu_deform_planes_f32(const float* x, Py_ssize_t plane, Py_ssize_t channels,
                                   Py_ssize_t npix, Py_ssize_t taps, const Py_ssize_t* idx,
                                   const float* wt, const float* mask, Py_ssize_t mask_stride,
                                   float* col, Py_ssize_t row)
    void convcpu_deform_planes_f64(const double* x, Py_ssize_t plane, Py_ssize_t channels,
                                   Py_ssize_t npix, Py_ssize_t taps, const Py_ssize_t* idx,
                                   const double* wt, const double* mask, Py_ssize_t mask_stride,
                                   double* col, Py_ssize_t row)
    void convcpu_deform_table_f32(const float* off, Py_ssize_t Ho, Py_ssize_t Wo, Py_ssize_t p0,
                                  Py_ssize_t npix, Py_ssize_t R, Py_ssize_t S,
                                  const Py_ssize_t* geometry, Py_ssize_t H, Py_ssize_t W,
                                  Py_ssize_t* idx, float* wt, Py_ssize_t* rows)
    void convcpu_deform_table_f64(const double* off, Py_ssize_t Ho, Py_ssize_t Wo, Py_ssize_t p0,
                                  Py_ssize_t npix, Py_ssize_t R, Py_ssize_t S,
                                  const Py_ssize_t* geometry, Py_ssize_t H, Py_ssize_t W,
                                  Py_ssize_t* idx, double* wt, Py_ssize_t* rows)
    void convcpu_deform_band_f32(const float* x, Py_ssize_t plane, Py_ssize_t channels,
                                 Py_ssize_t W, Py_ssize_t y0, Py_ssize_t y1, float* band)
    void convcpu_deform_band_f64(const double* x, Py_ssize_t plane, Py_ssize_t channels,
                                 Py_ssize_t W, Py_ssize_t y0, Py_ssize_t y1, double* band)
    void convcpu_deform_vector_f32(const float* band, Py_ssize_t shift, Py_ssize_t channels,
                                   Py_ssize_t npix, Py_ssize_t taps, const Py_ssize_t* idx,
                                   const float* wt, const float* mask, Py_ssize_t mask_stride,
                                   float* col, Py_ssize_t row, float* tmp)
    void convcpu_deform_vector_f64(const double* band, Py_ssize_t shift, Py_ssize_t channels,
                                   Py_ssize_t npix, Py_ssize_t taps, const Py_ssize_t* idx,
                                   const double* wt, const double* mask, Py_ssize_t mask_stride,
                                   double* col, Py_ssize_t row, double* tmp)

HAVE_OPENMP = bool(CONVCPU_OPENMP)

# OpenBLAS packs both operands of every GEMM call, so each task re-packs its
# block of weights: the fewer pixel tiles, the less packing.  Tiles are
# therefore as wide as the workspace cap allows, and parallelism comes first
# from blocks of output channels, then from narrower pixel tiles.  The
# workspace of a thread is one im2col tile, <= TILE_BYTES whatever the image.
# 2 MB (beyond L2, within L3) measured best: a 1 MB tile re-packed the weights
# of the dilated 256->256 @28 layer often enough to cost 15%; 4-8 MB gained
# nothing more (docs/BENCHMARKS.md).
TILE_BYTES = 2 * 1024 * 1024
MIN_TILE_PIXELS = 64
# Enough independent tasks for batch-1 layers to spread over the machine's
# cores (two each, for balance); every split costs GEMM efficiency (measured:
# 8 GEMMs of an eighth of the work take 15-25% longer).  The tiling depends
# on the shape and the machine, never on the thread count of a call, so
# results are the same for any number of threads.
# Locally connected layers with at most this many filters use the direct
# kernel of _kernels.h rather than one BLAS call per position (measured in
# docs/BENCHMARKS.md).
LOCAL_DIRECT_MAX_FILTERS = 256
# A locally connected task runs this many consecutive output positions, so
# that it knows which weights come next (docs/BENCHMARKS.md, issue 5).
cdef enum:
    LOCAL_CHUNK = 8
# im2col written straight into the returned array: a task is ~this much output.
PATCH_TILE_BYTES = 256 * 1024
# A channels-last float32 convolution whose tasks have at most this many output
# channels runs its GEMM transposed (pixels along the vector: _run_task), on
# the own GEMM.  Measured at 8 (ResNeXt g=32, docs/BENCHMARKS.md); 16 is a
# guess (half of the own GEMM's 32-column panel).
NARROW_MAX_CHANNELS = 16
# ... and so do those whose tasks have at most this many, not a multiple of
# 16 (by rows they leave lanes of the panels idle: 24 of 32; _gemm.h's
# convcpu_sgemm_bias_t says what it measured); 0: none beyond the above.
NARROW_RAGGED_MAX_CHANNELS = 127
# A transposed convolution whose bands of input rows own disjoint output rows
# (transpose_forward) cuts them into >= TRANSPOSE_TASKS tasks, each adding
# column tiles of <= TRANSPOSE_TILE_BYTES (a tile stays in L2 between its GEMM
# and its col2im).
TRANSPOSE_TILE_BYTES = 256 * 1024
TRANSPOSE_TASKS = 16
# NCHW: gather each output row from the column tile when its taps are all in
# it (see _transpose_task); False: add the taps into the output one by one.
TRANSPOSE_GATHER = True
# NCHW float32 on the own GEMM: im2col straight into the GEMM's panels (no
# packing pass; see _im2col_panels); False: a plain tile the GEMM packs.
IM2COL_PANELS = True
# ... also with one block of output channels when the output rows are shorter
# than this: the plain im2col copies each row of a sample separately (a
# conv1d of length 13: 6144 copies of 52 bytes per task).
IM2COL_PANELS_ROWS = 16
# NCHW float32 on the own GEMM, zero padding, every input column in the
# output's rows (ceil(W / sw) <= Wo): no im2col at all, the GEMM kernels read
# each panel's taps from the input (stride 1, Wo == W), or from phase planes
# a task copies (IMPLICIT_PHASES; convcpu_sconv_implicit); False: an im2col
# tile.  Not for batches of images of <= 16 pixels, which a tile
# gathers into whole panels (conv1d batch 32 L15: 2.5% slower implicit, on
# half-width kernels).
IMPLICIT_GEMM = True
# Strides (and wider outputs) on the implicit convolution, by phase planes.
IMPLICIT_PHASES = True
# An unpadded stride-1 1x1 NCHW convolution (else the own GEMM on the input
# in place, packing its panels) goes to the implicit convolution when its
# loads are the and'ed ones (AMD Zen 4: _core.implicit_loads()) and a group
# has at least this many input channels: its 48-lane panels then read the
# input faster than a packing pass (1024->256 @14 0.79-1.04, 2048->512 @7
# 0.87-0.89, 512->128 @28 0.94-0.99 of the packed GEMM's time; with 64 input
# channels 1.15, with masked loads 1.05-1.35).
IMPLICIT_1X1_CHANNELS = 128
# An implicit convolution splits its output channels into blocks of at least
# this many before it splits its pixels (plan_implicit).
IMPLICIT_MIN_KBLOCK = 48
# Batches of images of fewer output pixels go to the implicit convolution
# several whole images to a task, about this many pixels (plan_gathered).
IMPLICIT_GATHER_PIXELS = 256
# values readable before and after a gathered tile: a vector of 32 bytes
cdef enum:
    GATHER_GUARD = 8
    # the most taps (R*S) of the implicit GEMM (CG_TAPS in _gemm.h)
    IMPLICIT_TAPS = 64
IMPLICIT_MAX_TAPS = IMPLICIT_TAPS  # (for Python: depthwise.use_direct)
# the usable cores at import, and the tasks a plan makes at least: 2 a core
CORES = max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else (os.cpu_count() or 1))
MIN_TASKS = 2 * CORES
MIN_KBLOCK = 32
# The weight gradient sums its chunks (sample, pixel tile) in at most this many
# slots, each into its own weight-sized partial (at most WEIGHT_GRAD_BYTES of
# them in all), and adds the partials in slot order.  The count depends on the
# shape alone, never on the machine's CPUs (as MIN_TASKS does), so the bits of
# the sum are the same on every machine and for any thread count.
WEIGHT_GRAD_SLOTS = 8
WEIGHT_GRAD_BYTES = 64 * 1024 * 1024


# Decide the float32 GEMM backend and the implicit convolution's loads and
# panels once, at import (before any thread reads them).
convcpu_gemm_get()
convcpu_implicit_and_get()
convcpu_implicit_wide_get()


ctypedef int (*_switch_get_t)() noexcept nogil
ctypedef int (*_switch_set_t)(int) noexcept nogil


cdef str _switch(str what, object name, str on, str off, _switch_set_t select,
                 _switch_get_t current):
    """The kernel switches below: with `name`, select `on` or `off` first (any
    other name: ValueError naming `what`); returns the one in use."""
    if name is not None:
        if name not in (on, off):
            raise ValueError(f"{what} must be {on!r} or {off!r}, got {name!r}")
        select(name == on)
    return on if current() else off


def gemm_backend(name=None):
    """The float32 GEMM backend: "convcpu" (own AVX-512 kernels, _gemm.h) or
    "blas" (SciPy's sgemm).  float64 always uses SciPy's dgemm.  With `name`,
    select it first ("convcpu" falls back to "blas" on a CPU without AVX-512);
    not thread-safe: for tests and benchmarks, between calls."""
    return _switch("gemm backend", name, "convcpu", "blas", convcpu_gemm_set, convcpu_gemm_get)


def _region_mode(mode=None):
    """This module's convcpu_region_ranges (_region.h), set first to `mode`
    when given: see convcpu._threads.region_schedule."""
    if mode is not None:
        convcpu_region_ranges_set(mode)
    return convcpu_region_ranges_get()


def implicit_loads(name=None):
    """How the implicit convolution's panels read the input: "and" (plain
    loads and'ed with each tap's lanes, where every lane stays inside the
    input or its copy; the default on AMD Zen 4, where a masked 512-bit load
    takes an FMA slot) or "masked" (zero-masked loads; the default elsewhere,
    and always for float64 or the BLAS backend, which never load this way).
    The same values and bits either way.  With `name`, select it first; not
    thread-safe: for tests and benchmarks, between calls."""
    return _switch("implicit loads", name, "and", "masked", convcpu_implicit_and_set,
                   convcpu_implicit_and_get)


def implicit_panels(name=None):
    """How the implicit convolution cuts a tile's pixels into panels: "wide"
    (48 lanes, the last ones cut so that no blend-tree tail kernel runs, and
    a tile's last 3-8 pixels after its panels, or a whole tile of 1-8, on
    the transposed tail kernel, output channels along the vector; the
    default on AMD Zen 4, where the tail kernels' blends cost more than idle
    lanes) or
    "narrow" (32 lanes, a last 1-4 pixels on the tail kernels; the default
    elsewhere).  The same sums and bits either way.  With `name`, select it
    first; not thread-safe: for tests and benchmarks, between calls."""
    return _switch("implicit panels", name, "wide", "narrow", convcpu_implicit_wide_set,
                   convcpu_implicit_wide_get)


def openmp_max_threads():
    """omp_get_max_threads(): the OpenMP default team size (1 without OpenMP)."""
    return omp_get_max_threads()


cdef enum:
    # NHWC im2col copies channel runs up to this long by a loop, not memcpy
    SHORT_RUN = 16


cdef enum TaskKind:
    CONV = 0      # tiled im2col + GEMM convolution
    PATCHES = 1   # im2col straight into the returned array
    LOCAL = 2     # locally connected: one GEMM per output position
    TRANSPOSE = 3 # transposed convolution: GEMM into column tiles + col2im
    DEFORM = 4    # deformable convolution: bilinear-sampling im2col + GEMM


cdef struct ConvPlan:
    TaskKind kind
    Py_ssize_t C, H, W, K, R, S, Ho, Wo
    Py_ssize_t sh, sw, dh, dw, pad_left, pad_top
    Py_ssize_t groups, Cg, Kg
    Py_ssize_t N, spt, n_sgroups
    Py_ssize_t ptile, kblock, n_ptiles, n_kblocks, n_tasks, ws_elems, out_elems
    # Where output pixel (i, j) of the plan goes: (i*osh + oa, j*osw + ob) of an
    # OH x OW output (a phase of a transposed convolution); identity otherwise.
    Py_ssize_t OH, OW, osh, osw, oa, ob
    bint channels_last, direct, scatter
    # CONV, NHWC: the GEMM computes the tile transposed (output channels x
    # pixels) into out_tile, then stores it channels-last (see _run_task)
    bint narrow
    # TRANSPOSE, NCHW: the taps tile the output (kernel == stride, no padding,
    # no dilation): every output element gets exactly one add
    bint tiles
    # TRANSPOSE, NCHW: every owned output row gets all its taps from one band
    # of input rows, so the col2im gathers them (convcpu_col2im_gather)
    bint gather
    # CONV, NHWC: w is (K, R*S*Cg) (OHWI flattened), not (R*S*Cg, K)
    bint w_by_rows
    # CONV, NCHW, float32 on the own GEMM, column stride 1, zero padding: the
    # im2col tile is written in the GEMM's panel layout (_im2col_panels)
    bint panels
    # CONV, NCHW, float32 on the own GEMM, zero padding, ceil(W / sw) <= Wo:
    # the GEMM reads the taps from the input (convcpu_sconv_implicit), no tile
    bint implicit
    # implicit with a stride (or output rows wider than the input's): a task
    # copies the input rows it reads into phase planes as wide as the output
    # (_phase_band), at most phase_rows rows each
    bint phases
    Py_ssize_t phase_rows
    const Py_ssize_t* hmap
    const Py_ssize_t* wmap
    const Py_ssize_t* ow_lo
    const Py_ssize_t* ow_hi
    # TRANSPOSE: for each kernel row r (column s), the input rows (columns)
    # [lo, hi) whose output row (column) lies inside the output.
    const Py_ssize_t* ih_lo
    const Py_ssize_t* ih_hi
    const void* x
    const void* w
    const void* bias
    void* out
    # DEFORM: (N, 2*O*R*S, Ho, Wo) offsets, (N, O*R*S, Ho, Wo) mask or NULL,
    # O offset groups; a thread's workspace holds col_elems of im2col tile,
    # then its sampling table and buffers (deform_forward).
    const void* offset
    const void* mask
    Py_ssize_t offset_groups, col_elems, index_elems, band_elems, vector_len


cdef inline Py_ssize_t _ceil_div(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    # a, b >= 0 (b > 0); the module is compiled with cdivision, where
    # -(-a // b) would truncate instead of rounding up.
    return (a + b - 1) // b


cdef inline Py_ssize_t _min(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    return a if a < b else b


cdef inline Py_ssize_t _max(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    return a if a > b else b


cdef void _im2col_nchw(const ConvPlan* p, const floating* xg, Py_ssize_t p0,
                       Py_ssize_t npix, floating* col, Py_ssize_t ld) noexcept nogil:
    """col[(c*R + r)*S + s, j] (rows ld apart) = x_pad[c, oh*sh + r*dh, ow*sw + s*dw]
    for the output pixels p0 .. p0+npix-1 (row-major over (oh, ow)); xg is
    x[n, group]."""
    cdef Py_ssize_t HW = p.H * p.W
    cdef Py_ssize_t c, r, s, j, a, b, oh, hs, wsrc, ow, lo, hi, off
    cdef floating* dst
    cdef const floating* src
    for c in range(p.Cg):
        for r in range(p.R):
            for s in range(p.S):
                dst = col + ((c * p.R + r) * p.S + s) * ld
                off = s * p.dw - p.pad_left
                oh = p0 // p.Wo
                a = p0 - oh * p.Wo
                j = 0
                while j < npix:
                    b = _min(p.Wo, a + npix - j)
                    hs = p.hmap[oh * p.sh + r * p.dh]
                    if hs < 0:
                        memset(dst + j, 0, (b - a) * sizeof(floating))
                    else:
                        src = xg + c * HW + hs * p.W
                        lo = _max(a, _min(p.ow_lo[s], b))
                        hi = _max(lo, _min(p.ow_hi[s], b))
                        for ow in range(a, lo):
                            wsrc = p.wmap[ow * p.sw + s * p.dw]
                            dst[j + ow - a] = src[wsrc] if wsrc >= 0 else 0
                        if p.sw == 1:
                            memcpy(dst + j + lo - a, src + lo + off, (hi - lo) * sizeof(floating))
                        elif hi > lo:
                            if floating is float:
                                convcpu_strided_copy_f32(dst + j + lo - a, src + lo * p.sw + off,
                                                         hi - lo, p.sw)
                            else:
                                convcpu_strided_copy_f64(dst + j + lo - a, src + lo * p.sw + off,
                                                         hi - lo, p.sw)
                        for ow in range(hi, b):
                            wsrc = p.wmap[ow * p.sw + s * p.dw]
                            dst[j + ow - a] = src[wsrc] if wsrc >= 0 else 0
                    j += b - a
                    a = 0
                    oh += 1


cdef void _gemm_panels(Py_ssize_t kn, Py_ssize_t cols, Py_ssize_t crs, const floating* w,
                       const floating* panels, floating* c, Py_ssize_t ldc) noexcept nogil:
    """c (kn x cols, rows ldc apart) += w (kn x crs, row-major) @ the tile in
    panels (_im2col_panels); by BLAS, panel by panel, if the own GEMM was
    switched off since the plan was made."""
    cdef Py_ssize_t P = CONVCPU_GEMM_PANEL, q
    if floating is float:
        if convcpu_sgemm_panels(kn, cols, crs, w, crs, 1, panels, c, ldc):
            return
    for q in range(_ceil_div(cols, P)):
        gemm_colmajor(_min(P, cols - q * P), kn, crs, panels + q * crs * P, P, w, crs, 1,
                      c + q * P, ldc)


cdef void _im2col_panels(const ConvPlan* p, const floating* xg, Py_ssize_t nsamp,
                         Py_ssize_t p0, Py_ssize_t npix, floating* ws) noexcept nogil:
    """The im2col tile of samples 0 .. nsamp-1 (xg: the first one's group),
    output pixels p0 .. p0+npix-1 of each (tile column s*npix + j), in the
    panel layout of convcpu_sgemm_panels: tile column j in panel j // P, whose
    crs rows hold P values each (P = CONVCPU_GEMM_PANEL); the columns past
    the tile in its last panel are zeros.  By convcpu_im2col_panels; by
    _im2col_nchw, chunk by chunk, if the own GEMM was switched off since the
    plan was made."""
    cdef Py_ssize_t crs = p.Cg * p.R * p.S, P = CONVCPU_GEMM_PANEL, HW = p.H * p.W
    cdef Py_ssize_t s, done, n, j, l, cols = nsamp * npix
    cdef floating* dst
    if floating is float:  # every sample in one pass (each panel row written once)
        if convcpu_im2col_panels(<const float*>xg, HW, p.W, p.Cg, p.R, p.S, p.hmap, p.sh,
                                 p.dh, p.dw, p.pad_left, p.Wo, p0, npix, nsamp, p.C * HW,
                                 <float*>ws, 0, 1):
            return
    for s in range(nsamp):
        done = 0
        while done < npix:
            j = s * npix + done
            n = _min(P - j % P, npix - done)
            _im2col_nchw(p, xg + s * p.C * HW, p0 + done, n, ws + (j // P) * crs * P + j % P, P)
            done += n
    if cols % P:
        dst = ws + (cols // P) * crs * P + cols % P
        for l in range(crs):
            memset(dst + l * P, 0, (P - cols % P) * sizeof(floating))


cdef void _im2col_nhwc(const ConvPlan* p, const floating* xn, Py_ssize_t cbase,
                       Py_ssize_t p0, Py_ssize_t npix, floating* col) noexcept nogil:
    """col[j, (r*S + s)*Cg + c] = x_pad[oh*sh + r*dh, ow*sw + s*dw, cbase + c]:
    contiguous channel runs; a whole kernel row in one copy when it can."""
    cdef Py_ssize_t run = p.Cg * sizeof(floating)
    cdef Py_ssize_t rsc = p.R * p.S * p.Cg
    cdef bint whole_rows = p.Cg == p.C and p.dw == 1
    cdef Py_ssize_t j, pix, oh, ow, r, s, hs, wsrc, c
    cdef floating* dst
    cdef const floating* src_row
    for j in range(npix):
        pix = p0 + j
        oh = pix // p.Wo
        ow = pix - oh * p.Wo
        dst = col + j * rsc
        for r in range(p.R):
            hs = p.hmap[oh * p.sh + r * p.dh]
            if hs < 0:
                memset(dst, 0, p.S * run)
                dst += p.S * p.Cg
                continue
            src_row = xn + hs * p.W * p.C + cbase
            if whole_rows and p.ow_lo[0] <= ow < p.ow_hi[0] and p.ow_lo[p.S - 1] <= ow < p.ow_hi[p.S - 1]:
                memcpy(dst, src_row + (ow * p.sw - p.pad_left) * p.C, p.S * run)
                dst += p.S * p.Cg
                continue
            for s in range(p.S):
                wsrc = p.wmap[ow * p.sw + s * p.dw]
                if wsrc < 0:
                    memset(dst, 0, run)
                elif p.Cg <= SHORT_RUN:  # a few channels of a group: no call
                    for c in range(p.Cg):
                        dst[c] = src_row[wsrc * p.C + c]
                else:
                    memcpy(dst, src_row + wsrc * p.C, run)
                dst += p.Cg


cdef void _im2col_deform(const ConvPlan* p, Py_ssize_t n, Py_ssize_t g, Py_ssize_t p0,
                         Py_ssize_t npix, floating* col, floating* table) noexcept nogil:
    """col[j, (c*R + r)*S + s] (pixel-major: rows Cg*R*S apart) = the deformed,
    bilinear sample of channel g*Cg + c of sample n at tap (r, s) of output
    pixel p0 + j, times the mask.  For each run of the group's channels that
    share an offset group, the sampling table is built once; when the rows it
    reads fit the thread's band buffer, they are copied there channels-last
    and sampled a vector of channels at a time, else (offsets that reach far)
    sampled from the planes one channel at a time.  `table`: the workspace
    after the im2col tile (see deform_forward for its layout)."""
    cdef Py_ssize_t HW = p.H * p.W, HoWo = p.Ho * p.Wo, RS = p.R * p.S
    cdef Py_ssize_t per_group = p.C // p.offset_groups
    cdef Py_ssize_t entries = 4 * RS * p.ptile
    cdef Py_ssize_t* idx = <Py_ssize_t*>table
    cdef floating* wt = table + p.index_elems
    cdef floating* tmp = wt + entries
    cdef floating* band = tmp + RS * p.vector_len
    cdef Py_ssize_t c0, c1, og, nc
    cdef Py_ssize_t rows[2]
    cdef Py_ssize_t geometry[6]
    cdef const floating* x
    cdef const floating* m
    cdef const floating* off
    cdef floating* dst
    geometry[:] = [p.sh, p.sw, p.dh, p.dw, p.pad_top, p.pad_left]
    c0 = g * p.Cg
    while c0 < (g + 1) * p.Cg:
        og = c0 // per_group
        c1 = _min((og + 1) * per_group, (g + 1) * p.Cg)
        nc = c1 - c0
        off = (<const floating*>p.offset) + (n * p.offset_groups + og) * 2 * RS * HoWo
        if floating is float:
            convcpu_deform_table_f32(off, p.Ho, p.Wo, p0, npix, p.R, p.S, geometry, p.H, p.W,
                                     idx, wt, rows)
        else:
            convcpu_deform_table_f64(off, p.Ho, p.Wo, p0, npix, p.R, p.S, geometry, p.H, p.W,
                                     idx, wt, rows)
        m = NULL
        if p.mask != NULL:
            m = (<const floating*>p.mask) + (n * p.offset_groups + og) * RS * HoWo + p0
        x = (<const floating*>p.x) + (n * p.C + c0) * HW
        dst = col + (c0 - g * p.Cg) * RS
        if (rows[1] - rows[0]) * p.W * nc <= p.band_elems:
            if floating is float:
                convcpu_deform_band_f32(x, HW, nc, p.W, rows[0], rows[1], band)
                convcpu_deform_vector_f32(band, rows[0] * p.W, nc, npix, RS, idx, wt, m, HoWo,
                                          dst, p.Cg * RS, tmp)
            else:
                convcpu_deform_band_f64(x, HW, nc, p.W, rows[0], rows[1], band)
                convcpu_deform_vector_f64(band, rows[0] * p.W, nc, npix, RS, idx, wt, m, HoWo,
                                          dst, p.Cg * RS, tmp)
        elif floating is float:
            convcpu_deform_planes_f32(x, HW, nc, npix, RS, idx, wt, m, HoWo, dst, p.Cg * RS)
        else:
            convcpu_deform_planes_f64(x, HW, nc, npix, RS, idx, wt, m, HoWo, dst, p.Cg * RS)
        c0 = c1


cdef void _store_tile(const ConvPlan* p, const floating* tile, Py_ssize_t n0,
                      Py_ssize_t nsamp, Py_ssize_t p0, Py_ssize_t npix, Py_ssize_t k0,
                      Py_ssize_t kn, floating* out) noexcept nogil:
    """Copy a finished tile to its place in out: NCHW tiles are (kn, nsamp*npix),
    NHWC tiles (nsamp*npix, kn); output pixel (i, j) of the plan lands at
    (i*osh + oa, j*osw + ob) of the OH x OW output."""
    cdef Py_ssize_t OHW = p.OH * p.OW
    cdef Py_ssize_t cols = nsamp * npix
    cdef Py_ssize_t s, j, kk, pix, i, jj, run, dest
    cdef const floating* src
    cdef floating* dst
    for s in range(nsamp):
        j = 0
        while j < npix:  # one output row of the plan at a time
            pix = p0 + j
            i = pix // p.Wo
            jj = pix - i * p.Wo
            # Without an output map the tile's pixels are contiguous in out.
            run = _min(npix - j, p.Wo - jj) if p.scatter else npix - j
            dest = (i * p.osh + p.oa) * p.OW + jj * p.osw + p.ob
            if p.channels_last:
                dst = out + ((n0 + s) * OHW + dest) * p.K + k0
                src = tile + (s * npix + j) * kn
                for pix in range(run):
                    memcpy(dst + pix * p.osw * p.K, src + pix * kn, kn * sizeof(floating))
            else:
                for kk in range(kn):
                    dst = out + ((n0 + s) * p.K + k0 + kk) * OHW + dest
                    src = tile + kk * cols + s * npix + j
                    if p.osw == 1:
                        memcpy(dst, src, run * sizeof(floating))
                    else:
                        for pix in range(run):
                            dst[pix * p.osw] = src[pix]
            j += run


cdef inline Py_ssize_t _floor_div(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    """floor(a / b) for b > 0 (cdivision truncates)."""
    return a // b if a >= 0 else -((-a + b - 1) // b)


cdef Py_ssize_t _phase_band(const ConvPlan* p, Py_ssize_t p0, Py_ssize_t npix,
                            Py_ssize_t* rows) noexcept nogil:
    """The rows of the phase planes (see convcpu_sconv_implicit) that output
    pixels p0 .. p0+npix-1 read: the first is returned, their count (>= 1,
    <= p.phase_rows) goes to rows.  Output row oh reads plane row oh + fr,
    fr = floor((r*dh - pad_top) / sh) for r < R; plane rows are input rows
    v*sh + fh, so only v < ceil(H / sh) hold any."""
    cdef Py_ssize_t lo = p0 // p.Wo + _floor_div(-p.pad_top, p.sh)
    cdef Py_ssize_t hi = (p0 + npix - 1) // p.Wo + _floor_div((p.R - 1) * p.dh - p.pad_top,
                                                              p.sh) + 1
    lo = _max(lo, 0)
    hi = _min(hi, _ceil_div(p.H, p.sh))
    rows[0] = _max(hi - lo, 1)
    return lo


cdef void _phase_copy(const ConvPlan* p, const float* xg, Py_ssize_t v0, Py_ssize_t rows,
                      float* dst) noexcept nogil:
    """Rows v0 .. v0+rows-1 of the phase planes of the Cg channels of xg (one
    sample's group) into dst: channel c, plane (fh, fw), row b at
    dst + ((c*sh + fh)*sw + fw)*rows*Wo + b*Wo, element u = input
    (c, (v0 + b)*sh + fh, u*sw + fw), 0 outside the image."""
    cdef Py_ssize_t c, fh, fw, b, u, ih, iw, n
    cdef const float* src
    cdef float* row
    for c in range(p.Cg):
        for fh in range(p.sh):
            for fw in range(p.sw):
                for b in range(rows):
                    row = dst + (((c * p.sh + fh) * p.sw + fw) * rows + b) * p.Wo
                    ih = (v0 + b) * p.sh + fh
                    n = 0 if ih >= p.H or fw >= p.W else _min(p.Wo, _ceil_div(p.W - fw, p.sw))
                    if n > 0:
                        src = xg + (c * p.H + ih) * p.W + fw
                        if p.sw == 1:
                            memcpy(row, src, n * sizeof(float))
                        elif p.sw == 2:  # a constant stride: vectorised
                            for u in range(n):
                                row[u] = src[2 * u]
                        else:
                            for u in range(n):
                                row[u] = src[u * p.sw]
                    if n < p.Wo:
                        memset(row + n, 0, (p.Wo - n) * sizeof(float))


cdef void _run_task(const ConvPlan* p, Py_ssize_t t, floating* ws, floating* out_tile,
                    Py_ssize_t* last_tile) noexcept nogil:
    """One task: samples n0 .. n0+nsamp-1 (a group of whole samples, or one
    sample), output pixels p0 .. p0+npix-1 of each, output channels k0 .. k0+kn-1
    of group g."""
    cdef Py_ssize_t kb = t % p.n_kblocks
    cdef Py_ssize_t tile = t // p.n_kblocks
    cdef Py_ssize_t pt = tile % p.n_ptiles
    cdef Py_ssize_t g = (tile // p.n_ptiles) % p.groups
    cdef Py_ssize_t n0 = (tile // (p.n_ptiles * p.groups)) * p.spt
    cdef Py_ssize_t nsamp = _min(p.spt, p.N - n0)
    cdef Py_ssize_t HoWo = p.Ho * p.Wo
    cdef Py_ssize_t p0 = pt * p.ptile
    cdef Py_ssize_t npix = _min(p.ptile, HoWo - p0)
    cdef Py_ssize_t cols = nsamp * npix
    cdef Py_ssize_t k0 = g * p.Kg + kb * p.kblock
    cdef Py_ssize_t kn = _min(p.kblock, p.Kg - kb * p.kblock)
    cdef Py_ssize_t crs = p.Cg * p.R * p.S
    cdef const floating* x = <const floating*>p.x
    cdef const floating* w = <const floating*>p.w
    cdef const floating* bias = <const floating*>p.bias
    cdef floating* out = <floating*>p.out
    cdef const floating* b
    cdef Py_ssize_t ldb, ldc, j, kk, s
    cdef bint done
    cdef floating* c
    cdef const float* xs
    cdef Py_ssize_t v0, band_rows, cs, plane_rows, ci, lo, hi
    if p.implicit and nsamp > 1:
        # whole small images (plan: stride 1, H == Ho, W == Wo), gathered into
        # ws as (Cg, nsamp, H, W): their pixels fill the panels one after
        # another; into out_tile, then out
        if last_tile[0] != tile:
            for ci in range(p.Cg):
                for s in range(nsamp):
                    memcpy(<float*>ws + (ci * nsamp + s) * p.H * p.W,
                           <const float*>x + ((n0 + s) * p.C + g * p.Cg + ci) * p.H * p.W,
                           p.H * p.W * sizeof(float))
            last_tile[0] = tile
        if convcpu_sconv_implicit(kn, p.Cg, p.R, p.S, <const float*>w + k0 * crs, crs,
                                  <const float*>ws, nsamp * p.H * p.W, nsamp * p.H, p.W, p.H,
                                  p.W, p.Ho, 1, 1, p.pad_top, p.pad_left, p.dh, p.dw, 0, cols,
                                  <float*>out_tile, cols, 1,
                                  <const float*>bias + k0 if bias != NULL else NULL,
                                  0, p.Cg * nsamp * p.H * p.W):
            _store_tile(p, out_tile, n0, nsamp, 0, HoWo, k0, kn, out)
            return
        last_tile[0] = -1  # (the own GEMM was switched off: sample by sample below)
    if p.implicit:  # float32 (conv_forward): each sample straight into out
        for s in range(nsamp):
            c = out + ((n0 + s) * p.K + k0) * HoWo + p0
            b = x + ((n0 + s) * p.C + g * p.Cg) * p.H * p.W  # the sample's group
            xs = <const float*>b
            cs = p.H * p.W
            plane_rows = p.H
            lo, hi = 0, p.Cg * cs  # what the kernels may read: the sample's group
            if p.phases:  # plan_implicit: one sample per task
                v0 = _phase_band(p, p0, npix, &band_rows)
                if last_tile[0] != tile:
                    _phase_copy(p, xs, v0, band_rows, <float*>ws)
                    last_tile[0] = tile
                plane_rows = band_rows
                cs = p.sh * p.sw * band_rows * p.Wo
                xs = <const float*>ws - v0 * p.Wo
                lo, hi = v0 * p.Wo, v0 * p.Wo + p.Cg * cs  # ... or its copy in ws
            if not convcpu_sconv_implicit(kn, p.Cg, p.R, p.S, <const float*>w + k0 * crs, crs,
                                          xs, cs, plane_rows, p.Wo, p.H, p.W, p.Ho, p.sh,
                                          p.sw,
                                          p.pad_top, p.pad_left, p.dh, p.dw, p0, npix,
                                          <float*>c, HoWo, 1,
                                          <const float*>bias + k0 if bias != NULL else NULL,
                                          lo, hi):
                # the own GEMM was switched off since the plan was made: BLAS,
                # a panel's worth of pixels at a time (ws holds one)
                _fill_bias(c, HoWo, 1, bias + k0 if bias != NULL else NULL, kn, npix)
                last_tile[0] = -1
                j = 0
                while j < npix:
                    ldb = _min(CONVCPU_GEMM_PANEL, npix - j)
                    _im2col_nchw(p, b, p0 + j, ldb, ws, ldb)
                    gemm_colmajor(ldb, kn, crs, ws, ldb, w + k0 * crs, crs, 1, c + j, HoWo)
                    j += ldb
        return
    if not p.channels_last:
        if p.direct:  # one sample per task (plan_tiles)
            b = x + (n0 * p.C + g * p.Cg) * HoWo + p0
            ldb = HoWo
        else:
            if last_tile[0] != tile and p.panels:
                _im2col_panels(p, x + (n0 * p.C + g * p.Cg) * p.H * p.W, nsamp, p0, npix, ws)
                last_tile[0] = tile
            elif last_tile[0] != tile:
                for s in range(nsamp):
                    if p.kind == DEFORM:  # pixel-major: (cols x crs) row-major
                        _im2col_deform(p, n0 + s, g, p0, npix, ws + s * npix * crs,
                                       ws + p.col_elems)
                    else:
                        _im2col_nchw(p, x + ((n0 + s) * p.C + g * p.Cg) * p.H * p.W, p0, npix,
                                     ws + s * npix, cols)
                last_tile[0] = tile
            b = ws
            ldb = cols
        # One sample: straight into out (rows HoWo apart); several, or a
        # phase of a transposed convolution: into the thread's tile first.
        if nsamp == 1 and not p.scatter:
            c = out + (n0 * p.K + k0) * HoWo + p0
            ldc = HoWo
        else:
            c = out_tile
            ldc = cols
        done = False
        if floating is float:
            # the own GEMM's chains start from the bias: no pass over c to
            # preset it (the same bits as the preset and beta 1 below)
            done = (p.kind != DEFORM and not p.panels
                    and convcpu_sgemm_bias(kn, cols, crs, w + k0 * crs, crs, 1, b, ldb, 1,
                                           bias + k0 if bias != NULL else NULL, c, ldc))
        if not done:
            _fill_bias(c, ldc, 1, bias + k0 if bias != NULL else NULL, kn, cols)
            if p.kind == DEFORM:  # the same sums as CONV's: OpenBLAS packs both alike
                gemm_trans(c'T', c'N', cols, kn, crs, b, crs, w + k0 * crs, crs, 1, c, ldc)
            elif p.panels:
                _gemm_panels(kn, cols, crs, w + k0 * crs, b, c, ldc)
            else:
                gemm_colmajor(cols, kn, crs, b, ldb, w + k0 * crs, crs, 1, c, ldc)
        if c == out_tile:
            _store_tile(p, out_tile, n0, nsamp, p0, npix, k0, kn, out)
    else:
        # Several samples are whole images: their rows follow each other.
        if p.direct:
            b = x + (n0 * HoWo + p0) * p.C + g * p.Cg
            ldb = p.C
        else:
            if last_tile[0] != tile:
                for s in range(nsamp):
                    _im2col_nhwc(p, x + (n0 + s) * p.H * p.W * p.C, g * p.Cg, p0, npix,
                                 ws + s * npix * crs)
                last_tile[0] = tile
            b = ws
            ldb = crs
        # (more than 16 output channels: transposed only where the pixels
        # fill their vectors at least as well as the channels would)
        if p.narrow and (kn <= 16 or convcpu_sgemm_t_fills(kn, cols)):
            # Few output channels (a grouped conv: ResNeXt's 8 per group), or
            # not whole vectors of them (24), fill a fraction of the own GEMM's
            # 32-column panels when they are its columns; as its rows (pixels
            # along the vector) they do not.  The same chains as below: the
            # same bits.
            c = out + (n0 * HoWo + p0) * p.K + k0
            if floating is float:
                if convcpu_sgemm_bias_t(kn, cols, crs,
                                        w + k0 * crs if p.w_by_rows else w + k0,
                                        crs if p.w_by_rows else 1, 1 if p.w_by_rows else p.K,
                                        b, 1, ldb, bias + k0 if bias != NULL else NULL, c,
                                        p.K, out_tile):
                    return
            # (the own GEMM was switched off since the plan was made)
            _fill_bias(out_tile, cols, 1, bias + k0 if bias != NULL else NULL, kn, cols)
            if p.w_by_rows:
                gemm_trans(c'T', c'N', cols, kn, crs, b, ldb, w + k0 * crs, crs, 1, out_tile,
                           cols)
            else:
                gemm_trans(c'T', c'T', cols, kn, crs, b, ldb, w + k0, p.K, 1, out_tile, cols)
            for j in range(cols):
                for kk in range(kn):
                    c[j * p.K + kk] = out_tile[kk * cols + j]
            return
        if p.scatter:
            c = out_tile
            ldc = kn
        else:
            c = out + (n0 * HoWo + p0) * p.K + k0
            ldc = p.K
        for j in range(cols):
            if bias != NULL:
                memcpy(c + j * ldc, bias + k0, kn * sizeof(floating))
            else:
                memset(c + j * ldc, 0, kn * sizeof(floating))
        if p.w_by_rows:
            gemm_trans(c'T', c'N', kn, cols, crs, w + k0 * crs, crs, b, ldb, 1, c, ldc)
        else:
            gemm_colmajor(kn, cols, crs, w + k0, p.K, b, ldb, 1, c, ldc)
        if p.scatter:
            _store_tile(p, out_tile, n0, nsamp, p0, npix, k0, kn, out)


cdef void _patches_task(const ConvPlan* p, Py_ssize_t t, floating* out) noexcept nogil:
    """Patches of sample t // n_ptiles, pixel tile t % n_ptiles, into out:
    NCHW (N, C*R*S, Ho*Wo) rows (c, r, s); NHWC (N, Ho*Wo, R*S*C) columns (r, s, c)."""
    cdef Py_ssize_t n = t // p.n_ptiles
    cdef Py_ssize_t HoWo = p.Ho * p.Wo
    cdef Py_ssize_t p0 = (t % p.n_ptiles) * p.ptile
    cdef Py_ssize_t npix = _min(p.ptile, HoWo - p0)
    cdef Py_ssize_t crs = p.C * p.R * p.S
    cdef const floating* x = <const floating*>p.x
    if p.channels_last:
        _im2col_nhwc(p, x + n * p.H * p.W * p.C, 0, p0, npix, out + (n * HoWo + p0) * crs)
    else:
        _im2col_nchw(p, x + n * p.C * p.H * p.W, p0, npix, out + n * crs * HoWo + p0, HoWo)


cdef void _local_task(const ConvPlan* p, Py_ssize_t t, floating* ws,
                      floating* out_tile) noexcept nogil:
    """Locally connected layer at output positions LOCAL_CHUNK * (t // n_sgroups)
    onwards (LOCAL_CHUNK of them at most) for the samples of block t % n_sgroups.
    Each position's weights are read once, so those of the position two ahead
    are prefetched while one computes (one ahead is too late, three too early:
    docs/BENCHMARKS.md)."""
    cdef Py_ssize_t crs = p.C * p.R * p.S
    cdef Py_ssize_t pos0 = (t // p.n_sgroups) * LOCAL_CHUNK
    cdef Py_ssize_t pos1 = _min(pos0 + LOCAL_CHUNK, p.Ho * p.Wo)
    cdef Py_ssize_t pos
    # (A position's first 32 KB at most: longer streams the hardware prefetches.)
    cdef size_t wbytes = _min(crs * p.K * sizeof(floating), 32768)
    cdef const floating* w = <const floating*>p.w
    cdef Py_ssize_t n0 = (t % p.n_sgroups) * p.spt
    convcpu_prefetch(w + pos0 * crs * p.K, wbytes)
    if pos0 + 1 < pos1:
        convcpu_prefetch(w + (pos0 + 1) * crs * p.K, wbytes)
    for pos in range(pos0, pos1):
        if pos + 2 < pos1:
            convcpu_prefetch(w + (pos + 2) * crs * p.K, wbytes)
        _local_position(p, pos, n0, ws, out_tile)


cdef void _local_position(const ConvPlan* p, Py_ssize_t pos, Py_ssize_t n0, floating* ws,
                          floating* out_tile) noexcept nogil:
    """Output position pos for samples n0 .. n0+spt-1: their patches (one row
    each, Keras order) @ the position's own (C*R*S, K) weights, plus its bias
    (pre-expanded to (Ho*Wo, K))."""
    cdef Py_ssize_t nsamp = _min(p.spt, p.N - n0)
    cdef Py_ssize_t HoWo = p.Ho * p.Wo
    cdef Py_ssize_t crs = p.C * p.R * p.S
    cdef const floating* x = <const floating*>p.x
    cdef const floating* bias = <const floating*>p.bias
    cdef floating* out = <floating*>p.out
    cdef floating* c
    cdef Py_ssize_t s, k, ldc, r
    cdef Py_ssize_t oh = pos // p.Wo, ow = pos % p.Wo
    cdef Py_ssize_t ih0 = p.hmap[oh * p.sh], iw0 = p.wmap[ow * p.sw]
    # Channels-last with every tap inside the image (zero padding: the maps are
    # -1 outside, increasing inside): a patch is R rows of S*C contiguous
    # values, read in place by R products over consecutive parts of the sum
    # (each continues from the partial sums stored in c, so the bits are
    # those of one product over the gathered patch).
    cdef bint in_place = (p.channels_last and p.direct and ih0 >= 0 and iw0 >= 0
                          and p.hmap[oh * p.sh + (p.R - 1) * p.dh] >= 0
                          and p.wmap[ow * p.sw + (p.S - 1) * p.dw] >= 0 and p.dw == 1)
    if not in_place:
        for s in range(nsamp):
            if p.channels_last:
                _im2col_nhwc(p, x + (n0 + s) * p.H * p.W * p.C, 0, pos, 1, ws + s * crs)
            else:
                _im2col_nchw(p, x + (n0 + s) * p.C * p.H * p.W, pos, 1, ws + s * crs, 1)
    if p.channels_last:
        c = out + (n0 * HoWo + pos) * p.K
        ldc = HoWo * p.K
    else:
        c = out_tile
        ldc = p.K
    for s in range(nsamp):
        if bias != NULL:
            memcpy(c + s * ldc, bias + pos * p.K, p.K * sizeof(floating))
        else:
            memset(c + s * ldc, 0, p.K * sizeof(floating))
    if in_place:
        for r in range(p.R):
            _small_gemm(nsamp, p.S * p.C, p.K,
                        x + ((n0 * p.H + p.hmap[oh * p.sh + r * p.dh]) * p.W + iw0) * p.C,
                        p.H * p.W * p.C, <const floating*>p.w + (pos * p.R + r) * p.S * p.C * p.K,
                        c, ldc)
    elif p.direct:  # small: BLAS's per-call overhead would dominate
        _small_gemm(nsamp, crs, p.K, ws, crs, <const floating*>p.w + pos * crs * p.K, c, ldc)
    else:
        gemm_colmajor(p.K, nsamp, crs, <const floating*>p.w + pos * crs * p.K, p.K,
                      ws, crs, 1, c, ldc)
    if not p.channels_last:
        for s in range(nsamp):
            for k in range(p.K):
                out[((n0 + s) * p.K + k) * HoWo + pos] = out_tile[s * p.K + k]


cdef inline void _small_gemm(Py_ssize_t rows, Py_ssize_t depth, Py_ssize_t cols,
                             const floating* a, Py_ssize_t lda, const floating* w,
                             floating* out, Py_ssize_t ldo) noexcept nogil:
    if floating is float:
        convcpu_small_gemm_f32(rows, depth, cols, a, lda, w, out, ldo)
    else:
        convcpu_small_gemm_f64(rows, depth, cols, a, lda, w, out, ldo)


cdef inline void _col2im_row(floating* dst, const floating* src, Py_ssize_t src_stride,
                             Py_ssize_t taps, Py_ssize_t n, const floating* first) noexcept nogil:
    if floating is float:
        convcpu_col2im_row_f32(dst, src, src_stride, taps, n, first)
    else:
        convcpu_col2im_row_f64(dst, src, src_stride, taps, n, first)


cdef inline void _col2im_gather(floating* out, const ConvPlan* p, Py_ssize_t kn,
                                Py_ssize_t o_lo, Py_ssize_t o_hi, const floating* cols,
                                Py_ssize_t npix, Py_ssize_t ih_lo, Py_ssize_t ih_hi,
                                const floating* first, floating* ws) noexcept nogil:
    """convcpu_col2im_gather of kn planes; cols: a tile with GATHER_GUARD
    values before and after it; ws: the phases of a row (_gather_row_elems),
    then its indices."""
    cdef Py_ssize_t* idx = <Py_ssize_t*>(ws + _gather_row_elems(p))
    if floating is float:
        convcpu_col2im_gather_f32(out, p.Ho * p.Wo, kn, p.Wo, o_lo, o_hi, cols, npix, ih_lo,
                                  ih_hi, p.W, p.R, p.S, p.sh, p.sw, p.dh, p.dw, p.pad_top,
                                  p.pad_left, first, ws, idx)
    else:
        convcpu_col2im_gather_f64(out, p.Ho * p.Wo, kn, p.Wo, o_lo, o_hi, cols, npix, ih_lo,
                                  ih_hi, p.W, p.R, p.S, p.sh, p.sw, p.dh, p.dw, p.pad_top,
                                  p.pad_left, first, ws, idx)


cdef inline Py_ssize_t _transpose_tile_elems(const ConvPlan* p) noexcept nogil:
    # a task's column tile, rounded to an even count (what follows it in the
    # workspace stays 8-byte aligned)
    return _ceil_div(p.ptile * p.W * p.kblock * p.R * p.S, 2) * 2


cdef inline Py_ssize_t _gather_row_elems(const ConvPlan* p) noexcept nogil:
    # the phases of one output row (and a vector), rounded to an even count
    return _ceil_div(p.Wo + p.sw + GATHER_GUARD, 2) * 2


cdef inline Py_ssize_t _gather_ws_elems(const ConvPlan* p) noexcept nogil:
    # the tile's guards, the phases of one output row, then 2*(R + S) indices
    # (8-byte aligned: the workspace is, and every offset before them is even)
    return 2 * GATHER_GUARD + _gather_row_elems(p) + 2 * (p.R + p.S) * 2


cdef void _transpose_task(const ConvPlan* p, Py_ssize_t t, floating* ws) noexcept nogil:
    """Transposed convolution of sample n, output channels k0 .. k0+kn-1 of group
    g: the task owns those output channels, so its col2im adds race-free.  For
    each band of input rows: cols (npix x kn*R*S, column-major) = x_band @
    w_block (straight from the (C_in, C_out/groups, R, S) weight), then every
    column value is added to out[k, ih*sh - pad_top + r*dh, iw*sw - pad_left + s*dw]
    in a fixed order (the result does not depend on the thread count).

    When the kernel rows of neighbouring input rows do not overlap ((R-1)*dh <
    sh: U-Net's 2x2/2), the input rows are also cut into p.n_ptiles bands, one
    per task: a band owns the output rows its input rows reach, so a task
    packs only its band of x and gets all output channels (one GEMM with every
    kernel column instead of one per block of channels).

    p.gather (NCHW, and every owned output row gets its taps from one pass of
    the band loop): instead of adding each tap's column into the output, each
    output row is gathered from the tile and written once."""
    cdef Py_ssize_t band = t % p.n_ptiles
    cdef Py_ssize_t kb = (t // p.n_ptiles) % p.n_kblocks
    cdef Py_ssize_t g = (t // (p.n_ptiles * p.n_kblocks)) % p.groups
    cdef Py_ssize_t n = t // (p.n_ptiles * p.n_kblocks * p.groups)
    cdef Py_ssize_t band_rows = _ceil_div(p.H, p.n_ptiles)
    cdef Py_ssize_t h_start = _min(p.H, band * band_rows)
    cdef Py_ssize_t h_end = _min(p.H, h_start + band_rows)
    # the output rows [o_lo, o_hi) this task owns: the bands' ranges tile [0, Ho)
    cdef Py_ssize_t o_lo = 0 if band == 0 else _min(p.Ho, _max(0, h_start * p.sh - p.pad_top))
    cdef Py_ssize_t o_hi = p.Ho if band == p.n_ptiles - 1 else _min(p.Ho, _max(
        0, h_end * p.sh - p.pad_top))
    cdef Py_ssize_t k0 = g * p.Kg + kb * p.kblock
    cdef Py_ssize_t kn = _min(p.kblock, p.Kg - kb * p.kblock)
    cdef Py_ssize_t HW = p.H * p.W, OHW = p.Ho * p.Wo, RS = p.R * p.S
    cdef const floating* x = <const floating*>p.x
    cdef const floating* w = <const floating*>p.w
    cdef const floating* bias = <const floating*>p.bias
    cdef floating* out = <floating*>p.out
    cdef Py_ssize_t kk, h0, rows, npix, r, lo, hi
    cdef Py_ssize_t pstride = p.K if p.channels_last else 1
    cdef floating zero = 0
    cdef floating* tmp = NULL
    if p.gather:  # the tile between two guards (convcpu_col2im_gather's vectors)
        memset(ws, 0, GATHER_GUARD * sizeof(floating))
        ws += GATHER_GUARD
        memset(ws + _transpose_tile_elems(p), 0, GATHER_GUARD * sizeof(floating))
        tmp = ws + _transpose_tile_elems(p) + GATHER_GUARD
    cdef const floating* a
    cdef floating* dst
    # The owned output rows start at the bias, except when the taps tile the
    # output: then the col2im stores bias + value.
    if not p.tiles and not p.gather:
        if p.channels_last:
            dst = out + (n * OHW + o_lo * p.Wo) * p.K + k0
        else:
            dst = out + (n * p.K + k0) * OHW + o_lo * p.Wo
        _fill_bias(dst, 1 if p.channels_last else OHW, pstride,
                   bias + k0 if bias != NULL else NULL, kn, (o_hi - o_lo) * p.Wo)
    h0 = h_start
    while h0 < h_end:
        rows = _min(p.ptile, h_end - h0)
        npix = rows * p.W
        if p.channels_last:  # x band: (C x npix) column-major, transposed
            a = x + (n * HW + h0 * p.W) * p.C + g * p.Cg
            gemm_trans(c'T', c'T', npix, kn * RS, p.Cg, a, p.C,
                       w + g * p.Cg * p.Kg * RS + kb * p.kblock * RS, p.Kg * RS, 0, ws, npix)
        else:
            a = x + (n * p.C + g * p.Cg) * HW + h0 * p.W
            gemm_trans(c'N', c'T', npix, kn * RS, p.Cg, a, HW,
                       w + g * p.Cg * p.Kg * RS + kb * p.kblock * RS, p.Kg * RS, 0, ws, npix)
        if p.gather:
            # the output rows whose taps are all in input rows [h0, h0 + rows)
            lo = o_lo if h0 == h_start else _min(p.Ho, _max(0, h0 * p.sh - p.pad_top))
            hi = o_hi if h0 + rows == h_end else _min(p.Ho, _max(
                0, (h0 + rows) * p.sh - p.pad_top))
            _col2im_gather(out + (n * p.K + k0) * OHW, p, kn, lo, hi, ws - h0 * p.W, npix,
                           h0, h0 + rows, bias + k0 if bias != NULL else NULL, tmp)
            h0 += rows
            continue
        for kk in range(kn):
            if p.channels_last:
                dst = out + n * OHW * p.K + k0 + kk
            else:
                dst = out + (n * p.K + k0 + kk) * OHW
            for r in range(p.R):
                _col2im_kernel_row(p, dst, ws + (kk * p.R + r) * p.S * npix - h0 * p.W, npix,
                                   r, _max(p.ih_lo[r], h0), _min(p.ih_hi[r], h0 + rows),
                                   (bias + k0 + kk if bias != NULL else &zero) if p.tiles
                                   else <const floating*>NULL)
        h0 += rows


cdef void _col2im_kernel_row(const ConvPlan* p, floating* dst, const floating* cols,
                             Py_ssize_t npix, Py_ssize_t r, Py_ssize_t ilo, Py_ssize_t ihi,
                             const floating* first) noexcept nogil:
    """The col2im of kernel row r into dst (one output channel's plane, pixels
    pstride apart), input rows ilo .. ihi-1.  NCHW with column dilation 1:
    the taps go in blocks of sw consecutive columns, whose outputs interleave
    into one contiguous run of the output row (`_col2im_row`); the iw where
    some tap of the block falls outside the output, a last partial block, and
    every tap otherwise (NHWC, dilated columns) go tap by tap.  Within a block
    no two taps reach the same output, and blocks go in order, so every
    output gets its adds in kernel-column order.  cols: the column tile of
    (kk, r), offset so that cols[s*npix + ih*W + iw] is tap s at input pixel
    (ih, iw).  first != NULL (p.tiles: no tap is cut, and every output gets
    this one add): *first + the value is stored (see convcpu_col2im_row)."""
    cdef Py_ssize_t pstride = p.K if p.channels_last else 1
    cdef bint interleave = pstride == 1 and p.dw == 1
    cdef Py_ssize_t block = p.sw if interleave else 1
    cdef Py_ssize_t q0, nb, b, s, lo, hi, ih, iw, e_lo, e_hi
    cdef floating* row
    cdef const floating* src
    q0 = 0
    while q0 < p.S:
        nb = _min(block, p.S - q0)
        lo = 0
        hi = p.W
        if interleave and nb == p.sw:
            for b in range(nb):
                lo = _max(lo, p.ow_lo[q0 + b])
                hi = _min(hi, p.ow_hi[q0 + b])
        else:  # every tap by itself
            hi = lo
        hi = _max(hi, lo)
        for ih in range(ilo, ihi):
            row = dst + ((ih * p.sh - p.pad_top + r * p.dh) * p.Wo - p.pad_left) * pstride
            for b in range(nb):
                s = q0 + b
                src = cols + s * npix + ih * p.W
                e_hi = _min(lo, p.ow_hi[s])
                for iw in range(p.ow_lo[s], e_hi):
                    row[(s * p.dw + iw * p.sw) * pstride] += src[iw]
                e_lo = _max(hi, p.ow_lo[s])
                for iw in range(e_lo, p.ow_hi[s]):
                    row[(s * p.dw + iw * p.sw) * pstride] += src[iw]
            if hi > lo:
                _col2im_row(row + q0 + lo * p.sw, cols + q0 * npix + ih * p.W + lo, npix,
                            nb, hi - lo, first)
        q0 += nb


cdef inline void _dispatch(const ConvPlan* p, Py_ssize_t t, floating* ws, floating* out_tile,
                           Py_ssize_t* last_tile) noexcept nogil:
    if p.kind == CONV or p.kind == DEFORM:
        _run_task(p, t, ws, out_tile, last_tile)
    elif p.kind == PATCHES:
        _patches_task(p, t, <floating*>p.out)
    elif p.kind == TRANSPOSE:
        _transpose_task(p, t, ws)
    else:
        _local_task(p, t, ws, out_tile)


cdef int _run_plan(const ConvPlan* p, floating* out, int num_threads,
                   bint use_openmp) noexcept nogil:
    """Run every task of p (out is p.out, typed); 0 on success, -1 when a
    workspace could not be had."""
    cdef int failed = 0
    cdef int* failed_flag = &failed
    cdef Py_ssize_t t
    cdef floating* ws = NULL
    cdef floating* out_tile = NULL
    cdef Py_ssize_t* last_tile = NULL
    cdef Py_ssize_t last
    cdef size_t ws_bytes = _max(p.ws_elems, 1)
    cdef size_t out_tile_bytes = _max(p.out_elems, 1)
    cdef convcpu_region region
    cdef convcpu_region* tasks = &region
    ws_bytes *= sizeof(ws[0])
    out_tile_bytes *= sizeof(ws[0])
    if use_openmp and num_threads > 1 and p.n_tasks > 1:
        convcpu_region_init(tasks, p.n_tasks, num_threads)
        t = 0  # firstprivate in the region (Cython): give the copies a value
        with parallel(num_threads=num_threads):
            convcpu_region_enter(tasks)
            ws = <floating*>malloc(ws_bytes)
            out_tile = <floating*>malloc(out_tile_bytes)
            last_tile = <Py_ssize_t*>malloc(sizeof(Py_ssize_t))
            if ws == NULL or out_tile == NULL or last_tile == NULL:
                failed_flag[0] = 1
            else:
                last_tile[0] = -1
            t = convcpu_region_take(tasks)
            while t < p.n_tasks:
                if ws != NULL and out_tile != NULL and last_tile != NULL:
                    _dispatch(p, t, ws, out_tile, last_tile)
                t = convcpu_region_take(tasks)
            convcpu_region_leave(tasks)
            free(ws)
            free(out_tile)
            free(last_tile)
    else:
        ws = <floating*>malloc(ws_bytes)
        out_tile = <floating*>malloc(out_tile_bytes)
        if ws == NULL or out_tile == NULL:
            free(ws)
            free(out_tile)
            return -1
        last = -1
        for t in range(p.n_tasks):
            _dispatch(p, t, ws, out_tile, &last)
        free(ws)
        free(out_tile)
    return -1 if failed else 0


cdef bint _zero_padded_columns(const ConvPlan* p) noexcept nogil:
    """Whether wmap is zero padding (column pad p.pad_left)."""
    return _zero_padding(p.wmap, (p.Wo - 1) * p.sw + (p.S - 1) * p.dw + 1, p.pad_left, p.W)


cdef bint _zero_padded_rows(ConvPlan* p) noexcept nogil:
    """Whether hmap is zero padding; if so, set p.pad_top (hmap holds no pad:
    it is read off the first row inside the image)."""
    cdef Py_ssize_t q, n = (p.Ho - 1) * p.sh + (p.R - 1) * p.dh + 1
    p.pad_top = 0
    for q in range(n):
        if p.hmap[q] >= 0:
            p.pad_top = q - p.hmap[q]
            break
    return _zero_padding(p.hmap, n, p.pad_top, p.H)


cdef void _set_window(ConvPlan* p, cnp.ndarray x, cnp.ndarray out, cnp.ndarray hmap,
                      cnp.ndarray wmap, cnp.ndarray ow_lo, cnp.ndarray ow_hi, tuple dims,
                      bint channels_last) except *:
    """Fill the geometry, the index tables and the x / out pointers of p."""
    (p.C, p.H, p.W, p.K, p.R, p.S, p.Ho, p.Wo,
     p.sh, p.sw, p.dh, p.dw, p.pad_left, p.groups) = dims
    p.Cg = p.C // p.groups
    p.Kg = p.K // p.groups
    p.N = x.shape[0]
    p.channels_last = channels_last
    p.direct = False
    p.scatter = False
    p.narrow = False
    p.w_by_rows = False
    p.tiles = False
    p.gather = False
    p.panels = False
    p.implicit = False
    p.phases = False
    p.phase_rows = 0
    p.OH, p.OW, p.osh, p.osw, p.oa, p.ob = p.Ho, p.Wo, 1, 1, 0, 0
    p.kind = CONV
    p.hmap = <const Py_ssize_t*>cnp.PyArray_DATA(hmap)
    p.wmap = <const Py_ssize_t*>cnp.PyArray_DATA(wmap)
    p.ow_lo = <const Py_ssize_t*>cnp.PyArray_DATA(ow_lo)
    p.ow_hi = <const Py_ssize_t*>cnp.PyArray_DATA(ow_hi)
    p.x = cnp.PyArray_DATA(x)
    p.out = cnp.PyArray_DATA(out)
    p.w = NULL
    p.bias = NULL
    p.offset = NULL
    p.mask = NULL


EVEN_SAMPLE_GROUPS = True  # (a switch for benchmarks: False keeps the planned size)


@functools.lru_cache(maxsize=256)
def _makespan(n_batch, spt, per_group, threads):
    """The samples the busiest of `threads` threads computes when the tasks
    (sample groups of spt, each per_group tasks, the groups in order) go one
    at a time to the thread with the least work so far (the shared counter)."""
    loads = [0] * threads
    for n0 in range(0, n_batch, spt):
        for _ in range(per_group):
            heapq.heapreplace(loads, loads[0] + min(spt, n_batch - n0))
    return max(loads)


def _even_groups(Py_ssize_t n_batch, Py_ssize_t spt, Py_ssize_t per_group):
    """Samples per group for as many groups as `spt` makes, as even as one
    size for all allows, when that spreads the work better over the CORES:
    16 samples in groups of 5 (5, 5, 5, 1, a task each) become 4, 4, 4, 4
    (2 cores: 10 samples for the busiest against 8); 9, 7 become 8, 8.  6
    samples in groups of 5, and 2 tasks a group, stay 5, 1: each core
    computes 6 samples either way, and a lone sample goes straight from the
    input (as 3, 3 the gathered copies took 4-10% longer).  With many tasks
    a core the last group's share is small: the plan stays."""
    if not EVEN_SAMPLE_GROUPS or n_batch < 1 or spt < 1:
        return spt
    even = _ceil_div(n_batch, _ceil_div(n_batch, spt))
    if (even < spt and _ceil_div(n_batch, spt) * per_group <= 16 * CORES
            and _makespan(n_batch, even, per_group, CORES)
            < _makespan(n_batch, spt, per_group, CORES)):
        return even
    return spt


_PLANS = {}


def plan_tiles(Py_ssize_t n_batch, Py_ssize_t groups, Py_ssize_t out_pixels,
               Py_ssize_t out_per_group, Py_ssize_t reduction, Py_ssize_t itemsize,
               bint direct, bint channels_last, bint own_panels=False):
    """_plan_tiles, kept for the shape and the tuning constants it reads (a
    layer called again plans in 0.4 us instead of 1-2.6 us)."""
    key = (n_batch, groups, out_pixels, out_per_group, reduction, itemsize, direct,
           channels_last, own_panels, MIN_TASKS, CORES, EVEN_SAMPLE_GROUPS, TILE_BYTES,
           MIN_TILE_PIXELS, MIN_KBLOCK)
    return _geometry._cached(_PLANS, key, lambda: _plan_tiles(
        n_batch, groups, out_pixels, out_per_group, reduction, itemsize, direct,
        channels_last, own_panels))


def _plan_tiles(Py_ssize_t n_batch, Py_ssize_t groups, Py_ssize_t out_pixels,
                Py_ssize_t out_per_group, Py_ssize_t reduction, Py_ssize_t itemsize,
                bint direct, bint channels_last, bint own_panels):
    """Choose the tiling from the shape alone.

    Returns (samples per tile, pixels per tile, output channels per block,
    direct).  A tile's im2col buffer (reduction x pixels) fits TILE_BYTES
    (direct 1x1: a whole image); small images are gathered several whole
    samples to a tile.  While there are fewer than MIN_TASKS tasks, split
    further the dimension that is cheaper to re-pack: one more pixel tile (or
    sample group) re-packs the weight block, one more channel block re-packs
    the pixel tile.  Finally round the task count up to a multiple of
    MIN_TASKS (while it is small) so that the threads get equal shares.

    own_panels (NCHW float32 on the own GEMM: a tile's pixels are its
    columns, 32 to a panel, whether im2col writes them so or it packs them):
    the plan of one task a core instead when its busiest
    core runs at least 3% fewer panels (conv1d batch 32 L15: 4 tiles of 104
    columns, 3.5 panels each, 7 a core; 2 tiles of 208, 6.5 each).
    """
    cdef Py_ssize_t budget = TILE_BYTES // max(reduction * itemsize, 1)
    cdef Py_ssize_t spt0 = 1, ptile
    budget = max(MIN_TILE_PIXELS, budget - budget % 16)
    if n_batch > 1 and 2 * out_pixels <= budget:
        spt0 = min(n_batch, budget // out_pixels)
        # NCHW samples are not one strided matrix: gather them (a 1x1 im2col
        # is a copy) rather than GEMM on the input.
        direct = direct and channels_last
    ptile = out_pixels if (direct or spt0 > 1) else min(budget, out_pixels)

    def plan(min_tasks):
        spt, n_ptiles, n_kblocks = spt0, _ceil_div(out_pixels, ptile), 1

        def tasks():
            return _ceil_div(n_batch, spt) * groups * n_ptiles * n_kblocks

        def split_once():
            nonlocal spt, n_ptiles, n_kblocks
            pixels = spt * _ceil_div(out_pixels, n_ptiles)
            can_p = spt > 1 or _ceil_div(out_pixels, n_ptiles + 1) >= MIN_TILE_PIXELS
            can_k = _ceil_div(out_per_group, n_kblocks + 1) >= MIN_KBLOCK
            if can_p and (not can_k or _ceil_div(out_per_group, n_kblocks) <= pixels):
                if spt > 1:
                    # one more sample group (4 samples in groups of 2: 2 -> 1; a
                    # plain ceil(4 / 3) = 2 made no progress and the loop never ended)
                    groups_now = _ceil_div(n_batch, spt)
                    spt = _ceil_div(n_batch, groups_now + 1)
                    while spt > 1 and _ceil_div(n_batch, spt) <= groups_now:
                        spt -= 1
                else:
                    n_ptiles += 1
            elif can_k:
                n_kblocks += 1
            else:
                return False
            return True

        while tasks() < min_tasks and split_once():
            pass
        while tasks() % min_tasks and tasks() < 8 * min_tasks and split_once():
            pass
        spt = _even_groups(n_batch, spt, groups * n_ptiles * n_kblocks)
        return spt, _ceil_div(out_pixels, n_ptiles), max(1, _ceil_div(out_per_group, n_kblocks))

    def busiest_panels(found):
        spt, pixels, kblock = found
        tasks = (_ceil_div(n_batch, spt) * groups * _ceil_div(out_pixels, pixels)
                 * _ceil_div(out_per_group, kblock))
        return _ceil_div(tasks, CORES) * _panel_units(spt * pixels, spt * pixels) * kblock

    found = plan(MIN_TASKS)
    if own_panels and not direct and CORES < MIN_TASKS:
        one_a_core = plan(CORES)
        if 100 * busiest_panels(one_a_core) <= 97 * busiest_panels(found):
            found = one_a_core
    return int(found[0]), int(found[1]), int(found[2]), bool(direct)


def _panel_units(Py_ssize_t out_pixels, Py_ssize_t ptile):
    """The own GEMM's work on pixel tiles of ptile, in 32-column panels: a
    panel of <= 16 columns runs half-width kernels (half a panel)."""
    cdef Py_ssize_t P = CONVCPU_GEMM_PANEL, units = 0, n
    for p0 in range(0, out_pixels, ptile):
        n = min(ptile, out_pixels - p0)
        units += 2 * (n // P) + (0 if n % P == 0 else 1 if n % P <= P // 2 else 2)
    return units


def plan_gathered(Py_ssize_t n_batch, Py_ssize_t groups, Py_ssize_t out_pixels,
                  Py_ssize_t out_per_group, Py_ssize_t sample_bytes):
    """The tiling of an implicit convolution of small images gathered whole,
    several to a task: (samples per task, out_pixels, output channels per
    block).  Samples fill about IMPLICIT_GATHER_PIXELS pixels, their copy
    fits TILE_BYTES, and there are MIN_TASKS tasks (fewer samples per task,
    after blocks of output channels of at least IMPLICIT_MIN_KBLOCK)."""
    cdef Py_ssize_t spt = max(1, min(n_batch, IMPLICIT_GATHER_PIXELS // max(out_pixels, 1),
                                     TILE_BYTES // max(sample_bytes, 1)))
    cdef Py_ssize_t kblocks = max(1, out_per_group // IMPLICIT_MIN_KBLOCK)
    while spt > 1 and _ceil_div(n_batch, spt) * groups * kblocks < MIN_TASKS:
        spt -= 1
    n_kblocks = 1
    while (_ceil_div(n_batch, spt) * groups * n_kblocks < MIN_TASKS
           and _ceil_div(out_per_group, n_kblocks + 1) >= IMPLICIT_MIN_KBLOCK):
        n_kblocks += 1
    return (int(_even_groups(n_batch, spt, groups * n_kblocks)), int(out_pixels),
            int(max(1, _ceil_div(out_per_group, n_kblocks))))


def plan_implicit(Py_ssize_t n_batch, Py_ssize_t groups, Py_ssize_t out_pixels,
                  Py_ssize_t out_per_group, Py_ssize_t max_pixels=-1):
    """The tiling of an implicit convolution (no im2col tile: a task may be a
    whole sample), from the shape alone: (1, pixels per tile, output channels
    per block).  While there are fewer than MIN_TASKS tasks (then while their
    count is not a multiple of MIN_TASKS, up to 8 x MIN_TASKS), split the
    output channels, into blocks of at least IMPLICIT_MIN_KBLOCK, before the
    pixels: a block of channels rereads the input, which costs less than a
    ragged panel (a pixel tile of 98 runs 4 panels for 3.06 panels of work).
    Pixel tiles are whole panels (CONVCPU_GEMM_PANEL) spread evenly, of at
    most max_pixels (when >= 0: a phase copy's bound) rounded down to panels."""
    cdef Py_ssize_t P = CONVCPU_GEMM_PANEL
    cdef Py_ssize_t n_panels = max(1, _ceil_div(out_pixels, P))
    cdef Py_ssize_t n_ptiles = 1, n_kblocks = 1
    if 0 <= max_pixels < out_pixels:
        n_ptiles = min(n_panels, _ceil_div(n_panels, max(1, max_pixels // P)))

    def split_once():
        nonlocal n_ptiles, n_kblocks
        if _ceil_div(out_per_group, n_kblocks + 1) >= IMPLICIT_MIN_KBLOCK:
            n_kblocks += 1
        elif n_ptiles < n_panels:
            n_ptiles += 1
        else:
            return False
        return True

    def tasks():
        return n_batch * groups * _ceil_div(n_panels, _ceil_div(n_panels, n_ptiles)) * n_kblocks

    while tasks() < MIN_TASKS and split_once():
        pass
    while tasks() % MIN_TASKS and tasks() < 8 * MIN_TASKS and split_once():
        pass
    ptile = out_pixels if n_ptiles == 1 else _ceil_div(n_panels, n_ptiles) * P
    return 1, int(max(1, ptile)), int(max(1, _ceil_div(out_per_group, n_kblocks)))


def conv_forward(cnp.ndarray x, cnp.ndarray w, object bias, cnp.ndarray out,
                 cnp.ndarray hmap, cnp.ndarray wmap, cnp.ndarray ow_lo, cnp.ndarray ow_hi,
                 tuple dims, bint channels_last, bint direct,
                 int num_threads, bint use_openmp, tuple out_map=None,
                 bint weight_by_rows=False):
    """Run a prepared 2-D convolution; every argument is checked by convcpu.conv.

    x: (N, C, H, W) or (N, H, W, C) C-contiguous, float32 or float64.
    w: (K, Cg*R*S) for NCHW, (R*S*Cg, K) for NHWC (with weight_by_rows:
    (K, R*S*Cg), OHWI flattened), same dtype.
    bias: (K,) or None.  out: (N, K, Ho, Wo) or (N, Ho, Wo, K), written whole.
    hmap / wmap / ow_lo / ow_hi: intp index tables (see the module comment).
    dims: (C, H, W, K, R, S, Ho, Wo, sh, sw, dh, dw, pad_left, groups).
    out_map: None (out is (N, K, Ho, Wo) / (N, Ho, Wo, K)), or (OH, OW, osh,
    osw, oa, ob): out is (N, K, OH, OW) / (N, OH, OW, K) and output pixel
    (i, j) is written at (i*osh + oa, j*osw + ob); no other pixel is touched.
    """
    cdef ConvPlan p
    cdef cnp.ndarray bias_arr
    cdef int status
    _set_window(&p, x, out, hmap, wmap, ow_lo, ow_hi, dims, channels_last)
    if out_map is not None:
        p.OH, p.OW, p.osh, p.osw, p.oa, p.ob = out_map
        p.scatter = True
    p.w_by_rows = channels_last and weight_by_rows
    p.w = cnp.PyArray_DATA(w)
    if bias is None:
        p.bias = NULL
    else:
        bias_arr = bias
        p.bias = cnp.PyArray_DATA(bias_arr)
    # Stride 1, output rows as wide as the input's: the input itself is the
    # implicit convolution's plane; otherwise a task copies phase planes.
    in_place = p.sh == 1 and p.sw == 1 and p.Wo == p.W
    gather = in_place and p.Ho == p.H  # small images may go whole to a task
    # (and whose fallback panel, P x Cg, fits TILE_BYTES: not 2**31 channels)
    one_by_one = (direct and convcpu_implicit_and_get() == 1
                  and IMPLICIT_1X1_CHANNELS <= p.Cg
                  and p.Cg <= TILE_BYTES // (CONVCPU_GEMM_PANEL * x.itemsize))
    # (a phase plane is Wo wide: every input column must have a place in it)
    p.implicit = (IMPLICIT_GEMM and not channels_last and (one_by_one or not direct)
                  and not p.scatter
                  and _ceil_div(p.W, p.sw) <= p.Wo and p.R * p.S <= IMPLICIT_TAPS
                  and (p.N == 1 or p.Ho * p.Wo > CONVCPU_GEMM_PANEL // 2 or gather)
                  and x.dtype.num == cnp.NPY_FLOAT and convcpu_gemm_get() == 1
                  and (IMPLICIT_PHASES or in_place)
                  and _zero_padded_columns(&p) and _zero_padded_rows(&p))
    p.phases = p.implicit and not in_place
    direct = direct and not p.implicit
    max_pixels = p.Ho * p.Wo
    if p.phases:
        # a task's phase rows fit TILE_BYTES: its output rows, plus the rows
        # its taps reach beyond them
        extra = (_floor_div((p.R - 1) * p.dh - p.pad_top, p.sh)
                 - _floor_div(-p.pad_top, p.sh) + 1)
        max_rows = TILE_BYTES // (4 * p.Cg * p.sh * p.sw * p.Wo) - extra - 1
        max_pixels = max_rows * p.Wo
        p.implicit = p.phases = max_pixels >= CONVCPU_GEMM_PANEL
    if p.implicit:
        if gather and p.N > 1 and p.Ho * p.Wo < IMPLICIT_GATHER_PIXELS:
            spt, ptile, kblock = plan_gathered(p.N, p.groups, p.Ho * p.Wo, p.Kg,
                                               p.Cg * p.H * p.W * 4)
        else:
            spt, ptile, kblock = plan_implicit(p.N, p.groups, p.Ho * p.Wo, p.Kg, max_pixels)
        if p.phases:
            p.phase_rows = _min(_ceil_div(p.H, p.sh), _ceil_div(ptile, p.Wo) + 1 + extra)
    else:
        spt, ptile, kblock, direct = plan_tiles(p.N, p.groups, p.Ho * p.Wo, p.Kg,
                                                p.Cg * p.R * p.S, x.itemsize, direct,
                                                channels_last,
                                                not channels_last
                                                and x.dtype.num == cnp.NPY_FLOAT
                                                and convcpu_gemm_get() == 1)
        if (direct and not channels_last and spt == 1 and x.dtype.num == cnp.NPY_FLOAT
                and convcpu_gemm_get() == 1):
            # A 1x1 conv on the input in place (the own GEMM packs its panels;
            # the implicit kernels' reads, a channel plane apart, measured
            # 6-38% slower there): the tiling of plan_implicit when its whole
            # panels run fewer of them (1024->256 @14: 2 tiles of 98 pixels
            # ran 2 x 3.5 panels for 6.125 panels of work; now 4.6% faster).
            _, ptile2, kblock2 = plan_implicit(p.N, p.groups, p.Ho * p.Wo, p.Kg)
            if (_panel_units(p.Ho * p.Wo, ptile2) * _ceil_div(p.Kg, kblock2) * kblock2
                    < _panel_units(p.Ho * p.Wo, ptile) * _ceil_div(p.Kg, kblock) * kblock):
                ptile, kblock = ptile2, kblock2
    p.direct = direct
    p.spt = spt
    p.ptile = ptile
    p.kblock = kblock
    p.n_sgroups = _ceil_div(p.N, p.spt)
    p.n_ptiles = _ceil_div(p.Ho * p.Wo, p.ptile)
    p.n_kblocks = _ceil_div(p.Kg, p.kblock)
    p.n_tasks = p.n_sgroups * p.groups * p.n_ptiles * p.n_kblocks
    p.ws_elems = 0 if direct else p.spt * p.ptile * p.Cg * p.R * p.S
    # (Only when blocks of output channels share a tile: each of their tasks
    # packed it again.  With one block, its packing pass from the L3-sized
    # tile measured faster than the kernels reading the panels there: 128->128
    # @28 batch 8, 2-4% slower on panels.)
    p.panels = (IM2COL_PANELS and not p.implicit and not channels_last and not direct
                and p.sw == 1
                and (p.n_kblocks > 1 or p.Wo < IM2COL_PANELS_ROWS)
                and x.dtype.num == cnp.NPY_FLOAT
                and convcpu_gemm_get() == 1 and _zero_padded_columns(&p))
    if p.panels:  # whole panels
        p.ws_elems = (_ceil_div(p.spt * p.ptile, CONVCPU_GEMM_PANEL) * CONVCPU_GEMM_PANEL
                      * p.Cg * p.R * p.S)
    p.narrow = (channels_last and not p.scatter and x.dtype.num == cnp.NPY_FLOAT
                and convcpu_gemm_get() == 1
                and (p.kblock <= NARROW_MAX_CHANNELS
                     or (p.kblock <= NARROW_RAGGED_MAX_CHANNELS and p.kblock % 16 != 0)))
    p.out_elems = (p.spt * p.ptile * p.kblock
                   if p.scatter or p.narrow or (p.spt > 1 and not channels_last) else 0)
    if p.narrow:  # (convcpu_sgemm_bias_t's workspace)
        p.out_elems = _max(p.out_elems, p.kblock * CONVCPU_SGEMM_T_COLS)
    if p.implicit:  # no tile: a panel's, if the own GEMM is switched off (_run_task)
        p.ws_elems = CONVCPU_GEMM_PANEL * p.Cg * p.R * p.S
        p.ws_elems = _max(p.ws_elems, p.Cg * p.sh * p.sw * p.phase_rows * p.Wo)
        p.out_elems = 0
        if p.spt > 1:  # gathered images and their output tile
            p.ws_elems = _max(p.ws_elems, p.spt * p.Cg * p.H * p.W)
            p.out_elems = p.spt * p.Ho * p.Wo * p.kblock
    _execute(&p, x.dtype.num == cnp.NPY_FLOAT, num_threads, use_openmp)
    return out


# The vector width of the C kernels (CONVCPU_VBYTES in _kernels.h).
VECTOR_BYTES = 64
# Deformable convolution samples from a per-thread channels-last copy of the
# input rows a tile reads, when they fit this, else from the planes (measured
# on the 64->64 @56 layer, one thread: sampling 0.8 ms from the band, 1.4 ms
# from the planes); 1 MB holds ~70 rows of 64 channels x 56 columns
# (float32), enough for offsets of many pixels around a tile of 16 rows.
DEFORM_BAND_BYTES = 1024 * 1024


def deform_forward(cnp.ndarray x, cnp.ndarray offset, object mask, cnp.ndarray w,
                   object bias, cnp.ndarray out, cnp.ndarray hmap, cnp.ndarray wmap,
                   cnp.ndarray ow_lo, cnp.ndarray ow_hi, tuple dims, Py_ssize_t pad_top,
                   Py_ssize_t offset_groups, int num_threads, bint use_openmp):
    """Deformable convolution (NCHW), checked by convcpu.deform: x (N, C, H, W),
    offset (N, 2*O*R*S, Ho, Wo), mask (N, O*R*S, Ho, Wo) or None, w (K, Cg*R*S),
    bias (K,) or None, all C-contiguous in one dtype; out (N, K, Ho, Wo).

    The tasks and tiles are those of conv_forward for the same shape (so zero
    offsets give conv_forward's result bit for bit), with pixel-major im2col
    tiles.  After a thread's tile its workspace holds the sampling table (four
    corner indices, then four weights, per tap and pixel), a transposition
    buffer of R*S vectors and a band buffer of DEFORM_BAND_BYTES for the input
    rows a table reads, channels last.
    """
    cdef ConvPlan p
    cdef cnp.ndarray bias_arr, mask_arr
    cdef Py_ssize_t entries
    _set_window(&p, x, out, hmap, wmap, ow_lo, ow_hi, dims, False)
    p.kind = DEFORM
    p.pad_top = pad_top
    p.offset_groups = offset_groups
    p.offset = cnp.PyArray_DATA(offset)
    p.mask = NULL
    if mask is not None:
        mask_arr = mask
        p.mask = cnp.PyArray_DATA(mask_arr)
    p.w = cnp.PyArray_DATA(w)
    if bias is not None:
        bias_arr = bias
        p.bias = cnp.PyArray_DATA(bias_arr)
    spt, ptile, kblock, _ = plan_tiles(p.N, p.groups, p.Ho * p.Wo, p.Kg, p.Cg * p.R * p.S,
                                       x.itemsize, False, False)
    p.spt, p.ptile, p.kblock = spt, ptile, kblock
    p.n_sgroups = _ceil_div(p.N, p.spt)
    p.n_ptiles = _ceil_div(p.Ho * p.Wo, p.ptile)
    p.n_kblocks = _ceil_div(p.Kg, p.kblock)
    p.n_tasks = p.n_sgroups * p.groups * p.n_ptiles * p.n_kblocks
    p.col_elems = p.spt * p.ptile * p.Cg * p.R * p.S
    p.col_elems += p.col_elems % 2  # the table's indices start 8-byte aligned
    entries = 4 * p.R * p.S * p.ptile
    p.vector_len = VECTOR_BYTES // x.itemsize
    p.band_elems = DEFORM_BAND_BYTES // x.itemsize
    p.index_elems = entries * sizeof(Py_ssize_t) // x.itemsize
    p.ws_elems = (p.col_elems + p.index_elems + entries + p.R * p.S * p.vector_len
                  + p.band_elems)
    p.out_elems = p.spt * p.ptile * p.kblock if p.spt > 1 else 0
    _execute(&p, x.dtype.num == cnp.NPY_FLOAT, num_threads, use_openmp)
    return out


cdef void _execute(ConvPlan* p, bint single, int num_threads, bint use_openmp) except *:
    """Run a filled plan with the GIL released."""
    cdef int status
    if single:
        with nogil:
            status = _run_plan(p, <float*>p.out, num_threads, use_openmp)
    else:
        with nogil:
            status = _run_plan(p, <double*>p.out, num_threads, use_openmp)
    if status != 0:
        raise MemoryError("convcpu: could not allocate a per-thread workspace")


def patches_forward(cnp.ndarray x, cnp.ndarray out, cnp.ndarray hmap, cnp.ndarray wmap,
                    cnp.ndarray ow_lo, cnp.ndarray ow_hi, tuple dims, bint channels_last,
                    int num_threads, bint use_openmp):
    """im2col of a batch straight into out: x (N, C, H, W) -> out (N, C*R*S, Ho*Wo),
    or x (N, H, W, C) -> out (N, Ho*Wo, R*S*C); dims as for conv_forward."""
    cdef ConvPlan p
    _set_window(&p, x, out, hmap, wmap, ow_lo, ow_hi, dims, channels_last)
    p.kind = PATCHES
    p.groups, p.Cg = 1, p.C
    p.ptile = max(MIN_TILE_PIXELS, PATCH_TILE_BYTES // max(p.C * p.R * p.S * x.itemsize, 1))
    p.ptile = min(p.ptile, max(1, p.Ho * p.Wo))
    p.n_ptiles = _ceil_div(p.Ho * p.Wo, p.ptile)
    p.n_tasks = p.N * p.n_ptiles
    p.ws_elems = p.out_elems = 0
    _execute(&p, x.dtype.num == cnp.NPY_FLOAT, num_threads, use_openmp)
    return out


def local_forward(cnp.ndarray x, cnp.ndarray w, object bias, cnp.ndarray out,
                  cnp.ndarray hmap, cnp.ndarray wmap, cnp.ndarray ow_lo, cnp.ndarray ow_hi,
                  tuple dims, bint channels_last, int num_threads, bint use_openmp):
    """Locally connected layer: w (Ho*Wo, C*R*S, K) with rows in Keras order
    ((r, s, c) for NHWC, (c, r, s) for NCHW); bias (Ho*Wo, K) or None;
    out (N, Ho, Wo, K) or (N, K, Ho, Wo)."""
    cdef ConvPlan p
    cdef cnp.ndarray bias_arr
    _set_window(&p, x, out, hmap, wmap, ow_lo, ow_hi, dims, channels_last)
    p.kind = LOCAL
    p.groups, p.Cg, p.Kg = 1, p.C, p.K
    p.w = cnp.PyArray_DATA(w)
    if bias is not None:
        bias_arr = bias
        p.bias = cnp.PyArray_DATA(bias_arr)
    # A block of samples' patches per task, at most TILE_BYTES.
    p.spt = max(1, min(p.N, TILE_BYTES // max(p.C * p.R * p.S * x.itemsize, 1)))
    p.n_sgroups = _ceil_div(p.N, p.spt)
    p.n_tasks = _ceil_div(p.Ho * p.Wo, LOCAL_CHUNK) * p.n_sgroups
    p.ws_elems = p.spt * p.C * p.R * p.S
    p.out_elems = 0 if channels_last else p.spt * p.K
    p.direct = p.K <= LOCAL_DIRECT_MAX_FILTERS
    _execute(&p, x.dtype.num == cnp.NPY_FLOAT, num_threads, use_openmp)
    return out


cdef void _col2im_plane(const floating* cols, floating* plane, const Py_ssize_t* outer,
                        const Py_ssize_t* inner, Py_ssize_t KO, Py_ssize_t KI,
                        Py_ssize_t LO, Py_ssize_t LI, Py_ssize_t plane_size) noexcept nogil:
    """Sum the columns of one (sample, channel) into its output plane, in a fixed
    order.  Row ko*KI + ki of cols, column lo*LI + li adds to plane[outer[ko, lo]
    + inner[ki, li]] unless either offset is -1 (a padded position)."""
    cdef Py_ssize_t ko, ki, lo, li, base, t
    cdef const floating* row
    cdef const Py_ssize_t* inner_k
    memset(plane, 0, plane_size * sizeof(floating))
    for ko in range(KO):
        for ki in range(KI):
            row = cols + (ko * KI + ki) * LO * LI
            inner_k = inner + ki * LI
            for lo in range(LO):
                base = outer[ko * LO + lo]
                if base < 0:
                    continue
                for li in range(LI):
                    t = inner_k[li]
                    if t >= 0:
                        plane[base + t] += row[lo * LI + li]


cdef void _col2im_all(const floating* cols, floating* out, const Py_ssize_t* outer,
                      const Py_ssize_t* inner, Py_ssize_t planes, Py_ssize_t KO,
                      Py_ssize_t KI, Py_ssize_t LO, Py_ssize_t LI, Py_ssize_t plane_size,
                      int num_threads, bint use_openmp) noexcept nogil:
    cdef Py_ssize_t q
    cdef Py_ssize_t col_size = KO * KI * LO * LI
    cdef convcpu_region region
    cdef convcpu_region* tasks = &region
    if use_openmp and num_threads > 1 and planes > 1:
        convcpu_region_init(tasks, planes, num_threads)
        q = 0  # firstprivate in the region (Cython): give the copies a value
        with parallel(num_threads=num_threads):
            convcpu_region_enter(tasks)
            q = convcpu_region_take(tasks)
            while q < planes:
                _col2im_plane(cols + q * col_size, out + q * plane_size, outer, inner,
                              KO, KI, LO, LI, plane_size)
                q = convcpu_region_take(tasks)
            convcpu_region_leave(tasks)
    else:
        for q in range(planes):
            _col2im_plane(cols + q * col_size, out + q * plane_size, outer, inner,
                          KO, KI, LO, LI, plane_size)


def col2im_forward(cnp.ndarray cols, cnp.ndarray out, cnp.ndarray outer, cnp.ndarray inner,
                   int num_threads, bint use_openmp):
    """col2im of C-contiguous cols (planes, KO*KI, LO*LI) into out (planes,
    plane_size): every (sample, channel) plane is summed by one thread, so there
    are no write races and the result does not depend on the thread count.
    outer (KO, LO) and inner (KI, LI) are intp offset tables (see _col2im_plane):
    the leading spatial axes and the last one."""
    cdef Py_ssize_t planes = out.shape[0], plane_size = out.shape[1]
    cdef Py_ssize_t KO = outer.shape[0], LO = outer.shape[1]
    cdef Py_ssize_t KI = inner.shape[0], LI = inner.shape[1]
    cdef const Py_ssize_t* outer_p = <const Py_ssize_t*>cnp.PyArray_DATA(outer)
    cdef const Py_ssize_t* inner_p = <const Py_ssize_t*>cnp.PyArray_DATA(inner)
    cdef void* cols_p = cnp.PyArray_DATA(cols)
    cdef void* out_p = cnp.PyArray_DATA(out)
    if cols.dtype.num == cnp.NPY_FLOAT:
        with nogil:
            _col2im_all(<const float*>cols_p, <float*>out_p, outer_p, inner_p, planes, KO, KI,
                        LO, LI, plane_size, num_threads, use_openmp)
    else:
        with nogil:
            _col2im_all(<const double*>cols_p, <double*>out_p, outer_p, inner_p, planes, KO,
                        KI, LO, LI, plane_size, num_threads, use_openmp)
    return out


def transpose_forward(cnp.ndarray x, cnp.ndarray w, object bias, cnp.ndarray out,
                      cnp.ndarray ih_lo, cnp.ndarray ih_hi, cnp.ndarray iw_lo, cnp.ndarray iw_hi,
                      tuple dims, bint channels_last, int num_threads, bint use_openmp):
    """Transposed convolution by GEMM into column tiles + col2im.

    x: (N, C, H, W) or (N, H, W, C) C-contiguous; w: (C, K/groups, R, S)
    C-contiguous (PyTorch's IOHW), same dtype; bias (K,) or None; out (N, K,
    Ho, Wo) or (N, Ho, Wo, K), written whole.  ih_lo / ih_hi (R,) and iw_lo /
    iw_hi (S,): the input rows / columns each kernel tap maps inside the output.
    dims: (C, H, W, K, R, S, Ho, Wo, sh, sw, dh, dw, pad_top, pad_left, groups).

    Tasks are (sample, group, block of output channels); a task's column tile
    covers a band of input rows, <= TILE_BYTES, bands processed in order.
    """
    cdef ConvPlan p
    cdef cnp.ndarray bias_arr
    cdef Py_ssize_t RS, budget
    cdef bint bands
    (p.C, p.H, p.W, p.K, p.R, p.S, p.Ho, p.Wo,
     p.sh, p.sw, p.dh, p.dw, p.pad_top, p.pad_left, p.groups) = dims
    p.kind = TRANSPOSE
    p.Cg = p.C // p.groups
    p.Kg = p.K // p.groups
    p.N = x.shape[0]
    p.channels_last = channels_last
    p.x = cnp.PyArray_DATA(x)
    p.w = cnp.PyArray_DATA(w)
    p.out = cnp.PyArray_DATA(out)
    p.bias = NULL
    if bias is not None:
        bias_arr = bias
        p.bias = cnp.PyArray_DATA(bias_arr)
    p.ih_lo = <const Py_ssize_t*>cnp.PyArray_DATA(ih_lo)
    p.ih_hi = <const Py_ssize_t*>cnp.PyArray_DATA(ih_hi)
    p.ow_lo = <const Py_ssize_t*>cnp.PyArray_DATA(iw_lo)
    p.ow_hi = <const Py_ssize_t*>cnp.PyArray_DATA(iw_hi)
    RS = p.R * p.S
    bands = (p.R - 1) * p.dh < p.sh
    p.tiles = (not channels_last and p.R == p.sh and p.S == p.sw and p.dh == 1 and p.dw == 1
               and p.pad_top == 0 and p.pad_left == 0 and p.Ho == p.H * p.sh
               and p.Wo == p.W * p.sw)
    if bands:
        # Bands of input rows own disjoint output rows: tasks are bands, with
        # every output channel of the group.
        budget = TRANSPOSE_TILE_BYTES // x.itemsize
        p.kblock = p.Kg
    else:
        # Output-channel blocks, enough tasks for the cores; a block's task
        # goes through the bands of input rows in order.
        budget = TILE_BYTES // x.itemsize
        p.kblock = _ceil_div(p.Kg, min(p.Kg, max(1, _ceil_div(MIN_TASKS, p.N * p.groups))))
    # A narrower block if one row of its column tile does not fit the budget.
    while p.kblock > 1 and p.W * p.kblock * RS > budget:
        p.kblock = _ceil_div(p.kblock, 2)
    p.n_kblocks = _ceil_div(p.Kg, p.kblock)
    p.n_ptiles = 1
    if bands:
        p.n_ptiles = max(1, min(p.H, _ceil_div(TRANSPOSE_TASKS,
                                               p.N * p.groups * p.n_kblocks)))
        if p.H > 0:  # no empty band (an empty input, H == 0, is one band of bias)
            p.n_ptiles = _ceil_div(p.H, _ceil_div(p.H, p.n_ptiles))
    p.ptile = max(1, min(_ceil_div(p.H, p.n_ptiles), budget // max(p.W * p.kblock * RS, 1)))
    p.n_tasks = p.N * p.groups * p.n_kblocks * p.n_ptiles
    p.ws_elems = _transpose_tile_elems(&p)
    # Gather (see _transpose_task) when no output row takes taps from two
    # passes of a task's band loop: the bands own their output rows, or a
    # task's band is one pass.
    p.gather = (TRANSPOSE_GATHER and not channels_last and not p.tiles and p.H > 0 and p.W > 0
                and (bands or p.ptile * p.n_ptiles >= p.H))
    if p.gather:
        p.ws_elems += _gather_ws_elems(&p)
    p.out_elems = 0
    _execute(&p, x.dtype.num == cnp.NPY_FLOAT, num_threads, use_openmp)
    return out


cdef void _weight_grad_slot(const ConvPlan* p, Py_ssize_t slot, Py_ssize_t per_slot,
                            const floating* dy, floating* partial, floating* ws) noexcept nogil:
    """Accumulate into `partial` (this slot's own weight-sized sum) the chunks
    slot*per_slot .. (slot+1)*per_slot - 1, in order; a chunk is one sample's
    tile of output pixels, for every group.  NCHW: partial is (K, Cg*R*S)
    row-major; NHWC: (R*S*Cg, K) row-major (HWIO)."""
    cdef const floating* x = <const floating*>p.x
    cdef Py_ssize_t HoWo = p.Ho * p.Wo
    cdef Py_ssize_t crs = p.Cg * p.R * p.S
    cdef Py_ssize_t chunk, n, p0, npix, g
    cdef Py_ssize_t first = slot * per_slot
    cdef Py_ssize_t last = _min(first + per_slot, p.N * p.n_ptiles)
    for chunk in range(first, last):
        n = chunk // p.n_ptiles
        p0 = (chunk % p.n_ptiles) * p.ptile
        npix = _min(p.ptile, HoWo - p0)
        for g in range(p.groups):
            if p.channels_last:
                _im2col_nhwc(p, x + n * p.H * p.W * p.C, g * p.Cg, p0, npix, ws)
                gemm_trans(c'N', c'T', p.Kg, crs, npix, dy + (n * HoWo + p0) * p.K + g * p.Kg,
                           p.K, ws, crs, 1, partial + g * p.Kg, p.K)
            else:
                _im2col_nchw(p, x + (n * p.C + g * p.Cg) * p.H * p.W, p0, npix, ws, npix)
                gemm_trans(c'T', c'N', crs, p.Kg, npix, ws, npix,
                           dy + (n * p.K + g * p.Kg) * HoWo + p0, HoWo, 1,
                           partial + g * p.Kg * crs, crs)


cdef int _weight_grad_all(const ConvPlan* p, Py_ssize_t n_slots, Py_ssize_t per_slot,
                          const floating* dy, floating* partials, int num_threads,
                          bint use_openmp) noexcept nogil:
    cdef Py_ssize_t slot
    cdef Py_ssize_t wsize = p.K * p.Cg * p.R * p.S
    cdef floating* ws = NULL
    cdef int failed = 0
    cdef int* failed_flag = &failed
    cdef size_t ws_bytes = _max(p.ws_elems, 1) * sizeof(floating)
    cdef convcpu_region region
    cdef convcpu_region* tasks = &region
    if use_openmp and num_threads > 1 and n_slots > 1:
        convcpu_region_init(tasks, n_slots, num_threads)
        slot = 0  # firstprivate in the region (Cython): give the copies a value
        with parallel(num_threads=num_threads):
            convcpu_region_enter(tasks)
            ws = <floating*>malloc(ws_bytes)
            if ws == NULL:
                failed_flag[0] = 1
            slot = convcpu_region_take(tasks)
            while slot < n_slots:
                if ws != NULL:
                    _weight_grad_slot(p, slot, per_slot, dy, partials + slot * wsize, ws)
                slot = convcpu_region_take(tasks)
            convcpu_region_leave(tasks)
            free(ws)
    else:
        ws = <floating*>malloc(ws_bytes)
        if ws == NULL:
            return -1
        for slot in range(n_slots):
            _weight_grad_slot(p, slot, per_slot, dy, partials + slot * wsize, ws)
        free(ws)
    return -1 if failed else 0


def weight_grad(cnp.ndarray x, cnp.ndarray dy, cnp.ndarray hmap, cnp.ndarray wmap,
                cnp.ndarray ow_lo, cnp.ndarray ow_hi, tuple dims, bint channels_last,
                int num_threads, bint use_openmp):
    """The gradient of a 2-D convolution with respect to its weight.

    x: the input, dy: the output gradient, both C-contiguous in the layout.
    Returns (K, Cg*R*S) for NCHW or (R*S*Cg, K) for NHWC.  The sum runs over
    chunks (sample, tile of output pixels) split into a number of slots that
    depends on the shape only (WEIGHT_GRAD_SLOTS); each slot adds its chunks in
    order into its own partial sum and the partials are added in slot order, so
    the result is the same for any thread count, on any machine.
    """
    cdef ConvPlan p
    cdef cnp.ndarray partials
    cdef Py_ssize_t n_chunks, n_slots, per_slot, crs
    cdef int status
    _set_window(&p, x, dy, hmap, wmap, ow_lo, ow_hi, dims, channels_last)
    crs = p.Cg * p.R * p.S
    p.ptile = min(p.Ho * p.Wo, max(MIN_TILE_PIXELS, TILE_BYTES // max(crs * x.itemsize, 1)))
    p.n_ptiles = _ceil_div(p.Ho * p.Wo, p.ptile)
    p.ws_elems = p.ptile * crs
    n_chunks = p.N * p.n_ptiles
    n_slots = max(1, min(WEIGHT_GRAD_SLOTS, n_chunks,
                         WEIGHT_GRAD_BYTES // max(p.K * crs * x.itemsize, 1)))
    per_slot = _ceil_div(n_chunks, n_slots)
    n_slots = _ceil_div(n_chunks, per_slot)
    partials = np.zeros((max(n_slots, 1), p.K * crs), dtype=x.dtype)
    if n_chunks:
        if x.dtype.num == cnp.NPY_FLOAT:
            with nogil:
                status = _weight_grad_all(&p, n_slots, per_slot, <const float*>cnp.PyArray_DATA(dy),
                                          <float*>cnp.PyArray_DATA(partials), num_threads,
                                          use_openmp)
        else:
            with nogil:
                status = _weight_grad_all(&p, n_slots, per_slot,
                                          <const double*>cnp.PyArray_DATA(dy),
                                          <double*>cnp.PyArray_DATA(partials), num_threads,
                                          use_openmp)
        if status != 0:
            raise MemoryError("convcpu: could not allocate a per-thread workspace")
    total = partials[0].copy()
    for slot in range(1, n_slots):
        total += partials[slot]
    return total.reshape((p.K, crs) if not channels_last else (crs, p.K))


def _gemm_for_tests(transa, transb, cnp.ndarray a, cnp.ndarray b, double beta, cnp.ndarray c):
    """c = op(a) @ op(b) + beta * c through gemm_trans (the path every op
    takes): BLAS's column-major convention, a / b / c Fortran-contiguous of
    one float dtype, op 'N' or 'T'.  For tests of both GEMM backends."""
    cdef char ta = ord(transa), tb = ord(transb)
    cdef Py_ssize_t m = c.shape[0], n = c.shape[1]
    cdef Py_ssize_t k = a.shape[1] if transa == "N" else a.shape[0]
    cdef Py_ssize_t lda = max(1, a.shape[0]), ldb = max(1, b.shape[0]), ldc = max(1, m)
    for arr in (a, b, c):
        if arr.dtype != c.dtype or not arr.flags.f_contiguous or arr.ndim != 2:
            raise ValueError("a, b, c: 2-D Fortran-contiguous arrays of one dtype")
    if c.dtype == np.float32:
        with nogil:
            gemm_trans(ta, tb, m, n, k, <const float*>cnp.PyArray_DATA(a), lda,
                       <const float*>cnp.PyArray_DATA(b), ldb, <float>beta,
                       <float*>cnp.PyArray_DATA(c), ldc)
    elif c.dtype == np.float64:
        with nogil:
            gemm_trans(ta, tb, m, n, k, <const double*>cnp.PyArray_DATA(a), lda,
                       <const double*>cnp.PyArray_DATA(b), ldb, beta,
                       <double*>cnp.PyArray_DATA(c), ldc)
    else:
        raise ValueError("c: float32 or float64")
    return c


def _gemm_bias_for_tests(cnp.ndarray a, cnp.ndarray b, object bias, cnp.ndarray c):
    """c = bias[:, None] + a @ b (bias None: 0) through convcpu_sgemm_bias,
    row-major float32 C-contiguous operands, c not read.  Returns False
    (c untouched) when the own GEMM is off or absent."""
    cdef Py_ssize_t m = c.shape[0], n = c.shape[1], k = a.shape[1]
    cdef cnp.ndarray bias_arr
    cdef const float* bp = NULL
    cdef int done
    for arr in (a, b, c) + (() if bias is None else (bias,)):
        if arr.dtype != np.float32 or not arr.flags.c_contiguous:
            raise ValueError("a, b, bias, c: C-contiguous float32 arrays")
    if a.shape[0] != m or b.shape[0] != k or b.shape[1] != n:
        raise ValueError("a (m, k), b (k, n), c (m, n)")
    if bias is not None:
        bias_arr = bias
        if bias_arr.shape[0] != m:
            raise ValueError("bias: (m,)")
        bp = <const float*>cnp.PyArray_DATA(bias_arr)
    with nogil:
        done = convcpu_sgemm_bias(m, n, k, <const float*>cnp.PyArray_DATA(a), k, 1,
                                  <const float*>cnp.PyArray_DATA(b), n, 1, bp,
                                  <float*>cnp.PyArray_DATA(c), n)
    return bool(done)
