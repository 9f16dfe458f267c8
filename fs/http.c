/* http.c — see http.h.
 *
 * One logical request is a loop of attempts. Each attempt takes one request from the bucket's
 * budget (ratelimit.h), performs one libcurl transfer on a pooled easy handle (so connections
 * are reused), reports the rate-limit headers back, and classifies the answer: definitive
 * (returned), redirect (followed here, not by libcurl, so that the token never leaves the
 * endpoint), 429 (shared pause), or transient fault (backoff with full jitter). Every wait is
 * bounded by the request's max_wait deadline and polls the cancel callback. */
#include "http.h"

#include "log.h"
#include "ratelimit.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#ifndef HF_VERSION
#define HF_VERSION "0"
#endif

#define HTTP_DEFAULT_MAX_BODY (16u << 20)
#define HTTP_MAX_REDIRECTS 10
#define HTTP_RETRY_BASE_S 0.5 /* transient faults: full jitter in [0, base * 2^n], capped */
#define HTTP_RETRY_CAP_S 30.0
#define HTTP_SLICE_S 0.05

/* Why an attempt did not give a definitive answer; the stats count retries by cause. */
typedef enum http_cause {
    CAUSE_RATE_LIMITED = 0,
    CAUSE_SERVER_ERROR,
    CAUSE_CONNECT,
    CAUSE_DNS,
    CAUSE_RESET,
    CAUSE_STALL,
    CAUSE_DEADLINE,
    CAUSE_TRUNCATED,
    CAUSE_BAD_RANGE,
    CAUSE_OTHER,
    CAUSE_N
} http_cause;

static const char *const cause_names[CAUSE_N] = {
    "rate_limited", "server_error", "connect",   "dns",       "reset",
    "stall",        "deadline",     "truncated", "bad_range", "other"};

typedef struct http_bucket_stats {
    uint64_t requests; /* transfers started */
    uint64_t bytes;    /* body bytes received */
    uint64_t failures; /* logical requests that ended in -EIO */
    uint64_t retries[CAUSE_N];
} http_bucket_stats;

struct http_client {
    char *endpoint, *token, *user_agent;
    char *ep_scheme, *ep_host; /* lower case */
    long ep_port;
    double connect_s, stall_s, deadline_s, max_wait_s;
    int offline;
    rl_state *rl;
    CURLSH *share; /* DNS cache and TLS sessions for all handles */
    pthread_mutex_t share_mu;
    pthread_mutex_t pool_mu; /* idle easy handles; each keeps its connections alive */
    CURL **pool;
    size_t npool, cappool;
    pthread_mutex_t st_mu;
    http_bucket_stats st[HTTP_NBUCKETS];
};

/* State of one attempt, filled by libcurl's callbacks. */
typedef struct http_xfer {
    http_client *c;
    const http_request *rq;
    http_response *rs;
    rl_headers rlh;
    const char *url;
    long status;
    int64_t cr_start, cr_end, cr_total; /* Content-Range; -1 = absent */
    char *body;
    size_t body_len, body_cap, body_max;
    int64_t got;   /* bytes of a ranged body written to rq->buf */
    int too_big;   /* unranged body over max_body */
    int bad_range; /* 200 to a range, or a wrong Content-Range */
    int too_long;  /* more bytes than asked for */
    int stalled, cancelled;
    double last_byte; /* monotonic time of the last progress */
    curl_off_t last_dl;
} http_xfer;

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double uniform01(void)
{
    uint32_t x = 0;
    if (getrandom(&x, sizeof x, 0) != (ssize_t)sizeof x) x = (uint32_t)(mono_now() * 1e6);
    return (double)x / 4294967296.0;
}

/* --- URL helpers --- */

static char *http_resolve_url(const char *base, const char *ref)
{
    CURLU *u = curl_url();
    char *out = NULL, *tmp = NULL;
    if (!u) return NULL;
    if (curl_url_set(u, CURLUPART_URL, base, 0) == CURLUE_OK &&
        curl_url_set(u, CURLUPART_URL, ref, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_URL, &tmp, 0) == CURLUE_OK)
        out = strdup(tmp);
    curl_free(tmp);
    curl_url_cleanup(u);
    return out;
}

