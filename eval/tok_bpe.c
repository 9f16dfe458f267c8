/* tok_bpe.c — BPE vocabulary, merges and the heap-driven merge loop. */
#include "tok_bpe.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tok_bpe_sym {
    int32_t id;
    int32_t prev, next; /* -1 = none */
    int32_t alive;
};

struct tok_bpe_merge {
    int32_t rank, pos, id;
};

/* ---- loading ---- */

static int load_vocab(tok_bpe *m, json_t *vocab, const char *where, char *err, size_t errlen)
{
    if (!json_is_object(vocab)) {
        tok_seterr(err, errlen, "%s: model.vocab is missing or not an object", where);
        return -EINVAL;
    }
    size_t n = json_object_size(vocab);
    if (n > TOK_MAX_VOCAB) {
        tok_seterr(err, errlen, "%s: model.vocab has %zu entries, more than the limit of %zu",
                   where, n, TOK_MAX_VOCAB);
        return -E2BIG;
    }
    if (tok_strmap_init(&m->vocab, n)) return -ENOMEM;
    const char *key;
    json_t *val;
    int64_t max_id = -1;
    json_object_foreach(vocab, key, val)
    {
        json_int_t id = json_integer_value(val);
        if (!json_is_integer(val) || id < 0 || (size_t)id >= TOK_MAX_VOCAB) {
            tok_seterr(err, errlen, "%s: model.vocab[\"%.80s\"] is not a valid id", where, key);
            return -EINVAL;
        }
        size_t klen = strlen(key);
        if (tok_strmap_set(&m->vocab, key, klen, (int32_t)id)) return -ENOMEM;
        if (id > max_id) max_id = id;
    }
    m->n_ids = (size_t)(max_id + 1);
    return 0;
}

/* Build id → token once every key is in place (the key store no longer moves). */
static int index_vocab(tok_bpe *m)
{
    m->tok = calloc(m->n_ids ? m->n_ids : 1, sizeof *m->tok);
    m->tok_len = calloc(m->n_ids ? m->n_ids : 1, sizeof *m->tok_len);
    if (!m->tok || !m->tok_len) return -ENOMEM;
    for (size_t e = 0; e < m->vocab.n; e++) {
        const struct tok_strmap_entry *ent = &m->vocab.ents[e];
        m->tok[ent->val] = m->vocab.keys.p + ent->off;
        m->tok_len[ent->val] = ent->len;
    }
    return 0;
}

static int vocab_id(const tok_bpe *m, const char *s, size_t n, int32_t *id)
{
    return tok_strmap_get(&m->vocab, s, n, id);
}

/* One merge: a and b (with their lengths) at rank. */
static int add_merge(tok_bpe *m, const char *a, size_t alen, const char *b, size_t blen,
                     int32_t rank, const char *where, char *err, size_t errlen)
{
    int32_t ida, idb, idn;
    if (!vocab_id(m, a, alen, &ida) || !vocab_id(m, b, blen, &idb)) {
        tok_seterr(err, errlen, "%s: model.merges[%d]: \"%.*s %.*s\" uses a token not in the vocab",
                   where, rank, (int)alen, a, (int)blen, b);
        return -EINVAL;
    }
    size_t plen = m->prefix ? strlen(m->prefix) : 0;
    if (plen && blen >= plen && !memcmp(b, m->prefix, plen)) {
        b += plen;
        blen -= plen;
    }
    if (alen + blen > TOK_MAX_TOKEN_BYTES) {
        tok_seterr(err, errlen, "%s: model.merges[%d] is longer than %d bytes", where, rank,
                   TOK_MAX_TOKEN_BYTES);
        return -EINVAL;
    }
    char buf[2 * TOK_MAX_TOKEN_BYTES];
    memcpy(buf, a, alen);
    memcpy(buf + alen, b, blen);
    if (!vocab_id(m, buf, alen + blen, &idn)) {
        tok_seterr(err, errlen,
                   "%s: model.merges[%d]: the merged token \"%.*s\" is not in the vocab", where,
                   rank, (int)(alen + blen), buf);
        return -EINVAL;
    }
    return tok_pairmap_add(&m->merges, ida, idb, rank, idn);
}

