/* Perplexity methods: the windows and scored tokens of each method on hand-computed small
 * cases (a recording scorer checks every (context, target) pair), and models whose output head
 * is zero — uniform logits — which must give exactly the vocabulary size for every method and
 * every architecture. The models are written to a temporary directory. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "model.h"
#include "ppl.h"

#include "../check.h"

/* Records which target token positions (in the text) were scored and with which context. */
typedef struct {
    const int32_t *text;
    int scored[64];
    int bad_context;
    int32_t first_ids[64];
    size_t n_windows;
} recorder;

/* ids carry their own text position (ids[i] = 100 + position), so the scorer can tell which
 * token of the text each window position holds. */
static int record(void *ctx, const int32_t *ids, size_t n, size_t first, double *nll, char *err,
                  size_t errlen)
{
    recorder *r = ctx;
    (void)err, (void)errlen;
    r->first_ids[r->n_windows++] = ids[0];
    size_t base = (size_t)(ids[n - 1] - 100) - (n - 1); /* text position of window row 0 */
    for (size_t t = first; t < n; t++) {
        size_t pos = base + t;
        r->scored[pos]++;
        for (size_t c = 1; c < t; c++) /* context rows keep their text order */
            if (ids[c] != (int32_t)(100 + base + c)) r->bad_context = 1;
        nll[t - first] = 1.0;
    }
    return 0;
}

static void run_case(ppl_method m, size_t N, size_t ctx, size_t stride, int32_t bos,
                     const char *want_scored, size_t want_windows)
{
    int32_t ids[64];
    for (size_t i = 0; i < N; i++)
        ids[i] = (int32_t)(100 + i);
    recorder r = {0};
    r.text = ids;
    ppl_params pp = {m, ctx, stride, bos};
    ppl_result res;
    char err[256] = "";
    int rc = ppl_run(&pp, ids, N, record, &r, NULL, NULL, &res, err, sizeof err);
    CHECK(rc == 0, "N=%zu ctx=%zu stride=%zu: %s", N, ctx, stride, err);
    if (rc) return;
    char got[65] = {0};
    size_t count = 0;
    for (size_t i = 0; i < N; i++) {
        got[i] = (char)('0' + r.scored[i]);
        count += (size_t)r.scored[i];
    }
    CHECK(strcmp(got, want_scored) == 0, "%s N=%zu ctx=%zu stride=%zu: scored %s, want %s",
          ppl_method_name(m), N, ctx, stride, got, want_scored);
    CHECK(res.count == count && res.windows == want_windows, "count %zu windows %zu (want %zu)",
          res.count, res.windows, want_windows);
    CHECK(!r.bad_context, "a target was scored with a wrong context");
    CHECK(fabs(res.ppl - M_E) < 1e-12, "ppl of unit NLL is e, got %.17g", res.ppl);
    if (m == PPL_LLAMACPP && bos >= 0)
        for (size_t w = 0; w < r.n_windows; w++)
            CHECK(r.first_ids[w] == bos, "chunk %zu starts with %d, not BOS", w, r.first_ids[w]);
}