/* scheme, host (lower-cased) and port (default filled in) of url; 0 or -EINVAL. */
static int http_url_origin(const char *url, char **scheme, char **host, long *port)
{
    CURLU *u = curl_url();
    char *s = NULL, *h = NULL, *p = NULL;
    int rc = -EINVAL;
    *scheme = *host = NULL;
    if (!u) return -ENOMEM;
    if (curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_SCHEME, &s, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &h, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_PORT, &p, CURLU_DEFAULT_PORT) == CURLUE_OK) {
        *scheme = strdup(s);
        *host = strdup(h);
        *port = strtol(p, NULL, 10);
        if (*scheme && *host) {
            for (char *q = *host; *q; q++)
                *q = (char)(*q >= 'A' && *q <= 'Z' ? *q + 32 : *q);
            rc = 0;
        } else {
            free(*scheme), free(*host);
            *scheme = *host = NULL;
            rc = -ENOMEM;
        }
    }
    curl_free(s), curl_free(h), curl_free(p);
    curl_url_cleanup(u);
    return rc;
}

int http_is_endpoint_url(const http_client *c, const char *url)
{
    char *s, *h;
    long port;
    if (!url || http_url_origin(url, &s, &h, &port) != 0) return 0;
    int same = strcasecmp(s, c->ep_scheme) == 0 && strcmp(h, c->ep_host) == 0 && port == c->ep_port;
    free(s), free(h);
    return same;
}

/* --- client --- */

static void share_lock(CURL *h, curl_lock_data d, curl_lock_access a, void *arg)
{
    pthread_mutex_lock(arg);
}

static void share_unlock(CURL *h, curl_lock_data d, void *arg)
{
    pthread_mutex_unlock(arg);
}

