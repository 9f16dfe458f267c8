/* tok_unigram.h — the Unigram model of tokenizer.json (SentencePiece unigram: T5, ALBERT, ...).
 *
 * Owns the scored vocabulary and the Viterbi search the library runs on every word: the best
 * path maximises the sum of piece scores, a character no piece covers costs the lowest score
 * minus 10 and becomes unk_id, consecutive unknowns are fused into one unk, and byte_fallback
 * replaces an unk by <0xXX> pieces. Immutable once loaded. */
#ifndef HF_TOK_UNIGRAM_H
#define HF_TOK_UNIGRAM_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "tok_util.h"

typedef struct {
    tok_strmap vocab; /* piece → id */
    double *score;
    const char **tok; /* id → piece, inside vocab.keys */
    uint32_t *tok_len;
    size_t n_ids, max_len;
    double min_score;
    int32_t unk_id;
    int byte_fallback;
    int32_t byte_id[256];
} tok_unigram;

typedef struct {
    struct tok_uni_node *node;
    size_t cap;
} tok_unigram_scratch;

int tok_unigram_load(tok_unigram *m, json_t *model, const char *where, char *err, size_t errlen);
void tok_unigram_free(tok_unigram *m);

int tok_unigram_word(const tok_unigram *m, tok_unigram_scratch *s, const char *w, size_t n,
                     tok_ids *out);
void tok_unigram_scratch_free(tok_unigram_scratch *s);

#endif
