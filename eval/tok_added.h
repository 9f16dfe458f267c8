/* tok_added.h — the "added_tokens" of tokenizer.json and how they cut the text.
 *
 * Owns the added-token table and the library's extraction rule: tokens with normalized=false
 * are found in the raw text first; the pieces between them are normalized, then the
 * normalized=true tokens (whose content is itself normalized first) are found in those
 * pieces. Matching is leftmost-longest (the library's Aho-Corasick), then single_word rejects
 * a match touching a word character, lstrip / rstrip widen it over neighbouring whitespace.
 * Ids follow the library's rule: a token in the model vocab keeps the vocab id, a new one
 * gets the next free id (the "id" fields of the file are not used). Immutable once loaded. */
#ifndef HF_TOK_ADDED_H
#define HF_TOK_ADDED_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "tok_norm.h"

typedef struct {
    char *content;
    size_t len;
    int32_t id;
    int special, lstrip, rstrip, single_word, normalized;
    char *match; /* what is searched: content, or its normalized form */
    size_t match_len;
} tok_added_token;

typedef struct {
    tok_added_token *v;
    size_t n;
    /* per set (0 raw, 1 normalized), per first byte: indices into v, longest first */
    uint32_t *bucket[2][256];
    uint32_t bucket_n[2][256];
    int32_t max_id;
    int32_t *by_id; /* id → index into v (the last token with that id), -1 when none */
} tok_added;

/* One cut: text [off, off+len) of the searched string; id >= 0 for an added token. */
typedef struct {
    size_t off, len;
    int32_t id;
} tok_cut;

typedef struct {
    tok_cut *v;
    size_t n, cap;
} tok_cuts;

/* vocab: the model's vocabulary, which decides the ids (see assign_ids). */
int tok_added_load(tok_added *a, json_t *arr, const tok_norm *norm, const tok_strmap *vocab,
                   const char *where, char *err, size_t errlen);
void tok_added_free(tok_added *a);

/* Cut s with the raw (set 0) or normalized (set 1) tokens; out is reset first. */
int tok_added_split(const tok_added *a, int set, const char *s, size_t len, tok_cuts *out);

/* The added token with this id, or NULL. Content lookup for special names: */
const tok_added_token *tok_added_by_id(const tok_added *a, int32_t id);
const tok_added_token *tok_added_by_content(const tok_added *a, const char *s, size_t len);

#endif
