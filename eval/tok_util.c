/* tok_util.c — buffers, hash maps, UTF-8 and character classes for the tokenizer. */
#include "tok_util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

void tok_seterr(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ---- buffers ---- */

int tok_buf_reserve(tok_buf *b, size_t extra)
{
    if (b->cap - b->len > extra) return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap - b->len <= extra) {
        if (cap > SIZE_MAX / 2) return -ENOMEM;
        cap *= 2;
    }
    char *p = realloc(b->p, cap);
    if (!p) return -ENOMEM;
    b->p = p;
    b->cap = cap;
    return 0;
}

int tok_buf_put(tok_buf *b, const void *data, size_t n)
{
    int rc = tok_buf_reserve(b, n);
    if (rc) return rc;
    if (n) memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

int tok_buf_putc(tok_buf *b, char c)
{
    return tok_buf_put(b, &c, 1);
}

int tok_buf_put_cp(tok_buf *b, uint32_t cp)
{
    unsigned char u[4];
    utf8proc_ssize_t n = utf8proc_encode_char((utf8proc_int32_t)cp, u);
    return tok_buf_put(b, u, (size_t)n);
}

void tok_buf_free(tok_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

int tok_ids_push(tok_ids *a, int32_t id)
{
    return tok_ids_append(a, &id, 1);
}

int tok_ids_append(tok_ids *a, const int32_t *ids, size_t n)
{
    if (a->cap - a->len < n) {
        size_t cap = a->cap ? a->cap : 64;
        while (cap - a->len < n)
            cap *= 2;
        int32_t *v = realloc(a->v, cap * sizeof *v);
        if (!v) return -ENOMEM;
        a->v = v;
        a->cap = cap;
    }
    if (n) memcpy(a->v + a->len, ids, n * sizeof *ids);
    a->len += n;
    return 0;
}

void tok_ids_free(tok_ids *a)
{
    free(a->v);
    a->v = NULL;
    a->len = a->cap = 0;
}

/* ---- string map (FNV-1a, linear probing, load ≤ 1/2) ---- */

static uint32_t strhash(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

static size_t pow2_at_least(size_t n)
{
    size_t p = 16;
    while (p < n)
        p *= 2;
    return p;
}

int tok_strmap_init(tok_strmap *m, size_t expected)
{
    memset(m, 0, sizeof *m);
    m->nslots = pow2_at_least(expected * 2 + 1);
    m->slots = calloc(m->nslots, sizeof *m->slots);
    return m->slots ? 0 : -ENOMEM;
}

static int strmap_grow(tok_strmap *m)
{
    size_t nslots = m->nslots * 2;
    uint32_t *slots = calloc(nslots, sizeof *slots);
    if (!slots) return -ENOMEM;
    for (size_t e = 0; e < m->n; e++) {
        size_t i = m->ents[e].hash & (nslots - 1);
        while (slots[i])
            i = (i + 1) & (nslots - 1);
        slots[i] = (uint32_t)(e + 1);
    }
    free(m->slots);
    m->slots = slots;
    m->nslots = nslots;
    return 0;
}

static uint32_t *strmap_find(const tok_strmap *m, const char *key, size_t len, uint32_t h)
{
    for (size_t i = h & (m->nslots - 1);; i = (i + 1) & (m->nslots - 1)) {
        uint32_t s = m->slots[i];
        if (!s) return &m->slots[i];
        const struct tok_strmap_entry *e = &m->ents[s - 1];
        if (e->hash == h && e->len == len && !memcmp(m->keys.p + e->off, key, len))
            return &m->slots[i];
    }
}

int tok_strmap_set(tok_strmap *m, const char *key, size_t len, int32_t val)
{
    if (len > UINT32_MAX || m->n >= UINT32_MAX - 1) return -E2BIG;
    if ((m->n + 1) * 2 > m->nslots && strmap_grow(m)) return -ENOMEM;
    uint32_t h = strhash(key, len);
    uint32_t *slot = strmap_find(m, key, len, h);
    if (*slot) {
        m->ents[*slot - 1].val = val;
        return 0;
    }
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 64;
        struct tok_strmap_entry *ents = realloc(m->ents, cap * sizeof *ents);
        if (!ents) return -ENOMEM;
        m->ents = ents;
        m->cap = cap;
    }
    size_t off = m->keys.len;
    if (tok_buf_put(&m->keys, key, len)) return -ENOMEM;
    m->ents[m->n] = (struct tok_strmap_entry){off, (uint32_t)len, h, val};
    *slot = (uint32_t)++m->n;
    return 0;
}

int tok_strmap_get(const tok_strmap *m, const char *key, size_t len, int32_t *val)
{
    if (!m->nslots) return 0;
    uint32_t *slot = strmap_find(m, key, len, strhash(key, len));
    if (!*slot) return 0;
    *val = m->ents[*slot - 1].val;
    return 1;
}

void tok_strmap_free(tok_strmap *m)
{
    free(m->slots);
    free(m->ents);
    tok_buf_free(&m->keys);
    memset(m, 0, sizeof *m);
}

/* ---- pair map ---- */

int tok_pairmap_init(tok_pairmap *m, size_t expected)
{
    memset(m, 0, sizeof *m);
    m->nslots = pow2_at_least(expected * 2 + 1);
    m->keys = malloc(m->nslots * sizeof *m->keys);
    m->rank = malloc(m->nslots * sizeof *m->rank);
    m->id = malloc(m->nslots * sizeof *m->id);
    if (!m->keys || !m->rank || !m->id) {
        tok_pairmap_free(m);
        return -ENOMEM;
    }
    memset(m->keys, 0xff, m->nslots * sizeof *m->keys);
    return 0;
}

int tok_pairmap_add(tok_pairmap *m, int32_t a, int32_t b, int32_t rank, int32_t id)
{
    if ((m->n + 1) * 2 > m->nslots) return -E2BIG; /* sized up front from the merges count */
    uint64_t key = tok_pair_key(a, b);
    size_t i = tok_pair_slot(key, m->nslots);
    while (m->keys[i] != UINT64_MAX) {
        if (m->keys[i] == key) {
            m->rank[i] = rank;
            m->id[i] = id;
            return 0;
        }
        i = (i + 1) & (m->nslots - 1);
    }
    m->keys[i] = key;
    m->rank[i] = rank;
    m->id[i] = id;
    m->n++;
    return 0;
}

void tok_pairmap_free(tok_pairmap *m)
{
    free(m->keys);
    free(m->rank);
    free(m->id);
    memset(m, 0, sizeof *m);
}

/* ---- UTF-8 ---- */

size_t tok_utf8_last_len(const char *s, size_t len)
{
    size_t n = 1;
    while (n < len && n < 4 && ((unsigned char)s[len - n] & 0xC0) == 0x80)
        n++;
    return n;
}

/* Length of the valid sequence at s, or -(length of the maximal invalid subpart). */
static long utf8_check(const unsigned char *s, size_t len)
{
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
        need = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else
        return -1;
    size_t i = 1;
    for (; i < need; i++) {
        if (i >= len) return -(long)i;
        unsigned char lo_i = i == 1 ? lo : 0x80, hi_i = i == 1 ? hi : 0xBF;
        if (s[i] < lo_i || s[i] > hi_i) return -(long)i;
    }
    return (long)need;
}

int tok_utf8_repair(const char *s, size_t len, char **out, size_t *outlen)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        long n = utf8_check(u + i, len - i);
        if (n < 0) break;
        i += (size_t)n;
    }
    *out = NULL;
    if (i == len) return 0;
    tok_buf b = {0};
    if (tok_buf_reserve(&b, len + len / 2 + 16) || tok_buf_put(&b, s, i)) goto oom;
    while (i < len) {
        long n = utf8_check(u + i, len - i);
        if (n > 0) {
            if (tok_buf_put(&b, s + i, (size_t)n)) goto oom;
            i += (size_t)n;
        } else {
            if (tok_buf_put(&b, "\xEF\xBF\xBD", 3)) goto oom;
            i += (size_t)-n;
        }
    }
    *out = b.p;
    *outlen = b.len;
    return 1;
oom:
    tok_buf_free(&b);
    return -ENOMEM;
}