int http_client_new(const http_opts *o, http_client **out)
{
    *out = NULL;
    if (!o || !o->endpoint || !*o->endpoint) return -EINVAL;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) return -ENOMEM;
    http_client *c = calloc(1, sizeof *c);
    if (!c) return -ENOMEM;
    size_t n = strlen(o->endpoint);
    while (n > 0 && o->endpoint[n - 1] == '/')
        n--;
    c->endpoint = strndup(o->endpoint, n);
    c->token = o->token && *o->token ? strdup(o->token) : NULL;
    c->user_agent = strdup(o->user_agent ? o->user_agent : "hfmount/" HF_VERSION);
    c->connect_s = o->connect_timeout_s > 0 ? o->connect_timeout_s : 10;
    c->stall_s = o->stall_timeout_s > 0 ? o->stall_timeout_s : 30;
    c->deadline_s = o->deadline_s > 0 ? o->deadline_s : 600;
    c->max_wait_s = o->max_wait_s > 0 ? o->max_wait_s : 1800;
    c->offline = o->offline;
    pthread_mutex_init(&c->share_mu, NULL);
    pthread_mutex_init(&c->pool_mu, NULL);
    pthread_mutex_init(&c->st_mu, NULL);
    int rc = 0;
    if (!c->endpoint || !c->user_agent || (o->token && *o->token && !c->token))
        rc = -ENOMEM;
    else if (http_url_origin(c->endpoint, &c->ep_scheme, &c->ep_host, &c->ep_port) != 0) {
        log_error("endpoint '%s' is not a valid URL (expected e.g. https://huggingface.co)",
                  o->endpoint);
        rc = -EINVAL;
    } else
        rc = rl_open(o->state_dir, o->rate, &c->rl);
    if (!rc && (c->share = curl_share_init()) != NULL) {
        curl_share_setopt(c->share, CURLSHOPT_LOCKFUNC, share_lock);
        curl_share_setopt(c->share, CURLSHOPT_UNLOCKFUNC, share_unlock);
        curl_share_setopt(c->share, CURLSHOPT_USERDATA, &c->share_mu);
        curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
        curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    } else if (!rc)
        rc = -ENOMEM;
    if (rc) {
        http_client_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

void http_client_free(http_client *c)
{
    if (!c) return;
    for (size_t i = 0; i < c->npool; i++)
        curl_easy_cleanup(c->pool[i]);
    free(c->pool);
    if (c->share) curl_share_cleanup(c->share);
    rl_close(c->rl);
    pthread_mutex_destroy(&c->share_mu);
    pthread_mutex_destroy(&c->pool_mu);
    pthread_mutex_destroy(&c->st_mu);
    free(c->endpoint), free(c->token), free(c->user_agent);
    free(c->ep_scheme), free(c->ep_host);
    free(c);
    curl_global_cleanup();
}

static CURL *pool_get(http_client *c)
{
    CURL *h = NULL;
    pthread_mutex_lock(&c->pool_mu);
    if (c->npool > 0) h = c->pool[--c->npool];
    pthread_mutex_unlock(&c->pool_mu);
    if (h)
        curl_easy_reset(h);
    else
        h = curl_easy_init();
    return h;
}

static void pool_put(http_client *c, CURL *h)
{
    pthread_mutex_lock(&c->pool_mu);
    if (c->npool == c->cappool) {
        size_t cap = c->cappool ? c->cappool * 2 : 8;
        CURL **p = realloc(c->pool, cap * sizeof *p);
        if (!p) {
            pthread_mutex_unlock(&c->pool_mu);
            curl_easy_cleanup(h);
            return;
        }
        c->pool = p, c->cappool = cap;
    }
    c->pool[c->npool++] = h;
    pthread_mutex_unlock(&c->pool_mu);
}

/* --- response --- */

static void resp_reset(http_response *rs)
{
    memset(rs, 0, sizeof *rs);
    rs->linked_size = rs->content_length = rs->last_modified = -1;
}

void http_response_free(http_response *rs)
{
    if (!rs) return;
    free(rs->body), free(rs->effective_url), free(rs->location), free(rs->repo_commit);
    free(rs->linked_etag), free(rs->etag), free(rs->error_code), free(rs->error_message);
    free(rs->link_next), free(rs->content_type);
    resp_reset(rs);
}

/* Replace *slot with a copy of [v, v+n) without surrounding quotes (and W/ when weak). */
static void set_str(char **slot, const char *v, size_t n, int unquote)
{
    if (unquote) {
        if (n >= 2 && (v[0] == 'W' || v[0] == 'w') && v[1] == '/') v += 2, n -= 2;
        if (n >= 2 && v[0] == '"' && v[n - 1] == '"') v++, n -= 2;
    }
    free(*slot);
    *slot = strndup(v, n);
}

static int64_t parse_i64(const char *v)
{
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || x < 0) return -1;
    while (*end == ' ' || *end == '\t')
        end++;
    return *end ? -1 : (int64_t)x;
}

/* "bytes START-END/TOTAL" (TOTAL may be "*"); "bytes * /TOTAL" leaves start/end at -1. */
static void parse_content_range(http_xfer *x, const char *v)
{
    long long a, b;
    char tot[32];
    x->cr_start = x->cr_end = x->cr_total = -1;
    if (sscanf(v, "bytes %lld-%lld/%31s", &a, &b, tot) == 3 && a >= 0 && b >= a) {
        x->cr_start = a, x->cr_end = b;
        x->cr_total = strcmp(tot, "*") == 0 ? -1 : parse_i64(tot);
    } else if (sscanf(v, "bytes */%31s", tot) == 1) {
        x->cr_total = parse_i64(tot);
    }
}

/* Link: <url>; rel="next", <url2>; rel="prev" */
static void parse_link(http_xfer *x, const char *v)
{
    const char *p = v;
    while ((p = strchr(p, '<')) != NULL) {
        const char *e = strchr(p, '>');
        if (!e) return;
        const char *params = e + 1, *stop = strchr(params, '<');
        size_t plen = stop ? (size_t)(stop - params) : strlen(params);
        char pbuf[256];
        snprintf(pbuf, sizeof pbuf, "%.*s", (int)(plen < 255 ? plen : 255), params);
        if (strstr(pbuf, "rel=\"next\"") || strstr(pbuf, "rel=next")) {
            char *ref = strndup(p + 1, (size_t)(e - p - 1));
            if (ref) {
                free(x->rs->link_next);
                x->rs->link_next = http_resolve_url(x->url, ref);
                free(ref);
            }
            return;
        }
        p = e + 1;
    }
}