static int load_merges(tok_bpe *m, json_t *merges, const char *where, char *err, size_t errlen)
{
    if (!merges)
        merges = json_array(); /* a BPE without merges is valid: characters only */
    else
        json_incref(merges);
    int rc = 0;
    if (!json_is_array(merges)) {
        tok_seterr(err, errlen, "%s: model.merges is not an array", where);
        rc = -EINVAL;
        goto out;
    }
    size_t n = json_array_size(merges);
    if (n > TOK_MAX_MERGES) {
        tok_seterr(err, errlen, "%s: model.merges has %zu entries, more than the limit of %zu",
                   where, n, TOK_MAX_MERGES);
        rc = -E2BIG;
        goto out;
    }
    if ((rc = tok_pairmap_init(&m->merges, n))) goto out;
    for (size_t i = 0; i < n && !rc; i++) {
        json_t *e = json_array_get(merges, i);
        if (json_is_string(e)) {
            const char *s = json_string_value(e);
            size_t len = json_string_length(e);
            const char *sp = memchr(s, ' ', len);
            if (!sp) {
                tok_seterr(err, errlen, "%s: model.merges[%zu]: \"%.80s\" is not \"a b\"", where, i,
                           s);
                rc = -EINVAL;
                break;
            }
            rc = add_merge(m, s, (size_t)(sp - s), sp + 1, len - (size_t)(sp - s) - 1, (int32_t)i,
                           where, err, errlen);
        } else if (json_is_array(e) && json_array_size(e) == 2 &&
                   json_is_string(json_array_get(e, 0)) && json_is_string(json_array_get(e, 1))) {
            json_t *a = json_array_get(e, 0), *b = json_array_get(e, 1);
            rc = add_merge(m, json_string_value(a), json_string_length(a), json_string_value(b),
                           json_string_length(b), (int32_t)i, where, err, errlen);
        } else {
            tok_seterr(err, errlen, "%s: model.merges[%zu] is neither \"a b\" nor [a, b]", where,
                       i);
            rc = -EINVAL;
        }
    }
out:
    json_decref(merges);
    return rc;
}

static int opt_string(json_t *model, const char *key, char **out, const char *where, char *err,
                      size_t errlen)
{
    json_t *v = json_object_get(model, key);
    *out = NULL;
    if (!v || json_is_null(v)) return 0;
    if (!json_is_string(v)) {
        tok_seterr(err, errlen, "%s: model.%s is not a string", where, key);
        return -EINVAL;
    }
    *out = strdup(json_string_value(v));
    return *out ? 0 : -ENOMEM;
}

static int load_options(tok_bpe *m, json_t *model, const char *where, char *err, size_t errlen)
{
    json_t *drop = json_object_get(model, "dropout");
    if (drop && !json_is_null(drop) && json_number_value(drop) != 0.0) {
        tok_seterr(err, errlen, "%s: model.dropout %g is not supported (evaluation needs 0)", where,
                   json_number_value(drop));
        return -ENOTSUP;
    }
    m->fuse_unk = json_is_true(json_object_get(model, "fuse_unk"));
    m->byte_fallback = json_is_true(json_object_get(model, "byte_fallback"));
    m->ignore_merges = json_is_true(json_object_get(model, "ignore_merges"));
    int rc = opt_string(model, "continuing_subword_prefix", &m->prefix, where, err, errlen);
    if (!rc) rc = opt_string(model, "end_of_word_suffix", &m->suffix, where, err, errlen);
    return rc;
}

#define META "\xE2\x96\x81" /* U+2581, SentencePiece's word start */

/* Record max_len, and which characters precede "▁" inside tokens (see tok_bpe_cut). */
static int index_cuts(tok_bpe *m)
{
    m->meta_id = -1;
    if (tok_strmap_init(&m->before_meta, 64)) return -ENOMEM;
    for (size_t e = 0; e < m->vocab.n; e++) {
        const struct tok_strmap_entry *ent = &m->vocab.ents[e];
        const char *t = m->vocab.keys.p + ent->off;
        if (ent->len > m->max_len) m->max_len = ent->len;
        for (size_t i = 1; i + 3 <= ent->len; i++) {
            if (memcmp(t + i, META, 3)) continue;
            size_t k = tok_utf8_last_len(t, i);
            if (tok_strmap_set(&m->before_meta, t + i - k, k, 1)) return -ENOMEM;
        }
    }
    /* Prefixes and suffixes change the symbols' strings: no cutting then. */
    if (!m->prefix && !m->suffix) vocab_id(m, META, 3, &m->meta_id);
    return 0;
}

static int resolve_specials(tok_bpe *m, json_t *model, const char *where, char *err, size_t errlen)
{
    m->unk_id = -1;
    json_t *unk = json_object_get(model, "unk_token");
    if (unk && !json_is_null(unk)) {
        if (!json_is_string(unk) ||
            !vocab_id(m, json_string_value(unk), json_string_length(unk), &m->unk_id)) {
            tok_seterr(err, errlen, "%s: model.unk_token is not a token of the vocab", where);
            return -EINVAL;
        }
    }
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        if (!vocab_id(m, name, 6, &m->byte_id[b])) m->byte_id[b] = -1;
    }
    return 0;
}

