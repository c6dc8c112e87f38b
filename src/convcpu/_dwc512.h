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
 * rows at a time (then one) by ROWS (dw5_rows, or dw8_rows with VEC and MASK
 * of 8 lanes), as CONVCPU_DWC, the next rows prefetched. */
#define DW5_KERNEL(NAME, TARGET, VEC, MASK, ROWS, K, SW)                                  \
    TARGET static void NAME(const float *plane, Py_ssize_t W, const Py_ssize_t *hrow,      \
                            Py_ssize_t nrows, Py_ssize_t pl, Py_ssize_t Wo, const VEC *wv, \
                            VEC bv, float *out, const float *zrow, const MASK *mk)         \
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
                ROWS(rows, mk, pl, wv, bv, out + i * Wo, Wo, 4, K, SW);                   \
            else                                                                          \
                ROWS(rows, mk, pl, wv, bv, out + i * Wo, Wo, 1, K, SW);                   \
            i += nr;                                                                      \
        }                                                                                 \
    }
DW5_KERNEL(dw5_3x3_s1, DW5_TARGET, __m512, __mmask16, dw5_rows, 3, 1)
DW5_KERNEL(dw5_3x3_s2, DW5_TARGET, __m512, __mmask16, dw5_rows, 3, 2)
DW5_KERNEL(dw5_5x5_s1, DW5_TARGET, __m512, __mmask16, dw5_rows, 5, 1)
DW5_KERNEL(dw5_5x5_s2, DW5_TARGET, __m512, __mmask16, dw5_rows, 5, 2)

/* Rows of at most 8 output columns (7x7 maps, 14x14 at stride 2, ...) in
 * 8-lane vectors: a 16-lane vector left 9 of its lanes idle at 7 columns,
 * and on AMD Zen 4 a 512-bit FMA takes both 256-bit FMA pipes, so 8 lanes
 * do the same useful work in half the pipe time (C harness, one thread,
 * 8-lane / 16-lane time: 960ch @7 3x3 0.79-0.80, 5x5 0.81-0.82, 576ch @14
 * stride 2 0.79-0.80, 64ch @8 0.72-0.74, @4 0.85; 3x3 at 14-112 columns 8 lanes
 * were 1.04-1.45x slower).  dw5_block's loads, shifts and sums on one
 * vector of NR rows: the same sums in the same order, the same bits. */
#define DW8_TARGET __attribute__((target("avx512f,avx512vl,fma")))

static inline __attribute__((always_inline)) DW8_TARGET void
dw8_block(const float *const *rows, const __mmask8 *m, Py_ssize_t pl, const __m256 *wv, __m256 bv,
          float *o, Py_ssize_t Wo, int NR, int K, int SW, __mmask8 last)
{
    const __m256i even = _mm256_set_epi32(14, 12, 10, 8, 6, 4, 2, 0);
    const __m256i odd = _mm256_set_epi32(15, 13, 11, 9, 7, 5, 3, 1);
    __m256 acc[4], wl[25];
    /* the weights in registers (K = 3): else GCC reads each from memory in
     * its FMA, one load an FMA */
    _Pragma("GCC unroll 25") for (int t = 0; t < K * K; t++) {
        wl[t] = wv[t];
        if (K == 3) __asm__("" : "+v"(wl[t]));
    }
    _Pragma("GCC unroll 4") for (int p = 0; p < NR; p++) acc[p] = bv;
    _Pragma("GCC unroll 16") for (int k = 0; k < (NR - 1) * SW + K; k++) {
        const float *q = rows[k] - pl;
        __m256 y[2][2];
        _Pragma("GCC unroll 2") for (int jb = 0; jb <= 1; jb++) {
            if (SW == 1) {
                y[0][jb] = _mm256_maskz_loadu_ps(m[jb], q + jb * 8);
            } else {
                const __m256 a = _mm256_maskz_loadu_ps(m[2 * jb], q + jb * 16);
                const __m256 b = _mm256_maskz_loadu_ps(m[2 * jb + 1], q + jb * 16 + 8);
                y[0][jb] = _mm256_permutex2var_ps(a, even, b);
                if (jb < 1 || K > 3) y[1][jb] = _mm256_permutex2var_ps(a, odd, b);
            }
        }
        _Pragma("GCC unroll 5") for (int s = 0; s < K; s++) {
            const int ph = s % SW, off = s / SW;
            const __m256i hi = _mm256_castps_si256(y[ph][1]), lo = _mm256_castps_si256(y[ph][0]);
            const __m256 xv = off == 0 ? y[ph][0]
                              : _mm256_castsi256_ps(off == 1   ? _mm256_alignr_epi32(hi, lo, 1)
                                                    : off == 2 ? _mm256_alignr_epi32(hi, lo, 2)
                                                    : off == 3 ? _mm256_alignr_epi32(hi, lo, 3)
                                                               : _mm256_alignr_epi32(hi, lo, 4));
            _Pragma("GCC unroll 4") for (int p = 0; p < NR; p++) {
                const int r = k - p * SW;
                if (r >= 0 && r < K) acc[p] = _mm256_fmadd_ps(xv, wl[r * K + s], acc[p]);
            }
        }
    }
    _Pragma("GCC unroll 4") for (int p = 0; p < NR; p++)
        _mm256_mask_storeu_ps(o + p * Wo, last, acc[p]);
}