static void parse_header(http_xfer *x, const char *name, size_t nlen, const char *v, size_t vlen)
{
    http_response *rs = x->rs;
    char val[4096];
    snprintf(val, sizeof val, "%.*s", (int)(vlen < sizeof val - 1 ? vlen : sizeof val - 1), v);
#define IS(s) (nlen == sizeof(s) - 1 && strncasecmp(name, s, nlen) == 0)
    if (IS("x-repo-commit"))
        set_str(&rs->repo_commit, v, vlen, 0);
    else if (IS("x-linked-etag"))
        set_str(&rs->linked_etag, v, vlen, 1);
    else if (IS("etag"))
        set_str(&rs->etag, v, vlen, 1);
    else if (IS("x-error-code"))
        set_str(&rs->error_code, v, vlen, 0);
    else if (IS("x-error-message"))
        set_str(&rs->error_message, v, vlen, 0);
    else if (IS("content-type"))
        set_str(&rs->content_type, v, vlen, 0);
    else if (IS("x-linked-size"))
        rs->linked_size = parse_i64(val);
    else if (IS("content-length"))
        rs->content_length = parse_i64(val);
    else if (IS("last-modified")) {
        time_t t = curl_getdate(val, NULL);
        rs->last_modified = t == (time_t)-1 ? -1 : (int64_t)t;
    } else if (IS("location")) {
        free(rs->location);
        rs->location = http_resolve_url(x->url, val);
    } else if (IS("link"))
        parse_link(x, val);
    else if (IS("content-range"))
        parse_content_range(x, val);
    else if (IS("ratelimit"))
        rl_parse_ratelimit(val, &x->rlh);
    else if (IS("ratelimit-policy"))
        rl_parse_policy(val, &x->rlh);
    else if (IS("retry-after"))
        rl_parse_retry_after(val, rl_now(), &x->rlh);
#undef IS
}

/* Forget the headers of an earlier response (1xx, or the previous attempt). The attempt's
 * body is in x->body and only moves to rs once the answer is final. */
static void xfer_clear_headers(http_xfer *x)
{
    http_response_free(x->rs);
    x->rlh = (rl_headers){-1, -1, -1, -1, -1};
    x->cr_start = x->cr_end = x->cr_total = -1;
    x->status = 0;
}

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
    http_xfer *x = arg;
    size_t len = size * n, l = len;
    while (l > 0 && (p[l - 1] == '\r' || p[l - 1] == '\n'))
        l--;
    if (l >= 5 && strncmp(p, "HTTP/", 5) == 0) {
        /* a new response (after 1xx, or the first): forget earlier headers */
        xfer_clear_headers(x);
        const char *sp = memchr(p, ' ', l);
        x->status = sp ? strtol(sp + 1, NULL, 10) : 0;
        return len;
    }
    const char *colon = memchr(p, ':', l);
    if (!colon) return len;
    const char *v = colon + 1, *end = p + l;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    parse_header(x, p, (size_t)(colon - p), v, (size_t)(end - v));
    return len;
}

/* A 206's Content-Range must be exactly the bytes asked for (and the known total). */
static int range_matches(const http_xfer *x)
{
    const http_request *rq = x->rq;
    if (x->cr_start != rq->off || x->cr_end != rq->off + rq->len - 1) return 0;
    return rq->expect_total < 0 || x->cr_total == rq->expect_total;
}

static size_t body_append(http_xfer *x, const char *p, size_t len)
{
    if (x->body_len + len > x->body_max) {
        x->too_big = 1;
        return 0;
    }
    if (x->body_len + len + 1 > x->body_cap) {
        size_t cap = x->body_cap ? x->body_cap : 16384;
        while (cap < x->body_len + len + 1)
            cap *= 2;
        char *b = realloc(x->body, cap);
        if (!b) return 0;
        x->body = b, x->body_cap = cap;
    }
    memcpy(x->body + x->body_len, p, len);
    x->body_len += len;
    x->body[x->body_len] = '\0';
    return len;
}

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    http_xfer *x = arg;
    size_t len = size * n;
    const http_request *rq = x->rq;
    if (rq->len <= 0) return body_append(x, p, len);
    if (x->status == 200 || (x->status == 206 && !range_matches(x))) {
        x->bad_range = 1; /* stop at once: a 200 may be the whole 10 GB file */
        return 0;
    }
    if (x->status != 206) return len; /* an error page; the status says enough */
    if (x->got + (int64_t)len > rq->len) {
        x->too_long = 1;
        return 0;
    }
    memcpy((char *)rq->buf + x->got, p, len);
    x->got += (int64_t)len;
    return len;
}

