/* tok_added.c — added-token table and extraction. */
#include "tok_added.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int flag(json_t *o, const char *k)
{
    return json_is_true(json_object_get(o, k));
}

static int load_one(tok_added_token *t, json_t *o, const tok_norm *norm, size_t i,
                    const char *where, char *err, size_t errlen)
{
    json_t *c = json_object_get(o, "content"), *id = json_object_get(o, "id");
    if (!json_is_string(c) || !json_is_integer(id) || json_integer_value(id) < 0 ||
        json_integer_value(id) >= (json_int_t)TOK_MAX_VOCAB) {
        tok_seterr(err, errlen, "%s: added_tokens[%zu] needs a string \"content\" and an id", where,
                   i);
        return -EINVAL;
    }
    t->len = json_string_length(c);
    t->content = malloc(t->len + 1);
    if (!t->content) return -ENOMEM;
    memcpy(t->content, json_string_value(c), t->len + 1);
    t->id = (int32_t)json_integer_value(id);
    t->special = flag(o, "special");
    t->lstrip = flag(o, "lstrip");
    t->rstrip = flag(o, "rstrip");
    t->single_word = flag(o, "single_word");
    t->normalized = flag(o, "normalized");
    tok_buf m = {0};
    int rc = 0;
    if (t->normalized && norm)
        rc = tok_norm_apply(norm, t->content, t->len, &m);
    else
        rc = tok_buf_put(&m, t->content, t->len);
    if (rc) {
        tok_buf_free(&m);
        return rc;
    }
    t->match = m.p;
    t->match_len = m.len;
    return 0;
}

/* Insertion sort, longest first, then table order: buckets are small. */
static void sort_bucket(const tok_added *a, uint32_t *v, uint32_t n)
{
    for (uint32_t i = 1; i < n; i++) {
        uint32_t x = v[i], j = i;
        while (j > 0 && a->v[v[j - 1]].match_len < a->v[x].match_len) {
            v[j] = v[j - 1];
            j--;
        }
        v[j] = x;
    }
}

static int build_buckets(tok_added *a)
{
    for (size_t i = 0; i < a->n; i++) {
        const tok_added_token *t = &a->v[i];
        if (!t->match_len) continue;
        int set = t->normalized;
        unsigned char b = (unsigned char)t->match[0];
        uint32_t *v = realloc(a->bucket[set][b], (a->bucket_n[set][b] + 1) * sizeof *v);
        if (!v) return -ENOMEM;
        v[a->bucket_n[set][b]++] = (uint32_t)i;
        a->bucket[set][b] = v;
    }
    for (int set = 0; set < 2; set++)
        for (int b = 0; b < 256; b++)
            sort_bucket(a, a->bucket[set][b], a->bucket_n[set][b]);
    return 0;
}

/* The ids the library gives: the declared "id" is not used. A token already known (added
 * earlier, or in the model vocab) keeps that id; a new one gets the next id after the vocab
 * and the added tokens so far. */
static int assign_ids(tok_added *a, const tok_strmap *vocab)
{
    tok_strmap seen;
    int rc = tok_strmap_init(&seen, a->n);
    int32_t max = -1;
    for (size_t i = 0; i < a->n && !rc; i++) {
        tok_added_token *t = &a->v[i];
        int32_t id;
        if (!tok_strmap_get(&seen, t->content, t->len, &id) &&
            !tok_strmap_get(vocab, t->content, t->len, &id))
            id = (max >= (int32_t)vocab->n || vocab->n == 0) ? max + 1 : (int32_t)vocab->n;
        t->id = id;
        if (id > max) max = id;
        rc = tok_strmap_set(&seen, t->content, t->len, id);
    }
    a->max_id = max;
    tok_strmap_free(&seen);
    return rc;
}

static int index_ids(tok_added *a);

int tok_added_load(tok_added *a, json_t *arr, const tok_norm *norm, const tok_strmap *vocab,
                   const char *where, char *err, size_t errlen)
{
    memset(a, 0, sizeof *a);
    a->max_id = -1;
    if (!arr || json_is_null(arr)) return 0;
    if (!json_is_array(arr)) {
        tok_seterr(err, errlen, "%s: added_tokens is not an array", where);
        return -EINVAL;
    }
    size_t n = json_array_size(arr);
    if (n > TOK_MAX_VOCAB) {
        tok_seterr(err, errlen, "%s: added_tokens has %zu entries, more than the limit of %zu",
                   where, n, TOK_MAX_VOCAB);
        return -E2BIG;
    }
    a->v = calloc(n + 1, sizeof *a->v);
    if (!a->v) return -ENOMEM;
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        rc = load_one(&a->v[a->n], json_array_get(arr, i), norm, i, where, err, errlen);
        if (!rc && !a->v[a->n].len) { /* the library ignores empty tokens */
            free(a->v[a->n].content);
            free(a->v[a->n].match);
            memset(&a->v[a->n], 0, sizeof a->v[a->n]);
        } else if (!rc)
            a->n++;
    }
    if (!rc) rc = assign_ids(a, vocab);
    if (!rc) rc = build_buckets(a);
    if (!rc) rc = index_ids(a);
    if (rc == -ENOMEM) tok_seterr(err, errlen, "%s: out of memory loading added_tokens", where);
    if (rc) tok_added_free(a);
    return rc;
}

