/* ratelimit.c — see ratelimit.h.
 *
 * Model: the Hub counts fixed windows per bucket. We keep, per bucket, the end of the current
 * window (the server's reset time once a response said it) and how many requests are left in
 * it. rl_take() spends one, rl_report() corrects the count with what the server says it has
 * left (never upwards within a window: our own count already includes requests still in
 * flight), and a new window starts RL_RESET_MARGIN_S after the announced reset because t= is
 * whole seconds. */
#include "ratelimit.h"

#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h> /* isfinite only: the core library does not link libm */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#define RL_MAGIC 0x68666d72u /* "hfmr" */
#define RL_VERSION 1u
#define RL_SLEEP_SLICE_S 0.05 /* waits poll the cancel callback this often */
#define RL_RESERVE_DIV 10     /* below quota/10 left, requests are spread over the window */
#define RL_SAME_WINDOW_S 2.0  /* two reset times this close are one window (t= rounding) */

/* One bucket's state; lives in the shared file, so plain data only. */
typedef struct rl_bucket {
    long quota; /* per window, from the server's policy or the documented default */
    double window_s;
    double win_end; /* end of the current window */
    int aligned;    /* win_end derives from a RateLimit t= (whole seconds: add a margin) */
    int reported;   /* a RateLimit header was heard in this window */
    long left;      /* requests we may still send in this window */
    long inflight;  /* taken, not yet reported (all processes) */
    long window_requests;
    long remaining;   /* last r= heard */
    double next_send; /* spacing when little is left */
    double paused_until;
    int backoff_n; /* consecutive header-less 429s */
    long n429;
    double paused_s;
} rl_bucket;

typedef struct rl_shared {
    uint32_t magic, version, size, pad;
    rl_bucket b[RL_NBUCKETS];
} rl_shared;

struct rl_state {
    pthread_mutex_t mu; /* threads of this process; flock(fd) orders processes */
    int fd;             /* -1: process-local */
    rl_shared *sh;
    rl_shared local;
    long user_q[RL_NBUCKETS]; /* --rate, -1 when not given */
    double user_w[RL_NBUCKETS];
};

static const char *const rl_names[RL_NBUCKETS] = {"api", "resolvers", "cdn"};

const char *rl_bucket_name(int bucket)
{
    return bucket >= 0 && bucket < RL_NBUCKETS ? rl_names[bucket] : "?";
}

double rl_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Uniform in [0, 1). getrandom keeps processes and threads from drawing the same jitter. */
static double rl_uniform(void)
{
    uint32_t x = 0;
    if (getrandom(&x, sizeof x, 0) != (ssize_t)sizeof x) x = (uint32_t)(rl_now() * 1e6);
    return (double)x / 4294967296.0;
}

