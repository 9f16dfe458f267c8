/* model.c — see model.h. Loading (config → typed fields, tensors → weight views) comes first,
 * then the forward pass: embeddings, per-layer attention and MLP as batched matrix products
 * over the whole window, final norm and the vocabulary projection of the scored rows only. */
#include "model.h"
#include "jsonfile.h"
#include "prefetch.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { MDL_LLAMA, MDL_GPT2, MDL_NEOX } mdl_arch;
typedef enum { ACT_SILU, ACT_GELU_ERF, ACT_GELU_TANH } mdl_act;
typedef enum { ROPE_NONE, ROPE_LINEAR, ROPE_DYNAMIC, ROPE_LLAMA3 } mdl_rope_kind;

typedef struct {
    kn_weight w;
    size_t n, k; /* outputs, inputs */
} mdl_mat;

typedef struct {
    float *norm1_w, *norm1_b, *norm2_w, *norm2_b;
    mdl_mat q, k, v, qkv, o, gate, up, down;
    float *bq, *bk, *bv, *bqkv, *bo, *bgate, *bup, *bdown;
    const st_tensor *tensors[16]; /* for read-ahead */
    int n_tensors;
} mdl_layer;

/* Buffers of one window, grown to the longest window seen. */
typedef struct {
    size_t cap_t, cap_rows;
    float *x, *xn, *q, *k, *v, *att, *tmp, *h1, *h2, *logits;
    double *cosv, *sinv;
} mdl_ws;

struct mdl_model {
    mdl_arch arch;
    char type[32];
    size_t d, n_layers, n_heads, n_kv, head_dim, ffn, vocab, max_pos;
    size_t rot_dim;
    double theta;
    mdl_rope_kind rope;
    double rope_factor, rope_low, rope_high, rope_orig;
    size_t sliding_window; /* 0: full causal attention */
    float eps;
    mdl_act act;
    int parallel_residual, qkv_fused, attn_bias, mlp_bias;
    size_t rope_cached; /* dynamic scaling: the length the frequencies were computed for */
    mdl_mat embed, lm_head;
    const st_tensor *embed_t, *pos_t, *head_t;
    float *final_w, *final_b;
    mdl_layer *layers;
    st_set *st;
    const kn_isa *isa;
    uint64_t n_params, weight_bytes;
    pf_reader *pf;         /* background readers of the mapped files (NULL: none) */
    unsigned char *queued; /* per tensor of the set: already handed to pf */
    st_dtype dtype;
    mdl_ws ws;
};

