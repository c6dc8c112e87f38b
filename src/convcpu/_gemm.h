/* convcpu's own float32 GEMM for AVX-512 CPUs: C += A B with any strides.
 *
 * Why: SciPy's OpenBLAS packs both operands on every call and, under a
 * Haswell core type (this project's benchmark machine sets one), runs AVX2
 * kernels; a convolution calls one GEMM per tile, so that cost repeats
 * (docs/BENCHMARKS.md, issue 2).  This is the classic GotoBLAS / BLIS
 * blocking, kept small:
 *   - the reduction is cut into blocks of CG_KC, the rows of A into
 *     near-equal blocks of at most CG_A_FLOATS / kc rows (stays in L2);
 *   - for each CG_NR-column panel of B, the panel is packed (CG_KC x CG_NR,
 *     32 KB, stays in L1) and a 12 x 32 register block of C (24 zmm
 *     accumulators) is updated per CG_MR rows of A;
 *   - A is read in place, by rows or by columns (BLAS operands have one unit
 *     stride): packing it cost more than it saved when few columns of B
 *     share its rows (3x3 512->512 @7: 88 -> 161 GFLOP/s on one thread);
 *   - ragged edges: the rows of a block are split into ceil(rows / 12)
 *     register blocks of near-equal height; columns past the end are zeros
 *     in the packed panel and masked out of the loads and stores of C, and a
 *     panel of at most 16 columns runs on half-width kernels (H = 1); with A
 *     read by rows, 1-4 columns past a panel run as extra accumulators
 *     (CG_KERNEL_Z) and a panel of 17-24 columns runs its rows in pairs
 *     (CG_KERNEL_P);
 *   - B is read in place, not packed, when at most two register blocks
 *     share a panel (CG_KERNEL_IN).
 * Every element of C is one chain of fused multiply-adds over l = 0 .. K-1 in
 * order, starting from C's value: the result does not depend on how a caller
 * tiles the product, nor on the thread that runs it.
 *
 * convcpu_sconv_implicit runs a convolution on the same kernels with the
 * im2col done in their registers: each row of a panel is read from the
 * input (or a copy of its rows in stride phases) in place, masked at the
 * image's edges (on AMD Zen 4, where it stays inside the input, by a plain
 * load and'ed with the tap's lanes: cg_implicit_and).
 *
 * Elsewhere (no AVX-512, another compiler, or float64) the caller uses BLAS:
 * convcpu_sgemm returns 0 and does nothing. */
#ifndef CONVCPU_GEMM_H
#define CONVCPU_GEMM_H
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 8 \
    && defined(__linux__)
#define CONVCPU_OWN_GEMM 1
#include <cpuid.h>
#include <immintrin.h>
#include <pthread.h>
#else
#define CONVCPU_OWN_GEMM 0
#endif

#if defined(__GNUC__)
#define CONVCPU_GEMM_API static __attribute__((unused))
#else
#define CONVCPU_GEMM_API static
#endif

/* -1: not decided yet (the CPU decides on the first call); 0: BLAS; 1: own. */
static int convcpu_gemm_mode = -1;

static int convcpu_gemm_supported(void)
{
#if CONVCPU_OWN_GEMM
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

/* The backend in use: 1 own kernels, 0 BLAS. */
CONVCPU_GEMM_API int convcpu_gemm_get(void)
{
    if (convcpu_gemm_mode < 0)
        convcpu_gemm_mode = convcpu_gemm_supported();
    return convcpu_gemm_mode;
}

/* Ask for the own kernels (1) or BLAS (0); returns the backend now in use
 * (0 when the own kernels were asked for but this CPU or build has none). */
CONVCPU_GEMM_API int convcpu_gemm_set(int own)
{
    convcpu_gemm_mode = own ? convcpu_gemm_supported() : 0;
    return convcpu_gemm_mode;
}

#if CONVCPU_OWN_GEMM

#define CG_MR 12
#define CG_NR 32
#define CG_KC 256
#define CG_A_FLOATS 65536 /* an A block (rows x kc) of at most 256 KB stays in L2 */
#define CG_WS_FLOATS (2 * CG_KC * CG_NR) /* a packed panel and its tail, or a sweep of panels */
#define CG_TARGET __attribute__((target("avx512f,fma")))

/* A register-block kernel: (kc, a, lda, bp, c, ldc, m0, m1, first, bias), as
 * below. */
typedef void (*const cg_kernel_t)(Py_ssize_t, const float *, Py_ssize_t, const float *,
                                  float *, Py_ssize_t, __mmask16, __mmask16, int,
                                  const float *);

/* Row i's start of a register block, into x[i] and y[i] (y with H = 2), on
 * the kernel's own first, bias, c, ldc, m0 and m1: with first, bias[i] (0
 * when bias is NULL; C not read); else C's row, columns masked by m0 / m1. */
#define CG_ROW_START(x, y, i, H)                                                         \
    if (first) {                                                                         \
        x[i] = bias != NULL ? _mm512_set1_ps(bias[i]) : _mm512_setzero_ps();             \
        y[i] = x[i];                                                                     \
    } else {                                                                             \
        x[i] = _mm512_maskz_loadu_ps(m0, c + i * ldc);                                   \
        y[i] = H == 2 ? _mm512_maskz_loadu_ps(m1, c + i * ldc + 16)                      \
                      : _mm512_setzero_ps();                                             \
    }

/* C[0:MR, 0:16*H] += A (MR x kc) . Bp (kc x CG_NR, packed); m0 / m1 mask the
 * two 16-column halves of C.  A(i, l) is a[i * (LDA) + l * (LSTEP)]: the
 * caller's matrix read in place, by rows (LDA lda, LSTEP 1) or by columns
 * (LDA 1, LSTEP lda).  H = 2: both halves; H = 1: a panel of at most 16
 * columns (a ragged last one: 196 pixels leave 4), half the FMAs.  Every
 * element of C is the same FMA chain either way.  CG_KERNEL_BODY: B packed
 * (BIN 0: rows CG_NR apart) or read in place (BIN 1: rows BSTEP apart, its
 * loads masked by m0 / m1 as C's are).  With first set, the chains start
 * from bias[i] (0 when bias is NULL) instead of C, which is not read: the
 * values a C preset to the bias would give, without that pass over C. */
#define CG_KERNEL_BODY(MR, LDA, LSTEP, H, BIN, BSTEP)                                    \
    {                                                                                    \
        __m512 x[MR], y[MR];                                                             \
        (void)lda;                                                                       \
        _Pragma("GCC unroll 12") for (int i = 0; i < MR; i++)                            \
        {                                                                                \
            CG_ROW_START(x, y, i, H);                                                    \
        }                                                                                \
        for (Py_ssize_t l = 0; l < kc; l++) {                                            \
            const __m512 b0 = BIN ? _mm512_maskz_loadu_ps(m0, bp) : _mm512_loadu_ps(bp); \
            const __m512 b1 = H != 2 ? _mm512_setzero_ps()                               \
                              : BIN  ? _mm512_maskz_loadu_ps(m1, bp + 16)                \
                                     : _mm512_loadu_ps(bp + 16);                         \
            _Pragma("GCC unroll 12") for (int i = 0; i < MR; i++)                        \
            {                                                                            \
                const __m512 av = _mm512_set1_ps(a[i * (LDA) + l * (LSTEP)]);            \
                x[i] = _mm512_fmadd_ps(av, b0, x[i]);                                    \
                if (H == 2)                                                              \
                    y[i] = _mm512_fmadd_ps(av, b1, y[i]);                                \
            }                                                                            \
            bp += BSTEP;                                                                 \
        }                                                                                \
        _Pragma("GCC unroll 12") for (int i = 0; i < MR; i++)                            \
        {                                                                                \
            _mm512_mask_storeu_ps(c + i * ldc, m0, x[i]);                                \
            if (H == 2)                                                                  \
                _mm512_mask_storeu_ps(c + i * ldc + 16, m1, y[i]);                       \
        }                                                                                \
    }
#define CG_KERNEL(NAME, MR, LDA, LSTEP, H)                                               \
    CG_TARGET static void NAME##_##MR(Py_ssize_t kc, const float *restrict a,            \
                                      Py_ssize_t lda, const float *restrict bp,          \
                                      float *restrict c, Py_ssize_t ldc, __mmask16 m0,   \
                                      __mmask16 m1, int first,                           \
                                      const float *restrict bias)                        \
    CG_KERNEL_BODY(MR, LDA, LSTEP, H, 0, CG_NR)
/* KERNEL(NAME, MR, ...) for MR = 1 .. CG_MR, and their table NAME[MR] (of TYPE). */
#define CG_MR_KERNELS(KERNEL, TYPE, NAME, ...)                                           \
    KERNEL(NAME, 1, __VA_ARGS__) KERNEL(NAME, 2, __VA_ARGS__)                            \
    KERNEL(NAME, 3, __VA_ARGS__) KERNEL(NAME, 4, __VA_ARGS__)                            \
    KERNEL(NAME, 5, __VA_ARGS__) KERNEL(NAME, 6, __VA_ARGS__)                            \
    KERNEL(NAME, 7, __VA_ARGS__) KERNEL(NAME, 8, __VA_ARGS__)                            \
    KERNEL(NAME, 9, __VA_ARGS__) KERNEL(NAME, 10, __VA_ARGS__)                           \
    KERNEL(NAME, 11, __VA_ARGS__) KERNEL(NAME, 12, __VA_ARGS__)                          \
    static TYPE NAME[CG_MR + 1] = {                                                      \
        NULL, NAME##_1, NAME##_2, NAME##_3, NAME##_4, NAME##_5, NAME##_6,                \
        NAME##_7, NAME##_8, NAME##_9, NAME##_10, NAME##_11, NAME##_12};
#define CG_KERNELS(NAME, LDA, LSTEP, H)                                                  \
    CG_MR_KERNELS(CG_KERNEL, cg_kernel_t, NAME, LDA, LSTEP, H)
CG_KERNELS(cg_rows, lda, 1, 2)
CG_KERNELS(cg_cols, 1, lda, 2)
CG_KERNELS(cg_rows_half, lda, 1, 1)
CG_KERNELS(cg_cols_half, 1, lda, 1)

/* CG_KERNEL with A by rows and B read in place: B(l, j) = bp[l * ldb + j],
 * the columns past the panel masked out.  Packing a panel pays when many
 * register blocks read it; with 1 or 2 (up to 24 rows of A) it costs more
 * than it saves.  One thread, C harness, packed -> in place: 24 x 144 x 1568
 * (the NCHW separable block's pointwise step) 0.91-0.93, 12 x 64 x 3136 0.83,
 * 24 x 576 x 196 0.88; 64 x 256 x 3136 (6 blocks) 0.96 there, but through
 * conv2d with 2 threads (1x1 256->64 @56: B's rows 12 KB apart) 1.13-1.19.
 * The same chains as CG_KERNEL: the same bits. */
#define CG_KERNEL_IN(NAME, MR, H)                                                        \
    CG_TARGET static void NAME##_##MR(Py_ssize_t kc, const float *restrict a,            \
                                      Py_ssize_t lda, const float *restrict bp,          \
                                      Py_ssize_t ldb, float *restrict c, Py_ssize_t ldc, \
                                      __mmask16 m0, __mmask16 m1, int first,             \
                                      const float *restrict bias)                        \
    CG_KERNEL_BODY(MR, lda, 1, H, 1, ldb)
typedef void (*const cg_ikernel_t)(Py_ssize_t, const float *, Py_ssize_t, const float *,
                                   Py_ssize_t, float *, Py_ssize_t, __mmask16, __mmask16, int,
                                   const float *);
#define CG_KERNELS_IN(NAME, H) CG_MR_KERNELS(CG_KERNEL_IN, cg_ikernel_t, NAME, H)
CG_KERNELS_IN(cg_rows_in, 2)
CG_KERNELS_IN(cg_rows_in_half, 1)
/* A row block of at most this many register blocks reads B in place
 * (0: always pack; an A/B harness's switch). */
static int cg_inplace_blocks = 2;
/* At most this many panels a group in cg_gemm's sweeps of a short
 * reduction (0: no sweeps; an A/B harness's switch). */
static Py_ssize_t cg_sweep_panels = 16;
#define CG_SWEEP_KC 32
#define CG_SWEEP_C (1024 * 1024) /* bytes of C: this machine's L2 */

/* The tail kernels' start, on the kernel's own first, bias, c and ldc: row
 * i's start value of tail column t (column COL0 + t of C, or the bias, 0
 * without one) into zb[t][i]. */
#define CG_TAIL_START(zb, T, i, COL0)                                                    \
    for (int t = 0; t < T; t++)                                                          \
    zb[t][i] = first ? (bias != NULL ? bias[i] : 0.0f) : c[i * ldc + (COL0) + t]

/* The tail's T accumulators z[t] from zb[t][0 .. MR-1] (C's values or the
 * bias, set by the kernel; the lanes past MR: zeros). */
#define CG_TAIL_LOAD(zb, MR, T, z)                                                       \
    for (int t_ = 0; t_ < T; t_++) {                                                     \
        for (int i_ = MR; i_ < 16; i_++)                                                 \
            zb[t_][i_] = 0.0f;                                                           \
        z[t_] = _mm512_load_ps(zb[t_]);                                                  \
    }