static void test_windows(void)
{
    /* HF sliding, S == L: windows [0,4) [4,8) [8,10); each window's first token unscored:
     * count = N - n_windows = 7. */
    run_case(PPL_SLIDING, 10, 4, 4, -1, "0111011101", 3);
    /* S < L: [0,4) scores 1-3, [2,6) 4-5, [4,8) 6-7, [6,10) 8-9: every token but 0 once. */
    run_case(PPL_SLIDING, 10, 4, 2, -1, "0111111111", 4);
    /* S = 3, L = 4: [0,4) 1-3, [3,7) 4-6, [6,10) 7-9. */
    run_case(PPL_SLIDING, 10, 4, 3, -1, "0111111111", 3);
    /* Text shorter than one window: one window, all but the first scored. */
    run_case(PPL_SLIDING, 3, 8, 8, -1, "011", 1);
    /* llama.cpp: N = 10, C = 4: 2 chunks (tail 8-9 dropped), positions C/2+1 .. C-1 = 3. */
    run_case(PPL_LLAMACPP, 10, 4, 0, 7, "0001000100", 2);
    /* C = 6, N = 13: 2 chunks; scored local 4, 5 (C - C/2 - 1 = 2 per chunk). */
    run_case(PPL_LLAMACPP, 13, 6, 0, -1, "0000110000110", 2);
    /* llama.cpp needs N >= 2C; --stride > --ctx and ctx < 2 are refused. */
    char err[256];
    size_t nw, ns;
    ppl_params bad = {PPL_LLAMACPP, 8, 0, -1};
    CHECK(ppl_plan(&bad, 15, &nw, &ns, err, sizeof err) < 0 && strstr(err, "2 × ctx"), "%s", err);
    ppl_params bad2 = {PPL_SLIDING, 4, 5, -1};
    CHECK(ppl_plan(&bad2, 15, &nw, &ns, err, sizeof err) < 0 && strstr(err, "--stride"), "%s", err);
    ppl_params one = {PPL_SLIDING, 4, 4, -1};
    CHECK(ppl_plan(&one, 1, &nw, &ns, err, sizeof err) < 0 && strstr(err, "nothing to score"), "%s",
          err);
}

/* ---- generated models with a zero output head ---- */

typedef struct {
    char header[16384];
    size_t hlen;
    unsigned char *data;
    size_t dlen, dcap;
} st_writer;

static uint64_t rng = 88172645463325252ull;
static float frand(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 9007199254740992.0 - 0.5);
}

/* Add an F32 tensor with 1 or 2 dims; values random, or zero when zero != 0. */
static void add(st_writer *w, const char *name, size_t d0, size_t d1, int zero)
{
    size_t n = d0 * (d1 ? d1 : 1), bytes = n * 4;
    if (w->dlen + bytes > w->dcap) {
        w->dcap = (w->dlen + bytes) * 2;
        w->data = realloc(w->data, w->dcap);
    }
    for (size_t i = 0; i < n; i++) {
        float f = zero ? 0.0f : frand();
        memcpy(w->data + w->dlen + 4 * i, &f, 4);
    }
    char shape[64];
    if (d1)
        snprintf(shape, sizeof shape, "[%zu,%zu]", d0, d1);
    else
        snprintf(shape, sizeof shape, "[%zu]", d0);
    w->hlen += (size_t)snprintf(w->header + w->hlen, sizeof w->header - w->hlen,
                                "%s\"%s\":{\"dtype\":\"F32\",\"shape\":%s,\"data_offsets\":[%zu,"
                                "%zu]}",
                                w->hlen > 1 ? "," : "", name, shape, w->dlen, w->dlen + bytes);
    w->dlen += bytes;
}

static void finish(st_writer *w, const char *dir, const char *config)
{
    char path[512];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    w->hlen += (size_t)snprintf(w->header + w->hlen, sizeof w->header - w->hlen, "}");
    FILE *f = fopen(path, "wb");
    uint64_t hl = w->hlen;
    unsigned char le[8];
    for (int i = 0; i < 8; i++)
        le[i] = (unsigned char)(hl >> (8 * i));
    fwrite(le, 1, 8, f);
    fwrite(w->header, 1, w->hlen, f);
    fwrite(w->data, 1, w->dlen, f);
    fclose(f);
    snprintf(path, sizeof path, "%s/config.json", dir);
    f = fopen(path, "w");
    fputs(config, f);
    fclose(f);
    free(w->data);
}

enum { V = 37, D = 8, F = 16, L = 2 };

