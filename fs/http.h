/* http.h — the mount's one request layer: every byte and every API call to the Hub goes here.
 *
 * It owns, for all threads of the process (and, through the cache directory, for all hfmount
 * processes sharing it):
 *   - pacing per bucket (api, resolvers, cdn): a client-side budget that starts from the Hub's
 *     documented quotas, adopts what the server announces (RateLimit / RateLimit-Policy) and slows
 *     down before the budget runs out (see ratelimit.h);
 *   - the shared pause after a 429 (one 429 seen by many threads is one wait, until the server's
 *     reset time plus jitter) and exponential backoff with full jitter when no header says more;
 *   - retries of transient faults: 5xx, connection refused/reset, DNS failure, stalls, truncated
 *     bodies, wrong Content-Length or Content-Range;
 *   - timeouts on every transfer (connect, stall, deadline) and the --max-wait bound on how long a
 *     caller can be kept waiting in total; a caller's cancel callback is polled while waiting;
 *   - the Authorization header, sent only to the endpoint's own scheme://host:port;
 *   - accounting (requests per bucket, bytes, 429s, retries by cause, time paused), exported as
 *     JSON for MOUNT/.hfmount/stats.
 *
 * Contract of http_do():
 *   - Returns 0 when the server gave a definitive answer; rs->status holds it (2xx, 3xx when
 *     follow == 0, 4xx other than 429). Transient answers (429, 5xx, network faults, bad bodies)
 *     never come back as 0: they are retried inside until success or until max_wait elapses.
 *   - Ranged GET (rq->len > 0): 0 and status 206 means exactly rq->len bytes, verified against
 *     Content-Range (start, end and, when rq->expect_total >= 0, the total), are in rq->buf.
 *     A 200 answer to a range request, a wrong range or a wrong total is a fault, never data.
 *   - Unranged GET: the body (at most rq->max_body bytes, else -EFBIG) is in rs->body, NUL
 *     terminated, rs->body_len bytes.
 *   - Negative errno on failure: -EIO retries or max_wait exhausted (already logged with the
 *     advice of what the user can do), -EINTR cancelled by rq->cancelled, -ENETDOWN offline
 *     mode (nothing is sent), -EFBIG body over max_body, -ENOMEM, -EINVAL bad request.
 *   - Nothing partial is ever returned as success.
 * Thread-safe: one http_client is shared by all FUSE worker and read-ahead threads. */
#ifndef HF_HTTP_H
#define HF_HTTP_H

#include <stddef.h>
#include <stdint.h>

typedef enum http_bucket {
    HTTP_BUCKET_API = 0, /* /api/... (repo info, tree listings) */
    HTTP_BUCKET_RESOLVE, /* /{repo}/resolve/... on the endpoint */
    HTTP_BUCKET_CDN,     /* the redirect target (CDN) or any other host serving bytes */
    HTTP_NBUCKETS
} http_bucket;

typedef struct http_opts {
    const char *endpoint;     /* e.g. "https://huggingface.co", no trailing slash */
    const char *token;        /* bearer token or NULL */
    const char *rate;         /* "--rate api=N/SECONDS,resolvers=N/SECONDS" value or NULL */
    const char *state_dir;    /* directory for the pacing state shared between processes
                                 (the cache dir); NULL keeps it process-local */
    double connect_timeout_s; /* default 10 */
    double stall_timeout_s;   /* no byte received for this long = fault; default 30 */
    double deadline_s;        /* one transfer's whole-time limit; default 600 */
    double max_wait_s;        /* total time one http_do may spend waiting+retrying; 1800 */
    int offline;              /* nonzero: every http_do fails with -ENETDOWN, nothing sent */
    const char *user_agent;   /* NULL = "hfmount/VERSION" */
} http_opts;

typedef struct http_request {
    const char *url;      /* absolute URL */
    http_bucket bucket;   /* which budget the request is paced and counted under */
    int head;             /* nonzero: HEAD instead of GET */
    int follow;           /* nonzero: follow redirects (the final URL is in rs->effective_url);
                             zero: a 3xx is returned as the answer with rs->location set */
    int64_t off, len;     /* len > 0: ranged GET of bytes [off, off+len) into buf */
    int64_t expect_total; /* ranged GET: required Content-Range total, or -1 if unknown */
    void *buf;            /* ranged GET destination, at least len bytes */
    size_t max_body;      /* unranged GET: largest body accepted (0 = 16 MiB) */
    int (*cancelled)(void *arg); /* polled while waiting/transferring; nonzero = give up */
    void *cancel_arg;
    const char *what; /* for log lines: "ORG/REPO@REV:path" or similar */
} http_request;

typedef struct http_response {
    long status; /* final HTTP status */
    char *body;  /* unranged GET body, malloc'd, NUL terminated (else NULL) */
    size_t body_len;
    char *effective_url;    /* URL that answered (after redirects when follow != 0) */
    char *location;         /* Location header (absolute), or NULL */
    char *repo_commit;      /* X-Repo-Commit, or NULL */
    char *linked_etag;      /* X-Linked-Etag without quotes, or NULL */
    char *etag;             /* ETag without quotes and W/ prefix, or NULL */
    char *error_code;       /* X-Error-Code, or NULL */
    char *error_message;    /* X-Error-Message, or NULL */
    char *link_next;        /* Link: <...>; rel="next" target (absolute), or NULL */
    char *content_type;     /* Content-Type, or NULL */
    int64_t linked_size;    /* X-Linked-Size, or -1 */
    int64_t content_length; /* Content-Length, or -1 */
    int64_t last_modified;  /* Last-Modified as Unix time, or -1 */
} http_response;

typedef struct http_client http_client;

/* Create the shared client. Copies what it needs from *o. 0 or negative errno. */
int http_client_new(const http_opts *o, http_client **out);
void http_client_free(http_client *c);

/* Perform one logical request (see the contract above). rs is zeroed first; always call
 * http_response_free(rs) afterwards, also on error. */
int http_do(http_client *c, const http_request *rq, http_response *rs);
void http_response_free(http_response *rs);

/* nonzero when url's scheme://host:port is the endpoint's (the only place a token may go). */
int http_is_endpoint_url(const http_client *c, const char *url);

/* Append the accounting as one JSON object to buf (NUL terminated, at most cap bytes).
 * Returns the length written, or -ENOSPC when cap is too small. */
int http_stats_json(http_client *c, char *buf, size_t cap);

#endif