/* The end of a tail kernel: rows 0 .. MR-1 of C from the 16*H lanes of x
 * and y (y with H = 2) and from the tail's z[t] (column 16*H + t), through
 * zb.  (A macro written as the kernels had it: a reordered end changed the
 * channels-first 32 + t kernel's loop and cost 2-10%.) */
#define CG_TAIL_END(zb, MR, H, T, x, y, z, c, ldc)                                       \
    for (int t_ = 0; t_ < T; t_++)                                                       \
        _mm512_store_ps(zb[t_], z[t_]);                                                  \
    _Pragma("GCC unroll 12") for (int i_ = 0; i_ < MR; i_++)                             \
    {                                                                                    \
        _mm512_storeu_ps(c + i_ * ldc, x[i_]);                                           \
        if (H == 2)                                                                      \
            _mm512_storeu_ps(c + i_ * ldc + 16, y[i_]);                                  \
        for (int t_ = 0; t_ < T; t_++)                                                   \
            c[i_ * ldc + 16 * H + t_] = zb[t_][i_];                                      \
    }

/* One step of the tail: av[0 .. MR-1] hold the rows' A values, broadcast
 * (av, 16 vectors, is clobbered); blended into one vector, lane i row i's (a
 * tree of masks 0xAAAA, 0xCCCC, 0xF0F0, 0xFF00), times column t's B value
 * (lane t of bz, broadcast) into z[t]: fma(a, b, acc) with a*b == b*a, so
 * lane i's chain is the one a panel kernel runs for row i.  (A macro: with this
 * step, start and end as inline functions, the channels-first kernel's loop
 * kept more in memory and ran 2-10% slower.) */
#define CG_TAIL_STEP(av, MR, T, bz, z)                                                   \
    do {                                                                                 \
        _Pragma("GCC unroll 16") for (int i_ = MR; i_ < 16; i_++) av[i_] = av[MR - 1];   \
        _Pragma("GCC unroll 8") for (int i_ = 0; i_ < 8; i_++)                           \
            av[i_] = _mm512_mask_mov_ps(av[2 * i_], 0xAAAA, av[2 * i_ + 1]);             \
        _Pragma("GCC unroll 4") for (int i_ = 0; i_ < 4; i_++)                           \
            av[i_] = _mm512_mask_mov_ps(av[2 * i_], 0xCCCC, av[2 * i_ + 1]);             \
        _Pragma("GCC unroll 2") for (int i_ = 0; i_ < 2; i_++)                           \
            av[i_] = _mm512_mask_mov_ps(av[2 * i_], 0xF0F0, av[2 * i_ + 1]);             \
        av[0] = _mm512_mask_mov_ps(av[0], 0xFF00, av[1]);                                \
        z[0] = _mm512_fmadd_ps(av[0], _mm512_broadcastss_ps(_mm512_castps512_ps128(bz)), \
                               z[0]);                                                    \
        _Pragma("GCC unroll 4") for (int t_ = 1; t_ < T; t_++)                           \
            z[t_] = _mm512_fmadd_ps(av[0], _mm512_permutexvar_ps(_mm512_set1_epi32(t_), bz), \
                                    z[t_]);                                              \
    } while (0)

/* A panel of 32 + T columns (T <= CG_GZMAX), A read by rows: the first 32
 * as CG_KERNEL (H = 2, every column stored); column 32 + t is bt[l*CG_NR + t]
 * (a second packed panel), in one vector whose lane i is row i of C.  The A
 * values of a step, broadcast for the 32 columns anyway, are blended into one
 * vector (lane i: row i) and multiplied by that column's B value, broadcast:
 * a ragged end of 1-4 columns (196 pixels: 6 x 32 + 4) costs a few FMAs per
 * step instead of a half-width panel.  Lane i's chain is CG_KERNEL's for
 * row i (l in order from C's value; fma(a, b, acc) with a*b == b*a): the
 * same bits.  MR <= CG_ZMR2 (8) leaves registers for the T accumulators.
 * first and bias: as in CG_KERNEL_BODY. */
#define CG_GZMAX 4
#define CG_ZMR2 8
#define CG_KERNEL_Z(NAME, MR, T)                                                         \
    CG_TARGET static void NAME##_##MR##_##T(Py_ssize_t kc, const float *restrict a,      \
                                            Py_ssize_t lda, const float *restrict bp,    \
                                            const float *restrict bt, float *restrict c, \
                                            Py_ssize_t ldc, int first,                   \
                                            const float *restrict bias)                  \
    {                                                                                    \
        __m512 x[MR], y[MR], z[T];                                                       \
        float zb[T][16] __attribute__((aligned(64)));                                    \
        _Pragma("GCC unroll 12") for (int i = 0; i < MR; i++)                            \
        {                                                                                \
            if (first) {                                                                 \
                x[i] = bias != NULL ? _mm512_set1_ps(bias[i]) : _mm512_setzero_ps();     \
                y[i] = x[i];                                                             \
            } else {                                                                     \
                x[i] = _mm512_loadu_ps(c + i * ldc);                                     \
                y[i] = _mm512_loadu_ps(c + i * ldc + 16);                                \
            }                                                                            \
            CG_TAIL_START(zb, T, i, 32);                                                 \
        }                                                                                \
        CG_TAIL_LOAD(zb, MR, T, z);                                                     \
        for (Py_ssize_t l = 0; l < kc; l++) {                                            \
            const __m512 b0 = _mm512_loadu_ps(bp);                                       \
            const __m512 b1 = _mm512_loadu_ps(bp + 16);                                  \
            const __m512 bz = _mm512_loadu_ps(bt);                                       \
            __m512 av[16];                                                               \
            _Pragma("GCC unroll 12") for (int i = 0; i < MR; i++)                        \
            {                                                                            \
                av[i] = _mm512_set1_ps(a[i * lda + l]);                                  \
                x[i] = _mm512_fmadd_ps(av[i], b0, x[i]);                                 \
                y[i] = _mm512_fmadd_ps(av[i], b1, y[i]);                                 \
            }                                                                            \
            CG_TAIL_STEP(av, MR, T, bz, z);                                              \
            bp += CG_NR;                                                                 \
            bt += CG_NR;                                                                 \
        }                                                                                \
        CG_TAIL_END(zb, MR, 2, T, x, y, z, c, ldc);                                     \
    }
typedef void (*const cg_gzkernel_t)(Py_ssize_t, const float *, Py_ssize_t, const float *,
                                    const float *, float *, Py_ssize_t, int, const float *);
#define CG_KERNELS_Z(NAME, MR)                                                           \
    CG_KERNEL_Z(NAME, MR, 1) CG_KERNEL_Z(NAME, MR, 2) CG_KERNEL_Z(NAME, MR, 3)           \
    CG_KERNEL_Z(NAME, MR, 4)
#define CG_ZROW(NAME, MR) {NAME##_##MR##_1, NAME##_##MR##_2, NAME##_##MR##_3, NAME##_##MR##_4}
CG_KERNELS_Z(cg_rowsz, 1) CG_KERNELS_Z(cg_rowsz, 2) CG_KERNELS_Z(cg_rowsz, 3)
CG_KERNELS_Z(cg_rowsz, 4) CG_KERNELS_Z(cg_rowsz, 5) CG_KERNELS_Z(cg_rowsz, 6)
CG_KERNELS_Z(cg_rowsz, 7) CG_KERNELS_Z(cg_rowsz, 8)
static cg_gzkernel_t cg_rowsz[CG_ZMR2 + 1][CG_GZMAX] = {
    {NULL, NULL, NULL, NULL}, CG_ZROW(cg_rowsz, 1), CG_ZROW(cg_rowsz, 2),
    CG_ZROW(cg_rowsz, 3), CG_ZROW(cg_rowsz, 4), CG_ZROW(cg_rowsz, 5), CG_ZROW(cg_rowsz, 6),
    CG_ZROW(cg_rowsz, 7), CG_ZROW(cg_rowsz, 8)};
static int cg_gzmax = CG_GZMAX; /* 0: no tail kernels (an A/B harness's switch) */

/* A panel of 17-24 columns (16 + w, w <= 8), A read by rows: rows 2q and
 * 2q + 1 of C share three vectors instead of four half-used ones (24 output
 * channels of a channels-last 1x1 convolution: 75% of the lanes busy):
 *   u[q]: row 2q, columns 0-15;
 *   v[q]: row 2q, columns 16 .. 15 + w in lanes 0-7, row 2q + 1, columns 0-7
 *         in lanes 8-15 (its B vector: the panel's columns 16-23, then 0-7);
 *   z[q]: row 2q + 1, columns 8 .. 15 + w.
 * v's A vector is row 2q's broadcast with row 2q + 1's broadcast into its
 * upper half (a merge-masked broadcast: 12-15% faster than the four-vector
 * kernel on 24 columns; a blend of the two broadcasts, as CG_TAIL_STEP does,
 * took an FMA slot and gained nothing).  Each element keeps CG_KERNEL's
 * chain, fma(a, b, acc) over l in order from C's value: the same bits.
 * MR <= CG_PMR rows (6 pairs: 18 accumulators; 8 pairs measured the same);
 * an odd MR leaves the last pair's second row out (masked, not read).
 * first and bias: as in CG_KERNEL_BODY (the lanes no store keeps are
 * left as they come). */
#define CG_PMR 12
#define CG_KERNEL_P(NAME, MR)                                                            \
    CG_TARGET static void NAME##_##MR(Py_ssize_t kc, const float *restrict a,            \
                                      Py_ssize_t lda, const float *restrict bp,          \
                                      float *restrict c, Py_ssize_t ldc, __mmask16 m0,   \
                                      __mmask16 m1, int first,                           \
                                      const float *restrict bias)                        \
    {                                                                                    \
        enum { P = (MR + 1) / 2 };                                                       \
        const __mmask16 mz = (__mmask16)((m1 << 8) | 0xFF);                              \
        __m512 u[P], v[P], z[P];                                                         \
        (void)m0;                                                                        \
        _Pragma("GCC unroll 8") for (int q = 0; q < P; q++)                              \
        {                                                                                \
            const float *c0 = c + 2 * q * ldc, *c1 = c0 + ldc;                           \
            if (first) {                                                                 \
                const __m512 b0 = bias != NULL ? _mm512_set1_ps(bias[2 * q])             \
                                               : _mm512_setzero_ps();                    \
                const __m512 b1 = bias != NULL && 2 * q + 1 < MR                         \
                                      ? _mm512_set1_ps(bias[2 * q + 1])                  \
                                      : _mm512_setzero_ps();                             \
                u[q] = b0;                                                               \
                v[q] = _mm512_mask_mov_ps(b0, 0xFF00, b1);                               \
                z[q] = b1;                                                               \
                continue;                                                                \
            }                                                                            \
            u[q] = _mm512_loadu_ps(c0);                                                  \
            v[q] = _mm512_maskz_loadu_ps(m1, c0 + 16);                                   \
            if (2 * q + 1 < MR) {                                                        \
                v[q] = _mm512_mask_loadu_ps(v[q], 0xFF00, c1 - 8);                       \
                z[q] = _mm512_maskz_loadu_ps(mz, c1 + 8);                                \
            }                                                                            \
        }                                                                                \
        for (Py_ssize_t l = 0; l < kc; l++) {                                            \
            const __m512 b0 = _mm512_loadu_ps(bp);                                       \
            const __m512 bv = _mm512_mask_loadu_ps(_mm512_maskz_loadu_ps(0x00FF, bp + 16), \
                                                   0xFF00, bp - 8);                      \
            const __m512 bz = _mm512_loadu_ps(bp + 8);                                   \
            _Pragma("GCC unroll 8") for (int q = 0; q < P; q++)                          \
            {                                                                            \
                const __m512 a0 = _mm512_set1_ps(a[2 * q * lda + l]);                    \
                u[q] = _mm512_fmadd_ps(a0, b0, u[q]);                                    \
                if (2 * q + 1 < MR) {                                                    \
                    const __m512 a1 = _mm512_set1_ps(a[(2 * q + 1) * lda + l]);          \
                    const __m512 am = _mm512_mask_broadcastss_ps(                        \
                        a0, 0xFF00, _mm_load_ss(a + (2 * q + 1) * lda + l));             \
                    v[q] = _mm512_fmadd_ps(am, bv, v[q]);                                \
                    z[q] = _mm512_fmadd_ps(a1, bz, z[q]);                                \
                } else {                                                                 \
                    v[q] = _mm512_fmadd_ps(a0, bv, v[q]);                                \
                }                                                                        \
            }                                                                            \
            bp += CG_NR;                                                                 \
        }                                                                                \
        _Pragma("GCC unroll 8") for (int q = 0; q < P; q++)                              \
        {                                                                                \
            float *c0 = c + 2 * q * ldc, *c1 = c0 + ldc;                                 \
            _mm512_storeu_ps(c0, u[q]);                                                  \
            _mm512_mask_storeu_ps(c0 + 16, m1, v[q]);                                    \
            if (2 * q + 1 < MR) {                                                        \
                _mm512_mask_storeu_ps(c1 - 8, 0xFF00, v[q]);                             \
                _mm512_mask_storeu_ps(c1 + 8, mz, z[q]);                                 \
            }                                                                            \
        }                                                                                \
    }
