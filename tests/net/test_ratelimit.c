/* test_ratelimit.c — the per-bucket budget without a network: header forms (including a hostile
 * t=999999999), --rate parsing, budget math over fixed windows, adoption of what the server
 * says, one shared pause for all threads, and one budget for two processes sharing a state
 * directory.  Usage: test_ratelimit [GROUP]  (GROUP: parse, budget, threads, procs, all) */
#include "log.h"
#include "ratelimit.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "../check.h"

static rl_headers none(void)
{
    return (rl_headers){-1, -1, -1, -1, -1};
}

static void test_parse(void)
{
    rl_headers h = none();
    rl_parse_ratelimit("\"api\";r=0;t=7", &h);
    CHECK(h.remaining == 0 && h.reset_s == 7, "r %ld t %g", h.remaining, h.reset_s);
    h = none();
    rl_parse_ratelimit("\"resolvers\";r=2999;t=172", &h);
    CHECK(h.remaining == 2999 && h.reset_s == 172, "r %ld t %g", h.remaining, h.reset_s);
    h = none();
    rl_parse_ratelimit("\"api\";r=5;t=999999999", &h);
    CHECK(h.remaining == 5 && h.reset_s == 999999999, "hostile t parsed as %g", h.reset_s);
    h = none();
    rl_parse_ratelimit("\"api\";r=99999999999999999999999;t=-3", &h);
    CHECK(h.remaining == 1000000000 && h.reset_s == -1,
          "absurd r %ld clamped, negative t %g "
          "ignored",
          h.remaining, h.reset_s);
    h = none();
    rl_parse_ratelimit("garbage", &h);
    CHECK(h.remaining == -1 && h.reset_s == -1, "garbage");
    h = none();
    rl_parse_policy("\"fixed window\";\"api\";q=1000;w=300", &h);
    CHECK(h.quota == 1000 && h.window_s == 300, "q %ld w %g", h.quota, h.window_s);
    h = none();
    rl_parse_policy("\"fixed window\";\"api\";q=10;w=0", &h);
    CHECK(h.quota == -1, "w=0 is no policy");
    h = none();
    rl_parse_policy("\"fixed window\";\"api\";q=0;w=300", &h);
    CHECK(h.quota == -1, "q=0 is no policy (it would mean unlimited)");
    double now = rl_now();
    h = none();
    rl_parse_retry_after("3", now, &h);
    CHECK(h.retry_after == 3, "Retry-After 3: %g", h.retry_after);
    char date[64];
    time_t when = (time_t)now + 5;
    struct tm tm;
    gmtime_r(&when, &tm);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    h = none();
    rl_parse_retry_after(date, now, &h);
    CHECK(h.retry_after > 3.9 && h.retry_after <= 5.0, "Retry-After %s: %g", date, h.retry_after);
    h = none();
    rl_parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT", now, &h);
    CHECK(h.retry_after == 0, "date in the past: %g", h.retry_after);
    h = none();
    rl_parse_retry_after("soon", now, &h);
    CHECK(h.retry_after == -1, "Retry-After soon: %g", h.retry_after);

    long q[RL_NBUCKETS];
    double w[RL_NBUCKETS];
    CHECK(rl_parse_rate("api=12/30,resolvers=60/30", q, w) == 0 && q[0] == 12 && w[0] == 30 &&
              q[1] == 60 && w[1] == 30 && q[2] == -1,
          "rate parse");
    CHECK(rl_parse_rate(NULL, q, w) == 0 && q[0] == -1, "no rate");
    const char *bad[] = {"api=0/30",
                         "foo=1/2",
                         "api=5",
                         "api=5/0",
                         "api=5/30,",
                         "api=x/3",
                         "api=5/30;resolvers=1/1"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECK(rl_parse_rate(bad[i], q, w) == -EINVAL, "'%s' must be refused", bad[i]);
    rl_state *rl;
    CHECK(rl_open(NULL, "api=oops", &rl) == -EINVAL && rl == NULL, "rl_open refuses bad rate");
}

/* Seconds one rl_take() waited. */
static double take(rl_state *rl, int bucket)
{
    double w = -1;
    int rc = rl_take(rl, bucket, rl_now() + 60, NULL, NULL, &w);
    CHECK(rc == 0, "take rc %d", rc);
    return w;
}

static void test_budget(void)
{
    rl_state *rl;
    CHECK(rl_open(NULL, "api=5/1", &rl) == 0, "open");
    double t0 = rl_now();
    for (int i = 0; i < 5; i++)
        CHECK(take(rl, 0) < 0.2, "take %d of 5 immediate", i);
    double w = take(rl, 0);
    CHECK(w > 0.7 && w < 1.3, "6th take waits for the window: %.2f s", w);
    CHECK(rl_now() - t0 < 1.5, "one window");
    rl_bucket_stats st;
    rl_stats(rl, 0, &st);
    CHECK(st.quota == 5 && st.window_s == 1 && st.window_requests == 1, "stats q %ld w %g n %ld",
          st.quota, st.window_s, st.window_requests);
    for (int i = 0; i < 6; i++)
        rl_report(rl, 0, NULL);
    /* the cdn bucket has no quota: never waits */
    for (int i = 0; i < 50; i++)
        CHECK(take(rl, 2) < 0.05, "cdn unlimited");
    rl_close(rl);

    /* adopt the server's policy and remaining count */
    CHECK(rl_open(NULL, NULL, &rl) == 0, "open");
    take(rl, 0);
    rl_headers h = {.remaining = 3, .reset_s = 2, .quota = 10, .window_s = 2, .retry_after = -1};
    rl_report(rl, 0, &h);
    for (int i = 0; i < 3; i++)
        CHECK(take(rl, 0) < 0.2, "3 left");
    w = take(rl, 0);
    CHECK(w > 2.5 && w < 3.6, "then waits for reset + margin: %.2f s", w);
    rl_stats(rl, 0, &st);
    CHECK(st.quota == 10 && st.window_s == 2 && st.remaining == 3, "adopted q %ld w %g r %ld",
          st.quota, st.window_s, st.remaining);
    /* a hostile t= is cut to the window */
    h = (rl_headers){
        .remaining = 0, .reset_s = 999999999, .quota = 10, .window_s = 2, .retry_after = -1};
    rl_report(rl, 0, &h);
    double until = rl_pause(rl, 0, &h);
    CHECK(until - rl_now() < 3.6 && until - rl_now() > 2.5, "hostile pause cut to ~window: %.1f s",
          until - rl_now());
    w = take(rl, 0);
    CHECK(w > 2.5 && w < 3.7, "take after hostile 429 waits %.2f s", w);
    /* Retry-After form, and the deadline */
    h = (rl_headers){.remaining = -1, .reset_s = -1, .quota = -1, .window_s = -1, .retry_after = 1};
    until = rl_pause(rl, 0, &h);
    CHECK(until - rl_now() > 1.9 && until - rl_now() < 2.6, "Retry-After 1 pause %.2f",
          until - rl_now());
    double t1 = rl_now();
    int rc = rl_take(rl, 0, t1 + 0.5, NULL, NULL, NULL);
    CHECK(rc == -ETIMEDOUT && rl_now() - t1 > 0.45, "deadline: rc %d after %.2f s", rc,
          rl_now() - t1);
    /* no header: exponential backoff with full jitter, capped */
    h = none();
    for (int i = 0; i < 8; i++) {
        until = rl_pause(rl, 1, &h);
        CHECK(until - rl_now() <= RL_BACKOFF_CAP_S + 0.01, "backoff capped");
    }
    rl_stats(rl, 1, &st);
    CHECK(st.n429 == 8 && st.paused_s > 0, "n429 %ld paused %.1f", st.n429, st.paused_s);
    rl_close(rl);
}

/* --- threads: one pause for all, and the budget holds under contention --- */

typedef struct shared_run {
    rl_state *rl;
    pthread_mutex_t mu;
    double takes[4096];
    int ntakes;
    double pause_at, pause_until;
    int stop;
} shared_run;

static int cancel_after(void *arg)
{
    return rl_now() > *(double *)arg;
}

static void *taker(void *arg)
{
    shared_run *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        int stop = s->stop || s->ntakes >= 4000;
        pthread_mutex_unlock(&s->mu);
        if (stop) break;
        if (rl_take(s->rl, 0, rl_now() + 30, NULL, NULL, NULL) != 0) break;
        double t = rl_now();
        pthread_mutex_lock(&s->mu);
        s->takes[s->ntakes++] = t;
        pthread_mutex_unlock(&s->mu);
        rl_report(s->rl, 0, NULL);
    }
    return NULL;
}

