/* blob.c — see blob.h. */
#include "blob.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "log.h"
#include "sha1.h"
#include "sha256.h"

#define BLOB_STREAMS 4
#define BLOB_QUEUE_MAX 1024
#define BLOB_OID_TRIES 3               /* fetches of a git-stored file whose bytes miss its oid */
#define BLOB_GIT_WHOLE_MAX (1LL << 30) /* largest git-stored file fetched (and checked) whole */
#define BLOB_REFUSALS_MAX 5 /* CDN refusals of one block (each followed by a re-resolve) */
#define BLOB_WAIT_SLICE_NS 100000000L /* how often a waiter polls its request's interrupt */
#define BLOB_STALE_TRIES 3 /* reads of one block again after failed sha256 checks spanned it */

typedef struct flight {
    int64_t idx;
    int refs;     /* holders (the fetcher and the waiters); under blob.mu */
    int state;    /* 0 running, 1 data ready, <0 -errno */
    int listed;   /* still in blob.flights */
    int kept;     /* done, and kept listed as a recent block (the list holds a reference) */
    uint64_t seq; /* when it was kept: the oldest kept block goes first */
    uint64_t gen; /* blob.bad_gen when the flight began: bytes from before a failed check */
    unsigned char *buf;
    size_t len, cap; /* cap: what buf was allocated as (the pool's block size for most) */
    struct flight *next;
} flight;

typedef struct stream {
    int64_t next;    /* where this stream's next read is expected */
    int64_t ra_upto; /* last block queued for read-ahead */
    int hits;
    uint64_t used;
} stream;

struct blob {
    blob_pool *pool;
    int refs; /* under pool.mu */
    struct blob *next;
    char id[65];
    int64_t size, nblocks;
    uint32_t bs; /* this file's block size (see blob_block_size) */
    int is_lfs;
    char sha256[65];
    hub_repo repo;
    char commit[41];
    char *path;
    char what[512];

    pthread_mutex_t mu; /* flights, present, streams */
    pthread_cond_t cv;
    flight *flights;
    _Atomic unsigned char *present; /* read without mu by readers; written under mu */
    int64_t npresent;
    int verified, verifying;
    uint64_t bad_gen; /* failed sha256 checks: a flight that spans one holds stale bytes */
    stream streams[BLOB_STREAMS];
    uint64_t clock;
    int nkept; /* recent blocks kept in memory (bounded by readahead + 2) */
    uint64_t kept_seq;

    pthread_mutex_t tmu; /* the redirect target; held while resolving so a file resolves once */
    char *target;
    int64_t target_expires, target_margin; /* re-resolve this long before it expires */
    uint64_t target_gen; /* bumped per new target: a refused URL is dropped only once */
};

typedef enum task_kind { TASK_PREFETCH, TASK_VERIFY } task_kind;

typedef struct task {
    task_kind kind;
    blob *b;
    int64_t idx;
} task;

struct blob_pool {
    blob_pool_opts o;
    pthread_mutex_t mu; /* blobs, refs, queue */
    pthread_cond_t qcv;
    blob *blobs;
    task *q;
    size_t qhead, qlen;
    pthread_t *threads;
    int nthreads;
    _Atomic int stop;
    pthread_mutex_t bmu; /* spare */
    void **spare;        /* recycled block buffers (see blob_buf_get) */
    int nspare, maxspare;
    _Atomic int64_t bytes_network, bytes_cache, bytes_shared, blocks_fetched, blocks_cache_hits,
        blocks_readahead, flight_joins, resolves, resolve_retries, sha256_ok, sha256_bad,
        fetch_errors, blobs_open, oid_bad;
};

static void blob_unref(blob *b);

/* ---- block buffers ----
 * Page aligned, so the cache can write them with O_DIRECT; buffers of the pool's block size are
 * recycled, since a fresh 4 MiB allocation costs a page fault and a zeroed page per 4 KiB. */

#define BLOB_ALIGN 4096
#define BLOB_HUGE (2u << 20)
#define BLOB_SPARE_BYTES (256LL << 20) /* most memory kept in idle recycled buffers */

static void *blob_buf_get(blob_pool *p, size_t len)
{
    void *buf = NULL;
    if (len == p->o.block_size) {
        pthread_mutex_lock(&p->bmu);
        if (p->nspare > 0) buf = p->spare[--p->nspare];
        pthread_mutex_unlock(&p->bmu);
        if (buf) return buf;
    }
    size_t cap = (len + BLOB_ALIGN - 1) & ~(size_t)(BLOB_ALIGN - 1);
    if (cap >= BLOB_HUGE && cap % BLOB_HUGE == 0) {
        /* Huge pages: a 4 MiB block is two TLB entries instead of 1024, for the copies from
         * the socket, the checksums and the kernel's copy into the reply. */
        buf = aligned_alloc(BLOB_HUGE, cap);
        if (buf) madvise(buf, cap, MADV_HUGEPAGE);
        return buf;
    }
    return aligned_alloc(BLOB_ALIGN, cap ? cap : BLOB_ALIGN);
}