static void llama_tensors(st_writer *w, int layers, int zero_head)
{
    char nm[128];
    add(w, "model.embed_tokens.weight", V, D, 0);
    add(w, "lm_head.weight", V, D, zero_head);
    add(w, "model.norm.weight", D, 0, 0);
    for (int l = 0; l < layers; l++) {
        const char *parts[][3] = {{"self_attn.q_proj", "8", "8"}, {"self_attn.k_proj", "4", "8"},
                                  {"self_attn.v_proj", "4", "8"}, {"self_attn.o_proj", "8", "8"},
                                  {"mlp.gate_proj", "16", "8"},   {"mlp.up_proj", "16", "8"},
                                  {"mlp.down_proj", "8", "16"}};
        for (size_t p = 0; p < 7; p++) {
            snprintf(nm, sizeof nm, "model.layers.%d.%s.weight", l, parts[p][0]);
            add(w, nm, (size_t)atoi(parts[p][1]), (size_t)atoi(parts[p][2]), 0);
        }
        snprintf(nm, sizeof nm, "model.layers.%d.input_layernorm.weight", l);
        add(w, nm, D, 0, 0);
        snprintf(nm, sizeof nm, "model.layers.%d.post_attention_layernorm.weight", l);
        add(w, nm, D, 0, 0);
    }
}

static void make_llama(const char *dir)
{
    st_writer w = {.header = "{", .hlen = 1};
    llama_tensors(&w, L, 1);
    finish(&w, dir,
           "{\"model_type\":\"llama\",\"hidden_size\":8,\"intermediate_size\":16,"
           "\"num_hidden_layers\":2,\"num_attention_heads\":2,\"num_key_value_heads\":1,"
           "\"rms_norm_eps\":1e-5,\"vocab_size\":37,\"hidden_act\":\"silu\","
           "\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8.0,\"low_freq_factor\":1.0,"
           "\"high_freq_factor\":4.0,\"original_max_position_embeddings\":16}}");
}

static void make_gpt2(const char *dir)
{
    st_writer w = {.header = "{", .hlen = 1};
    char nm[128];
    add(&w, "wte.weight", V, D, 1); /* tied head: zero embeddings give uniform logits */
    add(&w, "wpe.weight", 32, D, 0);
    add(&w, "ln_f.weight", D, 0, 0);
    add(&w, "ln_f.bias", D, 0, 0);
    for (int l = 0; l < L; l++) {
        const char *mats[][3] = {{"attn.c_attn", "8", "24"},
                                 {"attn.c_proj", "8", "8"},
                                 {"mlp.c_fc", "8", "32"},
                                 {"mlp.c_proj", "32", "8"}};
        for (size_t p = 0; p < 4; p++) {
            snprintf(nm, sizeof nm, "h.%d.%s.weight", l, mats[p][0]);
            add(&w, nm, (size_t)atoi(mats[p][1]), (size_t)atoi(mats[p][2]), 0);
            snprintf(nm, sizeof nm, "h.%d.%s.bias", l, mats[p][0]);
            add(&w, nm, (size_t)atoi(mats[p][2]), 0, 0);
        }
        const char *lns[] = {"ln_1", "ln_2"};
        for (int k = 0; k < 2; k++) {
            snprintf(nm, sizeof nm, "h.%d.%s.weight", l, lns[k]);
            add(&w, nm, D, 0, 0);
            snprintf(nm, sizeof nm, "h.%d.%s.bias", l, lns[k]);
            add(&w, nm, D, 0, 0);
        }
        snprintf(nm, sizeof nm, "h.%d.attn.bias", l); /* the causal-mask buffer: ignored */
        add(&w, nm, 32, 32, 0);
    }
    finish(&w, dir,
           "{\"model_type\":\"gpt2\",\"n_embd\":8,\"n_layer\":2,\"n_head\":2,"
           "\"n_positions\":32,\"vocab_size\":37,\"activation_function\":\"gelu_new\"}");
}

