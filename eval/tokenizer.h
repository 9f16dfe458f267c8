/* tokenizer.h — the model's own tokenizer.json, token for token identical to Hugging Face
 * `tokenizers`.
 *
 * tok_load() reads DIR/tokenizer.json (plus DIR/tokenizer_config.json and
 * DIR/special_tokens_map.json when present) and builds the whole pipeline: added tokens,
 * normalizer, pre-tokenizer, model (BPE; others are a hard error naming the node), post-processor
 * and the BOS/EOS rule of tokenizer_config.json. Any node type or option it does not implement is
 * a hard error naming the node — never a silent fallback.
 *
 * tok_encode() gives exactly the ids of `tokenizer(text)` (add_special != 0) or of
 * `tokenizer(text, add_special_tokens=False)` (add_special == 0) for the text's bytes. Invalid
 * UTF-8 in the text is handled as documented in docs/TOKENIZER.md: each maximal invalid
 * subsequence is replaced by U+FFFD, as Python's `bytes.decode(errors="replace")` does before
 * the library sees the string.
 *
 * Errors are negative errno values; a human-readable message naming the file and the problem is
 * written to err (errlen bytes, may be NULL). A loaded tokenizer is immutable and may be used
 * from several threads at once. */
#ifndef HF_TOKENIZER_H
#define HF_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

typedef struct tok_tokenizer tok_tokenizer;

int tok_load(const char *dir, tok_tokenizer **out, char *err, size_t errlen);
void tok_free(tok_tokenizer *t);

/* Encode len bytes of text. *ids is malloc'd (free() it), *n_ids its length. */
int tok_encode(const tok_tokenizer *t, const char *text, size_t len, int add_special, int32_t **ids,
               size_t *n_ids, char *err, size_t errlen);

/* Decode ids back to text with the tokenizer's decoder (skip_special_tokens=False).
 * *text is malloc'd and NUL terminated, *len its length without the NUL. */
int tok_decode(const tok_tokenizer *t, const int32_t *ids, size_t n_ids, char **text, size_t *len,
               char *err, size_t errlen);

/* Number of ids the tokenizer knows (model vocab plus added tokens): max id + 1. */
size_t tok_vocab_size(const tok_tokenizer *t);
/* BOS id the tokenizer adds (TemplateProcessing / tokenizer_config add_bos_token), or -1. */
int32_t tok_bos_id(const tok_tokenizer *t);
/* The BOS token id declared by tokenizer_config.json / special_tokens_map.json even when the
 * template does not add it (llama.cpp's chunk method needs it), or -1. */
int32_t tok_bos_token_id(const tok_tokenizer *t);
int32_t tok_eos_id(const tok_tokenizer *t);

#endif
