/* repo.c — see repo.h. */
#include "repo.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

/* How long a definitive "no such repo" / "access denied" is believed before asking again. */
#define REPO_NEGATIVE_MAX_S 300
/* After a failed check, the next try comes this much later (not at every lookup). */
#define REPO_RETRY_S 60

struct repo {
    hub_repo ref;
    int pinned;
    pthread_mutex_t mu; /* everything below; held while loading, so one load per repo */
    snap *cur;
    int64_t checked;
    int err;
    int64_t err_time;
    snap **all;
    size_t nall;
};

repo *repo_new(const hub_repo *ref)
{
    repo *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->ref = *ref;
    r->pinned = hub_is_commit(ref->rev);
    pthread_mutex_init(&r->mu, NULL);
    return r;
}

static void snap_free(snap *s)
{
    hub_tree_free(&s->tree);
    free(s->kid_off);
    free(s->kids);
    free(s);
}

void repo_free(repo *r)
{
    if (!r) return;
    for (size_t i = 0; i < r->nall; i++)
        snap_free(r->all[i]);
    free(r->all);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

const hub_repo *repo_ref(const repo *r)
{
    return &r->ref;
}

int repo_is_pinned(const repo *r)
{
    return r->pinned;
}

snap *repo_current(repo *r)
{
    pthread_mutex_lock(&r->mu);
    snap *s = r->cur;
    pthread_mutex_unlock(&r->mu);
    return s;
}

/* ---- snapshots ---- */

static uint32_t snap_parent(const hub_tree *t, uint32_t i)
{
    const char *path = t->e[i].path, *slash = strrchr(path, '/');
    char parent[HUB_PATH_MAX + 1];
    if (!slash || (size_t)(slash - path) > HUB_PATH_MAX) return (uint32_t)t->n;
    /* A copy: cutting the entry's own path would make it match itself. */
    memcpy(parent, path, (size_t)(slash - path));
    parent[slash - path] = 0;
    long p = hub_tree_find(t, parent);
    return p < 0 ? (uint32_t)t->n : (uint32_t)p;
}

/* Takes ownership of *t. */
static snap *snap_build(const hub_repo *ref, const char *commit, int64_t mtime, hub_tree *t)
{
    snap *s = calloc(1, sizeof *s);
    size_t n = t->n;
    uint32_t *par = malloc((n + 1) * sizeof *par);
    if (s) {
        s->kid_off = calloc(n + 2, sizeof *s->kid_off);
        s->kids = malloc((n + 1) * sizeof *s->kids);
    }
    if (!s || !par || !s->kid_off || !s->kids) {
        if (s) {
            free(s->kid_off);
            free(s->kids);
        }
        free(s);
        free(par);
        hub_tree_free(t);
        return NULL;
    }
    s->ref = *ref;
    snprintf(s->commit, sizeof s->commit, "%s", commit);
    s->mtime = mtime;
    s->tree = *t;
    memset(t, 0, sizeof *t);
    for (uint32_t i = 0; i < n; i++) {
        par[i] = snap_parent(&s->tree, i);
        s->kid_off[par[i] + 1]++;
    }
    for (size_t d = 0; d <= n; d++)
        s->kid_off[d + 1] += s->kid_off[d];
    uint32_t *fill = calloc(n + 1, sizeof *fill);
    if (!fill) {
        free(par);
        snap_free(s);
        return NULL;
    }
    for (uint32_t i = 0; i < n; i++)
        s->kids[s->kid_off[par[i]] + fill[par[i]]++] = i;
    free(fill);
    free(par);
    return s;
}

long snap_lookup(const snap *s, uint32_t d, const char *name)
{
    char path[HUB_PATH_MAX + HUB_NAME_MAX + 2];
    size_t nl = strlen(name);
    if (nl == 0 || nl > HUB_NAME_MAX || strchr(name, '/')) return -1;
    if (d >= s->tree.n) {
        snprintf(path, sizeof path, "%s", name);
    } else {
        if (strlen(s->tree.e[d].path) + nl + 1 >= sizeof path) return -1;
        if (snprintf(path, sizeof path, "%s/%s", s->tree.e[d].path, name) >= (int)sizeof path)
            return -1;
    }
    return hub_tree_find(&s->tree, path);
}

const char *snap_name(const snap *s, uint32_t i)
{
    const char *p = s->tree.e[i].path, *slash = strrchr(p, '/');
    return slash ? slash + 1 : p;
}

/* ---- persisted metadata ---- */

static void repo_meta_dir(const hub_repo *ref, char *buf, size_t cap)
{
    /* A one-segment id shares its folder with the org of that name: its own data goes one
     * level down, under a name no repo can have. */
    snprintf(buf, cap, "%s/%s%s", ref->kind == HUB_DATASET ? "datasets" : "models", ref->id,
             strchr(ref->id, '/') ? "" : "/@self");
}

static void repo_ref_key(const hub_repo *ref, char *buf, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    if (!ref->rev[0]) {
        snprintf(buf, cap, "@default");
        return;
    }
    size_t o = 0;
    buf[o++] = 'r';
    buf[o++] = '-';
    for (const unsigned char *p = (const unsigned char *)ref->rev; *p && o + 4 < cap; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '_') {
            buf[o++] = (char)*p;
        } else {
            buf[o++] = '%';
            buf[o++] = hex[*p >> 4];
            buf[o++] = hex[*p & 15];
        }
    }
    buf[o] = 0;
}