CG_KERNEL_P(cg_rowsp, 1) CG_KERNEL_P(cg_rowsp, 2) CG_KERNEL_P(cg_rowsp, 3)
CG_KERNEL_P(cg_rowsp, 4) CG_KERNEL_P(cg_rowsp, 5) CG_KERNEL_P(cg_rowsp, 6)
CG_KERNEL_P(cg_rowsp, 7) CG_KERNEL_P(cg_rowsp, 8) CG_KERNEL_P(cg_rowsp, 9)
CG_KERNEL_P(cg_rowsp, 10) CG_KERNEL_P(cg_rowsp, 11) CG_KERNEL_P(cg_rowsp, 12)
static cg_kernel_t cg_rowsp[CG_PMR + 1] = {
    NULL, cg_rowsp_1, cg_rowsp_2, cg_rowsp_3, cg_rowsp_4, cg_rowsp_5, cg_rowsp_6,
    cg_rowsp_7, cg_rowsp_8, cg_rowsp_9, cg_rowsp_10, cg_rowsp_11, cg_rowsp_12};
static int cg_pairs = 1; /* 0: no paired-row kernels (an A/B harness's switch) */

/* The height of the next register block: ceil(mc / CG_MR) blocks of
 * near-equal height (64 rows: 11, 11, 11, 11, 10, 10 rather than 12 x 5 + 4,
 * whose last block has too few accumulators to hide the FMA latency). */
static Py_ssize_t cg_block_rows(Py_ssize_t rows_left, Py_ssize_t blocks_left)
{
    return (rows_left + blocks_left - 1) / blocks_left;
}

/* CALL for each register block of the mc rows of A, at most MAXR rows a
 * block (heights from cg_block_rows): with mr its rows, ir its first. */
#define CG_ROW_BLOCKS(MAXR, CALL)                                                        \
    do {                                                                                 \
        const Py_ssize_t nb_ = (mc + (MAXR) - 1) / (MAXR);                               \
        for (Py_ssize_t ir = 0, blk_ = 0; blk_ < nb_; blk_++) {                          \
            const Py_ssize_t mr = cg_block_rows(mc - ir, nb_ - blk_);                    \
            CALL;                                                                        \
            ir += mr;                                                                    \
        }                                                                                \
    } while (0)

static __mmask16 cg_mask(Py_ssize_t n)
{
    return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1);
}

/* r[i][j] <-> r[j][i] for a 16 x 16 block in 16 vectors: pairs of rows
 * interleaved by 32-bit, then 64-bit lanes, then 128-bit quarters twice. */
CG_TARGET static inline void cg_transpose16(__m512 r[16])
{
    __m512 t[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; i++) {
        const __m512d a0 = _mm512_castps_pd(t[4 * i]), a1 = _mm512_castps_pd(t[4 * i + 1]);
        const __m512d a2 = _mm512_castps_pd(t[4 * i + 2]), a3 = _mm512_castps_pd(t[4 * i + 3]);
        r[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a0, a2));
        r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a0, a2));
        r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(a1, a3));
        r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(a1, a3));
    }
    /* r[4q + c] now holds, in each 128-bit quarter k, column 4k + c of rows
     * 4q .. 4q + 3.  Gather quarters: first pairs of row groups, then all. */
    for (int c = 0; c < 4; c++) {
        t[c] = _mm512_shuffle_f32x4(r[c], r[4 + c], 0x88);      /* quarters 0, 2 */
        t[4 + c] = _mm512_shuffle_f32x4(r[c], r[4 + c], 0xdd);  /* quarters 1, 3 */
        t[8 + c] = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0x88);
        t[12 + c] = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0xdd);
    }
    for (int c = 0; c < 4; c++) {
        r[c] = _mm512_shuffle_f32x4(t[c], t[8 + c], 0x88);
        r[8 + c] = _mm512_shuffle_f32x4(t[c], t[8 + c], 0xdd);
        r[4 + c] = _mm512_shuffle_f32x4(t[4 + c], t[12 + c], 0x88);
        r[12 + c] = _mm512_shuffle_f32x4(t[4 + c], t[12 + c], 0xdd);
    }
}

/* B[0:kc, 0:nr] (element (l, j) at b[l * rsb + j * csb], csb == 1 or
 * rsb == 1) -> kc x CG_NR; columns past nr are zeros. */
CG_TARGET static void cg_pack_b(Py_ssize_t kc, Py_ssize_t nr, const float *b, Py_ssize_t rsb,
                                Py_ssize_t csb, float *bp)
{
    if (csb == 1) { /* rows of the panel are contiguous: two (masked) vectors each */
        const __mmask16 m0 = cg_mask(nr), m1 = cg_mask(nr - 16);
        for (Py_ssize_t l = 0; l < kc; l++) {
            _mm512_storeu_ps(bp + l * CG_NR, _mm512_maskz_loadu_ps(m0, b + l * rsb));
            _mm512_storeu_ps(bp + l * CG_NR + 16, _mm512_maskz_loadu_ps(m1, b + l * rsb + 16));
        }
        return;
    }
    /* rsb == 1, B transposed: its columns are contiguous; 16 x 16 transposes */
    for (Py_ssize_t jh = 0; jh < CG_NR; jh += 16)
        for (Py_ssize_t l0 = 0; l0 < kc; l0 += 16) {
            const __mmask16 ml = cg_mask(kc - l0);
            __m512 r[16];
            for (int j = 0; j < 16; j++)
                r[j] = jh + j < nr ? _mm512_maskz_loadu_ps(ml, b + (jh + j) * csb + l0)
                                   : _mm512_setzero_ps();
            cg_transpose16(r);
            for (int l = 0; l < 16 && l0 + l < kc; l++)
                _mm512_storeu_ps(bp + (l0 + l) * CG_NR + jh, r[l]);
        }
}

/* Per-thread packing buffers, freed when the thread ends. */
static pthread_key_t cg_key;
static pthread_once_t cg_key_once = PTHREAD_ONCE_INIT;
static int cg_key_ok = 0;
static void cg_key_make(void) { cg_key_ok = pthread_key_create(&cg_key, free) == 0; }

static float *cg_workspace(void)
{
    pthread_once(&cg_key_once, cg_key_make);
    if (!cg_key_ok)
        return NULL;
    float *ws = (float *)pthread_getspecific(cg_key);
    if (ws == NULL) {
        if (posix_memalign((void **)&ws, 64, CG_WS_FLOATS * sizeof(float)) != 0)
            return NULL;
        if (pthread_setspecific(cg_key, ws) != 0) {
            free(ws);
            return NULL;
        }
    }
    return ws;
}

/* C += A B, or with set, C = bias + A B (bias[i] for row i, 0 when bias is
 * NULL; C is not read; K >= 1).  A(i, l) = a[i * rsa + l * csa] with
 * rsa == 1 or csa == 1.  B: packed here into bpk, panel by panel; or, with
 * panels != NULL, already packed: the CG_NR-column panel q is
 * panels[q * K * CG_NR ...], K rows of CG_NR values (see
 * convcpu_sgemm_panels), and b, rsb, csb, bpk are unused. */
CG_TARGET static void cg_gemm(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, const float *a,
                              Py_ssize_t rsa, Py_ssize_t csa, const float *b, Py_ssize_t rsb,
                              Py_ssize_t csb, float *c, Py_ssize_t ldc, float *bpk,
                              const float *panels, int set, const float *bias)
{
    const int by_rows = csa == 1;
    for (Py_ssize_t l0 = 0; l0 < K; l0 += CG_KC) {
        const Py_ssize_t kc = K - l0 < CG_KC ? K - l0 : CG_KC;
        const int first = set && l0 == 0;
        const Py_ssize_t mc_max = CG_A_FLOATS / kc > CG_MR ? CG_A_FLOATS / kc : CG_MR;
        const Py_ssize_t n_mc = (M + mc_max - 1) / mc_max;
        const Py_ssize_t mc_even = ((M + n_mc - 1) / n_mc + CG_MR - 1) / CG_MR * CG_MR;
        for (Py_ssize_t i0 = 0; i0 < M; i0 += mc_even) {
            const Py_ssize_t mc = M - i0 < mc_even ? M - i0 : mc_even;
            const float *ablk = a + i0 * rsa + l0 * csa;
            const float *bb = bias != NULL ? bias + i0 : NULL; /* + ir: a block's */
            const Py_ssize_t nblk = (mc + CG_MR - 1) / CG_MR;
            /* A short reduction (kc <= CG_SWEEP_KC) into a C block larger
             * than L2 packs groups of g_n whole panels, and each register
             * block runs through the group before the next block: its rows
             * of C are stored in runs of g_n panels, not one panel at a
             * time (MobileNetV2's 1x1 32->192 @112: 192 rows x 128 bytes,
             * too many streams for the prefetchers; C harness, 4 tasks,
             * 1 thread 82 -> 97 GF/s, 2 threads 141-153 -> 164-174).  With
             * kc = 24-128 or C in L2 it measured -5% to +3%.  The same
             * kernels on the same panels: the same bits. */
            const Py_ssize_t g_max = CG_WS_FLOATS / (kc * CG_NR);
            const Py_ssize_t g_n = g_max < cg_sweep_panels ? g_max : cg_sweep_panels;
            Py_ssize_t j_swept = 0;
            if (by_rows && panels == NULL && kc <= CG_SWEEP_KC && g_n >= 2
                && nblk > cg_inplace_blocks && mc * N * (Py_ssize_t)sizeof(float) > CG_SWEEP_C) {
                for (; j_swept + g_n * CG_NR <= N; j_swept += g_n * CG_NR) {
                    for (Py_ssize_t g = 0; g < g_n; g++)
                        cg_pack_b(kc, CG_NR, b + l0 * rsb + (j_swept + g * CG_NR) * csb, rsb,
                                  csb, bpk + g * kc * CG_NR);
                    float *c_swept = c + i0 * ldc + j_swept;
                    CG_ROW_BLOCKS(CG_MR,
                                  for (Py_ssize_t g = 0; g < g_n; g++)
                                      cg_rows[mr](kc, ablk + ir * rsa, rsa, bpk + g * kc * CG_NR,
                                                  c_swept + g * CG_NR + ir * ldc, ldc,
                                                  (__mmask16)0xFFFF, (__mmask16)0xFFFF, first,
                                                  bb != NULL ? bb + ir : NULL));
                }
            }
            for (Py_ssize_t j0 = j_swept, nr; j0 < N; j0 += nr) {
                /* 32 columns, or 32 + t (A by rows) when that leaves none
                 * (33-36 left) or, packing here, a whole half panel (49-52
                 * left; prepacked panels must start at multiples of 32) */
                const Py_ssize_t left = N - j0;
                /* B read in place: few register blocks share the panel, B's
                 * rows are contiguous, and it is not a 17-24 column panel
                 * (the paired-row kernels read a packed one) */
                const int inplace = by_rows && panels == NULL && csb == 1
                                    && nblk <= cg_inplace_blocks
                                    && !(left > 16 && left <= 24 && cg_pairs);
                const Py_ssize_t t = !by_rows || inplace ? 0
                                     : left > CG_NR && left <= CG_NR + cg_gzmax ? left - CG_NR
                                     : panels == NULL && left > CG_NR + 16
                                             && left <= CG_NR + 16 + cg_gzmax
                                         ? left - CG_NR - 16
                                         : 0;
                nr = left < CG_NR ? left : CG_NR + t;
                float *cblk = c + i0 * ldc + j0;
                const float *bp = bpk, *bt = bpk + CG_KC * CG_NR;
                if (inplace) {
                    const __mmask16 m0 = cg_mask(nr), m1 = cg_mask(nr - 16);
                    const cg_ikernel_t *rows = nr <= 16 ? cg_rows_in_half : cg_rows_in;
                    CG_ROW_BLOCKS(CG_MR, rows[mr](kc, ablk + ir * rsa, rsa, b + l0 * rsb + j0,
                                                  rsb, cblk + ir * ldc, ldc, m0, m1, first,
                                                  bb != NULL ? bb + ir : NULL));
                    continue;
                }
                if (panels != NULL) {
                    bp = panels + (j0 / CG_NR) * K * CG_NR + l0 * CG_NR;
                    bt = bp + K * CG_NR; /* the next panel's first columns */
                } else {
                    cg_pack_b(kc, nr - t, b + l0 * rsb + j0 * csb, rsb, csb, bpk);
                    if (t > 0)
                        cg_pack_b(kc, t, b + l0 * rsb + (j0 + CG_NR) * csb, rsb, csb,
                                  bpk + CG_KC * CG_NR);
                }
                if (t > 0) {
                    CG_ROW_BLOCKS(CG_ZMR2, cg_rowsz[mr][t - 1](kc, ablk + ir * rsa, rsa, bp, bt,
                                                               cblk + ir * ldc, ldc, first,
                                                               bb != NULL ? bb + ir : NULL));
                    continue;
                }
                const __mmask16 m0 = cg_mask(nr), m1 = cg_mask(nr - 16);
                if (by_rows && nr > 16 && nr <= 24 && cg_pairs) {
                    /* 17-24 columns: rows in pairs, three vectors a pair */
                    CG_ROW_BLOCKS(CG_PMR, cg_rowsp[mr](kc, ablk + ir * rsa, rsa, bp,
                                                       cblk + ir * ldc, ldc, m0, m1, first,
                                                       bb != NULL ? bb + ir : NULL));
                    continue;
                }
                /* a panel of <= 16 columns runs on the half-width kernels */
                const cg_kernel_t *rows = nr <= 16 ? cg_rows_half : cg_rows;
                const cg_kernel_t *cols = nr <= 16 ? cg_cols_half : cg_cols;
                if (by_rows)
                    CG_ROW_BLOCKS(CG_MR, rows[mr](kc, ablk + ir * rsa, rsa, bp, cblk + ir * ldc,
                                                  ldc, m0, m1, first,
                                                  bb != NULL ? bb + ir : NULL));
                else
                    CG_ROW_BLOCKS(CG_MR, cols[mr](kc, ablk + ir, csa, bp, cblk + ir * ldc, ldc,
                                                  m0, m1, first, bb != NULL ? bb + ir : NULL));
            }
        }
    }
}