static void test_threads(void)
{
    static shared_run s;
    memset(&s, 0, sizeof s);
    pthread_mutex_init(&s.mu, NULL);
    CHECK(rl_open(NULL, "api=40/1", &s.rl) == 0, "open");
    pthread_t th[8];
    double t0 = rl_now();
    for (int i = 0; i < 8; i++)
        pthread_create(&th[i], NULL, taker, &s);
    struct timespec d = {1, 200 * 1000 * 1000}; /* 1.2 s (tv_nsec must stay below 1e9) */
    nanosleep(&d, NULL);
    rl_headers h = {.remaining = 0, .reset_s = 1, .quota = -1, .window_s = -1, .retry_after = -1};
    double at = rl_now();
    double until = rl_pause(s.rl, 0, &h);
    d = (struct timespec){3, 0};
    nanosleep(&d, NULL);
    pthread_mutex_lock(&s.mu);
    s.stop = 1;
    pthread_mutex_unlock(&s.mu);
    for (int i = 0; i < 8; i++)
        pthread_join(th[i], NULL);
    double t1 = rl_now();
    int during = 0;
    for (int i = 0; i < s.ntakes; i++)
        during += s.takes[i] > at + 0.01 && s.takes[i] < until;
    CHECK(during == 0, "%d takes during the pause [%.2f, %.2f]", during, at - t0, until - t0);
    /* fixed windows of 1 s with 40 each: at most 40 per window we timed */
    CHECK(s.ntakes <= 40 * ((int)(t1 - t0) + 2), "%d takes in %.1f s", s.ntakes, t1 - t0);
    CHECK(s.ntakes >= 40 * 2, "the budget is used: %d takes", s.ntakes);
    rl_bucket_stats st;
    rl_stats(s.rl, 0, &st);
    CHECK(st.n429 == 1, "one 429");

    /* a waiting take honours its cancel callback */
    rl_pause(s.rl, 0, &h);
    h.reset_s = 30;
    rl_pause(s.rl, 0, &h);
    double cancel_at = rl_now() + 0.3;
    double c0 = rl_now();
    int rc = rl_take(s.rl, 0, rl_now() + 60, cancel_after, &cancel_at, NULL);
    CHECK(rc == -EINTR && rl_now() - c0 < 1.0, "cancel: rc %d after %.2f s", rc, rl_now() - c0);
    rl_close(s.rl);
    pthread_mutex_destroy(&s.mu);
}

