/* kernels.c — see kernels.h.
 *
 * The matrix product follows the BLIS scheme: a KC × NB block of B is packed (and converted to
 * fp32) into NR-wide panels in the worker's scratch, then an MR × NR register tile of C is
 * updated by broadcasting A's elements against the panel rows. A needs no packing: MR row
 * pointers are read sequentially along k. Every C element is accumulated over k in increasing
 * order, one KC block after another, so the result is the same for any split of the columns. */
#include "kernels.h"

#include <errno.h>
#include <math.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#define KN_X86 1
#endif

#define KN_KC 256 /* depth of a packed block: KC × NR floats of B stay in L1 */
#define KN_NB 128 /* columns per task and per packed block (a multiple of every NR) */
#define KN_MR_MAX 16
#define KN_NR_MAX 32

static const float kn_zeros[KN_NR_MAX]; /* the start of a product without bias */

/* c[i][j] (row stride ldc) = start[j] (when start != NULL) or c[i][j], plus
 * sum_k a[i][k] * bp[k][j], for an MR × NR tile. */
typedef void (*kn_kernel_fn)(const float *const *a, const float *bp, size_t kc, float *c,
                             size_t ldc, const float *start);
typedef void (*kn_cvt_fn)(float *out, const void *data, kn_dtype dtype, size_t n);

struct kn_isa {
    const char *name;
    int mr, nr;
    kn_kernel_fn kernel;
    kn_cvt_fn cvt; /* stored row -> fp32 while packing */
    int (*supported)(void);
};

float kn_bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

float kn_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff, u;
    if (exp == 0x1f) {
        u = sign | 0x7f800000u | (man << 13);
    } else if (exp != 0) {
        u = sign | ((exp + 112) << 23) | (man << 13);
    } else if (man == 0) {
        u = sign;
    } else { /* subnormal: value = man * 2^-24, exact in fp32 */
        float f = ldexpf((float)man, -24);
        return sign ? -f : f;
    }
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

float kn_load(const void *data, kn_dtype dtype, size_t i)
{
    const unsigned char *b = data;
    if (dtype == KN_F32) {
        float f;
        memcpy(&f, b + 4 * i, sizeof f);
        return f;
    }
    uint16_t h;
    memcpy(&h, b + 2 * i, sizeof h);
    return dtype == KN_BF16 ? kn_bf16_to_f32(h) : kn_f16_to_f32(h);
}

void kn_load_row(float *out, const void *data, kn_dtype dtype, size_t n)
{
    const unsigned char *b = data;
    if (dtype == KN_F32) {
        memcpy(out, data, n * sizeof *out);
    } else if (dtype == KN_BF16) { /* separate loops so that each one vectorises */
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, b + 2 * i, sizeof h);
            out[i] = kn_bf16_to_f32(h);
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, b + 2 * i, sizeof h);
            out[i] = kn_f16_to_f32(h);
        }
    }
}

static size_t kn_dtype_size(kn_dtype d)
{
    return d == KN_F32 ? 4 : 2;
}

/* ---- micro-kernels (see kn_kernel_fn) ---- */

#define KN_P_MR 4
#define KN_P_NR 16
static void kn_kernel_portable(const float *const *a, const float *bp, size_t kc, float *c,
                               size_t ldc, const float *start)
{
    float acc[KN_P_MR][KN_P_NR];
    for (int i = 0; i < KN_P_MR; i++)
        memcpy(acc[i], start ? start : c + (size_t)i * ldc, sizeof acc[i]);
    for (size_t k = 0; k < kc; k++) {
        const float *b = bp + k * KN_P_NR;
        for (int i = 0; i < KN_P_MR; i++) {
            float av = a[i][k];
            for (int j = 0; j < KN_P_NR; j++)
                acc[i][j] = fmaf(av, b[j], acc[i][j]);
        }
    }
    for (int i = 0; i < KN_P_MR; i++)
        memcpy(c + (size_t)i * ldc, acc[i], sizeof acc[i]);
}

static int kn_always(void)
{
    return 1;
}

#ifdef KN_X86
__attribute__((target("avx2,fma"))) static void kn_kernel_avx2(const float *const *a,
                                                               const float *bp, size_t kc,
                                                               float *ct, size_t ldc,
                                                               const float *start)
{
    enum { MR = 6, NR = 16 };
    __m256 c[MR][2];
    for (int i = 0; i < MR; i++) {
        const float *src = start ? start : ct + (size_t)i * ldc;
        c[i][0] = _mm256_loadu_ps(src);
        c[i][1] = _mm256_loadu_ps(src + 8);
    }
    for (size_t k = 0; k < kc; k++) {
        __m256 b0 = _mm256_load_ps(bp + k * NR), b1 = _mm256_load_ps(bp + k * NR + 8);
        for (int i = 0; i < MR; i++) {
            __m256 av = _mm256_broadcast_ss(a[i] + k);
            c[i][0] = _mm256_fmadd_ps(av, b0, c[i][0]);
            c[i][1] = _mm256_fmadd_ps(av, b1, c[i][1]);
        }
    }
    for (int i = 0; i < MR; i++) {
        _mm256_storeu_ps(ct + (size_t)i * ldc, c[i][0]);
        _mm256_storeu_ps(ct + (size_t)i * ldc + 8, c[i][1]);
    }
}

