/* tok_post.c — post-processors (special tokens) and decoders. */
#include "tok_post.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- post-processors: compiled to a flat template: ids before, the sequence, ids after ---- */

struct tok_post {
    tok_ids before, after;
    int has_template; /* 0: ByteLevel only, ids unchanged */
};

static int special_ids(json_t *specials, const char *name, tok_ids *dst, const char *path,
                       char *err, size_t errlen)
{
    json_t *sp = json_object_get(specials, name);
    json_t *ids = json_object_get(sp, "ids");
    if (!json_is_array(ids)) {
        tok_seterr(err, errlen, "%s: special token \"%s\" is not in special_tokens", path, name);
        return -EINVAL;
    }
    for (size_t i = 0; i < json_array_size(ids); i++) {
        json_t *v = json_array_get(ids, i);
        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            json_integer_value(v) >= (json_int_t)TOK_MAX_VOCAB) {
            tok_seterr(err, errlen, "%s: special token \"%s\" has a bad id", path, name);
            return -EINVAL;
        }
        if (tok_ids_push(dst, (int32_t)json_integer_value(v))) return -ENOMEM;
    }
    return 0;
}

static int load_template(tok_post *p, json_t *node, const char *path, char *err, size_t errlen)
{
    json_t *single = json_object_get(node, "single");
    json_t *specials = json_object_get(node, "special_tokens");
    if (!json_is_array(single)) {
        tok_seterr(err, errlen, "%s: TemplateProcessing needs a \"single\" array", path);
        return -EINVAL;
    }
    int seen_seq = 0;
    for (size_t i = 0; i < json_array_size(single); i++) {
        json_t *it = json_array_get(single, i);
        json_t *st = json_object_get(it, "SpecialToken"), *sq = json_object_get(it, "Sequence");
        if (sq) {
            if (seen_seq++) {
                tok_seterr(err, errlen, "%s: \"single\" uses the sequence twice", path);
                return -EINVAL;
            }
            continue;
        }
        const char *name = json_string_value(json_object_get(st, "id"));
        if (!name) {
            tok_seterr(err, errlen, "%s: single[%zu] is neither SpecialToken nor Sequence", path,
                       i);
            return -EINVAL;
        }
        int rc = special_ids(specials, name, seen_seq ? &p->after : &p->before, path, err, errlen);
        if (rc) return rc;
    }
    p->has_template = 1;
    return 0;
}

/* RobertaProcessing / BertProcessing: "cls": [token, id], "sep": [token, id]. */
static int load_clssep(tok_post *p, json_t *node, const char *path, char *err, size_t errlen)
{
    json_t *cls = json_object_get(node, "cls"), *sep = json_object_get(node, "sep");
    json_t *ci = json_array_get(cls, 1), *si = json_array_get(sep, 1);
    if (!json_is_integer(ci) || !json_is_integer(si)) {
        tok_seterr(err, errlen, "%s: needs \"cls\" and \"sep\" as [token, id]", path);
        return -EINVAL;
    }
    if (tok_ids_push(&p->before, (int32_t)json_integer_value(ci)) ||
        tok_ids_push(&p->after, (int32_t)json_integer_value(si)))
        return -ENOMEM;
    p->has_template = 1;
    return 0;
}

static int load_post_node(tok_post *p, json_t *node, const char *path, char *err, size_t errlen);

static int load_post_seq(tok_post *p, json_t *node, const char *path, char *err, size_t errlen)
{
    json_t *arr = json_object_get(node, "processors");
    if (!json_is_array(arr)) {
        tok_seterr(err, errlen, "%s: Sequence needs a \"processors\" array", path);
        return -EINVAL;
    }
    for (size_t i = 0; i < json_array_size(arr); i++) {
        char sub[256];
        snprintf(sub, sizeof sub, "%s.processors[%zu]", path, i);
        tok_post k = {0};
        int rc = load_post_node(&k, json_array_get(arr, i), sub, err, errlen);
        /* Each template wraps what the previous ones produced. */
        if (!rc && k.has_template) {
            tok_ids before = {0};
            if (tok_ids_append(&before, k.before.v, k.before.len) ||
                tok_ids_append(&before, p->before.v, p->before.len) ||
                tok_ids_append(&p->after, k.after.v, k.after.len))
                rc = -ENOMEM;
            tok_ids_free(&p->before);
            p->before = before;
            p->has_template = 1;
        }
        tok_ids_free(&k.before);
        tok_ids_free(&k.after);
        if (rc) return rc;
    }
    return 0;
}

