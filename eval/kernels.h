/* kernels.h — the numeric kernels of the forward pass: a packed, register-blocked matrix
 * product over stored weights (F32, F16 or BF16, converted to fp32 while a tile is packed, so
 * activations are never rounded below fp32), and the row operations around it.
 *
 * Numerics are fixed by the references: fp32 storage and fp32 fused multiply-add accumulation
 * in a fixed order (each output is summed over k in the same sequence whatever the thread
 * count, so results do not depend on --threads), reductions (norm statistics, softmax sums) in
 * double, exact erf GELU / tanh GELU / SiLU from libm. The SIMD paths (AVX-512, AVX2+FMA) are
 * chosen at run time from the CPU; the portable C path computes the same sums.
 *
 * kn_weight describes a stored matrix without copying it: element (k, n) of the operand B in
 * C = A·B is data[n*ld + k] for KN_NK (a Linear layer's [out, in] weight) or data[k*ld + n]
 * for KN_KN (GPT-2's Conv1D [in, out] weight, or V in attention). */
#ifndef HF_KERNELS_H
#define HF_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "pool.h"

typedef enum { KN_F32, KN_F16, KN_BF16 } kn_dtype;
typedef enum { KN_NK, KN_KN } kn_layout;

typedef struct {
    const void *data;
    kn_dtype dtype;
    kn_layout layout;
    size_t ld; /* elements between consecutive rows of the stored matrix */
} kn_weight;

/* Element conversions (exact: every F16/BF16 value is representable in fp32). */
float kn_bf16_to_f32(uint16_t h);
float kn_f16_to_f32(uint16_t h);
/* Element i of a row stored as dtype (unaligned storage is fine). */
float kn_load(const void *data, kn_dtype dtype, size_t i);
/* out[0..n) = row as fp32. */
void kn_load_row(float *out, const void *data, kn_dtype dtype, size_t n);

/* An instruction-set back end: "avx512" (AVX-512F), "avx2" (AVX2+FMA) or "portable" (C).
 * kn_isa_best() picks the widest the CPU supports; kn_isa_named() returns NULL for an unknown
 * name or one the CPU lacks (tests compare the back ends against each other). */
typedef struct kn_isa kn_isa;
const kn_isa *kn_isa_best(void);
const kn_isa *kn_isa_named(const char *name);
const char *kn_isa_name(const kn_isa *isa);

/* C[M, N] (row stride ldc) = A[M, K] (row stride lda) · B + bias (bias may be NULL).
 * kn_gemm splits the columns over the pool; kn_gemm_worker runs inside one pool task with that
 * worker's scratch. Returns -ENOMEM if a scratch buffer cannot be allocated. */
int kn_gemm(pool *p, const kn_isa *isa, float *C, size_t ldc, const float *A, size_t lda,
            const kn_weight *B, size_t M, size_t N, size_t K, const float *bias);
int kn_gemm_worker(pool *p, int worker, const kn_isa *isa, float *C, size_t ldc, const float *A,
                   size_t lda, const kn_weight *B, size_t M, size_t N, size_t K, const float *bias);

/* Row operations on x[n] (out may equal x). Statistics in double. */
void kn_rmsnorm(float *out, const float *x, const float *w, size_t n, float eps);
void kn_layernorm(float *out, const float *x, const float *w, const float *b, size_t n, float eps);
void kn_silu_mul(float *g, const float *u, size_t n); /* g = silu(g) * u */
void kn_gelu_erf(float *x, size_t n);
void kn_gelu_tanh(float *x, size_t n);
/* In-place softmax of x[n] with max subtraction; the normaliser is summed in double. */
void kn_softmax(float *x, size_t n);
/* -log softmax(logits)[target] over all n logits: max subtraction, sum of exp in double. */
double kn_nll(const float *logits, size_t n, size_t target);

#endif