static void blob_buf_put(blob_pool *p, void *buf, size_t len)
{
    if (!buf) return;
    if (len == p->o.block_size) {
        pthread_mutex_lock(&p->bmu);
        if (p->nspare < p->maxspare) {
            p->spare[p->nspare++] = buf;
            buf = NULL;
        }
        pthread_mutex_unlock(&p->bmu);
    }
    free(buf);
}

/* ---- the task queue ---- */

static int blob_pool_stopping(void *arg)
{
    blob_pool *p = arg;
    return p->stop || (p->o.stopping && p->o.stopping(p->o.stop_arg));
}

/* Queue a task; it holds a reference to b. 0, or -EAGAIN when the queue is full or the pool
 * stopping: the task is dropped (read-ahead is a hint; see blob_enqueue_verify for the check). */
static int blob_enqueue(blob *b, task_kind kind, int64_t idx)
{
    blob_pool *p = b->pool;
    int rc = -EAGAIN;
    pthread_mutex_lock(&p->mu);
    if (p->qlen < BLOB_QUEUE_MAX && !p->stop) {
        p->q[(p->qhead + p->qlen++) % BLOB_QUEUE_MAX] = (task){kind, b, idx};
        b->refs++;
        pthread_cond_signal(&p->qcv);
        rc = 0;
    }
    pthread_mutex_unlock(&p->mu);
    return rc;
}

/* Queue the whole-file check; a check that cannot be queued is asked for again later. */
static void blob_enqueue_verify(blob *b)
{
    if (blob_enqueue(b, TASK_VERIFY, 0) == 0) return;
    pthread_mutex_lock(&b->mu);
    b->verifying = 0;
    pthread_mutex_unlock(&b->mu);
}

/* ---- resolving ---- */

/* Signed CDN URLs carry their expiry ("Expires=<unix>"); 0 when they do not say. */
static int64_t blob_url_expiry(const char *url)
{
    for (const char *p = strchr(url, '?'); p; p = strchr(p + 1, '&'))
        if (strncmp(p + 1, "Expires=", 8) == 0) return strtoll(p + 9, NULL, 10);
    return 0;
}

/* Choose the URL for a block. With a known, unexpired redirect target: that (tmu released),
 * its generation in *gen. Without one: the /resolve/ URL, and tmu stays held until
 * blob_target_done(), so that the other blocks of the file wait for this one resolve instead of
 * making their own. refused is the generation a caller saw refused (0: none); it is dropped only
 * if it is still the current one, so several readers of an expired URL re-resolve once. */
static char *blob_target(blob *b, uint64_t refused, int *resolving, uint64_t *gen)
{
    pthread_mutex_lock(&b->tmu);
    time_t now = time(NULL);
    if (b->target && ((refused && refused == b->target_gen) ||
                      (b->target_expires && now > b->target_expires - b->target_margin))) {
        free(b->target);
        b->target = NULL;
    }
    if (b->target) {
        char *url = strdup(b->target);
        *gen = b->target_gen;
        pthread_mutex_unlock(&b->tmu);
        *resolving = 0;
        return url;
    }
    *resolving = 1;
    *gen = 0;
    b->pool->resolves++;
    char *url = hub_resolve_url(b->pool->o.endpoint, &b->repo, b->commit, b->path);
    if (!url) pthread_mutex_unlock(&b->tmu);
    return url;
}

static void blob_target_done(blob *b, const char *effective)
{
    if (effective) {
        free(b->target);
        b->target = strdup(effective);
        b->target_gen++;
        b->target_expires = blob_url_expiry(effective);
        /* 30 s of slack, or a quarter of a short lifetime (so a URL is used at all) */
        int64_t life = b->target_expires - (int64_t)time(NULL);
        b->target_margin = life > 120 ? 30 : (life > 0 ? life / 4 : 0);
    }
    pthread_mutex_unlock(&b->tmu);
}

/* A block that is git-lfs pointer text or an HTML page where file bytes should be. */
static int blob_looks_wrong(const blob *b, int64_t idx, const unsigned char *buf, size_t len)
{
    static const char ptr[] = "version https://git-lfs.github.com/spec/v1";
    if (idx != 0 || !b->is_lfs) return 0;
    if (len >= sizeof ptr - 1 && memcmp(buf, ptr, sizeof ptr - 1) == 0) return 1;
    return len >= 15 && (strncasecmp((const char *)buf, "<!doctype html", 14) == 0 ||
                         strncasecmp((const char *)buf, "<html", 5) == 0);
}

static int blob_status_errno(const blob *b, long status)
{
    if (status == 404 || status == 410) {
        log_error("%s: the Hub says the file does not exist (%ld)", b->what, status);
        return -ENOENT;
    }
    if (status == 401 || status == 403) {
        log_error("%s: access denied (%ld): a gated or private repo needs a token with access: "
                  "set HF_TOKEN or --token-file (or run `hf auth login`)",
                  b->what, status);
        return -EACCES;
    }
    log_error("%s: unexpected HTTP %ld to a range request", b->what, status);
    return -EIO;
}