static void repo_save_ref(const repo *r, const repo_ctx *ctx)
{
    char dir[HUB_ID_MAX + 16], key[3 * HUB_REV_MAX + 8], rel[1200];
    repo_meta_dir(&r->ref, dir, sizeof dir);
    repo_ref_key(&r->ref, key, sizeof key);
    snprintf(rel, sizeof rel, "%s/refs/%s", dir, key);
    json_t *j = json_pack("{s:s,s:I,s:I}", "commit", r->cur->commit, "mtime",
                          (json_int_t)r->cur->mtime, "checked", (json_int_t)r->checked);
    char *txt = j ? json_dumps(j, JSON_COMPACT) : NULL;
    if (txt) cache_meta_write(ctx->cache, rel, txt, strlen(txt));
    free(txt);
    json_decref(j);
}

static void repo_tree_rel(const hub_repo *ref, const char *commit, char *buf, size_t cap)
{
    char dir[HUB_ID_MAX + 16];
    repo_meta_dir(ref, dir, sizeof dir);
    snprintf(buf, cap, "%s/trees/%s.json", dir, commit);
}

/* The tree of commit from the persisted metadata. */
static int repo_meta_tree(const repo *r, const repo_ctx *ctx, const char *commit, hub_tree *t)
{
    char rel[600], *txt;
    size_t len;
    repo_tree_rel(&r->ref, commit, rel, sizeof rel);
    int rc = cache_meta_read(ctx->cache, rel, &txt, &len);
    if (rc < 0) return rc;
    rc = hub_tree_parse(txt, len, rel, t);
    free(txt);
    return rc;
}

static void repo_adopt(repo *r, snap *s, repo_register_fn reg, void *arg)
{
    snap **na = realloc(r->all, (r->nall + 1) * sizeof *na);
    if (na) {
        r->all = na;
        r->all[r->nall++] = s;
    } /* else: leaked on unmount rather than freed while in use */
    reg(arg, s);
    r->cur = s;
}

/* Load the last known commit (whatever its age) and its tree from the metadata. */
static int repo_load_meta(repo *r, const repo_ctx *ctx, repo_register_fn reg, void *arg)
{
    char dir[HUB_ID_MAX + 16], key[3 * HUB_REV_MAX + 8], rel[1200], *txt;
    size_t len;
    repo_meta_dir(&r->ref, dir, sizeof dir);
    repo_ref_key(&r->ref, key, sizeof key);
    snprintf(rel, sizeof rel, "%s/refs/%s", dir, key);
    if (cache_meta_read(ctx->cache, rel, &txt, &len) < 0) return -ENOENT;
    json_t *j = json_loadb(txt, len, 0, NULL);
    free(txt);
    const char *commit = json_string_value(json_object_get(j, "commit"));
    hub_tree t;
    int rc = -ENOENT;
    if (commit && hub_is_commit(commit) && repo_meta_tree(r, ctx, commit, &t) == 0) {
        snap *s = snap_build(&r->ref, commit,
                             (int64_t)json_integer_value(json_object_get(j, "mtime")), &t);
        if (s) {
            repo_adopt(r, s, reg, arg);
            r->checked = (int64_t)json_integer_value(json_object_get(j, "checked"));
            ctx->counters->meta_loads++;
            rc = 0;
        }
    }
    json_decref(j);
    return rc;
}

