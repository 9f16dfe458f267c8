/* main.c — hfppl, the entry point: command line, text and tokenizer, the perplexity run, the
 * report (stdout and --json) and the SIGBUS handler that names the file and offset a failed
 * page fault came from. See hfppl --help and docs/EVAL.md. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "model.h"
#include "ppl.h"
#include "sha256.h"
#include "tokenizer.h"

#ifndef HF_VERSION
#define HF_VERSION "0"
#endif

static const char usage[] =
    "usage: hfppl MODEL_DIR --text FILE [--ctx N] [--stride S] [--method sliding|llamacpp]\n"
    "             [--json OUT] [--threads N] [--max-tokens N] [--no-mmap] [--quiet]\n"
    "       hfppl --tokenize DIR --text FILE [--no-special]\n"
    "\n"
    "Perplexity of a causal language model (Hugging Face layout: config.json, tokenizer.json,\n"
    "model.safetensors or model.safetensors.index.json + shards) on a text file, reading the\n"
    "weights in place (mmap, no copy) from a local directory or an hfmount mount.\n"
    "Architectures: llama (incl. rope_scaling linear/dynamic/llama3), mistral, qwen2, gpt2,\n"
    "gpt_neox. Weights F32, F16 or BF16; fp32 activations, sums in double.\n"
    "\n"
    "  --text FILE        text to evaluate (bytes as stored)\n"
    "  --method M         sliding (default) or llamacpp\n"
    "  --ctx N            window length in tokens (default 1024, or the model's limit)\n"
    "  --stride S         sliding: window step (default: --ctx)\n"
    "  --max-tokens N     use only the first N tokens of the text (N >= 1)\n"
    "  --threads N        worker threads (default: all cores)\n"
    "  --json OUT         write every figure, the settings, model id and text sha256 to OUT\n"
    "  --no-mmap          read the weights with pread into memory instead of mapping them\n"
    "  --quiet            no progress bar or warnings on stderr (errors still go there)\n"
    "  --tokenize DIR     print the ids of the text (tokenizer of DIR), space-separated\n"
    "  --no-special       with --tokenize: add_special_tokens=False\n"
    "\n"
    "Methods (see docs/EVAL.md):\n"
    "  sliding   Hugging Face 'Perplexity of fixed-length models': the text bytes tokenized\n"
    "            once with the tokenizer's special tokens (BOS only at the start when the\n"
    "            tokenizer adds one); windows ids[b, min(b+ctx, N)) for b = 0, S, 2S, ...\n"
    "            until a window reaches N, each evaluated alone (positions from 0); in each\n"
    "            window the targets t in [max(previous end, b+1), end) are scored with context\n"
    "            ids[b, t). Every token after the first is scored once when S < ctx; with\n"
    "            S == ctx the first token of every window is not scored.\n"
    "  llamacpp  llama.cpp llama-perplexity: one trailing LF is removed from the file, the text\n"
    "            tokenized with special tokens; floor(N/ctx) disjoint chunks (the tail is\n"
    "            dropped, N >= 2*ctx needed), each chunk's first id replaced by BOS when the\n"
    "            tokenizer adds one; positions ctx/2+1 .. ctx-1 of each chunk are scored.\n"
    "            Also prints llama.cpp's ± figure.\n"
    "  perplexity = exp(total NLL / scored tokens), natural log, softmax over every output row.\n"
    "\n"
    "Exit status 0 on success; otherwise one line on stderr naming the file and the problem.\n";

typedef struct {
    const char *model_dir, *text, *json, *tokenize;
    ppl_method method;
    size_t ctx, stride, max_tokens;
    int threads, use_mmap, quiet, no_special, ctx_given;
} opts;

/* The weights the SIGBUS handler describes (the entry point's one piece of global state). */
static const st_set *g_weights;

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
    (void)sig, (void)uc;
    char msg[1024] = "hfppl: ";
    size_t n = 7 + st_fault_message(g_weights, si->si_addr, msg + 7, sizeof msg - 8);
    msg[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, msg, n);
    (void)w;
    _exit(EXIT_FAILURE);
}

static int die(const char *fmt, const char *a, const char *b)
{
    fprintf(stderr, "hfppl: ");
    fprintf(stderr, fmt, a, b);
    fputc('\n', stderr);
    return EXIT_FAILURE;
}

static int parse_size(const char *flag, const char *s, size_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v > (unsigned long long)INT_MAX)
        return die("%s: '%s' is not a valid number", flag, s), -1;
    *out = (size_t)v;
    return 0;
}

