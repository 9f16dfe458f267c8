/* tokenizer.c — tokenizer.json loading and the encode / decode pipeline (see tokenizer.h).
 *
 * The stages live in their own modules (tok_norm, tok_pre, tok_bpe, tok_added, tok_post);
 * this file reads the files, wires the stages together in the library's order and applies
 * tokenizer_config.json's BOS/EOS rule. */
#include "tokenizer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tok_added.h"
#include "tok_bpe.h"
#include "tok_norm.h"
#include "tok_post.h"
#include "tok_pre.h"
#include "tok_unigram.h"
#include "tok_util.h"

/* Words longer than this are not cached (the Llama-2 "one word" text would only waste it). */
#define WORD_CACHE_MAX_LEN 128
#define WORD_CACHE_MAX_ENTRIES ((size_t)1 << 20)

struct tok_tokenizer {
    int unigram; /* the model: BPE, or Unigram when set */
    tok_bpe bpe;
    tok_unigram uni;
    tok_added added;
    tok_norm *norm;
    tok_pre *pre;
    tok_post *post;
    tok_dec *dec;
    size_t vocab_size;
    /* tokenizer_config.json add_bos_token / add_eos_token rebuild the template for the
     * tokenizer classes whose transformers implementation does so. */
    int override;
    int32_t ov_bos, ov_eos; /* -1 = not added */
    int32_t bos_token_id, eos_token_id;
};

/* ---- loading ---- */

/* The tokenizer_config.json files of the Hub hold integers such as model_max_length 1e30 that
 * overflow json_int_t; they are read with integers as reals (only strings and booleans are
 * used from them). */
