/* ppl.h — perplexity methods: which windows are evaluated and which of their tokens are scored.
 *
 * The model is reached only through ppl_score_fn, so the window arithmetic is tested on its
 * own (a uniform-logit scorer must give exactly the vocabulary size). Definitions (normative,
 * docs/EVAL.md):
 *
 * PPL_SLIDING (Hugging Face "Perplexity of fixed-length models"): ids are the whole text
 * tokenized once with the tokenizer's special tokens; for begin = 0, S, 2S, ...: end =
 * min(begin + L, N); window ids[begin, end) is evaluated alone; targets are t in
 * [max(prev_end, begin + 1), end), scored with the context ids[begin, t); stop after the window
 * with end == N. Each token is scored once; nll is summed over tokens.
 *
 * PPL_LLAMACPP (llama.cpp llama-perplexity): ids of the text with one trailing LF removed;
 * n_chunk = floor(N / C) disjoint chunks (tail dropped, needs N >= 2C); chunk c =
 * ids[cC, (c+1)C) with its first id replaced by BOS when the tokenizer adds one; local positions
 * C/2 + 1 .. C - 1 are scored (C - C/2 - 1 per chunk). The ± figure is llama.cpp's:
 * ppl · sqrt((mean(nll²) - mean(nll)²) / (count - 1)).
 *
 * Errors are negative errno values with a message in err. */
#ifndef HF_PPL_H
#define HF_PPL_H

#include <stddef.h>
#include <stdint.h>

typedef enum { PPL_SLIDING, PPL_LLAMACPP } ppl_method;

/* Score window ids[0, n): nll[i] = -log p(ids[first + i] | ids[0, first + i)), i < n - first. */
typedef int (*ppl_score_fn)(void *ctx, const int32_t *ids, size_t n, size_t first, double *nll,
                            char *err, size_t errlen);
/* Called after each window with the tokens scored so far and the total to score. */
typedef void (*ppl_progress_fn)(void *ctx, size_t done, size_t total);

typedef struct {
    ppl_method method;
    size_t ctx, stride; /* stride: sliding only; 0 means ctx */
    int32_t bos;        /* llamacpp: id that replaces each chunk's first token, or -1 */
} ppl_params;

typedef struct {
    double nll;       /* total, natural log */
    double nll2;      /* sum of squared per-token NLL (for the ± figure) */
    size_t count;     /* scored tokens */
    size_t windows;   /* windows (chunks) evaluated */
    size_t tokens;    /* input tokens */
    size_t evaluated; /* tokens run through the model (all window positions) */
    double ppl, mean_nll, ppl_err;
} ppl_result;

/* Tokens that run() will score for these parameters (0 with a message if none can be). */
int ppl_plan(const ppl_params *pp, size_t n_ids, size_t *n_windows, size_t *n_scored, char *err,
             size_t errlen);
int ppl_run(const ppl_params *pp, const int32_t *ids, size_t n_ids, ppl_score_fn score,
            void *score_ctx, ppl_progress_fn progress, void *progress_ctx, ppl_result *out,
            char *err, size_t errlen);
const char *ppl_method_name(ppl_method m);

#endif