static void make_neox(const char *dir)
{
    st_writer w = {.header = "{", .hlen = 1};
    char nm[128];
    add(&w, "gpt_neox.embed_in.weight", V, D, 0);
    add(&w, "embed_out.weight", V, D, 1);
    add(&w, "gpt_neox.final_layer_norm.weight", D, 0, 0);
    add(&w, "gpt_neox.final_layer_norm.bias", D, 0, 0);
    for (int l = 0; l < L; l++) {
        const char *mats[][3] = {{"attention.query_key_value", "24", "8"},
                                 {"attention.dense", "8", "8"},
                                 {"mlp.dense_h_to_4h", "32", "8"},
                                 {"mlp.dense_4h_to_h", "8", "32"}};
        for (size_t p = 0; p < 4; p++) {
            snprintf(nm, sizeof nm, "gpt_neox.layers.%d.%s.weight", l, mats[p][0]);
            add(&w, nm, (size_t)atoi(mats[p][1]), (size_t)atoi(mats[p][2]), 0);
            snprintf(nm, sizeof nm, "gpt_neox.layers.%d.%s.bias", l, mats[p][0]);
            add(&w, nm, (size_t)atoi(mats[p][1]), 0, 0);
        }
        const char *lns[] = {"input_layernorm", "post_attention_layernorm"};
        for (int k = 0; k < 2; k++) {
            snprintf(nm, sizeof nm, "gpt_neox.layers.%d.%s.weight", l, lns[k]);
            add(&w, nm, D, 0, 0);
            snprintf(nm, sizeof nm, "gpt_neox.layers.%d.%s.bias", l, lns[k]);
            add(&w, nm, D, 0, 0);
        }
    }
    finish(&w, dir,
           "{\"model_type\":\"gpt_neox\",\"hidden_size\":8,\"intermediate_size\":32,"
           "\"num_hidden_layers\":2,\"num_attention_heads\":2,\"rotary_pct\":0.5,"
           "\"use_parallel_residual\":true,\"hidden_act\":\"gelu\",\"vocab_size\":37}");
}

typedef struct {
    mdl_model *m;
    pool *p;
} scorer;

static int score(void *ctx, const int32_t *ids, size_t n, size_t first, double *nll, char *err,
                 size_t errlen)
{
    scorer *s = ctx;
    return mdl_window_nll(s->m, s->p, ids, n, first, nll, err, errlen);
}

static void test_uniform(const char *root)
{
    void (*makers[])(const char *) = {make_llama, make_gpt2, make_neox};
    const char *names[] = {"llama", "gpt2", "gpt_neox"};
    int32_t ids[200];
    for (int i = 0; i < 200; i++)
        ids[i] = (int32_t)((i * 7 + 3) % V);
    pool *p;
    if (pool_create(2, &p) < 0) return;
    for (int a = 0; a < 3; a++) {
        char dir[512], err[1024];
        snprintf(dir, sizeof dir, "%s/%s", root, names[a]);
        mkdir(dir, 0700);
        makers[a](dir);
        mdl_options o = {1, 1, NULL, NULL};
        mdl_model *m;
        int rc = mdl_load(dir, &o, &m, err, sizeof err);
        CHECK(rc == 0, "%s: %s", names[a], err);
        if (rc) continue;
        CHECK(mdl_vocab(m) == V, "%s vocab %zu", names[a], mdl_vocab(m));
        scorer s = {m, p};
        const ppl_params settings[] = {{PPL_SLIDING, 32, 32, -1},
                                       {PPL_SLIDING, 32, 8, -1},
                                       {PPL_LLAMACPP, 32, 0, 1},
                                       {PPL_LLAMACPP, 16, 0, -1}};
        for (size_t k = 0; k < sizeof settings / sizeof settings[0]; k++) {
            ppl_result r;
            rc = ppl_run(&settings[k], ids, 200, score, &s, NULL, NULL, &r, err, sizeof err);
            CHECK(rc == 0, "%s: %s", names[a], err);
            CHECK(rc || fabs(r.ppl - V) < 1e-9 * V,
                  "%s %s ctx %zu: uniform logits give %.12g, "
                  "not the vocabulary size %d",
                  names[a], ppl_method_name(settings[k].method), settings[k].ctx, r.ppl, V);
        }
        /* an id outside the vocabulary is refused with a message */
        int32_t badids[4] = {1, 2, V, 3};
        double nll[4];
        CHECK(mdl_window_nll(m, p, badids, 4, 1, nll, err, sizeof err) < 0 &&
                  strstr(err, "token id 37 at position 2"),
              "%s: %s", names[a], err);
        mdl_free(m);
    }
    pool_free(p);
}

