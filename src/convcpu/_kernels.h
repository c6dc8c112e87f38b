/* Small direct kernels in C, compiled for several instruction sets at once
 * (GCC target_clones: the clone for the running CPU is picked at load time),
 * so that a portable build still uses AVX-512 / AVX2 vectors. */
#ifndef CONVCPU_KERNELS_H
#define CONVCPU_KERNELS_H
#include <Python.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define CONVCPU_CLONES __attribute__((target_clones("avx512f", "arch=haswell", "default")))
#else
#define CONVCPU_CLONES
#endif

/* Each extension module includes the kernels it needs; the others stay unused. */
#if defined(__GNUC__)
#define CONVCPU_KERNEL static __attribute__((unused))
#else
#define CONVCPU_KERNEL static
#endif

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

#endif
