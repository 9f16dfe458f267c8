/* test_http.c — http_do() against the local Hub server: the contract on the happy path (headers,
 * redirects, ranges, token scope, caps), then every injected fault, each read checked byte for
 * byte against the served file.  Usage: test_http HUB_URL ROOT_DIR [GROUP] */
#include "http.h"
#include "log.h"
#include "nettest.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int nt_failures;

#define BIG_SIZE 3145728

typedef struct ctx {
    const char *hub, *root;
    unsigned char *big; /* org/repo/big.bin as served */
    size_t big_len;
} ctx;

static http_client *client(const ctx *t, const char *token, double max_wait, double stall)
{
    http_opts o = {.endpoint = t->hub,
                   .token = token,
                   .max_wait_s = max_wait,
                   .stall_timeout_s = stall,
                   .connect_timeout_s = 2};
    http_client *c = NULL;
    int rc = http_client_new(&o, &c);
    CHECK(rc == 0, "http_client_new: %d", rc);
    return c;
}

static void url_of(char *out, size_t cap, const ctx *t, const char *path)
{
    snprintf(out, cap, "%s%s", t->hub, path);
}

/* Ranged GET of org/repo/big.bin through the redirect; 0 when the bytes are right. */
static int read_big(http_client *c, const ctx *t, int64_t off, int64_t len, long *status)
{
    char url[512];
    url_of(url, sizeof url, t, "/org/repo/resolve/main/big.bin");
    unsigned char *buf = malloc((size_t)len);
    http_request rq = {.url = url,
                       .bucket = HTTP_BUCKET_RESOLVE,
                       .follow = 1,
                       .off = off,
                       .len = len,
                       .expect_total = BIG_SIZE,
                       .buf = buf,
                       .what = "org/repo:big.bin"};
    http_response rs;
    int rc = http_do(c, &rq, &rs);
    *status = rs.status;
    if (rc == 0 && rs.status == 206 && memcmp(buf, t->big + off, (size_t)len) != 0) rc = -EILSEQ;
    http_response_free(&rs);
    free(buf);
    return rc;
}

static void test_api_get(const ctx *t)
{
    http_client *c = client(t, NULL, 30, 5);
    char url[512];
    url_of(url, sizeof url, t, "/api/models/org/repo");
    http_request rq = {.url = url, .bucket = HTTP_BUCKET_API, .expect_total = -1};
    http_response rs;
    int rc = http_do(c, &rq, &rs);
    CHECK(rc == 0 && rs.status == 200, "api GET rc %d status %ld", rc, rs.status);
    CHECK(rs.body && strstr(rs.body, "\"siblings\""), "api body: %s", rs.body ? rs.body : "-");
    CHECK(rs.body && strlen(rs.body) == rs.body_len, "body NUL terminated at body_len");
    CHECK(rs.content_length == (int64_t)rs.body_len, "content_length %lld body_len %zu",
          (long long)rs.content_length, rs.body_len);
    CHECK(rs.content_type && strstr(rs.content_type, "json"), "content_type %s",
          rs.content_type ? rs.content_type : "-");
    CHECK(rs.effective_url && strcmp(rs.effective_url, url) == 0, "effective_url");
    http_response_free(&rs);

    /* a cap below the body size is -EFBIG, never a cut body */
    rq.max_body = 10;
    rc = http_do(c, &rq, &rs);
    CHECK(rc == -EFBIG, "max_body 10: rc %d", rc);
    http_response_free(&rs);

    /* Link rel=next on a paged tree listing, made absolute */
    CHECK(nt_control(t->hub, "{\"cmd\":\"config\",\"page_size\":1}") == 0, "page_size");
    url_of(url, sizeof url, t, "/api/models/org/repo/tree/main");
    rq = (http_request){.url = url, .bucket = HTTP_BUCKET_API, .expect_total = -1};
    rc = http_do(c, &rq, &rs);
    CHECK(rc == 0 && rs.status == 200, "tree rc %d status %ld", rc, rs.status);
    CHECK(rs.link_next && strncmp(rs.link_next, t->hub, strlen(t->hub)) == 0 &&
              strstr(rs.link_next, "/tree/main"),
          "link_next %s", rs.link_next ? rs.link_next : "(null)");
    http_response_free(&rs);
    CHECK(nt_control(t->hub, "{\"cmd\":\"config\",\"page_size\":1000}") == 0, "page_size");

    /* a missing file is a definitive 404 with the Hub's error code and the commit */
    url_of(url, sizeof url, t, "/org/repo/resolve/main/missing.txt");
    rq = (http_request){.url = url, .bucket = HTTP_BUCKET_RESOLVE, .head = 1, .expect_total = -1};
    rc = http_do(c, &rq, &rs);
    CHECK(rc == 0 && rs.status == 404, "missing rc %d status %ld", rc, rs.status);
    CHECK(rs.error_code && strcmp(rs.error_code, "EntryNotFound") == 0, "error_code %s",
          rs.error_code ? rs.error_code : "-");
    CHECK(rs.repo_commit && strlen(rs.repo_commit) == 40, "404 carries X-Repo-Commit");
    http_response_free(&rs);

    /* bad requests */
    rq = (http_request){.url = url, .bucket = HTTP_BUCKET_RESOLVE, .len = 10, .expect_total = -1};
    CHECK(http_do(c, &rq, &rs) == -EINVAL, "ranged GET without buf is -EINVAL");
    http_response_free(&rs);
    http_client_free(c);

    http_opts o = {.endpoint = t->hub, .offline = 1};
    CHECK(http_client_new(&o, &c) == 0, "offline client");
    rq = (http_request){.url = url, .bucket = HTTP_BUCKET_API, .expect_total = -1};
    size_t before = nt_log_len(t->hub);
    CHECK(http_do(c, &rq, &rs) == -ENETDOWN, "offline is -ENETDOWN");
    CHECK(nt_log_len(t->hub) == before, "offline sends nothing");
    http_response_free(&rs);
    http_client_free(c);
}