/* A refusal by the download host (the CDN), not by the endpoint: a signed URL that expired or
 * was revoked. Only the endpoint's own 401/403 speaks about access to the repo. */
static int blob_cdn_refused(const blob *b, const http_response *rs)
{
    long st = rs->status;
    if (st != 401 && st != 403 && st != 404 && st != 410) return 0;
    return rs->effective_url && !http_is_endpoint_url(b->pool->o.http, rs->effective_url);
}

/* Send the 206 answer in buf to the accounting, or refuse bytes that are not the file's. */
static int blob_net_accept(blob *b, int64_t idx, const unsigned char *buf, size_t len)
{
    if (blob_looks_wrong(b, idx, buf, len)) {
        log_error("%s: the server sent LFS pointer text or HTML instead of the file", b->what);
        return -EIO;
    }
    b->pool->bytes_network += (int64_t)len;
    b->pool->blocks_fetched++;
    return 0;
}

/* One ranged GET of block idx into buf. The first goes through /resolve/ and its final URL
 * (the CDN after the redirect) serves the following blocks. A refusal from the CDN always
 * leads to a fresh resolve (shared with the file's other readers), up to BLOB_REFUSALS_MAX
 * times; only the endpoint's own 401/403/404 is the answer. */
static int blob_net_fetch(blob *b, int64_t idx, unsigned char *buf, size_t len,
                          int (*cancelled)(void *), void *cancel_arg)
{
    blob_pool *p = b->pool;
    int rc = -EIO;
    uint64_t refused = 0;
    long status = 0;
    int attempt;
    for (attempt = 0; attempt < BLOB_REFUSALS_MAX; attempt++) {
        int resolving;
        uint64_t gen;
        char *url = blob_target(b, refused, &resolving, &gen);
        if (!url) return -ENOMEM;
        http_request rq = {.url = url,
                           .bucket = http_is_endpoint_url(p->o.http, url) ? HTTP_BUCKET_RESOLVE
                                                                          : HTTP_BUCKET_CDN,
                           .follow = 1,
                           .off = idx * (int64_t)b->bs,
                           .len = (int64_t)len,
                           .expect_total = b->size,
                           .buf = buf,
                           .cancelled = cancelled,
                           .cancel_arg = cancel_arg,
                           .what = b->what};
        http_response rs;
        rc = http_do(p->o.http, &rq, &rs);
        status = rs.status;
        int cdn_refused = rc == 0 && blob_cdn_refused(b, &rs);
        if (resolving) blob_target_done(b, rc == 0 && status == 206 ? rs.effective_url : NULL);
        http_response_free(&rs);
        free(url);
        if (rc < 0) break;
        if (status == 206) {
            if ((rc = blob_net_accept(b, idx, buf, len)) == 0) return 0;
            break;
        }
        if (!cdn_refused) {
            rc = blob_status_errno(b, status);
            break;
        }
        refused = gen;
        p->resolve_retries++;
        log_info("%s: download URL refused by the CDN (%ld): resolving again", b->what, status);
        rc = -EIO;
    }
    if (attempt == BLOB_REFUSALS_MAX)
        log_error("%s: the download server refused %d fresh URLs in a row (HTTP %ld)", b->what,
                  BLOB_REFUSALS_MAX, status);
    p->fetch_errors++;
    return rc;
}

/* ---- blocks ---- */

static size_t blob_block_len(const blob *b, int64_t idx)
{
    int64_t bs = b->bs, left = b->size - idx * bs;
    return (size_t)(left < bs ? left : bs);
}

static void blob_flight_put_locked(blob *b, flight *f)
{
    if (--f->refs == 0 && !f->listed) {
        blob_buf_put(b->pool, f->buf, f->cap);
        free(f);
    }
}

static void blob_flight_unlist_locked(blob *b, flight *f)
{
    for (flight **pp = &b->flights; *pp; pp = &(*pp)->next)
        if (*pp == f) {
            *pp = f->next;
            break;
        }
    f->listed = 0;
}

/* A kept block let go: off the list, and the list's reference dropped. */
static void blob_unkeep_locked(blob *b, flight *f)
{
    blob_flight_unlist_locked(b, f);
    f->kept = 0;
    b->nkept--;
    blob_flight_put_locked(b, f);
}

/* Keep a just-fetched block in memory so that the sequential reader behind the read-ahead
 * copies it from RAM instead of reading and verifying it from disk again; the oldest of the
 * kept blocks is let go. */
static void blob_keep_locked(blob *b, flight *f)
{
    int limit = b->pool->o.readahead + 2;
    f->kept = 1;
    f->refs++;
    f->seq = ++b->kept_seq;
    b->nkept++;
    while (b->nkept > limit) {
        flight *old = NULL;
        for (flight *g = b->flights; g; g = g->next)
            if (g->kept && (!old || g->seq < old->seq)) old = g;
        if (!old) break;
        blob_unkeep_locked(b, old);
    }
}