/* The calling thread's workspace for cg_gemm, or NULL when the caller must
 * use BLAS: the own kernels are off, the operands are not BLAS's (a unit
 * stride each), or no workspace could be allocated. */
static float *cg_gemm_workspace(Py_ssize_t rsa, Py_ssize_t csa, Py_ssize_t rsb,
                                Py_ssize_t csb)
{
    if (convcpu_gemm_get() != 1 || (csa != 1 && rsa != 1) || (csb != 1 && rsb != 1))
        return NULL;
    return cg_workspace();
}
#endif /* CONVCPU_OWN_GEMM */

/* Row-major C[M][N] (rows ldc apart) = A[M][K] B[K][N] + beta C, where
 * A(i, l) = a[i * rsa + l * csa] and B(l, j) = b[l * rsb + j * csb].
 * Returns 1 when done, 0 when the caller must use BLAS instead (the own
 * kernels are off or unsupported, or no workspace could be allocated). */
CONVCPU_GEMM_API int convcpu_sgemm(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K,
                                   const float *a, Py_ssize_t rsa, Py_ssize_t csa,
                                   const float *b, Py_ssize_t rsb, Py_ssize_t csb,
                                   float beta, float *c, Py_ssize_t ldc)
{
#if CONVCPU_OWN_GEMM
    float *ws = cg_gemm_workspace(rsa, csa, rsb, csb);
    if (ws == NULL)
        return 0;
    if (beta != 1) {
        for (Py_ssize_t i = 0; i < M; i++) {
            float *row = c + i * ldc;
            if (beta == 0)
                memset(row, 0, (size_t)N * sizeof(float));
            else
                for (Py_ssize_t j = 0; j < N; j++)
                    row[j] *= beta;
        }
    }
    if (M > 0 && N > 0)
        cg_gemm(M, N, K, a, rsa, csa, b, rsb, csb, c, ldc, ws, NULL, 0, NULL);
    return 1;
#else
    (void)M; (void)N; (void)K; (void)a; (void)rsa; (void)csa; (void)b; (void)rsb; (void)csb;
    (void)beta; (void)c; (void)ldc;
    return 0;
#endif
}

/* Row-major C[M][N] (rows ldc apart) = bias[i] (0 when bias is NULL) +
 * A[M][K] B[K][N], A and B as in convcpu_sgemm; C is not read.  The kernels
 * start each element's chain from its bias, as convcpu_sgemm (beta 1) does
 * from a C preset to it: the same bits, without that pass over C (a 1x1
 * convolution of 32 channels to 192: one pass over 9.6 MB of output).
 * Returns 1 when done, 0 (C untouched) when the caller must do it. */
CONVCPU_GEMM_API int convcpu_sgemm_bias(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K,
                                        const float *a, Py_ssize_t rsa, Py_ssize_t csa,
                                        const float *b, Py_ssize_t rsb, Py_ssize_t csb,
                                        const float *bias, float *c, Py_ssize_t ldc)
{
#if CONVCPU_OWN_GEMM
    float *ws = K < 1 ? NULL : cg_gemm_workspace(rsa, csa, rsb, csb);
    if (ws == NULL)
        return 0;
    if (M > 0 && N > 0)
        cg_gemm(M, N, K, a, rsa, csa, b, rsb, csb, c, ldc, ws, NULL, 1, bias);
    return 1;
#else
    (void)M; (void)N; (void)K; (void)a; (void)rsa; (void)csa; (void)b; (void)rsb; (void)csb;
    (void)bias; (void)c; (void)ldc;
    return 0;
#endif
}

#if CONVCPU_OWN_GEMM
/* c[j * ldc + i] = w[i * ldw + j] for i < m, j < n: 16 x 16 blocks. */
CG_TARGET static void cg_store_transposed(Py_ssize_t m, Py_ssize_t n, const float *w,
                                          Py_ssize_t ldw, float *c, Py_ssize_t ldc)
{
    for (Py_ssize_t j0 = 0; j0 < n; j0 += 16) {
        const __mmask16 mj = cg_mask(n - j0);
        for (Py_ssize_t i0 = 0; i0 < m; i0 += 16) {
            __m512 r[16];
            for (int i = 0; i < 16; i++)
                r[i] = i0 + i < m ? _mm512_maskz_loadu_ps(mj, w + (i0 + i) * ldw + j0)
                                  : _mm512_setzero_ps();
            cg_transpose16(r);
            const __mmask16 mi = cg_mask(m - i0);
            for (int j = 0; j < 16 && j0 + j < n; j++)
                _mm512_mask_storeu_ps(c + (j0 + j) * ldc + i0, mi, r[j]);
        }
    }
}
#endif

/* Columns of the product a block of convcpu_sgemm_bias_t: its workspace
 * holds M x CONVCPU_SGEMM_T_COLS floats. */
#define CONVCPU_SGEMM_T_COLS 128

/* Row-major C[N][M] (rows ldc apart) = (bias + A B)^T: C[j][i] = bias[i] (0
 * when bias is NULL) + sum_l A(i, l) B(l, j), A and B as in convcpu_sgemm.
 * The product runs CONVCPU_SGEMM_T_COLS columns of B at a time into ws (M x
 * CONVCPU_SGEMM_T_COLS floats), each element the chain convcpu_sgemm_bias
 * gives it, and is transposed from there into C, 16 x 16 at a time: the same
 * bits as C = bias + B^T A^T by rows.  Why: with C's rows short and not
 * whole vectors (a channels-last pointwise step to 24 channels: 24 of a
 * panel's 32 lanes), the product by rows leaves lanes idle; transposed, they
 * are the pixels (C harness, one thread, 3136 pixels x 144 channels, by rows
 * -> transposed: to 24 channels 276 -> 231 us, 8: 141 -> 100, 40: 406 ->
 * 362, 100: 967 -> 884; 16, 32, 48 and 64 1.05-1.17x slower).  Returns 1
 * when done, 0 (C untouched) when the caller must do it. */
CONVCPU_GEMM_API int convcpu_sgemm_bias_t(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K,
                                          const float *a, Py_ssize_t rsa, Py_ssize_t csa,
                                          const float *b, Py_ssize_t rsb, Py_ssize_t csb,
                                          const float *bias, float *c, Py_ssize_t ldc,
                                          float *ws)
{
#if CONVCPU_OWN_GEMM
    float *bpk = K < 1 ? NULL : cg_gemm_workspace(rsa, csa, rsb, csb);
    if (bpk == NULL)
        return 0;
    for (Py_ssize_t j0 = 0; M > 0 && j0 < N; j0 += CONVCPU_SGEMM_T_COLS) {
        const Py_ssize_t nb = N - j0 < CONVCPU_SGEMM_T_COLS ? N - j0 : CONVCPU_SGEMM_T_COLS;
        cg_gemm(M, nb, K, a, rsa, csa, b + j0 * csb, rsb, csb, ws, CONVCPU_SGEMM_T_COLS, bpk,
                NULL, 1, bias);
        cg_store_transposed(M, nb, ws, CONVCPU_SGEMM_T_COLS, c + j0 * ldc, ldc);
    }
    return 1;
#else
    (void)M; (void)N; (void)K; (void)a; (void)rsa; (void)csa; (void)b; (void)rsb; (void)csb;
    (void)bias; (void)c; (void)ldc; (void)ws;
    return 0;
#endif
}

/* Whether the N columns of convcpu_sgemm_bias_t (pixels along the vector)
 * fill 16-lane vectors at least as well as its M rows would as the columns
 * of the product by rows: where they do not, the transposed product does not
 * pay (a 1x1 conv2d 960->40 @7, 49 pixels in 64 lanes against 40 channels in
 * 48, ran 1.02-1.14x slower transposed). */
CONVCPU_GEMM_API int convcpu_sgemm_t_fills(Py_ssize_t M, Py_ssize_t N)
{
    return N * ((M + 15) / 16) >= M * ((N + 15) / 16);
}

/* The panel width of convcpu_sgemm_panels and convcpu_im2col_panels. */
#define CONVCPU_GEMM_PANEL 32

/* Row-major C[M][N] (rows ldc apart) += A[M][K] B[K][N], A as in
 * convcpu_sgemm, B already in the layout the kernels read: ceil(N / 32)
 * panels of 32 columns, panel q at panels + q*K*32, element (l, j) at
 * panels[(j / 32)*K*32 + l*32 + j % 32] (the columns past N of the last
 * panel are read, not stored: keep them finite).  The im2col of a
 * convolution fills B this way (convcpu_im2col_panels) and the packing pass
 * goes.  The same FMA chains as convcpu_sgemm, so the same bits.  Returns 0,
 * doing nothing, when the own kernels are off or absent. */
CONVCPU_GEMM_API int convcpu_sgemm_panels(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K,
                                          const float *a, Py_ssize_t rsa, Py_ssize_t csa,
                                          const float *panels, float *c, Py_ssize_t ldc)
{
#if CONVCPU_OWN_GEMM
    if (convcpu_gemm_get() != 1 || (csa != 1 && rsa != 1))
        return 0;
    if (M > 0 && N > 0)
        cg_gemm(M, N, K, a, rsa, csa, NULL, 0, 0, c, ldc, NULL, panels, 0, NULL);
    return 1;
#else
    (void)M; (void)N; (void)K; (void)a; (void)rsa; (void)csa; (void)panels; (void)c; (void)ldc;
    return 0;
#endif
}

#if CONVCPU_OWN_GEMM
/* Lanes [lo, hi) of 16. */
static __mmask16 cg_lanes(Py_ssize_t lo, Py_ssize_t hi)
{
    return (__mmask16)(cg_mask(hi) & ~cg_mask(lo));
}

/* Up to CG_SEGMENTS runs of pixels at a time: the runs of a chunk go
 * through every input row (r, s, then c), and every panel row is written in
 * one go by the runs that fill it, several samples' included (conv1d batch
 * 32 L15, a sample's 13 pixels a call: each call swept the whole tile, a
 * 128-byte panel row of it a few lanes at a time). */
#define CG_SEGMENTS 64

