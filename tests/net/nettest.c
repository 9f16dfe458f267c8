/* nettest.c — see nettest.h. Uses libcurl directly: these helpers talk to the test server's
 * control endpoint, which must not go through (or be paced by) the layer under test. */
#include "nettest.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

double nt_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

typedef struct nt_buf {
    char *p;
    size_t n;
} nt_buf;

static size_t nt_sink(char *p, size_t size, size_t n, void *arg)
{
    nt_buf *b = arg;
    char *q = realloc(b->p, b->n + size * n + 1);
    if (!q) return 0;
    memcpy(q + b->n, p, size * n);
    b->p = q;
    b->n += size * n;
    b->p[b->n] = '\0';
    return size * n;
}

static long nt_http(const char *url, const char *post, nt_buf *out)
{
    CURL *h = curl_easy_init();
    long status = 0;
    if (!h) return 0;
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 20L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, nt_sink);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, out);
    if (post) curl_easy_setopt(h, CURLOPT_POSTFIELDS, post);
    if (curl_easy_perform(h) == CURLE_OK) curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(h);
    return status;
}

int nt_control(const char *hub, const char *json)
{
    char url[512];
    nt_buf b = {0};
    snprintf(url, sizeof url, "%s/_control", hub);
    long st = nt_http(url, json, &b);
    if (st != 200) fprintf(stderr, "control %s: HTTP %ld %s\n", json, st, b.p ? b.p : "");
    free(b.p);
    return st == 200 ? 0 : -1;
}

json_t *nt_log(const char *hub, size_t since)
{
    char url[512];
    nt_buf b = {0};
    snprintf(url, sizeof url, "%s/_control/log?since=%zu", hub, since);
    json_t *arr = json_array();
    if (nt_http(url, NULL, &b) == 200 && b.p) {
        for (char *line = strtok(b.p, "\n"); line; line = strtok(NULL, "\n")) {
            json_t *e = json_loads(line, 0, NULL);
            if (e) json_array_append_new(arr, e);
        }
    }
    free(b.p);
    return arr;
}

size_t nt_log_len(const char *hub)
{
    json_t *a = nt_log(hub, 0);
    size_t n = json_array_size(a);
    json_decref(a);
    return n;
}

unsigned char *nt_read_file(const char *root, const char *rel, size_t *len)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *p = malloc(n > 0 ? (size_t)n : 1);
    if (p && fread(p, 1, (size_t)n, f) != (size_t)n) {
        free(p);
        p = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return p;
}