__attribute__((format(printf, 3, 4))) static int mdl_fail(char *err, size_t errlen, const char *fmt,
                                                          ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

__attribute__((format(printf, 3, 4))) static int mdl_oom(char *err, size_t errlen, const char *fmt,
                                                         ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -ENOMEM;
}

/* ---- config.json ---- */

typedef struct {
    json_t *root;
    const char *path;
    char *err;
    size_t errlen;
    int rc; /* first error */
} mdl_cfg;

static json_t *cfg_get(mdl_cfg *c, const char *key)
{
    json_t *v = json_object_get(c->root, key);
    return json_is_null(v) ? NULL : v;
}

static double cfg_num(mdl_cfg *c, const char *key, double def, int required)
{
    json_t *v = cfg_get(c, key);
    if (!v) {
        if (required && c->rc == 0)
            c->rc = mdl_fail(c->err, c->errlen, "%s: missing \"%s\"", c->path, key);
        return def;
    }
    if (!json_is_number(v)) {
        if (c->rc == 0)
            c->rc = mdl_fail(c->err, c->errlen, "%s: \"%s\" is not a number", c->path, key);
        return def;
    }
    return json_number_value(v);
}

static size_t cfg_size(mdl_cfg *c, const char *key, size_t def, int required)
{
    double v = cfg_num(c, key, (double)def, required);
    if (c->rc == 0 && (v < 0 || v != floor(v) || v > 1e12))
        c->rc = mdl_fail(c->err, c->errlen, "%s: \"%s\" = %g is not a valid size", c->path, key, v);
    return c->rc == 0 ? (size_t)v : def;
}

static int cfg_bool(mdl_cfg *c, const char *key, int def)
{
    json_t *v = cfg_get(c, key);
    if (!v) return def;
    if (!json_is_boolean(v)) {
        if (c->rc == 0)
            c->rc = mdl_fail(c->err, c->errlen, "%s: \"%s\" is not true/false", c->path, key);
        return def;
    }
    return json_is_true(v);
}

static const char *cfg_str(mdl_cfg *c, const char *key, const char *def)
{
    json_t *v = cfg_get(c, key);
    if (!v) return def;
    if (!json_is_string(v)) {
        if (c->rc == 0)
            c->rc = mdl_fail(c->err, c->errlen, "%s: \"%s\" is not a string", c->path, key);
        return def;
    }
    return json_string_value(v);
}

static int cfg_act(mdl_cfg *c, const char *key, const char *def, mdl_act *out)
{
    const char *a = cfg_str(c, key, def);
    if (c->rc) return c->rc;
    if (strcmp(a, "silu") == 0 || strcmp(a, "swish") == 0)
        *out = ACT_SILU;
    else if (strcmp(a, "gelu") == 0)
        *out = ACT_GELU_ERF;
    else if (strcmp(a, "gelu_new") == 0 || strcmp(a, "gelu_pytorch_tanh") == 0)
        *out = ACT_GELU_TANH;
    else
        return c->rc = mdl_fail(c->err, c->errlen, "%s: unsupported activation \"%s\": \"%s\"",
                                c->path, key, a);
    return 0;
}

/* rope_scaling (or transformers v5 rope_parameters): linear, dynamic, llama3 or none. */
static int cfg_rope(mdl_cfg *c, mdl_model *m)
{
    json_t *rs = cfg_get(c, "rope_parameters");
    if (!rs) rs = cfg_get(c, "rope_scaling");
    m->rope = ROPE_NONE;
    if (!rs) return 0;
    if (!json_is_object(rs))
        return c->rc =
                   mdl_fail(c->err, c->errlen, "%s: \"rope_scaling\" is not an object", c->path);
    json_t *th = json_object_get(rs, "rope_theta");
    if (json_is_number(th)) m->theta = json_number_value(th);
    json_t *ty = json_object_get(rs, "rope_type");
    if (!ty) ty = json_object_get(rs, "type");
    const char *t = json_is_string(ty) ? json_string_value(ty) : "default";
    mdl_cfg sub = {rs, c->path, c->err, c->errlen, 0};
    if (strcmp(t, "default") == 0) return 0;
    m->rope_factor = cfg_num(&sub, "factor", 1.0, 1);
    m->rope_orig = cfg_num(&sub, "original_max_position_embeddings", (double)m->max_pos,
                           strcmp(t, "llama3") == 0);
    if (strcmp(t, "linear") == 0) {
        m->rope = ROPE_LINEAR;
    } else if (strcmp(t, "dynamic") == 0) {
        m->rope = ROPE_DYNAMIC;
    } else if (strcmp(t, "llama3") == 0) {
        m->rope = ROPE_LLAMA3;
        m->rope_low = cfg_num(&sub, "low_freq_factor", 1.0, 1);
        m->rope_high = cfg_num(&sub, "high_freq_factor", 4.0, 1);
        if (sub.rc == 0 && m->rope_high <= m->rope_low)
            sub.rc =
                mdl_fail(c->err, c->errlen,
                         "%s: rope_scaling high_freq_factor must exceed low_freq_factor", c->path);
    } else {
        return c->rc = mdl_fail(c->err, c->errlen,
                                "%s: unsupported rope_scaling type \"%s\" (linear, dynamic and "
                                "llama3 are implemented)",
                                c->path, t);
    }
    if (sub.rc == 0 && !(m->rope_factor > 0))
        sub.rc = mdl_fail(c->err, c->errlen, "%s: rope_scaling factor must be positive", c->path);
    return c->rc = sub.rc;
}

static int cfg_llama(mdl_cfg *c, mdl_model *m)
{
    m->arch = MDL_LLAMA;
    m->d = cfg_size(c, "hidden_size", 0, 1);
    m->n_layers = cfg_size(c, "num_hidden_layers", 0, 1);
    m->n_heads = cfg_size(c, "num_attention_heads", 0, 1);
    m->n_kv = cfg_size(c, "num_key_value_heads", m->n_heads, 0);
    m->ffn = cfg_size(c, "intermediate_size", 0, 1);
    m->max_pos = cfg_size(c, "max_position_embeddings", 0, 0);
    m->eps = (float)cfg_num(c, "rms_norm_eps", 1e-6, 1);
    m->theta = cfg_num(c, "rope_theta", 10000.0, 0);
    if (c->rc) return c->rc;
    if (m->n_heads == 0 || m->n_kv == 0 || m->n_heads % m->n_kv != 0)
        return mdl_fail(c->err, c->errlen,
                        "%s: num_attention_heads %zu is not a multiple of num_key_value_heads "
                        "%zu",
                        c->path, m->n_heads, m->n_kv);
    m->head_dim = cfg_size(c, "head_dim", m->d / m->n_heads, 0);
    double prf = cfg_num(c, "partial_rotary_factor", 1.0, 0);
    m->rot_dim = (size_t)((double)m->head_dim * prf);
    if (cfg_act(c, "hidden_act", "silu", &m->act) || cfg_rope(c, m)) return c->rc;
    if (m->act != ACT_SILU)
        return mdl_fail(c->err, c->errlen, "%s: %s with a non-SiLU MLP is not supported", c->path,
                        m->type);
    int qwen2 = strcmp(m->type, "qwen2") == 0;
    m->attn_bias = qwen2 || cfg_bool(c, "attention_bias", 0);
    m->mlp_bias = cfg_bool(c, "mlp_bias", 0);
    if (strcmp(m->type, "mistral") == 0) m->sliding_window = cfg_size(c, "sliding_window", 0, 0);
    if (strcmp(m->type, "qwen2") == 0 && cfg_bool(c, "use_sliding_window", 0))
        return mdl_fail(c->err, c->errlen,
                        "%s: qwen2 with use_sliding_window true is not supported", c->path);
    return c->rc;
}

static int cfg_gpt2(mdl_cfg *c, mdl_model *m)
{
    m->arch = MDL_GPT2;
    m->d = cfg_size(c, "n_embd", 0, 1);
    m->n_layers = cfg_size(c, "n_layer", 0, 1);
    m->n_heads = cfg_size(c, "n_head", 0, 1);
    m->ffn = cfg_size(c, "n_inner", 4 * m->d, 0);
    m->max_pos = cfg_size(c, "n_positions", 1024, 0);
    m->eps = (float)cfg_num(c, "layer_norm_epsilon", 1e-5, 0);
    if (cfg_act(c, "activation_function", "gelu_new", &m->act)) return c->rc;
    if (!cfg_bool(c, "scale_attn_weights", 1) || cfg_bool(c, "scale_attn_by_inverse_layer_idx", 0))
        return mdl_fail(c->err, c->errlen,
                        "%s: gpt2 attention scaling options other than the default are not "
                        "supported",
                        c->path);
    if (m->n_heads == 0) return mdl_fail(c->err, c->errlen, "%s: n_head is 0", c->path);
    m->n_kv = m->n_heads;
    m->head_dim = m->d / m->n_heads;
    m->rot_dim = 0;
    m->qkv_fused = 1;
    return c->rc;
}

static int cfg_neox(mdl_cfg *c, mdl_model *m)
{
    m->arch = MDL_NEOX;
    m->d = cfg_size(c, "hidden_size", 0, 1);
    m->n_layers = cfg_size(c, "num_hidden_layers", 0, 1);
    m->n_heads = cfg_size(c, "num_attention_heads", 0, 1);
    m->ffn = cfg_size(c, "intermediate_size", 4 * m->d, 0);
    m->max_pos = cfg_size(c, "max_position_embeddings", 0, 0);
    m->eps = (float)cfg_num(c, "layer_norm_eps", 1e-5, 0);
    m->theta = cfg_num(c, "rotary_emb_base", cfg_num(c, "rope_theta", 10000.0, 0), 0);
    double pct = cfg_num(c, "rotary_pct", 0.25, 0);
    m->parallel_residual = cfg_bool(c, "use_parallel_residual", 1);
    if (cfg_act(c, "hidden_act", "gelu", &m->act) || cfg_rope(c, m)) return c->rc;
    if (m->n_heads == 0)
        return mdl_fail(c->err, c->errlen, "%s: num_attention_heads is 0", c->path);
    m->n_kv = m->n_heads;
    m->head_dim = m->d / m->n_heads;
    m->rot_dim = (size_t)((double)m->head_dim * pct);
    m->qkv_fused = 1;
    return c->rc;
}

static int mdl_config(const char *dir, mdl_model *m, int *tie, char *err, size_t errlen)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    json_t *root;
    int lrc = jf_load(path, 0, &root, err, errlen);
    if (lrc == -ENOENT)
        return mdl_fail(err, errlen, "%s/config.json: not found (not a model directory)", dir);
    if (lrc < 0) return lrc;
    mdl_cfg c = {root, path, err, errlen, 0};
    const char *type = cfg_str(&c, "model_type", NULL);
    int rc = c.rc;
    if (!rc && !type) rc = mdl_fail(err, errlen, "%s: missing \"model_type\"", path);
    if (!rc) {
        snprintf(m->type, sizeof m->type, "%s", type);
        if (!strcmp(type, "llama") || !strcmp(type, "mistral") || !strcmp(type, "qwen2"))
            rc = cfg_llama(&c, m);
        else if (!strcmp(type, "gpt2"))
            rc = cfg_gpt2(&c, m);
        else if (!strcmp(type, "gpt_neox"))
            rc = cfg_neox(&c, m);
        else
            rc = mdl_fail(err, errlen,
                          "%s: unsupported model_type \"%s\" (supported: llama, mistral, qwen2, "
                          "gpt2, gpt_neox)",
                          path, type);
    }
    if (!rc) {
        *tie = cfg_bool(&c, "tie_word_embeddings", m->arch == MDL_GPT2);
        rc = c.rc;
    }
    if (!rc && (m->d == 0 || m->n_layers == 0 || m->head_dim == 0 || m->rot_dim % 2 ||
                m->rot_dim > m->head_dim))
        rc = mdl_fail(err, errlen, "%s: inconsistent sizes (hidden %zu, layers %zu, head_dim %zu)",
                      path, m->d, m->n_layers, m->head_dim);
    json_decref(root);
    return rc;
}

