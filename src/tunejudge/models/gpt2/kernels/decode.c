/* The decoding step on a CPU: its matrix products and its attention over the KV cache.
 *
 * skinny_linear: y = x @ W^T + b for a handful of rows of x.
 * Decoding multiplies every weight matrix by a few token vectors, so the time goes into reading the
 * weights from memory. BLAS libraries tune for large products and read a 768 x 2304 matrix at about
 * a third of the memory's speed when x has 8 rows. This kernel reads W once, in its stored layout
 * (rows of K floats), R rows at a time, each against every row of x held in L1; it prefetches
 * 16 KB ahead into L2 so the memory keeps streaming while the FMAs run, and splits W's rows across
 * OpenMP threads. Portable C with GCC/Clang vector extensions: -march=native picks AVX-512, AVX2 or
 * NEON. Compiled on first use by tunejudge.kernels; results equal torch's up to float rounding.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

typedef float v16 __attribute__((vector_size(64), aligned(4), may_alias));
typedef float v8 __attribute__((vector_size(32)));
typedef float v4 __attribute__((vector_size(16)));

#define PREFETCH_FLOATS 4096 /* 16 KB ahead of the row being read */

static inline float hsum(v16 v) {
    v8 a = __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7) +
           __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
    v4 c = __builtin_shufflevector(a, a, 0, 1, 2, 3) + __builtin_shufflevector(a, a, 4, 5, 6, 7);
    c = c + __builtin_shufflevector(c, c, 2, 3, 0, 1);
    return c[0] + c[1];
}

static inline float dot_tail(const float* w, const float* x, int64_t k, int64_t K) {
    float s = 0.f;
    for (; k < K; k++) s += w[k] * x[k];
    return s;
}

/* Rows [n0, n1) of y for B rows of x, R rows of W at a time (B x R accumulators in registers). */
#define ROWS_KERNEL(B, R)                                                                        \
    static void rows_##B(const float* x, int64_t K, const float* W, const float* bias, float* y, \
                         int64_t N, int64_t n0, int64_t n1) {                                    \
        int64_t n = n0;                                                                          \
        for (; n + R <= n1; n += R) {                                                            \
            v16 acc[R][B];                                                                       \
            for (int r = 0; r < R; r++)                                                          \
                for (int b = 0; b < B; b++) acc[r][b] = (v16){0};                                \
            int64_t k = 0;                                                                       \
            for (; k + 16 <= K; k += 16) {                                                       \
                v16 w[R];                                                                        \
                for (int r = 0; r < R; r++) {                                                    \
                    w[r] = *(const v16*)(W + (n + r) * K + k);                                   \
                    __builtin_prefetch(W + (n + r) * K + k + PREFETCH_FLOATS, 0, 2);             \
                }                                                                                \
                for (int b = 0; b < B; b++) {                                                    \
                    v16 xv = *(const v16*)(x + b * K + k);                                       \
                    for (int r = 0; r < R; r++) acc[r][b] += w[r] * xv;                          \
                }                                                                                \
            }                                                                                    \
            for (int r = 0; r < R; r++)                                                          \
                for (int b = 0; b < B; b++)                                                      \
                    y[b * N + n + r] = hsum(acc[r][b]) + dot_tail(W + (n + r) * K, x + b * K, k, K) \
                                       + (bias ? bias[n + r] : 0.f);                             \
        }                                                                                        \
        for (; n < n1; n++)                                                                      \
            for (int b = 0; b < B; b++)                                                          \
                y[b * N + n] = dot_tail(W + n * K, x + b * K, 0, K) + (bias ? bias[n] : 0.f);    \
    }

/* R chosen so that B x R accumulators plus R weight vectors fit in 32 vector registers */
ROWS_KERNEL(1, 8)
ROWS_KERNEL(2, 6)
ROWS_KERNEL(3, 4)
ROWS_KERNEL(4, 4)
ROWS_KERNEL(5, 3)
ROWS_KERNEL(6, 3)
ROWS_KERNEL(7, 3)
ROWS_KERNEL(8, 2)

typedef void (*rows_fn)(const float*, int64_t, const float*, const float*, float*, int64_t, int64_t, int64_t);
static const rows_fn ROWS[9] = {0, rows_1, rows_2, rows_3, rows_4, rows_5, rows_6, rows_7, rows_8};

int skinny_max_rows(void) { return 8; }

