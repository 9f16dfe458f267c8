/* ppl.c — see ppl.h. Both methods reduce to a list of (window begin, length, first target). */
#include "ppl.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

__attribute__((format(printf, 3, 4))) static int ppl_fail(char *err, size_t errlen, const char *fmt,
                                                          ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

const char *ppl_method_name(ppl_method m)
{
    return m == PPL_LLAMACPP ? "llamacpp" : "sliding";
}

typedef struct {
    size_t begin, len, first; /* window ids[begin, begin+len); targets local first .. len-1 */
} ppl_window;

/* Window k of the plan; returns 0 past the last one. */
static int ppl_window_at(const ppl_params *pp, size_t n, size_t k, ppl_window *w)
{
    size_t C = pp->ctx;
    if (pp->method == PPL_LLAMACPP) {
        if (k >= n / C) return 0;
        *w = (ppl_window){k * C, C, C / 2 + 1};
        return 1;
    }
    size_t S = pp->stride ? pp->stride : C;
    size_t begin = k * S;
    if (k > 0 && (k - 1) * S + C >= n) /* the previous window reached the end */
        return 0;
    if (begin >= n && k > 0) return 0;
    size_t end = begin + C < n ? begin + C : n;
    size_t prev_end = k == 0 ? 0 : ((k - 1) * S + C < n ? (k - 1) * S + C : n);
    size_t t0 = prev_end > begin + 1 ? prev_end : begin + 1;
    *w = (ppl_window){begin, end - begin, t0 - begin};
    return 1;
}

int ppl_plan(const ppl_params *pp, size_t n_ids, size_t *n_windows, size_t *n_scored, char *err,
             size_t errlen)
{
    if (pp->ctx < 2)
        return ppl_fail(err, errlen, "--ctx %zu: a window needs at least 2 tokens", pp->ctx);
    if (pp->method == PPL_SLIDING) {
        size_t S = pp->stride ? pp->stride : pp->ctx;
        if (S > pp->ctx)
            return ppl_fail(err, errlen, "--stride %zu is larger than --ctx %zu", S, pp->ctx);
    } else if (n_ids < 2 * pp->ctx) {
        return ppl_fail(err, errlen,
                        "the text has %zu tokens; the llamacpp method needs at least 2 × ctx = "
                        "%zu",
                        n_ids, 2 * pp->ctx);
    }
    size_t nw = 0, ns = 0;
    ppl_window w;
    while (ppl_window_at(pp, n_ids, nw, &w)) {
        ns += w.len > w.first ? w.len - w.first : 0;
        nw++;
    }
    if (ns == 0)
        return ppl_fail(err, errlen, "the text has %zu token%s: nothing to score", n_ids,
                        n_ids == 1 ? "" : "s");
    *n_windows = nw;
    *n_scored = ns;
    return 0;
}

int ppl_run(const ppl_params *pp, const int32_t *ids, size_t n_ids, ppl_score_fn score,
            void *score_ctx, ppl_progress_fn progress, void *progress_ctx, ppl_result *out,
            char *err, size_t errlen)
{
    size_t nw, ns;
    int rc = ppl_plan(pp, n_ids, &nw, &ns, err, errlen);
    if (rc < 0) return rc;
    int32_t *buf = malloc(pp->ctx * sizeof *buf);
    double *nll = malloc(pp->ctx * sizeof *nll);
    if (!buf || !nll) {
        free(buf);
        free(nll);
        return -ENOMEM;
    }
    memset(out, 0, sizeof *out);
    out->tokens = n_ids;
    ppl_window w;
    for (size_t k = 0; rc == 0 && ppl_window_at(pp, n_ids, k, &w); k++) {
        memcpy(buf, ids + w.begin, w.len * sizeof *buf);
        if (pp->method == PPL_LLAMACPP && pp->bos >= 0) buf[0] = pp->bos;
        if (w.first >= w.len) continue;
        rc = score(score_ctx, buf, w.len, w.first, nll, err, errlen);
        for (size_t i = 0; rc == 0 && i < w.len - w.first; i++) {
            out->nll += nll[i];
            out->nll2 += nll[i] * nll[i];
            out->count++;
        }
        out->windows++;
        out->evaluated += w.len;
        if (rc == 0 && progress) progress(progress_ctx, out->count, ns);
    }
    free(buf);
    free(nll);
    if (rc < 0) return rc;
    out->mean_nll = out->nll / (double)out->count;
    out->ppl = exp(out->mean_nll);
    double var = out->nll2 / (double)out->count - out->mean_nll * out->mean_nll;
    out->ppl_err = var > 0 && out->count > 1 ? out->ppl * sqrt(var / (double)(out->count - 1)) : 0;
    return 0;
}