CG_TARGET static void cg_im2col_panels(const float *xg, Py_ssize_t HW, Py_ssize_t W,
                                       Py_ssize_t Cg, Py_ssize_t R, Py_ssize_t S,
                                       const Py_ssize_t *hmap, Py_ssize_t sh, Py_ssize_t dh,
                                       Py_ssize_t dw, Py_ssize_t pad_left, Py_ssize_t Wo,
                                       Py_ssize_t p0, Py_ssize_t n, Py_ssize_t nsamp,
                                       Py_ssize_t xstride, float *tile, Py_ssize_t j0,
                                       int last)
{
    const Py_ssize_t P = CONVCPU_GEMM_PANEL, panel = Cg * R * S * P;
    /* a run: pixels of one output row (oh, from column ow0) of one sample
     * (its input at seg_x) in one panel, len of them, the first at dst (row
     * 0 of the panel) */
    Py_ssize_t seg_len[CG_SEGMENTS], seg_oh[CG_SEGMENTS], seg_ow[CG_SEGMENTS];
    Py_ssize_t seg_room[CG_SEGMENTS]; /* lanes stored: len, or to the panel's end */
    float *seg_dst[CG_SEGMENTS];
    const float *seg_x[CG_SEGMENTS];
    const Py_ssize_t total = n * nsamp;
    Py_ssize_t q = 0, j = 0, sample = 0, oh = p0 / Wo, ow0 = p0 % Wo;
    while (q < total) {
        int nseg = 0;
        for (; q < total && nseg < CG_SEGMENTS; nseg++) {
            const Py_ssize_t col = j0 + q, room = P - col % P;
            Py_ssize_t len = Wo - ow0 < n - j ? Wo - ow0 : n - j;
            len = len < room ? len : room;
            seg_len[nseg] = len, seg_oh[nseg] = oh, seg_ow[nseg] = ow0;
            seg_x[nseg] = xg + sample * xstride;
            seg_room[nseg] = last && q + len == total ? room : len; /* zeros past the tile */
            seg_dst[nseg] = tile + (col / P) * panel + col % P;
            q += len;
            j += len;
            ow0 += len;
            if (ow0 == Wo)
                ow0 = 0, oh++;
            if (j == n) /* the next sample, from pixel p0 */
                j = 0, sample++, oh = p0 / Wo, ow0 = p0 % Wo;
        }
        /* per tap (r, s), each run's source offset, masks and destination
         * row are the same for every channel: found once, then the channels
         * (conv1d b32 L15: 256 channels of 22 runs; the masks a channel and
         * run cost more than the copy) */
        for (Py_ssize_t r = 0; r < R; r++)
            for (Py_ssize_t s = 0; s < S; s++) {
                const float *src_k[CG_SEGMENTS];
                float *dst_k[CG_SEGMENTS];
                __mmask16 ld0_k[CG_SEGMENTS], ld1_k[CG_SEGMENTS];
                __mmask16 st0_k[CG_SEGMENTS], st1_k[CG_SEGMENTS];
                for (int k = 0; k < nseg; k++) {
                    const Py_ssize_t ih = hmap[seg_oh[k] * sh + r * dh], len = seg_len[k];
                    st0_k[k] = cg_mask(seg_room[k]);
                    st1_k[k] = cg_mask(seg_room[k] - 16);
                    dst_k[k] = seg_dst[k] + (r * S + s) * P;
                    if (ih < 0) { /* a zero row: nothing is loaded */
                        ld0_k[k] = ld1_k[k] = 0;
                        src_k[k] = seg_x[k];
                        continue;
                    }
                    /* lane q reads input column ow0 + q + s*dw - pad_left:
                     * inside the row (and the run) for q in [lo, hi) */
                    const Py_ssize_t start = seg_ow[k] + s * dw - pad_left;
                    const Py_ssize_t lo = -start, hi = W - start < len ? W - start : len;
                    src_k[k] = seg_x[k] + ih * W + start;
                    ld0_k[k] = cg_lanes(lo, hi);
                    ld1_k[k] = cg_lanes(lo - 16, hi - 16);
                }
                for (Py_ssize_t c = 0; c < Cg; c++) {
                    const Py_ssize_t row = c * R * S * P, plane = c * HW;
                    for (int k = 0; k < nseg; k++) {
                        float *d = dst_k[k] + row;
                        const float *src = src_k[k] + plane;
                        _mm512_mask_storeu_ps(d, st0_k[k], _mm512_maskz_loadu_ps(ld0_k[k], src));
                        if (st1_k[k])
                            _mm512_mask_storeu_ps(d + 16, st1_k[k],
                                                  _mm512_maskz_loadu_ps(ld1_k[k], src + 16));
                    }
                }
            }
    }
}
#endif

/* The im2col of output pixels p0 .. p0+n-1 (row-major over an output Wo
 * wide) of nsamp samples (xstride apart), into the panel layout of
 * convcpu_sgemm_panels: pixel j of sample i is tile column j0 + i*n + j,
 * and row ((c*R + r)*S + s) of pixel (oh, ow)
 * holds input plane c (of Cg, HW apart, rows W wide) at row
 * hmap[oh*sh + r*dh] (-1: a zero) and column ow + s*dw - pad_left (outside
 * [0, W): a zero).  Column stride 1 and zero padding only.  last: these
 * are the tile's last columns, and the rest of their panel is set to zeros.
 * Returns 0, doing nothing, without the own kernels. */
CONVCPU_GEMM_API int convcpu_im2col_panels(const float *xg, Py_ssize_t HW, Py_ssize_t W,
                                           Py_ssize_t Cg, Py_ssize_t R, Py_ssize_t S,
                                           const Py_ssize_t *hmap, Py_ssize_t sh,
                                           Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t pad_left,
                                           Py_ssize_t Wo, Py_ssize_t p0, Py_ssize_t n,
                                           Py_ssize_t nsamp, Py_ssize_t xstride,
                                           float *tile, Py_ssize_t j0, int last)
{
#if CONVCPU_OWN_GEMM
    if (convcpu_gemm_get() != 1)
        return 0;
    cg_im2col_panels(xg, HW, W, Cg, R, S, hmap, sh, dh, dw, pad_left, Wo, p0, n, nsamp,
                     xstride, tile, j0, last);
    return 1;
#else
    (void)xg; (void)HW; (void)W; (void)Cg; (void)R; (void)S; (void)hmap; (void)sh; (void)dh;
    (void)dw; (void)pad_left; (void)Wo; (void)p0; (void)n; (void)nsamp; (void)xstride;
    (void)tile; (void)j0; (void)last;
    return 0;
#endif
}

#if CONVCPU_OWN_GEMM
/* The implicit convolution (convcpu_sconv_implicit): at most this many taps. */
#define CG_TAPS 64
/* rows of B prefetched ahead by the implicit kernels */
#define CG_AHEAD 8

/* A tap of the implicit convolution, for one panel: where its row of B
 * starts (from the panel's first pixel) and which of the 32 lanes read
 * inside the image (bit j: lane j). */
typedef struct {
    int64_t off;
    int64_t lanes; /* 64 bits: a block of taps is filled by int64 vectors */
} cg_tap_t;

/* A register-block kernel of the implicit convolution: (kc, a, lda, x,
 * rows, c, ldc, m0, m1), as below. */
typedef void (*const cg_conv_kernel_t)(Py_ssize_t, const float *, Py_ssize_t, const float *,
                                       const cg_tap_t *, float *, Py_ssize_t, __mmask16,
                                       __mmask16, int, const float *);

/* 16 floats at src, lane j kept where mv's lane j is all ones and +0.0
 * where it is 0: the values of a zero-masked load, by a plain load and a
 * bitwise and (see cg_implicit_and). */
CG_TARGET static inline __m512 cg_and_load(const float *src, const float *mv)
{
    return _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(_mm512_loadu_ps(src)),
                                                _mm512_load_si512((const void *)mv)));
}

/* C[0:MR, 0:16*H] += A (MR x kc, rows lda apart) . B (with first set:
 * C = bias + A . B, bias[i] for row i, 0 when bias is NULL; C is not read),
 * where row l of B is the 32 values x[rows[l].off + j] (j < 32), lanes
 * outside rows[l].lanes read as zeros: the panel an im2col would have
 * written, read from the input in place; rows[kc .. kc+CG_AHEAD-1] are
 * prefetched, never read.  AND 0: masked loads, rows[l].lanes the lanes'
 * bits; AND 1: plain loads and'ed with 32 floats of 0 or all ones at the
 * address rows[l].lanes holds (cg_and_load), every row's 16*H values
 * readable (the caller's check).  The FMA chain of each element of C is the one of CG_KERNEL
 * over the same B: l = 0 .. kc-1 in order, from C's value.  (A is walked by
 * one pointer, as in CG_KERNEL: per-row pointers ran out of registers; and
 * one flat loop over the rows of B: a loop over the taps of each channel
 * cost 33% with 3 taps.) */
#define CG_CONV_KERNEL(NAME, MR, H, AND)                                                 \
    CG_TARGET static void NAME##_##MR(Py_ssize_t kc, const float *restrict a,            \
                                      Py_ssize_t lda, const float *restrict x,           \
                                      const cg_tap_t *restrict rows, float *restrict c,  \
                                      Py_ssize_t ldc, __mmask16 m0, __mmask16 m1,        \
                                      int first, const float *restrict bias)             \
    {                                                                                    \
        __m512 x_[MR], y_[MR];                                                           \
        _Pragma("GCC unroll 12") for (int i = 0; i < MR; i++)                            \
        {                                                                                \
            CG_ROW_START(x_, y_, i, H);                                                  \
        }                                                                                \
        for (const cg_tap_t *tp = rows, *tend = rows + kc; tp != tend; tp++) {           \
            const float *src = x + tp->off;                                              \
            const uint32_t lanes = (uint32_t)tp->lanes;                                  \
            const float *mv = (const float *)(uintptr_t)tp->lanes;                       \
            _mm_prefetch((const char *)(x + tp[CG_AHEAD].off), _MM_HINT_T0);             \
            _mm_prefetch((const char *)(x + tp[CG_AHEAD].off + 16), _MM_HINT_T0);        \
            const __m512 b0 = AND ? cg_and_load(src, mv)                                 \
                                  : _mm512_maskz_loadu_ps((__mmask16)lanes, src);        \
            const __m512 b1 = H != 2 ? _mm512_setzero_ps()                               \
                              : AND  ? cg_and_load(src + 16, mv + 16)                    \
                                     : _mm512_maskz_loadu_ps((__mmask16)(lanes >> 16),   \
                                                             src + 16);                  \
            _Pragma("GCC unroll 12") for (int i = 0; i < MR; i++)                        \
            {                                                                            \
                const __m512 av = _mm512_set1_ps(a[i * lda]);                            \
                x_[i] = _mm512_fmadd_ps(av, b0, x_[i]);                                  \
                if (H == 2)                                                              \
                    y_[i] = _mm512_fmadd_ps(av, b1, y_[i]);                              \
            }                                                                            \
            a++;                                                                         \
        }                                                                                \
        _Pragma("GCC unroll 12") for (int i = 0; i < MR; i++)                            \
        {                                                                                \
            _mm512_mask_storeu_ps(c + i * ldc, m0, x_[i]);                               \
            if (H == 2)                                                                  \
                _mm512_mask_storeu_ps(c + i * ldc + 16, m1, y_[i]);                      \
        }                                                                                \
    }
#define CG_CONV_KERNELS(NAME, H, AND)                                                    \
    CG_MR_KERNELS(CG_CONV_KERNEL, cg_conv_kernel_t, NAME, H, AND)
CG_CONV_KERNELS(cg_conv, 2, 0)
CG_CONV_KERNELS(cg_conv_half, 1, 0)
CG_CONV_KERNELS(cg_conv_and, 2, 1)
CG_CONV_KERNELS(cg_conv_and_half, 1, 1)

/* A panel of 16*H + T pixels (T <= CG_ZMAX): the first 16*H as
 * CG_CONV_KERNEL; each of the T more has one vector whose lane i is row i
 * of C.  The A values of a step, broadcast for the 16*H lanes anyway, are
 * blended into one vector (a tree of masks 0xAAAA, 0xCCCC, 0xF0F0, 0xFF00:
 * lane i holds row i) and multiplied by the pixel's B value, broadcast.  So
 * a ragged end of 1-4 pixels costs a few FMAs and blends per step instead
 * of a vector of mostly idle lanes in each row.  Lane i's FMA chain is
 * CG_CONV_KERNEL's for row i (l in order, from C's value or the bias;
 * fma(a, b, acc) with a*b == b*a): the same bits.  With H = 2, MR <= 8
 * leaves registers for the T accumulators (at 10 rows, two accumulators
 * went to the stack). */
#define CG_ZMAX 4
/* The implicit tail kernels' tap step, on the kernel's own x: a tap's B
 * row, where it starts, which lanes it reads, the prefetch of the tap
 * CG_AHEAD on. */
#define CG_CONV_TAP_START(src, lanes, tp)                                                \
    const float *src = x + tp->off;                                                      \
    const uint64_t lanes = (uint64_t)tp->lanes;                                          \
    _mm_prefetch((const char *)(x + tp[CG_AHEAD].off), _MM_HINT_T0)
#define CG_CONV_KERNEL_Z(NAME, MR, H, T)                                                 \
    CG_TARGET static void NAME##_##MR##_##T(Py_ssize_t kc, const float *restrict a,      \
                                            Py_ssize_t lda, const float *restrict x,     \
                                            const cg_tap_t *restrict rows,               \
                                            float *restrict c, Py_ssize_t ldc, int first, \
                                            const float *restrict bias)                  \
    {                                                                                    \
        __m512 x_[MR], y_[MR], z_[T];                                                    \
        float zb[T][16] __attribute__((aligned(64)));                                    \
        _Pragma("GCC unroll 12") for (int i = 0; i < MR; i++)                            \
        {                                                                                \
            if (first) {                                                                 \
                x_[i] = bias != NULL ? _mm512_set1_ps(bias[i]) : _mm512_setzero_ps();    \
                y_[i] = x_[i];                                                           \
            } else {                                                                     \
                x_[i] = _mm512_loadu_ps(c + i * ldc);                                    \
                y_[i] = H == 2 ? _mm512_loadu_ps(c + i * ldc + 16) : _mm512_setzero_ps(); \
            }                                                                            \
            CG_TAIL_START(zb, T, i, 16 * H);                                             \
        }                                                                                \
        CG_TAIL_LOAD(zb, MR, T, z_);                                                    \
        for (const cg_tap_t *tp = rows, *tend = rows + kc; tp != tend; tp++) {           \
            CG_CONV_TAP_START(src, lanes, tp);                                           \
            if (H == 2)                                                                  \
                _mm_prefetch((const char *)(x + tp[CG_AHEAD].off + 16), _MM_HINT_T0);    \
            const __m512 b0 = _mm512_maskz_loadu_ps((__mmask16)lanes, src);              \
            const __m512 b1 = H == 2                                                     \
                ? _mm512_maskz_loadu_ps((__mmask16)(lanes >> 16), src + 16)              \
                : _mm512_setzero_ps();                                                   \
            const __m512 bz = _mm512_maskz_loadu_ps(                                     \
                (__mmask16)((lanes >> (16 * H)) & ((1u << T) - 1)), src + 16 * H);       \
            __m512 av[16];                                                               \
            _Pragma("GCC unroll 12") for (int i = 0; i < MR; i++)                        \
            {                                                                            \
                av[i] = _mm512_set1_ps(a[i * lda]);                                      \
                x_[i] = _mm512_fmadd_ps(av[i], b0, x_[i]);                               \
                if (H == 2)                                                              \
                    y_[i] = _mm512_fmadd_ps(av[i], b1, y_[i]);                           \
            }                                                                            \
            CG_TAIL_STEP(av, MR, T, bz, z_);                                             \
            a++;                                                                         \
        }                                                                                \
        CG_TAIL_END(zb, MR, H, T, x_, y_, z_, c, ldc);                                  \
    }
