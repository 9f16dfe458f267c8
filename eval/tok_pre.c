/* tok_pre.c — pre-tokenizer nodes and the library's split behaviours. */
#include "tok_pre.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tok_regex.h"

/* GPT-2's pattern, as the library's ByteLevel pre-tokenizer uses it. */
static const char GPT2_RE[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char WHITESPACE_RE[] = "\\w+|[^\\w\\s]+";

enum pre_kind { P_BYTELEVEL, P_SPLIT, P_METASPACE, P_CHARS, P_SEQ };
enum behavior { B_REMOVED, B_ISOLATED, B_PREV, B_NEXT, B_CONTIGUOUS };
enum char_class { C_NUMERIC, C_PUNCT, C_SPACE, C_DELIM };

struct tok_pre {
    enum pre_kind kind;
    enum behavior behavior;
    int invert;
    /* Split: a regex (re_index >= 0) or a literal string */
    tok_regex re;
    int re_index;
    char *lit;
    size_t lit_len;
    /* ByteLevel */
    int add_prefix_space, use_regex;
    char bytemap[256][2];
    unsigned char bytemap_len[256];
    /* Metaspace: replacement (UTF-8), prepend scheme 0 always 1 first 2 never, split */
    char repl[8];
    size_t repl_len;
    int prepend, msplit;
    /* character-class splits (Digits, Punctuation, WhitespaceSplit, CharDelimiterSplit) */
    enum char_class cclass;
    uint32_t delim;
    /* Sequence; a Bert pre-tokenizer is stored as one too */
    tok_pre **kids;
    size_t n_kids;
    int n_regex; /* root only: how many regexes the tree holds */
};

struct seg {
    size_t a, b;
    int match;
};

struct tok_pre_scratch {
    pcre2_match_data **md;
    size_t n_md;
    struct seg *seg;
    size_t nseg, segcap;
    tok_buf tmp;
};

int tok_pieces_add(tok_pieces *p, const char *s, size_t len, int first)
{
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 64;
        tok_piece *v = realloc(p->v, cap * sizeof *v);
        if (!v) return -ENOMEM;
        p->v = v;
        p->cap = cap;
    }
    size_t off = p->text.len;
    if (tok_buf_put(&p->text, s, len)) return -ENOMEM;
    p->v[p->n++] = (tok_piece){off, len, first};
    return 0;
}

void tok_pieces_free(tok_pieces *p)
{
    tok_buf_free(&p->text);
    free(p->v);
    memset(p, 0, sizeof *p);
}

void tok_pre_scratch_free(tok_pre_scratch *s)
{
    if (!s) return;
    for (size_t i = 0; i < s->n_md; i++)
        pcre2_match_data_free(s->md[i]);
    free(s->md);
    free(s->seg);
    tok_buf_free(&s->tmp);
    free(s);
}

/* ---- loading ---- */

static int load_node(json_t *node, const char *path, tok_pre **out, int *n_regex, char *err,
                     size_t errlen);

static int parse_behavior(json_t *node, const char *path, enum behavior dflt, enum behavior *b,
                          char *err, size_t errlen)
{
    static const char *names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext",
                                  "Contiguous"};
    json_t *v = json_object_get(node, "behavior");
    *b = dflt;
    if (!v) return 0;
    for (int i = 0; i < 5; i++)
        if (json_is_string(v) && !strcmp(json_string_value(v), names[i])) {
            *b = (enum behavior)i;
            return 0;
        }
    tok_seterr(err, errlen, "%s: unknown split behavior %s", path,
               json_is_string(v) ? json_string_value(v) : "(not a string)");
    return -EINVAL;
}

static int use_regex(tok_pre *p, const char *pat, size_t len, const char *path, int *n_regex,
                     char *err, size_t errlen)
{
    int rc = tok_regex_compile(&p->re, pat, len, path, err, errlen);
    if (!rc) p->re_index = (*n_regex)++;
    return rc;
}

