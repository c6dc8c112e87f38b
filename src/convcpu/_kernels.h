/* Small direct kernels in C, compiled for several instruction sets at once
 * (GCC target_clones: the clone for the running CPU is picked at load time),
 * so that a portable build still uses AVX-512 / AVX2 vectors. */
#ifndef CONVCPU_KERNELS_H
#define CONVCPU_KERNELS_H
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* GCC >= 12 picks the x86-64-v4 (AVX-512 + FMA) / v3 (AVX2 + FMA) clones by
 * CPU features.  ("arch=haswell"-style clones are chosen by CPU model, so an
 * AMD CPU never ran them, and a plain "avx512f" clone has no FMA: measured.) */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) \
    && __GNUC__ >= 12
#define CONVCPU_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#elif defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define CONVCPU_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CONVCPU_CLONES
#endif

/* Each extension module includes the kernels it needs; the others stay unused. */
#if defined(__GNUC__)
#define CONVCPU_KERNEL static __attribute__((unused))
#else
#define CONVCPU_KERNEL static
#endif

/* Ask for [p, p + bytes) in the cache ahead of its use (a no-op elsewhere):
 * a locally connected layer's weights are read once, 64-byte rows a few
 * cycles apart, too briefly for the hardware prefetchers to get ahead. */
CONVCPU_KERNEL void convcpu_prefetch(const void *p, Py_ssize_t bytes)
{
#if defined(__GNUC__)
    for (Py_ssize_t i = 0; i < bytes; i += 64)
        __builtin_prefetch((const char *)p + i, 0, 3);
#else
    (void)p;
    (void)bytes;
#endif
}

/* out[n, f] += sum_p a[n, p] * w[p, f] for n < rows, f < cols (a rows lda apart,
 * out rows ldo apart, w rows cols apart): a GEMM too small for BLAS's per-call
 * overhead.  Blocks of 8 rows x 16 columns accumulate in registers (eight named
 * accumulators and a constant width, which GCC turns into vector FMAs); the
 * remainders run the plain loop.  Every output sums over p in order, starting
 * from its preset value, whichever thread runs it. */
#define CONVCPU_SMALL_GEMM(NAME, T)                                                      \
    static void NAME##_plain(Py_ssize_t n_lo, Py_ssize_t n_hi, Py_ssize_t f_lo,           \
                             Py_ssize_t f_hi, Py_ssize_t depth, Py_ssize_t cols,          \
                             const T *restrict a, Py_ssize_t lda, const T *restrict w,    \
                             T *restrict out, Py_ssize_t ldo)                             \
    {                                                                                     \
        for (Py_ssize_t n = n_lo; n < n_hi; n++)                                          \
            for (Py_ssize_t p = 0; p < depth; p++) {                                      \
                const T av = a[n * lda + p];                                              \
                for (Py_ssize_t f = f_lo; f < f_hi; f++)                                  \
                    out[n * ldo + f] += av * w[p * cols + f];                             \
            }                                                                             \
    }                                                                                     \
    CONVCPU_CLONES CONVCPU_KERNEL void NAME(Py_ssize_t rows, Py_ssize_t depth, Py_ssize_t cols,    \
                                    const T *restrict a, Py_ssize_t lda,                  \
                                    const T *restrict w, T *restrict out, Py_ssize_t ldo)  \
    {                                                                                     \
        const Py_ssize_t f_main = cols - cols % 16, n_main = rows - rows % 8;             \
        for (Py_ssize_t n0 = 0; n0 < n_main; n0 += 8) {                                   \
            T *o[8];                                                                      \
            const T *ar[8];                                                               \
            for (int r = 0; r < 8; r++) {                                                 \
                o[r] = out + (n0 + r) * ldo;                                              \
                ar[r] = a + (n0 + r) * lda;                                               \
            }                                                                             \
            for (Py_ssize_t f0 = 0; f0 < f_main; f0 += 16) {                              \
                T c0[16], c1[16], c2[16], c3[16], c4[16], c5[16], c6[16], c7[16];         \
                for (int f = 0; f < 16; f++) {                                            \
                    c0[f] = o[0][f0 + f]; c1[f] = o[1][f0 + f]; c2[f] = o[2][f0 + f];     \
                    c3[f] = o[3][f0 + f]; c4[f] = o[4][f0 + f]; c5[f] = o[5][f0 + f];     \
                    c6[f] = o[6][f0 + f]; c7[f] = o[7][f0 + f];                           \
                }                                                                         \
                for (Py_ssize_t p = 0; p < depth; p++) {                                  \
                    const T *restrict wp = w + p * cols + f0;                             \
                    const T v0 = ar[0][p], v1 = ar[1][p], v2 = ar[2][p], v3 = ar[3][p];   \
                    const T v4 = ar[4][p], v5 = ar[5][p], v6 = ar[6][p], v7 = ar[7][p];   \
                    for (int f = 0; f < 16; f++) {                                        \
                        c0[f] += v0 * wp[f]; c1[f] += v1 * wp[f];                         \
                        c2[f] += v2 * wp[f]; c3[f] += v3 * wp[f];                         \
                        c4[f] += v4 * wp[f]; c5[f] += v5 * wp[f];                         \
                        c6[f] += v6 * wp[f]; c7[f] += v7 * wp[f];                         \
                    }                                                                     \
                }                                                                         \
                for (int f = 0; f < 16; f++) {                                            \
                    o[0][f0 + f] = c0[f]; o[1][f0 + f] = c1[f]; o[2][f0 + f] = c2[f];     \
                    o[3][f0 + f] = c3[f]; o[4][f0 + f] = c4[f]; o[5][f0 + f] = c5[f];     \
                    o[6][f0 + f] = c6[f]; o[7][f0 + f] = c7[f];                           \
                }                                                                         \
            }                                                                             \
        }                                                                                 \
        NAME##_plain(n_main, rows, 0, f_main, depth, cols, a, lda, w, out, ldo);          \
        NAME##_plain(0, rows, f_main, cols, depth, cols, a, lda, w, out, ldo);            \
    }

CONVCPU_SMALL_GEMM(convcpu_small_gemm_f32, float)
CONVCPU_SMALL_GEMM(convcpu_small_gemm_f64, double)

/* One band of a 2-D correlation: out[row0 + i, j] = sum_{r,s} k[r, s] *
 * P[row0 + i + r, j + s] for i < nrows, j < Wo, where the virtual padded image
 * P has row q = img row rowmap[q] (-1: all fill) and column c = img column
 * colmap[c] (-1: fill); columns [col_lo, col_hi) are img columns c + col_off.
 * The band of P is first gathered into ws ((nrows + R - 1) rows of Wo + S - 1);
 * then every tap adds a shifted row into the output row, a loop GCC
 * vectorises.  The sum over taps runs in (r, s) order for every element. */
#define CONVCPU_STENCIL(NAME, T)                                                          \
    CONVCPU_CLONES CONVCPU_KERNEL void NAME(const T *restrict img, Py_ssize_t ld,                        \
                             const Py_ssize_t *rowmap, const Py_ssize_t *colmap,          \
                             Py_ssize_t col_lo, Py_ssize_t col_hi, Py_ssize_t col_off,    \
                             Py_ssize_t Wo, const T *restrict k, Py_ssize_t R,            \
                             Py_ssize_t S, T fill, T *restrict out, Py_ssize_t row0,      \
                             Py_ssize_t nrows, T *restrict ws)                            \
    {                                                                                     \
        const Py_ssize_t Wp = Wo + S - 1;                                                 \
        for (Py_ssize_t q = 0; q < nrows + R - 1; q++) {                                  \
            T *restrict dst = ws + q * Wp;                                                \
            const Py_ssize_t src = rowmap[row0 + q];                                      \
            if (src < 0) {                                                                \
                for (Py_ssize_t c = 0; c < Wp; c++) dst[c] = fill;                        \
                continue;                                                                 \
            }                                                                             \
            const T *restrict line = img + src * ld;                                      \
            for (Py_ssize_t c = 0; c < col_lo; c++)                                       \
                dst[c] = colmap[c] < 0 ? fill : line[colmap[c]];                          \
            for (Py_ssize_t c = col_lo; c < col_hi; c++) dst[c] = line[c + col_off];      \
            for (Py_ssize_t c = col_hi; c < Wp; c++)                                      \
                dst[c] = colmap[c] < 0 ? fill : line[colmap[c]];                          \
        }                                                                                 \
        for (Py_ssize_t i = 0; i < nrows; i++) {                                          \
            T *restrict acc = out + (row0 + i) * Wo;                                      \
            for (Py_ssize_t j = 0; j < Wo; j++) acc[j] = 0;                               \
            for (Py_ssize_t r = 0; r < R; r++)                                            \
                for (Py_ssize_t s = 0; s < S; s++) {                                      \
                    const T kv = k[r * S + s];                                            \
                    const T *restrict row = ws + (i + r) * Wp + s;                        \
                    for (Py_ssize_t j = 0; j < Wo; j++) acc[j] += kv * row[j];            \
                }                                                                         \
        }                                                                                 \
    }

CONVCPU_STENCIL(convcpu_stencil_f32, float)
CONVCPU_STENCIL(convcpu_stencil_f64, double)


/* ---- Direct grouped / depthwise convolution ------------------------------------
 * GCC vector extensions (32-byte vectors: 8 floats / 4 doubles) keep the
 * accumulators of a register block in registers; every output element sums
 * bias, then its taps in (c, r, s) order, whichever block computes it. */
/* 64-byte vectors (16 floats): on x86-64-v4 one zmm register each; other
 * clones split them.  The channels-first row kernel also comes with 32-byte
 * vectors (_w32), which waste fewer columns at the end of a row: the caller
 * picks by shape (measured in docs/BENCHMARKS.md). */
#define CONVCPU_VBYTES 64

/* The cells t < Lt of column phase ph (stride sw) whose column t*sw + ph lies
 * in [pad_left, pad_left + W), the image's own columns: [*lo, *hi). */
static inline void convcpu_phase_bounds(Py_ssize_t pad_left, Py_ssize_t W, Py_ssize_t ph,
                                        Py_ssize_t sw, Py_ssize_t Lt, Py_ssize_t *lo,
                                        Py_ssize_t *hi)
{
    Py_ssize_t a = pad_left > ph ? (pad_left - ph + sw - 1) / sw : 0;
    Py_ssize_t b = pad_left + W > ph ? (pad_left + W - ph + sw - 1) / sw : 0;
    if (a > Lt) a = Lt;
    if (b > Lt) b = Lt;
    *lo = a;
    *hi = b < a ? a : b;
}

/* ws[q][ph][t] = P[q0 + q, t*sw + ph] for q < nq, ph < sw, t < Lt: a band of
 * rows of the padded plane P (row p = plane row hmap[p], column c = plane
 * column wmap[c], -1 or beyond the Wpad padded columns: zero), split by
 * column phase so that every tap of a strided row is a contiguous run. */
#define CONVCPU_GATHER(NAME, T)                                                          \
    CONVCPU_CLONES CONVCPU_KERNEL void NAME(const T *restrict plane, Py_ssize_t W,                       \
                             const Py_ssize_t *hmap, const Py_ssize_t *wmap,              \
                             Py_ssize_t Wpad, Py_ssize_t pad_left, Py_ssize_t q0,         \
                             Py_ssize_t nq, Py_ssize_t sw, Py_ssize_t Lt, T *restrict ws) \
    {                                                                                     \
        for (Py_ssize_t q = 0; q < nq; q++) {                                             \
            T *restrict dst = ws + q * sw * Lt;                                           \
            const Py_ssize_t src = hmap[q0 + q];                                          \
            if (src < 0) {                                                                \
                memset(dst, 0, (size_t)(sw * Lt) * sizeof(T));                            \
                continue;                                                                 \
            }                                                                             \
            const T *restrict line = plane + src * W;                                     \
            Py_ssize_t done1_lo = 0, done1_hi = 0;                                        \
            for (Py_ssize_t ph = 0; ph < sw; ph++) {                                      \
                T *restrict d = dst + ph * Lt;                                            \
                /* t*sw + ph inside [pad_left, pad_left + W): a plain copy */             \
                Py_ssize_t lo, hi;                                                        \
                convcpu_phase_bounds(pad_left, W, ph, sw, Lt, &lo, &hi);                  \
                for (Py_ssize_t t = 0; t < lo; t++) {                                     \
                    const Py_ssize_t c = t * sw + ph;                                     \
                    d[t] = (c < Wpad && wmap[c] >= 0) ? line[wmap[c]] : (T)0;             \
                }                                                                         \
                if (sw == 1)                                                              \
                    memcpy(d + lo, line + lo - pad_left, (size_t)(hi - lo) * sizeof(T));  \
                else if (sw == 2 && ph == 0) {                                            \
                    /* both phases in one pass (a vectorised de-interleave) */            \
                    Py_ssize_t lo1 = pad_left > 1 ? pad_left / 2 : 0;                     \
                    Py_ssize_t hi1 = pad_left + W > 1 ? (pad_left + W) / 2 : 0;           \
                    if (hi1 > Lt) hi1 = Lt;                                               \
                    const Py_ssize_t a = lo > lo1 ? lo : lo1, b = hi < hi1 ? hi : hi1;    \
                    T *restrict d1 = d + Lt;                                              \
                    const T *restrict src2 = line - pad_left;                             \
                    for (Py_ssize_t t = lo; t < a && t < hi; t++) d[t] = src2[2 * t];     \
                    for (Py_ssize_t t = a; t < b; t++) {                                  \
                        d[t] = src2[2 * t];                                               \
                        d1[t] = src2[2 * t + 1];                                          \
                    }                                                                     \
                    for (Py_ssize_t t = b > lo ? b : lo; t < hi; t++) d[t] = src2[2 * t]; \
                    done1_lo = a; done1_hi = b;                                           \
                } else {                                                                  \
                    Py_ssize_t t = lo;                                                    \
                    if (sw == 2 && ph == 1) /* columns [done1_lo, done1_hi) done */       \
                        for (; t < hi && t < done1_lo; t++) d[t] = line[t * sw + ph - pad_left]; \
                    if (sw == 2 && ph == 1 && t < done1_hi) t = done1_hi;                 \
                    for (; t < hi; t++) d[t] = line[t * sw + ph - pad_left];              \
                }                                                                         \
                for (Py_ssize_t t = hi; t < Lt; t++) {                                    \
                    const Py_ssize_t c = t * sw + ph;                                     \
                    d[t] = (c < Wpad && wmap[c] >= 0) ? line[wmap[c]] : (T)0;             \
                }                                                                         \
            }                                                                             \
        }                                                                                 \
    }