int tok_bpe_load(tok_bpe *m, json_t *model, const char *where, char *err, size_t errlen)
{
    memset(m, 0, sizeof *m);
    int rc = load_options(m, model, where, err, errlen);
    if (!rc) rc = load_vocab(m, json_object_get(model, "vocab"), where, err, errlen);
    if (!rc) rc = index_vocab(m);
    if (!rc) rc = load_merges(m, json_object_get(model, "merges"), where, err, errlen);
    if (!rc) rc = resolve_specials(m, model, where, err, errlen);
    if (!rc) rc = index_cuts(m);
    if (rc == -ENOMEM) tok_seterr(err, errlen, "%s: out of memory loading the BPE model", where);
    if (rc) tok_bpe_free(m);
    return rc;
}

void tok_bpe_free(tok_bpe *m)
{
    tok_strmap_free(&m->vocab);
    tok_pairmap_free(&m->merges);
    tok_strmap_free(&m->before_meta);
    free(m->tok);
    free(m->tok_len);
    free(m->prefix);
    free(m->suffix);
    memset(m, 0, sizeof *m);
}

void tok_bpe_scratch_free(tok_bpe_scratch *s)
{
    free(s->sym);
    free(s->heap);
    tok_buf_free(&s->tmp);
    memset(s, 0, sizeof *s);
}

/* ---- the heap of candidate merges, ordered by (rank, pos) ---- */

static int merge_less(const struct tok_bpe_merge *a, const struct tok_bpe_merge *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_down(struct tok_bpe_merge *h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, best = i;
        if (l < n && merge_less(&h[l], &h[best])) best = l;
        if (l + 1 < n && merge_less(&h[l + 1], &h[best])) best = l + 1;
        if (best == i) return;
        struct tok_bpe_merge t = h[i];
        h[i] = h[best];
        h[best] = t;
        i = best;
    }
}

static int heap_push(tok_bpe_scratch *s, struct tok_bpe_merge e)
{
    if (s->heap_len == s->heap_cap) {
        size_t cap = s->heap_cap ? s->heap_cap * 2 : 256;
        struct tok_bpe_merge *h = realloc(s->heap, cap * sizeof *h);
        if (!h) return -ENOMEM;
        s->heap = h;
        s->heap_cap = cap;
    }
    size_t i = s->heap_len++;
    s->heap[i] = e;
    while (i && merge_less(&s->heap[i], &s->heap[(i - 1) / 2])) {
        struct tok_bpe_merge t = s->heap[i];
        s->heap[i] = s->heap[(i - 1) / 2];
        s->heap[(i - 1) / 2] = t;
        i = (i - 1) / 2;
    }
    return 0;
}

static struct tok_bpe_merge heap_pop(tok_bpe_scratch *s)
{
    struct tok_bpe_merge top = s->heap[0];
    s->heap[0] = s->heap[--s->heap_len];
    heap_down(s->heap, s->heap_len, 0);
    return top;
}

/* ---- building the initial symbols ---- */

static int sym_add(tok_bpe_scratch *s, size_t *n, int32_t id)
{
    if (*n == s->sym_cap) {
        size_t cap = s->sym_cap ? s->sym_cap * 2 : 256;
        struct tok_bpe_sym *p = realloc(s->sym, cap * sizeof *p);
        if (!p) return -ENOMEM;
        s->sym = p;
        s->sym_cap = cap;
    }
    s->sym[*n] = (struct tok_bpe_sym){id, (int32_t)*n - 1, (int32_t)*n + 1, 1};
    (*n)++;
    return 0;
}

/* The lookup key of one character: prefix (not first) + char + suffix (last). */
static const char *char_key(const tok_bpe *m, tok_bpe_scratch *s, const char *c, size_t clen,
                            int first, int last, size_t *klen)
{
    if ((!m->prefix || first) && (!m->suffix || !last)) {
        *klen = clen;
        return c;
    }
    s->tmp.len = 0;
    if (m->prefix && !first && tok_buf_put(&s->tmp, m->prefix, strlen(m->prefix))) return NULL;
    if (tok_buf_put(&s->tmp, c, clen)) return NULL;
    if (m->suffix && last && tok_buf_put(&s->tmp, m->suffix, strlen(m->suffix))) return NULL;
    *klen = s->tmp.len;
    return s->tmp.p;
}

/* Emits a pending (possibly fused) unk before the next known symbol, exactly where the
 * library does; byte-fallback symbols do not flush it. */