/* ---- tensors ---- */

typedef struct {
    mdl_model *m;
    mdl_layer *layer; /* tensors bound now belong to this layer's read-ahead list */
    char *err;
    size_t errlen;
    int rc;
} mdl_bind;

static st_tensor *bind_tensor(mdl_bind *b, const char *name, int required)
{
    if (b->rc) return NULL;
    st_tensor *t = st_find(b->m->st, name);
    if (!t) {
        if (required)
            b->rc = mdl_fail(b->err, b->errlen, "%s: required tensor '%s' is missing",
                             st_file_path(b->m->st, 0), name);
        return NULL;
    }
    if (t->dtype != ST_F32 && t->dtype != ST_F16 && t->dtype != ST_BF16) {
        b->rc = mdl_fail(b->err, b->errlen,
                         "%s: tensor '%s' has dtype %s (F32, F16 and BF16 are supported)",
                         st_file_path(b->m->st, t->file), name, st_dtype_name(t->dtype));
        return NULL;
    }
    if (!t->used) {
        b->m->n_params += st_elements(t);
        b->m->weight_bytes += t->end - t->begin;
    }
    t->used = 1;
    if (b->layer &&
        b->layer->n_tensors < (int)(sizeof b->layer->tensors / sizeof b->layer->tensors[0]))
        b->layer->tensors[b->layer->n_tensors++] = t;
    return t;
}

static int bind_shape(mdl_bind *b, const st_tensor *t, uint64_t d0, uint64_t d1, int ndim)
{
    int ok = t->ndim == ndim && t->shape[0] == d0 && (ndim == 1 || t->shape[1] == d1);
    if (!ok) {
        char got[128] = "";
        for (int i = 0; i < t->ndim && strlen(got) < 100; i++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%llu", i ? ", " : "",
                     (unsigned long long)t->shape[i]);
        if (ndim == 1)
            b->rc = mdl_fail(b->err, b->errlen, "%s: tensor '%s' has shape [%s], expected [%llu]",
                             st_file_path(b->m->st, t->file), t->name, got, (unsigned long long)d0);
        else
            b->rc =
                mdl_fail(b->err, b->errlen, "%s: tensor '%s' has shape [%s], expected [%llu, %llu]",
                         st_file_path(b->m->st, t->file), t->name, got, (unsigned long long)d0,
                         (unsigned long long)d1);
    }
    return b->rc;
}

static kn_dtype mdl_kn_dtype(st_dtype d)
{
    return d == ST_F32 ? KN_F32 : d == ST_F16 ? KN_F16 : KN_BF16;
}

/* An [n outputs, k inputs] matrix stored [n, k] (KN_NK) or [k, n] (KN_KN). */
static void bind_mat(mdl_bind *b, const char *name, size_t n, size_t k, kn_layout layout,
                     mdl_mat *out, int required)
{
    const st_tensor *t = bind_tensor(b, name, required);
    if (!t) return;
    if (layout == KN_NK ? bind_shape(b, t, n, k, 2) : bind_shape(b, t, k, n, 2)) return;
    out->w.data = t->data;
    out->w.dtype = mdl_kn_dtype(t->dtype);
    out->w.layout = layout;
    out->w.ld = layout == KN_NK ? k : n;
    out->n = n;
    out->k = k;
}

static float *bind_vec(mdl_bind *b, const char *name, size_t n, int required)
{
    const st_tensor *t = bind_tensor(b, name, required);
    if (!t || bind_shape(b, t, n, 0, 1)) return NULL;
    float *v = malloc(n * sizeof *v);
    if (!v) {
        b->rc = -ENOMEM;
        return NULL;
    }
    kn_load_row(v, t->data, mdl_kn_dtype(t->dtype), n);
    return v;
}

#define NAME(buf, ...) (snprintf(buf, sizeof buf, __VA_ARGS__), buf)