/* Mistral's sliding window: with one layer and RoPE (relative positions), the prediction at
 * position p with window W equals the last prediction of a window holding only the W tokens
 * that position may see, ids[p-W+1 .. p], evaluated alone. */
static void test_mistral_window(const char *root)
{
    char dir[512], err[1024];
    snprintf(dir, sizeof dir, "%s/mistral", root);
    mkdir(dir, 0700);
    st_writer w = {.header = "{", .hlen = 1};
    llama_tensors(&w, 1, 0);
    finish(&w, dir,
           "{\"model_type\":\"mistral\",\"hidden_size\":8,\"intermediate_size\":16,"
           "\"num_hidden_layers\":1,\"num_attention_heads\":2,\"num_key_value_heads\":1,"
           "\"rms_norm_eps\":1e-5,\"vocab_size\":37,\"sliding_window\":4}");
    mdl_options o = {1, 1, NULL, NULL};
    mdl_model *m;
    pool *p;
    if (mdl_load(dir, &o, &m, err, sizeof err) < 0 || pool_create(2, &p) < 0) {
        CHECK(0, "mistral: %s", err);
        return;
    }
    enum { N = 24, W = 4 };
    int32_t ids[N];
    double full[N], one;
    for (int i = 0; i < N; i++)
        ids[i] = (int32_t)((i * 11 + 5) % V);
    CHECK(mdl_window_nll(m, p, ids, N, 1, full, err, sizeof err) == 0, "%s", err);
    double worst = 0, spread = 0;
    for (int q = 1; q + 1 < N; q++) { /* query position q predicts ids[q + 1] */
        int lo = q + 1 > W ? q + 1 - W : 0;
        CHECK(mdl_window_nll(m, p, ids + lo, (size_t)(q + 2 - lo), (size_t)(q + 1 - lo), &one, err,
                             sizeof err) == 0,
              "%s", err);
        worst = fmax(worst, fabs(one - full[q]));
        spread = fmax(spread, fabs(full[q] - full[1]));
    }
    CHECK(worst < 1e-5, "sliding window: predictions differ by %g from the windowed prefix", worst);
    CHECK(spread > 1e-3, "the test model's predictions do not vary (%g)", spread);
    mdl_free(m);
    pool_free(p);
}

/* RoPE scaling without a reference to compare with: linear with factor 1 and dynamic within the
 * trained length must equal plain RoPE exactly; linear factor 2, dynamic beyond the trained
 * length and llama3 must change the predictions. */
/* A two-layer llama trained on 32 positions with the given rope_scaling (NULL on failure). */
static mdl_model *scaled_model(const char *root, const char *name, const char *scaling)
{
    char dir[512], cfg[1024], err[1024];
    snprintf(dir, sizeof dir, "%s/%s", root, name);
    mkdir(dir, 0700);
    rng = 88172645463325252ull; /* same weights for every variant */
    st_writer w = {.header = "{", .hlen = 1};
    llama_tensors(&w, 2, 0);
    snprintf(cfg, sizeof cfg,
             "{\"model_type\":\"llama\",\"hidden_size\":8,\"intermediate_size\":16,"
             "\"num_hidden_layers\":2,\"num_attention_heads\":2,\"num_key_value_heads\":1,"
             "\"rms_norm_eps\":1e-5,\"max_position_embeddings\":32,\"rope_theta\":100.0,"
             "\"rope_scaling\":%s}",
             scaling);
    finish(&w, dir, cfg);
    mdl_options o = {1, 1, NULL, NULL};
    mdl_model *m;
    if (mdl_load(dir, &o, &m, err, sizeof err) < 0) {
        CHECK(0, "%s: %s", name, err);
        return NULL;
    }
    return m;
}