static int load_post_node(tok_post *p, json_t *node, const char *path, char *err, size_t errlen)
{
    const char *type = json_string_value(json_object_get(node, "type"));
    if (!type) {
        tok_seterr(err, errlen, "%s: post-processor without a \"type\"", path);
        return -EINVAL;
    }
    if (!strcmp(type, "TemplateProcessing")) return load_template(p, node, path, err, errlen);
    if (!strcmp(type, "ByteLevel")) return 0;
    if (!strcmp(type, "RobertaProcessing") || !strcmp(type, "BertProcessing"))
        return load_clssep(p, node, path, err, errlen);
    if (!strcmp(type, "Sequence")) return load_post_seq(p, node, path, err, errlen);
    tok_seterr(err, errlen, "%s: post-processor type \"%s\" is not supported", path, type);
    return -ENOTSUP;
}

int tok_post_load(json_t *node, const char *path, tok_post **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!node || json_is_null(node)) return 0;
    tok_post *p = calloc(1, sizeof *p);
    if (!p) return -ENOMEM;
    int rc = load_post_node(p, node, path, err, errlen);
    if (rc) {
        if (rc == -ENOMEM) tok_seterr(err, errlen, "%s: out of memory", path);
        tok_post_free(p);
        return rc;
    }
    *out = p;
    return 0;
}

void tok_post_free(tok_post *p)
{
    if (!p) return;
    tok_ids_free(&p->before);
    tok_ids_free(&p->after);
    free(p);
}

int tok_post_apply(const tok_post *p, const int32_t *ids, size_t n, tok_ids *out)
{
    if (p && tok_ids_append(out, p->before.v, p->before.len)) return -ENOMEM;
    if (tok_ids_append(out, ids, n)) return -ENOMEM;
    if (p && tok_ids_append(out, p->after.v, p->after.len)) return -ENOMEM;
    return 0;
}

int32_t tok_post_first_special(const tok_post *p)
{
    return p && p->before.len ? p->before.v[0] : -1;
}

int32_t tok_post_last_special(const tok_post *p)
{
    return p && p->after.len ? p->after.v[p->after.len - 1] : -1;
}

/* ---- token lists ---- */

int tok_strs_add(tok_strs *s, const char *p, size_t len)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        size_t *o = realloc(s->off, cap * sizeof *o);
        if (!o) return -ENOMEM;
        s->off = o;
        size_t *l = realloc(s->len, cap * sizeof *l);
        if (!l) return -ENOMEM;
        s->len = l;
        s->cap = cap;
    }
    s->off[s->n] = s->text.len;
    s->len[s->n] = len;
    if (tok_buf_put(&s->text, p, len)) return -ENOMEM;
    s->n++;
    return 0;
}

void tok_strs_free(tok_strs *s)
{
    tok_buf_free(&s->text);
    free(s->off);
    free(s->len);
    memset(s, 0, sizeof *s);
}

#define STR(s, i) ((s)->text.p + (s)->off[i])

/* ---- decoders ---- */

enum dec_kind {
    D_BYTELEVEL,
    D_METASPACE,
    D_REPLACE,
    D_BYTEFALLBACK,
    D_FUSE,
    D_STRIP,
    D_BPE,
    D_SEQ
};

struct tok_dec {
    enum dec_kind kind;
    char *a,
        *b; /* Replace: pattern, content; Strip: content; Metaspace: replacement; BPE: suffix */
    size_t alen, blen;
    int start, stop; /* Strip */
    int prepend;     /* Metaspace: 0 always 1 first 2 never */
    tok_dec **kids;
    size_t n_kids;
};

