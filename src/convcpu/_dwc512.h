/* Channels-first depthwise convolution, float32, on AVX-512: a 3x3 or 5x5
 * kernel at strides 1x1 and 2x2, dilation 1, columns padded with zeros.
 *
 * Why: CONVCPU_DWC (_kernels.h, portable vectors) first copies each input
 * row into an aligned, zero-padded row (its edges permuted and masked), then
 * sums its taps from shuffles of aligned loads of that copy.  Here the loads
 * come straight from the plane, with the image's edges masked out of them
 * (AVX-512 masked loads read no memory in masked lanes), so the copy goes:
 * 144ch @56 stride 1, one thread: 0.094 -> 0.069 ms; 96ch @112 stride 2:
 * 0.160 -> 0.103 ms (docs/BENCHMARKS.md, issue 3).
 *
 * The sums are CONVCPU_DWC's: each output starts at the bias and adds its
 * taps in (r, s) order, a padding cell a zero whose product is added, one
 * fused multiply-add each: the same bits.  Rows of padding (any padding
 * mode maps rows through hrow; -1 is a row of zeros) read a row of zeros in
 * the workspace. */
#ifndef CONVCPU_DWC512_H
#define CONVCPU_DWC512_H
#include "_gemm.h"

/* 1 when this build and CPU run convcpu_dwc512. */
CONVCPU_GEMM_API int convcpu_dwc512_supported(void)
{
    return convcpu_gemm_supported();
}

/* The workspace of convcpu_dwc512, in bytes: a row of W zeros and a lane
 * mask per 16 columns of the padded rows it reads, 64-byte aligned. */
CONVCPU_GEMM_API Py_ssize_t convcpu_dwc512_ws_bytes(Py_ssize_t W, Py_ssize_t Wo, Py_ssize_t sw)
{
    return (W * 4 + 63) / 64 * 64 + ((Wo + 15) / 16 + 1) * sw * 2 + 64;
}

#if CONVCPU_OWN_GEMM

#define DW5_TARGET __attribute__((target("avx512f,fma")))
#define DW5_INLINE static inline __attribute__((always_inline)) DW5_TARGET

/* The lanes l of a vector at column c0 with 0 <= c0 + l < W. */
DW5_INLINE __mmask16 dw5_lanes(Py_ssize_t c0, Py_ssize_t W)
{
    const Py_ssize_t lo = c0 < 0 ? -c0 : 0, hi = W - c0 > 16 ? 16 : W - c0;
    if (hi <= lo) return 0;
    return (__mmask16)(((1u << hi) - 1) & ~((1u << lo) - 1));
}

/* Lanes n .. n+15 of lo followed by hi (n < 16 at compile time). */
DW5_INLINE __m512 dw5_shift(__m512 hi, __m512 lo, int n)
{
#define DW5_ALIGN(k) \
    _mm512_castsi512_ps(_mm512_alignr_epi32(_mm512_castps_si512(hi), _mm512_castps_si512(lo), k))
    return n == 0 ? lo : n == 1 ? DW5_ALIGN(1) : n == 2 ? DW5_ALIGN(2) : n == 3 ? DW5_ALIGN(3)
                                                                                : DW5_ALIGN(4);
#undef DW5_ALIGN
}

/* Output rows 0..NR-1 x vectors v..v+JB-1 (16 columns each) of a block
 * whose input rows are rows[0 .. (NR-1)*SW + K-1]: each input row is loaded
 * once, JB+1 vectors per column phase (stride 2: two loads split into even
 * and odd columns), and the taps' vectors are shifts of those.  mk: the
 * lanes of each 16 columns of the row from column -pl on; last: the lanes
 * stored of the last vector. */