/* A KB x (JB vectors) block of one output row, channels first: for kb < KB,
 * out[kb*ldo + j0 + j] (j < valid) = bias[kb] + sum_t w[kb*ntap + t] *
 * row[off[t] + j0 + j], the taps t in order (off: flattened (c, r, s)). */
#define CONVCPU_DIRECT_BLOCK(NAME, T, V, KB, JB)                                          \
    static inline __attribute__((always_inline)) void NAME(                               \
        const T *restrict row, const Py_ssize_t *restrict off, Py_ssize_t ntap,           \
        const T *restrict w, const T *bias, Py_ssize_t j0, Py_ssize_t valid,              \
        T *restrict out, Py_ssize_t ldo)                                                  \
    {                                                                                     \
        enum { L = sizeof(V) / sizeof(T) };                                          \
        V acc[KB][JB];                                                                    \
        const T *restrict base = row + j0;                                                \
        for (int kb = 0; kb < KB; kb++)                                                   \
            for (int jb = 0; jb < JB; jb++) {                                             \
                V zero = {0};                                                             \
                acc[kb][jb] = zero + (bias ? bias[kb] : (T)0);                            \
            }                                                                             \
        for (Py_ssize_t t = 0; t < ntap; t++) {                                           \
            const T *restrict px = base + off[t];                                         \
            V xv[JB];                                                                     \
            for (int jb = 0; jb < JB; jb++) memcpy(&xv[jb], px + jb * L, sizeof(V));      \
            for (int kb = 0; kb < KB; kb++) {                                             \
                const T wv = w[kb * ntap + t];                                            \
                for (int jb = 0; jb < JB; jb++) acc[kb][jb] += xv[jb] * wv;               \
            }                                                                             \
        }                                                                                 \
        for (int kb = 0; kb < KB; kb++) {                                                 \
            T *o = out + kb * ldo + j0;                                                   \
            if (valid >= JB * L) {                                                        \
                for (int jb = 0; jb < JB; jb++) memcpy(o + jb * L, &acc[kb][jb], sizeof(V)); \
            } else {                                                                      \
                T tmp[JB * L];                                                            \
                memcpy(tmp, acc[kb], sizeof(tmp));                                        \
                for (Py_ssize_t j = 0; j < valid; j++) o[j] = tmp[j];                     \
            }                                                                             \
        }                                                                                 \
    }

/* One output row of kn channels (planes ldo apart) of a grouped convolution,
 * channels first: tap t of the row reads row + off[t] (its gathered band:
 * input plane c, kernel row r, column phase and offset of s), with the
 * (kn, ntap) weight w of the channels and their kn biases (or NULL).  The
 * gathered rows hold at least round_up(Wo, vector) columns past every tap. */