static void rl_sleep(double s)
{
    if (s <= 0) return;
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static void rl_lock(rl_state *rl)
{
    pthread_mutex_lock(&rl->mu);
    if (rl->fd >= 0)
        while (flock(rl->fd, LOCK_EX) != 0 && errno == EINTR)
            ;
}

static void rl_unlock(rl_state *rl)
{
    if (rl->fd >= 0) flock(rl->fd, LOCK_UN);
    pthread_mutex_unlock(&rl->mu);
}

/* The budget per window this process applies: the server's (or default) quota, lowered by
 * --rate scaled to the same window. 0 = unlimited. */
static long rl_effective_quota(const rl_state *rl, int i, const rl_bucket *b)
{
    long q = b->quota;
    if (rl->user_q[i] >= 0 && rl->user_w[i] > 0) {
        long uq = (long)((double)rl->user_q[i] * b->window_s / rl->user_w[i]);
        if (uq < 1) uq = 1;
        q = q > 0 && q < uq ? q : uq;
    }
    return q;
}

static void rl_init_shared(rl_shared *sh)
{
    memset(sh, 0, sizeof *sh);
    sh->magic = RL_MAGIC;
    sh->version = RL_VERSION;
    sh->size = sizeof *sh;
    static const long q[RL_NBUCKETS] = {RL_DEFAULT_API_QUOTA, RL_DEFAULT_RESOLVE_QUOTA, 0};
    for (int i = 0; i < RL_NBUCKETS; i++) {
        sh->b[i].quota = q[i];
        sh->b[i].window_s = RL_DEFAULT_WINDOW_S;
        sh->b[i].remaining = -1;
    }
}

int rl_parse_rate(const char *rate, long q[RL_NBUCKETS], double w[RL_NBUCKETS])
{
    for (int i = 0; i < RL_NBUCKETS; i++)
        q[i] = -1, w[i] = 0;
    if (!rate || !*rate) return 0;
    const char *p = rate;
    while (*p) {
        size_t nlen = strcspn(p, "=");
        int idx = -1;
        for (int i = 0; i < RL_NBUCKETS; i++)
            if (strlen(rl_names[i]) == nlen && strncmp(p, rl_names[i], nlen) == 0) idx = i;
        if (nlen == 7 && strncmp(p, "resolve", 7) == 0) idx = 1;
        if (idx < 0 || p[nlen] != '=') goto bad;
        char *end;
        errno = 0;
        long n = strtol(p + nlen + 1, &end, 10);
        if (errno || end == p + nlen + 1 || n < 1 || *end != '/') goto bad;
        const char *ws = end + 1;
        double s = strtod(ws, &end);
        if (end == ws || !(s > 0) || s > 86400) goto bad;
        q[idx] = n, w[idx] = s;
        if (*end == ',' && end[1])
            end++;
        else if (*end)
            goto bad;
        p = end;
    }
    return 0;
bad:
    log_error("--rate '%s': expected BUCKET=N/SECONDS[,BUCKET=N/SECONDS] with BUCKET one of api, "
              "resolvers, cdn (e.g. api=1000/300,resolvers=5000/300); bad part at '%s'",
              rate, p);
    return -EINVAL;
}

static int rl_map_file(rl_state *rl, const char *state_dir)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s/ratelimit.state", state_dir) >= (int)sizeof path)
        return -ENAMETOOLONG;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        int e = errno;
        log_error("rate-limit state %s: %s", path, strerror(e));
        return -e;
    }
    flock(fd, LOCK_EX);
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) != 0 ||
        (st.st_size != (off_t)sizeof(rl_shared) && ftruncate(fd, sizeof(rl_shared)) != 0))
        rc = -errno;
    void *m = MAP_FAILED;
    if (!rc) {
        m = mmap(NULL, sizeof(rl_shared), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (m == MAP_FAILED) rc = -errno;
    }
    if (!rc) {
        rl_shared *sh = m;
        if (sh->magic != RL_MAGIC || sh->version != RL_VERSION || sh->size != sizeof *sh)
            rl_init_shared(sh); /* new, or written by another version: start afresh */
        rl->sh = sh;
        rl->fd = fd;
    }
    flock(fd, LOCK_UN);
    if (rc) {
        log_error("rate-limit state %s: %s", path, strerror(-rc));
        close(fd);
    }
    return rc;
}

int rl_open(const char *state_dir, const char *rate, rl_state **out)
{
    *out = NULL;
    rl_state *rl = calloc(1, sizeof *rl);
    if (!rl) return -ENOMEM;
    int rc = rl_parse_rate(rate, rl->user_q, rl->user_w);
    if (rc) {
        free(rl);
        return rc;
    }
    pthread_mutex_init(&rl->mu, NULL);
    rl->fd = -1;
    rl_init_shared(&rl->local);
    rl->sh = &rl->local;
    if (state_dir && (rc = rl_map_file(rl, state_dir)) != 0) {
        pthread_mutex_destroy(&rl->mu);
        free(rl);
        return rc;
    }
    rl_lock(rl);
    for (int i = 0; i < RL_NBUCKETS; i++) {
        rl_bucket *b = &rl->sh->b[i];
        /* --rate gives a window of its own until the server announces one */
        if (rl->user_q[i] >= 0 && b->win_end == 0 && !b->reported) {
            b->quota = rl->user_q[i];
            b->window_s = rl->user_w[i];
        }
    }
    rl_unlock(rl);
    *out = rl;
    return 0;
}