static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    http_xfer *x = arg;
    double now = mono_now();
    if (x->rq->cancelled && x->rq->cancelled(x->rq->cancel_arg)) {
        x->cancelled = 1;
        return 1;
    }
    if (dlnow != x->last_dl) {
        x->last_dl = dlnow;
        x->last_byte = now;
    } else if (now - x->last_byte > x->c->stall_s) {
        x->stalled = 1;
        return 1;
    }
    return 0;
}

/* --- one attempt --- */

typedef enum attempt_result { ATT_DONE, ATT_RETRY, ATT_FAIL } attempt_result;

static struct curl_slist *build_headers(http_client *c, const char *url)
{
    struct curl_slist *hl = curl_slist_append(NULL, "Accept-Encoding: identity");
    if (hl && c->token && http_is_endpoint_url(c, url)) {
        size_t n = strlen(c->token) + 32;
        char *h = malloc(n);
        if (h) {
            snprintf(h, n, "Authorization: Bearer %s", c->token);
            struct curl_slist *t = curl_slist_append(hl, h);
            free(h);
            hl = t ? t : hl;
        }
    }
    return hl;
}

static void setup_handle(CURL *h, http_xfer *x, struct curl_slist *hl, double time_left,
                         char *range)
{
    http_client *c = x->c;
    const http_request *rq = x->rq;
    curl_easy_setopt(h, CURLOPT_URL, x->url);
    curl_easy_setopt(h, CURLOPT_SHARE, c->share);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, c->user_agent);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)(c->connect_s * 1000));
    double t = c->deadline_s < time_left ? c->deadline_s : time_left;
    if (t < 0.001) t = 0.001; /* a negative value would be refused, leaving no limit at all */
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)(t * 1000) + 1);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, x);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    if (rq->head) curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    if (rq->len > 0) {
        snprintf(range, 64, "%" PRId64 "-%" PRId64, rq->off, rq->off + rq->len - 1);
        curl_easy_setopt(h, CURLOPT_RANGE, range);
    }
}

/* Map a failed transfer to a cause; -1 when it is permanent (bad URL, TLS verification). */
static int curl_cause(const http_xfer *x, CURLcode cc)
{
    if (x->stalled) return CAUSE_STALL;
    if (x->bad_range || x->too_long) return CAUSE_BAD_RANGE;
    switch (cc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return CAUSE_DNS;
    case CURLE_COULDNT_CONNECT:
        return CAUSE_CONNECT;
    case CURLE_OPERATION_TIMEDOUT:
        return x->status ? CAUSE_DEADLINE : CAUSE_CONNECT;
    case CURLE_PARTIAL_FILE:
        return CAUSE_TRUNCATED;
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_WEIRD_SERVER_REPLY:
        return CAUSE_RESET;
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
        return -1;
    default:
        return CAUSE_OTHER;
    }
}

/* A complete answer whose body does not match what it announced. */
static int body_incomplete(const http_xfer *x)
{
    const http_request *rq = x->rq;
    if (rq->head) return 0;
    if (rq->len > 0) return x->status == 206 && x->got != rq->len;
    int64_t cl = x->rs->content_length;
    return cl >= 0 && x->status >= 200 && x->status < 300 && (int64_t)x->body_len != cl;
}

static int is_redirect(long s)
{
    return s == 301 || s == 302 || s == 303 || s == 307 || s == 308;
}