/* The name (without "--") of the long option whose getopt value is val. */
static const char *option_name(const struct option *lo, int val)
{
    for (; lo->name; lo++)
        if (lo->val == val) return lo->name;
    return "option";
}

/* Whether arg is "--NAME" (or "--NAME=...") of one of the long options. */
static int is_long_option(const struct option *lo, const char *arg)
{
    if (strncmp(arg, "--", 2) != 0) return 0;
    for (; lo->name; lo++) {
        size_t n = strlen(lo->name);
        if (strncmp(arg + 2, lo->name, n) == 0 && (arg[2 + n] == 0 || arg[2 + n] == '=')) return 1;
    }
    return 0;
}

/* The placeholder --help uses for an option's value. */
static const char *value_name(const char *name)
{
    static const char *const names[][2] = {
        {"text", "FILE"}, {"json", "FILE"}, {"tokenize", "DIR"}, {"method", "METHOD"}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(names[i][0], name) == 0) return names[i][1];
    return "NUMBER";
}

static int parse_args(int argc, char **argv, opts *o)
{
    enum {
        O_TEXT = 256,
        O_CTX,
        O_STRIDE,
        O_METHOD,
        O_JSON,
        O_THREADS,
        O_MAXTOK,
        O_NOMMAP,
        O_QUIET,
        O_TOKENIZE,
        O_NOSPECIAL,
        O_HELP,
        O_VERSION
    };
    static const struct option lo[] = {{"text", required_argument, 0, O_TEXT},
                                       {"ctx", required_argument, 0, O_CTX},
                                       {"stride", required_argument, 0, O_STRIDE},
                                       {"method", required_argument, 0, O_METHOD},
                                       {"json", required_argument, 0, O_JSON},
                                       {"threads", required_argument, 0, O_THREADS},
                                       {"max-tokens", required_argument, 0, O_MAXTOK},
                                       {"no-mmap", no_argument, 0, O_NOMMAP},
                                       {"quiet", no_argument, 0, O_QUIET},
                                       {"tokenize", required_argument, 0, O_TOKENIZE},
                                       {"no-special", no_argument, 0, O_NOSPECIAL},
                                       {"help", no_argument, 0, O_HELP},
                                       {"version", no_argument, 0, O_VERSION},
                                       {0, 0, 0, 0}};
    memset(o, 0, sizeof *o);
    o->use_mmap = 1;
    o->ctx = 1024;
    int c;
    size_t v;
    opterr = 0;
    /* The leading ':' makes a missing value ':' rather than '?', so it gets its own message. */
    while ((c = getopt_long(argc, argv, ":h", lo, NULL)) != -1) {
        if (optarg && is_long_option(lo, optarg)) {
            /* "--text --ctx 5": getopt takes "--ctx" as the file name; the value was left out. */
            const char *name = option_name(lo, c);
            return die("--%s needs a %s (see hfppl --help)", name, value_name(name)), -1;
        }
        switch (c) {
        case O_TEXT:
            o->text = optarg;
            break;
        case O_CTX:
            if (parse_size("--ctx", optarg, &o->ctx)) return -1;
            o->ctx_given = 1;
            break;
        case O_STRIDE:
            if (parse_size("--stride", optarg, &o->stride)) return -1;
            if (o->stride == 0) return die("--stride: must be at least 1%s%s", "", ""), -1;
            break;
        case O_METHOD:
            if (strcmp(optarg, "sliding") == 0)
                o->method = PPL_SLIDING;
            else if (strcmp(optarg, "llamacpp") == 0)
                o->method = PPL_LLAMACPP;
            else
                return die("--method: '%s' is not sliding or llamacpp%s", optarg, ""), -1;
            break;
        case O_JSON:
            o->json = optarg;
            break;
        case O_THREADS:
            if (parse_size("--threads", optarg, &v)) return -1;
            if (v < 1 || v > 1024) return die("--threads: '%s' must be 1..1024%s", optarg, ""), -1;
            o->threads = (int)v;
            break;
        case O_MAXTOK:
            if (parse_size("--max-tokens", optarg, &o->max_tokens)) return -1;
            /* 0 is the internal "no limit"; a user who types 0 means something else. */
            if (o->max_tokens == 0)
                return die("--max-tokens: must be at least 1 (omit it to use the whole text)%s%s",
                           "", ""),
                       -1;
            break;
        case O_NOMMAP:
            o->use_mmap = 0;
            break;
        case O_QUIET:
            o->quiet = 1;
            break;
        case O_TOKENIZE:
            o->tokenize = optarg;
            break;
        case O_NOSPECIAL:
            o->no_special = 1;
            break;
        case 'h':
        case O_HELP:
            fputs(usage, stdout);
            exit(0);
        case O_VERSION:
            printf("hfppl %s\n", HF_VERSION);
            exit(0);
        case ':': {
            const char *name = option_name(lo, optopt);
            return die("--%s needs a %s (see hfppl --help)", name, value_name(name)), -1;
        }
        default:
            return die("unknown option '%s' (see hfppl --help)%s", argv[optind - 1], ""), -1;
        }
    }
    if (optind < argc) o->model_dir = argv[optind++];
    if (optind < argc)
        return die("unexpected argument '%s' (see hfppl --help)%s", argv[optind], ""), -1;
    if (!o->tokenize && !o->model_dir) {
        fwrite(usage, 1, (size_t)(strstr(usage, "\n\n") + 1 - usage), stderr);
        return die("missing MODEL_DIR (see hfppl --help)%s%s", "", ""), -1;
    }
    if (!o->text) return die("--text FILE is required (see hfppl --help)%s%s", "", ""), -1;
    if (o->ctx < 2) return die("--ctx: must be at least 2%s%s", "", ""), -1;
    if (o->stride > o->ctx) return die("--stride: must not exceed --ctx%s%s", "", ""), -1;
    if (!o->threads) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        o->threads = n > 0 ? (int)n : 1;
    }
    return 0;
}