/* Let go of every kept block (their bytes failed the file's sha256). */
static void blob_forget_kept_locked(blob *b)
{
    for (flight *g = b->flights, *next; g; g = next) {
        next = g->next;
        if (g->kept) blob_unkeep_locked(b, g);
    }
}

static void blob_mark_present(blob *b, int64_t idx)
{
    int verify = 0;
    pthread_mutex_lock(&b->mu);
    if (!b->present[idx]) {
        b->present[idx] = 1;
        b->npresent++;
    }
    if (b->is_lfs && b->npresent == b->nblocks && !b->verified && !b->verifying) {
        b->verifying = 1;
        verify = 1;
    }
    pthread_mutex_unlock(&b->mu);
    if (verify) blob_enqueue_verify(b);
}

static void blob_mark_absent(blob *b, int64_t idx)
{
    pthread_mutex_lock(&b->mu);
    if (b->present[idx]) {
        b->present[idx] = 0;
        b->npresent--;
    }
    pthread_mutex_unlock(&b->mu);
}

/* Who may give up a block's fetch: the pool stopping, or the reader that started it when it is
 * interrupted and nobody else waits for the block (a joiner would inherit its -EINTR). */
typedef struct fetch_cancel {
    blob *b;
    flight *f;
    int (*cancelled)(void *);
    void *arg;
} fetch_cancel;

static int blob_fetch_cancelled(void *arg)
{
    fetch_cancel *fc = arg;
    if (blob_pool_stopping(fc->b->pool)) return 1;
    if (!fc->cancelled || !fc->cancelled(fc->arg)) return 0;
    pthread_mutex_lock(&fc->b->mu);
    int alone = fc->f->refs == 1;
    pthread_mutex_unlock(&fc->b->mu);
    return alone;
}

/* Fill f with block f->idx: from disk if another process or thread stored it meanwhile, else
 * from the network, then store it. Runs without b->mu. */
static int blob_fill(blob *b, flight *f, int (*cancelled)(void *), void *arg)
{
    blob_pool *p = b->pool;
    f->len = blob_block_len(b, f->idx);
    f->cap = f->len == b->bs ? b->bs : f->len; /* only whole blocks use the recycled buffers */
    f->buf = blob_buf_get(p, f->cap);
    if (!f->buf) return -ENOMEM;
    if (cache_block_read(p->o.cache, b->id, b->bs, f->idx, 0, f->len, f->buf) == 0) {
        p->blocks_cache_hits++;
        return 1;
    }
    fetch_cancel fc = {b, f, cancelled, arg};
    if (b->is_lfs) return blob_net_fetch(b, f->idx, f->buf, f->len, blob_fetch_cancelled, &fc);
    /* A git-stored file is one block (see blob_block_size): its id is its git blob oid, so the
     * bytes are checked before anyone sees or stores them; a mismatch is fetched again. */
    for (int tries = 1;; tries++) {
        int rc = blob_net_fetch(b, f->idx, f->buf, f->len, blob_fetch_cancelled, &fc);
        if (rc < 0) return rc;
        char oid[41];
        sha1_git_blob(f->buf, f->len, oid);
        if (strcmp(oid, b->id) == 0) return 0;
        p->oid_bad++;
        if (tries == BLOB_OID_TRIES) {
            log_error("%s: the bytes have git oid %s, the tree says %s, %d fetches in a row: "
                      "not served",
                      b->what, oid, b->id, tries);
            return -EIO;
        }
        log_info("%s: the bytes have git oid %s, the tree says %s: fetching again", b->what, oid,
                 b->id);
    }
}

/* Store a filled block (rc 1: it came from disk, 0: from the network) and keep it in memory.
 * -ESTALE, the flight let go, when a failed sha256 check of the file came meanwhile. */
static int blob_store_keep(blob *b, flight *f, int rc)
{
    /* Store before unlisting, so that a reader that misses on disk finds the flight. */
    if (rc == 0 && cache_block_write(b->pool->o.cache, b->id, b->bs, f->idx, f->buf, f->len) == 0)
        rc = 1;
    pthread_mutex_lock(&b->mu);
    int stale = f->gen != b->bad_gen;
    if (stale) {
        blob_flight_unlist_locked(b, f);
        blob_flight_put_locked(b, f);
    } else {
        blob_keep_locked(b, f);
    }
    pthread_mutex_unlock(&b->mu);
    if (stale) return -ESTALE;
    if (rc == 1) blob_mark_present(b, f->idx);
    return 0;
}

/* Get block idx in memory: join the flight fetching it or start one. On success *out holds a
 * reference (release with blob_flight_put_locked under b->mu). */