/* The loop's state across attempts of one logical request. */
typedef struct http_run {
    http_client *c;
    const http_request *rq;
    char *url;  /* current URL (changes on redirects) */
    int bucket; /* current bucket (a cross-host redirect goes to the CDN's) */
    int redirects;
    int faults; /* consecutive transient faults (backoff exponent) */
    int attempts;
    double start, deadline; /* rl_now() seconds */
    http_cause last;
    int unreachable_logged; /* the first connection failure of this request is logged */
    char detail[256];
} http_run;

static void count_retry(http_run *r, http_cause cause)
{
    pthread_mutex_lock(&r->c->st_mu);
    r->c->st[r->bucket].retries[cause]++;
    pthread_mutex_unlock(&r->c->st_mu);
    r->last = cause;
}

static attempt_result classify(http_run *r, http_xfer *x, CURLcode cc, int *err)
{
    const http_request *rq = r->rq;
    if (x->cancelled) {
        *err = -EINTR;
        return ATT_FAIL;
    }
    if (x->too_big) {
        log_warn("%s: %s answered a body over %zu bytes; refused", rq->what ? rq->what : r->url,
                 r->url, x->body_max);
        *err = -EFBIG;
        return ATT_FAIL;
    }
    if (cc != CURLE_OK || body_incomplete(x)) {
        int cause = cc != CURLE_OK ? curl_cause(x, cc) : CAUSE_TRUNCATED;
        snprintf(r->detail, sizeof r->detail, "%s (HTTP %ld, %s)",
                 cause < 0 ? "permanent transfer error" : cause_names[cause], x->status,
                 cc != CURLE_OK ? curl_easy_strerror(cc) : "body length differs from announced");
        if (cause < 0) {
            log_error("%s: %s: %s", rq->what ? rq->what : r->url, r->url, r->detail);
            *err = -EIO;
            return ATT_FAIL;
        }
        count_retry(r, (http_cause)cause);
        if ((cause == CAUSE_CONNECT || cause == CAUSE_DNS) && !r->unreachable_logged) {
            r->unreachable_logged = 1; /* a dead endpoint otherwise looks like a silent hang */
            log_warn("%s: cannot reach %s (%s); retrying for up to --max-wait (%.0f s): cached "
                     "repos are served, others wait; check HF_ENDPOINT / --endpoint, or use "
                     "--offline",
                     rq->what ? rq->what : r->url, r->url, curl_easy_strerror(cc),
                     r->c->max_wait_s);
        }
        return ATT_RETRY;
    }
    if (rq->len > 0 && x->status >= 200 && x->status < 300 && x->status != 206) {
        snprintf(r->detail, sizeof r->detail, "HTTP %ld to a range request", x->status);
        count_retry(r, CAUSE_BAD_RANGE);
        return ATT_RETRY;
    }
    if (x->status == 429) {
        snprintf(r->detail, sizeof r->detail, "HTTP 429 Too Many Requests");
        count_retry(r, CAUSE_RATE_LIMITED);
        rl_pause(r->c->rl, r->bucket, &x->rlh);
        return ATT_RETRY;
    }
    if (x->status >= 500 || x->status == 408) {
        snprintf(r->detail, sizeof r->detail, "HTTP %ld from the server", x->status);
        count_retry(r, CAUSE_SERVER_ERROR);
        return ATT_RETRY;
    }
    rl_success(r->c->rl, r->bucket);
    return ATT_DONE;
}