typedef void (*const cg_zkernel_t)(Py_ssize_t, const float *, Py_ssize_t, const float *,
                                   const cg_tap_t *, float *, Py_ssize_t, int, const float *);
#define CG_CONV_KERNELS_Z(NAME, MR, H)                                                   \
    CG_CONV_KERNEL_Z(NAME, MR, H, 1) CG_CONV_KERNEL_Z(NAME, MR, H, 2)                    \
    CG_CONV_KERNEL_Z(NAME, MR, H, 3) CG_CONV_KERNEL_Z(NAME, MR, H, 4)
CG_CONV_KERNELS_Z(cg_convz, 1, 2) CG_CONV_KERNELS_Z(cg_convz, 2, 2)
CG_CONV_KERNELS_Z(cg_convz, 3, 2) CG_CONV_KERNELS_Z(cg_convz, 4, 2)
CG_CONV_KERNELS_Z(cg_convz, 5, 2) CG_CONV_KERNELS_Z(cg_convz, 6, 2)
CG_CONV_KERNELS_Z(cg_convz, 7, 2) CG_CONV_KERNELS_Z(cg_convz, 8, 2)
static cg_zkernel_t cg_convz[CG_ZMR2 + 1][CG_ZMAX] = {
    {NULL, NULL, NULL, NULL}, CG_ZROW(cg_convz, 1), CG_ZROW(cg_convz, 2),
    CG_ZROW(cg_convz, 3), CG_ZROW(cg_convz, 4), CG_ZROW(cg_convz, 5), CG_ZROW(cg_convz, 6),
    CG_ZROW(cg_convz, 7), CG_ZROW(cg_convz, 8)};
CG_CONV_KERNELS_Z(cg_convz_half, 1, 1) CG_CONV_KERNELS_Z(cg_convz_half, 2, 1)
CG_CONV_KERNELS_Z(cg_convz_half, 3, 1) CG_CONV_KERNELS_Z(cg_convz_half, 4, 1)
CG_CONV_KERNELS_Z(cg_convz_half, 5, 1) CG_CONV_KERNELS_Z(cg_convz_half, 6, 1)
CG_CONV_KERNELS_Z(cg_convz_half, 7, 1) CG_CONV_KERNELS_Z(cg_convz_half, 8, 1)
CG_CONV_KERNELS_Z(cg_convz_half, 9, 1) CG_CONV_KERNELS_Z(cg_convz_half, 10, 1)
CG_CONV_KERNELS_Z(cg_convz_half, 11, 1) CG_CONV_KERNELS_Z(cg_convz_half, 12, 1)
static cg_zkernel_t cg_convz_half[CG_MR + 1][CG_ZMAX] = {
    {NULL, NULL, NULL, NULL}, CG_ZROW(cg_convz_half, 1), CG_ZROW(cg_convz_half, 2),
    CG_ZROW(cg_convz_half, 3), CG_ZROW(cg_convz_half, 4), CG_ZROW(cg_convz_half, 5),
    CG_ZROW(cg_convz_half, 6), CG_ZROW(cg_convz_half, 7), CG_ZROW(cg_convz_half, 8),
    CG_ZROW(cg_convz_half, 9), CG_ZROW(cg_convz_half, 10), CG_ZROW(cg_convz_half, 11),
    CG_ZROW(cg_convz_half, 12)};
static int cg_zmax = CG_ZMAX; /* 0: no tail kernels (an A/B harness's switch) */

/* A panel of 37-50 pixels (a 7x7 image's 49) in one pass: 48 lanes in three
 * vectors per row (the third masked by m2 when the panel is narrower), and
 * T = 0-2 pixels past them as in CG_CONV_KERNEL_Z, the rows' A values merged
 * into one vector by masked moves (lane i: row i).  As a panel of 32 and one
 * of 16 + t, the second pass read A again for 12 FMAs per 12 broadcasts and
 * ran at 0.70 of a full panel's time for half its work.  C harness, one
 * thread, 128 rows x 4608 terms, 32 + (16 + t) -> this: 49 pixels 0.88-0.90,
 * 37-48 0.87, 50 0.91; 51 and 52 (T = 3, 4; 6 rows a block, or spills at 8)
 * 1.01 and 1.03-1.05, so those stay as they were.  MR <= CG_MR3 (8) rows:
 * 24 accumulators.  Every element's chain is CG_CONV_KERNEL's: the same
 * bits. */
#define CG_MR3 8
#define CG_T3MAX 2
#define CG_CONV_KERNEL3(NAME, MR, T, AND)                                                \
    CG_TARGET static void NAME##_##MR##_##T(Py_ssize_t kc, const float *restrict a,      \
                                            Py_ssize_t lda, const float *restrict x,     \
                                            const cg_tap_t *restrict rows,               \
                                            float *restrict c, Py_ssize_t ldc,           \
                                            __mmask16 m2, int first,                     \
                                            const float *restrict bias)                  \
    {                                                                                    \
        __m512 x_[MR], y_[MR], w_[MR], z_[T > 0 ? T : 1];                                \
        float zb[T > 0 ? T : 1][16] __attribute__((aligned(64)));                        \
        _Pragma("GCC unroll 8") for (int i = 0; i < MR; i++)                             \
        {                                                                                \
            if (first) {                                                                 \
                x_[i] = bias != NULL ? _mm512_set1_ps(bias[i]) : _mm512_setzero_ps();    \
                y_[i] = x_[i];                                                           \
                w_[i] = x_[i];                                                           \
            } else {                                                                     \
                x_[i] = _mm512_loadu_ps(c + i * ldc);                                    \
                y_[i] = _mm512_loadu_ps(c + i * ldc + 16);                               \
                w_[i] = _mm512_maskz_loadu_ps(m2, c + i * ldc + 32);                     \
            }                                                                            \
            CG_TAIL_START(zb, T, i, 48);                                                 \
        }                                                                                \
        CG_TAIL_LOAD(zb, MR, T, z_);                                                    \
        for (const cg_tap_t *tp = rows, *tend = rows + kc; tp != tend; tp++) {           \
            CG_CONV_TAP_START(src, lanes, tp);                                           \
            _mm_prefetch((const char *)(x + tp[CG_AHEAD].off + 16), _MM_HINT_T0);        \
            _mm_prefetch((const char *)(x + tp[CG_AHEAD].off + 32), _MM_HINT_T0);        \
            const float *mv = (const float *)(uintptr_t)tp->lanes;                       \
            const __m512 b0 = AND ? cg_and_load(src, mv)                                 \
                                  : _mm512_maskz_loadu_ps((__mmask16)lanes, src);        \
            const __m512 b1 = AND ? cg_and_load(src + 16, mv + 16)                       \
                                  : _mm512_maskz_loadu_ps((__mmask16)(lanes >> 16),      \
                                                          src + 16);                     \
            const __m512 b2 = AND ? cg_and_load(src + 32, mv + 32)                       \
                                  : _mm512_maskz_loadu_ps((__mmask16)(lanes >> 32),      \
                                                          src + 32);                     \
            const __m512 bz = T == 0 ? _mm512_setzero_ps()                               \
                              : AND  ? cg_and_load(src + 48, mv + 48)                    \
                                     : _mm512_maskz_loadu_ps(                            \
                                           (__mmask16)((lanes >> 48) & ((1u << T) - 1)), \
                                           src + 48);                                    \
            __m512 zv = _mm512_setzero_ps();                                             \
            _Pragma("GCC unroll 8") for (int i = 0; i < MR; i++)                         \
            {                                                                            \
                const __m512 av = _mm512_set1_ps(a[i * lda]);                            \
                x_[i] = _mm512_fmadd_ps(av, b0, x_[i]);                                  \
                y_[i] = _mm512_fmadd_ps(av, b1, y_[i]);                                  \
                w_[i] = _mm512_fmadd_ps(av, b2, w_[i]);                                  \
                if (T > 0)                                                               \
                    zv = i == 0 ? av : _mm512_mask_mov_ps(zv, (__mmask16)(1u << i), av); \
            }                                                                            \
            if (T > 0)                                                                   \
                z_[0] = _mm512_fmadd_ps(                                                 \
                    zv, _mm512_broadcastss_ps(_mm512_castps512_ps128(bz)), z_[0]);       \
            _Pragma("GCC unroll 4") for (int t_ = 1; t_ < T; t_++)                       \
                z_[t_] = _mm512_fmadd_ps(                                                \
                    zv, _mm512_permutexvar_ps(_mm512_set1_epi32(t_), bz), z_[t_]);       \
            a++;                                                                         \
        }                                                                                \
        for (int t_ = 0; t_ < T; t_++)                                                   \
            _mm512_store_ps(zb[t_], z_[t_]);                                             \
        _Pragma("GCC unroll 8") for (int i = 0; i < MR; i++)                             \
        {                                                                                \
            _mm512_storeu_ps(c + i * ldc, x_[i]);                                        \
            _mm512_storeu_ps(c + i * ldc + 16, y_[i]);                                   \
            _mm512_mask_storeu_ps(c + i * ldc + 32, m2, w_[i]);                          \
            for (int t_ = 0; t_ < T; t_++)                                               \
                c[i * ldc + 48 + t_] = zb[t_][i];                                        \
        }                                                                                \
    }
typedef void (*const cg_conv3_kernel_t)(Py_ssize_t, const float *, Py_ssize_t, const float *,
                                        const cg_tap_t *, float *, Py_ssize_t, __mmask16, int,
                                        const float *);
#define CG_CONV_KERNELS3(NAME, MR, AND)                                                  \
    CG_CONV_KERNEL3(NAME, MR, 0, AND) CG_CONV_KERNEL3(NAME, MR, 1, AND)                  \
    CG_CONV_KERNEL3(NAME, MR, 2, AND)
#define CG_ROW3(NAME, MR) {NAME##_##MR##_0, NAME##_##MR##_1, NAME##_##MR##_2}
/* NAME[MR][T] for MR = 1 .. CG_MR3, T = 0 .. CG_T3MAX */
#define CG_CONV_TABLE3(NAME, AND)                                                        \
    CG_CONV_KERNELS3(NAME, 1, AND) CG_CONV_KERNELS3(NAME, 2, AND)                        \
    CG_CONV_KERNELS3(NAME, 3, AND) CG_CONV_KERNELS3(NAME, 4, AND)                        \
    CG_CONV_KERNELS3(NAME, 5, AND) CG_CONV_KERNELS3(NAME, 6, AND)                        \
    CG_CONV_KERNELS3(NAME, 7, AND) CG_CONV_KERNELS3(NAME, 8, AND)                        \
    static cg_conv3_kernel_t NAME[CG_MR3 + 1][CG_T3MAX + 1] = {                          \
        {NULL, NULL, NULL}, CG_ROW3(NAME, 1), CG_ROW3(NAME, 2), CG_ROW3(NAME, 3),        \
        CG_ROW3(NAME, 4),   CG_ROW3(NAME, 5), CG_ROW3(NAME, 6), CG_ROW3(NAME, 7),        \
        CG_ROW3(NAME, 8)};
CG_CONV_TABLE3(cg_conv3, 0)
CG_CONV_TABLE3(cg_conv3_and, 1)
static int cg_wide3 = 1; /* 0: no 48-lane panels (an A/B harness's switch) */

/* Bit j of the result: lo <= v[j] < hi, for the 8 * nv values v in nv
 * vectors of 8. */
#define CG_LANES 56 /* a panel of 48 + CG_T3MAX pixels, in int64 vectors of 8 */
CG_TARGET static inline uint64_t cg_between(const __m512i v[CG_LANES / 8], int nv,
                                            int64_t lo, int64_t hi)
{
    const __m512i l = _mm512_set1_epi64(lo), h = _mm512_set1_epi64(hi);
    uint64_t bits = 0;
    for (int k = 0; k < nv; k++)
        bits |= (uint64_t)(_mm512_cmp_epi64_mask(v[k], l, _MM_CMPINT_NLT)
                           & _mm512_cmp_epi64_mask(v[k], h, _MM_CMPINT_LT)) << (8 * k);
    return bits;
}

/* The taps of the panel of output pixels q0 .. q0+nr-1 (nr <= CG_LANES;
 * rows PW wide, images Ho rows tall): tap t = r*S + s reads offs[t] from
 * each pixel's place (see convcpu_sconv_implicit), in lane j when that is
 * inside the H x W image. */