static int load_split(tok_pre *p, json_t *node, const char *path, int *n_regex, char *err,
                      size_t errlen)
{
    json_t *pat = json_object_get(node, "pattern");
    json_t *s = json_object_get(pat, "String"), *r = json_object_get(pat, "Regex");
    p->kind = P_SPLIT;
    p->invert = json_is_true(json_object_get(node, "invert"));
    int rc = parse_behavior(node, path, B_REMOVED, &p->behavior, err, errlen);
    if (rc) return rc;
    if (!json_object_get(node, "behavior")) {
        tok_seterr(err, errlen, "%s: Split needs a \"behavior\"", path);
        return -EINVAL;
    }
    if (json_is_string(r))
        return use_regex(p, json_string_value(r), json_string_length(r), path, n_regex, err,
                         errlen);
    if (json_is_string(s)) {
        p->lit_len = json_string_length(s);
        p->lit = malloc(p->lit_len + 1);
        if (!p->lit) return -ENOMEM;
        memcpy(p->lit, json_string_value(s), p->lit_len + 1);
        return 0;
    }
    tok_seterr(err, errlen, "%s: Split needs pattern {\"String\": ...} or {\"Regex\": ...}", path);
    return -EINVAL;
}

static int load_bytelevel(tok_pre *p, json_t *node, const char *path, int *n_regex, char *err,
                          size_t errlen)
{
    p->kind = P_BYTELEVEL;
    json_t *aps = json_object_get(node, "add_prefix_space");
    json_t *ur = json_object_get(node, "use_regex");
    p->add_prefix_space = aps ? json_is_true(aps) : 1;
    p->use_regex = ur ? json_is_true(ur) : 1;
    for (int b = 0; b < 256; b++) {
        tok_buf t = {0};
        if (tok_buf_put_cp(&t, tok_byte_to_cp((unsigned char)b))) return -ENOMEM;
        memcpy(p->bytemap[b], t.p, t.len);
        p->bytemap_len[b] = (unsigned char)t.len;
        tok_buf_free(&t);
    }
    if (p->use_regex) return use_regex(p, GPT2_RE, sizeof GPT2_RE - 1, path, n_regex, err, errlen);
    return 0;
}

static int load_metaspace(tok_pre *p, json_t *node, const char *path, char *err, size_t errlen)
{
    p->kind = P_METASPACE;
    json_t *r = json_object_get(node, "replacement");
    const char *repl = json_is_string(r) ? json_string_value(r) : "\xE2\x96\x81";
    p->repl_len = strlen(repl);
    if (!p->repl_len || p->repl_len != tok_utf8_len((unsigned char)repl[0])) {
        tok_seterr(err, errlen, "%s: Metaspace replacement must be one character", path);
        return -EINVAL;
    }
    memcpy(p->repl, repl, p->repl_len);
    json_t *sch = json_object_get(node, "prepend_scheme");
    json_t *aps = json_object_get(node, "add_prefix_space");
    json_t *sp = json_object_get(node, "split");
    p->msplit = sp ? json_is_true(sp) : 1;
    p->prepend = 0;
    if (json_is_string(sch)) {
        const char *v = json_string_value(sch);
        if (!strcmp(v, "always"))
            p->prepend = 0;
        else if (!strcmp(v, "first"))
            p->prepend = 1;
        else if (!strcmp(v, "never"))
            p->prepend = 2;
        else {
            tok_seterr(err, errlen, "%s: unknown Metaspace prepend_scheme \"%s\"", path, v);
            return -EINVAL;
        }
    } else if (aps && !json_is_true(aps))
        p->prepend = 2; /* legacy add_prefix_space: false */
    return 0;
}