static double scaled_nll(const char *root, const char *name, const char *scaling, size_t n, pool *p)
{
    char err[1024];
    mdl_model *m = scaled_model(root, name, scaling);
    if (!m) return NAN;
    int32_t ids[64];
    double nll[64], sum = 0;
    for (size_t i = 0; i < n; i++)
        ids[i] = (int32_t)((i * 13 + 1) % V);
    CHECK(mdl_window_nll(m, p, ids, n, 1, nll, err, sizeof err) == 0, "%s: %s", name, err);
    for (size_t i = 0; i + 1 < n; i++)
        sum += nll[i];
    mdl_free(m);
    return sum;
}

static void test_rope_scaling(const char *root)
{
    pool *p;
    if (pool_create(2, &p) < 0) return;
    double plain24 = scaled_nll(root, "plain", "null", 24, p);
    double plain48 = scaled_nll(root, "plain", "null", 48, p);
    CHECK(scaled_nll(root, "lin1", "{\"type\":\"linear\",\"factor\":1.0}", 24, p) == plain24,
          "linear factor 1 differs from plain RoPE");
    CHECK(fabs(scaled_nll(root, "lin2", "{\"type\":\"linear\",\"factor\":2.0}", 24, p) - plain24) >
              1e-6,
          "linear factor 2 changes nothing");
    const char *dyn = "{\"rope_type\":\"dynamic\",\"factor\":4.0}";
    CHECK(scaled_nll(root, "dyn", dyn, 24, p) == plain24,
          "dynamic scaling within the trained 32 positions differs from plain RoPE");
    CHECK(fabs(scaled_nll(root, "dyn", dyn, 48, p) - plain48) > 1e-6,
          "dynamic scaling beyond the trained length changes nothing");
    CHECK(fabs(scaled_nll(root, "l3",
                          "{\"rope_type\":\"llama3\",\"factor\":8.0,\"low_freq_factor\":1.0,"
                          "\"high_freq_factor\":4.0,\"original_max_position_embeddings\":32}",
                          24, p) -
               plain24) > 1e-6,
          "llama3 scaling changes nothing");
    pool_free(p);
}

/* Past the trained length: learned positions (gpt2) have no row for it, so the window is
 * refused; RoPE models run there as transformers does, and only a model without dynamic
 * scaling makes the figure incomparable (the caller warns). */
static void test_ctx_limits(const char *root)
{
    char dir[512], err[1024];
    snprintf(dir, sizeof dir, "%s/gpt2", root);
    mdl_options o = {1, 1, NULL, NULL};
    mdl_model *m;
    if (mdl_load(dir, &o, &m, err, sizeof err) == 0) {
        CHECK(mdl_max_ctx(m) == 32, "gpt2: max ctx %zu, not n_positions 32", mdl_max_ctx(m));
        mdl_free(m);
    } else {
        CHECK(0, "gpt2: %s", err);
    }
    const char *cases[][2] = {{"lim_plain", "null"},
                              {"lim_linear", "{\"type\":\"linear\",\"factor\":2.0}"},
                              {"lim_dyn", "{\"rope_type\":\"dynamic\",\"factor\":4.0}"}};
    size_t want[] = {32, 32, 0};
    for (size_t i = 0; i < 3; i++) {
        if (!(m = scaled_model(root, cases[i][0], cases[i][1]))) continue;
        CHECK(mdl_max_ctx(m) == 0, "%s: RoPE model refuses windows past %zu", cases[i][0],
              mdl_max_ctx(m));
        CHECK(mdl_comparable_ctx(m) == want[i], "%s: comparable ctx %zu, expected %zu", cases[i][0],
              mdl_comparable_ctx(m), want[i]);
        mdl_free(m);
    }
}

int main(void)
{
    test_windows();
    char root[] = "/tmp/hfppl-ppl-XXXXXX";
    if (!mkdtemp(root)) return 1;
    test_uniform(root);
    test_mistral_window(root);
    test_rope_scaling(root);
    test_ctx_limits(root);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", root);
    if (failures) {
        fprintf(stderr, "%d failures\n", failures);
        return 1;
    }
    printf("ppl: all checks passed\n");
    return 0;
}