static attempt_result attempt(http_run *r, http_response *rs, int *err)
{
    http_client *c = r->c;
    const http_request *rq = r->rq;
    http_xfer x = {.c = c, .rq = rq, .rs = rs, .url = r->url, .last_byte = mono_now()};
    x.body_max = rq->max_body ? rq->max_body : HTTP_DEFAULT_MAX_BODY;
    xfer_clear_headers(&x);
    CURL *h = pool_get(c);
    struct curl_slist *hl = build_headers(c, r->url);
    if (!h || !hl) {
        if (h) pool_put(c, h);
        curl_slist_free_all(hl);
        *err = -ENOMEM;
        return ATT_FAIL;
    }
    char range[64];
    setup_handle(h, &x, hl, r->deadline - rl_now(), range);
    pthread_mutex_lock(&c->st_mu);
    c->st[r->bucket].requests++;
    pthread_mutex_unlock(&c->st_mu);
    r->attempts++;
    CURLcode cc = curl_easy_perform(h);
    pool_put(c, h);
    curl_slist_free_all(hl);
    rl_report(c->rl, r->bucket, x.status ? &x.rlh : NULL);
    pthread_mutex_lock(&c->st_mu);
    c->st[r->bucket].bytes += (uint64_t)(rq->len > 0 ? x.got : (int64_t)x.body_len);
    pthread_mutex_unlock(&c->st_mu);
    attempt_result res = classify(r, &x, cc, err);
    if (res == ATT_DONE) {
        rs->status = x.status;
        rs->body = rq->len > 0 || rq->head ? NULL : x.body;
        rs->body_len = rs->body ? x.body_len : 0;
        if (rs->body)
            x.body = NULL;
        else if (rq->len <= 0 && !rq->head) {
            rs->body = calloc(1, 1); /* an empty body is still a NUL-terminated string */
            if (!rs->body) res = ATT_FAIL, *err = -ENOMEM;
        }
        if (rq->len > 0 && x.status == 206 && !range_matches(&x)) {
            snprintf(r->detail, sizeof r->detail, "wrong Content-Range");
            count_retry(r, CAUSE_BAD_RANGE);
            res = ATT_RETRY;
        }
    }
    free(x.body);
    return res;
}

/* Sleep up to s seconds, polling the cancel callback; -EINTR when cancelled. */
static int wait_cancellable(const http_request *rq, double s)
{
    double end = mono_now() + s;
    for (;;) {
        if (rq->cancelled && rq->cancelled(rq->cancel_arg)) return -EINTR;
        double left = end - mono_now();
        if (left <= 0) return 0;
        double d = left < HTTP_SLICE_S ? left : HTTP_SLICE_S;
        struct timespec ts = {0, (long)(d * 1e9)};
        nanosleep(&ts, NULL);
    }
}

static void log_final_failure(const http_run *r, const char *why)
{
    const http_request *rq = r->rq;
    const char *advice =
        r->last == CAUSE_RATE_LIMITED
            ? "the Hub kept refusing for rate limits: set HF_TOKEN for a higher quota, pace with "
              "--rate, use --offline for cached repos, space runs with hfsweep --delay, or raise "
              "--max-wait"
            : "check the network and --endpoint, raise --max-wait, or use --offline to serve "
              "what is cached";
    if (rq->len > 0)
        log_error("read failed: %s at offset %" PRId64 " (%" PRId64 " bytes, %s bucket): %s; last "
                  "fault: %s; %d attempts in %.1f s. %s",
                  rq->what ? rq->what : r->url, rq->off, rq->len, rl_bucket_name(r->bucket), why,
                  r->detail[0] ? r->detail : "none", r->attempts, rl_now() - r->start, advice);
    else
        log_error("request failed: %s (%s, %s bucket): %s; last fault: %s; %d attempts in %.1f s. "
                  "%s",
                  rq->what ? rq->what : "-", r->url, rl_bucket_name(r->bucket), why,
                  r->detail[0] ? r->detail : "none", r->attempts, rl_now() - r->start, advice);
    pthread_mutex_lock(&r->c->st_mu);
    r->c->st[r->bucket].failures++;
    pthread_mutex_unlock(&r->c->st_mu);
}

/* Backoff after a transient fault: full jitter, exponent grows with consecutive faults. */
static int backoff(http_run *r)
{
    double cap = HTTP_RETRY_BASE_S * (double)(1u << (r->faults < 16 ? r->faults : 16));
    if (cap > HTTP_RETRY_CAP_S) cap = HTTP_RETRY_CAP_S;
    r->faults++;
    double w = cap * uniform01();
    double left = r->deadline - rl_now();
    if (left <= 0) return -ETIMEDOUT;
    int rc = wait_cancellable(r->rq, w < left ? w : left);
    if (rc) return rc;
    return w < left ? 0 : -ETIMEDOUT;
}

static int check_request(const http_request *rq)
{
    if (!rq || !rq->url || rq->bucket < 0 || rq->bucket >= HTTP_NBUCKETS || rq->off < 0 ||
        rq->len < 0 || (rq->len > 0 && (!rq->buf || rq->head)))
        return -EINVAL;
    return 0;
}