static void bind_llama_layer(mdl_bind *b, size_t i, mdl_layer *L)
{
    mdl_model *m = b->m;
    char nm[256];
    size_t d = m->d, qd = m->n_heads * m->head_dim, kvd = m->n_kv * m->head_dim;
    int qkv_bias = strcmp(m->type, "qwen2") == 0;
    const char *p = "model.layers";
    L->norm1_w = bind_vec(b, NAME(nm, "%s.%zu.input_layernorm.weight", p, i), d, 1);
    L->norm2_w = bind_vec(b, NAME(nm, "%s.%zu.post_attention_layernorm.weight", p, i), d, 1);
    bind_mat(b, NAME(nm, "%s.%zu.self_attn.q_proj.weight", p, i), qd, d, KN_NK, &L->q, 1);
    bind_mat(b, NAME(nm, "%s.%zu.self_attn.k_proj.weight", p, i), kvd, d, KN_NK, &L->k, 1);
    bind_mat(b, NAME(nm, "%s.%zu.self_attn.v_proj.weight", p, i), kvd, d, KN_NK, &L->v, 1);
    bind_mat(b, NAME(nm, "%s.%zu.self_attn.o_proj.weight", p, i), d, qd, KN_NK, &L->o, 1);
    bind_mat(b, NAME(nm, "%s.%zu.mlp.gate_proj.weight", p, i), m->ffn, d, KN_NK, &L->gate, 1);
    bind_mat(b, NAME(nm, "%s.%zu.mlp.up_proj.weight", p, i), m->ffn, d, KN_NK, &L->up, 1);
    bind_mat(b, NAME(nm, "%s.%zu.mlp.down_proj.weight", p, i), d, m->ffn, KN_NK, &L->down, 1);
    /* Llama's attention_bias/mlp_bias and Qwen2's fixed q/k/v biases: load what is present,
     * and require what the config promises. */
    int attn_bias = m->attn_bias, mlp_bias = m->mlp_bias;
    L->bq = bind_vec(b, NAME(nm, "%s.%zu.self_attn.q_proj.bias", p, i), qd, attn_bias);
    L->bk = bind_vec(b, NAME(nm, "%s.%zu.self_attn.k_proj.bias", p, i), kvd, attn_bias);
    L->bv = bind_vec(b, NAME(nm, "%s.%zu.self_attn.v_proj.bias", p, i), kvd, attn_bias);
    L->bo = bind_vec(b, NAME(nm, "%s.%zu.self_attn.o_proj.bias", p, i), d, attn_bias && !qkv_bias);
    L->bgate = bind_vec(b, NAME(nm, "%s.%zu.mlp.gate_proj.bias", p, i), m->ffn, mlp_bias);
    L->bup = bind_vec(b, NAME(nm, "%s.%zu.mlp.up_proj.bias", p, i), m->ffn, mlp_bias);
    L->bdown = bind_vec(b, NAME(nm, "%s.%zu.mlp.down_proj.bias", p, i), d, mlp_bias);
}

static void bind_gpt2_layer(mdl_bind *b, const char *pre, size_t i, mdl_layer *L)
{
    mdl_model *m = b->m;
    char nm[256];
    size_t d = m->d;
    L->norm1_w = bind_vec(b, NAME(nm, "%sh.%zu.ln_1.weight", pre, i), d, 1);
    L->norm1_b = bind_vec(b, NAME(nm, "%sh.%zu.ln_1.bias", pre, i), d, 1);
    L->norm2_w = bind_vec(b, NAME(nm, "%sh.%zu.ln_2.weight", pre, i), d, 1);
    L->norm2_b = bind_vec(b, NAME(nm, "%sh.%zu.ln_2.bias", pre, i), d, 1);
    bind_mat(b, NAME(nm, "%sh.%zu.attn.c_attn.weight", pre, i), 3 * d, d, KN_KN, &L->qkv, 1);
    L->bqkv = bind_vec(b, NAME(nm, "%sh.%zu.attn.c_attn.bias", pre, i), 3 * d, 1);
    bind_mat(b, NAME(nm, "%sh.%zu.attn.c_proj.weight", pre, i), d, d, KN_KN, &L->o, 1);
    L->bo = bind_vec(b, NAME(nm, "%sh.%zu.attn.c_proj.bias", pre, i), d, 1);
    bind_mat(b, NAME(nm, "%sh.%zu.mlp.c_fc.weight", pre, i), m->ffn, d, KN_KN, &L->up, 1);
    L->bup = bind_vec(b, NAME(nm, "%sh.%zu.mlp.c_fc.bias", pre, i), m->ffn, 1);
    bind_mat(b, NAME(nm, "%sh.%zu.mlp.c_proj.weight", pre, i), d, m->ffn, KN_KN, &L->down, 1);
    L->bdown = bind_vec(b, NAME(nm, "%sh.%zu.mlp.c_proj.bias", pre, i), d, 1);
}

static void bind_neox_layer(mdl_bind *b, size_t i, mdl_layer *L)
{
    mdl_model *m = b->m;
    char nm[256];
    size_t d = m->d;
    const char *p = "gpt_neox.layers";
    L->norm1_w = bind_vec(b, NAME(nm, "%s.%zu.input_layernorm.weight", p, i), d, 1);
    L->norm1_b = bind_vec(b, NAME(nm, "%s.%zu.input_layernorm.bias", p, i), d, 1);
    L->norm2_w = bind_vec(b, NAME(nm, "%s.%zu.post_attention_layernorm.weight", p, i), d, 1);
    L->norm2_b = bind_vec(b, NAME(nm, "%s.%zu.post_attention_layernorm.bias", p, i), d, 1);
    bind_mat(b, NAME(nm, "%s.%zu.attention.query_key_value.weight", p, i), 3 * d, d, KN_NK, &L->qkv,
             1);
    L->bqkv = bind_vec(b, NAME(nm, "%s.%zu.attention.query_key_value.bias", p, i), 3 * d, 0);
    bind_mat(b, NAME(nm, "%s.%zu.attention.dense.weight", p, i), d, d, KN_NK, &L->o, 1);
    L->bo = bind_vec(b, NAME(nm, "%s.%zu.attention.dense.bias", p, i), d, 0);
    bind_mat(b, NAME(nm, "%s.%zu.mlp.dense_h_to_4h.weight", p, i), m->ffn, d, KN_NK, &L->up, 1);
    L->bup = bind_vec(b, NAME(nm, "%s.%zu.mlp.dense_h_to_4h.bias", p, i), m->ffn, 0);
    bind_mat(b, NAME(nm, "%s.%zu.mlp.dense_4h_to_h.weight", p, i), d, m->ffn, KN_NK, &L->down, 1);
    L->bdown = bind_vec(b, NAME(nm, "%s.%zu.mlp.dense_4h_to_h.bias", p, i), d, 0);
}

/* Embedding, final norm and output head; the vocabulary is the embedding's row count. */
static void bind_ends(mdl_bind *b, int tie)
{
    mdl_model *m = b->m;
    const char *emb, *fw, *fb = NULL, *head;
    char e2[64], w2[64], b2[64];
    if (m->arch == MDL_LLAMA) {
        emb = "model.embed_tokens.weight", fw = "model.norm.weight", head = "lm_head.weight";
    } else if (m->arch == MDL_NEOX) {
        emb = "gpt_neox.embed_in.weight", fw = "gpt_neox.final_layer_norm.weight";
        fb = "gpt_neox.final_layer_norm.bias", head = "embed_out.weight";
    } else {
        const char *pre = st_find(m->st, "wte.weight") ? "" : "transformer.";
        emb = NAME(e2, "%swte.weight", pre), fw = NAME(w2, "%sln_f.weight", pre);
        fb = NAME(b2, "%sln_f.bias", pre), head = "lm_head.weight";
        char pe[64];
        m->pos_t = bind_tensor(b, NAME(pe, "%swpe.weight", pre), 1);
        if (m->pos_t && bind_shape(b, m->pos_t, m->pos_t->shape[0], m->d, 2) == 0)
            m->max_pos = m->max_pos < m->pos_t->shape[0] ? m->max_pos : m->pos_t->shape[0];
    }
    m->embed_t = bind_tensor(b, emb, 1);
    if (!m->embed_t || bind_shape(b, m->embed_t, m->embed_t->shape[0], m->d, 2)) return;
    m->vocab = m->embed_t->shape[0];
    bind_mat(b, emb, m->vocab, m->d, KN_NK, &m->embed, 1);
    m->dtype = m->embed_t->dtype;
    m->final_w = bind_vec(b, fw, m->d, 1);
    if (fb) m->final_b = bind_vec(b, fb, m->d, 1);
    if (tie) {
        m->lm_head = m->embed;
        m->head_t = m->embed_t;
    } else {
        bind_mat(b, head, m->vocab, m->d, KN_NK, &m->lm_head, 1);
        m->head_t = st_find(m->st, head);
    }
}