DW5_INLINE void dw5_block(const float *const *rows, const __mmask16 *mk, Py_ssize_t v,
                          Py_ssize_t pl, const __m512 *wv, __m512 bv, float *o, Py_ssize_t Wo,
                          int NR, int JB, int K, int SW, __mmask16 last)
{
    const __m512i even =
        _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i odd =
        _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    __m512 acc[4][4];
    _Pragma("GCC unroll 4") for (int p = 0; p < NR; p++)
        _Pragma("GCC unroll 4") for (int jb = 0; jb < JB; jb++) acc[p][jb] = bv;
    __mmask16 m[10];
    _Pragma("GCC unroll 10") for (int t = 0; t < (JB + 1) * SW; t++) m[t] = mk[v * SW + t];
    _Pragma("GCC unroll 16") for (int k = 0; k < (NR - 1) * SW + K; k++) {
        const float *q = rows[k] + (v * 16 * SW - pl);
        __m512 y[2][5];
        _Pragma("GCC unroll 5") for (int jb = 0; jb <= JB; jb++) {
            if (SW == 1) {
                y[0][jb] = _mm512_maskz_loadu_ps(m[jb], q + jb * 16);
            } else {
                const __m512 a = _mm512_maskz_loadu_ps(m[2 * jb], q + jb * 32);
                const __m512 b = _mm512_maskz_loadu_ps(m[2 * jb + 1], q + jb * 32 + 16);
                y[0][jb] = _mm512_permutex2var_ps(a, even, b);
                if (jb < JB || K > 3) y[1][jb] = _mm512_permutex2var_ps(a, odd, b);
            }
        }
        _Pragma("GCC unroll 5") for (int s = 0; s < K; s++) {
            const int ph = s % SW, off = s / SW;
            __m512 xv[4];
            _Pragma("GCC unroll 4") for (int jb = 0; jb < JB; jb++)
                xv[jb] = dw5_shift(y[ph][jb + 1], y[ph][jb], off);
            _Pragma("GCC unroll 4") for (int p = 0; p < NR; p++) {
                const int r = k - p * SW;
                if (r >= 0 && r < K)
                    _Pragma("GCC unroll 4") for (int jb = 0; jb < JB; jb++)
                        acc[p][jb] = _mm512_fmadd_ps(xv[jb], wv[r * K + s], acc[p][jb]);
            }
        }
    }
    _Pragma("GCC unroll 4") for (int p = 0; p < NR; p++)
        _Pragma("GCC unroll 4") for (int jb = 0; jb < JB; jb++)
            _mm512_mask_storeu_ps(o + p * Wo + jb * 16, jb == JB - 1 ? last : 0xffff,
                                  acc[p][jb]);
}

/* Every vector of NR output rows: JB = 2 at a time, then one; rows of 4
 * vectors (49-64 columns: 56, MobileNet's 56x56 layers) as one block of 4,
 * which reads each input row once (C harness, one thread: 144ch @56 stride 1
 * 0.073 -> 0.067 ms, 96ch @112 stride 2 0.097-0.102 -> 0.083-0.085; with 7
 * vectors (112 columns) a block of 4, 2, 1 was 1.10x slower than 2, 2, 2, 1). */
DW5_INLINE void dw5_rows(const float *const *rows, const __mmask16 *mk, Py_ssize_t pl,
                         const __m512 *wv, __m512 bv, float *o, Py_ssize_t Wo, int NR, int K,
                         int SW)
{
    const Py_ssize_t npos = (Wo + 15) / 16, rem = Wo % 16;
    const __mmask16 last = rem ? (__mmask16)((1u << rem) - 1) : 0xffff;
    if (npos == 4) {
        dw5_block(rows, mk, 0, pl, wv, bv, o, Wo, NR, 4, K, SW, last);
        return;
    }
    Py_ssize_t v = 0;
    for (; v + 2 < npos; v += 2)
        dw5_block(rows, mk, v, pl, wv, bv, o + v * 16, Wo, NR, 2, K, SW, 0xffff);
    if (v + 2 == npos) {
        dw5_block(rows, mk, v, pl, wv, bv, o + v * 16, Wo, NR, 2, K, SW, last);
        return;
    }
    if (v < npos) dw5_block(rows, mk, v, pl, wv, bv, o + v * 16, Wo, NR, 1, K, SW, last);
}

/* Into L1, the n plane rows that follow the last one of rows[0 .. m-1]
 * (hrow values, -1: a row of zeros) in memory: the rows the next group of
 * output rows reads first, and past the plane's last row the next plane's
 * first ones.  The hardware prefetchers miss these (the block order jumps
 * between rows): 96ch @112 stride 2, one thread, 4.8 MB in L3:
 * 0.115 -> 0.099 ms; 144ch @56 stride 1: 0.084 -> 0.075 ms. */
DW5_INLINE void dw5_prefetch(const float *plane, Py_ssize_t W, const Py_ssize_t *rows, int m,
                             int n)
{
    Py_ssize_t last = -1;
    for (int k = m - 1; k >= 0 && last < 0; k--) last = rows[k];
    if (last < 0) return;
    /* addresses as integers: past the tensor's end is no pointer to form */
    const uintptr_t lo = ((uintptr_t)plane + (uintptr_t)((last + 1) * W) * sizeof(float))
                         & ~(uintptr_t)63;
    const uintptr_t hi = lo + (uintptr_t)(n * W) * sizeof(float) + 63;
    for (uintptr_t a = lo; a < hi; a += 64) _mm_prefetch((const char *)a, _MM_HINT_T0);
}