CG_TARGET static void cg_conv_taps(Py_ssize_t q0, Py_ssize_t nr, Py_ssize_t R, Py_ssize_t S,
                                   Py_ssize_t H, Py_ssize_t W, Py_ssize_t Ho, Py_ssize_t PW,
                                   Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pad_top,
                                   Py_ssize_t pad_left, Py_ssize_t dh, Py_ssize_t dw,
                                   const int64_t *offs, cg_tap_t *taps)
{
    uint64_t rows[CG_TAPS], cols[CG_TAPS];
    int64_t ohs[CG_LANES], ows[CG_LANES];
    /* the vectors of 8 lanes that hold the panel's pixels (the lanes past
     * them: bits 0) */
    const int nv = (int)((nr + 7) / 8);
    /* output row oh of its image (Ho rows; the next image's rows follow) */
    Py_ssize_t oh = q0 / PW % Ho, ow = q0 % PW;
    for (int j = 0; j < 8 * nv; j++) { /* lanes past nr: a row no tap reaches */
        ohs[j] = j < nr ? oh * sh : -((int64_t)1 << 62);
        ows[j] = ow * sw;
        if (++ow == PW && (ow = 0, ++oh == Ho))
            oh = 0;
    }
    __m512i vh[CG_LANES / 8], vw[CG_LANES / 8];
    for (int k = 0; k < nv; k++) {
        vh[k] = _mm512_loadu_si512(ohs + 8 * k);
        vw[k] = _mm512_loadu_si512(ows + 8 * k);
    }
    /* tap (r, s) reads input row oh*sh + r*dh - pad_top, column
     * ow*sw + s*dw - pad_left (inside the image: its lane's bit), at
     * offs[r*S + s] from the pixel's own place (cg_conv_offsets) */
    for (Py_ssize_t r = 0; r < R; r++)
        rows[r] = cg_between(vh, nv, pad_top - r * dh, H + pad_top - r * dh);
    for (Py_ssize_t s = 0; s < S; s++)
        cols[s] = cg_between(vw, nv, pad_left - s * dw, W + pad_left - s * dw);
    for (Py_ssize_t r = 0; r < R; r++)
        for (Py_ssize_t s = 0; s < S; s++) {
            taps[r * S + s].off = q0 + offs[r * S + s];
            taps[r * S + s].lanes = (int64_t)(rows[r] & cols[s]);
        }
}

/* Where tap (r, s) reads, from the output pixel's own place in the phase
 * planes: the same for every panel.  It reads input row
 * oh*sh + r*dh - pad_top: phase plane row fh = (r*dh - pad_top) mod sh,
 * at row oh + floor((r*dh - pad_top) / sh); the columns alike. */
static void cg_conv_offsets(Py_ssize_t R, Py_ssize_t S, Py_ssize_t PW, Py_ssize_t plane,
                            Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pad_top,
                            Py_ssize_t pad_left, Py_ssize_t dh, Py_ssize_t dw, int64_t *offs)
{
    for (Py_ssize_t r = 0; r < R; r++) {
        const Py_ssize_t ar = r * dh - pad_top, fh = ((ar % sh) + sh) % sh;
        for (Py_ssize_t s = 0; s < S; s++) {
            const Py_ssize_t as = s * dw - pad_left, fw = ((as % sw) + sw) % sw;
            offs[r * S + s] = (fh * sw + fw) * plane + (ar - fh) / sh * PW + (as - fw) / sw;
        }
    }
}

/* For the and'ed loads (CG_CONV_KERNEL, CG_CONV_KERNEL3 with AND): the
 * first 16*nv lane bits of each of the RS taps as 16*nv floats at
 * mv + 16*nv*k (all ones where the bit is set, 0 elsewhere), and the tap's
 * lanes pointing there. */
CG_TARGET static void cg_conv_lane_vectors(cg_tap_t *taps, Py_ssize_t RS, int nv, float *mv)
{
    for (Py_ssize_t k = 0; k < RS; k++) {
        const uint64_t lanes = (uint64_t)taps[k].lanes;
        taps[k].lanes = (int64_t)(uintptr_t)mv;
        for (int v = 0; v < nv; v++, mv += 16)
            _mm512_store_si512((void *)mv,
                               _mm512_maskz_set1_epi32((__mmask16)(lanes >> (16 * v)), -1));
    }
}

/* The rows of B of cn channels (cs apart) for the taps of a panel:
 * rows[ci*RS + t] = taps[t], its offset + ci*cs; by int64 vectors (a scalar
 * loop cost 5% of a 3x3 64->64 conv). */
CG_TARGET static void cg_conv_rows(const cg_tap_t *taps, Py_ssize_t RS, Py_ssize_t cn,
                                   Py_ssize_t cs, cg_tap_t *rows)
{
    const int64_t *src = (const int64_t *)taps;
    int64_t *dst = (int64_t *)rows;
    const __m512i step = _mm512_set_epi64(0, cs, 0, cs, 0, cs, 0, cs);
    __m512i add = _mm512_setzero_si512();
    for (Py_ssize_t ci = 0; ci < cn; ci++, dst += 2 * RS) {
        for (Py_ssize_t k = 0; k < 2 * RS; k += 8) {
            const __mmask8 m = 2 * RS - k >= 8 ? (__mmask8)0xFF
                                                : (__mmask8)((1u << (2 * RS - k)) - 1);
            const __m512i v = _mm512_maskz_loadu_epi64(m, src + k);
            _mm512_mask_storeu_epi64(dst + k, m, _mm512_add_epi64(v, add));
        }
        add = _mm512_add_epi64(add, step);
    }
}

/* The last 3-CG_TT pixels of a tile after its panels of 48 lanes, or a
 * whole tile of 1-CG_TT pixels (convcpu_sconv_implicit, wide panels), with
 * output channels along the vector: lane i of a pixel's accumulator is row
 * i of a block of 16 rows of A, and the B value of term k is broadcast.
 * Each block of 16 terms of those rows is loaded row by row and transposed
 * in registers (cg_transpose16), so A is read once for all the tail's
 * pixels and no lane sits idle past them.  A 48-lane panel's 0-2 extra
 * pixels (CG_CONV_KERNEL3) merge 8 rows' A values with 7 masked moves a
 * term; a half panel (<= 16 pixels) runs the panel's per-tap tables and its
 * C for 1-8 pixels.  C harness, one thread, one task's 64 rows of 3x3
 * 256->256 (2304 terms): 196 pixels (4 x 48 + 4) 0.948-0.979 of the time of
 * 48, 48, 50, 50; 195 0.976; 197-200 (48 x 4 + 5-8 on a half panel)
 * 0.970-0.988; 193-194 (T = 1, 2) 1.007-1.010, so those stay on
 * CG_CONV_KERNEL3; a lone tile of 1-8 pixels 0.36-0.68.  The B values of
 * the tail's pixels are in col (CG_TT a term, 0 where a tap falls outside
 * the image: cg_conv_tail_cols).  Every element's chain is CG_CONV_KERNEL's
 * (from the bias or C, one FMA a term in order): the same bits. */
#define CG_TT 8
#define CG_CONV_KERNEL_T(NAME, T)                                                        \
    CG_TARGET static void NAME##_##T(Py_ssize_t kc, Py_ssize_t mr, const float *restrict a, \
                                     Py_ssize_t lda, const float *restrict col,          \
                                     float *restrict c, Py_ssize_t ldc, int first,       \
                                     const float *restrict bias)                         \
    {                                                                                    \
        __m512 acc[T];                                                                   \
        float buf[T][16] __attribute__((aligned(64)));                                   \
        for (Py_ssize_t i = 0; i < mr; i++) /* the bias or C, as the other tails */      \
            CG_TAIL_START(buf, T, i, 0);                                                 \
        CG_TAIL_LOAD(buf, mr, T, acc);                                                   \
        for (Py_ssize_t k0 = 0; k0 < kc; k0 += 16) {                                     \
            const Py_ssize_t kn = kc - k0 < 16 ? kc - k0 : 16;                           \
            __m512 r[16];                                                                \
            if (kn == 16 && mr == 16) { /* plain loads: a masked one takes an FMA slot */ \
                _Pragma("GCC unroll 16") for (int i = 0; i < 16; i++)                    \
                    r[i] = _mm512_loadu_ps(a + i * lda + k0);                            \
            } else {                                                                     \
                const __mmask16 km = cg_mask(kn);                                        \
                _Pragma("GCC unroll 16") for (int i = 0; i < 16; i++)                    \
                    r[i] = i < mr ? _mm512_maskz_loadu_ps(km, a + i * lda + k0)          \
                                  : _mm512_setzero_ps();                                 \
            }                                                                            \
            cg_transpose16(r); /* r[j]: term k0 + j of the 16 rows */                    \
            if (kn == 16) {                                                              \
                _Pragma("GCC unroll 16") for (int j = 0; j < 16; j++)                    \
                    _Pragma("GCC unroll 8") for (int p = 0; p < T; p++)                  \
                        acc[p] = _mm512_fmadd_ps(                                        \
                            r[j], _mm512_set1_ps(col[(k0 + j) * CG_TT + p]), acc[p]);    \
            } else {                                                                     \
                for (Py_ssize_t j = 0; j < kn; j++)                                      \
                    _Pragma("GCC unroll 8") for (int p = 0; p < T; p++)                  \
                        acc[p] = _mm512_fmadd_ps(                                        \
                            r[j], _mm512_set1_ps(col[(k0 + j) * CG_TT + p]), acc[p]);    \
            }                                                                            \
        }                                                                                \
        for (int p = 0; p < T; p++) {                                                    \
            _mm512_store_ps(buf[p], acc[p]);                                             \
            for (Py_ssize_t i = 0; i < mr; i++)                                          \
                c[i * ldc + p] = buf[p][i];                                              \
        }                                                                                \
    }
typedef void (*const cg_tkernel_t)(Py_ssize_t, Py_ssize_t, const float *, Py_ssize_t,
                                   const float *, float *, Py_ssize_t, int, const float *);
CG_CONV_KERNEL_T(cg_convt, 1) CG_CONV_KERNEL_T(cg_convt, 2) CG_CONV_KERNEL_T(cg_convt, 3)
CG_CONV_KERNEL_T(cg_convt, 4) CG_CONV_KERNEL_T(cg_convt, 5) CG_CONV_KERNEL_T(cg_convt, 6)
CG_CONV_KERNEL_T(cg_convt, 7) CG_CONV_KERNEL_T(cg_convt, 8)
/* cg_convt[T]: the tail kernel of T pixels */
static cg_tkernel_t cg_convt[CG_TT + 1] = {NULL,       cg_convt_1, cg_convt_2, cg_convt_3, cg_convt_4,
                                          cg_convt_5, cg_convt_6, cg_convt_7, cg_convt_8};
static int cg_ttail = 1; /* 0: no transposed tails (an A/B harness's switch) */

/* The B values of a tail of T <= CG_TT pixels for the kc rows of B
 * (cg_conv_rows, from xb): col[k*CG_TT + p], 0 where the tap of row k falls
 * outside the image for pixel p (its lane bit clear: not read). */
CG_TARGET static void cg_conv_tail_cols(const cg_tap_t *rows, Py_ssize_t kc, const float *xb,
                                        Py_ssize_t T, float *col)
{
    const uint64_t tm = ((uint64_t)1 << T) - 1;
    for (Py_ssize_t k = 0; k < kc; k++)
        _mm256_store_ps(col + k * CG_TT,
                        _mm512_castps512_ps256(_mm512_maskz_loadu_ps(
                            (__mmask16)((uint64_t)rows[k].lanes & tm), xb + rows[k].off)));
}
#endif

#if CONVCPU_OWN_GEMM
/* How the implicit convolution's whole and half panels read B: 0 by
 * zero-masked loads; 1 by plain loads and'ed with a lane vector of the tap
 * (CG_CONV_KERNEL with AND), where every row of a panel's channel block lies
 * in the memory the caller names readable (elsewhere, and on the narrow
 * panels' 1-4 pixel tails, masked loads); -1: not decided yet (on AMD Zen 4,
 * the and: cg_zen4).  The same values, so the same bits, either way. */
static int cg_implicit_and = -1;
/* How the implicit convolution cuts a tile into panels: 1 (wide) panels of
 * 48 lanes, no blend-tree tail kernels, the last 3-8 pixels after them (or
 * a whole tile of 1-8) on the transposed tail (CG_CONV_KERNEL_T); 0 panels
 * of 32, their 1-4 pixel tails on the
 * tail kernels, a last 37-50 in one of 48 lanes; -1: not decided yet (on
 * AMD Zen 4, wide).  The same sums either way. */
static int cg_implicit_wide = -1;

/* Whether this is AMD's family 19h (Zen 4, its first cores with AVX-512),
 * which runs a 512-bit FMA on both of its 256-bit FMA pipes.  There (C
 * harness, one core of this project's Zen 4 machine, docs/BENCHMARKS.md):
 *   - a zero-masked 512-bit load took an FMA slot: the implicit kernel at
 *     102-107 GFLOP/s with masked loads, 111-115 with plain ones or with the
 *     and (cg_implicit_and);
 *   - the tail kernels' blend trees cost more than idle lanes: a panel of
 *     32 + 4 pixels 1.65x one of 32, where one of 48 lanes takes 1.45x, and
 *     48 lanes ran 3% faster a pixel than 32 (cg_implicit_wide).
 * Elsewhere the kernels keep what they were tuned for on Zen 5 (and Intel's
 * AVX-512 cores run a 512-bit vpandd on an FMA port). */