#define CONVCPU_DIRECT_ROW(NAME, T, V)                                                    \
    CONVCPU_DIRECT_BLOCK(NAME##_8x1, T, V, 8, 1)                                          \
    CONVCPU_DIRECT_BLOCK(NAME##_4x2, T, V, 4, 2)                                          \
    CONVCPU_DIRECT_BLOCK(NAME##_4x1, T, V, 4, 1)                                          \
    CONVCPU_DIRECT_BLOCK(NAME##_2x4, T, V, 2, 4)                                          \
    CONVCPU_DIRECT_BLOCK(NAME##_2x3, T, V, 2, 3)                                          \
    CONVCPU_DIRECT_BLOCK(NAME##_2x2, T, V, 2, 2)                                          \
    CONVCPU_DIRECT_BLOCK(NAME##_2x1, T, V, 2, 1)                                          \
    CONVCPU_DIRECT_BLOCK(NAME##_1x8, T, V, 1, 8)                                          \
    CONVCPU_DIRECT_BLOCK(NAME##_1x7, T, V, 1, 7)                                          \
    CONVCPU_DIRECT_BLOCK(NAME##_1x6, T, V, 1, 6)                                          \
    CONVCPU_DIRECT_BLOCK(NAME##_1x5, T, V, 1, 5)                                          \
    CONVCPU_DIRECT_BLOCK(NAME##_1x4, T, V, 1, 4)                                          \
    CONVCPU_DIRECT_BLOCK(NAME##_1x3, T, V, 1, 3)                                          \
    CONVCPU_DIRECT_BLOCK(NAME##_1x2, T, V, 1, 2)                                          \
    CONVCPU_DIRECT_BLOCK(NAME##_1x1, T, V, 1, 1)                                          \
    CONVCPU_CLONES CONVCPU_KERNEL void NAME(                                              \
        const T *restrict ws, const Py_ssize_t *off, Py_ssize_t CRS,                      \
        const T *restrict w, const T *bias, Py_ssize_t kn, Py_ssize_t Wo,                 \
        T *restrict out, Py_ssize_t ldo)                                                  \
    {                                                                                     \
        /* Blocks of up to 8 accumulators: 8 channels x 1 vector, 4 x 2, 2 x 4 or   */    \
        /* 1 x 8; a row's remaining vectors go in one block (no lone latency-bound  */    \
        /* chain).                                                                   */    \
        enum { L = sizeof(V) / sizeof(T) };                                          \
        Py_ssize_t k = 0, j, left;                                                        \
        for (; k + 8 <= kn && Wo <= L; k += 8) /* one vector per row: 8 channels */       \
            for (j = 0; j < Wo; j += L)                                                   \
                NAME##_8x1(ws, off, CRS, w + k * CRS,                \
                           bias ? bias + k : NULL, j, Wo - j, out + k * ldo, ldo);        \
        for (; k + 4 <= kn; k += 4)                                                       \
            for (j = 0; j < Wo; j += left * L) {                                          \
                left = (Wo - j + L - 1) / L;                                              \
                if (left >= 2) {                                                          \
                    left = 2;                                                             \
                    NAME##_4x2(ws, off, CRS, w + k * CRS,            \
                               bias ? bias + k : NULL, j, Wo - j, out + k * ldo, ldo);    \
                } else                                                                    \
                    NAME##_4x1(ws, off, CRS, w + k * CRS,            \
                               bias ? bias + k : NULL, j, Wo - j, out + k * ldo, ldo);    \
            }                                                                             \
        for (; k + 2 <= kn; k += 2)                                                       \
            for (j = 0; j < Wo; j += left * L) {                                          \
                left = (Wo - j + L - 1) / L;                                              \
                if (left > 4) left = 4;                                                   \
                switch (left) {                                                           \
                case 4: NAME##_2x4(ws, off, CRS, w + k * CRS,        \
                                   bias ? bias + k : NULL, j, Wo - j, out + k * ldo, ldo); \
                        break;                                                            \
                case 3: NAME##_2x3(ws, off, CRS, w + k * CRS,        \
                                   bias ? bias + k : NULL, j, Wo - j, out + k * ldo, ldo); \
                        break;                                                            \
                case 2: NAME##_2x2(ws, off, CRS, w + k * CRS,        \
                                   bias ? bias + k : NULL, j, Wo - j, out + k * ldo, ldo); \
                        break;                                                            \
                default: NAME##_2x1(ws, off, CRS, w + k * CRS,       \
                                    bias ? bias + k : NULL, j, Wo - j, out + k * ldo, ldo); \
                }                                                                         \
            }                                                                             \
        for (; k < kn; k++)                                                               \
            for (j = 0; j < Wo; j += left * L) {                                          \
                const T *wk = w + k * CRS, *bk = bias ? bias + k : NULL;                  \
                T *ok = out + k * ldo;                                                    \
                left = (Wo - j + L - 1) / L;                                              \
                if (left > 8) left = 8;                                                   \
                switch (left) {                                                           \
                case 8: NAME##_1x8(ws, off, CRS, wk, bk, j, Wo - j, ok, ldo); break; \
                case 7: NAME##_1x7(ws, off, CRS, wk, bk, j, Wo - j, ok, ldo); break; \
                case 6: NAME##_1x6(ws, off, CRS, wk, bk, j, Wo - j, ok, ldo); break; \
                case 5: NAME##_1x5(ws, off, CRS, wk, bk, j, Wo - j, ok, ldo); break; \
                case 4: NAME##_1x4(ws, off, CRS, wk, bk, j, Wo - j, ok, ldo); break; \
                case 3: NAME##_1x3(ws, off, CRS, wk, bk, j, Wo - j, ok, ldo); break; \
                case 2: NAME##_1x2(ws, off, CRS, wk, bk, j, Wo - j, ok, ldo); break; \
                default: NAME##_1x1(ws, off, CRS, wk, bk, j, Wo - j, ok, ldo); \
                }                                                                         \
            }                                                                             \
    }

/* The accumulators of P pixels x CB vectors (L lanes each), set to the bias
 * bb; the twin of CONVCPU_DW_STORE, shared by the depthwise kernels below. */
#define CONVCPU_DW_LOAD(T, V, P, CB)                                                       \
        enum { L = sizeof(V) / sizeof(T) };                                              \
        V acc[P][CB];                                                                     \
        for (int p = 0; p < P; p++)                                                       \
            for (int cb = 0; cb < CB; cb++) memcpy(&acc[p][cb], bb + cb * L, sizeof(V));

/* Store the P x CB accumulators acc (vectors V of L lanes) of a depthwise
 * block into out: pixels ldo apart,
 * channel i of the block at i*M (its output channel c*M + m). */
#define CONVCPU_DW_STORE(T, V, P, CB)                                                      \
        for (int p = 0; p < P; p++) {                                                     \
            if (M == 1) {                                                                 \
                for (int cb = 0; cb < CB; cb++)                                           \
                    memcpy(out + p * ldo + cb * L, &acc[p][cb], sizeof(V));               \
            } else {                                                                      \
                T tmp[CB * L];                                                            \
                memcpy(tmp, acc[p], sizeof(tmp));                                         \
                for (int i = 0; i < CB * L; i++) out[p * ldo + i * M] = tmp[i];           \
            }                                                                             \
        }

/* One output row of a depthwise convolution, channels last:
 * out[ow*ldo + c*M + m] = bias[c*M + m] + sum_{r,s} w[m, r, s, c] *
 * x[hrow[r*dh], wmap[ow*sw + s*dw], c] for ow < Wo, c < C, m < M (x is one
 * (H, W, C) sample; a row or column map of -1 is a zero, whose tap is
 * skipped).  Output columns [int_lo, int_hi) read every tap inside the image,
 * at column ow*sw + s*dw - pad_left, four pixels at a time; channels go in
 * blocks of two vectors, then one, then one at a time. */
#define CONVCPU_DW_PIXELS(NAME, T, V, P, CB)                                              \
    static inline __attribute__((always_inline)) void NAME(                               \
        const T *restrict x, Py_ssize_t W, Py_ssize_t C, const Py_ssize_t *rows,          \
        Py_ssize_t R, Py_ssize_t S, const Py_ssize_t *cols, Py_ssize_t colstep,           \
        const T *restrict w, const T *bb, T *restrict out, Py_ssize_t ldo, Py_ssize_t M)  \
    {                                                                                     \
        /* P pixels; pixel p, tap s reads input column cols[p*colstep + s]     */         \
        CONVCPU_DW_LOAD(T, V, P, CB)                                                       \
        for (Py_ssize_t r = 0; r < R; r++) {                                              \
            if (rows[r] < 0) continue;                                                    \
            const T *xr = x + rows[r] * W * C;                                            \
            for (Py_ssize_t s = 0; s < S; s++) {                                          \
                V wv[CB];                                                                 \
                for (int cb = 0; cb < CB; cb++)                                           \
                    memcpy(&wv[cb], w + (r * S + s) * C + cb * L, sizeof(V));             \
                for (int p = 0; p < P; p++) {                                             \
                    const Py_ssize_t col = cols[p * colstep + s];                         \
                    if (P == 1 && col < 0) continue;                                      \
                    for (int cb = 0; cb < CB; cb++) {                                     \
                        V xv;                                                             \
                        memcpy(&xv, xr + col * C + cb * L, sizeof(V));                    \
                        acc[p][cb] += xv * wv[cb];                                        \
                    }                                                                     \
                }                                                                         \
            }                                                                             \
        }                                                                                 \
        CONVCPU_DW_STORE(T, V, P, CB)                                                      \
    }

/* P pixels (pstride apart) x CB vectors of channels, every tap inside the
 * image: tap (r, s) of pixel p reads x0 + rowoff[r] + s*sstride + p*pstride
 * (rowoff[r] < 0: a zero row, skipped). */
#define CONVCPU_DW_INTERIOR(NAME, T, V, P, CB)                                            \
    static inline __attribute__((always_inline)) void NAME(                               \
        const T *restrict x0, const Py_ssize_t *rowoff, Py_ssize_t R, Py_ssize_t S,       \
        Py_ssize_t sstride, Py_ssize_t pstride, Py_ssize_t C, const T *restrict w,        \
        const T *bb, T *restrict out, Py_ssize_t ldo, Py_ssize_t M)                       \
    {                                                                                     \
        CONVCPU_DW_LOAD(T, V, P, CB)                                                       \
        for (Py_ssize_t r = 0; r < R; r++) {                                              \
            if (rowoff[r] < 0) continue;                                                  \
            const T *xr = x0 + rowoff[r];                                                 \
            const T *wr = w + r * S * C;                                                  \
            for (Py_ssize_t s = 0; s < S; s++, xr += sstride, wr += C) {                  \
                V wv[CB];                                                                 \
                for (int cb = 0; cb < CB; cb++) memcpy(&wv[cb], wr + cb * L, sizeof(V));  \
                for (int p = 0; p < P; p++)                                               \
                    for (int cb = 0; cb < CB; cb++) {                                     \
                        V xv;                                                             \
                        memcpy(&xv, xr + p * pstride + cb * L, sizeof(V));                \
                        acc[p][cb] += xv * wv[cb];                                        \
                    }                                                                     \
            }                                                                             \
        }                                                                                 \
        CONVCPU_DW_STORE(T, V, P, CB)                                                      \
    }

#define CONVCPU_DW_ROW(NAME, T, V)                                                        \
    CONVCPU_DW_INTERIOR(NAME##_4x2, T, V, 4, 2)                                           \
    CONVCPU_DW_PIXELS(NAME##_1x2, T, V, 1, 2)                                             \
    CONVCPU_DW_INTERIOR(NAME##_4x1, T, V, 4, 1)                                           \
    CONVCPU_DW_PIXELS(NAME##_1x1, T, V, 1, 1)                                             \
    CONVCPU_CLONES CONVCPU_KERNEL void NAME(                                              \
        const T *restrict x, Py_ssize_t W, Py_ssize_t C, Py_ssize_t M,                    \
        const Py_ssize_t *hrow, Py_ssize_t dh, Py_ssize_t R, Py_ssize_t S,                \
        const Py_ssize_t *wmap, Py_ssize_t sw, Py_ssize_t dw, Py_ssize_t pad_left,        \
        Py_ssize_t int_lo, Py_ssize_t int_hi, const T *restrict w, const T *bias,         \
        T *restrict out, Py_ssize_t Wo, Py_ssize_t ldo, Py_ssize_t *scratch)              \
    {                                                                                     \
        /* scratch: 2*R + S*Wo entries */                                                 \
        enum { L = sizeof(V) / sizeof(T) };                                          \
        Py_ssize_t *rows = scratch, *rowoff = scratch + R, *border = rowoff + R;          \
        T bb[2 * L], zero[2 * L];                                                         \
        for (int i = 0; i < 2 * L; i++) zero[i] = 0;                                       \
        for (Py_ssize_t r = 0; r < R; r++) {                                              \
            rows[r] = hrow[r * dh];                                                       \
            rowoff[r] = rows[r] < 0 ? -1 : rows[r] * W * C;                               \
        }                                                                                 \
        for (Py_ssize_t ow = 0; ow < Wo; ow++)                                            \
            for (Py_ssize_t s = 0; s < S; s++) border[ow * S + s] = wmap[ow * sw + s * dw]; \
        for (Py_ssize_t m = 0; m < M; m++) {                                              \
            const T *wm = w + m * R * S * C;                                              \
            /* Pixels outer, channel blocks inner: a group of pixels reads                \
             * whole channel runs of its input rows, which stay in L1 for the             \
             * next group, instead of one block's 128 bytes of each pixel                 \
             * per pass over the row (every pass from L2). */                             \
            for (Py_ssize_t ow = 0; ow < Wo; ) {                                          \
                const int inside = ow >= int_lo && ow + 4 <= int_hi;                      \
                const Py_ssize_t step = inside ? 4 : 1;                                   \
                for (Py_ssize_t c0 = 0; c0 < C; ) {                                       \
                    const Py_ssize_t width =                                              \
                        C - c0 >= 2 * L ? 2 * L : (C - c0 >= L ? L : 1);                  \
                    const T *bp = zero;                                                   \
                    if (bias != NULL && M == 1) {                                         \
                        bp = bias + c0;                                                   \
                    } else if (bias != NULL) {                                            \
                        for (Py_ssize_t i = 0; i < width; i++)                            \
                            bb[i] = bias[(c0 + i) * M + m];                               \
                        bp = bb;                                                          \
                    }                                                                     \
                    T *oc = out + c0 * M + m;                                             \
                    if (width == 1) {                                                     \
                        for (Py_ssize_t q = ow; q < ow + step; q++) {                     \
                            T a = bp[0];                                                  \
                            for (Py_ssize_t r = 0; r < R; r++) {                          \
                                if (rows[r] < 0) continue;                                \
                                const T *xr = x + rows[r] * W * C + c0;                   \
                                for (Py_ssize_t s = 0; s < S; s++) {                      \
                                    const Py_ssize_t col = border[q * S + s];             \
                                    if (col >= 0) a += xr[col * C] * wm[(r * S + s) * C + c0];\
                                }                                                         \
                            }                                                             \
                            oc[q * ldo] = a;                                              \
                        }                                                                 \
                    } else if (inside) {                                                  \
                        const T *x0 = x + c0 + (ow * sw - pad_left) * C;                  \
                        if (width == 2 * L)                                               \
                            NAME##_4x2(x0, rowoff, R, S, dw * C, sw * C, C, wm + c0, bp,  \
                                       oc + ow * ldo, ldo, M);                            \
                        else                                                              \
                            NAME##_4x1(x0, rowoff, R, S, dw * C, sw * C, C, wm + c0, bp,  \
                                       oc + ow * ldo, ldo, M);                            \
                    } else {                                                              \
                        if (width == 2 * L)                                               \
                            NAME##_1x2(x + c0, W, C, rows, R, S, border + ow * S, S,      \
                                       wm + c0, bp, oc + ow * ldo, ldo, M);               \
                        else                                                              \
                            NAME##_1x1(x + c0, W, C, rows, R, S, border + ow * S, S,      \
                                       wm + c0, bp, oc + ow * ldo, ldo, M);               \
                    }                                                                     \
                    c0 += width;                                                          \
                }                                                                         \
                ow += step;                                                               \
            }                                                                             \
        }                                                                                 \
    }

/* Hide a value's origin from the optimiser: without it GCC turns every
 * (row, column) address of CONVCPU_DW_FIXED_PIXELS into an induction variable
 * of the pixel loop, spilled to the stack (144ch @56, one thread: 0.13-0.14
 * instead of 0.105 ms). */
#if defined(__GNUC__)
#define CONVCPU_OPAQUE(p) __asm__("" : "+r"(p))
#else
#define CONVCPU_OPAQUE(p) ((void)0)
#endif

/* NP pixels of an interior row (every tap inside the image) at stride SW and
 * dilation DW (compile time): each input column a tap of theirs reads is loaded
 * once per row of the kernel and added to every pixel that reads it (still
 * in r, then s order for each pixel).  Uses xr, x0, C, wv, bv and op.  The
 * loop over columns must unroll whole (3x3 at stride 2, 8 pixels: 17
 * columns): partly unrolled, its pixel index is no longer a constant and the
 * accumulators go to memory (96ch @112 stride 2, one thread, C harness:
 * unroll 16 0.070 ms, 32 0.063-0.064). */
#define CONVCPU_DW_FIXED_RUN(T, V, KR, KS, SW, DW, NP)                                    \
    do {                                                                                  \
        V acc[NP];                                                                        \
        _Pragma("GCC unroll 8") for (int p = 0; p < NP; p++) acc[p] = bv;                 \
        _Pragma("GCC unroll 5") for (int r = 0; r < KR; r++) {                            \
            if (xr[r] == NULL) continue;                                                  \
            const T *q = xr[r] + x0;                                                      \
            _Pragma("GCC unroll 32") for (int k = 0; k < (NP - 1) * SW + (KS - 1) * DW + 1; \
                                          k++, q += C) {                                  \
                V xv;                                                                     \
                memcpy(&xv, q, sizeof(V));                                                \
                _Pragma("GCC unroll 5") for (int s = 0; s < KS; s++) {                    \
                    const int d = k - s * DW;                                             \
                    if (d >= 0 && d % SW == 0 && d / SW < NP)                             \
                        acc[d / SW] += xv * wv[r * KS + s];                               \
                }                                                                         \
            }                                                                             \
        }                                                                                 \
        _Pragma("GCC unroll 8") for (int p = 0; p < NP; p++, op += C)                     \
            memcpy(op, &acc[p], sizeof(V));                                               \
    } while (0)

/* As CONVCPU_DW_FIXED_RUN, any stride and dilation, tap by tap. */
#define CONVCPU_DW_FIXED_TAPS(T, V, KR, KS, NP)                                           \
    do {                                                                                  \
        V acc[NP];                                                                        \
        for (int p = 0; p < NP; p++) acc[p] = bv;                                         \
        _Pragma("GCC unroll 5") for (int r = 0; r < KR; r++) {                            \
            if (xr[r] == NULL) continue;                                                  \
            _Pragma("GCC unroll 5") for (int s = 0; s < KS; s++)                          \
                for (int p = 0; p < NP; p++) {                                            \
                    V xv;                                                                 \
                    memcpy(&xv, xr[r] + x0 + (p * sw + s * dw) * C, sizeof(V));           \
                    acc[p] += xv * wv[r * KS + s];                                        \
                }                                                                         \
        }                                                                                 \
        for (int p = 0; p < NP; p++, op += C)                                             \
            memcpy(op, &acc[p], sizeof(V));                                               \
    } while (0)

/* NP interior pixels from ow on (output at op): by input columns at strides
 * 1 and 2 with dilation 1, else tap by tap. */
#define CONVCPU_DW_FIXED_PIXELS(T, V, KR, KS, NP)                                         \
    do {                                                                                  \
        Py_ssize_t ow_ = ow;                                                              \
        CONVCPU_OPAQUE(ow_);                                                              \
        const Py_ssize_t x0 = (ow_ * sw - pad_left) * C;                                  \
        T *op = o + ow_ * C;                                                              \
        if (dw == 1 && sw == 1)                                                           \
            CONVCPU_DW_FIXED_RUN(T, V, KR, KS, 1, 1, NP);                                 \
        else if (dw == 1 && sw == 2)                                                      \
            CONVCPU_DW_FIXED_RUN(T, V, KR, KS, 2, 1, NP);                                 \
        else                                                                              \
            CONVCPU_DW_FIXED_TAPS(T, V, KR, KS, NP);                                      \
    } while (0)

/* The arguments of the fixed-size depthwise band kernels below. */
#define CONVCPU_DW_FIXED_ARGS(T)                                                          \
    const T *restrict x, Py_ssize_t W, Py_ssize_t C, const Py_ssize_t *hrow,              \
        Py_ssize_t sh, Py_ssize_t dh, Py_ssize_t nrows, const Py_ssize_t *wmap,           \
        Py_ssize_t sw, Py_ssize_t dw, Py_ssize_t pad_left, Py_ssize_t int_lo,             \
        Py_ssize_t int_hi, const T *restrict w, const T *bias, T *restrict out,           \
        Py_ssize_t Wo

/* The interior columns [lo, hi) of the band for the channels [c0, c0 + L)
 * (one vector V): its KR*KS weight vectors (wb, taps wld apart) and its bias
 * (bb, or NULL) stay in registers; NP, then 4 pixels at a time, then one. */
#define CONVCPU_DW_FIXED_BLOCK(NAME, T, V, KR, KS, NP)                                    \
    static inline __attribute__((always_inline)) void NAME(                               \
        CONVCPU_DW_FIXED_ARGS(T), Py_ssize_t lo, Py_ssize_t hi, Py_ssize_t c0,            \
        const T *wb, Py_ssize_t wld, const T *bb)                                         \
    {                                                                                     \
        (void)wmap; (void)int_lo; (void)int_hi; (void)w; (void)bias;                      \
        V wv[KR * KS], bv;                                                                \
        _Pragma("GCC unroll 25") for (int t = 0; t < KR * KS; t++)                        \
            memcpy(&wv[t], wb + t * wld, sizeof(V));                                      \
        if (bb != NULL)                                                                   \
            memcpy(&bv, bb, sizeof(V));                                                   \
        else                                                                              \
            bv = (V){0};                                                                  \
        for (Py_ssize_t i = 0; i < nrows; i++) {                                          \
            const T *xr[KR];                                                              \
            _Pragma("GCC unroll 5") for (int r = 0; r < KR; r++) {                        \
                const Py_ssize_t row = hrow[i * sh + r * dh];                             \
                xr[r] = row >= 0 ? x + row * W * C + c0 : NULL;                           \
            }                                                                             \
            T *o = out + i * Wo * C + c0;                                                 \
            Py_ssize_t ow = lo;                                                           \
            for (; ow + NP <= hi; ow += NP)                                               \
                CONVCPU_DW_FIXED_PIXELS(T, V, KR, KS, NP);                                \
            if (ow + 4 <= hi) {                                                           \
                CONVCPU_DW_FIXED_PIXELS(T, V, KR, KS, 4);                                 \
                ow += 4;                                                                  \
            }                                                                             \
            for (; ow < hi; ow++)                                                         \
                CONVCPU_DW_FIXED_PIXELS(T, V, KR, KS, 1);                                 \
        }                                                                                 \
    }

/* The border columns (outside [lo, hi)) of the band for the channels
 * [c_lo, c_hi) (whole vectors V), four vectors at a time: one chain each,
 * which hides the latency of the adds. */
#define CONVCPU_DW_FIXED_EDGE(NAME, T, V, KR, KS)                                         \
    static inline __attribute__((always_inline)) void NAME(                               \
        CONVCPU_DW_FIXED_ARGS(T), Py_ssize_t lo, Py_ssize_t hi, Py_ssize_t c_lo,          \
        Py_ssize_t c_hi)                                                                  \
    {                                                                                     \
        enum { L = sizeof(V) / sizeof(T) };                                               \
        (void)pad_left; (void)int_lo; (void)int_hi;                                       \
        for (Py_ssize_t i = 0; i < nrows; i++)                                            \
            for (Py_ssize_t ow = 0; ow < Wo; ow++) {                                      \
                if (ow == lo && hi > lo) ow = hi;                                         \
                if (ow >= Wo) break;                                                      \
                for (Py_ssize_t c0 = c_lo; c0 < c_hi; c0 += 4 * L) {                      \
                    const int nb = c_hi - c0 >= 4 * L ? 4 : (int)((c_hi - c0) / L);       \
                    V acc[4];                                                             \
                    for (int b = 0; b < 4; b++) {                                         \
                        if (bias != NULL && b < nb)                                       \
                            memcpy(&acc[b], bias + c0 + b * L, sizeof(V));                \
                        else                                                              \
                            acc[b] = (V){0};                                              \
                    }                                                                     \
                    for (int r = 0; r < KR; r++) {                                        \
                        const Py_ssize_t row = hrow[i * sh + r * dh];                     \
                        if (row < 0) continue;                                            \
                        for (int s = 0; s < KS; s++) {                                    \
                            const Py_ssize_t col = wmap[ow * sw + s * dw];                \
                            if (col < 0) continue;                                        \
                            const T *xp = x + (row * W + col) * C + c0;                   \
                            const T *wp = w + (r * KS + s) * C + c0;                      \
                            for (int b = 0; b < nb; b++) {                                \
                                V xv, wt;                                                 \
                                memcpy(&xv, xp + b * L, sizeof(V));                       \
                                memcpy(&wt, wp + b * L, sizeof(V));                       \
                                acc[b] += xv * wt;                                        \
                            }                                                             \
                        }                                                                 \
                    }                                                                     \
                    for (int b = 0; b < nb; b++)                                          \
                        memcpy(out + (i * Wo + ow) * C + c0 + b * L, &acc[b], sizeof(V)); \
                }                                                                         \
            }                                                                             \
    }

/* A band of output rows of a depthwise convolution, channels last, with a
 * multiplier of 1 and a KR x KS kernel known at compile time:
 * out[(i*Wo + ow)*C + c] = bias[c] + sum_{r,s} w[(r*KS + s)*C + c] *
 * x[hrow[i*sh + r*dh], wmap[ow*sw + s*dw], c] for i < nrows, ow < Wo, c < C
 * (x one (H, W, C) sample; a row or column map of -1 is a zero, whose tap is
 * skipped).  The same sums in the same order as CONVCPU_DW_ROW (bias, then
 * r, then s), so the same bits.
 *
 * One vector of channels at a time through the whole band
 * (CONVCPU_DW_FIXED_BLOCK): its weights stay in registers, and the input rows
 * of its pixels stay in L1 from one output row to the next (the row kernel,
 * every channel of a row per call, reloads each weight per 4 pixels).  The
 * columns whose taps are all inside the image's columns go several pixels at
 * a time (by input columns at strides 1 and 2 with dilation 1), skipping the
 * rows outside the image; the border columns come last
 * (CONVCPU_DW_FIXED_EDGE).
 *
 * When a pixel is a whole number of 64-byte lines (C*sizeof(T) % 64 == 0),
 * the vectors of channels start on the input's lines: a vector that straddles
 * two lines costs two loads (NumPy aligns arrays to 16 bytes only; 144
 * channels @56, one thread: 0.108 ms straddling, 0.063 ms aligned).  The
 * channels before the first line (head) and after the last whole vector
 * (tail) go in vectors V2 (half) and V4 (quarter: 16 bytes) that fit in a
 * line; channels left then (C not a multiple of 16 bytes) one at a time.
 * At stride 1 the tail of one interior pixel and the head of the next are one
 * line, which a single vector covers (its weights rotated): the head and tail
 * vectors then run only the first and last interior pixels (144 channels @56
 * 16 bytes past a line, interleaved A/B: one thread 0.068 -> 0.064 ms, two
 * 0.051 -> 0.047; 5x5 0.165 -> 0.147; 32 channels @112 0.125 -> 0.076). */
#define CONVCPU_DW_FIXED(NAME, T, V, V2, V4, KR, KS, NP)                                  \
    CONVCPU_DW_FIXED_BLOCK(NAME##_block, T, V, KR, KS, NP)                                \
    CONVCPU_DW_FIXED_BLOCK(NAME##_block2, T, V2, KR, KS, NP)                              \
    CONVCPU_DW_FIXED_BLOCK(NAME##_block4, T, V4, KR, KS, NP)                              \
    CONVCPU_DW_FIXED_EDGE(NAME##_edge, T, V, KR, KS)                                      \
    CONVCPU_DW_FIXED_EDGE(NAME##_edge2, T, V2, KR, KS)                                    \
    CONVCPU_DW_FIXED_EDGE(NAME##_edge4, T, V4, KR, KS)                                    \
    CONVCPU_CLONES CONVCPU_KERNEL void NAME(CONVCPU_DW_FIXED_ARGS(T))                     \
    {                                                                                     \
        enum { L = sizeof(V) / sizeof(T), L2 = sizeof(V2) / sizeof(T),                    \
               L4 = sizeof(V4) / sizeof(T) };                                             \
        /* the interior columns [lo, hi): every tap inside the image's columns */        \
        const Py_ssize_t lo = int_lo > 0 ? int_lo : 0, hi = int_hi < Wo ? int_hi : Wo;   \
        /* channel blocks: (first channel, lanes) */                                     \
        Py_ssize_t blk0[8], nblk = 0, ca = 0;                                             \
        int blkw[8];                                                                      \
        const size_t mis = (size_t)((uintptr_t)x % 64);                                   \
        if (C >= L && (C * sizeof(T)) % 64 == 0 && mis % sizeof(V4) == 0)                 \
            ca = (Py_ssize_t)(((64 - mis) % 64) / sizeof(T));                             \
        for (Py_ssize_t c = 0; c < ca; ) { /* head: vectors that fit in its line */      \
            const int w2 = ca - c >= L2 && (mis + c * sizeof(T)) % 64 + sizeof(V2) <= 64; \
            blk0[nblk] = c; blkw[nblk++] = w2 ? L2 : L4;                                  \
            c += w2 ? L2 : L4;                                                            \
        }                                                                                 \
        const Py_ssize_t cb = ca + (C - ca) / L * L;                                      \
        Py_ssize_t c = cb;                                                                \
        for (; C - c >= L2; c += L2) { blk0[nblk] = c; blkw[nblk++] = L2; }               \
        for (; C - c >= L4; c += L4) { blk0[nblk] = c; blkw[nblk++] = L4; }               \
        const Py_ssize_t cs = c; /* channels [cs, C) one at a time */                     \
        /* Stride 1 with a head: the tail of a pixel and the head of the next             \
           are one line, one vector from channel cb on (its weights and bias              \
           rotated), for the pixels [lo, hi - 1) and their next; the head's               \
           blocks then run pixel lo only, the tail's pixel hi - 1 only. */                \
        const int wrap =                                                                  \
            sw == 1 && ca > 0 && cs == C && C - cb + ca == L && hi - lo >= 2;             \
        for (Py_ssize_t c0 = ca; c0 < cb && lo < hi; c0 += L)                             \
            NAME##_block(x, W, C, hrow, sh, dh, nrows, wmap, sw, dw, pad_left, int_lo,    \
                         int_hi, w, bias, out, Wo, lo, hi, c0, w + c0, C,                 \
                         bias != NULL ? bias + c0 : NULL);                                \
        if (wrap) {                                                                       \
            T wrot[KR * KS * L], brot[L];                                                 \
            for (int l = 0; l < L; l++) {                                                 \
                const Py_ssize_t cr = cb + l < C ? cb + l : cb + l - C;                   \
                for (int t = 0; t < KR * KS; t++)                                         \
                    wrot[t * L + l] = w[t * C + cr];                                      \
                brot[l] = bias != NULL ? bias[cr] : 0;                                    \
            }                                                                             \
            NAME##_block(x, W, C, hrow, sh, dh, nrows, wmap, sw, dw, pad_left, int_lo,    \
                         int_hi, w, bias, out, Wo, lo, hi - 1, cb, wrot, L,               \
                         bias != NULL ? brot : NULL);                                     \
        }                                                                                 \
        NAME##_edge(x, W, C, hrow, sh, dh, nrows, wmap, sw, dw, pad_left, int_lo, int_hi, \
                    w, bias, out, Wo, lo, hi, ca, cb);                                    \
        for (Py_ssize_t k = 0; k < nblk; k++) { /* head and tail: interior, then edge */  \
            const Py_ssize_t c0 = blk0[k];                                                \
            const Py_ssize_t blo = wrap && c0 >= cb ? hi - 1 : lo;                        \
            const Py_ssize_t bhi = wrap && c0 < ca ? lo + 1 : hi;                         \
            const T *bb = bias != NULL ? bias + c0 : NULL;                                \
            if (blkw[k] == L2) {                                                          \
                if (blo < bhi)                                                            \
                    NAME##_block2(x, W, C, hrow, sh, dh, nrows, wmap, sw, dw, pad_left,   \
                                  int_lo, int_hi, w, bias, out, Wo, blo, bhi, c0, w + c0,  \
                                  C, bb);                                                 \
                NAME##_edge2(x, W, C, hrow, sh, dh, nrows, wmap, sw, dw, pad_left, int_lo, \
                             int_hi, w, bias, out, Wo, lo, hi, c0, c0 + L2);              \
            } else {                                                                      \
                if (blo < bhi)                                                            \
                    NAME##_block4(x, W, C, hrow, sh, dh, nrows, wmap, sw, dw, pad_left,   \
                                  int_lo, int_hi, w, bias, out, Wo, blo, bhi, c0, w + c0,  \
                                  C, bb);                                                 \
                NAME##_edge4(x, W, C, hrow, sh, dh, nrows, wmap, sw, dw, pad_left, int_lo, \
                             int_hi, w, bias, out, Wo, lo, hi, c0, c0 + L4);              \
            }                                                                             \
        }                                                                                 \
        for (Py_ssize_t c = cs; c < C; c++)                                               \
            for (Py_ssize_t i = 0; i < nrows; i++)                                        \
                for (Py_ssize_t ow = 0; ow < Wo; ow++) {                                  \
                    T a = bias != NULL ? bias[c] : 0;                                     \
                    for (int r = 0; r < KR; r++) {                                        \
                        const Py_ssize_t row = hrow[i * sh + r * dh];                     \
                        if (row < 0) continue;                                            \
                        for (int s = 0; s < KS; s++) {                                    \
                            const Py_ssize_t col = wmap[ow * sw + s * dw];                \
                            if (col >= 0)                                                 \
                                a += x[(row * W + col) * C + c] * w[(r * KS + s) * C + c]; \
                        }                                                                 \
                    }                                                                     \
                    out[(i * Wo + ow) * C + c] = a;                                       \
                }                                                                         \
    }

/* CONVCPU_DW_FIXED for a k x k kernel, k = 3 (8 pixels at a time) or 5 (4). */
#define CONVCPU_DW_FIXED_SIZES(NAME, T, V, V2, V4)                                        \
    CONVCPU_DW_FIXED(NAME##_3x3, T, V, V2, V4, 3, 3, 8)                                   \
    CONVCPU_DW_FIXED(NAME##_5x5, T, V, V2, V4, 5, 5, 4)                                   \
    CONVCPU_KERNEL void NAME(int k, CONVCPU_DW_FIXED_ARGS(T))                             \
    {                                                                                     \
        if (k == 3)                                                                       \
            NAME##_3x3(x, W, C, hrow, sh, dh, nrows, wmap, sw, dw, pad_left, int_lo,      \
                       int_hi, w, bias, out, Wo);                                         \
        else                                                                              \
            NAME##_5x5(x, W, C, hrow, sh, dh, nrows, wmap, sw, dw, pad_left, int_lo,      \
                       int_hi, w, bias, out, Wo);                                         \
    }

/* The geometry of a channels-first depthwise band kernel (CONVCPU_DWC), set
 * once per call by convcpu_dwc_geom_f32 / _f64.  The kernel gathers each row
 * of the padded plane it needs into its workspace, split by column phase:
 * ws + q*sw*Lt + ph*Lt + t holds column t*sw + ph of the band's padded row q
 * (plane row hrow[q], column wmap[t*sw + ph]; -1, or past Wpad: zero), in
 * whole aligned vectors (strides 1 and 2 only, and W >= sw*L): an inner
 * vector is one unaligned load of the plane row (stride 1) or two, split
 * into both phases by a shuffle (stride 2); each of the few vectors at
 * the image's edges takes its cells from a window inside the row
 * (CONVCPU_DWC_EDGES of them: a permutation and a mask); other vectors are
 * zeros.  Padding modes other than zeros then set the padding's own cells one
 * at a time. */
#define CONVCPU_DWC_EDGES 8
typedef struct {
    Py_ssize_t W, Wpad, pad_left, sw, Wo, npos, rem, Lt, v_lo, v_hi, nedge;
    Py_ssize_t lo[2], hi[2];      /* per phase: the image's own cells [lo, hi) */
    int zero_pad;
    Py_ssize_t ev[CONVCPU_DWC_EDGES], eb[CONVCPU_DWC_EDGES]; /* edge vector, window */
    Py_ssize_t nzero, zv[CONVCPU_DWC_EDGES];                 /* vectors of zeros */
    unsigned char eidx[CONVCPU_DWC_EDGES][2][64], emask[CONVCPU_DWC_EDGES][2][64];
} convcpu_dwc_geom;

/* Fill g for a plane W wide (wmap: Wpad padded columns, pad_left of them
 * left of the image), output rows Wo wide, stride sw and KS taps dw apart,
 * and vectors V of T with index vectors M (as wide); 0 when the kernel runs
 * it, -1 when not (Wo < L, a stride other than 1 and 2, W < sw*L, or more
 * than CONVCPU_DWC_EDGES edge or zero vectors). */
#define CONVCPU_DWC_GEOM(NAME, T, V, M)                                                   \
    CONVCPU_KERNEL int NAME(convcpu_dwc_geom *g, Py_ssize_t W, const Py_ssize_t *wmap,    \
                            Py_ssize_t Wpad, Py_ssize_t pad_left, Py_ssize_t sw,          \
                            Py_ssize_t KS, Py_ssize_t dw, Py_ssize_t Wo)                  \
    {                                                                                     \
        enum { L = sizeof(V) / sizeof(T) };                                               \
        typedef __typeof__(((M){0})[0]) IT;                                               \
        memset(g, 0, sizeof(*g));                                                         \
        if (Wo < L || sw < 1 || W < 1) return -1;                                         \
        g->W = W; g->Wpad = Wpad; g->pad_left = pad_left; g->sw = sw; g->Wo = Wo;         \
        g->npos = (Wo + L - 1) / L;                                                       \
        g->rem = Wo % L;                                                                  \
        const Py_ssize_t maxoff = ((KS - 1) * dw) / sw;                                   \
        g->Lt = (g->npos * L + maxoff + L - 1) / L * L + L;                               \
        g->zero_pad = 1;                                                                  \
        for (Py_ssize_t c = 0; c < Wpad; c++)                                             \
            if ((c < pad_left || c >= pad_left + W) && wmap[c] >= 0) g->zero_pad = 0;     \
        if ((sw != 1 && sw != 2) || W < sw * L) return -1;                                \
        for (Py_ssize_t ph = 0; ph < sw; ph++)                                            \
            convcpu_phase_bounds(pad_left, W, ph, sw, g->Lt, &g->lo[ph], &g->hi[ph]);     \
        for (Py_ssize_t v = 0; v < g->Lt / L; v++) {                                      \
            const Py_ssize_t u = v * L * sw - pad_left; /* the window's first column */   \
            if (u >= 0 && u <= W - sw * L) { /* inner */                                  \
                if (g->v_hi == g->v_lo) g->v_lo = v;                                      \
                g->v_hi = v + 1;                                                          \
                continue;                                                                 \
            }                                                                             \
            if (u + sw * L <= 0 || u >= W) { /* zeros */                                  \
                if (g->nzero == CONVCPU_DWC_EDGES) return -1;                             \
                g->zv[g->nzero++] = v;                                                    \
                continue;                                                                 \
            }                                                                             \
            if (g->nedge == CONVCPU_DWC_EDGES) return -1;                                 \
            const Py_ssize_t e = g->nedge++, b = u < 0 ? 0 : W - sw * L;                  \
            g->ev[e] = v;                                                                 \
            g->eb[e] = b;                                                                 \
            for (Py_ssize_t ph = 0; ph < sw; ph++) {                                      \
                M idx, mask;                                                              \
                for (int l = 0; l < L; l++) {                                             \
                    const Py_ssize_t c = u + ph + sw * l;                                 \
                    const int in = c >= 0 && c < W;                                       \
                    idx[l] = (IT)(in ? c - b : 0);                                        \
                    mask[l] = (IT)(in ? -1 : 0);                                          \
                }                                                                         \
                memcpy(g->eidx[e][ph], &idx, sizeof(M));                                  \
                memcpy(g->emask[e][ph], &mask, sizeof(M));                                \
            }                                                                             \
        }                                                                                 \
        return 0;                                                                         \
    }

/* The workspace of a band of nq gathered rows, in elements of itemsize
 * bytes, with room to align it to 64 bytes. */
CONVCPU_KERNEL Py_ssize_t convcpu_dwc_ws_elems(const convcpu_dwc_geom *g, Py_ssize_t nq,
                                               Py_ssize_t itemsize)
{
    return nq * g->sw * g->Lt + 64 / itemsize;
}

/* Row `line` of the plane (NULL: a row of zeros) into d as gathered (see
 * convcpu_dwc_geom), at stride SW (1 or 2); IOTA: the lane indices (M). */
#define CONVCPU_DWC_GATHER(NAME, T, V, M, IOTA, SW)                                       \
    static inline __attribute__((always_inline)) void NAME(                               \
        const convcpu_dwc_geom *g, const T *restrict line, const Py_ssize_t *wmap,        \
        T *restrict d)                                                                    \
    {                                                                                     \
        enum { L = sizeof(V) / sizeof(T) };                                               \
        const V z = {0};                                                                  \
        const Py_ssize_t Lt = g->Lt;                                                      \
        if (line == NULL) {                                                               \
            for (Py_ssize_t t = 0; t < SW * Lt; t += L) memcpy(d + t, &z, sizeof(V));     \
            return;                                                                       \
        }                                                                                 \
        const T *restrict src = line - g->pad_left;                                       \
        for (Py_ssize_t v = g->v_lo; v < g->v_hi; v++) { /* inner vectors */              \
            V a;                                                                          \
            const T *sp = src + v * L * SW;                                               \
            CONVCPU_OPAQUE(sp); /* not a call of memmove: W is small */                   \
            memcpy(&a, sp, sizeof(V));                                                    \
            if (SW == 1) {                                                                \
                memcpy(d + v * L, &a, sizeof(V));                                         \
            } else {                                                                      \
                V b;                                                                      \
                memcpy(&b, src + v * L * 2 + L, sizeof(V));                               \
                const V ev = __builtin_shuffle(a, b, IOTA + IOTA);                        \
                const V od = __builtin_shuffle(a, b, IOTA + IOTA + 1);                    \
                memcpy(d + v * L, &ev, sizeof(V));                                        \
                memcpy(d + Lt + v * L, &od, sizeof(V));                                   \
            }                                                                             \
        }                                                                                 \
        for (Py_ssize_t e = 0; e < g->nedge; e++) { /* the edges' vectors */              \
            V a, b = z;                                                                   \
            memcpy(&a, line + g->eb[e], sizeof(V));                                       \
            if (SW == 2) memcpy(&b, line + g->eb[e] + L, sizeof(V));                      \
            for (Py_ssize_t ph = 0; ph < SW; ph++) {                                      \
                M idx, mask, bits;                                                        \
                memcpy(&idx, g->eidx[e][ph], sizeof(M));                                  \
                memcpy(&mask, g->emask[e][ph], sizeof(M));                                \
                const V r = __builtin_shuffle(a, b, idx);                                 \
                memcpy(&bits, &r, sizeof(M));                                             \
                bits &= mask;                                                             \
                memcpy(d + ph * Lt + g->ev[e] * L, &bits, sizeof(V));                     \
            }                                                                             \
        }                                                                                 \
        for (Py_ssize_t e = 0; e < g->nzero; e++) /* vectors of padding */                \
            for (Py_ssize_t ph = 0; ph < SW; ph++)                                        \
                memcpy(d + ph * Lt + g->zv[e] * L, &z, sizeof(V));                        \
        if (g->zero_pad) return;                                                          \
        /* the padding's own cells (reflect, replicate, circular) */                      \
        for (Py_ssize_t ph = 0; ph < SW; ph++)                                            \
            for (Py_ssize_t t = 0; t < Lt; t++) {                                         \
                if (t == g->lo[ph]) t = g->hi[ph];                                        \
                const Py_ssize_t c = t * SW + ph;                                         \
                if (t < Lt && c < g->Wpad && wmap[c] >= 0) d[ph * Lt + t] = line[wmap[c]]; \
            }                                                                             \
    }

/* Output rows [i, i + NR) of the band at the JB output vectors from v on
 * (stride SH x SW and dilation 1, at compile time): every row of the gathered
 * band they read is loaded once per phase, JB + 1 aligned vectors, and the
 * taps' shifted vectors are shuffles of them; each output sums bias, then its
 * taps in (r, s) order. */
#define CONVCPU_DWC_RUN(T, V, IOTA, KR, KS, SH, SW, NR, JB, PART)                         \
    do {                                                                                  \
        V acc[NR][JB];                                                                    \
        _Pragma("GCC unroll 8") for (int p = 0; p < NR; p++)                              \
            _Pragma("GCC unroll 4") for (int jb = 0; jb < JB; jb++) acc[p][jb] = bv;       \
        const T *q = ws + i * SH * rl + v * L;                                            \
        CONVCPU_OPAQUE(q);                                                                \
        _Pragma("GCC unroll 16") for (int k = 0; k < (NR - 1) * SH + KR; k++, q += rl) {  \
            V y[SW][JB + 1];                                                              \
            _Pragma("GCC unroll 2") for (int ph = 0; ph < SW; ph++)                       \
                _Pragma("GCC unroll 5") for (int jb = 0; jb <= JB; jb++) {                \
                    if (jb == JB && (KS - 1 - ph) / SW == 0) continue; /* no shift */     \
                    memcpy(&y[ph][jb], q + ph * Lt + jb * L, sizeof(V));                  \
                }                                                                         \
            _Pragma("GCC unroll 5") for (int s = 0; s < KS; s++) {                        \
                const int ph = s % SW, off = s / SW;                                      \
                V xv[JB];                                                                 \
                _Pragma("GCC unroll 4") for (int jb = 0; jb < JB; jb++)                   \
                    xv[jb] = off == 0 ? y[ph][jb]                                         \
                                      : __builtin_shuffle(y[ph][jb], y[ph][jb + 1],       \
                                                          IOTA + off);                    \
                _Pragma("GCC unroll 8") for (int p = 0; p < NR; p++) {                    \
                    const int r = k - p * SH;                                             \
                    if (r >= 0 && r < KR)                                                 \
                        _Pragma("GCC unroll 4") for (int jb = 0; jb < JB; jb++)           \
                            acc[p][jb] += xv[jb] * wv[r * KS + s];                        \
                }                                                                         \
            }                                                                             \
        }                                                                                 \
        T *o = out + i * Wo + v * L;                                                      \
        CONVCPU_OPAQUE(o);                                                                \
        _Pragma("GCC unroll 8") for (int p = 0; p < NR; p++, o += Wo)                     \
            _Pragma("GCC unroll 4") for (int jb = 0; jb < JB; jb++)                       \
                CONVCPU_DWC_STORE(T, V, o + jb * L, acc[p][jb],                           \
                                  PART && jb == JB - 1 ? rem : 0);                        \
    } while (0)

/* As CONVCPU_DWC_RUN, one output row at any stride and dilation (tap s at
 * soff[s] in a gathered row), one output vector at a time. */
#define CONVCPU_DWC_TAPS(T, V, KR, KS)                                                    \
    do {                                                                                  \
        V acc = bv;                                                                       \
        _Pragma("GCC unroll 5") for (int r = 0; r < KR; r++) {                            \
            const T *gr = ws + (ii * sh + r * dh) * rl + v * L;                           \
            _Pragma("GCC unroll 5") for (int s = 0; s < KS; s++) {                        \
                V xv;                                                                     \
                memcpy(&xv, gr + soff[s], sizeof(V));                                     \
                acc += xv * wv[r * KS + s];                                               \
            }                                                                             \
        }                                                                                 \
        CONVCPU_DWC_STORE(T, V, out + ii * Wo + v * L, acc, v == npos - 1 ? rem : 0);     \
    } while (0)

/* Store a vector, or (part: 0 < part < L) its first part lanes. */
#define CONVCPU_DWC_STORE(T, V, o, a, part)                                               \
    do {                                                                                  \
        const Py_ssize_t n_ = (part);                                                     \
        if (n_ == 0) {                                                                    \
            memcpy((o), &(a), sizeof(V));                                                 \
        } else {                                                                          \
            T t_[sizeof(V) / sizeof(T)];                                                  \
            memcpy(t_, &(a), sizeof(V));                                                  \
            Py_ssize_t j_ = 0;                                                            \
            if (n_ & (L / 2)) { memcpy((o), t_, L / 2 * sizeof(T)); j_ = L / 2; }         \
            if (L >= 4 && (n_ & (L / 4))) {                                               \
                memcpy((o) + j_, t_ + j_, L / 4 * sizeof(T));                             \
                j_ += L / 4;                                                              \
            }                                                                             \
            if (L >= 8 && (n_ & (L / 8))) {                                               \
                memcpy((o) + j_, t_ + j_, L / 8 * sizeof(T));                             \
                j_ += L / 8;                                                              \
            }                                                                             \
            if (L >= 16 && (n_ & (L / 16)))                                               \
                (o)[j_] = t_[j_];                                                         \
        }                                                                                 \
    } while (0)

/* Rows [i, i + NR) of the band, every output vector, JB at a time. */
#define CONVCPU_DWC_ROWS(T, V, IOTA, KR, KS, SH, SW, NR, JB)                              \
    do {                                                                                  \
        const Py_ssize_t nfull = rem ? npos - 1 : npos;                                   \
        Py_ssize_t v = 0;                                                                 \
        for (; v + JB <= nfull; v += JB)                                                  \
            CONVCPU_DWC_RUN(T, V, IOTA, KR, KS, SH, SW, NR, JB, 0);                       \
        if (rem && v + JB == npos) {                                                      \
            CONVCPU_DWC_RUN(T, V, IOTA, KR, KS, SH, SW, NR, JB, 1);                       \
            v += JB;                                                                      \
        }                                                                                 \
        for (; v < nfull; v++)                                                            \
            CONVCPU_DWC_RUN(T, V, IOTA, KR, KS, SH, SW, NR, 1, 0);                        \
        if (v < npos)                                                                     \
            CONVCPU_DWC_RUN(T, V, IOTA, KR, KS, SH, SW, NR, 1, 1);                        \
    } while (0)

#define CONVCPU_DWC_ARGS(T)                                                               \
    const convcpu_dwc_geom *g, const T *restrict plane, const Py_ssize_t *hrow,           \
        Py_ssize_t sh, Py_ssize_t dh, Py_ssize_t nrows, const Py_ssize_t *wmap,           \
        Py_ssize_t dw, const T *restrict w, const T *bias, T *restrict out,               \
        T *restrict ws

/* A band of output rows of a depthwise convolution, channels first, with a
 * KR x KS kernel known at compile time: out[i*Wo + j] = bias + sum_{r,s}
 * w[r*KS + s] * P[hrow[i*sh + r*dh], j*sw + s*dw] for i < nrows, j < Wo (P
 * the padded plane, g its geometry; a padding cell is a zero whose product
 * is added, as the gathered kernels do: the same sums in the same order, so
 * the same bits as CONVCPU_DIRECT_ROW on CONVCPU_GATHER's bands).  ws: the
 * gathered band (see convcpu_dwc_geom), ((nrows - 1)*sh + (KR - 1)*dh + 1)
 * * sw * Lt elements, 64-byte aligned; its rows are gathered as the output
 * rows come to need them, so they are still in L1 when read.  The weights
 * stay in registers; at dilation 1 and strides 1 and 2, NR output rows x JB
 * vectors at a time share the loads of their input rows (CONVCPU_DWC_RUN). */
#define CONVCPU_DWC(NAME, T, V, M, IOTA, KR, KS, NR, JB)                                  \
    CONVCPU_DWC_GATHER(NAME##_gather1, T, V, M, IOTA, 1)                                  \
    CONVCPU_DWC_GATHER(NAME##_gather2, T, V, M, IOTA, 2)                                  \
    CONVCPU_CLONES CONVCPU_KERNEL void NAME(CONVCPU_DWC_ARGS(T))                          \
    {                                                                                     \
        enum { L = sizeof(V) / sizeof(T) };                                               \
        const Py_ssize_t sw = g->sw, Lt = g->Lt, rl = sw * Lt, Wo = g->Wo;                \
        const Py_ssize_t npos = g->npos, rem = g->rem;                                    \
        Py_ssize_t soff[KS];                                                              \
        for (int s = 0; s < KS; s++) soff[s] = ((s * dw) % sw) * Lt + (s * dw) / sw;      \
        V wv[KR * KS], bv = {0};                                                          \
        for (int t = 0; t < KR * KS; t++)                                                 \
            for (int l = 0; l < L; l++) wv[t][l] = w[t];                                  \
        bv += bias != NULL ? *bias : (T)0;                                                \
        const Py_ssize_t nq = (nrows - 1) * sh + (KR - 1) * dh + 1;                       \
        Py_ssize_t done = 0; /* rows gathered */                                          \
        for (Py_ssize_t i = 0; i < nrows;) {                                              \
            const Py_ssize_t nr = nrows - i >= NR ? NR : 1;                               \
            Py_ssize_t need = (i + nr - 1) * sh + (KR - 1) * dh + 1;                      \
            if (need > nq) need = nq;                                                     \
            for (; done < need; done++) {                                                 \
                const Py_ssize_t src = hrow[done];                                        \
                const T *line = src >= 0 ? plane + src * g->W : NULL;                     \
                if (sw == 1)                                                              \
                    NAME##_gather1(g, line, wmap, ws + done * rl);                        \
                else                                                                      \
                    NAME##_gather2(g, line, wmap, ws + done * rl);                        \
            }                                                                             \
            if (dh == 1 && dw == 1 && sh == 1 && sw == 1 && nr == NR)                     \
                CONVCPU_DWC_ROWS(T, V, IOTA, KR, KS, 1, 1, NR, JB);                       \
            else if (dh == 1 && dw == 1 && sh == 2 && sw == 2 && nr == NR)                \
                CONVCPU_DWC_ROWS(T, V, IOTA, KR, KS, 2, 2, NR, JB);                       \
            else if (dh == 1 && dw == 1 && sh == 1 && sw == 1)                            \
                CONVCPU_DWC_ROWS(T, V, IOTA, KR, KS, 1, 1, 1, 4);                         \
            else if (dh == 1 && dw == 1 && sh == 2 && sw == 2)                            \
                CONVCPU_DWC_ROWS(T, V, IOTA, KR, KS, 2, 2, 1, 4);                         \
            else                                                                          \
                for (Py_ssize_t ii = i; ii < i + nr; ii++)                                \
                    for (Py_ssize_t v = 0; v < npos; v++)                                 \
                        CONVCPU_DWC_TAPS(T, V, KR, KS);                                   \
            i += nr;                                                                      \
        }                                                                                 \
    }

/* CONVCPU_DWC for a k x k kernel, k = 3 or 5 (4 output rows x 2 vectors at a
 * time: 144ch @56 and 96ch @112 stride 2, one thread, against 8 x 1, 6 x 2,
 * 4 x 3 and 2 x 4). */
#define CONVCPU_DWC_SIZES(NAME, T, V, M, IOTA)                                            \
    CONVCPU_DWC(NAME##_3x3, T, V, M, IOTA, 3, 3, 4, 2)                                    \
    CONVCPU_DWC(NAME##_5x5, T, V, M, IOTA, 5, 5, 4, 2)                                    \
    CONVCPU_KERNEL void NAME(int k, CONVCPU_DWC_ARGS(T))                                  \
    {                                                                                     \
        if (k == 3)                                                                       \
            NAME##_3x3(g, plane, hrow, sh, dh, nrows, wmap, dw, w, bias, out, ws);        \
        else                                                                              \
            NAME##_5x5(g, plane, hrow, sh, dh, nrows, wmap, dw, w, bias, out, ws);        \
    }

/* One output row of a grouped convolution, channels last, with few channels
 * per group: out[ow*ldo + g*Kg + k] = bias[g*Kg + k] + sum over r, s, ci (in
 * that order) of x[hrow[r*dh], wmap[ow*sw + s*dw], g*Cg + ci] *
 * w[r, s, ci, g*Kg + k] for ow < Wo, g < groups, k < Kg (x one (H, W, C)
 * sample, w (R, S, Cg, K): TensorFlow's HWIO; a map entry of -1 is a zero,
 * whose tap is skipped).  Kg must be a multiple of the lanes L of V.  A
 * vector holds L output channels of a group; each tap and input channel adds
 * a broadcast input value times a weight vector: the im2col route would run
 * a GEMM of a few columns per group.  Columns [int_lo, int_hi) read every tap
 * inside the image: P pixels at a time share each weight vector.  The other
 * columns go one pixel at a time with up to NV vectors (of any groups) at
 * once, so that NV independent sums hide the FMA latency. */
#define CONVCPU_GROUPED_PIXELS(NAME, T, V, P)                                             \
    static inline __attribute__((always_inline)) void NAME(                               \
        const T *restrict x0, const Py_ssize_t *rowoff, Py_ssize_t R, Py_ssize_t S,       \
        Py_ssize_t sstride, Py_ssize_t pstride, Py_ssize_t Cg, Py_ssize_t K,              \
        const T *restrict w, const T *bb, T *restrict out, Py_ssize_t ldo)                \
    {                                                                                     \
        /* pixel p, tap (r, s) reads x0 + rowoff[r] + s*sstride + p*pstride */            \
        V acc[P];                                                                         \
        for (int p = 0; p < P; p++) memcpy(&acc[p], bb, sizeof(V));                       \
        for (Py_ssize_t r = 0; r < R; r++) {                                              \
            if (rowoff[r] < 0) continue;                                                  \
            for (Py_ssize_t s = 0; s < S; s++) {                                          \
                const T *xs = x0 + rowoff[r] + s * sstride;                               \
                const T *ws = w + (r * S + s) * Cg * K;                                   \
                for (Py_ssize_t ci = 0; ci < Cg; ci++) {                                  \
                    V wv;                                                                 \
                    memcpy(&wv, ws + ci * K, sizeof(V));                                  \
                    for (int p = 0; p < P; p++) acc[p] += xs[p * pstride + ci] * wv;      \
                }                                                                         \
            }                                                                             \
        }                                                                                 \
        for (int p = 0; p < P; p++) memcpy(out + p * ldo, &acc[p], sizeof(V));            \
    }

/* As CONVCPU_GROUPED_PIXELS for two groups at once when both Cg and Kg are
 * the lanes L of V: a vector V2 of 2L lanes holds the outputs of groups g
 * and g+1, and their 2L input channels of a pixel are one load; input
 * channel ci of each group is spread over its half by a permute (M2: V2's
 * integer vector), instead of a broadcast per group and half-width FMAs.
 * The same sums in the same order, so the same bits. */
#define CONVCPU_GROUPED_PAIR(NAME, T, V, V2, M2, P)                                       \
    static inline __attribute__((always_inline)) void NAME(                               \
        const T *restrict x0, const Py_ssize_t *rowoff, Py_ssize_t R, Py_ssize_t S,       \
        Py_ssize_t sstride, Py_ssize_t pstride, Py_ssize_t K, const T *restrict w,        \
        const T *bb, T *restrict out, Py_ssize_t ldo)                                     \
    {                                                                                     \
        enum { L = sizeof(V) / sizeof(T) };                                               \
        M2 half; /* lanes of group g: 0; of group g+1: L (its channels' offset) */        \
        for (int i = 0; i < 2 * L; i++) half[i] = i < L ? 0 : L;                          \
        V2 acc[P];                                                                        \
        for (int p = 0; p < P; p++) memcpy(&acc[p], bb, sizeof(V2));                      \
        for (Py_ssize_t r = 0; r < R; r++) {                                              \
            if (rowoff[r] < 0) continue;                                                  \
            for (Py_ssize_t s = 0; s < S; s++) {                                          \
                const T *xs = x0 + rowoff[r] + s * sstride;                               \
                const T *ws = w + (r * S + s) * L * K;                                    \
                V2 xv[P];                                                                 \
                for (int p = 0; p < P; p++) memcpy(&xv[p], xs + p * pstride, sizeof(V2)); \
                for (int ci = 0; ci < L; ci++) {                                          \
                    V2 wv;                                                                \
                    memcpy(&wv, ws + ci * K, sizeof(V2));                                 \
                    const M2 pick = half + ci;                                            \
                    for (int p = 0; p < P; p++)                                           \
                        acc[p] += __builtin_shuffle(xv[p], pick) * wv;                    \
                }                                                                         \
            }                                                                             \
        }                                                                                 \
        for (int p = 0; p < P; p++) memcpy(out + p * ldo, &acc[p], sizeof(V2));           \
    }

#define CONVCPU_GROUPED_ONE(NAME, T, V, NV)                                               \
    static inline __attribute__((always_inline)) void NAME(                               \
        const T *restrict x, Py_ssize_t C, const Py_ssize_t *rowoff, Py_ssize_t R,        \
        Py_ssize_t S, const Py_ssize_t *cols, Py_ssize_t Cg, Py_ssize_t Kg, Py_ssize_t K, \
        Py_ssize_t k0, const T *restrict w, const T *bias, T *restrict out)               \
    {                                                                                     \
        /* output channels k0 .. k0 + NV*L - 1 of one pixel; tap s reads input */         \
        /* column cols[s] (-1: a zero, skipped)                                */         \
        enum { L = sizeof(V) / sizeof(T) };                                               \
        V acc[NV];                                                                        \
        Py_ssize_t xo[NV];                                                                \
        for (int v = 0; v < NV; v++) {                                                    \
            const Py_ssize_t k = k0 + v * L;                                              \
            xo[v] = (k / Kg) * Cg;                                                        \
            if (bias) memcpy(&acc[v], bias + k, sizeof(V));                               \
            else memset(&acc[v], 0, sizeof(V));                                           \
        }                                                                                 \
        for (Py_ssize_t r = 0; r < R; r++) {                                              \
            if (rowoff[r] < 0) continue;                                                  \
            for (Py_ssize_t s = 0; s < S; s++) {                                          \
                if (cols[s] < 0) continue;                                                \
                const T *xs = x + rowoff[r] + cols[s] * C;                                \
                const T *ws = w + (r * S + s) * Cg * K + k0;                              \
                for (Py_ssize_t ci = 0; ci < Cg; ci++)                                    \
                    for (int v = 0; v < NV; v++) {                                        \
                        V wv;                                                             \
                        memcpy(&wv, ws + ci * K + v * L, sizeof(V));                      \
                        acc[v] += xs[xo[v] + ci] * wv;                                    \
                    }                                                                     \
            }                                                                             \
        }                                                                                 \
        for (int v = 0; v < NV; v++) memcpy(out + k0 + v * L, &acc[v], sizeof(V));        \
    }

#define CONVCPU_GROUPED_ROW(NAME, T, V, V2, M2)                                           \
    CONVCPU_GROUPED_PIXELS(NAME##_8, T, V, 8)                                             \
    CONVCPU_GROUPED_PAIR(NAME##_pair8, T, V, V2, M2, 8)                                   \
    CONVCPU_GROUPED_ONE(NAME##_one4, T, V, 4)                                             \
    CONVCPU_GROUPED_ONE(NAME##_one1, T, V, 1)                                             \
    CONVCPU_CLONES CONVCPU_KERNEL void NAME(                                              \
        const T *restrict x, Py_ssize_t W, Py_ssize_t C, Py_ssize_t groups,               \
        Py_ssize_t Kg, const Py_ssize_t *hrow, Py_ssize_t dh, Py_ssize_t R, Py_ssize_t S, \
        const Py_ssize_t *wmap, Py_ssize_t sw, Py_ssize_t dw, Py_ssize_t pad_left,        \
        Py_ssize_t int_lo, Py_ssize_t int_hi, const T *restrict w, const T *bias,         \
        T *restrict out, Py_ssize_t Wo, Py_ssize_t ldo, Py_ssize_t *scratch)              \
    {                                                                                     \
        /* scratch: R + S*Wo entries */                                                   \
        enum { L = sizeof(V) / sizeof(T) };                                               \
        const Py_ssize_t Cg = C / groups, K = Kg * groups;                                \
        Py_ssize_t *rowoff = scratch, *border = scratch + R;                              \
        /* interior blocks: columns [lo, hi) */                                           \
        const Py_ssize_t lo = int_lo < Wo ? int_lo : Wo;                                  \
        const Py_ssize_t span = int_hi > lo ? int_hi - lo : 0;                            \
        const Py_ssize_t hi = lo + span - span % 8;                                       \
        T bb[2 * L];                                                                      \
        for (Py_ssize_t r = 0; r < R; r++) {                                              \
            const Py_ssize_t row = hrow[r * dh];                                          \
            rowoff[r] = row < 0 ? -1 : row * W * C;                                       \
        }                                                                                 \
        for (Py_ssize_t ow = 0; ow < Wo; ow++)                                            \
            for (Py_ssize_t s = 0; s < S; s++) border[ow * S + s] = wmap[ow * sw + s * dw]; \
        for (Py_ssize_t ow = 0; ow < Wo; ow++) {                                          \
            if (ow == lo && hi > lo) ow = hi;                                             \
            if (ow >= Wo) break;                                                          \
            Py_ssize_t k0 = 0;                                                            \
            for (; k0 + 4 * L <= K; k0 += 4 * L)                                          \
                NAME##_one4(x, C, rowoff, R, S, border + ow * S, Cg, Kg, K, k0, w, bias,  \
                            out + ow * ldo);                                              \
            for (; k0 < K; k0 += L)                                                       \
                NAME##_one1(x, C, rowoff, R, S, border + ow * S, Cg, Kg, K, k0, w, bias,  \
                            out + ow * ldo);                                              \
        }                                                                                 \
        Py_ssize_t g = 0;                                                                 \
        if (Cg == L && Kg == L) /* pairs of groups in 2L lanes */                         \
            for (; g + 1 < groups && hi > lo; g += 2) {                                   \
                for (Py_ssize_t i = 0; i < 2 * L; i++)                                    \
                    bb[i] = bias ? bias[g * Kg + i] : (T)0;                               \
                for (Py_ssize_t ow = lo; ow < hi; ow += 8)                                \
                    NAME##_pair8(x + g * Cg + (ow * sw - pad_left) * C, rowoff, R, S,     \
                                 dw * C, sw * C, K, w + g * Kg, bb, out + ow * ldo + g * Kg, \
                                 ldo);                                                    \
            }                                                                             \
        for (; g < groups && hi > lo; g++) {                                              \
            for (Py_ssize_t k0 = g * Kg; k0 < (g + 1) * Kg; k0 += L) {                    \
                for (Py_ssize_t i = 0; i < L; i++) bb[i] = bias ? bias[k0 + i] : (T)0;    \
                for (Py_ssize_t ow = lo; ow < hi; ow += 8)                                \
                    NAME##_8(x + g * Cg + (ow * sw - pad_left) * C, rowoff, R, S, dw * C, \
                             sw * C, Cg, K, w + k0, bb, out + ow * ldo + k0, ldo);        \
            }                                                                             \
        }                                                                                 \
    }

/* Deformable convolution's samples.  A table entry e = j*taps + t (output
 * pixel j, kernel tap t) holds four corners k = 0..3 (top-left, top-right,
 * bottom-left, bottom-right) as a plane index idx[4e + k] (-1: not read) and a
 * weight wt[4e + k].  For a run of `channels` channels sharing the table:
 *   col[j*row + c*taps + t] = (0 + sum over the corners read, in order k = 0..3,
 *   of wt[4e + k] * x_c[idx[4e + k]]) * mask[t*mask_stride + j]
 * (mask NULL: no product), for j < npix, t < taps, c < channels: the (c, r, s)
 * order of conv2d's patches. */

/* The sampling table of output pixels p0 .. p0+npix-1 (row-major over an
 * Ho x Wo output) for one offset group: off points at its (2*R*S, Ho, Wo)
 * offsets (dy, dx per tap).  Tap (r, s) of pixel (oh, ow) samples
 *   y = (T)(oh*sh - top + r*dh) + dy,  x = (T)(ow*sw - left + s*dw) + dx
 * (torchvision's rounding).  Inside (-1, H) x (-1, W) its corners get the
 * bilinear weights; a corner outside the image or of weight 0 gets index -1
 * (not read), so an integer position reads exactly one pixel.  A NaN position
 * reads pixel 0 with weight NaN (a NaN sample); any other position outside
 * reads nothing (a zero sample).  rows[0] .. rows[1] - 1: the rows read (a
 * row whose corners all have weight 0 may be counted).  Entry e = j*R*S + t:
 * written in order, reading the offsets of every tap as it goes. */
#define CONVCPU_DEFORM_TABLE(NAME, T)                                                     \
    CONVCPU_CLONES CONVCPU_KERNEL void NAME(                                              \
        const T *restrict off, Py_ssize_t Ho, Py_ssize_t Wo, Py_ssize_t p0,               \
        Py_ssize_t npix, Py_ssize_t R, Py_ssize_t S, const Py_ssize_t *geometry,          \
        Py_ssize_t H, Py_ssize_t W, Py_ssize_t *restrict idx, T *restrict wt,             \
        Py_ssize_t *rows)                                                                 \
    {                                                                                     \
        /* geometry: sh, sw, dh, dw, top, left */                                         \
        const Py_ssize_t sh = geometry[0], sw = geometry[1], dh = geometry[2],            \
                         dw = geometry[3], top = geometry[4], left = geometry[5];         \
        const Py_ssize_t HoWo = Ho * Wo;                                                  \
        Py_ssize_t row_lo = H, row_hi = 0;                                                \
        Py_ssize_t oh = p0 / Wo, ow = p0 - (p0 / Wo) * Wo, e = 0;                         \
        for (Py_ssize_t j = p0; j < p0 + npix; j++) {                                     \
            for (Py_ssize_t r = 0; r < R; r++)                                            \
                for (Py_ssize_t s = 0; s < S; s++, e += 4) {                              \
                    const T *off_y = off + 2 * (r * S + s) * HoWo;                        \
                    const T oy = off_y[j], ox = off_y[HoWo + j];                          \
                    /* Integer base + offset, the offset split into floor and   */      \
                    /* fraction: exact at any image size (a float32 position    */      \
                    /* would lose pixels beyond 2**24).  |offset| >= 2**52 is   */      \
                    /* outside any image (and Inf too).                          */     \
                    const int finite = fabs((double)oy) < 4503599627370496.0 &&           \
                                       fabs((double)ox) < 4503599627370496.0;             \
                    const T fy = finite ? floor(oy) : 0, fx = finite ? floor(ox) : 0;     \
                    const Py_ssize_t y0 = oh * sh - top + r * dh + (Py_ssize_t)fy;        \
                    const Py_ssize_t x0 = ow * sw - left + s * dw + (Py_ssize_t)fx;       \
                    const T ly = oy - fy, lx = ox - fx;                                   \
                    if (finite && (y0 >= 0 || (y0 == -1 && ly > 0)) && y0 < H &&          \
                        (x0 >= 0 || (x0 == -1 && lx > 0)) && x0 < W) {                    \
                        const T hy = 1 - ly, hx = 1 - lx;                                 \
                        const T w00 = hy * hx, w01 = hy * lx, w10 = ly * hx, w11 = ly * lx; \
                        const int top_in = y0 >= 0, bottom_in = y0 + 1 < H;               \
                        const int left_in = x0 >= 0, right_in = x0 + 1 < W;               \
                        const Py_ssize_t base = y0 * W + x0;                              \
                        wt[e] = w00;                                                      \
                        wt[e + 1] = w01;                                                  \
                        wt[e + 2] = w10;                                                  \
                        wt[e + 3] = w11;                                                  \
                        idx[e] = top_in && left_in && w00 != 0 ? base : -1;               \
                        idx[e + 1] = top_in && right_in && w01 != 0 ? base + 1 : -1;      \
                        idx[e + 2] = bottom_in && left_in && w10 != 0 ? base + W : -1;    \
                        idx[e + 3] = bottom_in && right_in && w11 != 0 ? base + W + 1 : -1; \
                        const Py_ssize_t lo = top_in ? y0 : y0 + 1;                       \
                        const Py_ssize_t hi = bottom_in ? y0 + 2 : y0 + 1;                \
                        row_lo = lo < row_lo ? lo : row_lo;                               \
                        row_hi = hi > row_hi ? hi : row_hi;                               \
                    } else {                                                              \
                        const int nan = oy != oy || ox != ox;                             \
                        idx[e] = nan ? 0 : -1;                                            \
                        idx[e + 1] = idx[e + 2] = idx[e + 3] = -1;                        \
                        wt[e] = nan ? oy + ox : 0;                                        \
                        if (nan) {                                                        \
                            row_lo = 0;                                                   \
                            row_hi = row_hi > 1 ? row_hi : 1;                             \
                        }                                                                 \
                    }                                                                     \
                }                                                                         \
            if (++ow == Wo) {                                                             \
                ow = 0;                                                                   \
                oh++;                                                                     \
            }                                                                             \
        }                                                                                 \
        rows[0] = row_lo < row_hi ? row_lo : row_hi;                                      \
        rows[1] = row_hi;                                                                 \
    }

/* From planes: x_c[i] = x[c*plane + i].  An entry is loaded once and applied
 * to every channel; entries with all four corners read take a branch-free loop. */
#define CONVCPU_DEFORM_PLANES(NAME, T)                                                    \
    CONVCPU_CLONES CONVCPU_KERNEL void NAME(                                              \
        const T *restrict x, Py_ssize_t plane, Py_ssize_t channels, Py_ssize_t npix,      \
        Py_ssize_t taps, const Py_ssize_t *restrict idx, const T *restrict wt,            \
        const T *restrict mask, Py_ssize_t mask_stride, T *restrict col, Py_ssize_t row)  \
    {                                                                                     \
        for (Py_ssize_t j = 0; j < npix; j++)                                             \
            for (Py_ssize_t t = 0; t < taps; t++) {                                       \
                const Py_ssize_t e = 4 * (j * taps + t);                                  \
                const Py_ssize_t i0 = idx[e], i1 = idx[e + 1], i2 = idx[e + 2],           \
                                 i3 = idx[e + 3];                                         \
                const T w0 = wt[e], w1 = wt[e + 1], w2 = wt[e + 2], w3 = wt[e + 3];       \
                const T m = mask ? mask[t * mask_stride + j] : (T)1;                      \
                const T *xc = x;                                                          \
                T *dst = col + j * row + t;                                               \
                if (i0 >= 0 && i1 >= 0 && i2 >= 0 && i3 >= 0) {                          \
                    for (Py_ssize_t c = 0; c < channels; c++, xc += plane) {              \
                        const T v = 0 + w0 * xc[i0] + w1 * xc[i1] + w2 * xc[i2]           \
                                    + w3 * xc[i3];                                        \
                        dst[c * taps] = mask ? v * m : v;                                 \
                    }                                                                     \
                } else {                                                                  \
                    for (Py_ssize_t c = 0; c < channels; c++, xc += plane) {              \
                        T v = 0;                                                          \
                        if (i0 >= 0) v += w0 * xc[i0];                                    \
                        if (i1 >= 0) v += w1 * xc[i1];                                    \
                        if (i2 >= 0) v += w2 * xc[i2];                                    \
                        if (i3 >= 0) v += w3 * xc[i3];                                    \
                        dst[c * taps] = mask ? v * m : v;                                 \
                    }                                                                     \
                }                                                                         \
            }                                                                             \
    }

/* band[((y - y0)*W + w)*channels + c] = x[c*plane + y*W + w] for rows y0 .. y1 - 1:
 * a band of rows of the run's channels, channels last. */
#define CONVCPU_DEFORM_BAND(NAME, T)                                                      \
    CONVCPU_KERNEL void NAME(const T *restrict x, Py_ssize_t plane, Py_ssize_t channels,  \
                             Py_ssize_t W, Py_ssize_t y0, Py_ssize_t y1, T *restrict band) \
    {                                                                                     \
        for (Py_ssize_t y = y0; y < y1; y++)                                              \
            for (Py_ssize_t c = 0; c < channels; c++) {                                   \
                const T *src = x + c * plane + y * W;                                     \
                T *dst = band + (y - y0) * W * channels + c;                              \
                for (Py_ssize_t w = 0; w < W; w++)                                        \
                    dst[w * channels] = src[w];                                           \
            }                                                                             \
    }

/* From a channels-last band: x_c[i] = band[(i - shift)*channels + c] (shift: the
 * plane index of the band's first pixel).  A vector of channels is sampled per
 * entry (four vector loads and FMAs for as many samples); a pixel's taps are
 * collected in tmp (taps vectors) and written to col transposed. */
#define CONVCPU_DEFORM_VECTOR(NAME, T, V)                                                 \
    CONVCPU_CLONES CONVCPU_KERNEL void NAME(                                              \
        const T *restrict band, Py_ssize_t shift, Py_ssize_t channels, Py_ssize_t npix,   \
        Py_ssize_t taps, const Py_ssize_t *restrict idx, const T *restrict wt,            \
        const T *restrict mask, Py_ssize_t mask_stride, T *restrict col, Py_ssize_t row,  \
        T *restrict tmp)                                                                  \
    {                                                                                     \
        enum { L = sizeof(V) / sizeof(T) };                                               \
        for (Py_ssize_t j = 0; j < npix; j++)                                             \
            for (Py_ssize_t c0 = 0; c0 < channels; c0 += L) {                             \
                const Py_ssize_t nc = channels - c0 < L ? channels - c0 : L;              \
                for (Py_ssize_t t = 0; t < taps; t++) {                                   \
                    const Py_ssize_t e = 4 * (j * taps + t);                              \
                    V v = {0};                                                            \
                    for (int k = 0; k < 4; k++) {                                         \
                        const Py_ssize_t i = idx[e + k];                                  \
                        if (i < 0)                                                        \
                            continue;                                                     \
                        const T *src = band + (i - shift) * channels + c0;                \
                        V xv = {0};                                                       \
                        if (nc == L)                                                      \
                            memcpy(&xv, src, sizeof(V));                                  \
                        else                                                              \
                            memcpy(&xv, src, nc * sizeof(T));                             \
                        v += wt[e + k] * xv;                                              \
                    }                                                                     \
                    if (mask)                                                             \
                        v *= mask[t * mask_stride + j];                                   \
                    memcpy(tmp + t * L, &v, sizeof(V));                                   \
                }                                                                         \
                T *dst = col + j * row + c0 * taps;                                       \
                if (nc == L) /* a constant inner count: GCC unrolls it */                 \
                    for (Py_ssize_t t = 0; t < taps; t++)                                 \
                        for (int c = 0; c < L; c++)                                       \
                            dst[c * taps + t] = tmp[t * L + c];                           \
                else                                                                      \
                    for (Py_ssize_t c = 0; c < nc; c++)                                   \
                        for (Py_ssize_t t = 0; t < taps; t++)                             \
                            dst[c * taps + t] = tmp[t * L + c];                           \
            }                                                                             \
    }

CONVCPU_DEFORM_PLANES(convcpu_deform_planes_f32, float)
CONVCPU_DEFORM_PLANES(convcpu_deform_planes_f64, double)
CONVCPU_DEFORM_TABLE(convcpu_deform_table_f32, float)
CONVCPU_DEFORM_TABLE(convcpu_deform_table_f64, double)
CONVCPU_DEFORM_BAND(convcpu_deform_band_f32, float)
CONVCPU_DEFORM_BAND(convcpu_deform_band_f64, double)

/* dst[i*taps + b] += src[b*src_stride + i] for i < n, b < taps: one output row of
 * a transposed convolution's col2im, `taps` consecutive kernel columns at a
 * time.  With a column stride equal to the number of taps these columns tile
 * the row, so the adds run contiguous (and vectorised, two taps interleaved
 * by the compiler's unpack) instead of one strided read-modify-write pass per
 * tap.  Each element receives its adds in the order b = 0, 1, ..., as the
 * per-tap loop gives them.  first != NULL: these are the only adds these
 * elements get (a kernel that tiles the output), so dst = *first + src is
 * stored, without reading dst (*first: the bias the output was to start at). */
#define CONVCPU_COL2IM_ROW(NAME, T)                                                       \
    CONVCPU_CLONES CONVCPU_KERNEL void NAME(T *restrict dst, const T *restrict src,        \
                                            Py_ssize_t src_stride, Py_ssize_t taps,        \
                                            Py_ssize_t n, const T *first)                  \
    {                                                                                     \
        if (taps == 2) {                                                                  \
            const T *restrict s0 = src, *restrict s1 = src + src_stride;                  \
            if (first) {                                                                  \
                const T f = *first;                                                       \
                for (Py_ssize_t i = 0; i < n; i++) {                                      \
                    dst[2 * i] = f + s0[i];                                               \
                    dst[2 * i + 1] = f + s1[i];                                           \
                }                                                                         \
                return;                                                                   \
            }                                                                             \
            for (Py_ssize_t i = 0; i < n; i++) {                                          \
                dst[2 * i] += s0[i];                                                      \
                dst[2 * i + 1] += s1[i];                                                  \
            }                                                                             \
            return;                                                                       \
        }                                                                                 \
        if (first) {                                                                      \
            const T f = *first;                                                           \
            for (Py_ssize_t i = 0; i < n; i++)                                            \
                for (Py_ssize_t b = 0; b < taps; b++)                                     \
                    dst[i * taps + b] = f + src[b * src_stride + i];                      \
            return;                                                                       \
        }                                                                                 \
        for (Py_ssize_t i = 0; i < n; i++)                                                \
            for (Py_ssize_t b = 0; b < taps; b++)                                         \
                dst[i * taps + b] += src[b * src_stride + i];                             \
    }

/* Rows [o_lo, o_hi) of kn output planes (NCHW: rows Wo apart, planes
 * out_plane apart) of a transposed convolution, gathered from their column
 * tile: out[k, oy, ox] = first[k] (0 without first) + the values of every
 * tap (r, s) that reaches (oy, ox), r then s ascending.  Tap (r, s) of input
 * pixel (ih, iw) of plane k is cols[((k*R + r)*S + s)*npix + ih*W + iw] and
 * reaches (ih*sh - pt + r*dh, iw*sw - pl + s*dw); only input rows
 * [ih_lo, ih_hi) are in the tile (the caller passes rows whose taps all lie
 * there).  This is the order in which the per-tap adds of the scatter reach
 * an output (same bits), but each output is written once instead of read
 * and written once per tap.  Output columns ox = b + sw*j of phase b get
 * their taps as whole runs over j (contiguous in cols), the phases are then
 * interleaved into the row.  The runs go by vectors V of L values (masked
 * blends at their ends; the bits of each add are the scalar add's), so a
 * vector may read up to L - 1 values beyond a run: cols needs L readable
 * values before and after the tile.  tmp: sw * ceil(Wo / sw) + L values;
 * idx: 2*S + 2*R indices.  M: the integer vector of V's size and lanes. */
#define CONVCPU_COL2IM_GATHER(NAME, T, V, M)                                              \
    CONVCPU_CLONES CONVCPU_KERNEL void NAME(                                              \
        T *restrict out, Py_ssize_t out_plane, Py_ssize_t kn, Py_ssize_t Wo,              \
        Py_ssize_t o_lo, Py_ssize_t o_hi, const T *restrict cols, Py_ssize_t npix,        \
        Py_ssize_t ih_lo, Py_ssize_t ih_hi, Py_ssize_t W, Py_ssize_t R, Py_ssize_t S,     \
        Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t pt,        \
        Py_ssize_t pl, const T *first, T *restrict tmp, Py_ssize_t *restrict idx)         \
    {                                                                                     \
        const Py_ssize_t nj = (Wo + sw - 1) / sw;                                         \
        enum { L = sizeof(V) / sizeof(T) };                                               \
        M lane;                                                                           \
        for (int i = 0; i < L; i++)                                                       \
            lane[i] = i;                                                                  \
        /* column tap s: phase s_b[s], and ox = s_b[s] + sw*j comes from                  \
         * iw = s_off[s] + j */                                                           \
        Py_ssize_t *restrict s_b = idx, *restrict s_off = idx + S;                        \
        Py_ssize_t *restrict r_tap = idx + 2 * S, *restrict r_ih = idx + 2 * S + R;       \
        for (Py_ssize_t s = 0; s < S; s++) {                                              \
            const Py_ssize_t xs = pl - s * dw;                                            \
            s_b[s] = ((-xs) % sw + sw) % sw;                                              \
            s_off[s] = (s_b[s] + xs) / sw; /* exact */                                    \
        }                                                                                 \
        for (Py_ssize_t oy = o_lo; oy < o_hi; oy++) {                                     \
            Py_ssize_t nr = 0;                                                            \
            for (Py_ssize_t r = 0; r < R; r++) {                                          \
                const Py_ssize_t yr = oy + pt - r * dh;                                   \
                if (yr >= 0 && yr % sh == 0 && yr / sh >= ih_lo && yr / sh < ih_hi) {     \
                    r_tap[nr] = r;                                                        \
                    r_ih[nr++] = yr / sh;                                                 \
                }                                                                         \
            }                                                                             \
            for (Py_ssize_t k = 0; k < kn; k++) {                                         \
                T *restrict orow = out + k * out_plane + oy * Wo;                         \
                const T f = first ? first[k] : (T)0;                                      \
                for (Py_ssize_t j = 0; j < sw * nj; j++)                                  \
                    tmp[j] = f;                                                           \
                for (Py_ssize_t q = 0; q < nr; q++) {                                     \
                    const T *row = cols + ((k * R + r_tap[q]) * S) * npix + r_ih[q] * W;  \
                    for (Py_ssize_t s = 0; s < S; s++) {                                  \
                        const Py_ssize_t b = s_b[s], off = s_off[s];                      \
                        const Py_ssize_t nb = (Wo - b + sw - 1) / sw;                     \
                        const Py_ssize_t jlo = off < 0 ? -off : 0;                        \
                        const Py_ssize_t jhi = W - off < nb ? W - off : nb;               \
                        T *restrict t = tmp + b * nj;                                     \
                        const T *restrict src = row + s * npix + off;                     \
                        for (Py_ssize_t jb = jlo / L * L; jb < jhi; jb += L) {            \
                            V tv, sv;                                                     \
                            memcpy(&tv, t + jb, sizeof(V));                               \
                            memcpy(&sv, src + jb, sizeof(V));                             \
                            if (jb >= jlo && jb + L <= jhi) {                             \
                                tv += sv;                                                 \
                            } else { /* lanes [a, e) of the block are in the run */       \
                                const M a = lane * 0 + (__typeof__(lane[0]))(             \
                                    jlo - jb > 0 ? jlo - jb : 0);                          \
                                const M e = lane * 0 + (__typeof__(lane[0]))(             \
                                    jhi - jb < L ? jhi - jb : L);                          \
                                const M in = (lane >= a) & (lane < e);                    \
                                tv = (V)(((M)tv & ~in) | ((M)(tv + sv) & in));            \
                            }                                                             \
                            memcpy(t + jb, &tv, sizeof(V));                               \
                        }                                                                 \
                    }                                                                     \
                }                                                                         \
                if (sw == 2) {                                                            \
                    const T *restrict t0 = tmp, *restrict t1 = tmp + nj;                  \
                    for (Py_ssize_t j = 0; j < Wo / 2; j++) {                             \
                        orow[2 * j] = t0[j];                                              \
                        orow[2 * j + 1] = t1[j];                                          \
                    }                                                                     \
                    if (Wo % 2)                                                           \
                        orow[Wo - 1] = t0[Wo / 2];                                        \
                } else {                                                                  \
                    for (Py_ssize_t b = 0; b < sw && b < Wo; b++)                         \
                        for (Py_ssize_t j = 0; b + sw * j < Wo; j++)                      \
                            orow[b + sw * j] = tmp[b * nj + j];                           \
                }                                                                         \
            }                                                                             \
        }                                                                                 \
    }

/* dst[i] = src[i * stride] for i < n: im2col's row of a strided convolution.
 * Stride 2 (the usual one) gets its own loop with a constant stride, which
 * the compiler vectorises (two loads and a permute per vector). */
#define CONVCPU_STRIDED_COPY(NAME, T)                                                     \
    CONVCPU_CLONES CONVCPU_KERNEL void NAME(T *restrict dst, const T *restrict src,        \
                                            Py_ssize_t n, Py_ssize_t stride)               \
    {                                                                                     \
        if (stride == 2) {                                                                \
            for (Py_ssize_t i = 0; i < n; i++) dst[i] = src[2 * i];                       \
            return;                                                                       \
        }                                                                                 \
        for (Py_ssize_t i = 0; i < n; i++) dst[i] = src[i * stride];                      \
    }

CONVCPU_STRIDED_COPY(convcpu_strided_copy_f32, float)
CONVCPU_STRIDED_COPY(convcpu_strided_copy_f64, double)
CONVCPU_COL2IM_ROW(convcpu_col2im_row_f32, float)
CONVCPU_COL2IM_ROW(convcpu_col2im_row_f64, double)

#if defined(__GNUC__)
typedef float convcpu_vf __attribute__((vector_size(CONVCPU_VBYTES)));
typedef double convcpu_vd __attribute__((vector_size(CONVCPU_VBYTES)));
typedef float convcpu_vf32 __attribute__((vector_size(32)));
typedef double convcpu_vd32 __attribute__((vector_size(32)));
typedef float convcpu_vf16 __attribute__((vector_size(16)));
typedef double convcpu_vd16 __attribute__((vector_size(16)));
typedef int convcpu_vi32 __attribute__((vector_size(32)));
typedef int convcpu_vi __attribute__((vector_size(CONVCPU_VBYTES)));
typedef long long convcpu_vl __attribute__((vector_size(CONVCPU_VBYTES)));
typedef long long convcpu_vl32 __attribute__((vector_size(32)));
CONVCPU_COL2IM_GATHER(convcpu_col2im_gather_f32, float, convcpu_vf32, convcpu_vi32)
CONVCPU_COL2IM_GATHER(convcpu_col2im_gather_f64, double, convcpu_vd32, convcpu_vl32)
CONVCPU_GATHER(convcpu_gather_f32, float)
CONVCPU_GATHER(convcpu_gather_f64, double)
CONVCPU_DIRECT_ROW(convcpu_direct_row_f32, float, convcpu_vf)
CONVCPU_DIRECT_ROW(convcpu_direct_row_f64, double, convcpu_vd)
CONVCPU_DIRECT_ROW(convcpu_direct_row_w32_f32, float, convcpu_vf32)
CONVCPU_DIRECT_ROW(convcpu_direct_row_w32_f64, double, convcpu_vd32)
CONVCPU_DW_ROW(convcpu_dw_row_f32, float, convcpu_vf)
CONVCPU_DW_ROW(convcpu_dw_row_f64, double, convcpu_vd)
CONVCPU_DW_FIXED_SIZES(convcpu_dw_fixed_f32, float, convcpu_vf, convcpu_vf32, convcpu_vf16)
CONVCPU_DW_FIXED_SIZES(convcpu_dw_fixed_f64, double, convcpu_vd, convcpu_vd32, convcpu_vd16)
#define CONVCPU_IOTA16 ((convcpu_vi){0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15})
#define CONVCPU_IOTA8 ((convcpu_vl){0, 1, 2, 3, 4, 5, 6, 7})
CONVCPU_DWC_GEOM(convcpu_dwc_geom_f32, float, convcpu_vf, convcpu_vi)
CONVCPU_DWC_GEOM(convcpu_dwc_geom_f64, double, convcpu_vd, convcpu_vl)
CONVCPU_DWC_SIZES(convcpu_dwc_f32, float, convcpu_vf, convcpu_vi, CONVCPU_IOTA16)
CONVCPU_DWC_SIZES(convcpu_dwc_f64, double, convcpu_vd, convcpu_vl, CONVCPU_IOTA8)
CONVCPU_GROUPED_ROW(convcpu_grouped_row_f32, float, convcpu_vf32, convcpu_vf, convcpu_vi)
CONVCPU_GROUPED_ROW(convcpu_grouped_row_f64, double, convcpu_vd32, convcpu_vd, convcpu_vl)
CONVCPU_DEFORM_VECTOR(convcpu_deform_vector_f32, float, convcpu_vf)
CONVCPU_DEFORM_VECTOR(convcpu_deform_vector_f64, double, convcpu_vd)
#else
#error "convcpu's direct kernels need GCC or Clang vector extensions"
#endif

#endif