static void test_redirect_and_token(const ctx *t)
{
    http_client *c = client(t, "hf_secret", 30, 5);
    char url[512];
    url_of(url, sizeof url, t, "/org/repo/resolve/main/big.bin");
    size_t mark = nt_log_len(t->hub);

    /* follow == 0: the 302 itself, with the LFS metadata and an absolute Location */
    http_request rq = {.url = url, .bucket = HTTP_BUCKET_RESOLVE, .head = 1, .expect_total = -1};
    http_response rs;
    int rc = http_do(c, &rq, &rs);
    CHECK(rc == 0 && rs.status == 302, "HEAD rc %d status %ld", rc, rs.status);
    CHECK(rs.location && strncmp(rs.location, "http://", 7) == 0, "location %s",
          rs.location ? rs.location : "-");
    CHECK(rs.linked_size == BIG_SIZE, "linked_size %lld", (long long)rs.linked_size);
    CHECK(rs.linked_etag && strlen(rs.linked_etag) == 64, "linked_etag %s",
          rs.linked_etag ? rs.linked_etag : "-");
    CHECK(rs.repo_commit && strlen(rs.repo_commit) == 40, "repo_commit");
    CHECK(rs.etag && rs.etag[0] != '"', "etag without quotes");
    http_response_free(&rs);

    /* follow: ranged bytes from the CDN, checked against the file */
    long st;
    rc = read_big(c, t, 1000000, 1048576, &st);
    CHECK(rc == 0 && st == 206, "ranged read rc %d status %ld", rc, st);
    rc = read_big(c, t, BIG_SIZE - 10, 10, &st);
    CHECK(rc == 0 && st == 206, "tail read rc %d status %ld", rc, st);

    /* the token went to the Hub, never to the CDN */
    json_t *log = nt_log(t->hub, mark);
    int hub_auth = 0, cdn_req = 0, cdn_auth = 0;
    size_t i;
    json_t *e;
    json_array_foreach(log, i, e)
    {
        int cdn = strcmp(json_string_value(json_object_get(e, "listener")), "cdn") == 0;
        int auth = json_is_true(json_object_get(e, "auth"));
        cdn_req += cdn;
        cdn_auth += cdn && auth;
        hub_auth += !cdn && auth;
    }
    json_decref(log);
    CHECK(hub_auth >= 3 && cdn_req == 2 && cdn_auth == 0, "hub auth %d, cdn %d, cdn auth %d",
          hub_auth, cdn_req, cdn_auth);
    /* a relative redirect stays on the endpoint: resolved against the request URL, with the
     * token (private repos need it there) */
    CHECK(nt_control(t->hub, "{\"cmd\":\"config\",\"resolve_cache\":true}") == 0, "config");
    size_t small_len;
    unsigned char *small = nt_read_file(t->root, "org/repo/small.bin", &small_len);
    unsigned char part[1000];
    url_of(url, sizeof url, t, "/org/repo/resolve/main/small.bin");
    mark = nt_log_len(t->hub);
    rq = (http_request){.url = url,
                        .bucket = HTTP_BUCKET_RESOLVE,
                        .follow = 1,
                        .off = 5000,
                        .len = sizeof part,
                        .expect_total = (int64_t)small_len,
                        .buf = part};
    rc = http_do(c, &rq, &rs);
    CHECK(rc == 0 && rs.status == 206 && small && memcmp(part, small + 5000, sizeof part) == 0,
          "relative redirect: rc %d status %ld", rc, rs.status);
    CHECK(rs.effective_url && strstr(rs.effective_url, "/api/resolve-cache/"), "effective %s",
          rs.effective_url ? rs.effective_url : "-");
    http_response_free(&rs);
    free(small);
    log = nt_log(t->hub, mark);
    int rc_auth = 0, hops = 0;
    json_array_foreach(log, i, e)
    {
        hops++;
        rc_auth += strstr(json_string_value(json_object_get(e, "path")), "/api/resolve-cache/") &&
                   json_is_true(json_object_get(e, "auth"));
    }
    json_decref(log);
    CHECK(hops == 2 && rc_auth == 1, "relative redirect: %d requests, %d with the token", hops,
          rc_auth);
    nt_control(t->hub, "{\"cmd\":\"config\",\"resolve_cache\":false}");

    CHECK(http_is_endpoint_url(c, t->hub), "endpoint is endpoint");
    CHECK(!http_is_endpoint_url(c, "http://example.org/x"), "other host");
    http_client_free(c);

    /* a wrong total is a fault, never data: with max_wait 1.5 s it ends in -EIO */
    c = client(t, NULL, 1.5, 5);
    unsigned char buf[16];
    rq = (http_request){.url = url,
                        .bucket = HTTP_BUCKET_RESOLVE,
                        .follow = 1,
                        .off = 0,
                        .len = 16,
                        .expect_total = BIG_SIZE + 1,
                        .buf = buf,
                        .what = "wrong"};
    rc = http_do(c, &rq, &rs);
    CHECK(rc == -EIO, "wrong total: rc %d", rc);
    http_response_free(&rs);
    http_client_free(c);
}