/* Buffers the checkpoints carry that are not weights (causal masks, cached inverse
 * frequencies): not reported as unused. */
static int mdl_is_buffer(const char *name)
{
    const char *suffixes[] = {".attn.bias", ".attn.masked_bias", ".attention.bias",
                              ".attention.masked_bias", ".rotary_emb.inv_freq"};
    size_t n = strlen(name);
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        size_t s = strlen(suffixes[i]);
        if (n >= s && strcmp(name + n - s, suffixes[i]) == 0) return 1;
    }
    return 0;
}

static void mdl_report_unused(mdl_model *m, int quiet)
{
    size_t unused = 0;
    for (size_t i = 0; i < st_count(m->st); i++) {
        const st_tensor *t = st_at(m->st, i);
        if (t->used || mdl_is_buffer(t->name)) continue;
        if (!quiet && unused < 8)
            fprintf(stderr, "hfppl: warning: %s: tensor '%s' is not used by %s\n",
                    st_file_path(m->st, t->file), t->name, m->type);
        unused++;
    }
    if (!quiet && unused > 8)
        fprintf(stderr, "hfppl: warning: %zu unused tensors in all\n", unused);
}

static int mdl_bind_all(mdl_model *m, int tie, char *err, size_t errlen)
{
    mdl_bind b = {m, NULL, err, errlen, 0};
    bind_ends(&b, tie);
    m->layers = calloc(m->n_layers, sizeof *m->layers);
    if (!m->layers) return -ENOMEM;
    const char *pre =
        m->arch == MDL_GPT2 && !st_find(m->st, "h.0.ln_1.weight") ? "transformer." : "";
    for (size_t i = 0; i < m->n_layers && b.rc == 0; i++) {
        b.layer = &m->layers[i];
        if (m->arch == MDL_LLAMA)
            bind_llama_layer(&b, i, b.layer);
        else if (m->arch == MDL_GPT2)
            bind_gpt2_layer(&b, pre, i, b.layer);
        else
            bind_neox_layer(&b, i, b.layer);
    }
    return b.rc;
}

/* ---- rotary embedding ---- */

/* Inverse frequencies for a window of n positions, with the configured scaling. */
static void mdl_inv_freq(mdl_model *m, size_t n, double *inv)
{
    size_t half = m->rot_dim / 2;
    double base = m->theta;
    if (m->rope == ROPE_DYNAMIC) {
        /* transformers recomputes the base when a sequence exceeds the longest seen so far
         * and returns to the original when it is shorter than the trained length again. */
        double orig = m->rope_orig > 0 ? m->rope_orig : (double)n;
        if (m->rope_cached == 0) m->rope_cached = (size_t)orig;
        if ((double)n > (double)m->rope_cached)
            m->rope_cached = n;
        else if ((double)n < orig)
            m->rope_cached = (size_t)orig;
        double len = (double)m->rope_cached;
        if (len > orig)
            base *= pow(m->rope_factor * len / orig - (m->rope_factor - 1),
                        (double)m->rot_dim / (double)(m->rot_dim - 2));
    }
    for (size_t i = 0; i < half; i++) {
        double f = 1.0 / pow(base, (double)(2 * i) / (double)m->rot_dim);
        if (m->rope == ROPE_LINEAR) {
            f /= m->rope_factor;
        } else if (m->rope == ROPE_LLAMA3) {
            double wavelen = 2 * M_PI / f;
            double lo = m->rope_orig / m->rope_low, hi = m->rope_orig / m->rope_high;
            if (wavelen > lo) {
                f /= m->rope_factor;
            } else if (wavelen >= hi) {
                double s = (m->rope_orig / wavelen - m->rope_low) / (m->rope_high - m->rope_low);
                f = (1 - s) * f / m->rope_factor + s * f;
            }
        }
        inv[i] = f;
    }
}

static void mdl_rope_tables(mdl_model *m, size_t n)
{
    size_t half = m->rot_dim / 2;
    double inv[256];
    if (half == 0) return;
    mdl_inv_freq(m, n, inv);
    for (size_t t = 0; t < n; t++)
        for (size_t i = 0; i < half; i++) {
            m->ws.cosv[t * half + i] = cos((double)t * inv[i]);
            m->ws.sinv[t * half + i] = sin((double)t * inv[i]);
        }
}

/* rotate_half on the first rot_dim dimensions of one head vector at position t. */
static void mdl_rope_apply(const mdl_model *m, float *x, size_t t)
{
    size_t half = m->rot_dim / 2;
    const double *c = m->ws.cosv + t * half, *s = m->ws.sinv + t * half;
    for (size_t i = 0; i < half; i++) {
        float a = x[i], b = x[i + half];
        x[i] = (float)(a * c[i] - b * s[i]);
        x[i + half] = (float)(b * c[i] + a * s[i]);
    }
}

/* ---- workspace ---- */

/* Rows of logits per vocabulary product: more rows re-pack the head less often, fewer keep the
 * buffer small; 64 MiB of logits at most, 64..512 rows. */
#define MDL_LOGIT_BYTES (64u << 20)
#define MDL_LOGIT_ROWS 512
#define MDL_ATT_ROWS 32 /* query rows per attention task */

static void mdl_ws_free(mdl_ws *w)
{
    free(w->x), free(w->xn), free(w->q), free(w->k), free(w->v), free(w->att);
    free(w->tmp), free(w->h1), free(w->h2), free(w->logits), free(w->cosv), free(w->sinv);
    memset(w, 0, sizeof *w);
}