static int blob_get_block(blob *b, int64_t idx, int (*cancelled)(void *), void *arg, flight **out)
{
    int stale_tries = 0, rc;
again:
    pthread_mutex_lock(&b->mu);
    flight *f = b->flights;
    while (f && f->idx != idx)
        f = f->next;
    if (f) {
        f->refs++;
        b->pool->flight_joins++;
        while (f->state == 0) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += BLOB_WAIT_SLICE_NS;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&b->cv, &b->mu, &ts);
            if (f->state == 0 && cancelled && cancelled(arg)) {
                blob_flight_put_locked(b, f);
                pthread_mutex_unlock(&b->mu);
                return -EINTR;
            }
        }
        rc = f->state < 0 ? f->state : f->gen != b->bad_gen ? -ESTALE : 0;
        if (rc < 0) blob_flight_put_locked(b, f);
        pthread_mutex_unlock(&b->mu);
        if (rc == -EINTR && !blob_pool_stopping(b->pool) && !(cancelled && cancelled(arg)))
            goto again; /* the reader that fetched it was interrupted, not this one */
        goto done;
    }
    f = calloc(1, sizeof *f);
    if (!f) {
        pthread_mutex_unlock(&b->mu);
        return -ENOMEM;
    }
    f->idx = idx;
    f->gen = b->bad_gen;
    f->refs = 1;
    f->listed = 1;
    f->next = b->flights;
    b->flights = f;
    pthread_mutex_unlock(&b->mu);

    rc = blob_fill(b, f, cancelled, arg);
    pthread_mutex_lock(&b->mu);
    /* A failed sha256 check while this block was read: its bytes may be the bad ones. */
    if (rc >= 0 && f->gen != b->bad_gen) rc = -ESTALE;
    f->state = rc < 0 ? rc : 1;
    pthread_cond_broadcast(&b->cv);
    if (rc < 0) {
        blob_flight_unlist_locked(b, f);
        blob_flight_put_locked(b, f);
    }
    pthread_mutex_unlock(&b->mu);
    if (rc >= 0) rc = blob_store_keep(b, f, rc);
done:
    /* Bytes read across a failed check are read again, a few times at most. */
    if (rc == -ESTALE && ++stale_tries <= BLOB_STALE_TRIES) goto again;
    if (rc == -ESTALE) rc = -EIO;
    *out = rc < 0 ? NULL : f;
    return rc < 0 ? rc : 0;
}

/* A recent block in memory, with a reference, or NULL. */
static flight *blob_mem_get(blob *b, int64_t idx)
{
    pthread_mutex_lock(&b->mu);
    flight *f = b->flights;
    while (f && !(f->idx == idx && f->state == 1 && f->gen == b->bad_gen))
        f = f->next;
    if (f) f->refs++;
    pthread_mutex_unlock(&b->mu);
    return f;
}

/* Whether block idx is in memory or on its way there (fetched, or loaded from disk). */
static int blob_listed(blob *b, int64_t idx)
{
    pthread_mutex_lock(&b->mu);
    flight *f = b->flights;
    while (f && f->idx != idx)
        f = f->next;
    pthread_mutex_unlock(&b->mu);
    return f != NULL;
}

static void blob_put_block(blob *b, flight *f)
{
    pthread_mutex_lock(&b->mu);
    blob_flight_put_locked(b, f);
    pthread_mutex_unlock(&b->mu);
}

/* ---- read-ahead ---- */

/* Track the read in one of the file's streams; a stream that continues where it left off is
 * sequential and gets the next blocks queued. */
static void blob_readahead(blob *b, int64_t off, size_t len)
{
    int64_t bs = b->bs, end = off + (int64_t)len;
    int64_t q0 = 0, q1 = -1;
    pthread_mutex_lock(&b->mu);
    stream *s = NULL, *old = &b->streams[0];
    for (int i = 0; i < BLOB_STREAMS; i++) {
        stream *t = &b->streams[i];
        if (t->hits && off >= t->next - 2 * bs && off <= t->next + 2 * bs) {
            s = t;
            break;
        }
        if (t->used < old->used) old = t;
    }
    if (!s) {
        s = old;
        *s = (stream){.next = end, .ra_upto = off / bs, .hits = 0};
    }
    s->hits++;
    s->used = ++b->clock;
    if (end > s->next) s->next = end;
    if (s->hits >= 2 && b->pool->o.readahead > 0) {
        int64_t want = (end - 1) / bs + b->pool->o.readahead;
        if (want >= b->nblocks) want = b->nblocks - 1;
        q0 = s->ra_upto + 1 > (end - 1) / bs + 1 ? s->ra_upto + 1 : (end - 1) / bs + 1;
        q1 = want;
        if (want > s->ra_upto) s->ra_upto = want;
    }
    pthread_mutex_unlock(&b->mu);
    /* Blocks on disk are read ahead too, into memory: the workers read and check whole blocks
     * in parallel while the reader copies from memory, instead of one disk read per request. */
    for (int64_t k = q0; k <= q1; k++)
        if (!blob_listed(b, k)) blob_enqueue(b, TASK_PREFETCH, k);
}

