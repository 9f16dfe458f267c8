/* tok_unigram.c — Unigram vocabulary and Viterbi segmentation. */
#include "tok_unigram.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The library's penalty for a character no piece covers (sentencepiece kUnkPenalty). */
#define UNK_PENALTY 10.0

struct tok_uni_node {
    double score;
    size_t start; /* SIZE_MAX = not reached */
    int32_t id;
};

static int load_piece(tok_unigram *m, json_t *e, size_t i, const char *where, char *err,
                      size_t errlen)
{
    json_t *s = json_array_get(e, 0), *sc = json_array_get(e, 1);
    if (!json_is_string(s) || !json_is_number(sc)) {
        tok_seterr(err, errlen, "%s: model.vocab[%zu] is not [piece, score]", where, i);
        return -EINVAL;
    }
    size_t len = json_string_length(s);
    if (tok_strmap_set(&m->vocab, json_string_value(s), len, (int32_t)i)) return -ENOMEM;
    m->score[i] = json_number_value(sc);
    if (len > m->max_len) m->max_len = len;
    if (i == 0 || m->score[i] < m->min_score) m->min_score = m->score[i];
    return 0;
}

static int index_pieces(tok_unigram *m)
{
    m->tok = calloc(m->n_ids + 1, sizeof *m->tok);
    m->tok_len = calloc(m->n_ids + 1, sizeof *m->tok_len);
    if (!m->tok || !m->tok_len) return -ENOMEM;
    for (size_t e = 0; e < m->vocab.n; e++) {
        const struct tok_strmap_entry *ent = &m->vocab.ents[e];
        m->tok[ent->val] = m->vocab.keys.p + ent->off;
        m->tok_len[ent->val] = ent->len;
    }
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        if (!tok_strmap_get(&m->vocab, name, 6, &m->byte_id[b])) m->byte_id[b] = -1;
    }
    return 0;
}

static int load_all(tok_unigram *m, json_t *model, const char *where, char *err, size_t errlen)
{
    json_t *vocab = json_object_get(model, "vocab"), *unk = json_object_get(model, "unk_id");
    if (!json_is_array(vocab)) {
        tok_seterr(err, errlen, "%s: model.vocab is missing or not an array", where);
        return -EINVAL;
    }
    m->n_ids = json_array_size(vocab);
    if (m->n_ids > TOK_MAX_VOCAB) {
        tok_seterr(err, errlen, "%s: model.vocab has %zu entries, more than the limit of %zu",
                   where, m->n_ids, TOK_MAX_VOCAB);
        return -E2BIG;
    }
    m->unk_id = json_is_integer(unk) ? (int32_t)json_integer_value(unk) : -1;
    if (m->unk_id >= (int32_t)m->n_ids || (unk && !json_is_null(unk) && m->unk_id < 0)) {
        tok_seterr(err, errlen, "%s: model.unk_id is not an id of the vocab", where);
        return -EINVAL;
    }
    m->byte_fallback = json_is_true(json_object_get(model, "byte_fallback"));
    m->score = calloc(m->n_ids + 1, sizeof *m->score);
    if (!m->score || tok_strmap_init(&m->vocab, m->n_ids)) return -ENOMEM;
    for (size_t i = 0; i < m->n_ids; i++) {
        int rc = load_piece(m, json_array_get(vocab, i), i, where, err, errlen);
        if (rc) return rc;
    }
    return index_pieces(m);
}

int tok_unigram_load(tok_unigram *m, json_t *model, const char *where, char *err, size_t errlen)
{
    memset(m, 0, sizeof *m);
    int rc = load_all(m, model, where, err, errlen);
    if (rc == -ENOMEM)
        tok_seterr(err, errlen, "%s: out of memory loading the Unigram model", where);
    if (rc) tok_unigram_free(m);
    return rc;
}

void tok_unigram_free(tok_unigram *m)
{
    tok_strmap_free(&m->vocab);
    free(m->score);
    free(m->tok);
    free(m->tok_len);
    memset(m, 0, sizeof *m);
}

void tok_unigram_scratch_free(tok_unigram_scratch *s)
{
    free(s->node);
    memset(s, 0, sizeof *s);
}

static void relax(struct tok_uni_node *t, double score, size_t start, int32_t id)
{
    if (t->start == SIZE_MAX || score > t->score) {
        t->score = score;
        t->start = start;
        t->id = id;
    }
}

/* Forward pass: best_path_ends_at[] of the library's encode_optimized. */
static void viterbi(const tok_unigram *m, struct tok_uni_node *nd, const char *w, size_t n)
{
    for (size_t i = 0; i <= n; i++)
        nd[i] = (struct tok_uni_node){0.0, SIZE_MAX, -1};
    nd[0].start = 0;
    for (size_t at = 0; at < n;) {
        size_t mblen = tok_utf8_len((unsigned char)w[at]);
        if (mblen > n - at) mblen = n - at;
        double here = nd[at].score;
        int single = 0;
        for (size_t len = 1; len <= m->max_len && at + len <= n; len++) {
            int32_t id;
            if (!tok_strmap_get(&m->vocab, w + at, len, &id)) continue;
            relax(&nd[at + len], here + m->score[id], at, id);
            single |= len == mblen;
        }
        if (!single) relax(&nd[at + mblen], here + m->min_score - UNK_PENALTY, at, m->unk_id);
        at += mblen;
    }
}

/* One piece of the best path, [a, b) of the word: its id, or for a run of unknowns the
 * library's lookup of the fused text (normally unk_id), or byte_fallback pieces. */
static int emit(const tok_unigram *m, const char *w, size_t a, size_t b, int32_t id, tok_ids *out)
{
    if (id != m->unk_id) return tok_ids_push(out, id);
    int32_t known;
    if (tok_strmap_get(&m->vocab, w + a, b - a, &known)) return tok_ids_push(out, known);
    if (m->byte_fallback) {
        size_t i = a;
        while (i < b && m->byte_id[(unsigned char)w[i]] >= 0)
            i++;
        if (i == b) {
            for (i = a; i < b; i++)
                if (tok_ids_push(out, m->byte_id[(unsigned char)w[i]])) return -ENOMEM;
            return 0;
        }
    }
    return tok_ids_push(out, m->unk_id);
}

int tok_unigram_word(const tok_unigram *m, tok_unigram_scratch *s, const char *w, size_t n,
                     tok_ids *out)
{
    if (!n) return 0;
    if (m->unk_id < 0) return -EINVAL; /* the library errors out the same way */
    if (s->cap < n + 1) {
        struct tok_uni_node *p = realloc(s->node, (n + 1) * sizeof *p);
        if (!p) return -ENOMEM;
        s->node = p;
        s->cap = n + 1;
    }
    viterbi(m, s->node, w, n);
    /* Walk back from the end, then emit left to right; a run of unknowns is one piece. */
    size_t *cut = malloc((n + 1) * sizeof *cut), k = 0;
    if (!cut) return -ENOMEM;
    for (size_t end = n; end > 0; end = s->node[end].start)
        cut[k++] = end;
    int rc = 0;
    size_t a = 0;
    for (size_t i = k; i-- > 0 && !rc;) {
        size_t b = cut[i];
        int32_t id = s->node[b].id;
        if (id == m->unk_id)
            while (i > 0 && s->node[cut[i - 1]].id == m->unk_id)
                b = cut[--i];
        rc = emit(m, w, a, b, id, out);
        a = b;
    }
    free(cut);
    return rc;
}