static int read_file(const char *path, char **data, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return die("%s: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (!buf) {
            fclose(f);
            return die("%s: out of memory%s", path, "");
        }
        errno = 0; /* fread sets it on a failure: the cause reported below */
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) break;
        char *nb = realloc(buf, cap *= 2);
        if (!nb) free(buf);
        buf = nb;
    }
    int bad = ferror(f) ? (errno ? errno : EIO) : 0;
    fclose(f);
    if (bad) {
        free(buf);
        return die("%s: %s", path, strerror(bad));
    }
    *data = buf;
    *len = n;
    return 0;
}

static int load_tokenizer(const char *dir, tok_tokenizer **t)
{
    char err[1024] = "";
    if (tok_load(dir, t, err, sizeof err) < 0)
        return die("%s%s", err[0] ? err : dir, err[0] ? "" : ": cannot load tokenizer.json");
    return 0;
}

static int encode(const tok_tokenizer *t, const char *path, const char *text, size_t len,
                  int special, int32_t **ids, size_t *n)
{
    char err[1024] = "";
    if (tok_encode(t, text, len, special, ids, n, err, sizeof err) < 0)
        return die("%s: cannot tokenize: %s", path, err);
    return 0;
}

static int run_tokenize(const opts *o)
{
    tok_tokenizer *t;
    char *text;
    size_t len, n;
    int32_t *ids;
    if (load_tokenizer(o->tokenize, &t)) return EXIT_FAILURE;
    if (read_file(o->text, &text, &len)) {
        tok_free(t);
        return EXIT_FAILURE;
    }
    int rc = encode(t, o->text, text, len, !o->no_special, &ids, &n);
    if (rc == 0) {
        for (size_t i = 0; i < n; i++)
            printf(i ? " %d" : "%d", ids[i]);
        putchar('\n');
        free(ids);
    }
    free(text);
    tok_free(t);
    return rc;
}

typedef struct {
    mdl_model *m;
    pool *p;
} scorer;

static int score_window(void *ctx, const int32_t *ids, size_t n, size_t first, double *nll,
                        char *err, size_t errlen)
{
    scorer *s = ctx;
    return mdl_window_nll(s->m, s->p, ids, n, first, nll, err, errlen);
}

/* CPU time of the whole process (all threads), user + system. */
static double cpu_now(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

typedef struct {
    double t0;
} progress;

static void on_progress(void *ctx, size_t done, size_t total)
{
    progress *pr = ctx;
    double el = now() - pr->t0, rate = el > 0 ? (double)done / el : 0;
    double eta = rate > 0 ? (double)(total - done) / rate : 0;
    int width = 30, fill = total ? (int)((double)width * (double)done / (double)total) : width;
    fprintf(stderr, "\r[%.*s%*s] %zu/%zu tokens, %.1f tok/s, ETA %.0fs ", fill,
            "==============================", width - fill, "", done, total, rate, eta);
    if (done == total) fputc('\n', stderr);
}

/* The model's id for --json: ORG/REPO when the path ends in two components, else the last. */
static const char *model_name(const char *dir, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s", dir);
    size_t n = strlen(buf);
    while (n > 1 && buf[n - 1] == '/')
        buf[--n] = 0;
    char *last = strrchr(buf, '/');
    if (!last) return buf;
    *last = 0;
    char *prev = strrchr(buf, '/');
    *last = '/';
    return prev ? prev + 1 : buf;
}

/* Resident anonymous memory (not the mapped weights' page cache), from /proc/self/status. */
static long long rss_anon_bytes(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "RssAnon: %lld kB", &kb) == 1) break;
    if (f) fclose(f);
    return kb < 0 ? -1 : kb * 1024;
}