/* The kernel for a K x K kernel at stride SW (both at compile time): 4 output
 * rows at a time (then one), as CONVCPU_DWC, the next rows prefetched. */
#define DW5_KERNEL(NAME, K, SW)                                                           \
    DW5_TARGET static void NAME(const float *plane, Py_ssize_t W, const Py_ssize_t *hrow,  \
                                Py_ssize_t nrows, Py_ssize_t pl, Py_ssize_t Wo,            \
                                const __m512 *wv, __m512 bv, float *out, const float *zrow, \
                                const __mmask16 *mk)                                       \
    {                                                                                     \
        for (Py_ssize_t i = 0; i < nrows;) {                                              \
            const int nr = nrows - i >= 4 ? 4 : 1;                                        \
            const float *rows[3 * SW + K];                                                \
            for (int k = 0; k < (nr - 1) * SW + K; k++) {                                 \
                const Py_ssize_t src = hrow[i * SW + k];                                  \
                rows[k] = src >= 0 ? plane + src * W : zrow;                              \
            }                                                                             \
            dw5_prefetch(plane, W, hrow + i * SW, (nr - 1) * SW + K, 4 * SW);             \
            if (nr == 4)                                                                  \
                dw5_rows(rows, mk, pl, wv, bv, out + i * Wo, Wo, 4, K, SW);               \
            else                                                                          \
                dw5_rows(rows, mk, pl, wv, bv, out + i * Wo, Wo, 1, K, SW);               \
            i += nr;                                                                      \
        }                                                                                 \
    }
DW5_KERNEL(dw5_3x3_s1, 3, 1)
DW5_KERNEL(dw5_3x3_s2, 3, 2)
DW5_KERNEL(dw5_5x5_s1, 5, 1)
DW5_KERNEL(dw5_5x5_s2, 5, 2)

/* out[i*Wo + j] = bias + sum_{r,s} w[r*k + s] * P[hrow[i*sw + r], j*sw + s - pl]
 * for i < nrows, j < Wo: a k x k kernel (3 or 5) at stride sw x sw (1 or 2)
 * on a plane W wide whose columns are padded with zeros (pl of them on the
 * left; P[-1, .] is a row of zeros); ws: convcpu_dwc512_ws_bytes(W, Wo, sw)
 * bytes.  Only where convcpu_dwc512_supported(): the caller's plan checks it
 * once, not every band. */
CONVCPU_GEMM_API DW5_TARGET void convcpu_dwc512(int k, int sw, const float *plane,
                                               Py_ssize_t W, const Py_ssize_t *hrow,
                                               Py_ssize_t nrows, Py_ssize_t pl, Py_ssize_t Wo,
                                               const float *w, const float *bias, float *out,
                                               void *ws)
{
    float *zrow = (float *)(((uintptr_t)ws + 63) & ~(uintptr_t)63);
    __mmask16 *mk = (__mmask16 *)(zrow + (W + 15) / 16 * 16);
    memset(zrow, 0, (size_t)W * sizeof(float));
    for (Py_ssize_t t = 0; t < ((Wo + 15) / 16 + 1) * sw; t++) mk[t] = dw5_lanes(t * 16 - pl, W);
    __m512 wv[25];
    for (int t = 0; t < k * k; t++) wv[t] = _mm512_set1_ps(w[t]);
    const __m512 bv = _mm512_set1_ps(bias != NULL ? *bias : 0.0f);
    if (k == 3 && sw == 1) dw5_3x3_s1(plane, W, hrow, nrows, pl, Wo, wv, bv, out, zrow, mk);
    else if (k == 3) dw5_3x3_s2(plane, W, hrow, nrows, pl, Wo, wv, bv, out, zrow, mk);
    else if (sw == 1) dw5_5x5_s1(plane, W, hrow, nrows, pl, Wo, wv, bv, out, zrow, mk);
    else dw5_5x5_s2(plane, W, hrow, nrows, pl, Wo, wv, bv, out, zrow, mk);
}

#else /* never called: convcpu_dwc512_supported() is 0 */

CONVCPU_GEMM_API void convcpu_dwc512(int k, int sw, const float *plane, Py_ssize_t W,
                                    const Py_ssize_t *hrow, Py_ssize_t nrows, Py_ssize_t pl,
                                    Py_ssize_t Wo, const float *w, const float *bias,
                                    float *out, void *ws)
{
    (void)k, (void)sw, (void)plane, (void)W, (void)hrow, (void)nrows, (void)pl, (void)Wo;
    (void)w, (void)bias, (void)out, (void)ws;
}

#endif /* CONVCPU_OWN_GEMM */
#endif /* CONVCPU_DWC512_H */