/* A row of at most 8 columns (Wo) of NR output rows. */
static inline __attribute__((always_inline)) DW8_TARGET void
dw8_rows(const float *const *rows, const __mmask8 *mk, Py_ssize_t pl, const __m256 *wv,
         __m256 bv, float *o, Py_ssize_t Wo, int NR, int K, int SW)
{
    dw8_block(rows, mk, pl, wv, bv, o, Wo, NR, K, SW, (__mmask8)((1u << Wo) - 1));
}

DW5_KERNEL(dw8_3x3_s1, DW8_TARGET, __m256, __mmask8, dw8_rows, 3, 1)
DW5_KERNEL(dw8_3x3_s2, DW8_TARGET, __m256, __mmask8, dw8_rows, 3, 2)
DW5_KERNEL(dw8_5x5_s1, DW8_TARGET, __m256, __mmask8, dw8_rows, 5, 1)
DW5_KERNEL(dw8_5x5_s2, DW8_TARGET, __m256, __mmask8, dw8_rows, 5, 2)

/* Whether rows of at most 8 output columns run on the 8-lane kernels: 1 yes,
 * 0 no, -1 not decided yet (yes on AMD Zen 4 with AVX-512VL; elsewhere a
 * 512-bit FMA is no dearer than a 256-bit one, so the 16-lane kernels'
 * idle lanes cost less, and it was not measured there). */
static int dw8_narrow = -1;
#endif /* CONVCPU_OWN_GEMM */

/* The channels-first depthwise kernel's lanes for rows of at most 8 output
 * columns: 8 or 16. */
CONVCPU_GEMM_API int convcpu_dwc512_narrow_get(void)
{
#if CONVCPU_OWN_GEMM
    if (dw8_narrow < 0)
        dw8_narrow = convcpu_dwc512_supported() && __builtin_cpu_supports("avx512vl") && cg_zen4();
    return dw8_narrow ? 8 : 16;
#else
    return 16;
#endif
}

/* Ask for 8 lanes (1, where AVX-512VL runs) or 16 (0); returns the lanes now in use. */
CONVCPU_GEMM_API int convcpu_dwc512_narrow_set(int on)
{
#if CONVCPU_OWN_GEMM
    dw8_narrow = on && convcpu_dwc512_supported() && __builtin_cpu_supports("avx512vl");
#else
    (void)on;
#endif
    return convcpu_dwc512_narrow_get();
}

#if CONVCPU_OWN_GEMM

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
#define DW5_RUN(P, WV, BV, MK)                                                          \
    if (k == 3 && sw == 1) P##_3x3_s1(plane, W, hrow, nrows, pl, Wo, WV, BV, out, zrow, MK); \
    else if (k == 3) P##_3x3_s2(plane, W, hrow, nrows, pl, Wo, WV, BV, out, zrow, MK);       \
    else if (sw == 1) P##_5x5_s1(plane, W, hrow, nrows, pl, Wo, WV, BV, out, zrow, MK);      \
    else P##_5x5_s2(plane, W, hrow, nrows, pl, Wo, WV, BV, out, zrow, MK)
    if (Wo <= 8 && convcpu_dwc512_narrow_get() == 8) {
        /* the 8-lane masks: 2 * sw bytes, within the 16-lane ones' 4 * sw */
        __mmask8 *mk8 = (__mmask8 *)mk;
        for (Py_ssize_t t = 0; t < 2 * sw; t++) mk8[t] = (__mmask8)dw5_lanes(t * 8 - pl, W);
        __m256 wv8[25];
        for (int t = 0; t < k * k; t++) wv8[t] = _mm256_set1_ps(w[t]);
        DW5_RUN(dw8, wv8, _mm256_set1_ps(bias != NULL ? *bias : 0.0f), mk8);
        return;
    }
    for (Py_ssize_t t = 0; t < ((Wo + 15) / 16 + 1) * sw; t++) mk[t] = dw5_lanes(t * 16 - pl, W);
    __m512 wv[25];
    for (int t = 0; t < k * k; t++) wv[t] = _mm512_set1_ps(w[t]);
    DW5_RUN(dw5, wv, _mm512_set1_ps(bias != NULL ? *bias : 0.0f), mk);
#undef DW5_RUN
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