void rl_close(rl_state *rl)
{
    if (!rl) return;
    if (rl->fd >= 0) {
        munmap(rl->sh, sizeof(rl_shared));
        close(rl->fd);
    }
    pthread_mutex_destroy(&rl->mu);
    free(rl);
}

/* --- header parsing (draft-ietf-httpapi-ratelimit-headers: `"name";r=N;t=N`) --- */

/* Value of the parameter `key=` in a structured-field list item, or -1. Values are clamped to
 * [0, 1e9] so that a hostile number cannot overflow anything downstream. */
static double rl_param(const char *v, const char *key)
{
    size_t kl = strlen(key);
    for (const char *p = v; (p = strstr(p, key)) != NULL; p += kl) {
        if (p != v && p[-1] != ';' && p[-1] != ' ' && p[-1] != ',') continue;
        if (p[kl] != '=') continue;
        char *end;
        double x = strtod(p + kl + 1, &end);
        if (end == p + kl + 1 || !isfinite(x) || x < 0) return -1;
        return x > 1e9 ? 1e9 : x;
    }
    return -1;
}

void rl_parse_ratelimit(const char *value, rl_headers *h)
{
    double r = rl_param(value, "r"), t = rl_param(value, "t");
    if (r >= 0) h->remaining = (long)r;
    if (t >= 0) h->reset_s = t;
}

void rl_parse_policy(const char *value, rl_headers *h)
{
    double q = rl_param(value, "q"), w = rl_param(value, "w");
    if (q >= 1 && w > 0) { /* q=0 would read as "unlimited" here: not a policy */
        h->quota = (long)q;
        h->window_s = w;
    }
}

void rl_parse_retry_after(const char *value, double now, rl_headers *h)
{
    while (*value == ' ')
        value++;
    char *end;
    double s = strtod(value, &end);
    if (end != value && isfinite(s) && s >= 0) {
        h->retry_after = s > 1e9 ? 1e9 : s;
        return;
    }
    time_t t = curl_getdate(value, NULL); /* the HTTP-date form */
    if (t != (time_t)-1) h->retry_after = (double)t > now ? (double)t - now : 0;
}

/* --- the budget --- */

/* When the current window is over for us: a server-announced reset is whole seconds, so we
 * keep a margin after it; a window we timed ourselves ends when it ends. */
static double rl_window_end(const rl_bucket *b)
{
    return b->win_end + (b->aligned ? RL_RESET_MARGIN_S : 0);
}

/* Start a new window when the current one is over. Fixed windows are contiguous, so once the
 * server told us one reset the next window ends one window later. */
static void rl_roll(rl_state *rl, int i, rl_bucket *b, double now)
{
    if (now < rl_window_end(b)) return;
    double next = b->win_end + b->window_s;
    b->aligned = b->aligned && now < next;
    b->win_end = b->aligned ? next : now + b->window_s;
    b->reported = 0;
    b->left = rl_effective_quota(rl, i, b);
    b->window_requests = 0;
    b->next_send = 0;
    /* a process killed mid-request never reports; forgetting in-flight counts at each window
     * bounds what such a leak can cost to one window */
    b->inflight = 0;
}

/* How long bucket i must wait before a request may go; 0 = go now (and count it). */
static double rl_try_take(rl_state *rl, int i, double now, double *spent_wait)
{
    rl_bucket *b = &rl->sh->b[i];
    if (b->paused_until > now) return b->paused_until - now;
    long q = rl_effective_quota(rl, i, b);
    if (q > 0) {
        rl_roll(rl, i, b, now);
        if (b->left <= 0) return rl_window_end(b) - now;
        long reserve = q / RL_RESERVE_DIV;
        if (b->left <= reserve && b->next_send > now) return b->next_send - now;
        b->left--;
        if (b->left == 0) *spent_wait = rl_window_end(b) - now;
        if (b->left < reserve)
            b->next_send = now + (rl_window_end(b) - now) / (double)(b->left + 1);
    }
    b->window_requests++;
    if (b->inflight < 100000) b->inflight++;
    return 0;
}