static int mdl_ws_reserve(mdl_model *m, size_t n)
{
    mdl_ws *w = &m->ws;
    if (w->cap_t >= n) return 0;
    mdl_ws_free(w);
    size_t d = m->d, qd = m->n_heads * m->head_dim, kvd = m->n_kv * m->head_dim;
    size_t rows = MDL_LOGIT_BYTES / sizeof(float) / m->vocab;
    rows = rows < 64 ? 64 : rows > MDL_LOGIT_ROWS ? MDL_LOGIT_ROWS : rows;
    rows = n < rows ? n : rows;
    w->x = malloc(n * d * sizeof(float));
    w->xn = malloc(n * d * sizeof(float));
    w->tmp = malloc(n * d * sizeof(float));
    w->q = malloc(n * (m->qkv_fused ? 3 * qd : qd) * sizeof(float));
    w->k = malloc(n * kvd * sizeof(float));
    w->v = malloc(n * kvd * sizeof(float));
    w->att = malloc(n * qd * sizeof(float));
    w->h1 = malloc(n * m->ffn * sizeof(float));
    w->h2 = malloc(n * (m->ffn > d ? m->ffn : d) * sizeof(float)); /* also NeoX's MLP output */
    w->logits = malloc(rows * m->vocab * sizeof(float));
    w->cosv = malloc((n * (m->rot_dim / 2) + 1) * sizeof(double));
    w->sinv = malloc((n * (m->rot_dim / 2) + 1) * sizeof(double));
    if (!w->x || !w->xn || !w->tmp || !w->q || !w->k || !w->v || !w->att || !w->h1 || !w->h2 ||
        !w->logits || !w->cosv || !w->sinv) {
        mdl_ws_free(w);
        return -ENOMEM;
    }
    w->cap_t = n;
    w->cap_rows = rows;
    return 0;
}

/* ---- the forward pass ---- */

enum { OP_EMBED, OP_NORM1, OP_NORM2, OP_FINAL, OP_ROPE, OP_ACT, OP_RESID, OP_RESID2, OP_NLL };

typedef struct {
    mdl_model *m;
    const mdl_layer *L;
    int op;
    size_t rows; /* rows of the operation */
    size_t per;  /* rows per task */
    const int32_t *ids;
    size_t row0; /* OP_NLL: window row of logits row 0 */
    double *nll;
} mdl_job;

/* Where head h's q/k/v vectors sit: row t of head h is base + t*ld + h*hs. */
typedef struct {
    float *base;
    size_t ld, hs;
} mdl_heads;

static void mdl_qkv_layout(const mdl_model *m, mdl_heads *q, mdl_heads *k, mdl_heads *v)
{
    mdl_ws *w = (mdl_ws *)&m->ws;
    size_t hd = m->head_dim, qd = m->n_heads * hd;
    if (m->arch == MDL_LLAMA) {
        *q = (mdl_heads){w->q, qd, hd};
        *k = (mdl_heads){w->k, m->n_kv * hd, hd};
        *v = (mdl_heads){w->v, m->n_kv * hd, hd};
    } else if (m->arch == MDL_GPT2) { /* c_attn output: [q | k | v] blocks */
        *q = (mdl_heads){w->q, 3 * qd, hd};
        *k = (mdl_heads){w->q + qd, 3 * qd, hd};
        *v = (mdl_heads){w->q + 2 * qd, 3 * qd, hd};
    } else { /* NeoX query_key_value: per head [q k v] */
        *q = (mdl_heads){w->q, 3 * qd, 3 * hd};
        *k = (mdl_heads){w->q + hd, 3 * qd, 3 * hd};
        *v = (mdl_heads){w->q + 2 * hd, 3 * qd, 3 * hd};
    }
}

static void mdl_embed_row(mdl_model *m, const int32_t *ids, size_t t)
{
    float *x = m->ws.x + t * m->d;
    const st_tensor *e = m->embed_t;
    size_t es = st_dtype_size(e->dtype);
    kn_load_row(x, (const unsigned char *)e->data + (size_t)ids[t] * m->d * es,
                mdl_kn_dtype(e->dtype), m->d);
    if (m->pos_t) {
        const st_tensor *p = m->pos_t;
        for (size_t i = 0; i < m->d; i++)
            x[i] += kn_load((const unsigned char *)p->data + t * m->d * st_dtype_size(p->dtype),
                            mdl_kn_dtype(p->dtype), i);
    }
}

static void mdl_norm_row(const mdl_model *m, float *out, const float *x, const float *w,
                         const float *b)
{
    if (m->arch == MDL_LLAMA)
        kn_rmsnorm(out, x, w, m->d, m->eps);
    else
        kn_layernorm(out, x, w, b, m->d, m->eps);
}

static void mdl_row_op(mdl_job *j, size_t t)
{
    mdl_model *m = j->m;
    mdl_ws *w = &m->ws;
    const mdl_layer *L = j->L;
    size_t d = m->d;
    switch (j->op) {
    case OP_EMBED:
        mdl_embed_row(m, j->ids, t);
        break;
    case OP_NORM1:
        mdl_norm_row(m, w->xn + t * d, w->x + t * d, L->norm1_w, L->norm1_b);
        break;
    case OP_NORM2:
        mdl_norm_row(m, w->xn + t * d, w->x + t * d, L->norm2_w, L->norm2_b);
        break;
    case OP_FINAL:
        mdl_norm_row(m, w->xn + t * d, w->x + t * d, m->final_w, m->final_b);
        break;
    case OP_ROPE: {
        mdl_heads q, k, v;
        mdl_qkv_layout(m, &q, &k, &v);
        for (size_t h = 0; h < m->n_heads; h++)
            mdl_rope_apply(m, q.base + t * q.ld + h * q.hs, t);
        for (size_t h = 0; h < m->n_kv; h++)
            mdl_rope_apply(m, k.base + t * k.ld + h * k.hs, t);
        break;
    }
    case OP_ACT:
        if (m->act == ACT_SILU)
            kn_silu_mul(w->h1 + t * m->ffn, w->h2 + t * m->ffn, m->ffn);
        else if (m->act == ACT_GELU_ERF)
            kn_gelu_erf(w->h1 + t * m->ffn, m->ffn);
        else
            kn_gelu_tanh(w->h1 + t * m->ffn, m->ffn);
        break;
    case OP_RESID:
        for (size_t i = 0; i < d; i++)
            w->x[t * d + i] += w->tmp[t * d + i];
        break;
    case OP_RESID2: /* NeoX parallel residual: x = (mlp + attn) + x */
        for (size_t i = 0; i < d; i++)
            w->x[t * d + i] = (w->h2[t * d + i] + w->tmp[t * d + i]) + w->x[t * d + i];
        break;
    case OP_NLL:
        j->nll[t] = kn_nll(w->logits + t * m->vocab, m->vocab, (size_t)j->ids[j->row0 + t + 1]);
        break;
    }
}