/* One injected fault, then a ranged read that must still return the right bytes. */
static void fault_read(const ctx *t, const char *fault, const char *cause)
{
    http_client *c = client(t, NULL, 60, 1.5);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "{\"cmd\":\"fault\",%s}", fault);
    CHECK(nt_control(t->hub, cmd) == 0, "install %s", fault);
    double t0 = nt_now();
    long st;
    int rc = read_big(c, t, 4096, 2 * 1048576, &st);
    CHECK(rc == 0 && st == 206, "fault %s: rc %d status %ld", fault, rc, st);
    char stats[4096];
    int n = http_stats_json(c, stats, sizeof stats);
    CHECK(n > 0, "stats");
    json_t *js = json_loads(stats, 0, NULL);
    long retries = 0;
    const char *bk;
    json_t *b;
    json_object_foreach(json_object_get(js, "buckets"), bk, b) retries +=
        json_integer_value(json_object_get(json_object_get(b, "retries"), cause));
    CHECK(retries >= 1, "fault %s: retries by %s = %ld; stats %s", fault, cause, retries, stats);
    json_decref(js);
    fprintf(stderr, "fault %-60s ok in %.2f s\n", fault, nt_now() - t0);
    nt_control(t->hub, "{\"cmd\":\"clear_faults\"}");
    http_client_free(c);
}