/* ---- character classes ---- */

int tok_is_whitespace(uint32_t c)
{
    /* Unicode White_Space, which is what Rust's char::is_whitespace tests. */
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

int tok_is_numeric(uint32_t c)
{
    if (c < 0x80) return c >= '0' && c <= '9';
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return k == UTF8PROC_CATEGORY_ND || k == UTF8PROC_CATEGORY_NL || k == UTF8PROC_CATEGORY_NO;
}

int tok_is_alphanumeric(uint32_t c)
{
    if (c < 0x80) return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z');
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return (k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO) || tok_is_numeric(c);
}

int tok_is_punctuation(uint32_t c)
{
    if (c < 0x80)
        return (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) || (c >= 0x5B && c <= 0x60) ||
               (c >= 0x7B && c <= 0x7E);
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return k >= UTF8PROC_CATEGORY_PC && k <= UTF8PROC_CATEGORY_PO;
}

/* ---- GPT-2 byte alphabet ---- */

static int byte_is_printable(unsigned b)
{
    return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
}

uint32_t tok_byte_to_cp(unsigned char b)
{
    if (byte_is_printable(b)) return b;
    /* The non-printable bytes are numbered in byte order from U+0100. */
    uint32_t k = 0;
    for (unsigned i = 0; i < b; i++)
        k += !byte_is_printable(i);
    return 0x100 + k;
}

int tok_cp_to_byte(uint32_t cp)
{
    if (cp < 0x100) return byte_is_printable(cp) ? (int)cp : -1;
    uint32_t k = cp - 0x100;
    for (unsigned b = 0; b < 256; b++)
        if (!byte_is_printable(b) && k-- == 0) return (int)b;
    return -1;
}