static int load_seq(tok_pre *p, json_t *node, const char *path, int *n_regex, char *err,
                    size_t errlen)
{
    json_t *arr = json_object_get(node, "pretokenizers");
    p->kind = P_SEQ;
    if (!json_is_array(arr)) {
        tok_seterr(err, errlen, "%s: Sequence needs a \"pretokenizers\" array", path);
        return -EINVAL;
    }
    p->kids = calloc(json_array_size(arr) + 1, sizeof *p->kids);
    if (!p->kids) return -ENOMEM;
    for (size_t i = 0; i < json_array_size(arr); i++) {
        char sub[256];
        snprintf(sub, sizeof sub, "%s.pretokenizers[%zu]", path, i);
        int rc = load_node(json_array_get(arr, i), sub, &p->kids[p->n_kids], n_regex, err, errlen);
        if (rc) return rc;
        p->n_kids++;
    }
    return 0;
}

static tok_pre *chars_node(enum char_class c, enum behavior b)
{
    tok_pre *k = calloc(1, sizeof *k);
    if (k) {
        k->kind = P_CHARS;
        k->cclass = c;
        k->behavior = b;
        k->re_index = -1;
    }
    return k;
}

static int load_bert(tok_pre *p)
{
    p->kind = P_SEQ;
    p->kids = calloc(2, sizeof *p->kids);
    if (!p->kids) return -ENOMEM;
    if (!(p->kids[0] = chars_node(C_SPACE, B_REMOVED))) return -ENOMEM;
    p->n_kids = 1;
    if (!(p->kids[1] = chars_node(C_PUNCT, B_ISOLATED))) return -ENOMEM;
    p->n_kids = 2;
    return 0;
}

static int load_kind(tok_pre *p, const char *type, json_t *node, const char *path, int *n_regex,
                     char *err, size_t errlen)
{
    p->kind = P_CHARS;
    if (!strcmp(type, "ByteLevel")) return load_bytelevel(p, node, path, n_regex, err, errlen);
    if (!strcmp(type, "Split")) return load_split(p, node, path, n_regex, err, errlen);
    if (!strcmp(type, "Metaspace")) return load_metaspace(p, node, path, err, errlen);
    if (!strcmp(type, "Sequence")) return load_seq(p, node, path, n_regex, err, errlen);
    if (!strcmp(type, "BertPreTokenizer")) return load_bert(p);
    if (!strcmp(type, "Digits")) {
        p->cclass = C_NUMERIC;
        p->behavior =
            json_is_true(json_object_get(node, "individual_digits")) ? B_ISOLATED : B_CONTIGUOUS;
        return 0;
    }
    if (!strcmp(type, "Punctuation")) {
        p->cclass = C_PUNCT;
        return parse_behavior(node, path, B_ISOLATED, &p->behavior, err, errlen);
    }
    if (!strcmp(type, "WhitespaceSplit")) {
        p->cclass = C_SPACE;
        p->behavior = B_REMOVED;
        return 0;
    }
    if (!strcmp(type, "CharDelimiterSplit")) {
        json_t *d = json_object_get(node, "delimiter");
        if (!json_is_string(d) || !json_string_length(d)) {
            tok_seterr(err, errlen, "%s: CharDelimiterSplit needs a \"delimiter\"", path);
            return -EINVAL;
        }
        tok_utf8_decode(json_string_value(d), json_string_length(d), &p->delim);
        p->cclass = C_DELIM;
        p->behavior = B_REMOVED;
        return 0;
    }
    if (!strcmp(type, "Whitespace")) {
        p->kind = P_SPLIT;
        p->invert = 1;
        p->behavior = B_REMOVED;
        return use_regex(p, WHITESPACE_RE, sizeof WHITESPACE_RE - 1, path, n_regex, err, errlen);
    }
    tok_seterr(err, errlen, "%s: pre-tokenizer type \"%s\" is not supported", path, type);
    return -ENOTSUP;
}