/* x: (B, K), W: (N, K), bias: (N) or NULL, y: (B, N); all contiguous float32. 0 on success. */
int skinny_linear(const float* x, int64_t B, int64_t K, const float* W, const float* bias, float* y,
                  int64_t N, int threads) {
    if (B < 1 || B > 8 || K < 1 || N < 1) return -1;
    const rows_fn f = ROWS[B];
    const int64_t chunk = 64, chunks = (N + chunk - 1) / chunk;
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads > 0 ? threads : 1) schedule(static)
#endif
    for (int64_t c = 0; c < chunks; c++) {
        const int64_t n0 = c * chunk, n1 = n0 + chunk < N ? n0 + chunk : N;
        f(x, K, W, bias, y, N, n0, n1);
    }
    (void)threads;
    return 0;
}

/* decode_attention: one new token per sequence attending over its own cached positions.
 *
 * out[b, h] = softmax(scale * q[b, h] . K[b, h, j]) . V[b, h, j] over j in [starts[b], end): a
 * left-padded row reads only its own tokens (the padding before them is never read, where a masked
 * attention reads and discards it). q, out: (B, H, D); k, v: one layer of the cache,
 * (B, H, max_len, D); all contiguous float32. 0 on success.
 */
static inline float dot(const float* a, const float* b, int64_t D) {
    int64_t d = 0;
    float s = 0.f;
    if (D % 16 == 0) {
        v16 acc = (v16){0};
        for (; d < D; d += 16) acc += *(const v16*)(a + d) * *(const v16*)(b + d);
        s = hsum(acc);
    }
    for (; d < D; d++) s += a[d] * b[d];
    return s;
}

/* One (row, head): scores over its n keys, softmax, weighted sum of its n values. s: n floats. */
static void attend_one(const float* restrict q, const float* restrict k, const float* restrict v,
                       float* restrict o, int64_t n, int64_t D, float scale, float* restrict s) {
    float m = -INFINITY;
    for (int64_t j = 0; j < n; j++) {
        __builtin_prefetch(k + (j + 8) * D, 0, 1);
        s[j] = dot(q, k + j * D, D) * scale;
        m = s[j] > m ? s[j] : m;
    }
    float total = 0.f;
    for (int64_t j = 0; j < n; j++) total += (s[j] = expf(s[j] - m));
    const float inv = 1.f / total;
    if (D == 64) { /* GPT-2's head size: the output row stays in four vector registers */
        v16 a0 = (v16){0}, a1 = (v16){0}, a2 = (v16){0}, a3 = (v16){0};
        for (int64_t j = 0; j < n; j++) {
            __builtin_prefetch(v + (j + 8) * D, 0, 1);
            const float p = s[j] * inv;
            const float* vj = v + j * D;
            a0 += p * *(const v16*)(vj);
            a1 += p * *(const v16*)(vj + 16);
            a2 += p * *(const v16*)(vj + 32);
            a3 += p * *(const v16*)(vj + 48);
        }
        *(v16*)(o) = a0;
        *(v16*)(o + 16) = a1;
        *(v16*)(o + 32) = a2;
        *(v16*)(o + 48) = a3;
        return;
    }
    for (int64_t d = 0; d < D; d++) o[d] = 0.f;
    for (int64_t j = 0; j < n; j++) {
        __builtin_prefetch(v + (j + 8) * D, 0, 1);
        const float p = s[j] * inv;
        const float* vj = v + j * D;
        for (int64_t d = 0; d < D; d++) o[d] += p * vj[d];
    }
}

int decode_attention(const float* q, const float* k, const float* v, float* out, int64_t B, int64_t H,
                     int64_t D, int64_t max_len, const int64_t* starts, int64_t end, float scale,
                     int threads) {
    if (end < 1 || end > max_len) return -1;
    for (int64_t b = 0; b < B; b++)
        if (starts[b] < 0 || starts[b] >= end) return -2;
    int failed = 0;
    /* (row, head) pairs dealt out one at a time: rows differ in length, and a contiguous split
       would give one thread all the long ones */
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads > 0 ? threads : 1) schedule(static, 1) reduction(| : failed)
#endif
    for (int64_t bh = 0; bh < B * H; bh++) {
        const int64_t b = bh / H, start = starts[b], n = end - start;
        float stack[2048];
        float* s = n <= 2048 ? stack : malloc(sizeof(float) * (size_t)n);
        if (!s) {
            failed |= 1;
            continue;
        }
        attend_one(q + bh * D, k + (bh * max_len + start) * D, v + (bh * max_len + start) * D, out + bh * D, n, D,
                   scale, s);
        if (s != stack) free(s);
    }
    (void)threads;
    return failed ? -3 : 0;
}
