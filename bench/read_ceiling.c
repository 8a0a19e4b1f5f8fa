/* The machine's read ceiling and a llama.cpp-style fp16 GEMV, for bench/read_ceiling.py (built there with gcc).
 *
 * read_sum: every 64-byte line of a buffer loaded once and added (nothing else per byte): what 2 cores can
 * stream from memory. gemv_f16: ggml's F16 dot product (ggml_vec_dot_f16's AVX-512 or AVX2 path): one row at a time,
 * the activations converted to fp16 once, four accumulators of 16; rows split in contiguous halves. */
#include <immintrin.h>
#include <omp.h>
#include <stdint.h>

#ifdef __AVX512F__                      /* 16 floats a vector */
#define VEC __m512
#define ZERO _mm512_setzero_ps
#define ADD _mm512_add_ps
#define FMA _mm512_fmadd_ps
#define LOAD(p) _mm512_loadu_ps((const float *)(p))
#define HALF(p) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p)))
#define SUM _mm512_reduce_add_ps
#define W 16
#else                                   /* AVX2 + F16C: 8 */
#define VEC __m256
#define ZERO _mm256_setzero_ps
#define ADD _mm256_add_ps
#define FMA _mm256_fmadd_ps
#define LOAD(p) _mm256_loadu_ps((const float *)(p))
#define HALF(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p)))
static inline float SUM(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}
#define W 8
#endif

float read_sum(long bytes, const char *p, int threads) {
    float total = 0;
    #pragma omp parallel num_threads(threads) reduction(+:total)
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        long b0 = bytes / 256 * t / nt * 256, b1 = bytes / 256 * (t + 1) / nt * 256;
        VEC a0 = ZERO(), a1 = a0, a2 = a0, a3 = a0;
        for (long b = b0; b < b1; b += 4 * 4 * W) {
            a0 = ADD(a0, LOAD(p + b));
            a1 = ADD(a1, LOAD(p + b + 4 * W));
            a2 = ADD(a2, LOAD(p + b + 8 * W));
            a3 = ADD(a3, LOAD(p + b + 12 * W));
        }
        total += SUM(ADD(ADD(a0, a1), ADD(a2, a3)));
    }
    return total;
}

void gemv_f16(long n, long k, const uint16_t *w, const uint16_t *x, float *out, int threads) {
    #pragma omp parallel num_threads(threads)
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        for (long r = n * t / nt; r < n * (t + 1) / nt; r++) {
            const uint16_t *row = w + r * k;
            VEC a0 = ZERO(), a1 = a0, a2 = a0, a3 = a0;
            for (long j = 0; j < k; j += 4 * W) {     /* k: a multiple of 4 W (64 with AVX-512) */
                a0 = FMA(HALF(row + j), HALF(x + j), a0);
                a1 = FMA(HALF(row + j + W), HALF(x + j + W), a1);
                a2 = FMA(HALF(row + j + 2 * W), HALF(x + j + 2 * W), a2);
                a3 = FMA(HALF(row + j + 3 * W), HALF(x + j + 3 * W), a3);
            }
            out[r] = SUM(ADD(ADD(a0, a1), ADD(a2, a3)));
        }
    }
}