static int load_node(json_t *node, const char *path, tok_pre **out, int *n_regex, char *err,
                     size_t errlen)
{
    *out = NULL;
    const char *type = json_string_value(json_object_get(node, "type"));
    if (!type) {
        tok_seterr(err, errlen, "%s: pre-tokenizer without a \"type\"", path);
        return -EINVAL;
    }
    tok_pre *p = calloc(1, sizeof *p);
    if (!p) return -ENOMEM;
    p->re_index = -1;
    int rc = load_kind(p, type, node, path, n_regex, err, errlen);
    if (rc) {
        if (rc == -ENOMEM) tok_seterr(err, errlen, "%s: out of memory", path);
        tok_pre_free(p);
        return rc;
    }
    *out = p;
    return 0;
}

int tok_pre_load(json_t *node, const char *path, tok_pre **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!node || json_is_null(node)) return 0;
    int n_regex = 0;
    int rc = load_node(node, path, out, &n_regex, err, errlen);
    if (!rc) (*out)->n_regex = n_regex;
    return rc;
}

void tok_pre_free(tok_pre *p)
{
    if (!p) return;
    for (size_t i = 0; i < p->n_kids; i++)
        tok_pre_free(p->kids[i]);
    free(p->kids);
    free(p->lit);
    tok_regex_free(&p->re);
    free(p);
}

/* ---- splitting ---- */

static int seg_add(tok_pre_scratch *s, size_t a, size_t b, int match)
{
    if (s->nseg == s->segcap) {
        size_t cap = s->segcap ? s->segcap * 2 : 256;
        struct seg *v = realloc(s->seg, cap * sizeof *v);
        if (!v) return -ENOMEM;
        s->seg = v;
        s->segcap = cap;
    }
    s->seg[s->nseg++] = (struct seg){a, b, match};
    return 0;
}

static int char_in_class(const tok_pre *p, uint32_t cp)
{
    switch (p->cclass) {
    case C_NUMERIC:
        return tok_is_numeric(cp);
    case C_PUNCT:
        return tok_is_punctuation(cp);
    case C_SPACE:
        return tok_is_whitespace(cp);
    case C_DELIM:
        return cp == p->delim;
    }
    return 0;
}

/* Fill s->seg with (range, is_match) covering text, in order. */
static int find_segments(const tok_pre *p, tok_pre_scratch *s, const char *t, size_t len)
{
    size_t prev = 0, ms, me;
    s->nseg = 0;
    if (p->kind == P_CHARS) {
        for (size_t i = 0; i < len;) {
            uint32_t cp;
            size_t k = tok_utf8_decode(t + i, len - i, &cp);
            if (char_in_class(p, cp)) {
                if ((prev < i && seg_add(s, prev, i, 0)) || seg_add(s, i, i + k, 1)) return -ENOMEM;
                prev = i + k;
            }
            i += k;
        }
    } else if (p->re_index >= 0) {
        pcre2_match_data *md = s->md[p->re_index];
        int rc;
        while ((rc = tok_regex_next(&p->re, md, t, len, prev, &ms, &me)) == 1) {
            if ((prev < ms && seg_add(s, prev, ms, 0)) || seg_add(s, ms, me, 1)) return -ENOMEM;
            prev = me;
        }
        if (rc < 0) return rc;
    } else if (p->lit_len) {
        const char *hit;
        while ((hit = memmem(t + prev, len - prev, p->lit, p->lit_len))) {
            ms = (size_t)(hit - t);
            if ((prev < ms && seg_add(s, prev, ms, 0)) || seg_add(s, ms, ms + p->lit_len, 1))
                return -ENOMEM;
            prev = ms + p->lit_len;
        }
    }
    if (prev < len && seg_add(s, prev, len, 0)) return -ENOMEM;
    return 0;
}