__attribute__((target("avx512f"))) static void kn_kernel_avx512(const float *const *a,
                                                                const float *bp, size_t kc,
                                                                float *ct, size_t ldc,
                                                                const float *start)
{
    enum { MR = 12, NR = 32 };
    __m512 c[MR][2];
    for (int i = 0; i < MR; i++) {
        const float *src = start ? start : ct + (size_t)i * ldc;
        c[i][0] = _mm512_loadu_ps(src);
        c[i][1] = _mm512_loadu_ps(src + 16);
    }
    for (size_t k = 0; k < kc; k++) {
        __m512 b0 = _mm512_load_ps(bp + k * NR), b1 = _mm512_load_ps(bp + k * NR + 16);
        for (int i = 0; i < MR; i++) {
            __m512 av = _mm512_set1_ps(a[i][k]);
            c[i][0] = _mm512_fmadd_ps(av, b0, c[i][0]);
            c[i][1] = _mm512_fmadd_ps(av, b1, c[i][1]);
        }
    }
    for (int i = 0; i < MR; i++) {
        _mm512_storeu_ps(ct + (size_t)i * ldc, c[i][0]);
        _mm512_storeu_ps(ct + (size_t)i * ldc + 16, c[i][1]);
    }
}

/* BF16 is the top half of an fp32; F16 converts exactly with F16C / AVX-512 (denormals too). */
__attribute__((target("avx2,fma,f16c"))) static void kn_cvt_avx2(float *out, const void *data,
                                                                 kn_dtype dtype, size_t n)
{
    const unsigned char *b = data;
    size_t i = 0;
    if (dtype == KN_BF16) {
        for (; i + 8 <= n; i += 8) {
            __m128i h = _mm_loadu_si128((const __m128i *)(b + 2 * i));
            __m256i u = _mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16);
            _mm256_storeu_ps(out + i, _mm256_castsi256_ps(u));
        }
    } else if (dtype == KN_F16) {
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(out + i,
                             _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(b + 2 * i))));
    }
    kn_load_row(out + i, b + i * (dtype == KN_F32 ? 4 : 2), dtype, n - i);
}

__attribute__((target("avx512f"))) static void kn_cvt_avx512(float *out, const void *data,
                                                             kn_dtype dtype, size_t n)
{
    const unsigned char *b = data;
    size_t i = 0;
    if (dtype == KN_BF16) {
        for (; i + 16 <= n; i += 16) {
            __m256i h = _mm256_loadu_si256((const __m256i *)(b + 2 * i));
            __m512i u = _mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16);
            _mm512_storeu_ps(out + i, _mm512_castsi512_ps(u));
        }
    } else if (dtype == KN_F16) {
        for (; i + 16 <= n; i += 16)
            _mm512_storeu_ps(out + i,
                             _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(b + 2 * i))));
    }
    kn_load_row(out + i, b + i * (dtype == KN_F32 ? 4 : 2), dtype, n - i);
}

static int kn_has_avx2(void)
{
    __builtin_cpu_init();
    unsigned a, b, c, d; /* F16C: CPUID.1:ECX bit 29 (not every compiler's builtin knows it) */
    int f16c = __get_cpuid(1, &a, &b, &c, &d) && (c >> 29 & 1);
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
}

static int kn_has_avx512(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
}
#endif

static const kn_isa kn_isas[] = {
#ifdef KN_X86
    {"avx512", 12, 32, kn_kernel_avx512, kn_cvt_avx512, kn_has_avx512},
    {"avx2", 6, 16, kn_kernel_avx2, kn_cvt_avx2, kn_has_avx2},
#endif
    {"portable", KN_P_MR, KN_P_NR, kn_kernel_portable, kn_load_row, kn_always},
};

const kn_isa *kn_isa_best(void)
{
    for (size_t i = 0; i < sizeof kn_isas / sizeof kn_isas[0]; i++)
        if (kn_isas[i].supported()) return &kn_isas[i];
    return &kn_isas[sizeof kn_isas / sizeof kn_isas[0] - 1];
}

const kn_isa *kn_isa_named(const char *name)
{
    for (size_t i = 0; i < sizeof kn_isas / sizeof kn_isas[0]; i++)
        if (strcmp(kn_isas[i].name, name) == 0) return kn_isas[i].supported() ? &kn_isas[i] : NULL;
    return NULL;
}

