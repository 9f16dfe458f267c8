/* test_http.c — http_do() against the local Hub server: the contract on the happy path (headers,
 * redirects, ranges, token scope, caps), then every injected fault, each read checked byte for
 * byte against the served file.  Usage: test_http HUB_URL ROOT_DIR [GROUP] */
#include "http.h"
#include "log.h"
#include "nettest.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    if (all || strcmp(group, "basic") == 0) {
        test_api_get(&t);
        test_redirect_and_token(&t);
    }
    if (all || strcmp(group, "faults") == 0) test_faults(&t);
    free(t.big);
    if (nt_failures) {
        fprintf(stderr, "%d check(s) failed\n", nt_failures);
        return 1;
    }
    printf("ok\n");
    return 0;
}