/* A bucket's figures; the caller holds the lock. */
static void rl_stats_locked(rl_state *rl, int bucket, double now, rl_bucket_stats *out)
{
    rl_bucket *b = &rl->sh->b[bucket];
    out->quota = rl_effective_quota(rl, bucket, b);
    out->window_s = b->window_s;
    out->window_requests = now < rl_window_end(b) ? b->window_requests : 0;
    out->remaining = b->remaining;
    out->n429 = b->n429;
    out->paused_s = b->paused_s;
    out->paused_until = b->paused_until > now ? b->paused_until : 0;
}

int rl_take(rl_state *rl, int bucket, double deadline, int (*cancelled)(void *), void *arg,
            double *waited)
{
    double start = rl_now();
    if (waited) *waited = 0;
    if (bucket < 0 || bucket >= RL_NBUCKETS) return -EINVAL;
    for (;;) {
        if (cancelled && cancelled(arg)) return -EINTR;
        rl_lock(rl);
        double now = rl_now();
        double spent = -1;
        double wait = rl_try_take(rl, bucket, now, &spent);
        rl_bucket_stats st = {0};
        if (spent >= 0) rl_stats_locked(rl, bucket, now, &st);
        rl_unlock(rl);
        if (waited) *waited = now - start;
        if (spent >= 0)
            log_info("rate limit: bucket %s: this window's budget (%ld per %.0f s) is spent; "
                     "further requests wait %.1f s for its reset (pacing, not an error)",
                     rl_bucket_name(bucket), st.quota, st.window_s, spent);
        if (wait <= 0) return 0;
        /* wait to the very end of the caller's patience: another process may lift the pause */
        if (now >= deadline) return -ETIMEDOUT;
        double d = wait < RL_SLEEP_SLICE_S ? wait : RL_SLEEP_SLICE_S;
        rl_sleep(now + d > deadline ? deadline - now : d);
    }
}

/* Adopt one answer's `RateLimit: r=...;t=...` (reset as a time; a hostile t= was already cut
 * to one window). Our count of what is left may only go down within a window: requests of
 * ours still in flight are not in the server's r yet, other clients' requests are. */
static void rl_adopt(rl_state *rl, int i, rl_bucket *b, long r, double reset)
{
    int later = reset > b->win_end + RL_SAME_WINDOW_S;
    int close = fabs(reset - b->win_end) <= RL_SAME_WINDOW_S;
    long q = rl_effective_quota(rl, i, b);
    b->remaining = r;
    if (b->reported || b->aligned ? later : 0) {
        /* the server already is in a later window than ours: its count, minus what is still
         * in flight (it may not have counted those yet) */
        long left = r - b->inflight;
        b->left = left < 0 ? 0 : (q > 0 && left > q ? q : left);
        b->window_requests = q > r ? q - r : 0;
    } else if (!b->reported && (close || !b->aligned)) {
        /* first word on a window we timed ourselves: assume our requests so far are in it */
        long left = q - b->window_requests;
        b->left = left < r ? (left < 0 ? 0 : left) : r;
    } else if (close) {
        if (b->left > r) b->left = r;
    } else {
        return; /* a late answer from an earlier window: its count is stale */
    }
    b->win_end = reset;
    b->aligned = b->reported = 1;
}

void rl_report(rl_state *rl, int bucket, const rl_headers *h)
{
    if (bucket < 0 || bucket >= RL_NBUCKETS) return;
    rl_lock(rl);
    rl_bucket *b = &rl->sh->b[bucket];
    double now = rl_now();
    if (b->inflight > 0) b->inflight--;
    if (h && h->quota > 0 && h->window_s > 0) {
        b->quota = h->quota;
        b->window_s = h->window_s;
    }
    if (h && h->remaining >= 0 && h->reset_s >= 0)
        rl_adopt(rl, bucket, b, h->remaining,
                 now + (h->reset_s < b->window_s ? h->reset_s : b->window_s));
    rl_unlock(rl);
}

