/* tokdrv.c — test driver for the tokenizer: encode / decode a file with a tokenizer folder.
 *
 *   tokdrv encode DIR FILE [--no-special] [--bytes A:B]   ids, space-separated, newline
 *   tokdrv roundtrip DIR FILE [--bytes A:B]              decode(encode(text)) == text?
 *   tokdrv batch DIR FILE     lines "S HEX" (S = 1 adds special tokens): a line of ids each
 *   tokdrv threads DIR FILE N   N threads encode at once; all must equal one encode
 *   tokdrv split FILE           lines "PRE_TOKENIZER_JSON<TAB>HEX": the words, hex, one line each
 *   tokdrv unbatch DIR FILE     lines of ids: the decoded text of each, hex, one line each
 *   tokdrv info DIR                                      vocab size, BOS/EOS ids
 *   tokdrv time DIR FILE REPEAT [cpu]   seconds per encode, best of REPEAT (wall or CPU time)
 * Errors go to stderr with the library's message; the exit status is 1. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "tok_pre.h"
#include "tokenizer.h"

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "tokdrv: %s: %s\n", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    size_t got;
    while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) {
                free(buf);
                buf = NULL;
            }
            buf = nb;
        }
    }
    fclose(f);
    *len = n;
    return buf;
}

static void slice(char **text, size_t *len, const char *spec)
{
    unsigned long a = 0, b = 0;
    if (!spec || sscanf(spec, "%lu:%lu", &a, &b) != 2) return;
    if (b > *len) b = *len;
    if (a > b) a = b;
    memmove(*text, *text + a, b - a);
    *len = b - a;
}

static const char *opt(int argc, char **argv, const char *name)
{
    for (int i = 0; i < argc; i++)
        if (!strcmp(argv[i], name)) return i + 1 < argc ? argv[i + 1] : "";
    return NULL;
}

static void print_ids(const int32_t *ids, size_t n)
{
    for (size_t i = 0; i < n; i++)
        printf(i ? " %d" : "%d", (int)ids[i]);
    putchar('\n');
}

static void print_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        printf("%02x", (unsigned char)s[i]);
}

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Each line "S HEX": S 1/0 = add special tokens, HEX the text's bytes. One line of ids out. */
static int encode_batch(tok_tokenizer *t, char *text, size_t len)
{
    char err[512];
    for (size_t a = 0; a < len;) {
        char *nl = memchr(text + a, '\n', len - a);
        size_t b = nl ? (size_t)(nl - text) : len, n = 0;
        int special = text[a] == '1';
        char *bytes = malloc((b - a) / 2 + 1);
        if (!bytes) return 1;
        for (size_t i = a + 2; i + 1 < b; i += 2)
            bytes[n++] = (char)(hexval(text[i]) * 16 + hexval(text[i + 1]));
        int32_t *ids;
        size_t nid;
        int rc = tok_encode(t, bytes, n, special, &ids, &nid, err, sizeof err);
        free(bytes);
        if (rc) {
            fprintf(stderr, "%s\n", err);
            return 1;
        }
        print_ids(ids, nid);
        free(ids);
        a = b + 1;
    }
    return 0;
}

/* Each line a list of ids; print tok_decode() of it in hex (decoder checks). */
static int decode_batch(tok_tokenizer *t, char *text, size_t len)
{
    char err[512];
    int32_t *ids = malloc((len / 2 + 1) * sizeof *ids);
    if (!ids) return 1;
    for (size_t a = 0; a < len;) {
        char *nl = memchr(text + a, '\n', len - a);
        size_t b = nl ? (size_t)(nl - text) : len, n = 0;
        text[b] = '\0';
        for (char *p = text + a, *end; *p; p = end) {
            long v = strtol(p, &end, 10);
            if (end == p) break;
            ids[n++] = (int32_t)v;
        }
        char *out;
        size_t olen;
        if (tok_decode(t, ids, n, &out, &olen, err, sizeof err)) {
            fprintf(stderr, "%s\n", err);
            free(ids);
            return 1;
        }
        print_hex(out, olen);
        putchar('\n');
        free(out);
        a = b + 1;
    }
    free(ids);
    return 0;
}

struct job {
    const tok_tokenizer *t;
    const char *text;
    size_t len;
    int32_t *ids;
    size_t n;
    int rc;
};

static void *job_run(void *arg)
{
    struct job *j = arg;
    char err[512];
    j->rc = tok_encode(j->t, j->text, j->len, 1, &j->ids, &j->n, err, sizeof err);
    return NULL;
}

/* One tokenizer shared by several threads gives every thread the single-threaded ids. */
static int encode_threads(tok_tokenizer *t, const char *text, size_t len, int nthreads)
{
    struct job ref = {t, text, len, NULL, 0, 0}, jobs[16];
    pthread_t th[16];
    if (nthreads < 1 || nthreads > 16) nthreads = 4;
    job_run(&ref);
    int bad = ref.rc != 0;
    for (int i = 0; i < nthreads; i++) {
        jobs[i] = ref;
        jobs[i].ids = NULL;
        if (pthread_create(&th[i], NULL, job_run, &jobs[i])) return 1;
    }
    for (int i = 0; i < nthreads; i++) {
        pthread_join(th[i], NULL);
        bad |= jobs[i].rc || jobs[i].n != ref.n ||
               memcmp(jobs[i].ids, ref.ids, ref.n * sizeof *ref.ids);
        free(jobs[i].ids);
    }
    printf("%d threads: %s (%zu ids)\n", nthreads, bad ? "DIFFERENT" : "identical", ref.n);
    free(ref.ids);
    return bad;
}

