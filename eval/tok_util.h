/* tok_util.h — the small building blocks every tokenizer stage shares.
 *
 * Owns: growable byte and id buffers, an open-addressing string→id map (vocabularies, the
 * per-call BPE word cache), a u64→(rank,id) map (BPE merges), UTF-8 decoding and the
 * errors="replace" repair of invalid UTF-8, the Unicode character classes the Rust library
 * uses (char::is_whitespace, is_numeric, is_alphanumeric, punctuation), the GPT-2 byte↔char
 * alphabet and the error-message helper. Kept apart so that the pipeline modules contain only
 * tokenizer logic, and so that every stage classifies characters the same way. */
#ifndef HF_TOK_UTIL_H
#define HF_TOK_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Limits that keep hostile tokenizer.json files from exhausting memory. */
#define TOK_MAX_JSON_BYTES ((size_t)64 << 20)
#define TOK_MAX_VOCAB ((size_t)1 << 22)
#define TOK_MAX_MERGES ((size_t)1 << 22)
#define TOK_MAX_TOKEN_BYTES 1024

void tok_seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

typedef struct {
    char *p;
    size_t len, cap;
} tok_buf;

int tok_buf_reserve(tok_buf *b, size_t extra);
int tok_buf_put(tok_buf *b, const void *data, size_t n);
int tok_buf_putc(tok_buf *b, char c);
/* Append code point cp as UTF-8. */
int tok_buf_put_cp(tok_buf *b, uint32_t cp);
void tok_buf_free(tok_buf *b);

typedef struct {
    int32_t *v;
    size_t len, cap;
} tok_ids;

int tok_ids_push(tok_ids *a, int32_t id);
int tok_ids_append(tok_ids *a, const int32_t *ids, size_t n);
void tok_ids_free(tok_ids *a);

/* String→int32 map. Keys are copied into the map's own storage. */
typedef struct {
    uint32_t *slots; /* entry index + 1, 0 = empty */
    size_t nslots;
    struct tok_strmap_entry *ents;
    size_t n, cap;
    tok_buf keys;
} tok_strmap;

struct tok_strmap_entry {
    size_t off;
    uint32_t len;
    uint32_t hash;
    int32_t val;
};

int tok_strmap_init(tok_strmap *m, size_t expected);
/* Insert or overwrite. */
int tok_strmap_set(tok_strmap *m, const char *key, size_t len, int32_t val);
/* Returns 1 and sets *val when found. */
int tok_strmap_get(const tok_strmap *m, const char *key, size_t len, int32_t *val);
void tok_strmap_free(tok_strmap *m);

/* (left id, right id) → (rank, merged id). */
typedef struct {
    uint64_t *keys; /* UINT64_MAX = empty */
    int32_t *rank, *id;
    size_t nslots, n;
} tok_pairmap;

int tok_pairmap_init(tok_pairmap *m, size_t expected);
/* A pair inserted twice keeps the later value, as the library's map does. */
int tok_pairmap_add(tok_pairmap *m, int32_t a, int32_t b, int32_t rank, int32_t id);
static inline uint64_t tok_pair_key(int32_t a, int32_t b)
{
    return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
}
static inline size_t tok_pair_slot(uint64_t key, size_t nslots)
{
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdULL;
    key ^= key >> 33;
    return (size_t)key & (nslots - 1);
}
static inline int tok_pairmap_get(const tok_pairmap *m, int32_t a, int32_t b, int32_t *rank,
                                  int32_t *id)
{
    if (!m->nslots) return 0;
    uint64_t key = tok_pair_key(a, b);
    for (size_t i = tok_pair_slot(key, m->nslots);; i = (i + 1) & (m->nslots - 1)) {
        if (m->keys[i] == key) {
            *rank = m->rank[i];
            *id = m->id[i];
            return 1;
        }
        if (m->keys[i] == UINT64_MAX) return 0;
    }
}
void tok_pairmap_free(tok_pairmap *m);

/* UTF-8. tok_utf8_decode() reads one code point of valid UTF-8 at s (len > 0) and returns its
 * byte length. */
static inline size_t tok_utf8_decode(const char *s, size_t len, uint32_t *cp)
{
    const unsigned char *u = (const unsigned char *)s;
    if (u[0] < 0x80 || len < 2) {
        *cp = u[0];
        return 1;
    }
    if (u[0] < 0xE0) {
        *cp = ((uint32_t)(u[0] & 0x1F) << 6) | (u[1] & 0x3F);
        return 2;
    }
    if (u[0] < 0xF0 || len < 4) {
        *cp = ((uint32_t)(u[0] & 0x0F) << 12) | ((uint32_t)(u[1] & 0x3F) << 6) | (u[2] & 0x3F);
        return 3;
    }
    *cp = ((uint32_t)(u[0] & 0x07) << 18) | ((uint32_t)(u[1] & 0x3F) << 12) |
          ((uint32_t)(u[2] & 0x3F) << 6) | (u[3] & 0x3F);
    return 4;
}
static inline size_t tok_utf8_len(unsigned char lead)
{
    return lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4;
}
/* Length of the last code point of s[0..len). */
size_t tok_utf8_last_len(const char *s, size_t len);

/* Replace every maximal invalid subsequence by U+FFFD exactly as Python's
 * bytes.decode("utf-8", errors="replace") does. Returns 0 and leaves *out untouched
 * (NULL) when the text is already valid, 1 when *out (malloc'd) holds the repaired text. */
int tok_utf8_repair(const char *s, size_t len, char **out, size_t *outlen);

/* Character classes with the Rust standard library's definitions. */
int tok_is_whitespace(uint32_t cp);
int tok_is_numeric(uint32_t cp);
int tok_is_alphanumeric(uint32_t cp);
int tok_is_punctuation(uint32_t cp);

/* GPT-2 bytes_to_unicode: byte → code point, and back (-1 for chars outside the alphabet). */
uint32_t tok_byte_to_cp(unsigned char b);
int tok_cp_to_byte(uint32_t cp);

#endif