static int write_json(const opts *o, const mdl_model *m, const ppl_params *pp, const ppl_result *r,
                      const char *sha, double secs, double cpu, int threads)
{
    char nb[4096];
    char *abs = realpath(o->model_dir, NULL);
    json_t *j = json_pack(
        "{s:f, s:f, s:f, s:I, s:s, s:I, s:I, s:I, s:I, s:s, s:s, s:s, s:s, s:f, s:f, s:s, s:I, "
        "s:s, s:I, s:s, s:i}",
        "perplexity", r->ppl, "nll", r->nll, "mean_nll", r->mean_nll, "count", (json_int_t)r->count,
        "method", ppl_method_name(pp->method), "ctx", (json_int_t)pp->ctx, "stride",
        (json_int_t)(pp->method == PPL_SLIDING ? pp->stride : pp->ctx), "tokens",
        (json_int_t)r->tokens, "windows", (json_int_t)r->windows, "model",
        model_name(o->model_dir, nb, sizeof nb), "model_dir", abs ? abs : o->model_dir, "text",
        o->text, "text_sha256", sha, "tokens_per_s", secs > 0 ? (double)r->evaluated / secs : 0.0,
        "seconds", secs, "dtype", mdl_dtype(m), "n_params", (json_int_t)mdl_n_params(m),
        "model_type", mdl_type(m), "max_tokens", (json_int_t)o->max_tokens, "version", HF_VERSION,
        "threads", threads);
    free(abs);
    if (!j) return die("%s: cannot build the JSON result%s", o->json, "");
    if (pp->method == PPL_LLAMACPP) json_object_set_new(j, "ppl_err", json_real(r->ppl_err));
    json_object_set_new(j, "isa", json_string(kn_isa_name(kn_isa_best())));
    json_object_set_new(j, "weight_bytes", json_integer((json_int_t)mdl_weight_bytes(m)));
    json_object_set_new(j, "rss_anon_bytes", json_integer(rss_anon_bytes()));
    json_object_set_new(j, "mmap", json_boolean(o->use_mmap));
    json_object_set_new(j, "cpu_seconds", json_real(cpu)); /* all threads, user + system */
    int rc = json_dump_file(j, o->json, JSON_INDENT(1) | JSON_SORT_KEYS | JSON_REAL_PRECISION(17));
    json_decref(j);
    if (rc != 0) return die("%s: cannot write the JSON result: %s", o->json, strerror(errno));
    return 0;
}

static void print_report(const opts *o, const mdl_model *m, const ppl_params *pp,
                         const ppl_result *r, double secs, int threads)
{
    printf("model       %s (%s, %s, %llu parameters)\n", o->model_dir, mdl_type(m), mdl_dtype(m),
           (unsigned long long)mdl_n_params(m));
    if (pp->method == PPL_SLIDING)
        printf("method      sliding, ctx %zu, stride %zu\n", pp->ctx, pp->stride);
    else
        printf("method      llamacpp, ctx %zu (%zu chunks)\n", pp->ctx, r->windows);
    printf("tokens      %zu (%zu scored in %zu windows)\n", r->tokens, r->count, r->windows);
    if (pp->method == PPL_LLAMACPP)
        printf("perplexity  %.6f +/- %.5f\n", r->ppl, r->ppl_err);
    else
        printf("perplexity  %.6f\n", r->ppl);
    printf("mean NLL    %.9f (total %.6f)\n", r->mean_nll, r->nll);
    printf("memory      %.1f MiB resident anonymous, weights %.1f MiB %s\n",
           (double)rss_anon_bytes() / 1048576.0, (double)mdl_weight_bytes(m) / 1048576.0,
           o->use_mmap ? "mapped, not copied" : "read into memory (--no-mmap)");
    printf("speed       %.1f tokens/s (%zu evaluated in %.2f s, %d threads, %s)\n",
           secs > 0 ? (double)r->evaluated / secs : 0.0, r->evaluated, secs, threads,
           kn_isa_name(kn_isa_best()));
}