/* ---- the whole-file sha256 check ---- */

static void blob_verify(blob *b)
{
    blob_pool *p = b->pool;
    uint32_t bs = b->bs;
    unsigned char *buf = malloc(bs);
    sha256_ctx ctx;
    int rc = sha256_init(&ctx);
    if (!buf) rc = -ENOMEM;
    for (int64_t k = 0; rc == 0 && k < b->nblocks; k++) {
        size_t n = blob_block_len(b, k);
        if (blob_pool_stopping(p)) {
            rc = -EINTR; /* the mount is going away: the next one checks again */
            break;
        }
        rc = cache_block_read(p->o.cache, b->id, bs, k, 0, n, buf);
        if (rc == 0)
            sha256_update(&ctx, buf, n);
        else
            blob_mark_absent(b, k);
    }
    free(buf);
    char hex[65];
    sha256_final_hex(&ctx, hex);
    int ok = rc == 0 && strcmp(hex, b->sha256) == 0, bad = rc == 0 && !ok;
    if (bad) {
        log_error("%s: sha256 of the downloaded file is %s, the Hub says %s: dropped", b->what, hex,
                  b->sha256);
        cache_file_drop(p->o.cache, b->id, bs);
    } else if (ok) {
        cache_file_set_verified(p->o.cache, b->id, bs);
        p->sha256_ok++;
        log_debug("%s: sha256 verified", b->what);
    }
    pthread_mutex_lock(&b->mu);
    if (bad) {
        b->bad_gen++;
        blob_forget_kept_locked(b);
        for (int64_t k = 0; k < b->nblocks; k++)
            b->present[k] = 0;
        b->npresent = 0;
    }
    b->verified = ok;
    b->verifying = 0;
    pthread_mutex_unlock(&b->mu);
    if (!bad) return;
    /* The bad bytes were served before the check could run; the blocks are gone, but copies
     * of them (the kernel's page cache) are the owner's to drop. Counted afterwards, so that
     * whoever sees sha256_bad move no longer gets the bad bytes from those copies either. */
    if (p->o.on_bad_content && !blob_pool_stopping(p))
        p->o.on_bad_content(p->o.bad_content_arg, b->id);
    p->sha256_bad++;
}

/* ---- workers ---- */

static void *blob_worker(void *arg)
{
    blob_pool *p = arg;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        while (!p->stop && p->qlen == 0)
            pthread_cond_wait(&p->qcv, &p->mu);
        if (p->stop) {
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
        task t = p->q[p->qhead];
        p->qhead = (p->qhead + 1) % BLOB_QUEUE_MAX;
        p->qlen--;
        pthread_mutex_unlock(&p->mu);
        if (t.kind == TASK_VERIFY) {
            blob_verify(t.b);
        } else if (!blob_listed(t.b, t.idx)) {
            flight *f;
            if (blob_get_block(t.b, t.idx, NULL, NULL, &f) == 0) {
                p->blocks_readahead++;
                blob_put_block(t.b, f);
            }
        }
        blob_unref(t.b);
    }
}