static void test_faults(const ctx *t)
{
    fault_read(t, "\"kind\":\"status\",\"status\":503,\"bucket\":\"resolvers\",\"count\":3",
               "server_error");
    fault_read(t, "\"kind\":\"status\",\"status\":502,\"listener\":\"cdn\",\"count\":2",
               "server_error");
    fault_read(t, "\"kind\":\"reset\",\"after\":100000,\"listener\":\"cdn\",\"count\":2", "reset");
    fault_read(t, "\"kind\":\"truncate\",\"after\":5000,\"listener\":\"cdn\",\"count\":1",
               "truncated");
    fault_read(t, "\"kind\":\"wrong_length\",\"delta\":100,\"listener\":\"cdn\",\"count\":1",
               "truncated");
    fault_read(t, "\"kind\":\"wrong_length\",\"delta\":-100,\"listener\":\"cdn\",\"count\":1",
               "truncated");
    fault_read(t, "\"kind\":\"hang\",\"seconds\":20,\"listener\":\"cdn\",\"count\":1", "stall");
    fault_read(t, "\"kind\":\"hang\",\"seconds\":20,\"bucket\":\"resolvers\",\"count\":1", "stall");

    /* a longer body than announced: the announced bytes are right, the rest is dropped */
    http_client *c = client(t, NULL, 30, 2);
    CHECK(nt_control(t->hub, "{\"cmd\":\"fault\",\"kind\":\"long_body\",\"extra\":5000,"
                             "\"listener\":\"cdn\",\"count\":1}") == 0,
          "long_body");
    long st;
    CHECK(read_big(c, t, 0, 65536, &st) == 0 && st == 206, "long body read");
    CHECK(read_big(c, t, 65536, 65536, &st) == 0 && st == 206, "read after long body");

    /* an expired CDN URL answers 403: returned to the caller so that it resolves again */
    CHECK(nt_control(t->hub, "{\"cmd\":\"fault\",\"kind\":\"cdn_refuse\",\"count\":1}") == 0,
          "cdn_refuse");
    int rc = read_big(c, t, 0, 4096, &st);
    CHECK(rc == 0 && st == 403, "expired CDN URL: rc %d status %ld", rc, st);
    CHECK(read_big(c, t, 0, 4096, &st) == 0 && st == 206, "after re-resolve");
    nt_control(t->hub, "{\"cmd\":\"clear_faults\"}");
    http_client_free(c);
}

/* --- rate limits --- */

typedef struct api_run {
    const ctx *t;
    http_client *c;
    int per_thread;
    int errors;
    pthread_mutex_t mu;
} api_run;

static int api_get(const ctx *t, http_client *c, const char *repo)
{
    char url[512];
    snprintf(url, sizeof url, "%s/api/models/%s", t->hub, repo);
    http_request rq = {.url = url, .bucket = HTTP_BUCKET_API, .expect_total = -1, .what = repo};
    http_response rs;
    int rc = http_do(c, &rq, &rs);
    if (rc == 0 && (rs.status != 200 || !rs.body || !strstr(rs.body, "siblings"))) rc = -EPROTO;
    http_response_free(&rs);
    return rc;
}

static void *api_worker(void *arg)
{
    api_run *r = arg;
    for (int i = 0; i < r->per_thread; i++) {
        int rc = api_get(r->t, r->c, i % 2 ? "org/repo" : "org/other");
        if (rc) {
            pthread_mutex_lock(&r->mu);
            r->errors++;
            pthread_mutex_unlock(&r->mu);
        }
    }
    return NULL;
}

/* nthreads × per_thread API GETs on one client; returns the number that failed. */
static int api_burst(const ctx *t, http_client *c, int nthreads, int per_thread)
{
    api_run r = {.t = t, .c = c, .per_thread = per_thread};
    pthread_mutex_init(&r.mu, NULL);
    pthread_t th[16];
    for (int i = 0; i < nthreads; i++)
        pthread_create(&th[i], NULL, api_worker, &r);
    for (int i = 0; i < nthreads; i++)
        pthread_join(th[i], NULL);
    pthread_mutex_destroy(&r.mu);
    return r.errors;
}