static int repo_load_hfcache(repo *r, const repo_ctx *ctx, repo_register_fn reg, void *arg)
{
    char commit[41];
    hub_tree t;
    if (hub_hfcache_commit(ctx->hubcache, &r->ref, commit) < 0 ||
        hub_hfcache_tree(ctx->hubcache, &r->ref, commit, &t) < 0)
        return -ENOENT;
    snap *s = snap_build(&r->ref, commit, (int64_t)time(NULL), &t);
    if (!s) return -ENOMEM;
    repo_adopt(r, s, reg, arg);
    ctx->counters->hfcache_loads++;
    return 0;
}

/* Ask the Hub which commit the reference means now; build a snapshot if it moved. */
static int repo_check(repo *r, const repo_ctx *ctx, repo_register_fn reg, void *arg)
{
    hub_commit c;
    int64_t now = (int64_t)time(NULL);
    ctx->counters->checks++;
    int rc =
        hub_fetch_commit(ctx->http, ctx->endpoint, &r->ref, &c, ctx->cancelled, ctx->cancel_arg);
    if (rc == 0 && r->cur && strcmp(r->cur->commit, c.sha) == 0) {
        r->checked = now;
        repo_save_ref(r, ctx);
        return 0;
    }
    hub_tree t;
    if (rc == 0 && repo_meta_tree(r, ctx, c.sha, &t) < 0) {
        char *json = NULL;
        rc = hub_fetch_tree(ctx->http, ctx->endpoint, &r->ref, c.sha, &t, &json, ctx->cancelled,
                            ctx->cancel_arg);
        if (rc == 0) {
            char rel[600];
            ctx->counters->trees_fetched++;
            repo_tree_rel(&r->ref, c.sha, rel, sizeof rel);
            cache_meta_write(ctx->cache, rel, json, strlen(json));
        }
        free(json);
    }
    if (rc == 0) {
        snap *s = snap_build(&r->ref, c.sha, c.mtime, &t);
        if (!s) return -ENOMEM;
        if (r->cur) {
            ctx->counters->new_commits++;
            log_info("%s%s%s%s: now at commit %s (was %s); new opens see it",
                     r->ref.kind == HUB_DATASET ? "datasets/" : "", r->ref.id,
                     r->ref.rev[0] ? "@" : "", r->ref.rev, c.sha, r->cur->commit);
        }
        repo_adopt(r, s, reg, arg);
        r->checked = now;
        repo_save_ref(r, ctx);
        return 0;
    }
    ctx->counters->check_failures++;
    if (r->cur) {
        log_warn("%s: could not recheck the revision (%s); serving the known commit %s", r->ref.id,
                 strerror(-rc), r->cur->commit);
        r->checked = now - ctx->revalidate_s + REPO_RETRY_S;
        return 0;
    }
    if (rc == -ENOENT || rc == -EACCES) {
        r->err = rc;
        r->err_time = now;
    }
    return rc;
}

/* Take r->mu, which another request may hold for a whole network check: wait in slices, so
 * that an interrupted caller can give up (-EINTR) instead of waiting uninterruptibly. */
static int repo_lock(repo *r, const repo_ctx *ctx)
{
    for (;;) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 50000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        int rc = pthread_mutex_timedlock(&r->mu, &ts);
        if (rc == 0) return 0;
        if (rc != ETIMEDOUT) return -rc;
        if (ctx->cancelled && ctx->cancelled(ctx->cancel_arg)) return -EINTR;
    }
}

int repo_snapshot(repo *r, const repo_ctx *ctx, repo_register_fn reg, void *arg, snap **out)
{
    *out = NULL;
    int lrc = repo_lock(r, ctx);
    if (lrc < 0) return lrc;
    int64_t now = (int64_t)time(NULL);
    int64_t neg = ctx->revalidate_s < REPO_NEGATIVE_MAX_S ? ctx->revalidate_s : REPO_NEGATIVE_MAX_S;
    int rc = 0;
    int fresh = r->cur && (r->pinned || now - r->checked < ctx->revalidate_s);
    if (!fresh && !r->cur && r->err && now - r->err_time < neg) {
        rc = r->err;
        goto out;
    }
    if (!fresh && !r->cur) {
        if (repo_load_meta(r, ctx, reg, arg) == 0) {
            fresh = r->pinned || now - r->checked < ctx->revalidate_s;
        } else if (repo_load_hfcache(r, ctx, reg, arg) == 0) {
            r->checked = now;
            fresh = 1;
        }
    }
    if (!fresh) {
        if (ctx->offline || !ctx->http)
            rc = r->cur ? 0 : -ENOENT;
        else
            rc = repo_check(r, ctx, reg, arg);
    }
out:
    *out = rc == 0 ? r->cur : NULL;
    pthread_mutex_unlock(&r->mu);
    return rc;
}