int blob_pool_new(const blob_pool_opts *o, blob_pool **out)
{
    blob_pool *p = calloc(1, sizeof *p);
    if (!p) return -ENOMEM;
    p->o = *o;
    p->q = calloc(BLOB_QUEUE_MAX, sizeof *p->q);
    p->nthreads = o->workers > 0 ? o->workers : 1;
    p->threads = calloc((size_t)p->nthreads, sizeof *p->threads);
    /* Enough spare buffers for the workers, but never more than BLOB_SPARE_BYTES idle. */
    p->maxspare = p->nthreads + 2;
    if (o->block_size > 0 && (int64_t)p->maxspare * o->block_size > BLOB_SPARE_BYTES)
        p->maxspare = (int)(BLOB_SPARE_BYTES / o->block_size);
    if (p->maxspare < 1) p->maxspare = 1;
    p->spare = calloc((size_t)p->maxspare, sizeof *p->spare);
    if (!p->q || !p->threads || !p->spare) {
        free(p->q);
        free(p->threads);
        free(p->spare);
        free(p);
        return -ENOMEM;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_mutex_init(&p->bmu, NULL);
    pthread_cond_init(&p->qcv, NULL);
    for (int i = 0; i < p->nthreads; i++) {
        int rc = pthread_create(&p->threads[i], NULL, blob_worker, p);
        if (rc != 0) {
            p->nthreads = i;
            blob_pool_free(p);
            return -rc;
        }
    }
    *out = p;
    return 0;
}

void blob_pool_free(blob_pool *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->qcv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    while (p->qlen > 0) {
        blob *b = p->q[p->qhead].b;
        p->qhead = (p->qhead + 1) % BLOB_QUEUE_MAX;
        p->qlen--;
        blob_unref(b);
    }
    pthread_cond_destroy(&p->qcv);
    pthread_mutex_destroy(&p->mu);
    while (p->nspare > 0)
        free(p->spare[--p->nspare]);
    free(p->spare);
    pthread_mutex_destroy(&p->bmu);
    free(p->q);
    free(p->threads);
    free(p);
}

void blob_pool_get_stats(blob_pool *p, blob_stats *s)
{
    s->bytes_network = p->bytes_network;
    s->bytes_cache = p->bytes_cache;
    s->bytes_shared = p->bytes_shared;
    s->blocks_fetched = p->blocks_fetched;
    s->blocks_cache_hits = p->blocks_cache_hits;
    s->blocks_readahead = p->blocks_readahead;
    s->flight_joins = p->flight_joins;
    s->resolves = p->resolves;
    s->resolve_retries = p->resolve_retries;
    s->sha256_ok = p->sha256_ok;
    s->sha256_bad = p->sha256_bad;
    s->fetch_errors = p->fetch_errors;
    s->blobs_open = p->blobs_open;
    s->oid_bad = p->oid_bad;
}

/* ---- blobs ---- */

/* Git-stored (non-LFS) files are small and served by /resolve/ itself, so each block would be
 * one more resolver request; and their only checksum is the git oid of the whole file: they
 * are fetched, checked and cached whole, as one block (up to BLOB_GIT_WHOLE_MAX; the Hub keeps
 * files over 10 MiB in LFS, so larger ones are refused rather than served unchecked). */
static uint32_t blob_block_size(const blob_pool *p, const blob_desc *d)
{
    if (d->is_lfs || d->size <= (int64_t)p->o.block_size || d->size > BLOB_GIT_WHOLE_MAX)
        return p->o.block_size;
    return (uint32_t)((d->size + 65535) & ~(int64_t)65535);
}

static blob *blob_new(blob_pool *p, const blob_desc *d)
{
    blob *b = calloc(1, sizeof *b);
    if (!b) return NULL;
    b->bs = blob_block_size(p, d);
    int64_t bs = b->bs;
    b->pool = p;
    b->refs = 1;
    snprintf(b->id, sizeof b->id, "%s", d->id);
    b->size = d->size;
    b->nblocks = (d->size + bs - 1) / bs;
    b->is_lfs = d->is_lfs;
    snprintf(b->sha256, sizeof b->sha256, "%s", d->sha256 ? d->sha256 : "");
    b->repo = *d->repo;
    snprintf(b->commit, sizeof b->commit, "%s", d->commit);
    b->path = strdup(d->path);
    b->present = calloc((size_t)b->nblocks + 1, 1);
    if (!b->path || !b->present) {
        free(b->path);
        free((void *)b->present);
        free(b);
        return NULL;
    }
    snprintf(b->what, sizeof b->what, "%s%s@%.12s:%s",
             d->repo->kind == HUB_DATASET ? "datasets/" : "", d->repo->id, d->commit, d->path);
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
    pthread_mutex_init(&b->tmu, NULL);
    unsigned char *scan = calloc((size_t)b->nblocks + 1, 1);
    if (scan) cache_block_scan(p->o.cache, b->id, b->bs, b->nblocks, scan);
    for (int64_t k = 0; scan && k < b->nblocks; k++) {
        b->present[k] = scan[k];
        b->npresent += scan[k];
    }
    free(scan);
    b->verified = cache_file_is_verified(p->o.cache, b->id, b->bs);
    return b;
}

int blob_open(blob_pool *p, const blob_desc *d, blob **out)
{
    pthread_mutex_lock(&p->mu);
    blob *b = p->blobs;
    while (b && (strcmp(b->id, d->id) != 0 || b->size != d->size))
        b = b->next;
    if (b) {
        b->refs++;
        pthread_mutex_unlock(&p->mu);
        *out = b;
        return 0;
    }
    pthread_mutex_unlock(&p->mu);
    blob *nb = blob_new(p, d);
    if (!nb) return -ENOMEM;
    pthread_mutex_lock(&p->mu);
    for (b = p->blobs; b && (strcmp(b->id, d->id) != 0 || b->size != d->size); b = b->next)
        ;
    if (b) { /* another thread created it meanwhile */
        b->refs++;
    } else {
        nb->next = p->blobs;
        p->blobs = b = nb;
        nb = NULL;
        p->blobs_open++;
    }
    pthread_mutex_unlock(&p->mu);
    if (nb) blob_unref(nb);
    pthread_mutex_lock(&b->mu);
    int verify =
        b->is_lfs && b->nblocks > 0 && b->npresent == b->nblocks && !b->verified && !b->verifying;
    if (verify) b->verifying = 1;
    pthread_mutex_unlock(&b->mu);
    if (verify) blob_enqueue_verify(b);
    cache_pin(p->o.cache, b->id); /* an open file's blocks are not evicted */
    *out = b;
    return 0;
}

/* One more reference to a blob the caller holds already. */
static void blob_hold(blob *b)
{
    pthread_mutex_lock(&b->pool->mu);
    b->refs++;
    pthread_mutex_unlock(&b->pool->mu);
}

static void blob_unref(blob *b)
{
    blob_pool *p = b->pool;
    pthread_mutex_lock(&p->mu);
    int last = --b->refs == 0;
    if (last) {
        for (blob **pp = &p->blobs; *pp; pp = &(*pp)->next)
            if (*pp == b) {
                *pp = b->next;
                p->blobs_open--;
                break;
            }
    }
    pthread_mutex_unlock(&p->mu);
    if (!last) return;
    for (flight *g = b->flights, *next; g; g = next) { /* only kept blocks remain */
        next = g->next;
        blob_buf_put(p, g->buf, g->cap);
        free(g);
    }
    free(b->target);
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->cv);
    pthread_mutex_destroy(&b->tmu);
    free((void *)b->present);
    free(b->path);
    free(b);
}