static int count_status(json_t *log, const char *bucket, long status)
{
    int n = 0;
    size_t i;
    json_t *e;
    json_array_foreach(log, i, e)
    {
        const char *b = json_string_value(json_object_get(e, "bucket"));
        n += b && strcmp(b, bucket) == 0 &&
             json_integer_value(json_object_get(e, "status")) == status;
    }
    return n;
}

static void set_quota(const ctx *t, const char *quota, const char *headers)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "{\"cmd\":\"quota\",\"quota\":\"%s\",\"headers\":\"%s\"}", quota,
             headers);
    CHECK(nt_control(t->hub, cmd) == 0, "quota %s", quota);
}

/* One 429 in a given header form, then success; the wait must match what the form said. */
static void form_case(const ctx *t, const char *form, double min_s, double max_s)
{
    http_client *c = client(t, NULL, 60, 5);
    if (strcmp(form, "hostile") == 0) {
        /* every answer says t=999999999: another client spends the 2-request budget, so this
         * one (which knows nothing yet) meets the 429; it must wait one 3 s window, not 30 years */
        set_quota(t, "api=2/3", "hostile");
        http_client *other = client(t, NULL, 60, 5);
        CHECK(api_get(t, other, "org/other") == 0 && api_get(t, other, "org/other") == 0,
              "budget spent");
        http_client_free(other);
    } else {
        set_quota(t, "", "ratelimit"); /* no quota: the fault's own headers */
        char cmd[256];
        snprintf(cmd, sizeof cmd,
                 "{\"cmd\":\"fault\",\"kind\":\"status\",\"status\":429,\"t\":2,\"headers\":"
                 "\"%s\",\"bucket\":\"api\",\"count\":1}",
                 form);
        CHECK(nt_control(t->hub, cmd) == 0, "fault");
    }
    double t0 = nt_now();
    int rc = api_get(t, c, "org/repo");
    double el = nt_now() - t0;
    CHECK(rc == 0, "429 form %s: rc %d", form, rc);
    CHECK(el >= min_s && el <= max_s, "429 form %s: waited %.2f s, expected [%.1f, %.1f]", form, el,
          min_s, max_s);
    fprintf(stderr, "429 form %-16s waited %.2f s\n", form, el);
    char stats[4096];
    http_stats_json(c, stats, sizeof stats);
    CHECK(strstr(stats, "\"429s\":1,"), "one 429 in stats: %s", stats);
    http_client_free(c);
    nt_control(t->hub, "{\"cmd\":\"clear_faults\"}");
}

static int cancel_at(void *arg)
{
    return nt_now() > *(double *)arg;
}

static void test_rate_forms(const ctx *t)
{
    form_case(t, "ratelimit", 2.0, 4.5);        /* t=2 plus margin and jitter */
    form_case(t, "retry-after", 2.0, 4.5);      /* Retry-After: 2 */
    form_case(t, "retry-after-date", 1.0, 5.0); /* an HTTP date 2 s ahead (whole seconds) */
    form_case(t, "none", 0.0, 4.5);             /* backoff, full jitter under 4 s */
    form_case(t, "hostile", 0.5, 5.0);          /* t=999999999 cut to the 3 s window */

    /* --max-wait 5 with a permanent 429: -EIO after about 5 s, and the client still works */
    set_quota(t, "api=1000/4", "ratelimit");
    nt_control(t->hub, "{\"cmd\":\"fault\",\"kind\":\"status\",\"status\":429,\"t\":2,"
                       "\"bucket\":\"api\",\"repo\":\"org/repo\",\"count\":-1}");
    http_client *c = client(t, NULL, 5, 5);
    double t0 = nt_now();
    int rc = api_get(t, c, "org/repo");
    double el = nt_now() - t0;
    CHECK(rc == -EIO && el > 4.5 && el < 7.5, "permanent 429: rc %d after %.2f s", rc, el);
    nt_control(t->hub, "{\"cmd\":\"clear_faults\"}");
    CHECK(api_get(t, c, "org/other") == 0, "other repos still served");
    http_client_free(c);

    /* a reader waiting out a pause can be interrupted */
    set_quota(t, "api=1000/60", "ratelimit");
    nt_control(t->hub, "{\"cmd\":\"fault\",\"kind\":\"status\",\"status\":429,\"t\":30,"
                       "\"bucket\":\"api\",\"count\":1}");
    c = client(t, NULL, 60, 5);
    double when = nt_now() + 0.5;
    char url[512];
    url_of(url, sizeof url, t, "/api/models/org/repo");
    http_request rq = {.url = url,
                       .bucket = HTTP_BUCKET_API,
                       .expect_total = -1,
                       .cancelled = cancel_at,
                       .cancel_arg = &when};
    http_response rs;
    t0 = nt_now();
    rc = http_do(c, &rq, &rs);
    el = nt_now() - t0;
    CHECK(rc == -EINTR && el < 1.5, "cancel during pause: rc %d after %.2f s", rc, el);
    http_response_free(&rs);
    http_client_free(c);
    nt_control(t->hub, "{\"cmd\":\"clear_faults\"}");
    set_quota(t, "", "ratelimit");
}