const char *kn_isa_name(const kn_isa *isa)
{
    return isa->name;
}

/* ---- packing: bp[p][k][j] = B(k0 + k, n0 + p*nr + j), zero beyond N ---- */

static void kn_pack(const kn_isa *isa, float *bp, const kn_weight *B, size_t k0, size_t kc,
                    size_t n0, size_t nb, float *row)
{
    int nr = isa->nr;
    size_t es = kn_dtype_size(B->dtype);
    const unsigned char *base = B->data;
    size_t npan = (nb + (size_t)nr - 1) / (size_t)nr;
    for (size_t p = 0; p < npan; p++) {
        float *panel = bp + p * kc * (size_t)nr;
        size_t cols = nb - p * (size_t)nr < (size_t)nr ? nb - p * (size_t)nr : (size_t)nr;
        if (cols < (size_t)nr) memset(panel, 0, kc * (size_t)nr * sizeof *panel);
        if (B->layout == KN_NK) { /* column n of B is stored row n: read along k, scatter */
            for (size_t j = 0; j < cols; j++) {
                size_t n = n0 + p * (size_t)nr + j;
                isa->cvt(row, base + (n * B->ld + k0) * es, B->dtype, kc);
                for (size_t k = 0; k < kc; k++)
                    panel[k * (size_t)nr + j] = row[k];
            }
        } else { /* row k of B is stored contiguously: copy nr columns at a time */
            for (size_t k = 0; k < kc; k++)
                kn_load_row(panel + k * (size_t)nr,
                            base + ((k0 + k) * B->ld + n0 + p * (size_t)nr) * es, B->dtype, cols);
        }
    }
}

/* An edge tile (fewer than MR rows or NR columns) goes through ct[MR][NR]: its valid part is
 * copied in (from C, or the bias on the first k block), the rest is zero and never stored. */
static void kn_tile_in(float *ct, const float *C, size_t ldc, size_t rows, size_t cols, int nr,
                       int mr, const float *start)
{
    memset(ct, 0, (size_t)mr * (size_t)nr * sizeof *ct);
    for (size_t i = 0; i < rows; i++)
        memcpy(ct + i * (size_t)nr, start ? start : C + i * ldc, cols * sizeof *ct);
}

static void kn_tile_out(float *C, size_t ldc, const float *ct, size_t rows, size_t cols, int nr)
{
    for (size_t i = 0; i < rows; i++)
        memcpy(C + i * ldc, ct + i * (size_t)nr, cols * sizeof *C);
}

/* Columns [n0, n0 + nb) of C, nb <= KN_NB. */
static void kn_gemm_block(const kn_isa *isa, float *bp, float *row, float *C, size_t ldc,
                          const float *A, size_t lda, const kn_weight *B, size_t M, size_t n0,
                          size_t nb, size_t K, const float *bias)
{
    int mr = isa->mr, nr = isa->nr;
    size_t npan = (nb + (size_t)nr - 1) / (size_t)nr;
    float ct[KN_MR_MAX * KN_NR_MAX];
    const float *a[KN_MR_MAX];
    for (size_t k0 = 0; k0 < K; k0 += KN_KC) {
        size_t kc = K - k0 < KN_KC ? K - k0 : KN_KC;
        kn_pack(isa, bp, B, k0, kc, n0, nb, row);
        for (size_t m0 = 0; m0 < M; m0 += (size_t)mr) {
            size_t rows = M - m0 < (size_t)mr ? M - m0 : (size_t)mr;
            for (int i = 0; i < mr; i++) /* short tiles repeat the last row; it is not stored */
                a[i] = A + (m0 + ((size_t)i < rows ? (size_t)i : rows - 1)) * lda + k0;
            for (size_t p = 0; p < npan; p++) {
                size_t c0 = p * (size_t)nr;
                size_t cols = nb - c0 < (size_t)nr ? nb - c0 : (size_t)nr;
                float *cp = C + m0 * ldc + n0 + c0;
                const float *start = k0 > 0 ? NULL : bias ? bias + n0 + c0 : kn_zeros;
                const float *panel = bp + p * kc * (size_t)nr;
                if (rows == (size_t)mr && cols == (size_t)nr) {
                    isa->kernel(a, panel, kc, cp, ldc, start);
                } else {
                    kn_tile_in(ct, cp, ldc, rows, cols, nr, mr, start);
                    isa->kernel(a, panel, kc, ct, (size_t)nr, NULL);
                    kn_tile_out(cp, ldc, ct, rows, cols, nr);
                }
            }
        }
    }
}

