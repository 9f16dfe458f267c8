/* tok_charsmap.c — precompiled charsmap: base64, double-array trie, grapheme-wise rewrite. */
#include "tok_charsmap.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

static int b64val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

static int b64_decode(const char *s, size_t len, unsigned char **out, size_t *outlen)
{
    unsigned char *o = malloc(len / 4 * 3 + 3);
    if (!o) return -ENOMEM;
    size_t n = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len && s[i] != '='; i++) {
        int v = b64val((unsigned char)s[i]);
        if (v < 0) {
            free(o);
            return -EINVAL;
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            o[n++] = (unsigned char)(acc >> bits);
        }
    }
    *out = o;
    *outlen = n;
    return 0;
}

int tok_charsmap_load(tok_charsmap *m, const char *b64, size_t len, const char *path, char *err,
                      size_t errlen)
{
    memset(m, 0, sizeof *m);
    unsigned char *raw;
    size_t n;
    int rc = b64_decode(b64, len, &raw, &n);
    if (rc) {
        tok_seterr(err, errlen, "%s: precompiled_charsmap is not base64", path);
        return rc;
    }
    uint32_t trie_bytes = n >= 4 ? (uint32_t)raw[0] | (uint32_t)raw[1] << 8 |
                                       (uint32_t)raw[2] << 16 | (uint32_t)raw[3] << 24
                                 : 0;
    if (n < 4 || trie_bytes % 4 || trie_bytes > n - 4 || trie_bytes < 4) {
        tok_seterr(err, errlen, "%s: precompiled_charsmap is truncated or malformed", path);
        free(raw);
        return -EINVAL;
    }
    m->n_units = trie_bytes / 4;
    m->unit = malloc(trie_bytes);
    m->repl_len = n - 4 - trie_bytes;
    m->repl = malloc(m->repl_len + 1);
    if (!m->unit || !m->repl) {
        free(raw);
        tok_charsmap_free(m);
        return -ENOMEM;
    }
    for (size_t i = 0; i < m->n_units; i++) {
        const unsigned char *u = raw + 4 + 4 * i;
        m->unit[i] =
            (uint32_t)u[0] | (uint32_t)u[1] << 8 | (uint32_t)u[2] << 16 | (uint32_t)u[3] << 24;
    }
    memcpy(m->repl, raw + 4 + trie_bytes, m->repl_len);
    m->repl[m->repl_len] = '\0';
    free(raw);
    /* The replacements go into text that later stages assume to be valid UTF-8. */
    char *fixed;
    size_t flen;
    rc = tok_utf8_repair(m->repl, m->repl_len, &fixed, &flen);
    if (rc) {
        free(fixed);
        tok_charsmap_free(m);
        if (rc > 0)
            tok_seterr(err, errlen, "%s: precompiled_charsmap replacements are not UTF-8", path);
        return rc > 0 ? -EINVAL : rc;
    }
    return 0;
}

void tok_charsmap_free(tok_charsmap *m)
{
    free(m->unit);
    free(m->repl);
    memset(m, 0, sizeof *m);
}

/* darts unit fields */
static uint32_t unit_offset(uint32_t u)
{
    return (u >> 10) << ((u & (1u << 9)) >> 6);
}

/* The value of the shortest key that is a prefix of s, or -1. Bounds are checked: the map
 * comes from the file. */
static long first_prefix(const tok_charsmap *m, const char *s, size_t len)
{
    size_t pos = unit_offset(m->unit[0]);
    for (size_t i = 0; i < len && s[i]; i++) {
        unsigned char c = (unsigned char)s[i];
        pos ^= c;
        if (pos >= m->n_units) return -1;
        uint32_t u = m->unit[pos];
        if ((u & ((1u << 31) | 0xFF)) != c) return -1;
        pos ^= unit_offset(u);
        if (pos >= m->n_units) return -1;
        if ((u >> 8) & 1) return (long)(m->unit[pos] & ((1u << 31) - 1));
    }
    return -1;
}

/* Append the replacement of chunk, or the chunk itself; returns -ENOMEM or 0/1 (replaced). */
static int put_chunk(const tok_charsmap *m, const char *c, size_t n, tok_buf *out, int keep)
{
    long v = first_prefix(m, c, n);
    if (v >= 0 && (size_t)v <= m->repl_len)
        return tok_buf_put(out, m->repl + v, strlen(m->repl + v)) ? -ENOMEM : 1;
    if (!keep) return 0;
    return tok_buf_put(out, c, n) ? -ENOMEM : 0;
}

/* End of the extended grapheme cluster starting at s[i]. */
static size_t grapheme_end(const char *s, size_t len, size_t i)
{
    utf8proc_int32_t state = 0;
    uint32_t prev;
    i += tok_utf8_decode(s + i, len - i, &prev);
    while (i < len) {
        uint32_t cp;
        size_t k = tok_utf8_decode(s + i, len - i, &cp);
        if (utf8proc_grapheme_break_stateful((utf8proc_int32_t)prev, (utf8proc_int32_t)cp, &state))
            break;
        prev = cp;
        i += k;
    }
    return i;
}

int tok_charsmap_apply(const tok_charsmap *m, const char *s, size_t len, tok_buf *out)
{
    for (size_t i = 0; i < len;) {
        size_t e = grapheme_end(s, len, i);
        int rc = e - i < 6 ? put_chunk(m, s + i, e - i, out, 0) : 0;
        if (rc < 0) return rc;
        for (size_t j = i; !rc && j < e;) {
            size_t k = tok_utf8_len((unsigned char)s[j]);
            if (k > e - j) k = e - j;
            if (put_chunk(m, s + j, k, out, 1) < 0) return -ENOMEM;
            j += k;
        }
        i = e;
    }
    return 0;
}