static void mdl_rows_task(void *arg, size_t task, int worker)
{
    mdl_job *j = arg;
    (void)worker;
    size_t r0 = task * j->per, r1 = r0 + j->per < j->rows ? r0 + j->per : j->rows;
    for (size_t t = r0; t < r1; t++)
        mdl_row_op(j, t);
}

static void mdl_rows(mdl_model *m, pool *p, const mdl_layer *L, int op, size_t rows)
{
    mdl_job j = {.m = m, .L = L, .op = op, .rows = rows};
    size_t tasks = (size_t)pool_size(p) * 4;
    j.per = (rows + tasks - 1) / tasks;
    if (j.per == 0) j.per = 1;
    pool_run(p, (rows + j.per - 1) / j.per, mdl_rows_task, &j);
}

/* Attention: one task per (head, block of query rows), the longest blocks first. */
typedef struct {
    mdl_model *m;
    pool *p;
    size_t n, n_blocks;
    int failed;
} mdl_att_job;

static void mdl_att_task(void *arg, size_t task, int worker)
{
    mdl_att_job *j = arg;
    mdl_model *m = j->m;
    size_t H = m->n_heads, hd = m->head_dim;
    size_t h = task % H, blk = j->n_blocks - 1 - task / H;
    size_t g = h / (H / m->n_kv);
    size_t r0 = blk * MDL_ATT_ROWS, r1 = r0 + MDL_ATT_ROWS < j->n ? r0 + MDL_ATT_ROWS : j->n;
    size_t W = m->sliding_window;
    size_t lo = W && r0 + 1 > W ? r0 + 1 - W : 0, nk = r1 - lo;
    mdl_heads q, k, v;
    mdl_qkv_layout(m, &q, &k, &v);
    float *S = pool_scratch(j->p, worker, POOL_SCRATCH_TASK, MDL_ATT_ROWS * nk * sizeof(float));
    if (!S) {
        __atomic_store_n(&j->failed, 1, __ATOMIC_RELAXED);
        return;
    }
    kn_weight kt = {k.base + lo * k.ld + g * k.hs, KN_F32, KN_NK, k.ld};
    kn_weight vt = {v.base + lo * v.ld + g * v.hs, KN_F32, KN_KN, v.ld};
    if (kn_gemm_worker(j->p, worker, m->isa, S, nk, q.base + r0 * q.ld + h * q.hs, q.ld, &kt,
                       r1 - r0, nk, hd, NULL) < 0) {
        __atomic_store_n(&j->failed, 1, __ATOMIC_RELAXED);
        return;
    }
    float scale = (float)(1.0 / sqrt((double)hd));
    for (size_t i = 0; i < r1 - r0; i++) {
        size_t t = r0 + i;
        size_t a = W && t + 1 > W ? t + 1 - W - lo : 0, b = t - lo + 1; /* keys [a, b) */
        float *row = S + i * nk;
        for (size_t c = a; c < b; c++)
            row[c] *= scale;
        kn_softmax(row + a, b - a);
        memset(row, 0, a * sizeof *row);
        memset(row + b, 0, (nk - b) * sizeof *row);
    }
    size_t qd = H * hd;
    if (kn_gemm_worker(j->p, worker, m->isa, m->ws.att + r0 * qd + h * hd, qd, S, nk, &vt, r1 - r0,
                       hd, nk, NULL) < 0)
        __atomic_store_n(&j->failed, 1, __ATOMIC_RELAXED);
}

static int mdl_attention(mdl_model *m, pool *p, size_t n)
{
    mdl_att_job j = {m, p, n, (n + MDL_ATT_ROWS - 1) / MDL_ATT_ROWS, 0};
    pool_run(p, j.n_blocks * m->n_heads, mdl_att_task, &j);
    return __atomic_load_n(&j.failed, __ATOMIC_RELAXED) ? -ENOMEM : 0;
}

static int mdl_mm(mdl_model *m, pool *p, float *C, const float *A, const mdl_mat *W,
                  const float *bias, size_t n)
{
    return kn_gemm(p, m->isa, C, W->n, A, W->k, &W->w, n, W->n, W->k, bias);
}

/* Read a tensor ahead of use: page-cache advice, and the background readers (once per run:
 * after the first window its pages are resident). */
static void mdl_fetch(mdl_model *m, const st_tensor *t)
{
    if (!t) return;
    st_willneed(m->st, t);
    size_t i = (size_t)(t - st_at(m->st, 0));
    if (!m->pf || m->queued[i]) return;
    m->queued[i] = 1;
    (void)pf_queue(m->pf, st_file_path(m->st, t->file), st_file_offset(m->st, t),
                   t->end - t->begin);
}

/* Before layer `layer` runs: the tensors of the next two layers (downloads may be slower than
 * the computation, so two are in flight), and the output head once the last layers are near. */
static void mdl_readahead(mdl_model *m, size_t layer)
{
    for (size_t l = layer + 1; l <= layer + 2 && l < m->n_layers; l++)
        for (int i = 0; i < m->layers[l].n_tensors; i++)
            mdl_fetch(m, m->layers[l].tensors[i]);
    if (layer + 2 >= m->n_layers) mdl_fetch(m, m->head_t);
}

static int mdl_layer_forward(mdl_model *m, pool *p, const mdl_layer *L, size_t n)
{
    mdl_ws *w = &m->ws;
    int rc = 0;
    mdl_rows(m, p, L, OP_NORM1, n);
    if (m->qkv_fused) {
        rc |= mdl_mm(m, p, w->q, w->xn, &L->qkv, L->bqkv, n);
    } else {
        rc |= mdl_mm(m, p, w->q, w->xn, &L->q, L->bq, n);
        rc |= mdl_mm(m, p, w->k, w->xn, &L->k, L->bk, n);
        rc |= mdl_mm(m, p, w->v, w->xn, &L->v, L->bv, n);
    }
    if (m->rot_dim) mdl_rows(m, p, L, OP_ROPE, n);
    rc |= mdl_attention(m, p, n);
    rc |= mdl_mm(m, p, w->tmp, w->att, &L->o, L->bo, n);
    if (!m->parallel_residual) mdl_rows(m, p, L, OP_RESID, n);
    mdl_rows(m, p, L, OP_NORM2, n);
    if (m->arch == MDL_LLAMA) {
        rc |= mdl_mm(m, p, w->h1, w->xn, &L->gate, L->bgate, n);
        rc |= mdl_mm(m, p, w->h2, w->xn, &L->up, L->bup, n);
    } else {
        rc |= mdl_mm(m, p, w->h1, w->xn, &L->up, L->bup, n);
    }
    mdl_rows(m, p, L, OP_ACT, n);
    if (m->parallel_residual) { /* attention output stays in tmp; MLP output into h2 */
        rc |= mdl_mm(m, p, w->h2, w->h1, &L->down, L->bdown, n);
        mdl_rows(m, p, L, OP_RESID2, n);
    } else {
        rc |= mdl_mm(m, p, w->tmp, w->h1, &L->down, L->bdown, n);
        mdl_rows(m, p, L, OP_RESID, n);
    }
    return rc ? -ENOMEM : 0;
}