void rl_success(rl_state *rl, int bucket)
{
    if (bucket < 0 || bucket >= RL_NBUCKETS) return;
    rl_lock(rl);
    rl->sh->b[bucket].backoff_n = 0;
    rl_unlock(rl);
}

/* The wait a 429 asks for, clamped; why gets the reason for the log line. */
static double rl_429_wait(rl_bucket *b, const rl_headers *h, char *why, size_t cap, int *clamped)
{
    double max = b->window_s; /* a fixed window resets within one window length */
    double w;
    *clamped = 0;
    if (h && h->reset_s >= 0) {
        w = h->reset_s;
        snprintf(why, cap, "server answered 429 with RateLimit t=%.0f", h->reset_s);
    } else if (h && h->retry_after >= 0) {
        w = h->retry_after;
        snprintf(why, cap, "server answered 429 with Retry-After %.0f s", h->retry_after);
    } else {
        /* full jitter: uniform in [0, cap], cap doubling from the start value */
        double c = RL_BACKOFF_START_S * (double)(1u << (b->backoff_n < 16 ? b->backoff_n : 16));
        if (c > RL_BACKOFF_CAP_S) c = RL_BACKOFF_CAP_S;
        b->backoff_n++;
        w = c * rl_uniform();
        snprintf(why, cap, "server answered 429 without a reset time (backoff %d, cap %.0f s)",
                 b->backoff_n, c);
        return w;
    }
    if (w > max) {
        *clamped = 1;
        w = max;
    }
    return w + RL_RESET_MARGIN_S + 0.5 * rl_uniform();
}

double rl_pause(rl_state *rl, int bucket, const rl_headers *h)
{
    if (bucket < 0 || bucket >= RL_NBUCKETS) return 0;
    char why[160];
    int clamped;
    rl_lock(rl);
    rl_bucket *b = &rl->sh->b[bucket];
    double now = rl_now();
    b->n429++;
    double wait = rl_429_wait(b, h, why, sizeof why, &clamped);
    double until = now + wait;
    int fresh = b->paused_until <= now;
    if (until > b->paused_until) {
        b->paused_s += until - (fresh ? now : b->paused_until);
        b->paused_until = until;
    }
    b->left = 0; /* the server says the window is spent, whatever we counted */
    if (h && h->reset_s >= 0 && h->reset_s <= b->window_s) {
        b->win_end = now + h->reset_s;
        b->aligned = b->reported = 1;
    } else {
        /* no reset time: the window is over for us when the pause is (Retry-After, or the
         * backoff, says when to try again; our own guess of the window does not) */
        b->win_end = b->paused_until;
        b->aligned = 0;
    }
    until = b->paused_until;
    rl_unlock(rl);
    if (clamped)
        log_warn("rate limit: bucket %s: the server's wait (%s) is absurd; waiting %.0f s instead",
                 rl_bucket_name(bucket), why, wait);
    if (fresh)
        log_warn("rate limit: bucket %s paused for %.1f s (%s); readers wait, they do not fail. "
                 "To avoid pauses: set HF_TOKEN for a higher quota, pace with --rate %s=N/SECONDS, "
                 "use --offline for cached repos, or space runs with hfsweep --delay",
                 rl_bucket_name(bucket), until - now, why, rl_bucket_name(bucket));
    return until;
}

void rl_stats(rl_state *rl, int bucket, rl_bucket_stats *out)
{
    memset(out, 0, sizeof *out);
    if (bucket < 0 || bucket >= RL_NBUCKETS) return;
    rl_lock(rl);
    rl_stats_locked(rl, bucket, rl_now(), out);
    rl_unlock(rl);
}