static int kn_scratch(pool *p, int worker, const kn_isa *isa, float **bp, float **row)
{
    size_t pack = (size_t)KN_KC * KN_NB;
    float *s = pool_scratch(p, worker, POOL_SCRATCH_GEMM, (pack + KN_KC) * sizeof(float));
    if (!s) return -ENOMEM;
    (void)isa;
    *bp = s;
    *row = s + pack;
    return 0;
}

int kn_gemm_worker(pool *p, int worker, const kn_isa *isa, float *C, size_t ldc, const float *A,
                   size_t lda, const kn_weight *B, size_t M, size_t N, size_t K, const float *bias)
{
    float *bp, *row;
    if (M == 0 || N == 0) return 0;
    if (kn_scratch(p, worker, isa, &bp, &row) < 0) return -ENOMEM;
    for (size_t n0 = 0; n0 < N; n0 += KN_NB)
        kn_gemm_block(isa, bp, row, C, ldc, A, lda, B, M, n0, N - n0 < KN_NB ? N - n0 : KN_NB, K,
                      bias);
    return 0;
}

struct kn_gemm_job {
    const kn_isa *isa;
    float *C;
    size_t ldc;
    const float *A;
    size_t lda;
    const kn_weight *B;
    size_t M, N, K;
    const float *bias;
    pool *p;
    int failed; /* written only as 1, read after pool_run; see kn_gemm_task */
};

static void kn_gemm_task(void *arg, size_t task, int worker)
{
    struct kn_gemm_job *j = arg;
    float *bp, *row;
    if (kn_scratch(j->p, worker, j->isa, &bp, &row) < 0) {
        __atomic_store_n(&j->failed, 1, __ATOMIC_RELAXED);
        return;
    }
    size_t n0 = task * KN_NB;
    kn_gemm_block(j->isa, bp, row, j->C, j->ldc, j->A, j->lda, j->B, j->M, n0,
                  j->N - n0 < KN_NB ? j->N - n0 : KN_NB, j->K, j->bias);
}

int kn_gemm(pool *p, const kn_isa *isa, float *C, size_t ldc, const float *A, size_t lda,
            const kn_weight *B, size_t M, size_t N, size_t K, const float *bias)
{
    if (M == 0 || N == 0) return 0;
    struct kn_gemm_job j = {isa, C, ldc, A, lda, B, M, N, K, bias, p, 0};
    pool_run(p, (N + KN_NB - 1) / KN_NB, kn_gemm_task, &j);
    return __atomic_load_n(&j.failed, __ATOMIC_RELAXED) ? -ENOMEM : 0;
}

/* ---- row operations ---- */

void kn_rmsnorm(float *out, const float *x, const float *w, size_t n, float eps)
{
    double ss = 0;
    for (size_t i = 0; i < n; i++)
        ss += (double)x[i] * x[i];
    float r = (float)(1.0 / sqrt(ss / (double)n + eps));
    for (size_t i = 0; i < n; i++)
        out[i] = w[i] * (x[i] * r);
}

void kn_layernorm(float *out, const float *x, const float *w, const float *b, size_t n, float eps)
{
    double s = 0, ss = 0;
    for (size_t i = 0; i < n; i++)
        s += x[i];
    double mean = s / (double)n;
    for (size_t i = 0; i < n; i++) {
        double d = x[i] - mean;
        ss += d * d;
    }
    double r = 1.0 / sqrt(ss / (double)n + eps);
    for (size_t i = 0; i < n; i++)
        out[i] = (float)((x[i] - mean) * r) * w[i] + b[i];
}

void kn_silu_mul(float *g, const float *u, size_t n)
{
    for (size_t i = 0; i < n; i++)
        g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

void kn_gelu_erf(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = 0.5f * x[i] * (1.0f + erff(x[i] * (float)M_SQRT1_2));
}

void kn_gelu_tanh(float *x, size_t n)
{
    /* 0.5 * (1 + tanh(u)) == 1 / (1 + exp(-2u)) exactly: one expf instead of tanhf (which
     * calls expm1f), and no cancellation near -1. */
    const float c = 0.7978845608028654f; /* sqrt(2/pi) */
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        float u = c * (v + 0.044715f * v * v * v);
        x[i] = v / (1.0f + expf(-2.0f * u));
    }
}

void kn_softmax(float *x, size_t n)
{
    float mx = -INFINITY;
    for (size_t i = 0; i < n; i++)
        mx = x[i] > mx ? x[i] : mx;
    double s = 0;
    for (size_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - mx);
        s += x[i];
    }
    float r = (float)(1.0 / s);
    for (size_t i = 0; i < n; i++)
        x[i] *= r;
}

double kn_nll(const float *logits, size_t n, size_t target)
{
    float mx = -INFINITY;
    for (size_t i = 0; i < n; i++)
        mx = logits[i] > mx ? logits[i] : mx;
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += exp((double)logits[i] - mx);
    return log(s) - ((double)logits[target] - mx);
}