/* The ids the method scores: llama.cpp drops one trailing LF from the file first. */
static int text_ids(const opts *o, const tok_tokenizer *t, const char *text, size_t len,
                    int32_t **ids, size_t *n)
{
    if (o->method == PPL_LLAMACPP && len > 0 && text[len - 1] == '\n') len--;
    if (encode(t, o->text, text, len, 1, ids, n)) return -1;
    if (o->max_tokens && *n > o->max_tokens) *n = o->max_tokens;
    return 0;
}

static int evaluate(const opts *o, mdl_model *m, const tok_tokenizer *t, const char *text,
                    size_t len)
{
    ppl_params pp = {o->method, o->ctx, o->stride ? o->stride : o->ctx, -1};
    if (!o->ctx_given && mdl_trained_ctx(m) && mdl_trained_ctx(m) < pp.ctx)
        pp.ctx = pp.stride = mdl_trained_ctx(m);
    if (mdl_max_ctx(m) && pp.ctx > mdl_max_ctx(m)) {
        char a[32], b[32];
        snprintf(a, sizeof a, "%zu", pp.ctx);
        snprintf(b, sizeof b, "%zu", mdl_max_ctx(m));
        return die("--ctx %s exceeds the model's %s positions", a, b);
    }
    /* RoPE models run past their training length, as transformers and llama.cpp let them;
     * only the comparability of the figure suffers, so this warns instead of refusing. */
    size_t cmp = mdl_comparable_ctx(m);
    if (!o->quiet && cmp && pp.ctx > cmp)
        fprintf(stderr,
                "hfppl: warning: --ctx %zu exceeds the model's max_position_embeddings (%zu); "
                "the results are not comparable with runs inside the trained context\n",
                pp.ctx, cmp);
    if (pp.method == PPL_LLAMACPP && tok_bos_id(t) >= 0)
        pp.bos = tok_bos_token_id(t) >= 0 ? tok_bos_token_id(t) : tok_bos_id(t);
    int32_t *ids;
    size_t n;
    if (text_ids(o, t, text, len, &ids, &n)) return EXIT_FAILURE;
    pool *p;
    if (pool_create(o->threads, &p) < 0) {
        free(ids);
        return die("cannot start %s threads%s", "the worker", "");
    }
    char err[1024] = "", sha[65];
    sha256_ctx hash;
    if (sha256_init(&hash) < 0) {
        free(ids);
        pool_free(p);
        return die("out of memory%s%s", "", "");
    }
    sha256_update(&hash, text, len);
    sha256_final_hex(&hash, sha);
    scorer sc = {m, p};
    progress pr = {now()};
    double cpu0 = cpu_now();
    ppl_result r;
    int show = !o->quiet && isatty(STDERR_FILENO);
    int rc = ppl_run(&pp, ids, n, score_window, &sc, show ? on_progress : NULL, &pr, &r, err,
                     sizeof err);
    double secs = now() - pr.t0, cpu = cpu_now() - cpu0;
    free(ids);
    pool_free(p);
    if (rc < 0) return die("%s: %s", o->text, err[0] ? err : strerror(-rc));
    print_report(o, m, &pp, &r, secs, o->threads);
    if (o->json && write_json(o, m, &pp, &r, sha, secs, cpu, o->threads)) return EXIT_FAILURE;
    return 0;
}

int main(int argc, char **argv)
{
    opts o;
    if (parse_args(argc, argv, &o)) return 2;
    if (o.tokenize) return run_tokenize(&o);
    char *text;
    size_t len;
    if (read_file(o.text, &text, &len)) return EXIT_FAILURE;
    if (len == 0) {
        free(text);
        return die("the text %s is empty%s", o.text, "");
    }
    /* The handler is in place before the first weight is read: loading reads the norm and
     * bias vectors from the mapping already. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGBUS, &sa, NULL);
    char err[1024] = "";
    mdl_options mo = {o.use_mmap, o.quiet, NULL, &g_weights};
    mdl_model *m;
    if (mdl_load(o.model_dir, &mo, &m, err, sizeof err) < 0) {
        g_weights = NULL;
        free(text);
        return die("%s%s", err, "");
    }
    tok_tokenizer *t;
    if (load_tokenizer(o.model_dir, &t)) {
        g_weights = NULL;
        mdl_free(m);
        free(text);
        return EXIT_FAILURE;
    }
    int rc = evaluate(&o, m, t, text, len);
    g_weights = NULL;
    mdl_free(m);
    tok_free(t);
    free(text);
    return rc;
}