static int dup_str(json_t *v, char **out, size_t *len)
{
    *len = json_string_length(v);
    *out = malloc(*len + 1);
    if (!*out) return -ENOMEM;
    memcpy(*out, json_string_value(v), *len + 1);
    return 0;
}

static int load_dec_node(json_t *node, const char *path, tok_dec **out, char *err, size_t errlen);

static int load_dec_seq(tok_dec *d, json_t *node, const char *path, char *err, size_t errlen)
{
    json_t *arr = json_object_get(node, "decoders");
    if (!json_is_array(arr)) {
        tok_seterr(err, errlen, "%s: Sequence needs a \"decoders\" array", path);
        return -EINVAL;
    }
    d->kids = calloc(json_array_size(arr) + 1, sizeof *d->kids);
    if (!d->kids) return -ENOMEM;
    for (size_t i = 0; i < json_array_size(arr); i++) {
        char sub[256];
        snprintf(sub, sizeof sub, "%s.decoders[%zu]", path, i);
        int rc = load_dec_node(json_array_get(arr, i), sub, &d->kids[d->n_kids], err, errlen);
        if (rc) return rc;
        d->n_kids++;
    }
    return 0;
}

static int load_dec_kind(tok_dec *d, const char *type, json_t *node, const char *path, char *err,
                         size_t errlen)
{
    if (!strcmp(type, "ByteLevel"))
        d->kind = D_BYTELEVEL;
    else if (!strcmp(type, "ByteFallback"))
        d->kind = D_BYTEFALLBACK;
    else if (!strcmp(type, "Fuse"))
        d->kind = D_FUSE;
    else if (!strcmp(type, "Sequence")) {
        d->kind = D_SEQ;
        return load_dec_seq(d, node, path, err, errlen);
    } else if (!strcmp(type, "Replace")) {
        json_t *s = json_object_get(json_object_get(node, "pattern"), "String");
        json_t *c = json_object_get(node, "content");
        d->kind = D_REPLACE;
        if (!json_is_string(s) || !json_is_string(c)) {
            tok_seterr(err, errlen, "%s: Replace decoder needs pattern.String and content", path);
            return -EINVAL;
        }
        return dup_str(s, &d->a, &d->alen) || dup_str(c, &d->b, &d->blen) ? -ENOMEM : 0;
    } else if (!strcmp(type, "Strip")) {
        json_t *c = json_object_get(node, "content");
        d->kind = D_STRIP;
        d->start = (int)json_integer_value(json_object_get(node, "start"));
        d->stop = (int)json_integer_value(json_object_get(node, "stop"));
        if (!json_is_string(c)) {
            tok_seterr(err, errlen, "%s: Strip decoder needs a \"content\"", path);
            return -EINVAL;
        }
        return dup_str(c, &d->a, &d->alen);
    } else if (!strcmp(type, "Metaspace")) {
        json_t *r = json_object_get(node, "replacement");
        json_t *sch = json_object_get(node, "prepend_scheme");
        json_t *aps = json_object_get(node, "add_prefix_space");
        d->kind = D_METASPACE;
        const char *scheme = json_string_value(sch);
        d->prepend = scheme ? (!strcmp(scheme, "never")   ? 2
                               : !strcmp(scheme, "first") ? 1
                                                          : 0)
                            : (aps && !json_is_true(aps) ? 2 : 0);
        if (!json_is_string(r)) {
            d->a = strdup("\xE2\x96\x81");
            d->alen = 3;
            return d->a ? 0 : -ENOMEM;
        }
        return dup_str(r, &d->a, &d->alen);
    } else if (!strcmp(type, "BPEDecoder")) {
        json_t *s = json_object_get(node, "suffix");
        d->kind = D_BPE;
        if (!json_is_string(s)) {
            d->a = strdup("</w>");
            d->alen = 4;
            return d->a ? 0 : -ENOMEM;
        }
        return dup_str(s, &d->a, &d->alen);
    } else {
        tok_seterr(err, errlen, "%s: decoder type \"%s\" is not supported", path, type);
        return -ENOTSUP;
    }
    return 0;
}