/* A redirect to follow: switch URL (and bucket when it leaves the endpoint's host). */
static int follow_redirect(http_run *r, http_response *rs)
{
    if (++r->redirects > HTTP_MAX_REDIRECTS) {
        log_error("%s: %s: more than %d redirects", r->rq->what ? r->rq->what : "-", r->url,
                  HTTP_MAX_REDIRECTS);
        return -EIO;
    }
    char *next = strdup(rs->location);
    if (!next) return -ENOMEM;
    free(r->url);
    r->url = next;
    if (!http_is_endpoint_url(r->c, next)) r->bucket = HTTP_BUCKET_CDN;
    r->faults = 0;
    return 0;
}

int http_do(http_client *c, const http_request *rq, http_response *rs)
{
    resp_reset(rs);
    int rc = check_request(rq);
    if (rc) return rc;
    if (c->offline) return -ENETDOWN;
    http_run r = {.c = c, .rq = rq, .bucket = (int)rq->bucket, .start = rl_now()};
    r.deadline = r.start + c->max_wait_s;
    r.url = strdup(rq->url);
    if (!r.url) return -ENOMEM;
    for (;;) {
        double waited;
        rc = rl_take(c->rl, r.bucket, r.deadline, rq->cancelled, rq->cancel_arg, &waited);
        if (rc == -ETIMEDOUT) {
            log_final_failure(&r, "gave up waiting for the rate-limit pause (--max-wait)");
            rc = -EIO;
            break;
        }
        if (rc) break;
        attempt_result a = attempt(&r, rs, &rc);
        if (a == ATT_FAIL) break;
        if (a == ATT_DONE) {
            if (rq->follow && is_redirect(rs->status) && rs->location) {
                if ((rc = follow_redirect(&r, rs)) != 0) break;
                continue;
            }
            free(rs->effective_url);
            rs->effective_url = r.url;
            r.url = NULL;
            rc = 0;
            break;
        }
        if (r.last != CAUSE_RATE_LIMITED && (rc = backoff(&r)) != 0) {
            if (rc == -ETIMEDOUT) {
                log_final_failure(&r, "transient faults until --max-wait ran out");
                rc = -EIO;
            }
            break;
        }
    }
    free(r.url);
    if (rc) {
        http_response_free(rs);
        rs->status = 0;
    }
    return rc;
}

/* --- stats --- */

int http_stats_json(http_client *c, char *buf, size_t cap)
{
    size_t n = 0;
#define OUT(...)                                                                                   \
    do {                                                                                           \
        int k_ = snprintf(buf + n, n < cap ? cap - n : 0, __VA_ARGS__);                            \
        if (k_ < 0 || (n += (size_t)k_) >= cap) return -ENOSPC;                                    \
    } while (0)
    if (!buf || cap == 0) return -ENOSPC;
    OUT("{\"offline\":%s,\"buckets\":{", c->offline ? "true" : "false");
    for (int b = 0; b < HTTP_NBUCKETS; b++) {
        rl_bucket_stats rs;
        rl_stats(c->rl, b, &rs);
        pthread_mutex_lock(&c->st_mu);
        http_bucket_stats st = c->st[b];
        pthread_mutex_unlock(&c->st_mu);
        double now = rl_now();
        OUT("%s\"%s\":{\"requests\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"failures\":%" PRIu64
            ",\"quota\":%ld,\"window_s\":%.0f,\"window_requests\":%ld,\"remaining\":%ld,"
            "\"429s\":%ld,\"paused_s\":%.1f,\"paused_for_s\":%.1f,\"retries\":{",
            b ? "," : "", rl_bucket_name(b), st.requests, st.bytes, st.failures, rs.quota,
            rs.window_s, rs.window_requests, rs.remaining, rs.n429, rs.paused_s,
            rs.paused_until > now ? rs.paused_until - now : 0.0);
        for (int k = 0; k < CAUSE_N; k++)
            OUT("%s\"%s\":%" PRIu64, k ? "," : "", cause_names[k], st.retries[k]);
        OUT("}}");
    }
    OUT("}}");
#undef OUT
    return (int)n;
}