/* Apply the behaviour in place: s->seg becomes the list of ranges to keep (match = 0). */
static void fold_segments(enum behavior b, int invert, tok_pre_scratch *s)
{
    size_t n = s->nseg, k = 0;
    struct seg *v = s->seg;
    if (invert)
        for (size_t i = 0; i < n; i++)
            v[i].match = !v[i].match;
    int prev_match = 0;
    switch (b) {
    case B_ISOLATED:
        break;
    case B_REMOVED:
        for (size_t i = 0; i < n; i++)
            if (!v[i].match) v[k++] = v[i];
        n = k;
        break;
    case B_PREV:
        for (size_t i = 0; i < n; i++) {
            if (v[i].match && !prev_match && k)
                v[k - 1].b = v[i].b;
            else
                v[k++] = v[i];
            prev_match = v[i].match;
        }
        n = k;
        break;
    case B_NEXT:
        /* Right to left, as the library folds it. */
        k = n;
        for (size_t i = n; i-- > 0;) {
            struct seg cur = v[i];
            if (cur.match && !prev_match && k < n)
                v[k].a = cur.a;
            else
                v[--k] = cur;
            prev_match = cur.match;
        }
        memmove(v, v + k, (n - k) * sizeof *v);
        n -= k;
        break;
    case B_CONTIGUOUS:
        for (size_t i = 0; i < n; i++) {
            if (v[i].match == prev_match && k)
                v[k - 1].b = v[i].b;
            else
                v[k++] = v[i];
            prev_match = v[i].match;
        }
        n = k;
        break;
    }
    s->nseg = n;
}

/* Add one piece, through the byte alphabet of ByteLevel node bl when it is not NULL. */
static int piece_add(tok_pieces *out, const char *t, size_t len, int first, const tok_pre *bl)
{
    if (!bl) return tok_pieces_add(out, t, len, first);
    if (tok_pieces_add(out, "", 0, first) || tok_buf_reserve(&out->text, len * 2 + 1))
        return -ENOMEM;
    const unsigned char *u = (const unsigned char *)t;
    char *dst = out->text.p + out->text.len;
    for (size_t j = 0; j < len; j++) {
        memcpy(dst, bl->bytemap[u[j]], bl->bytemap_len[u[j]]);
        dst += bl->bytemap_len[u[j]];
    }
    size_t n = (size_t)(dst - (out->text.p + out->text.len));
    out->text.len += n;
    out->text.p[out->text.len] = '\0';
    out->v[out->n - 1].len = n;
    return 0;
}

static int split_piece(const tok_pre *p, tok_pre_scratch *s, const char *t, size_t len, int first,
                       enum behavior b, tok_pieces *out, const tok_pre *bl)
{
    int rc = find_segments(p, s, t, len);
    if (rc) return rc;
    fold_segments(b, p->invert, s);
    for (size_t i = 0; i < s->nseg; i++)
        if (s->seg[i].b > s->seg[i].a && piece_add(out, t + s->seg[i].a, s->seg[i].b - s->seg[i].a,
                                                   first && s->seg[i].a == 0, bl))
            return -ENOMEM;
    return 0;
}

static int apply_bytelevel(const tok_pre *p, tok_pre_scratch *s, const char *t, size_t len,
                           int first, tok_pieces *out)
{
    const char *src = t;
    size_t n = len;
    if (p->add_prefix_space && (len == 0 || t[0] != ' ')) {
        s->tmp.len = 0;
        if (tok_buf_putc(&s->tmp, ' ') || tok_buf_put(&s->tmp, t, len)) return -ENOMEM;
        src = s->tmp.p;
        n = s->tmp.len;
    }
    if (p->use_regex) return split_piece(p, s, src, n, first, B_ISOLATED, out, p);
    return n ? piece_add(out, src, n, first, p) : 0;
}