static int load_dec_node(json_t *node, const char *path, tok_dec **out, char *err, size_t errlen)
{
    *out = NULL;
    const char *type = json_string_value(json_object_get(node, "type"));
    if (!type) {
        tok_seterr(err, errlen, "%s: decoder without a \"type\"", path);
        return -EINVAL;
    }
    tok_dec *d = calloc(1, sizeof *d);
    if (!d) return -ENOMEM;
    int rc = load_dec_kind(d, type, node, path, err, errlen);
    if (rc) {
        if (rc == -ENOMEM) tok_seterr(err, errlen, "%s: out of memory", path);
        tok_dec_free(d);
        return rc;
    }
    *out = d;
    return 0;
}

int tok_dec_load(json_t *node, const char *path, tok_dec **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!node || json_is_null(node)) return 0;
    return load_dec_node(node, path, out, err, errlen);
}

void tok_dec_free(tok_dec *d)
{
    if (!d) return;
    for (size_t i = 0; i < d->n_kids; i++)
        tok_dec_free(d->kids[i]);
    free(d->kids);
    free(d->a);
    free(d->b);
    free(d);
}

/* Replace every occurrence of pat (plen > 0) in s by rep, appending to b. */
static int put_replaced(tok_buf *b, const char *s, size_t n, const char *pat, size_t plen,
                        const char *rep, size_t rlen)
{
    size_t pos = 0;
    const char *hit;
    while (plen && (hit = memmem(s + pos, n - pos, pat, plen))) {
        size_t at = (size_t)(hit - s);
        if (tok_buf_put(b, s + pos, at - pos) || tok_buf_put(b, rep, rlen)) return -ENOMEM;
        pos = at + plen;
    }
    return tok_buf_put(b, s + pos, n - pos);
}

