/* tok_post.h — the "post_processor" and "decoder" nodes of tokenizer.json.
 *
 * Owns what happens around the model: the post-processor that adds special tokens when
 * add_special_tokens is on (TemplateProcessing's "single" template, RobertaProcessing,
 * BertProcessing, ByteLevel — which changes offsets only — and Sequence), and the decoder
 * chain that turns tokens back into text (ByteLevel, Metaspace, Replace, ByteFallback, Fuse,
 * Strip, BPEDecoder, Sequence). Unknown types are a hard error naming the node. */
#ifndef HF_TOK_POST_H
#define HF_TOK_POST_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "tok_util.h"

typedef struct tok_post tok_post;
typedef struct tok_dec tok_dec;

int tok_post_load(json_t *node, const char *path, tok_post **out, char *err, size_t errlen);
void tok_post_free(tok_post *p);
/* out = the single-sequence template around ids (out is appended to). p may be NULL. */
int tok_post_apply(const tok_post *p, const int32_t *ids, size_t n, tok_ids *out);
/* The ids the template puts before / after the sequence (for the BOS/EOS queries). */
int32_t tok_post_first_special(const tok_post *p);
int32_t tok_post_last_special(const tok_post *p);

int tok_dec_load(json_t *node, const char *path, tok_dec **out, char *err, size_t errlen);
void tok_dec_free(tok_dec *d);

/* A token list for the decoder: tokens stored back to back. */
typedef struct {
    tok_buf text;
    size_t *off, *len;
    size_t n, cap;
} tok_strs;

int tok_strs_add(tok_strs *s, const char *p, size_t len);
void tok_strs_free(tok_strs *s);

/* Run the decoder chain on tokens and join the result into out. d == NULL joins with " ". */
int tok_dec_apply(const tok_dec *d, tok_strs *tokens, tok_buf *out);

#endif
