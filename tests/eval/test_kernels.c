/* Kernels against naive loops: the packed matrix product for every back end the CPU has, every
 * weight dtype and layout, odd sizes and strides, threaded and not; conversions; log-softmax. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "pool.h"

#include "../check.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static float frand(void)
{
    rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
    return (float)((double)(rng_state >> 11) / 9007199254740992.0 * 2 - 1);
}

static uint16_t to_bf16(float f) /* truncation is enough: the test compares stored values */
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return (uint16_t)(u >> 16);
}

static uint16_t to_f16(float f) /* normal range only, truncating */
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    uint32_t sign = (u >> 16) & 0x8000, e = (u >> 23) & 0xff, man = (u >> 13) & 0x3ff;
    if (e < 113) return (uint16_t)sign;
    return (uint16_t)(sign | ((e - 112) << 10) | man);
}

static void test_conversions(void)
{
    CHECK(kn_f16_to_f32(0x3c00) == 1.0f, "f16 1.0");
    CHECK(kn_f16_to_f32(0xc000) == -2.0f, "f16 -2");
    CHECK(kn_f16_to_f32(0x7bff) == 65504.0f, "f16 max");
    CHECK(kn_f16_to_f32(0x0001) == ldexpf(1, -24), "f16 smallest subnormal");
    CHECK(kn_f16_to_f32(0x03ff) == ldexpf(1023, -24), "f16 largest subnormal");
    CHECK(isinf(kn_f16_to_f32(0x7c00)), "f16 inf");
    CHECK(isnan(kn_f16_to_f32(0x7e00)), "f16 nan");
    CHECK(kn_f16_to_f32(0x8000) == 0.0f && signbit(kn_f16_to_f32(0x8000)), "f16 -0");
    CHECK(kn_bf16_to_f32(0x3f80) == 1.0f, "bf16 1.0");
    CHECK(kn_bf16_to_f32(0xc0a0) == -5.0f, "bf16 -5");
    for (int i = 0; i < 1000; i++) {
        float f = frand() * 100;
        uint16_t h = to_f16(f);
        float back = kn_f16_to_f32(h);
        CHECK(fabsf(back - f) <= fabsf(f) * 1e-3f + 1e-4f, "f16 round trip %g -> %g", f, back);
    }
}

/* Reference C = A·B + bias in double. */
static void naive(double *C, const float *A, size_t lda, const float *Bf, int kn, size_t ldb,
                  size_t M, size_t N, size_t K, const float *bias)
{
    for (size_t i = 0; i < M; i++)
        for (size_t n = 0; n < N; n++) {
            double s = bias ? bias[n] : 0;
            for (size_t k = 0; k < K; k++)
                s += (double)A[i * lda + k] * (kn ? Bf[k * ldb + n] : Bf[n * ldb + k]);
            C[i * N + n] = s;
        }
}

static void test_gemm_case(pool *p, const kn_isa *isa, kn_dtype dt, kn_layout lay, size_t M,
                           size_t N, size_t K, int with_bias)
{
    size_t lda = K + 3, ldb = (lay == KN_NK ? K : N) + 5, ldc = N + 2;
    size_t brows = lay == KN_NK ? N : K;
    float *A = malloc(M * lda * sizeof *A), *Bf = malloc(brows * ldb * sizeof *Bf);
    void *Bs = malloc(brows * ldb * 4);
    float *bias = malloc(N * sizeof *bias), *C = malloc(M * ldc * sizeof *C);
    float *C1 = malloc(M * ldc * sizeof *C1);
    double *R = malloc(M * N * sizeof *R);
    for (size_t i = 0; i < M * lda; i++)
        A[i] = frand();
    for (size_t i = 0; i < brows * ldb; i++) {
        float f = frand();
        if (dt == KN_BF16) {
            uint16_t h = to_bf16(f);
            memcpy((char *)Bs + 2 * i, &h, 2);
            Bf[i] = kn_bf16_to_f32(h);
        } else if (dt == KN_F16) {
            uint16_t h = to_f16(f);
            memcpy((char *)Bs + 2 * i, &h, 2);
            Bf[i] = kn_f16_to_f32(h);
        } else {
            memcpy((char *)Bs + 4 * i, &f, 4);
            Bf[i] = f;
        }
    }
    for (size_t i = 0; i < N; i++)
        bias[i] = frand();
    kn_weight w = {Bs, dt, lay, ldb};
    naive(R, A, lda, Bf, lay == KN_KN, ldb, M, N, K, with_bias ? bias : NULL);
    CHECK(kn_gemm(p, isa, C, ldc, A, lda, &w, M, N, K, with_bias ? bias : NULL) == 0, "gemm rc");
    CHECK(kn_gemm_worker(p, 0, isa, C1, ldc, A, lda, &w, M, N, K, with_bias ? bias : NULL) == 0,
          "gemm_worker rc");
    double worst = 0;
    for (size_t i = 0; i < M; i++)
        for (size_t n = 0; n < N; n++) {
            double e = fabs(C[i * ldc + n] - R[i * N + n]) / (sqrt((double)K) + 1);
            worst = e > worst ? e : worst;
            if (C[i * ldc + n] != C1[i * ldc + n]) {
                CHECK(0, "%s: threaded and single-task results differ at (%zu, %zu)",
                      kn_isa_name(isa), i, n);
                goto out;
            }
        }
    CHECK(worst < 2e-6, "%s dtype %d layout %d %zux%zux%zu: error %g", kn_isa_name(isa), dt, lay, M,
          N, K, worst);
out:
    free(A), free(Bf), free(Bs), free(bias), free(C), free(C1), free(R);
}