static int byte_token(const char *s, size_t n)
{
    if (n != 6 || memcmp(s, "<0x", 3) || s[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                       : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

static int flush_bytes(tok_strs *out, tok_buf *bytes)
{
    if (!bytes->len) return 0;
    char *fixed;
    size_t flen;
    int rc = tok_utf8_repair(bytes->p, bytes->len, &fixed, &flen);
    if (rc < 0) return rc;
    if (rc == 0)
        rc = tok_strs_add(out, bytes->p, bytes->len);
    else {
        /* The library replaces every byte of an invalid run, not each maximal subpart. */
        free(fixed);
        rc = 0;
        for (size_t i = 0; i < bytes->len && !rc; i++)
            rc = tok_strs_add(out, "\xEF\xBF\xBD", 3);
    }
    bytes->len = 0;
    return rc;
}

static int dec_bytefallback(tok_strs *in, tok_strs *out)
{
    tok_buf bytes = {0};
    int rc = 0;
    for (size_t i = 0; i < in->n && !rc; i++) {
        int v = byte_token(STR(in, i), in->len[i]);
        if (v >= 0) {
            char c = (char)v;
            rc = tok_buf_put(&bytes, &c, 1);
            continue;
        }
        rc = flush_bytes(out, &bytes);
        if (!rc) rc = tok_strs_add(out, STR(in, i), in->len[i]);
    }
    if (!rc) rc = flush_bytes(out, &bytes);
    tok_buf_free(&bytes);
    return rc;
}

static int dec_bytelevel(tok_strs *in, tok_strs *out)
{
    tok_buf b = {0};
    int rc = 0;
    for (size_t i = 0; i < in->n && !rc; i++) {
        const char *s = STR(in, i);
        size_t n = in->len[i], start = b.len;
        for (size_t j = 0; j < n && !rc;) {
            uint32_t cp;
            j += tok_utf8_decode(s + j, n - j, &cp);
            int byte = tok_cp_to_byte(cp);
            if (byte < 0) { /* not byte-level text: the token's own bytes */
                b.len = start;
                rc = tok_buf_put(&b, s, n);
                break;
            }
            char c = (char)byte;
            rc = tok_buf_put(&b, &c, 1);
        }
    }
    char *fixed = NULL;
    size_t flen;
    if (!rc && (rc = tok_utf8_repair(b.p ? b.p : "", b.len, &fixed, &flen)) >= 0)
        rc = rc ? tok_strs_add(out, fixed, flen) : tok_strs_add(out, b.p ? b.p : "", b.len);
    free(fixed);
    tok_buf_free(&b);
    return rc;
}

static int dec_each(const tok_dec *d, tok_strs *in, tok_strs *out)
{
    tok_buf b = {0};
    int rc = 0;
    for (size_t i = 0; i < in->n && !rc; i++) {
        const char *s = STR(in, i);
        size_t n = in->len[i];
        b.len = 0;
        if (d->kind == D_REPLACE)
            rc = put_replaced(&b, s, n, d->a, d->alen, d->b, d->blen);
        else if (d->kind == D_METASPACE)
            rc = put_replaced(&b, s, n, d->a, d->alen, (i == 0 && d->prepend != 2) ? "" : " ",
                              (i == 0 && d->prepend != 2) ? 0 : 1);
        else if (d->kind == D_BPE)
            rc = put_replaced(&b, s, n, d->a, d->alen, i + 1 == in->n ? "" : " ",
                              i + 1 == in->n ? 0 : 1);
        else { /* D_STRIP */
            size_t a = 0, e = n;
            for (int k = 0; k < d->start && e - a >= d->alen && !memcmp(s + a, d->a, d->alen); k++)
                a += d->alen;
            for (int k = 0;
                 k < d->stop && e - a >= d->alen && !memcmp(s + e - d->alen, d->a, d->alen); k++)
                e -= d->alen;
            rc = tok_buf_put(&b, s + a, e - a);
        }
        if (!rc) rc = tok_strs_add(out, b.p ? b.p : "", b.len);
    }
    tok_buf_free(&b);
    return rc;
}

static int dec_chain(const tok_dec *d, tok_strs *in, tok_strs *out)
{
    switch (d->kind) {
    case D_BYTELEVEL:
        return dec_bytelevel(in, out);
    case D_BYTEFALLBACK:
        return dec_bytefallback(in, out);
    case D_FUSE:
        return tok_strs_add(out, in->text.p ? in->text.p : "", in->text.len);
    case D_SEQ: {
        tok_strs a = {0}, b = {0};
        int rc = 0;
        for (size_t i = 0; i < in->n && !rc; i++)
            rc = tok_strs_add(&a, STR(in, i), in->len[i]);
        for (size_t k = 0; k < d->n_kids && !rc; k++) {
            tok_strs_free(&b);
            rc = dec_chain(d->kids[k], &a, &b);
            tok_strs t = a;
            a = b;
            b = t;
        }
        for (size_t i = 0; i < a.n && !rc; i++)
            rc = tok_strs_add(out, STR(&a, i), a.len[i]);
        tok_strs_free(&a);
        tok_strs_free(&b);
        return rc;
    }
    default:
        return dec_each(d, in, out);
    }
}

int tok_dec_apply(const tok_dec *d, tok_strs *tokens, tok_buf *out)
{
    out->len = 0;
    int rc = tok_buf_reserve(out, 1);
    if (rc) return rc;
    out->p[0] = '\0';
    tok_strs res = {0};
    if (d) rc = dec_chain(d, tokens, &res);
    for (size_t i = 0; i < (d ? res.n : tokens->n) && !rc; i++) {
        const tok_strs *s = d ? &res : tokens;
        if (!d && i && tok_buf_putc(out, ' '))
            rc = -ENOMEM;
        else
            rc = tok_buf_put(out, STR(s, i), s->len[i]);
    }
    tok_strs_free(&res);
    return rc;
}
