/* tok_norm.c — normalizer nodes. */
#include "tok_norm.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tok_charsmap.h"
#include "tok_regex.h"

enum norm_kind { N_UNICODE, N_LOWER, N_STRIP, N_PREPEND, N_REPLACE, N_SEQ, N_PRECOMPILED };

struct tok_norm {
    enum norm_kind kind;
    int uflags; /* N_UNICODE: utf8proc options */
    int strip_left, strip_right;
    char *str; /* N_PREPEND: the prefix; N_REPLACE: literal pattern or NULL */
    size_t str_len;
    tok_regex re;  /* N_REPLACE with a Regex pattern */
    char *content; /* N_REPLACE */
    size_t content_len;
    tok_charsmap map; /* N_PRECOMPILED (no units: an empty map, a no-op) */
    tok_norm **kids;  /* N_SEQ */
    size_t n_kids;
};

static int dup_field(json_t *node, const char *key, const char *path, char **out, size_t *len,
                     char *err, size_t errlen)
{
    json_t *v = json_object_get(node, key);
    if (!json_is_string(v)) {
        tok_seterr(err, errlen, "%s: field \"%s\" is missing or not a string", path, key);
        return -EINVAL;
    }
    *len = json_string_length(v);
    *out = malloc(*len + 1);
    if (!*out) return -ENOMEM;
    memcpy(*out, json_string_value(v), *len + 1);
    return 0;
}

static int load_replace(tok_norm *n, json_t *node, const char *path, char *err, size_t errlen)
{
    json_t *pat = json_object_get(node, "pattern");
    json_t *s = json_object_get(pat, "String"), *r = json_object_get(pat, "Regex");
    int rc = dup_field(node, "content", path, &n->content, &n->content_len, err, errlen);
    if (rc) return rc;
    if (json_is_string(s)) return dup_field(pat, "String", path, &n->str, &n->str_len, err, errlen);
    if (json_is_string(r))
        return tok_regex_compile(&n->re, json_string_value(r), json_string_length(r), path, err,
                                 errlen);
    tok_seterr(err, errlen, "%s: Replace needs pattern {\"String\": ...} or {\"Regex\": ...}",
               path);
    return -EINVAL;
}

static int load_seq(tok_norm *n, json_t *node, const char *path, char *err, size_t errlen)
{
    json_t *arr = json_object_get(node, "normalizers");
    if (!json_is_array(arr)) {
        tok_seterr(err, errlen, "%s: Sequence needs a \"normalizers\" array", path);
        return -EINVAL;
    }
    n->kids = calloc(json_array_size(arr) + 1, sizeof *n->kids);
    if (!n->kids) return -ENOMEM;
    for (size_t i = 0; i < json_array_size(arr); i++) {
        char sub[256];
        snprintf(sub, sizeof sub, "%s.normalizers[%zu]", path, i);
        int rc = tok_norm_load(json_array_get(arr, i), sub, &n->kids[n->n_kids], err, errlen);
        if (rc) return rc;
        if (n->kids[n->n_kids]) n->n_kids++;
    }
    return 0;
}

static int load_kind(tok_norm *n, const char *type, json_t *node, const char *path, char *err,
                     size_t errlen)
{
    n->kind = N_UNICODE;
    if (!strcmp(type, "NFC"))
        n->uflags = UTF8PROC_STABLE | UTF8PROC_COMPOSE;
    else if (!strcmp(type, "NFD"))
        n->uflags = UTF8PROC_STABLE | UTF8PROC_DECOMPOSE;
    else if (!strcmp(type, "NFKC"))
        n->uflags = UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT;
    else if (!strcmp(type, "NFKD"))
        n->uflags = UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT;
    else if (!strcmp(type, "Lowercase"))
        n->kind = N_LOWER;
    else if (!strcmp(type, "Strip")) {
        n->kind = N_STRIP;
        json_t *l = json_object_get(node, "strip_left"), *r = json_object_get(node, "strip_right");
        n->strip_left = l ? json_is_true(l) : 1;
        n->strip_right = r ? json_is_true(r) : 1;
    } else if (!strcmp(type, "Prepend")) {
        n->kind = N_PREPEND;
        return dup_field(node, "prepend", path, &n->str, &n->str_len, err, errlen);
    } else if (!strcmp(type, "Replace")) {
        n->kind = N_REPLACE;
        return load_replace(n, node, path, err, errlen);
    } else if (!strcmp(type, "Sequence")) {
        n->kind = N_SEQ;
        return load_seq(n, node, path, err, errlen);
    } else if (!strcmp(type, "Precompiled")) {
        json_t *cm = json_object_get(node, "precompiled_charsmap");
        n->kind = N_PRECOMPILED;
        if (!cm || json_is_null(cm) || !json_string_length(cm)) return 0;
        if (!json_is_string(cm)) {
            tok_seterr(err, errlen, "%s: precompiled_charsmap is not a string", path);
            return -EINVAL;
        }
        return tok_charsmap_load(&n->map, json_string_value(cm), json_string_length(cm), path, err,
                                 errlen);
    } else {
        tok_seterr(err, errlen, "%s: normalizer type \"%s\" is not supported", path, type);
        return -ENOTSUP;
    }
    return 0;
}

