/* ratelimit.h — per-bucket request budget and shared 429 pause for the Hub's rate limits.
 *
 * The Hub counts requests per bucket (api, resolvers, ...) over fixed windows and announces, on
 * every response, the quota (`RateLimit-Policy: "fixed window";"api";q=1000;w=300`) and what is
 * left (`RateLimit: "api";r=998;t=211`). This module owns one budget per bucket:
 *   - rl_take() blocks a caller until a request may be sent: not during a pause, not when the
 *     window's budget is spent (it then waits for the reset), and spaced out when little budget
 *     is left, so that a sweep at full speed gets no 429;
 *   - rl_report() feeds every response's headers back (quota, remaining, reset) and ends the
 *     request that rl_take() started;
 *   - rl_pause() after a 429 pauses the whole bucket until the reset the server gave (RateLimit
 *     t=, else Retry-After) plus jitter, or for an exponential backoff with full jitter; many
 *     threads seeing one 429 make one pause, logged once.
 * The state is the only thing shared: with a state directory it lives in a small mmap'd file
 * there, guarded by flock(2), so every hfmount process using one cache dir shares one budget;
 * the three calls above are the whole interface, so the state could move to a shared store.
 * Times are CLOCK_REALTIME seconds (rl_now()), comparable between processes and HTTP dates. */
#ifndef HF_RATELIMIT_H
#define HF_RATELIMIT_H

#include <stdint.h>

enum { RL_NBUCKETS = 3 };         /* api, resolvers, cdn (same order as http_bucket) */
#define RL_DEFAULT_API_QUOTA 1000 /* free-tier quotas documented by the Hub */
#define RL_DEFAULT_RESOLVE_QUOTA 5000
#define RL_DEFAULT_WINDOW_S 300.0
#define RL_BACKOFF_START_S 4.0 /* 429 without headers: full jitter in [start, cap] */
#define RL_BACKOFF_CAP_S 60.0
#define RL_RESET_MARGIN_S 1.0 /* sent after a reset by at least this (t= is rounded) */

/* The rate-limit facts of one response; fields are -1 when the header did not say. */
typedef struct rl_headers {
    long remaining;     /* RateLimit r= */
    double reset_s;     /* RateLimit t= (seconds from now) */
    long quota;         /* RateLimit-Policy q= */
    double window_s;    /* RateLimit-Policy w= */
    double retry_after; /* Retry-After, as seconds from now (numeric or HTTP-date form) */
} rl_headers;

/* A bucket's figures for the stats file. */
typedef struct rl_bucket_stats {
    long quota; /* budget per window in use (0 = unlimited) */
    double window_s;
    long window_requests; /* requests sent in the current window */
    long remaining;       /* last RateLimit r= heard, or -1 */
    long n429;            /* 429 answers received */
    double paused_s;      /* total time the bucket has been paused */
    double paused_until;  /* rl_now() time the current pause ends, or 0 */
} rl_bucket_stats;

typedef struct rl_state rl_state;

/* Bucket index → its Hub name ("api", "resolvers", "cdn"). */
const char *rl_bucket_name(int bucket);
/* Current CLOCK_REALTIME time in seconds. */
double rl_now(void);

/* Create the budget. rate: NULL or "api=N/SECONDS,resolvers=N/SECONDS" (also "cdn=...").
 * state_dir: NULL keeps the state in this process, else it is shared through
 * state_dir/ratelimit.state. 0, -EINVAL (bad rate, message logged) or negative errno. */
int rl_open(const char *state_dir, const char *rate, rl_state **out);
void rl_close(rl_state *rl);

/* Parse a --rate value into quotas/windows per bucket (q[i] = -1 when not given). */
int rl_parse_rate(const char *rate, long q[RL_NBUCKETS], double w[RL_NBUCKETS]);

/* Header parsers: fill the matching rl_headers fields, leave others alone. value is the header
 * value without the name. now is rl_now() (for the HTTP-date form of Retry-After). */
void rl_parse_ratelimit(const char *value, rl_headers *h);
void rl_parse_policy(const char *value, rl_headers *h);
void rl_parse_retry_after(const char *value, double now, rl_headers *h);

/* Wait until one request to bucket may be sent, then count it as sent. Returns 0, -EINTR when
 * cancelled(arg) turned nonzero, -ETIMEDOUT when it cannot start before deadline (rl_now()
 * seconds). *waited (may be NULL) gets the seconds spent waiting. */
int rl_take(rl_state *rl, int bucket, double deadline, int (*cancelled)(void *), void *arg,
            double *waited);
/* The request rl_take() started got an answer (h may be NULL when the transfer failed before
 * any header): adopt what the server said about the budget. */
void rl_report(rl_state *rl, int bucket, const rl_headers *h);
/* A 429 was answered: pause the bucket (shared by every thread and process) and return the
 * rl_now() time the pause ends. The first thread to see a given pause logs it, with advice. */
double rl_pause(rl_state *rl, int bucket, const rl_headers *h);
/* Successful answer: the 429 backoff of this bucket starts again from RL_BACKOFF_START_S. */
void rl_success(rl_state *rl, int bucket);

void rl_stats(rl_state *rl, int bucket, rl_bucket_stats *out);

#endif
