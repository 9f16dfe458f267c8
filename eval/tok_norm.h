/* tok_norm.h — the "normalizer" node of tokenizer.json.
 *
 * Owns the normalizer tree: NFC, NFD, NFKC, NFKD (utf8proc), Lowercase (Rust's per-character
 * char::to_lowercase), Strip, Prepend (only onto non-empty text), Replace (a string or an
 * Oniguruma regex, every non-overlapping match), Precompiled (SentencePiece's charsmap, see
 * tok_charsmap.h) and Sequence. Any other type is a hard error
 * naming the node. A normalizer maps one piece of text to another; the pipeline applies it to
 * each piece left between added tokens, as the library does. Immutable once loaded. */
#ifndef HF_TOK_NORM_H
#define HF_TOK_NORM_H

#include <jansson.h>
#include <stddef.h>

#include "tok_util.h"

typedef struct tok_norm tok_norm;

/* node may be JSON null (no normalizer: *out = NULL). path names the node in messages. */
int tok_norm_load(json_t *node, const char *path, tok_norm **out, char *err, size_t errlen);
void tok_norm_free(tok_norm *n);

/* out = normalize(s[0..len)); out is reset first. */
int tok_norm_apply(const tok_norm *n, const char *s, size_t len, tok_buf *out);

#endif