static int apply_metaspace(const tok_pre *p, tok_pre_scratch *s, const char *t, size_t len,
                           int first, tok_pieces *out)
{
    tok_buf *b = &s->tmp;
    b->len = 0;
    if (tok_buf_reserve(b, len + p->repl_len + 1)) return -ENOMEM;
    int starts = len >= p->repl_len && !memcmp(t, p->repl, p->repl_len);
    /* The replacement of a leading space counts as "starts with the replacement". */
    if (len && t[0] == ' ') starts = 1;
    if (!starts && (p->prepend == 0 || (p->prepend == 1 && first)) &&
        tok_buf_put(b, p->repl, p->repl_len))
        return -ENOMEM;
    for (size_t i = 0; i < len; i++)
        if ((t[i] == ' ' ? tok_buf_put(b, p->repl, p->repl_len) : tok_buf_putc(b, t[i])))
            return -ENOMEM;
    if (!p->msplit) return b->len ? tok_pieces_add(out, b->p, b->len, first) : 0;
    /* Split on the replacement, MergedWithNext. */
    size_t start = 0;
    for (size_t i = 1; i < b->len; i++)
        if (b->len - i >= p->repl_len && !memcmp(b->p + i, p->repl, p->repl_len)) {
            if (tok_pieces_add(out, b->p + start, i - start, first && start == 0)) return -ENOMEM;
            start = i;
        }
    return b->len > start ? tok_pieces_add(out, b->p + start, b->len - start, first && !start) : 0;
}

static int apply_node(const tok_pre *p, tok_pre_scratch *s, const char *t, size_t len, int first,
                      tok_pieces *out);

static int apply_seq(const tok_pre *p, tok_pre_scratch *s, const char *t, size_t len, int first,
                     tok_pieces *out)
{
    tok_pieces a = {0}, b = {0};
    int rc = len ? tok_pieces_add(&a, t, len, first) : 0;
    for (size_t k = 0; k < p->n_kids && !rc; k++) {
        b.n = 0;
        b.text.len = 0;
        for (size_t i = 0; i < a.n && !rc; i++)
            rc = apply_node(p->kids[k], s, a.text.p + a.v[i].off, a.v[i].len, a.v[i].first, &b);
        tok_pieces t2 = a;
        a = b;
        b = t2;
    }
    for (size_t i = 0; i < a.n && !rc; i++)
        rc = tok_pieces_add(out, a.text.p + a.v[i].off, a.v[i].len, a.v[i].first);
    tok_pieces_free(&a);
    tok_pieces_free(&b);
    return rc;
}

static int apply_node(const tok_pre *p, tok_pre_scratch *s, const char *t, size_t len, int first,
                      tok_pieces *out)
{
    switch (p->kind) {
    case P_BYTELEVEL:
        return apply_bytelevel(p, s, t, len, first, out);
    case P_METASPACE:
        return apply_metaspace(p, s, t, len, first, out);
    case P_SEQ:
        return apply_seq(p, s, t, len, first, out);
    case P_SPLIT:
    case P_CHARS:
        return split_piece(p, s, t, len, first, p->behavior, out, NULL);
    }
    return -EINVAL;
}

static int scratch_init(const tok_pre *p, tok_pre_scratch **sp)
{
    const tok_pre *root = p;
    tok_pre_scratch *s = calloc(1, sizeof *s);
    if (!s) return -ENOMEM;
    s->n_md = (size_t)root->n_regex;
    s->md = calloc(s->n_md + 1, sizeof *s->md);
    if (!s->md) {
        free(s);
        return -ENOMEM;
    }
    *sp = s;
    return 0;
}

/* Match data is created on first use of each regex (indexes were assigned at load). */
static int scratch_fill(const tok_pre *p, tok_pre_scratch *s)
{
    if (p->re_index >= 0 && !s->md[p->re_index] &&
        !(s->md[p->re_index] = tok_regex_match_data(&p->re)))
        return -ENOMEM;
    for (size_t i = 0; i < p->n_kids; i++)
        if (scratch_fill(p->kids[i], s)) return -ENOMEM;
    return 0;
}

int tok_pre_apply(const tok_pre *p, tok_pre_scratch **scratch, const char *s, size_t len, int first,
                  tok_pieces *out)
{
    if (!p) return len ? tok_pieces_add(out, s, len, first) : 0;
    if (!*scratch) {
        int rc = scratch_init(p, scratch);
        if (!rc) rc = scratch_fill(p, *scratch);
        if (rc) return rc;
    }
    /* s may point into (*scratch)->tmp of an outer caller: never; callers pass their own. */
    return apply_node(p, *scratch, s, len, first, out);
}
