/* tok_pre.h — the "pre_tokenizer" node of tokenizer.json: text pieces → words.
 *
 * Owns the pre-tokenizer tree and the splitting rules the library applies: ByteLevel
 * (add_prefix_space, the GPT-2 regex when use_regex, then the bytes→unicode alphabet), Split
 * (String or Oniguruma Regex pattern, behavior Removed / Isolated / MergedWithPrevious /
 * MergedWithNext / Contiguous, invert), Metaspace (replacement, prepend_scheme always / first /
 * never, split), Digits (individual_digits), Punctuation (behavior), Whitespace,
 * WhitespaceSplit, CharDelimiterSplit and Sequence. Unknown types are a hard error naming the
 * node. Empty pieces are dropped after every split, as the library does. */
#ifndef HF_TOK_PRE_H
#define HF_TOK_PRE_H

#include <jansson.h>
#include <stddef.h>

#include "tok_util.h"

typedef struct tok_pre tok_pre;

/* A list of pieces stored back to back in text; first != 0 marks a piece that starts at
 * offset 0 of the original text (Metaspace prepend_scheme "first" needs it). */
typedef struct {
    size_t off, len;
    int first;
} tok_piece;

typedef struct {
    tok_buf text;
    tok_piece *v;
    size_t n, cap;
} tok_pieces;

int tok_pieces_add(tok_pieces *p, const char *s, size_t len, int first);
void tok_pieces_free(tok_pieces *p);

/* Per-thread scratch: match data for every regex of the tree. */
typedef struct tok_pre_scratch tok_pre_scratch;

int tok_pre_load(json_t *node, const char *path, tok_pre **out, char *err, size_t errlen);
void tok_pre_free(tok_pre *p);

/* Append the words of one piece to out. p may be NULL (no pre-tokenizer: the piece is one
 * word). */
int tok_pre_apply(const tok_pre *p, tok_pre_scratch **scratch, const char *s, size_t len, int first,
                  tok_pieces *out);
void tok_pre_scratch_free(tok_pre_scratch *s);

#endif