/* Logits of window rows [first-1, n-1) and the NLL of the token after each. */
static int mdl_score(mdl_model *m, pool *p, const int32_t *ids, size_t n, size_t first, double *nll)
{
    mdl_ws *w = &m->ws;
    for (size_t r0 = first - 1; r0 + 1 < n; r0 += w->cap_rows) {
        size_t rows = n - 1 - r0 < w->cap_rows ? n - 1 - r0 : w->cap_rows;
        if (kn_gemm(p, m->isa, w->logits, m->vocab, w->xn + r0 * m->d, m->d, &m->lm_head.w, rows,
                    m->vocab, m->d, NULL) < 0)
            return -ENOMEM;
        mdl_job j = {.m = m,
                     .op = OP_NLL,
                     .rows = rows,
                     .ids = ids,
                     .row0 = r0,
                     .nll = nll + (r0 - (first - 1))};
        size_t tasks = (size_t)pool_size(p) * 4;
        j.per = (rows + tasks - 1) / tasks;
        pool_run(p, (rows + j.per - 1) / j.per, mdl_rows_task, &j);
    }
    return 0;
}

int mdl_window_nll(mdl_model *m, pool *p, const int32_t *ids, size_t n, size_t first, double *nll,
                   char *err, size_t errlen)
{
    if (n == 0 || first < 1 || first > n)
        return mdl_fail(err, errlen, "bad window: %zu tokens, first target %zu", n, first);
    if (m->max_pos && n > m->max_pos && m->arch == MDL_GPT2)
        return mdl_fail(err, errlen,
                        "window of %zu tokens exceeds the model's %zu learned positions", n,
                        m->max_pos);
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || (size_t)ids[i] >= m->vocab)
            return mdl_fail(err, errlen,
                            "token id %d at position %zu is outside the %zu-row "
                            "embedding",
                            ids[i], i, m->vocab);
    if (first == n) return 0;
    if (mdl_ws_reserve(m, n) < 0)
        return mdl_oom(err, errlen, "out of memory for a window of %zu tokens", n);
    mdl_rope_tables(m, n);
    mdl_fetch(m, m->embed_t); /* rows are read at random: fetch it whole, first */
    mdl_fetch(m, m->pos_t);
    for (int i = 0; i < m->layers[0].n_tensors; i++)
        mdl_fetch(m, m->layers[0].tensors[i]);
    mdl_readahead(m, 0);
    mdl_job ej = {.m = m, .op = OP_EMBED, .rows = n, .ids = ids, .per = 64};
    pool_run(p, (n + 63) / 64, mdl_rows_task, &ej);
    for (size_t l = 0; l < m->n_layers; l++) {
        mdl_readahead(m, l);
        if (mdl_layer_forward(m, p, &m->layers[l], n) < 0)
            return mdl_oom(err, errlen, "out of memory in layer %zu", l);
    }
    mdl_rows(m, p, NULL, OP_FINAL, n);
    if (mdl_score(m, p, ids, n, first, nll) < 0)
        return mdl_oom(err, errlen, "out of memory scoring a window of %zu tokens", n);
    return 0;
}

/* ---- loading ---- */

int mdl_load(const char *dir, const mdl_options *opt, mdl_model **out, char *err, size_t errlen)
{
    mdl_model *m = calloc(1, sizeof *m);
    if (!m) return -ENOMEM;
    int tie = 0;
    int rc = mdl_config(dir, m, &tie, err, errlen);
    if (rc == 0 && m->rot_dim / 2 > 256)
        rc = mdl_fail(err, errlen, "%s: rotary dimension %zu is too large", dir, m->rot_dim);
    if (rc == 0) rc = st_open_dir(dir, opt ? opt->use_mmap : 1, &m->st, err, errlen);
    if (rc == 0 && opt && opt->publish) *opt->publish = m->st;
    if (rc == 0) rc = mdl_bind_all(m, tie, err, errlen);
    if (rc < 0) {
        mdl_free(m);
        return rc;
    }
    m->isa = opt && opt->isa ? opt->isa : kn_isa_best();
    if (st_mapped(m->st)) { /* read-ahead threads are an optimisation: run without on failure */
        m->queued = calloc(st_count(m->st) + 1, 1);
        if (!m->queued || pf_start(4, &m->pf) < 0) m->pf = NULL;
    }
    mdl_report_unused(m, opt ? opt->quiet : 0);
    *out = m;
    return 0;
}

void mdl_free(mdl_model *m)
{
    if (!m) return;
    for (size_t i = 0; m->layers && i < m->n_layers; i++) {
        mdl_layer *L = &m->layers[i];
        float *v[] = {L->norm1_w, L->norm1_b, L->norm2_w, L->norm2_b, L->bq,  L->bk,
                      L->bv,      L->bqkv,    L->bo,      L->bgate,   L->bup, L->bdown};
        for (size_t j = 0; j < sizeof v / sizeof v[0]; j++)
            free(v[j]);
    }
    pf_stop(m->pf);
    free(m->queued);
    free(m->layers);
    free(m->final_w);
    free(m->final_b);
    mdl_ws_free(&m->ws);
    st_close(m->st);
    free(m);
}

const char *mdl_type(const mdl_model *m)
{
    return m->type;
}

const char *mdl_dtype(const mdl_model *m)
{
    return st_dtype_name(m->dtype);
}

uint64_t mdl_n_params(const mdl_model *m)
{
    return m->n_params;
}

uint64_t mdl_weight_bytes(const mdl_model *m)
{
    return m->weight_bytes;
}

size_t mdl_vocab(const mdl_model *m)
{
    return m->vocab;
}

size_t mdl_max_ctx(const mdl_model *m)
{
    return m->arch == MDL_GPT2 ? m->max_pos : 0;
}

size_t mdl_trained_ctx(const mdl_model *m)
{
    return m->max_pos;
}

size_t mdl_comparable_ctx(const mdl_model *m)
{
    return m->rope == ROPE_DYNAMIC ? 0 : m->max_pos;
}

const st_set *mdl_weights(const mdl_model *m)
{
    return m->st;
}