void tok_added_free(tok_added *a)
{
    for (size_t i = 0; i < a->n; i++) {
        free(a->v[i].content);
        free(a->v[i].match);
    }
    free(a->v);
    free(a->by_id);
    for (int set = 0; set < 2; set++)
        for (int b = 0; b < 256; b++)
            free(a->bucket[set][b]);
    memset(a, 0, sizeof *a);
}

const tok_added_token *tok_added_by_id(const tok_added *a, int32_t id)
{
    if (id < 0 || id > a->max_id || a->by_id[id] < 0) return NULL;
    return &a->v[a->by_id[id]];
}

/* Later entries win, as in the library's id map. */
static int index_ids(tok_added *a)
{
    a->by_id = malloc(((size_t)a->max_id + 1) * sizeof *a->by_id);
    if (!a->by_id) return -ENOMEM;
    for (int32_t i = 0; i <= a->max_id; i++)
        a->by_id[i] = -1;
    for (size_t i = 0; i < a->n; i++)
        a->by_id[a->v[i].id] = (int32_t)i;
    return 0;
}

const tok_added_token *tok_added_by_content(const tok_added *a, const char *s, size_t len)
{
    for (size_t i = 0; i < a->n; i++)
        if (a->v[i].len == len && !memcmp(a->v[i].content, s, len)) return &a->v[i];
    return NULL;
}

static int cut_add(tok_cuts *c, size_t off, size_t len, int32_t id)
{
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 16;
        tok_cut *v = realloc(c->v, cap * sizeof *v);
        if (!v) return -ENOMEM;
        c->v = v;
        c->cap = cap;
    }
    c->v[c->n++] = (tok_cut){off, len, id};
    return 0;
}

/* Word character as the library's single_word test sees it. */
static int is_word_char(uint32_t cp)
{
    return tok_is_alphanumeric(cp) || cp == '_';
}

static int single_word_ok(const char *s, size_t len, size_t a, size_t b)
{
    uint32_t cp;
    if (a > 0) {
        size_t k = tok_utf8_last_len(s, a);
        tok_utf8_decode(s + a - k, k, &cp);
        if (is_word_char(cp)) return 0;
    }
    if (b < len) {
        tok_utf8_decode(s + b, len - b, &cp);
        if (is_word_char(cp)) return 0;
    }
    return 1;
}

/* Longest token of the set starting at s[i], or NULL. */
static const tok_added_token *match_at(const tok_added *a, int set, const char *s, size_t len,
                                       size_t i)
{
    unsigned char b = (unsigned char)s[i];
    for (uint32_t k = 0; k < a->bucket_n[set][b]; k++) {
        const tok_added_token *t = &a->v[a->bucket[set][b][k]];
        if (t->match_len <= len - i && !memcmp(s + i, t->match, t->match_len)) return t;
    }
    return NULL;
}

static size_t strip_left(const char *s, size_t start, size_t floor)
{
    while (start > floor) {
        uint32_t cp;
        size_t k = tok_utf8_last_len(s, start);
        tok_utf8_decode(s + start - k, k, &cp);
        if (!tok_is_whitespace(cp)) break;
        start -= k;
    }
    return start;
}

static size_t strip_right(const char *s, size_t len, size_t stop)
{
    while (stop < len) {
        uint32_t cp;
        size_t k = tok_utf8_decode(s + stop, len - stop, &cp);
        if (!tok_is_whitespace(cp)) break;
        stop += k;
    }
    return stop;
}

int tok_added_split(const tok_added *a, int set, const char *s, size_t len, tok_cuts *out)
{
    out->n = 0;
    size_t done = 0; /* end of the last emitted cut */
    for (size_t i = 0; i < len;) {
        const tok_added_token *t = match_at(a, set, s, len, i);
        if (!t) {
            i++;
            continue;
        }
        size_t start = i, stop = i + t->match_len;
        i = stop; /* the search resumes after the raw match, whatever is done with it */
        if (t->single_word && !single_word_ok(s, len, start, stop)) continue;
        if (t->lstrip) start = strip_left(s, start, done);
        if (t->rstrip) stop = strip_right(s, len, stop);
        if ((done < start && cut_add(out, done, start - done, -1)) ||
            cut_add(out, start, stop - start, t->id))
            return -ENOMEM;
        done = stop;
        if (i < done) i = done;
    }
    if (done < len && cut_add(out, done, len - done, -1)) return -ENOMEM;
    return 0;
}