static json_t *load_json(const char *path, int required, char *err, size_t errlen, int *rc)
{
    struct stat st;
    *rc = 0;
    if (stat(path, &st)) {
        *rc = -errno;
        if (required || errno != ENOENT)
            tok_seterr(err, errlen, "%s: %s", path, strerror(errno));
        else
            *rc = 0;
        return NULL;
    }
    if ((size_t)st.st_size > TOK_MAX_JSON_BYTES) {
        tok_seterr(err, errlen, "%s: %lld bytes, more than the %zu MiB limit for tokenizer files",
                   path, (long long)st.st_size, TOK_MAX_JSON_BYTES >> 20);
        *rc = -EFBIG;
        return NULL;
    }
    /* Open it ourselves: jansson reports a directory or an unreadable file as bad JSON. */
    FILE *f = S_ISDIR(st.st_mode) ? (errno = EISDIR, NULL) : fopen(path, "rb");
    if (!f) {
        *rc = -errno;
        tok_seterr(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    json_error_t je;
    json_t *j = json_loadf(f, JSON_ALLOW_NUL | (required ? 0 : JSON_DECODE_INT_AS_REAL), &je);
    fclose(f);
    if (!j) {
        tok_seterr(err, errlen, "%s:%d:%d: invalid JSON: %s", path, je.line, je.column, je.text);
        *rc = -EINVAL;
        return NULL;
    }
    if (!json_is_object(j)) {
        tok_seterr(err, errlen, "%s: the top level is not a JSON object", path);
        json_decref(j);
        *rc = -EINVAL;
        return NULL;
    }
    return j;
}

static const tok_strmap *model_vocab(const tok_tokenizer *t)
{
    return t->unigram ? &t->uni.vocab : &t->bpe.vocab;
}

/* The model's token for id, or NULL. */
static const char *model_token(const tok_tokenizer *t, int32_t id, size_t *len)
{
    size_t n = t->unigram ? t->uni.n_ids : t->bpe.n_ids;
    if (id < 0 || (size_t)id >= n) return NULL;
    const char *s = t->unigram ? t->uni.tok[id] : t->bpe.tok[id];
    *len = t->unigram ? t->uni.tok_len[id] : t->bpe.tok_len[id];
    return s;
}

static int32_t name_to_id(const void *ctx, const char *name, size_t len)
{
    const tok_tokenizer *t = ctx;
    const tok_added_token *a = tok_added_by_content(&t->added, name, len);
    int32_t id;
    if (a) return a->id;
    return tok_strmap_get(model_vocab(t), name, len, &id) ? id : -1;
}

static int load_model(tok_tokenizer *t, json_t *root, const char *path, char *err, size_t errlen)
{
    json_t *model = json_object_get(root, "model");
    if (!json_is_object(model)) {
        tok_seterr(err, errlen, "%s: \"model\" is missing or not an object", path);
        return -EINVAL;
    }
    const char *type = json_string_value(json_object_get(model, "type"));
    if (!type) /* old files omit it; the fields tell the model apart */
        type = json_is_array(json_object_get(model, "vocab"))       ? "Unigram"
               : json_object_get(model, "merges")                   ? "BPE"
               : json_object_get(model, "max_input_chars_per_word") ? "WordPiece"
                                                                    : "(no type)";
    if (!strcmp(type, "Unigram")) {
        t->unigram = 1;
        return tok_unigram_load(&t->uni, model, path, err, errlen);
    }
    if (strcmp(type, "BPE")) {
        tok_seterr(err, errlen, "%s: model type \"%s\" is not supported (only BPE and Unigram)",
                   path, type);
        return -ENOTSUP;
    }
    return tok_bpe_load(&t->bpe, model, path, err, errlen);
}

static int load_stages(tok_tokenizer *t, json_t *root, const char *path, char *err, size_t errlen)
{
    char where[4200];
    int rc;
    snprintf(where, sizeof where, "%s: normalizer", path);
    if ((rc = tok_norm_load(json_object_get(root, "normalizer"), where, &t->norm, err, errlen)))
        return rc;
    snprintf(where, sizeof where, "%s: pre_tokenizer", path);
    if ((rc = tok_pre_load(json_object_get(root, "pre_tokenizer"), where, &t->pre, err, errlen)))
        return rc;
    if ((rc = load_model(t, root, path, err, errlen))) return rc;
    if ((rc = tok_added_load(&t->added, json_object_get(root, "added_tokens"), t->norm,
                             model_vocab(t), path, err, errlen)))
        return rc;
    snprintf(where, sizeof where, "%s: post_processor", path);
    if ((rc = tok_post_load(json_object_get(root, "post_processor"), where, &t->post, err, errlen)))
        return rc;
    snprintf(where, sizeof where, "%s: decoder", path);
    return tok_dec_load(json_object_get(root, "decoder"), where, &t->dec, err, errlen);
}

/* "bos_token": "<s>" or {"content": "<s>", ...} or null. */
static int32_t config_token(const tok_tokenizer *t, json_t *cfg, const char *key)
{
    json_t *v = json_object_get(cfg, key);
    if (json_is_object(v)) v = json_object_get(v, "content");
    if (!json_is_string(v)) return -1;
    return name_to_id(t, json_string_value(v), json_string_length(v));
}

/* transformers rebuilds the template from add_bos_token / add_eos_token for these classes. */
static int class_rebuilds_template(const char *cls)
{
    return cls && (strstr(cls, "Llama") || strstr(cls, "Gemma") || strstr(cls, "GPTNeoX"));
}

static void apply_config(tok_tokenizer *t, json_t *cfg, json_t *stm)
{
    t->bos_token_id = config_token(t, cfg, "bos_token");
    if (t->bos_token_id < 0) t->bos_token_id = config_token(t, stm, "bos_token");
    t->eos_token_id = config_token(t, cfg, "eos_token");
    if (t->eos_token_id < 0) t->eos_token_id = config_token(t, stm, "eos_token");
    json_t *ab = json_object_get(cfg, "add_bos_token"), *ae = json_object_get(cfg, "add_eos_token");
    if (!class_rebuilds_template(json_string_value(json_object_get(cfg, "tokenizer_class"))) ||
        (!json_is_boolean(ab) && !json_is_boolean(ae)))
        return;
    t->override = 1;
    t->ov_bos = json_is_boolean(ab) ? (json_is_true(ab) ? t->bos_token_id : -1)
                                    : tok_post_first_special(t->post);
    t->ov_eos = json_is_boolean(ae) ? (json_is_true(ae) ? t->eos_token_id : -1)
                                    : tok_post_last_special(t->post);
}

int tok_load(const char *dir, tok_tokenizer **out, char *err, size_t errlen)
{
    char path[4096], cpath[4096], spath[4096];
    *out = NULL;
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    snprintf(cpath, sizeof cpath, "%s/tokenizer_config.json", dir);
    snprintf(spath, sizeof spath, "%s/special_tokens_map.json", dir);
    int rc;
    json_t *root = load_json(path, 1, err, errlen, &rc);
    if (!root) return rc;
    tok_tokenizer *t = calloc(1, sizeof *t);
    if (!t) {
        json_decref(root);
        return -ENOMEM;
    }
    rc = load_stages(t, root, path, err, errlen);
    json_decref(root);
    json_t *cfg = NULL, *stm = NULL;
    if (!rc) cfg = load_json(cpath, 0, err, errlen, &rc);
    if (!rc) stm = load_json(spath, 0, err, errlen, &rc);
    if (!rc) {
        apply_config(t, cfg, stm);
        t->vocab_size = t->unigram ? t->uni.n_ids : t->bpe.n_ids;
        if (t->added.max_id >= 0 && (size_t)t->added.max_id + 1 > t->vocab_size)
            t->vocab_size = (size_t)t->added.max_id + 1;
    }
    json_decref(cfg);
    json_decref(stm);
    if (rc) {
        if (rc == -ENOMEM) tok_seterr(err, errlen, "%s: out of memory", path);
        tok_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

void tok_free(tok_tokenizer *t)
{
    if (!t) return;
    tok_bpe_free(&t->bpe);
    tok_unigram_free(&t->uni);
    tok_added_free(&t->added);
    tok_norm_free(t->norm);
    tok_pre_free(t->pre);
    tok_post_free(t->post);
    tok_dec_free(t->dec);
    free(t);
}

size_t tok_vocab_size(const tok_tokenizer *t)
{
    return t->vocab_size;
}

int32_t tok_bos_id(const tok_tokenizer *t)
{
    return t->override ? t->ov_bos : tok_post_first_special(t->post);
}

int32_t tok_bos_token_id(const tok_tokenizer *t)
{
    return t->bos_token_id;
}

int32_t tok_eos_id(const tok_tokenizer *t)
{
    return t->eos_token_id >= 0 ? t->eos_token_id : tok_post_last_special(t->post);
}

/* ---- encoding ---- */

struct enc {
    const tok_tokenizer *t;
    tok_bpe_scratch bpe;
    tok_unigram_scratch uni;
    tok_pre_scratch *pre;
    tok_pieces words;
    tok_buf norm;
    tok_cuts cuts1;
    tok_strmap cache;      /* word → index into cache_at */
    size_t (*cache_at)[2]; /* offset, count in cache_ids */
    size_t cache_n, cache_cap;
    tok_ids cache_ids;
    tok_ids ids;
};

static void enc_free(struct enc *e)
{
    tok_bpe_scratch_free(&e->bpe);
    tok_unigram_scratch_free(&e->uni);
    tok_pre_scratch_free(e->pre);
    tok_pieces_free(&e->words);
    tok_buf_free(&e->norm);
    free(e->cuts1.v);
    tok_strmap_free(&e->cache);
    free(e->cache_at);
    tok_ids_free(&e->cache_ids);
    tok_ids_free(&e->ids);
}

static int cache_put(struct enc *e, const char *w, size_t n, size_t from)
{
    if (e->cache_n == e->cache_cap) {
        size_t cap = e->cache_cap ? e->cache_cap * 2 : 1024;
        size_t(*v)[2] = realloc(e->cache_at, cap * sizeof *v);
        if (!v) return -ENOMEM;
        e->cache_at = v;
        e->cache_cap = cap;
    }
    size_t count = e->ids.len - from;
    e->cache_at[e->cache_n][0] = e->cache_ids.len;
    e->cache_at[e->cache_n][1] = count;
    if (tok_ids_append(&e->cache_ids, e->ids.v + from, count) ||
        tok_strmap_set(&e->cache, w, n, (int32_t)e->cache_n))
        return -ENOMEM;
    e->cache_n++;
    return 0;
}

static int encode_word(struct enc *e, const char *w, size_t n, int part)
{
    int32_t k;
    int cacheable = n <= WORD_CACHE_MAX_LEN && e->cache_n < WORD_CACHE_MAX_ENTRIES;
    if (cacheable && tok_strmap_get(&e->cache, w, n, &k))
        return tok_ids_append(&e->ids, e->cache_ids.v + e->cache_at[k][0], e->cache_at[k][1]);
    size_t from = e->ids.len;
    int rc = e->t->unigram ? tok_unigram_word(&e->t->uni, &e->uni, w, n, &e->ids)
             : part        ? tok_bpe_part(&e->t->bpe, &e->bpe, w, n, &e->ids)
                           : tok_bpe_word(&e->t->bpe, &e->bpe, w, n, &e->ids);
    if (!rc && cacheable) rc = cache_put(e, w, n, from);
    return rc;
}

/* A word, in parts where the model says the parts are independent (tok_bpe_cut): the parts
 * of a text without pre-tokenizer are its words and hit the cache. */
static int encode_long_word(struct enc *e, const char *w, size_t n)
{
    size_t cut = e->t->unigram ? n : tok_bpe_cut(&e->t->bpe, w, n, 0);
    if (cut == n) return encode_word(e, w, n, 0);
    int rc = 0;
    for (size_t a = 0; a < n && !rc; a = cut, cut = tok_bpe_cut(&e->t->bpe, w, n, cut))
        rc = encode_word(e, w + a, cut - a, 1);
    return rc;
}

/* One piece of text between added tokens: normalize, cut normalized added tokens, pre-tokenize,
 * run the model on every word. */
static int encode_piece(struct enc *e, const char *s, size_t len, int first)
{
    const tok_tokenizer *t = e->t;
    const char *ns = s;
    size_t nlen = len;
    int rc;
    if (t->norm) {
        if ((rc = tok_norm_apply(t->norm, s, len, &e->norm))) return rc;
        ns = e->norm.p;
        nlen = e->norm.len;
    }
    if ((rc = tok_added_split(&t->added, 1, ns, nlen, &e->cuts1))) return rc;
    for (size_t c = 0; c < e->cuts1.n; c++) {
        const tok_cut *cut = &e->cuts1.v[c];
        if (cut->id >= 0) {
            if ((rc = tok_ids_push(&e->ids, cut->id))) return rc;
            continue;
        }
        e->words.n = 0;
        e->words.text.len = 0;
        rc = tok_pre_apply(t->pre, &e->pre, ns + cut->off, cut->len, first && cut->off == 0,
                           &e->words);
        for (size_t w = 0; w < e->words.n && !rc; w++)
            rc = encode_long_word(e, e->words.text.p + e->words.v[w].off, e->words.v[w].len);
        if (rc) return rc;
    }
    return 0;
}

static int encode_text(struct enc *e, const char *s, size_t len)
{
    tok_cuts cuts0 = {0};
    int rc = tok_added_split(&e->t->added, 0, s, len, &cuts0);
    for (size_t c = 0; c < cuts0.n && !rc; c++) {
        const tok_cut *cut = &cuts0.v[c];
        if (cut->id >= 0)
            rc = tok_ids_push(&e->ids, cut->id);
        else
            rc = encode_piece(e, s + cut->off, cut->len, cut->off == 0);
    }
    free(cuts0.v);
    return rc;
}

static int add_specials(const tok_tokenizer *t, const tok_ids *body, tok_ids *out)
{
    if (!t->override) return tok_post_apply(t->post, body->v, body->len, out);
    if (t->ov_bos >= 0 && tok_ids_push(out, t->ov_bos)) return -ENOMEM;
    if (tok_ids_append(out, body->v, body->len)) return -ENOMEM;
    return t->ov_eos >= 0 ? tok_ids_push(out, t->ov_eos) : 0;
}

int tok_encode(const tok_tokenizer *t, const char *text, size_t len, int add_special, int32_t **ids,
               size_t *n_ids, char *err, size_t errlen)
{
    *ids = NULL;
    *n_ids = 0;
    char *fixed = NULL;
    size_t flen;
    int rc = tok_utf8_repair(text, len, &fixed, &flen);
    if (rc < 0) goto oom;
    if (rc == 1) {
        text = fixed;
        len = flen;
    }
    struct enc e = {.t = t};
    if ((rc = tok_strmap_init(&e.cache, 4096)) == 0) rc = encode_text(&e, text, len);
    tok_ids out = {0};
    if (!rc && add_special)
        rc = add_specials(t, &e.ids, &out);
    else if (!rc) {
        out = e.ids;
        e.ids = (tok_ids){0};
    }
    enc_free(&e);
    free(fixed);
    if (rc) {
        tok_ids_free(&out);
        if (rc == -ENOMEM) goto oom;
        tok_seterr(err, errlen, "tokenizer: encoding failed (%s)", strerror(-rc));
        return rc;
    }
    if (!out.v && !(out.v = malloc(sizeof *out.v))) goto oom;
    *ids = out.v;
    *n_ids = out.len;
    return 0;
oom:
    tok_seterr(err, errlen, "tokenizer: out of memory encoding %zu bytes", len);
    return -ENOMEM;
}

/* ---- decoding ---- */

int tok_decode(const tok_tokenizer *t, const int32_t *ids, size_t n_ids, char **text, size_t *len,
               char *err, size_t errlen)
{
    tok_strs toks = {0};
    tok_buf out = {0};
    int rc = 0;
    *text = NULL;
    *len = 0;
    for (size_t i = 0; i < n_ids && !rc; i++) {
        const tok_added_token *a = tok_added_by_id(&t->added, ids[i]);
        const char *s;
        size_t n;
        if (a)
            rc = tok_strs_add(&toks, a->match, a->match_len); /* as the library: normalized form */
        else if ((s = model_token(t, ids[i], &n)))
            rc = tok_strs_add(&toks, s, n);
        else {
            tok_seterr(err, errlen, "tokenizer: id %d at position %zu is not in the vocabulary",
                       (int)ids[i], i);
            rc = -EINVAL;
        }
    }
    if (!rc) rc = tok_dec_apply(t->dec, &toks, &out);
    tok_strs_free(&toks);
    if (!rc && !out.p && tok_buf_reserve(&out, 1)) rc = -ENOMEM;
    if (rc) {
        if (rc == -ENOMEM)
            tok_seterr(err, errlen, "tokenizer: out of memory decoding %zu ids", n_ids);
        tok_buf_free(&out);
        return rc;
    }
    out.p[out.len] = '\0';
    *text = out.p;
    *len = out.len;
    return 0;
}
