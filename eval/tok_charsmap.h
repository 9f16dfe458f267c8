/* tok_charsmap.h — SentencePiece's precompiled character map (the "Precompiled" normalizer).
 *
 * Owns the decoded precompiled_charsmap: a darts double-array trie over UTF-8 keys whose leaf
 * values index NUL-terminated replacements. Normalization follows the library exactly: each
 * extended grapheme cluster shorter than 6 bytes is replaced as a whole when some rule
 * matches a prefix of it (the shortest such rule wins), otherwise each character is looked up
 * on its own. Immutable once loaded. */
#ifndef HF_TOK_CHARSMAP_H
#define HF_TOK_CHARSMAP_H

#include <stddef.h>
#include <stdint.h>

#include "tok_util.h"

typedef struct {
    uint32_t *unit;
    size_t n_units;
    char *repl; /* replacement pool */
    size_t repl_len;
} tok_charsmap;

/* b64 is the base64 text of tokenizer.json; path names the node in messages. */
int tok_charsmap_load(tok_charsmap *m, const char *b64, size_t len, const char *path, char *err,
                      size_t errlen);
void tok_charsmap_free(tok_charsmap *m);
/* Append normalize(s) to out. */
int tok_charsmap_apply(const tok_charsmap *m, const char *s, size_t len, tok_buf *out);

#endif