/* --- two processes, one state directory, one budget --- */

static int child_takes(const char *dir, int n, int fd)
{
    rl_state *rl;
    if (rl_open(dir, "api=10/1", &rl) != 0) return 1;
    for (int i = 0; i < n; i++) {
        if (rl_take(rl, 0, rl_now() + 30, NULL, NULL, NULL) != 0) return 1;
        double t = rl_now();
        if (write(fd, &t, sizeof t) != (ssize_t)sizeof t) return 1;
        rl_report(rl, 0, NULL);
    }
    rl_close(rl);
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void test_procs(void)
{
    char dir[] = "/tmp/rltest.XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    int p[2];
    CHECK(pipe(p) == 0, "pipe");
    pid_t kids[2];
    for (int k = 0; k < 2; k++) {
        kids[k] = fork();
        if (kids[k] == 0) {
            close(p[0]);
            _exit(child_takes(dir, 15, p[1]));
        }
    }
    close(p[1]);
    double t[64];
    int n = 0;
    while (n < 64 && read(p[0], &t[n], sizeof t[n]) == (ssize_t)sizeof t[n])
        n++;
    close(p[0]);
    for (int k = 0; k < 2; k++) {
        int st;
        waitpid(kids[k], &st, 0);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child %d", k);
    }
    CHECK(n == 30, "30 takes, got %d", n);
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    /* 10 per window for both together: 30 takes span at least two window lengths */
    CHECK(n == 30 && t[29] - t[0] > 1.9,
          "30 takes of two processes in %.2f s (shared budget "
          "needs > 2 s)",
          n ? t[n - 1] - t[0] : 0);
    for (int k = 0; k < 4; k++) {
        int in = 0; /* the shared window starts at the first take */
        for (int i = 0; i < n; i++)
            in += t[i] >= t[0] + k - 0.01 && t[i] < t[0] + k + 1 - 0.01;
        CHECK(in <= 10, "window %d: %d takes of the two processes, budget 10", k, in);
    }
    char path[64];
    snprintf(path, sizeof path, "%s/ratelimit.state", dir);
    unlink(path);
    rmdir(dir);
}

int main(int argc, char **argv)
{
    const char *g = argc > 1 ? argv[1] : "all";
    int all = strcmp(g, "all") == 0;
    if (!all && strcmp(g, "parse") && strcmp(g, "budget") && strcmp(g, "threads") &&
        strcmp(g, "procs")) {
        fprintf(stderr, "unknown test group '%s'\n", g);
        return 2;
    }
    log_setup(0, LOG_LVL_ERROR);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (all || strcmp(g, "parse") == 0) test_parse();
    if (all || strcmp(g, "budget") == 0) test_budget();
    if (all || strcmp(g, "threads") == 0) test_threads();
    if (all || strcmp(g, "procs") == 0) test_procs();
    curl_global_cleanup();
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("ok\n");
    return 0;
}