static void test_shared_pause(const ctx *t)
{
    /* the 11th API request gets a 429 with t=2: no thread may send before it has passed */
    nt_control(t->hub, "{\"cmd\":\"fault\",\"kind\":\"status\",\"status\":429,\"t\":2,"
                       "\"bucket\":\"api\",\"skip\":10,\"count\":1}");
    http_client *c = client(t, NULL, 60, 5);
    size_t mark = nt_log_len(t->hub);
    int errors = api_burst(t, c, 8, 6);
    CHECK(errors == 0, "%d of 48 reads failed", errors);
    json_t *log = nt_log(t->hub, mark);
    double t429 = -1;
    size_t i;
    json_t *e;
    json_array_foreach(log, i, e) if (json_integer_value(json_object_get(e, "status")) == 429)
        t429 = json_real_value(json_object_get(e, "time"));
    CHECK(t429 > 0, "the 429 was answered");
    int during = 0;
    json_array_foreach(log, i, e)
    {
        double tm = json_real_value(json_object_get(e, "time"));
        during += tm > t429 + 0.15 && tm < t429 + 2.0;
    }
    CHECK(during == 0, "%d requests sent during the 2 s pause", during);
    CHECK(count_status(log, "api", 429) == 1, "one 429");
    json_decref(log);
    http_client_free(c);
    nt_control(t->hub, "{\"cmd\":\"clear_faults\"}");
}

/* No request may reach the server inside a window in which it already answered 429. */
static int requests_before_reset(json_t *log, double start, double w)
{
    int bad = 0;
    size_t i, j;
    json_t *e, *f;
    json_array_foreach(log, i, e)
    {
        if (json_integer_value(json_object_get(e, "status")) != 429) continue;
        double t429 = json_real_value(json_object_get(e, "time"));
        double reset = start + (double)((long)((t429 - start) / w) + 1) * w;
        json_array_foreach(log, j, f)
        {
            double tm = json_real_value(json_object_get(f, "time"));
            bad += tm > t429 + 0.2 && tm < reset - 0.2;
        }
    }
    return bad;
}

