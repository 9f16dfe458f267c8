/* tok_bpe.h — the BPE model of tokenizer.json ("model": {"type": "BPE", ...}).
 *
 * Owns the vocabulary (token ↔ id), the merge table and the merge algorithm. A word is split
 * into one symbol per character (continuing_subword_prefix / end_of_word_suffix applied,
 * byte_fallback to <0xXX> tokens when every byte has one, else unk_token, fused when fuse_unk),
 * then the lowest-rank adjacent pair is merged repeatedly, leftmost first on equal ranks — a
 * binary heap over a linked list of symbols, so a 1 MB "word" (Llama-2 has no pre-tokenizer)
 * costs O(n log n), not the O(n²) of rescanning. ignore_merges emits a whole word that is in
 * the vocabulary directly. Merges are read in both forms ("a b" strings and [a, b] pairs).
 * The model is immutable after tok_bpe_load(); tok_bpe_word() keeps its scratch in the caller's
 * tok_bpe_scratch so that threads can share one model. */
#ifndef HF_TOK_BPE_H
#define HF_TOK_BPE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "tok_util.h"

typedef struct {
    tok_strmap vocab;
    size_t n_ids;      /* max id + 1 */
    const char **tok;  /* id → token bytes (NUL terminated, inside vocab.keys), or NULL */
    uint32_t *tok_len; /* id → length */
    tok_pairmap merges;
    int32_t unk_id; /* -1 when none */
    int fuse_unk, byte_fallback, ignore_merges;
    char *prefix, *suffix;  /* continuing_subword_prefix / end_of_word_suffix, or NULL */
    int32_t byte_id[256];   /* <0xXX> ids, -1 when absent */
    size_t max_len;         /* longest vocab token, bytes */
    int32_t meta_id;        /* id of "▁" (U+2581), -1 when absent or cutting is off */
    tok_strmap before_meta; /* characters that precede "▁" inside some vocab token */
} tok_bpe;

typedef struct {
    struct tok_bpe_sym *sym;
    size_t sym_cap;
    struct tok_bpe_merge *heap;
    size_t heap_len, heap_cap;
    tok_buf tmp;
} tok_bpe_scratch;

/* model is the "model" object of tokenizer.json; where names the file for messages. */
int tok_bpe_load(tok_bpe *m, json_t *model, const char *where, char *err, size_t errlen);
void tok_bpe_free(tok_bpe *m);

/* Append the ids of one pre-tokenized word to out. */
int tok_bpe_word(const tok_bpe *m, tok_bpe_scratch *s, const char *w, size_t n, tok_ids *out);

/* A word with no pre-tokenizer (Llama-2, Gemma: the whole text) can be cut before a "▁" whose
 * preceding character never precedes "▁" inside a vocab token: no merge can then join the two
 * sides, so encoding the parts separately gives the same ids, and the parts (words) repeat.
 * tok_bpe_cut() returns the first such cut after from, or n. Only for words longer than
 * max_len, and never with ignore_merges (it looks at whole words, and a part must encode the
 * same whether it came from a cut or not); tok_bpe_part() encodes a part. */
size_t tok_bpe_cut(const tok_bpe *m, const char *w, size_t n, size_t from);
int tok_bpe_part(const tok_bpe *m, tok_bpe_scratch *s, const char *w, size_t n, tok_ids *out);
void tok_bpe_scratch_free(tok_bpe_scratch *s);

#endif