static int cg_zen4(void)
{
    unsigned int eax, ebx, ecx, edx;
    if (!__get_cpuid(0, &eax, &ebx, &ecx, &edx) || ebx != 0x68747541u /* "Auth" */
        || edx != 0x69746e65u /* "enti" */ || ecx != 0x444d4163u /* "cAMD" */)
        return 0;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx))
        return 0;
    const unsigned int base = (eax >> 8) & 0xF;
    return base + (base == 0xF ? (eax >> 20) & 0xFF : 0) == 0x19;
}
#endif

/* The implicit convolution's loads in use: 1 plain loads and'ed with the
 * taps' lane vectors where they stay in bounds, 0 masked loads (and 0
 * without the own kernels). */
CONVCPU_GEMM_API int convcpu_implicit_and_get(void)
{
#if CONVCPU_OWN_GEMM
    if (cg_implicit_and < 0)
        cg_implicit_and = convcpu_gemm_supported() && cg_zen4();
    return cg_implicit_and;
#else
    return 0;
#endif
}

/* Ask for them (1) or for masked loads (0); returns what is now in use. */
CONVCPU_GEMM_API int convcpu_implicit_and_set(int on)
{
#if CONVCPU_OWN_GEMM
    cg_implicit_and = on && convcpu_gemm_supported();
#else
    (void)on;
#endif
    return convcpu_implicit_and_get();
}

/* The implicit convolution's panels in use: 1 wide (48 lanes, no tail
 * kernels), 0 narrow (32 lanes and the tail kernels). */
CONVCPU_GEMM_API int convcpu_implicit_wide_get(void)
{
#if CONVCPU_OWN_GEMM
    if (cg_implicit_wide < 0)
        cg_implicit_wide = cg_zen4();
    return cg_implicit_wide;
#else
    return 0;
#endif
}

/* Ask for wide (1) or narrow (0) panels; returns what is now in use. */
CONVCPU_GEMM_API int convcpu_implicit_wide_set(int on)
{
#if CONVCPU_OWN_GEMM
    cg_implicit_wide = on != 0;
#else
    (void)on;
#endif
    return convcpu_implicit_wide_get();
}

/* A zero-padded NCHW convolution by the GEMM kernels with the im2col done
 * in their registers: C[k][j] (rows ldc apart) += sum over
 * l = (ci*R + r)*S + s of a[k*lda + l] times the input value that tap
 * (r, s) of channel ci reads for output pixel q = p0 + j (0 where that is
 * outside the H x W image), for k < M, j < n; with set, C[k][j] = bias[k]
 * (0 when bias is NULL) + that sum, C not read (the chains start from
 * bias[k], as they would from a C preset to it).
 *
 * x holds the input in phase planes whose rows are as wide as the output's,
 * PW: channel ci at x + ci*cs, plane (fh, fw) (fh < sh, fw < sw) at
 * + (fh*sw + fw)*PH*PW, its element (v, u) at + v*PW + u, input pixel
 * (v*sh + fh, u*sw + fw).  Stride 1 with "same" columns (pad_left +
 * pad_right = dw*(S-1), so W == PW) is the input itself (cs = PH*PW = H*W);
 * a larger stride needs a copy (the caller's; PH rows may start anywhere:
 * x need only hold the rows the taps of pixels p0 .. p0+n-1 read).  Then
 * the 32 pixels of a panel read 32 consecutive values per tap, masked at
 * the image's edges: no im2col tile and no packing pass.  Narrow panels
 * (cg_implicit_wide 0): a tile's last 1-4 pixels past a panel or a half
 * panel go to the tail kernels (CG_CONV_KERNEL_Z), in a panel of 33-36 or
 * 17-20; a tile's last 37-50 run as one panel of 48 lanes + 0-2
 * (CG_CONV_KERNEL3).  Wide panels: 48 lanes + 0-2, the last ones cut so
 * that no tail kernel runs (the loop below).  Several images
 * (stride 1, H == Ho, W == PW): output pixel q of image m is pixel
 * m*Ho*PW + q, and each plane holds the images' rows one after another
 * (PH = images * H); Ho is the output rows of one image.  The same FMA
 * chains as convcpu_sgemm over the im2col, so the same bits.  A
 * (M x C*R*S) is read in blocks of rows that stay in L2, and the input in
 * blocks of channels, as in cg_gemm.  x[lo .. hi) is readable memory (the
 * input, or the caller's copy): the loads of a masked-out lane may touch it
 * (convcpu_implicit_and_get), never what lies outside.  Returns 0, doing
 * nothing, when the own kernels are off or absent, or R*S > CG_TAPS. */
CONVCPU_GEMM_API int convcpu_sconv_implicit(Py_ssize_t M, Py_ssize_t C, Py_ssize_t R,
                                            Py_ssize_t S, const float *a, Py_ssize_t lda,
                                            const float *x, Py_ssize_t cs, Py_ssize_t PH,
                                            Py_ssize_t PW, Py_ssize_t H, Py_ssize_t W,
                                            Py_ssize_t Ho, Py_ssize_t sh, Py_ssize_t sw,
                                            Py_ssize_t pad_top, Py_ssize_t pad_left,
                                            Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t p0,
                                            Py_ssize_t n, float *c, Py_ssize_t ldc, int set,
                                            const float *bias, Py_ssize_t lo, Py_ssize_t hi)
{
#if CONVCPU_OWN_GEMM
    const Py_ssize_t RS = R * S, P = CONVCPU_GEMM_PANEL;
    const int use_and = convcpu_implicit_and_get(), wide = convcpu_implicit_wide_get();
    /* the taps' lane vectors for the and'ed loads: 0 or all ones per lane,
     * up to 64 lanes a tap (a 48-lane panel and its tail) */
    float lane_vectors[CG_TAPS * 64] __attribute__((aligned(64)));
    /* a transposed tail's B values (cg_conv_tail_cols) */
    float tail_cols[CG_KC * CG_TT] __attribute__((aligned(64)));
    if (convcpu_gemm_get() != 1 || RS > CG_TAPS || RS < 1)
        return 0;
    if (M <= 0 || n <= 0)
        return 1;
    cg_tap_t taps[CG_TAPS], rows[CG_KC + CG_AHEAD];
    int64_t offs[CG_TAPS];
    cg_conv_offsets(R, S, PW, PH * PW, sh, sw, pad_top, pad_left, dh, dw, offs);
    /* Blocks of cb input channels (cb*RS <= CG_KC rows of B): the input a
     * panel reads for them stays in L1 while the register blocks of A's rows
     * go by, as the packed panel of cg_gemm does. */
    const Py_ssize_t cb = CG_KC / RS > 1 ? CG_KC / RS : 1;
    for (Py_ssize_t c0 = 0; c0 < C; c0 += cb) {
        const Py_ssize_t cn = C - c0 < cb ? C - c0 : cb, kc = cn * RS;
        const Py_ssize_t mc_max = CG_A_FLOATS / kc > CG_MR ? CG_A_FLOATS / kc : CG_MR;
        const Py_ssize_t n_mc = (M + mc_max - 1) / mc_max;
        const Py_ssize_t mc_even = ((M + n_mc - 1) / n_mc + CG_MR - 1) / CG_MR * CG_MR;
        for (Py_ssize_t i0 = 0; i0 < M; i0 += mc_even) {
            const Py_ssize_t mc = M - i0 < mc_even ? M - i0 : mc_even;
            for (Py_ssize_t j0 = 0, nr; j0 < n; j0 += nr) {
                const Py_ssize_t left = n - j0;
                Py_ssize_t t;
                int wide3, tail = 0;
                if (wide) {
                    /* panels of 48 lanes, and the transposed tail
                     * (CG_CONV_KERNEL_T) for the last <= CG_TT pixels:
                     * 33-50 left, one of 48 lanes + 0-2; 97-98 left, 48
                     * then 49-50; 51-56 left (99-100: 196 pixels), 48, then
                     * 3-8 on the tail; 17-32, one of 32; 9-16, half.  (With
                     * cg_ttail off: no tail, 97-100 left cut into 48-50 and
                     * 49-50, <= 16 half.) */
                    t = 0;
                    tail = cg_ttail && left <= CG_TT;
                    nr = left <= 48 + CG_T3MAX ? left
                         : left > 96 && left <= 96 + (cg_ttail ? 1 : 2) * CG_T3MAX
                             ? (left - 48 - CG_T3MAX > 48 ? left - 48 - CG_T3MAX : 48)
                             : 48;
                    wide3 = nr > P;
                } else {
                    /* a panel of 32 pixels, or of 32 + t when none would be
                     * left (33-36 left), or of 16 + t when that ends a tile
                     * (17-20); 37-50 left: one of 48 lanes + t
                     * (CG_CONV_KERNEL3); 51-52 left: 32, then 16 + t */
                    t = left > P && left <= P + cg_zmax       ? left - P
                        : left > 16 && left <= 16 + cg_zmax ? left - 16
                                                            : 0;
                    wide3 = cg_wide3 && left > P + cg_zmax && left <= 48 + CG_T3MAX;
                    nr = wide3 || left < P ? left : t > 0 ? left : P;
                }
                cg_conv_taps(p0 + j0, nr, R, S, H, W, Ho, PW, sh, sw, pad_top, pad_left, dh,
                             dw, offs, taps);
                /* a whole, half or 48-lane panel (not the 1-4 pixel tails)
                 * whose channel block reads inside x[lo .. hi) with every
                 * vector of every row: plain loads and'ed with the lanes
                 * (each tap's lanes then point at its lane vectors) */
                const int nv = wide3 ? (nr > 48 ? 4 : 3) : nr <= 16 ? 1 : 2;
                int and_loads = 0;
                if (use_and && t == 0 && !tail) {
                    int64_t tmin = taps[0].off, tmax = taps[0].off;
                    for (Py_ssize_t k = 1; k < RS; k++) {
                        tmin = taps[k].off < tmin ? taps[k].off : tmin;
                        tmax = taps[k].off > tmax ? taps[k].off : tmax;
                    }
                    and_loads = c0 * cs + tmin >= lo
                                && (c0 + cn - 1) * cs + tmax + 16 * nv <= hi;
                }
                if (and_loads)
                    cg_conv_lane_vectors(taps, RS, nv, lane_vectors);
                cg_conv_rows(taps, RS, cn, cs, rows);
                for (Py_ssize_t l = kc; l < kc + CG_AHEAD; l++)
                    rows[l] = rows[kc - 1]; /* prefetched, not read */
                /* a register block of rows i0 + ir .. of A and C reads from these */
                const float *ab = a + i0 * lda + c0 * RS, *xb = x + c0 * cs;
                const float *bb = bias != NULL ? bias + i0 : NULL;
                float *cbl = c + i0 * ldc + j0;
                const int first = set && c0 == 0;
                if (tail) {
                    cg_conv_tail_cols(rows, kc, xb, nr, tail_cols);
                    for (Py_ssize_t ir = 0; ir < mc; ir += 16)
                        cg_convt[nr](kc, mc - ir < 16 ? mc - ir : 16, ab + ir * lda, lda,
                                     tail_cols, cbl + ir * ldc, ldc, first,
                                     bb != NULL ? bb + ir : NULL);
                    continue;
                }
                if (wide3) {
                    const Py_ssize_t t3 = nr > 48 ? nr - 48 : 0;
                    const __mmask16 m2 = cg_mask(nr - 32);
                    cg_conv3_kernel_t(*kern3)[CG_T3MAX + 1] = and_loads ? cg_conv3_and : cg_conv3;
                    CG_ROW_BLOCKS(CG_MR3, kern3[mr][t3](kc, ab + ir * lda, lda, xb, rows,
                                                        cbl + ir * ldc, ldc, m2, first,
                                                        bb != NULL ? bb + ir : NULL));
                    continue;
                }
                if (t > 0) {
                    const int full = nr > P;
                    CG_ROW_BLOCKS(full ? CG_ZMR2 : CG_MR,
                                  (full ? cg_convz : cg_convz_half)[mr][t - 1](
                                      kc, ab + ir * lda, lda, xb, rows, cbl + ir * ldc, ldc,
                                      first, bb != NULL ? bb + ir : NULL));
                    continue;
                }
                const __mmask16 m0 = cg_mask(nr), m1 = cg_mask(nr - 16);
                const cg_conv_kernel_t *kern = and_loads ? (nr <= 16 ? cg_conv_and_half : cg_conv_and)
                                               : nr <= 16 ? cg_conv_half
                                                          : cg_conv;
                CG_ROW_BLOCKS(CG_MR, kern[mr](kc, ab + ir * lda, lda, xb, rows, cbl + ir * ldc,
                                              ldc, m0, m1, first, bb != NULL ? bb + ir : NULL));
            }
        }
    }
    return 1;
#else
    (void)M; (void)C; (void)R; (void)S; (void)a; (void)lda; (void)x; (void)H; (void)W;
    (void)cs; (void)PH; (void)PW; (void)Ho; (void)sh; (void)sw; (void)pad_top; (void)pad_left;
    (void)dh; (void)dw; (void)p0; (void)n; (void)c; (void)ldc; (void)set; (void)bias;
    (void)lo; (void)hi;
    return 0;
#endif
}
#endif /* CONVCPU_GEMM_H */