static int init_symbols(const tok_bpe *m, tok_bpe_scratch *s, const char *w, size_t n, size_t *nsym)
{
    int unk_pending = 0;
    *nsym = 0;
    for (size_t i = 0; i < n;) {
        size_t clen = tok_utf8_len((unsigned char)w[i]);
        if (clen > n - i) clen = n - i;
        size_t klen;
        const char *key = char_key(m, s, w + i, clen, i == 0, i + clen == n, &klen);
        if (!key) return -ENOMEM;
        int32_t id;
        i += clen;
        if (vocab_id(m, key, klen, &id)) {
            if (unk_pending && sym_add(s, nsym, m->unk_id)) return -ENOMEM;
            unk_pending = 0;
            if (sym_add(s, nsym, id)) return -ENOMEM;
            continue;
        }
        if (m->byte_fallback) {
            size_t b = 0;
            while (b < klen && m->byte_id[(unsigned char)key[b]] >= 0)
                b++;
            if (b == klen) {
                for (b = 0; b < klen; b++)
                    if (sym_add(s, nsym, m->byte_id[(unsigned char)key[b]])) return -ENOMEM;
                continue;
            }
        }
        if (m->unk_id >= 0) {
            if (unk_pending && !m->fuse_unk && sym_add(s, nsym, m->unk_id)) return -ENOMEM;
            unk_pending = 1;
        }
    }
    if (unk_pending && sym_add(s, nsym, m->unk_id)) return -ENOMEM;
    if (*nsym) s->sym[*nsym - 1].next = -1;
    return 0;
}

/* ---- merging ---- */

static int push_pair(const tok_bpe *m, tok_bpe_scratch *s, int32_t pos)
{
    int32_t next = s->sym[pos].next, rank, id;
    if (next < 0 || !tok_pairmap_get(&m->merges, s->sym[pos].id, s->sym[next].id, &rank, &id))
        return 0;
    return heap_push(s, (struct tok_bpe_merge){rank, pos, id});
}

static int merge_all(const tok_bpe *m, tok_bpe_scratch *s, size_t nsym)
{
    s->heap_len = 0;
    for (size_t i = 0; i + 1 < nsym; i++)
        if (push_pair(m, s, (int32_t)i)) return -ENOMEM;
    while (s->heap_len) {
        struct tok_bpe_merge top = heap_pop(s);
        struct tok_bpe_sym *cur = &s->sym[top.pos];
        if (!cur->alive || cur->next < 0) continue;
        int32_t rank, id;
        struct tok_bpe_sym *right = &s->sym[cur->next];
        /* Stale entry: the pair at pos changed since it was queued. */
        if (!tok_pairmap_get(&m->merges, cur->id, right->id, &rank, &id) || id != top.id) continue;
        cur->id = top.id;
        right->alive = 0;
        cur->next = right->next;
        if (right->next >= 0) s->sym[right->next].prev = top.pos;
        if (cur->prev >= 0 && push_pair(m, s, cur->prev)) return -ENOMEM;
        if (push_pair(m, s, top.pos)) return -ENOMEM;
    }
    return 0;
}

size_t tok_bpe_cut(const tok_bpe *m, const char *w, size_t n, size_t from)
{
    /* ignore_merges treats a word and a part differently: no parts (the cache holds either) */
    if (m->meta_id < 0 || m->ignore_merges || n <= m->max_len) return n;
    for (size_t i = from + 1; i + 3 <= n; i++) {
        const char *hit = memmem(w + i, n - i, META, 3);
        if (!hit) return n;
        i = (size_t)(hit - w);
        size_t k = tok_utf8_last_len(w, i);
        int32_t id, seen;
        /* the character before must be its own symbol and never glued to a following ▁ */
        if (!(k == 3 && !memcmp(w + i - 3, META, 3)) && vocab_id(m, w + i - k, k, &id) &&
            !tok_strmap_get(&m->before_meta, w + i - k, k, &seen))
            return i;
    }
    return n;
}

int tok_bpe_word(const tok_bpe *m, tok_bpe_scratch *s, const char *w, size_t n, tok_ids *out)
{
    int32_t id;
    if (n && m->ignore_merges && vocab_id(m, w, n, &id)) return tok_ids_push(out, id);
    return tok_bpe_part(m, s, w, n, out);
}

int tok_bpe_part(const tok_bpe *m, tok_bpe_scratch *s, const char *w, size_t n, tok_ids *out)
{
    if (!n) return 0;
    if (n > INT32_MAX / 4) return -E2BIG;
    size_t nsym;
    int rc = init_symbols(m, s, w, n, &nsym);
    if (!rc) rc = merge_all(m, s, nsym);
    if (rc) return rc;
    if (!nsym) return 0;
    for (int32_t i = 0; i >= 0; i = s->sym[i].next)
        if (tok_ids_push(out, s->sym[i].id)) return -ENOMEM;
    return 0;
}
