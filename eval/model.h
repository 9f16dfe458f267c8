/* model.h — a causal language model read from a Hugging Face model directory (config.json +
 * safetensors), and its forward pass over one window of tokens.
 *
 * Architectures (config.json "model_type"): llama (Llama 1/2/3, rope_scaling linear, dynamic
 * and llama3, TinyLlama, SmolLM), mistral (optional sliding window), qwen2 (q/k/v biases), gpt2
 * (Conv1D weights, learned positions, tanh GELU) and gpt_neox (Pythia: fused per-head QKV,
 * partial rotary, parallel residual). Anything else, or an activation, rope_scaling type or
 * option the code does not implement, is a hard error naming the key.
 *
 * Weights stay in the safetensors mapping in their stored dtype (F32, F16, BF16); only the small
 * norm and bias vectors are converted to fp32 at load. Activations are fp32. Every output row of
 * the vocabulary (also padding rows beyond the tokenizer) takes part in the softmax.
 *
 * A window is evaluated alone: positions restart at 0, no state is kept between windows. */
#ifndef HF_MODEL_H
#define HF_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "kernels.h"
#include "pool.h"
#include "safetensors.h"

typedef struct mdl_model mdl_model;

typedef struct {
    int use_mmap;
    int quiet;         /* do not report unused tensors on stderr */
    const kn_isa *isa; /* NULL: the best the CPU has */
    /* If set, receives the weight set as soon as the files are mapped, before any weight is
     * read (the entry point's SIGBUS handler needs it during loading too). */
    const st_set **publish;
} mdl_options;

int mdl_load(const char *dir, const mdl_options *opt, mdl_model **out, char *err, size_t errlen);
void mdl_free(mdl_model *m);

const char *mdl_type(const mdl_model *m);      /* config model_type */
const char *mdl_dtype(const mdl_model *m);     /* storage dtype of the matrices, e.g. "BF16" */
uint64_t mdl_n_params(const mdl_model *m);     /* elements of all used tensors (tied: once) */
uint64_t mdl_weight_bytes(const mdl_model *m); /* bytes of those tensors as stored */
size_t mdl_vocab(const mdl_model *m);          /* output rows = softmax size */
size_t mdl_max_ctx(const mdl_model *m);        /* longest window the model accepts, 0: no limit */
size_t mdl_trained_ctx(const mdl_model *m);    /* max_position_embeddings (0 if not given) */
/* The context past which results are not comparable with the model's own: RoPE models run
 * there (as their reference implementations do) but were not trained for it, so the caller
 * warns; 0 when there is no such point (no max_position_embeddings, or rope_scaling dynamic,
 * which rescales RoPE for longer inputs by design). Learned positions: see mdl_max_ctx. */
size_t mdl_comparable_ctx(const mdl_model *m);
const st_set *mdl_weights(const mdl_model *m);

/* Evaluate ids[0..n) as one window and write nll[i] = -log p(ids[t] | ids[0..t)) for the
 * targets t = first .. n-1 (i = t - first); 1 <= first <= n. Returns -EINVAL (with err) for an
 * id outside the vocabulary or a window longer than mdl_max_ctx, -ENOMEM when out of memory. */
int mdl_window_nll(mdl_model *m, pool *p, const int32_t *ids, size_t n, size_t first, double *nll,
                   char *err, size_t errlen);

#endif