void blob_close(blob *b)
{
    cache_unpin(b->pool->o.cache, b->id);
    blob_unref(b);
}

/* The bytes of one block in a read: a reference to the block in memory, or (for a block read
 * back from disk) a place in the read's own buffer. */
typedef struct piece {
    flight *f;
    const unsigned char *p;
    size_t n;
} piece;

static void blob_pieces_put(blob *b, piece *pc, size_t n)
{
    pthread_mutex_lock(&b->mu);
    for (size_t i = 0; i < n; i++)
        if (pc[i].f) blob_flight_put_locked(b, pc[i].f);
    pthread_mutex_unlock(&b->mu);
}

/* One block's part of a read: the recent block in memory, else the cache, else the network
 * (joining a fetch in flight). A piece read from disk lands at d, in the read's buffer. */
typedef struct read_buf {
    unsigned char *disk; /* allocated when the first piece comes from disk */
    size_t len;
} read_buf;

static int blob_piece(blob *b, int64_t idx, size_t in, size_t n, read_buf *rb, size_t at,
                      int (*cancelled)(void *), void *arg, piece *pc)
{
    blob_pool *p = b->pool;
    flight *f = blob_mem_get(b, idx);
    int rc = -ENOENT;
    /* A block being loaded by the read-ahead is joined, not read a second time. */
    if (!f && b->present[idx] && !blob_listed(b, idx)) {
        if (!rb->disk && !(rb->disk = malloc(rb->len))) return -ENOMEM;
        unsigned char *d = rb->disk + at;
        rc = cache_block_read(p->o.cache, b->id, b->bs, idx, in, n, d);
        if (rc == 0) {
            p->bytes_cache += (int64_t)n;
            *pc = (piece){NULL, d, n};
            return 0;
        }
        blob_mark_absent(b, idx);
    }
    if (!f && (rc = blob_get_block(b, idx, cancelled, arg, &f)) < 0) return rc;
    p->bytes_shared += (int64_t)n;
    *pc = (piece){f, f->buf + in, n};
    return 0;
}

long blob_read_iov(blob *b, int64_t off, size_t len, int (*cancelled)(void *), void *arg,
                   blob_sink sink, void *sink_arg)
{
    int64_t bs = b->bs;
    if (off < 0) return -EINVAL;
    if (off >= b->size || len == 0) {
        sink(NULL, 0, sink_arg);
        return 0;
    }
    if ((int64_t)len > b->size - off) len = (size_t)(b->size - off);
    if (!b->is_lfs && b->nblocks > 1) {
        log_error("%s: a git-stored file of %lld bytes (over %lld) cannot be checked against its "
                  "git oid: not served",
                  b->what, (long long)b->size, BLOB_GIT_WHOLE_MAX);
        return -EIO;
    }
    blob_readahead(b, off, len);
    size_t np = (size_t)((off + (int64_t)len - 1) / bs - off / bs + 1), k = 0;
    piece *pc = calloc(np, sizeof *pc);
    struct iovec *iov = calloc(np, sizeof *iov);
    read_buf rb = {NULL, len};
    long rc = pc && iov ? 0 : -ENOMEM;
    for (size_t done = 0; rc == 0 && done < len; k++) {
        int64_t pos = off + (int64_t)done, idx = pos / bs;
        size_t in = (size_t)(pos - idx * bs), n = (size_t)bs - in;
        if (n > len - done) n = len - done;
        rc = blob_piece(b, idx, in, n, &rb, done, cancelled, arg, &pc[k]);
        if (rc == 0) iov[k] = (struct iovec){(void *)pc[k].p, pc[k].n};
        done += n;
    }
    /* Once the sink has replied, the reader may close the file, and its release may drop the
     * last reference before the pieces are put back: the read holds one of its own. */
    blob_hold(b);
    if (rc == 0) {
        sink(iov, (int)k, sink_arg);
        rc = (long)len;
    }
    if (pc) blob_pieces_put(b, pc, k);
    blob_unref(b);
    free(pc);
    free(iov);
    free(rb.disk);
    return rc;
}