static void test_pacing(const ctx *t)
{
    /* the server's quota, learned from its headers: 40 requests at 10/3 s, no 429 */
    double start = nt_now();
    set_quota(t, "api=10/3", "ratelimit");
    size_t mark = nt_log_len(t->hub);
    http_client *c = client(t, NULL, 60, 5);
    int errors = api_burst(t, c, 8, 5);
    double el = nt_now() - start;
    json_t *log = nt_log(t->hub, mark);
    int n429 = count_status(log, "api", 429);
    CHECK(errors == 0 && n429 == 0, "pacing: %d errors, %d 429s", errors, n429);
    /* 40 requests need 4 windows: the last one opens 9 s after the start */
    CHECK(el > 8.5 && el < 14.0, "pacing: 40 requests at 10/3 s took %.2f s", el);
    fprintf(stderr, "pacing: 40 requests, 10 per 3 s window: %.2f s (quota minimum 9 s), 0 429s\n",
            el);
    json_decref(log);
    http_client_free(c);

    /* the server is tighter than the client's --rate: a few 429s, then it learns; every read
     * succeeds and nothing is sent to the bucket before the reset it was told */
    start = nt_now();
    set_quota(t, "api=5/3", "ratelimit");
    mark = nt_log_len(t->hub);
    http_opts o = {.endpoint = t->hub, .rate = "api=100/3", .max_wait_s = 60};
    CHECK(http_client_new(&o, &c) == 0, "client");
    errors = api_burst(t, c, 8, 3);
    log = nt_log(t->hub, mark);
    n429 = count_status(log, "api", 429);
    int early = requests_before_reset(log, start, 3);
    CHECK(errors == 0 && n429 <= 8, "tighter server: %d errors, %d 429s", errors, n429);
    CHECK(early == 0, "%d requests sent to the paused bucket before its reset", early);
    fprintf(stderr, "tighter server: 24 requests at 5/3 s: %d 429s, %d early requests, %.1f s\n",
            n429, early, nt_now() - start);
    json_decref(log);
    http_client_free(c);
    set_quota(t, "", "ratelimit");
}

static int child_requests(const ctx *t, const char *dir, int n)
{
    http_opts o = {.endpoint = t->hub, .state_dir = dir, .max_wait_s = 60};
    http_client *c;
    if (http_client_new(&o, &c) != 0) return 1;
    int errors = api_burst(t, c, 2, n / 2);
    http_client_free(c);
    return errors ? 1 : 0;
}

static void test_two_processes(const ctx *t)
{
    char dir[] = "/tmp/nettest.XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    double start = nt_now();
    set_quota(t, "api=8/3", "ratelimit");
    size_t mark = nt_log_len(t->hub);
    pid_t kids[2];
    for (int k = 0; k < 2; k++)
        if ((kids[k] = fork()) == 0) _exit(child_requests(t, dir, 12));
    for (int k = 0; k < 2; k++) {
        int st;
        waitpid(kids[k], &st, 0);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "process %d had failed reads", k);
    }
    json_t *log = nt_log(t->hub, mark);
    int n429 = count_status(log, "api", 429);
    CHECK(n429 == 0, "two processes, one state dir: %d 429s", n429);
    fprintf(stderr, "two processes sharing a budget: 24 requests at 8/3 s: %d 429s, %.1f s\n", n429,
            nt_now() - start);
    json_decref(log);
    char path[128];
    snprintf(path, sizeof path, "%s/ratelimit.state", dir);
    unlink(path);
    rmdir(dir);
    set_quota(t, "", "ratelimit");
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s HUB_URL ROOT_DIR [GROUP]\n", argv[0]);
        return 2;
    }
    log_setup(0, LOG_LVL_WARN);
    ctx t = {.hub = argv[1], .root = argv[2]};
    const char *group = argc > 3 ? argv[3] : "all";
    t.big = nt_read_file(t.root, "org/repo/big.bin", &t.big_len);
    if (!t.big || t.big_len != BIG_SIZE) {
        fprintf(stderr, "cannot read %s/org/repo/big.bin\n", t.root);
        return 1;
    }
    int all = strcmp(group, "all") == 0;
    const char *groups[] = {"all", "basic", "faults", "forms", "pacing"};
    int known = 0;
    for (size_t i = 0; i < sizeof groups / sizeof *groups; i++)
        known |= strcmp(group, groups[i]) == 0;
    if (!known) {
        fprintf(stderr, "unknown test group '%s'\n", group);
        return 2;
    }
    if (all || strcmp(group, "basic") == 0) {
        test_api_get(&t);
        test_redirect_and_token(&t);
    }
    if (all || strcmp(group, "faults") == 0) test_faults(&t);
    if (all || strcmp(group, "forms") == 0) test_rate_forms(&t);
    if (all || strcmp(group, "pacing") == 0) {
        test_shared_pause(&t);
        test_pacing(&t);
        test_two_processes(&t);
    }
    free(t.big);
    if (nt_failures) {
        fprintf(stderr, "%d check(s) failed\n", nt_failures);
        return 1;
    }
    printf("ok\n");
    return 0;
}