static void test_gemm(void)
{
    pool *p;
    if (pool_create(3, &p) < 0) {
        CHECK(0, "pool_create");
        return;
    }
    const size_t sizes[][3] = {{1, 1, 1},    {7, 33, 5},    {13, 130, 300}, {50, 257, 513},
                               {6, 16, 256}, {12, 32, 257}, {3, 300, 64}};
    const char *names[] = {"portable", "avx2", "avx512"};
    for (int n = 0; n < 3; n++) {
        const kn_isa *isa = kn_isa_named(names[n]);
        if (!isa) {
            printf("(%s not available on this CPU)\n", names[n]);
            continue;
        }
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
            for (int dt = 0; dt < 3; dt++)
                for (int lay = 0; lay < 2; lay++)
                    test_gemm_case(p, isa, (kn_dtype)dt, (kn_layout)lay, sizes[s][0], sizes[s][1],
                                   sizes[s][2], (int)(s % 2));
    }
    CHECK(kn_isa_named("portable") != NULL, "portable is always available");
    CHECK(kn_isa_named("no-such-isa") == NULL, "unknown isa");
    pool_free(p);
}

/* All back ends sum in the same order with fused multiply-adds: bit-identical results. */
static void test_isa_agreement(void)
{
    pool *p;
    if (pool_create(2, &p) < 0) return;
    size_t M = 37, N = 71, K = 600;
    float *A = malloc(M * K * 4), *B = malloc(N * K * 4), *C0 = malloc(M * N * 4),
          *C1 = malloc(M * N * 4);
    for (size_t i = 0; i < M * K; i++)
        A[i] = frand();
    for (size_t i = 0; i < N * K; i++)
        B[i] = frand();
    kn_weight w = {B, KN_F32, KN_NK, K};
    kn_gemm(p, kn_isa_named("portable"), C0, N, A, K, &w, M, N, K, NULL);
    const char *names[] = {"avx2", "avx512"};
    for (int n = 0; n < 2; n++) {
        const kn_isa *isa = kn_isa_named(names[n]);
        if (!isa) continue;
        kn_gemm(p, isa, C1, N, A, K, &w, M, N, K, NULL);
        CHECK(memcmp(C0, C1, M * N * 4) == 0, "%s differs from portable", names[n]);
    }
    free(A), free(B), free(C0), free(C1);
    pool_free(p);
}

static void test_rows(void)
{
    float x[300], l[300], o[300], w[300], b[300];
    for (int i = 0; i < 300; i++)
        x[i] = frand() * 5, w[i] = frand(), b[i] = frand();
    /* log-softmax against a naive double computation, also with a large offset */
    for (int off = 0; off < 2; off++) {
        for (int i = 0; i < 300; i++)
            l[i] = x[i] + (off ? 1000.0f : 0.0f);
        double mx = -INFINITY, s = 0;
        for (int i = 0; i < 300; i++)
            mx = l[i] > mx ? l[i] : mx;
        for (int i = 0; i < 300; i++)
            s += exp(l[i] - mx);
        double want = -(l[17] - mx - log(s));
        CHECK(fabs(kn_nll(l, 300, 17) - want) < 1e-12, "nll %g vs %g", kn_nll(l, 300, 17), want);
    }
    float u[50] = {0};
    CHECK(fabs(kn_nll(u, 50, 3) - log(50.0)) < 1e-15, "uniform logits give log(n)");
    memcpy(o, x, sizeof o);
    kn_softmax(o, 300);
    double s = 0;
    for (int i = 0; i < 300; i++)
        s += o[i];
    CHECK(fabs(s - 1) < 1e-5, "softmax sums to %g", s);
    kn_rmsnorm(o, x, w, 300, 1e-5f);
    double ss = 0;
    for (int i = 0; i < 300; i++)
        ss += (double)x[i] * x[i];
    double r = 1 / sqrt(ss / 300 + 1e-5);
    for (int i = 0; i < 300; i++)
        CHECK(fabs(o[i] - w[i] * x[i] * r) < 1e-5, "rmsnorm %d", i);
    kn_layernorm(o, x, w, b, 300, 1e-5f);
    double m = 0, v = 0;
    for (int i = 0; i < 300; i++)
        m += x[i];
    m /= 300;
    for (int i = 0; i < 300; i++)
        v += (x[i] - m) * (x[i] - m);
    v /= 300;
    for (int i = 0; i < 300; i++)
        CHECK(fabs(o[i] - ((x[i] - m) / sqrt(v + 1e-5) * w[i] + b[i])) < 1e-5, "layernorm %d", i);
    float g[3] = {-1.5f, 0.0f, 2.0f}, gu[3] = {2, 3, 4};
    kn_silu_mul(g, gu, 3);
    CHECK(fabs(g[0] - (-1.5 / (1 + exp(1.5)) * 2)) < 1e-6 && g[1] == 0 &&
              fabs(g[2] - 2 / (1 + exp(-2.0)) * 4) < 1e-6,
          "silu");
    float ge[2] = {1.0f, -0.5f}, gt[2] = {1.0f, -0.5f};
    kn_gelu_erf(ge, 2);
    kn_gelu_tanh(gt, 2);
    CHECK(fabs(ge[0] - 0.5 * (1 + erf(1 / sqrt(2.0)))) < 1e-7, "gelu erf %g", ge[0]);
    double t = -0.25 * (1 + tanh(sqrt(2 / M_PI) * (-0.5 + 0.044715 * -0.125)));
    CHECK(fabs(gt[1] - t) < 1e-7, "gelu tanh %g vs %g", gt[1], t);
}

int main(void)
{
    test_conversions();
    test_gemm();
    test_isa_agreement();
    test_rows();
    if (failures) {
        fprintf(stderr, "%d failures\n", failures);
        return 1;
    }
    printf("kernels: all checks passed (best back end: %s)\n", kn_isa_name(kn_isa_best()));
    return 0;
}