int tok_norm_load(json_t *node, const char *path, tok_norm **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!node || json_is_null(node)) return 0;
    const char *type = json_string_value(json_object_get(node, "type"));
    if (!type) {
        tok_seterr(err, errlen, "%s: normalizer without a \"type\"", path);
        return -EINVAL;
    }
    tok_norm *n = calloc(1, sizeof *n);
    if (!n) return -ENOMEM;
    int rc = load_kind(n, type, node, path, err, errlen);
    if (rc) {
        if (rc == -ENOMEM) tok_seterr(err, errlen, "%s: out of memory", path);
        tok_norm_free(n);
        return rc;
    }
    *out = n;
    return 0;
}

void tok_norm_free(tok_norm *n)
{
    if (!n) return;
    for (size_t i = 0; i < n->n_kids; i++)
        tok_norm_free(n->kids[i]);
    free(n->kids);
    free(n->str);
    free(n->content);
    tok_regex_free(&n->re);
    tok_charsmap_free(&n->map);
    free(n);
}

/* ---- application ---- */

static int apply_unicode(int flags, const char *s, size_t len, tok_buf *out)
{
    if (!len) return 0;
    utf8proc_uint8_t *dst = NULL;
    utf8proc_ssize_t n = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)len, &dst,
                                      (utf8proc_option_t)flags);
    if (n < 0) return n == UTF8PROC_ERROR_NOMEM ? -ENOMEM : -EILSEQ;
    int rc = tok_buf_put(out, dst, (size_t)n);
    free(dst);
    return rc;
}

static int apply_lower(const char *s, size_t len, tok_buf *out)
{
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        i += tok_utf8_decode(s + i, len - i, &cp);
        int rc;
        if (cp == 0x130) /* the one unconditional multi-character lowercase mapping */
            rc = tok_buf_put(out, "i\xCC\x87", 3);
        else
            rc = tok_buf_put_cp(out, (uint32_t)utf8proc_tolower((utf8proc_int32_t)cp));
        if (rc) return rc;
    }
    return 0;
}

static int apply_strip(const tok_norm *n, const char *s, size_t len, tok_buf *out)
{
    size_t a = 0, b = len;
    uint32_t cp;
    while (n->strip_left && a < b) {
        size_t k = tok_utf8_decode(s + a, b - a, &cp);
        if (!tok_is_whitespace(cp)) break;
        a += k;
    }
    while (n->strip_right && b > a) {
        size_t k = tok_utf8_last_len(s + a, b - a);
        tok_utf8_decode(s + b - k, k, &cp);
        if (!tok_is_whitespace(cp)) break;
        b -= k;
    }
    return tok_buf_put(out, s + a, b - a);
}

static int apply_replace(const tok_norm *n, const char *s, size_t len, tok_buf *out)
{
    size_t pos = 0;
    pcre2_match_data *md = NULL;
    if (!n->str && !(md = tok_regex_match_data(&n->re))) return -ENOMEM;
    int rc = 0;
    while (pos < len) {
        size_t ms, me;
        int found;
        if (n->str) {
            const char *hit = n->str_len ? memmem(s + pos, len - pos, n->str, n->str_len) : NULL;
            found = hit != NULL;
            if (found) {
                ms = (size_t)(hit - s);
                me = ms + n->str_len;
            }
        } else if ((found = tok_regex_next(&n->re, md, s, len, pos, &ms, &me)) < 0) {
            rc = found;
            break;
        }
        if (!found) break;
        if ((rc = tok_buf_put(out, s + pos, ms - pos)) ||
            (rc = tok_buf_put(out, n->content, n->content_len)))
            break;
        pos = me;
    }
    if (!rc) rc = tok_buf_put(out, s + pos, len - pos);
    pcre2_match_data_free(md);
    return rc;
}

static int apply_seq(const tok_norm *n, const char *s, size_t len, tok_buf *out)
{
    tok_buf a = {0};
    int rc = tok_buf_put(out, s, len);
    for (size_t i = 0; i < n->n_kids && !rc; i++) {
        tok_buf t = *out;
        *out = a;
        rc = tok_norm_apply(n->kids[i], t.p, t.len, out);
        a = t;
    }
    tok_buf_free(&a);
    return rc;
}

int tok_norm_apply(const tok_norm *n, const char *s, size_t len, tok_buf *out)
{
    out->len = 0;
    int rc = tok_buf_reserve(out, len + 8);
    if (rc) return rc;
    out->p[0] = '\0';
    switch (n->kind) {
    case N_UNICODE:
        return apply_unicode(n->uflags, s, len, out);
    case N_LOWER:
        return apply_lower(s, len, out);
    case N_STRIP:
        return apply_strip(n, s, len, out);
    case N_PREPEND:
        if (len && (rc = tok_buf_put(out, n->str, n->str_len))) return rc;
        return tok_buf_put(out, s, len);
    case N_REPLACE:
        return apply_replace(n, s, len, out);
    case N_SEQ:
        return apply_seq(n, s, len, out);
    case N_PRECOMPILED:
        return n->map.n_units ? tok_charsmap_apply(&n->map, s, len, out) : tok_buf_put(out, s, len);
    }
    return -EINVAL;
}