static int run(tok_tokenizer *t, const char *cmd, char *text, size_t len, int argc, char **argv)
{
    char err[512];
    int special = !opt(argc, argv, "--no-special");
    int32_t *ids;
    size_t n;
    if (!strcmp(cmd, "batch")) return encode_batch(t, text, len);
    if (!strcmp(cmd, "unbatch")) return decode_batch(t, text, len);
    if (!strcmp(cmd, "threads")) return encode_threads(t, text, len, argc > 4 ? atoi(argv[4]) : 4);
    if (!strcmp(cmd, "time")) {
        int rep = argc > 4 ? atoi(argv[4]) : 3;
        /* "cpu": this process's CPU time, steadier than wall time on a busy machine */
        clockid_t clk = opt(argc, argv, "cpu") ? CLOCK_PROCESS_CPUTIME_ID : CLOCK_MONOTONIC;
        double best = 1e30;
        for (int r = 0; r < rep; r++) {
            struct timespec t0, t1;
            clock_gettime(clk, &t0);
            if (tok_encode(t, text, len, special, &ids, &n, err, sizeof err)) {
                fprintf(stderr, "%s\n", err);
                return 1;
            }
            clock_gettime(clk, &t1);
            free(ids);
            double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
            if (s < best) best = s;
        }
        printf("%.6f %zu\n", best, len);
        return 0;
    }
    if (tok_encode(t, text, len, strcmp(cmd, "roundtrip") ? special : 0, &ids, &n, err,
                   sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    if (!strcmp(cmd, "encode")) {
        print_ids(ids, n);
        free(ids);
        return 0;
    }
    char *back;
    size_t blen;
    int rc = tok_decode(t, ids, n, &back, &blen, err, sizeof err);
    free(ids);
    if (rc) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    int same = blen == len && !memcmp(back, text, len);
    if (!same) {
        size_t i = 0;
        while (i < len && i < blen && back[i] == text[i])
            i++;
        fprintf(stderr, "roundtrip differs at byte %zu (text %zu bytes, decoded %zu)\n", i, len,
                blen);
    } else
        printf("roundtrip ok: %zu bytes, %zu ids\n", len, n);
    free(back);
    return !same;
}

/* Pre-tokenize each line's text with its own pre-tokenizer node (regex oracle checks). */
static int split_batch(const char *path)
{
    size_t len;
    char *text = read_file(path, &len);
    if (!text) return 1;
    int rc = 0;
    for (size_t a = 0; a < len && !rc;) {
        char *nl = memchr(text + a, '\n', len - a);
        size_t b = nl ? (size_t)(nl - text) : len;
        char *tab = memchr(text + a, '\t', b - a);
        if (!tab) break;
        json_error_t je;
        json_t *node = json_loadb(text + a, (size_t)(tab - (text + a)), JSON_ALLOW_NUL, &je);
        char *bytes = malloc(b - a);
        size_t n = 0;
        for (char *h = tab + 1; h + 1 < text + b; h += 2)
            bytes[n++] = (char)(hexval(h[0]) * 16 + hexval(h[1]));
        char err[512];
        tok_pre *pre = NULL;
        tok_pre_scratch *sc = NULL;
        tok_pieces out = {0};
        if (!node || tok_pre_load(node, "split", &pre, err, sizeof err))
            printf("ERROR %s\n", node ? err : je.text);
        else if (tok_pre_apply(pre, &sc, bytes, n, 1, &out))
            rc = 1;
        else {
            for (size_t i = 0; i < out.n; i++) {
                if (i) putchar(' ');
                print_hex(out.text.p + out.v[i].off, out.v[i].len);
            }
            putchar('\n');
        }
        tok_pieces_free(&out);
        tok_pre_scratch_free(sc);
        tok_pre_free(pre);
        json_decref(node);
        free(bytes);
        a = b + 1;
    }
    free(text);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr,
                "usage: tokdrv encode|roundtrip|batch|threads|time|info DIR [FILE] [opts]\n");
        return 2;
    }
    char err[512];
    tok_tokenizer *t;
    if (!strcmp(argv[1], "split")) return split_batch(argv[2]);
    if (tok_load(argv[2], &t, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    int rc;
    if (!strcmp(argv[1], "info")) {
        printf("vocab %zu bos %d bos_token %d eos %d\n", tok_vocab_size(t), (int)tok_bos_id(t),
               (int)tok_bos_token_id(t), (int)tok_eos_id(t));
        rc = 0;
    } else if (argc < 4) {
        fprintf(stderr, "tokdrv: %s needs a FILE\n", argv[1]);
        rc = 2;
    } else {
        size_t len;
        char *text = read_file(argv[3], &len);
        if (!text)
            rc = 1;
        else {
            slice(&text, &len, opt(argc, argv, "--bytes"));
            rc = run(t, argv[1], text, len, argc, argv);
        }
        free(text);
    }
    tok_free(t);
    return rc;
}
