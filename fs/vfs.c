/* vfs.c — see vfs.h. */
#include "vfs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "repo.h"

#define INO_ROOT 1
#define INO_DATASETS 2
#define INO_META 3
#define INO_STATS 4
#define INO_FIRST_FREE 5
/* readdir entries whose inode is not known yet (the kernel's FUSE_UNKNOWN_INO) */
#define VFS_UNKNOWN_INO 0xffffffffu

/* How long the kernel may keep names and attributes. Inside a snapshot everything is immutable
 * (a new commit gets new inodes), so long; the repo's own name under its org decides which
 * snapshot a path walk enters, so a branch keeps it short. */
#define TTL_IMMUTABLE 86400.0
#define TTL_BRANCH 1.0

typedef enum seg_kind { SEG_ROOT, SEG_DATASETS, SEG_META, SEG_STATS, SEG_ORG, SEG_SNAP } seg_kind;

typedef struct org {
    hub_kind kind;
    char name[HUB_NAME_MAX + 1];
    uint64_t ino;
} org;

typedef struct vrepo {
    org *org;
    char name[HUB_NAME_MAX + 1]; /* REPO or REPO@REV, as in the directory */
    repo *r;
    atomic_int offline_noted; /* the log said it is not cached (offline): once per mount */
} vrepo;

/* A range of inode numbers and what it shows. */
typedef struct seg {
    uint64_t base, count;
    seg_kind kind;
    void *ptr; /* org* or snap* */
} seg;

typedef struct vfs_counters {
    _Atomic int64_t lookups, negative_lookups, opens, reads, bytes_read, hfcache_bytes, read_errors,
        readdirs;
} vfs_counters;

struct vfs {
    vfs_opts o;
    repo_ctx rctx;
    repo_counters rcount;
    vfs_counters n;
    http_client *http;
    blob_pool *blobs;
    struct fuse_session *se; /* where cache invalidations go */
    time_t started;
    _Atomic int initialized; /* the kernel's INIT was answered */
    uid_t uid;
    gid_t gid;

    pthread_rwlock_t seglk; /* segs, next_ino */
    seg *segs;
    size_t nsegs, capsegs;
    uint64_t next_ino;

    pthread_mutex_t mu; /* orgs, repos */
    org **orgs;
    size_t norgs;
    vrepo **repos;
    size_t nrepos;

    pthread_mutex_t fhmu; /* open_fh */
    struct vfh *open_fh;  /* handles the kernel has not released (closed at detach) */
};

typedef enum fh_kind { FH_BLOB, FH_LOCAL, FH_TEXT } fh_kind;

typedef struct vfh {
    struct vfh *prev, *next; /* in vfs.open_fh */
    fh_kind kind;
    blob *b;
    int fd;
    char *text;
    size_t len;
} vfh;

typedef struct dent {
    char *name;
    uint64_t ino;
    mode_t type;
} dent;

typedef struct dirlist {
    dent *e;
    size_t n, cap;
} dirlist;

/* ---- inode segments ---- */

static int vfs_seg_add_locked(vfs *v, uint64_t count, seg_kind kind, void *ptr, uint64_t *base)
{
    if (v->nsegs == v->capsegs) {
        size_t nc = v->capsegs ? v->capsegs * 2 : 64;
        seg *ns = realloc(v->segs, nc * sizeof *ns);
        if (!ns) return -ENOMEM;
        v->segs = ns;
        v->capsegs = nc;
    }
    *base = v->next_ino;
    v->segs[v->nsegs++] = (seg){v->next_ino, count, kind, ptr};
    v->next_ino += count;
    return 0;
}

/* Snapshots are registered while their repo's lock is held; never fails the caller: on
 * allocation failure the snapshot gets inodes that resolve to nothing (ESTALE). */
static void vfs_register_snap(void *arg, snap *s)
{
    vfs *v = arg;
    pthread_rwlock_wrlock(&v->seglk);
    if (vfs_seg_add_locked(v, s->tree.n + 1, SEG_SNAP, s, &s->base) < 0) {
        s->base = v->next_ino;
        v->next_ino += s->tree.n + 1;
    }
    pthread_rwlock_unlock(&v->seglk);
}

static int vfs_seg_find(vfs *v, uint64_t ino, seg *out)
{
    static const seg_kind fixed[] = {SEG_ROOT, SEG_ROOT, SEG_DATASETS, SEG_META, SEG_STATS};
    if (ino >= INO_ROOT && ino < INO_FIRST_FREE) {
        *out = (seg){ino, 1, fixed[ino], NULL};
        return 0;
    }
    int rc = -ESTALE;
    pthread_rwlock_rdlock(&v->seglk);
    size_t lo = 0, hi = v->nsegs;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v->segs[mid].base + v->segs[mid].count <= ino) {
            lo = mid + 1;
        } else if (v->segs[mid].base > ino) {
            hi = mid;
        } else {
            *out = v->segs[mid];
            rc = 0;
            break;
        }
    }
    pthread_rwlock_unlock(&v->seglk);
    return rc;
}

/* ---- orgs and repos ---- */

static org *vfs_org_get(vfs *v, hub_kind kind, const char *name)
{
    pthread_mutex_lock(&v->mu);
    for (size_t i = 0; i < v->norgs; i++)
        if (v->orgs[i]->kind == kind && strcmp(v->orgs[i]->name, name) == 0) {
            org *g = v->orgs[i];
            pthread_mutex_unlock(&v->mu);
            return g;
        }
    org *g = calloc(1, sizeof *g);
    org **no = realloc(v->orgs, (v->norgs + 1) * sizeof *no);
    if (no) v->orgs = no;
    if (!g || !no) {
        free(g);
        pthread_mutex_unlock(&v->mu);
        return NULL;
    }
    g->kind = kind;
    snprintf(g->name, sizeof g->name, "%s", name);
    pthread_rwlock_wrlock(&v->seglk);
    int rc = vfs_seg_add_locked(v, 1, SEG_ORG, g, &g->ino);
    pthread_rwlock_unlock(&v->seglk);
    if (rc < 0) {
        free(g);
        pthread_mutex_unlock(&v->mu);
        return NULL;
    }
    v->orgs[v->norgs++] = g;
    pthread_mutex_unlock(&v->mu);
    return g;
}

static int vfs_unhex(int c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* "REPO" or "REPO@REV" (REV percent-decoded) → the repo reference; -ENOENT when malformed. */
static int vfs_parse_repo_name(const org *g, const char *name, hub_repo *out)
{
    char base[HUB_NAME_MAX + 1];
    snprintf(base, sizeof base, "%s", name);
    char *at = strchr(base, '@');
    memset(out, 0, sizeof *out);
    out->kind = g->kind;
    if (at) {
        *at = 0;
        size_t o = 0;
        for (const char *p = at + 1; *p; p++) {
            int c = (unsigned char)*p;
            if (c == '%') {
                int hi = vfs_unhex(p[1]), lo = hi < 0 ? -1 : vfs_unhex(p[2]);
                if (lo < 0) return -ENOENT;
                c = hi * 16 + lo;
                p += 2;
            }
            if (c < 0x20 || c == 0x7f || o + 1 >= sizeof out->rev) return -ENOENT;
            out->rev[o++] = (char)c;
        }
        if (o == 0) return -ENOENT;
    }
    if (!name[0]) { /* the org name itself as a one-segment (legacy) repo id, e.g. gpt2 */
        snprintf(out->id, sizeof out->id, "%s", g->name);
        return 0;
    }
    if (hub_check_repo_name(base) < 0) return -ENOENT;
    if (snprintf(out->id, sizeof out->id, "%s/%s", g->name, base) >= (int)sizeof out->id)
        return -ENOENT;
    return 0;
}

static vrepo *vfs_repo_get(vfs *v, org *g, const char *name)
{
    hub_repo ref;
    if (vfs_parse_repo_name(g, name, &ref) < 0) return NULL;
    pthread_mutex_lock(&v->mu);
    for (size_t i = 0; i < v->nrepos; i++)
        if (v->repos[i]->org == g && strcmp(v->repos[i]->name, name) == 0) {
            vrepo *vr = v->repos[i];
            pthread_mutex_unlock(&v->mu);
            return vr;
        }
    vrepo *vr = calloc(1, sizeof *vr);
    vrepo **nr = realloc(v->repos, (v->nrepos + 1) * sizeof *nr);
    if (nr) v->repos = nr;
    if (vr) vr->r = repo_new(&ref);
    if (!vr || !nr || !vr->r) {
        if (vr) repo_free(vr->r);
        free(vr);
        pthread_mutex_unlock(&v->mu);
        return NULL;
    }
    vr->org = g;
    snprintf(vr->name, sizeof vr->name, "%s", name);
    v->repos[v->nrepos++] = vr;
    pthread_mutex_unlock(&v->mu);
    return vr;
}

/* ---- attributes ---- */

static void vfs_attr(vfs *v, uint64_t ino, int is_dir, int64_t size, int64_t mtime, struct stat *st)
{
    memset(st, 0, sizeof *st);
    st->st_ino = ino;
    st->st_mode = is_dir ? S_IFDIR | 0555 : S_IFREG | 0444;
    st->st_nlink = is_dir ? 2 : 1;
    st->st_uid = v->uid;
    st->st_gid = v->gid;
    st->st_size = size;
    st->st_blocks = (size + 511) / 512;
    st->st_blksize = 1 << 20;
    st->st_mtime = st->st_ctime = st->st_atime = mtime ? mtime : v->started;
}

/* Attributes of ino; -ESTALE when it names nothing. */
static int vfs_getattr_ino(vfs *v, uint64_t ino, struct stat *st, double *ttl)
{
    seg s;
    int rc = vfs_seg_find(v, ino, &s);
    if (rc < 0) return rc;
    *ttl = TTL_IMMUTABLE;
    if (s.kind == SEG_STATS) {
        /* Size 0 with direct_io: each open reads a fresh document (like /proc files). */
        vfs_attr(v, ino, 0, 0, (int64_t)time(NULL), st);
        *ttl = 0;
        return 0;
    }
    if (s.kind != SEG_SNAP) {
        vfs_attr(v, ino, 1, 0, 0, st);
        return 0;
    }
    snap *sn = s.ptr;
    if (ino == sn->base) {
        vfs_attr(v, ino, 1, 0, sn->mtime, st);
        return 0;
    }
    const hub_entry *e = &sn->tree.e[ino - sn->base - 1];
    vfs_attr(v, ino, e->is_dir, e->is_dir ? 0 : e->size, sn->mtime, st);
    return 0;
}

static void vfs_reply_entry(fuse_req_t req, vfs *v, uint64_t ino, double entry_ttl)
{
    struct fuse_entry_param e;
    double attr_ttl;
    memset(&e, 0, sizeof e);
    int rc = vfs_getattr_ino(v, ino, &e.attr, &attr_ttl);
    if (rc < 0) {
        fuse_reply_err(req, -rc);
        return;
    }
    e.ino = ino;
    e.generation = 1;
    e.entry_timeout = entry_ttl;
    e.attr_timeout = attr_ttl < entry_ttl ? attr_ttl : entry_ttl;
    fuse_reply_entry(req, &e);
}

/* A cached "no such name": the kernel remembers it, so repeated probes do not come back. */
static void vfs_reply_noent(fuse_req_t req, vfs *v, double ttl)
{
    struct fuse_entry_param e;
    memset(&e, 0, sizeof e);
    e.entry_timeout = ttl;
    v->n.negative_lookups++;
    fuse_reply_entry(req, &e);
}

/* ---- lookup ---- */

/* One request's interrupt, or the session ending: wherever a request waits on the network,
 * either ends the wait (so killing the reader frees it at once, not after --max-wait). */
typedef struct vfs_cancel {
    fuse_req_t req;
    const vfs *v;
} vfs_cancel;

static int vfs_cancelled(void *arg)
{
    const vfs_cancel *c = arg;
    if (c->v->rctx.cancelled && c->v->rctx.cancelled(c->v->rctx.cancel_arg)) return 1;
    return fuse_req_interrupted(c->req);
}

static int vfs_snapshot(fuse_req_t req, vfs *v, repo *r, snap **s)
{
    vfs_cancel c = {req, v};
    repo_ctx ctx = v->rctx;
    ctx.cancelled = vfs_cancelled;
    ctx.cancel_arg = &c;
    return repo_snapshot(r, &ctx, vfs_register_snap, v, s);
}

/* MOUNT/NAME/x where NAME/x is no repo: NAME may be a one-segment (legacy) repo id, as the Hub
 * still resolves them (gpt2 → openai-community/gpt2), and x one of its files. The inode of x,
 * or 0 when there is none. */
static uint64_t vfs_legacy_ino(fuse_req_t req, vfs *v, org *g, const char *name)
{
    vrepo *vr = vfs_repo_get(v, g, "");
    snap *s;
    if (!vr || vfs_snapshot(req, v, vr->r, &s) < 0) return 0;
    long i = snap_lookup(s, (uint32_t)s->tree.n, name);
    return i < 0 ? 0 : s->base + 1 + (uint64_t)i;
}

/* Offline, ENOENT only means "not cached": without a word, that reads as "no such repo". Said
 * once per repo, since loaders probe many names and the kernel forgets a negative entry soon. */
static void vfs_note_offline_miss(vfs *v, vrepo *vr)
{
    if (!v->o.offline || atomic_exchange(&vr->offline_noted, 1)) return;
    log_warn("%s%s/%s: not in the cache, and offline (--offline / HF_HUB_OFFLINE): nothing is "
             "fetched",
             vr->org->kind == HUB_DATASET ? "datasets/" : "", vr->org->name, vr->name);
}

static void vfs_lookup_repo(fuse_req_t req, vfs *v, org *g, const char *name)
{
    vrepo *vr = vfs_repo_get(v, g, name);
    snap *s;
    int rc = vr ? vfs_snapshot(req, v, vr->r, &s) : -ENOENT;
    uint64_t legacy = rc == -ENOENT && !strchr(name, '@') ? vfs_legacy_ino(req, v, g, name) : 0;
    if (legacy) {
        vfs_reply_entry(req, v, legacy, TTL_BRANCH);
        return;
    }
    if (rc == -ENOENT) {
        /* The one-segment repo ORG of the fallback is a guess: only ORG/NAME is named. */
        if (vr) vfs_note_offline_miss(v, vr);
        vfs_reply_noent(req, v, TTL_BRANCH);
        return;
    }
    if (rc < 0) {
        fuse_reply_err(req, -rc);
        return;
    }
    vfs_reply_entry(req, v, s->base, repo_is_pinned(vr->r) ? TTL_IMMUTABLE : TTL_BRANCH);
}

static void vfs_op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    vfs *v = fuse_req_userdata(req);
    seg s;
    v->n.lookups++;
    if (vfs_seg_find(v, parent, &s) < 0) {
        fuse_reply_err(req, ESTALE);
        return;
    }
    switch (s.kind) {
    case SEG_ROOT:
    case SEG_DATASETS: {
        if (s.kind == SEG_ROOT && strcmp(name, ".hfmount") == 0) {
            vfs_reply_entry(req, v, INO_META, TTL_IMMUTABLE);
            return;
        }
        if (s.kind == SEG_ROOT && strcmp(name, "datasets") == 0) {
            vfs_reply_entry(req, v, INO_DATASETS, TTL_IMMUTABLE);
            return;
        }
        /* Any well-formed org name can be entered (orgs cannot be listed); nothing is sent. */
        org *g = hub_check_repo_name(name) == 0
                     ? vfs_org_get(v, s.kind == SEG_ROOT ? HUB_MODEL : HUB_DATASET, name)
                     : NULL;
        if (!g) {
            vfs_reply_noent(req, v, TTL_IMMUTABLE);
            return;
        }
        {
            vfs_reply_entry(req, v, g->ino, TTL_IMMUTABLE);
            return;
        }
    }
    case SEG_META:
        if (strcmp(name, "stats") == 0) {
            vfs_reply_entry(req, v, INO_STATS, TTL_IMMUTABLE);
            return;
        }
        {
            vfs_reply_noent(req, v, TTL_IMMUTABLE);
            return;
        }
    case SEG_STATS:
        fuse_reply_err(req, ENOTDIR);
        return;
    case SEG_ORG:
        vfs_lookup_repo(req, v, s.ptr, name);
        return;
    case SEG_SNAP: {
        snap *sn = s.ptr;
        uint32_t d = parent == sn->base ? (uint32_t)sn->tree.n : (uint32_t)(parent - sn->base - 1);
        if (d < sn->tree.n && !sn->tree.e[d].is_dir) {
            fuse_reply_err(req, ENOTDIR);
            return;
        }
        long i = snap_lookup(sn, d, name);
        if (i < 0) {
            vfs_reply_noent(req, v, TTL_IMMUTABLE);
            return;
        }
        vfs_reply_entry(req, v, sn->base + 1 + (uint64_t)i, TTL_IMMUTABLE);
        return;
    }
    }
}

static void vfs_op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
    /* Inodes live as long as the mount (they are ranges of immutable snapshots). */
    fuse_reply_none(req);
}

static void vfs_op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
    fuse_reply_none(req);
}

static void vfs_op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    vfs *v = fuse_req_userdata(req);
    struct stat st;
    double ttl;
    int rc = vfs_getattr_ino(v, ino, &st, &ttl);
    if (rc < 0)
        fuse_reply_err(req, -rc);
    else
        fuse_reply_attr(req, &st, ttl);
}

/* ---- directories ---- */

static int dirlist_add(dirlist *l, const char *name, uint64_t ino, mode_t type)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->e[i].name, name) == 0) return 0;
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 32;
        dent *ne = realloc(l->e, nc * sizeof *ne);
        if (!ne) return -ENOMEM;
        l->e = ne;
        l->cap = nc;
    }
    if (!(l->e[l->n].name = strdup(name))) return -ENOMEM;
    l->e[l->n].ino = ino;
    l->e[l->n++].type = type;
    return 0;
}

static void dirlist_free(dirlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->e[i].name);
    free(l->e);
    free(l);
}

/* Names from the huggingface_hub cache: folders "<kind>s--ORG--NAME". With org NULL, the ORG
 * parts; else the NAME parts of that org. */
static void vfs_list_hfcache(vfs *v, hub_kind kind, const char *orgname, dirlist *l)
{
    if (!v->o.hubcache) return;
    DIR *d = opendir(v->o.hubcache);
    if (!d) return;
    const char *pre = kind == HUB_DATASET ? "datasets--" : "models--";
    size_t pl = strlen(pre);
    struct dirent *de;
    while ((de = readdir(d))) {
        if (strncmp(de->d_name, pre, pl) != 0) continue;
        char buf[512];
        snprintf(buf, sizeof buf, "%s", de->d_name + pl);
        char *sep = strstr(buf, "--");
        if (!sep) continue; /* a legacy one-segment id */
        *sep = 0;
        const char *want = orgname ? sep + 2 : buf;
        if (orgname && strcmp(buf, orgname) != 0) continue;
        if (hub_check_repo_name(want) == 0) dirlist_add(l, want, VFS_UNKNOWN_INO, S_IFDIR);
    }
    closedir(d);
}

static void vfs_list_meta(vfs *v, const char *rel, dirlist *l)
{
    char **names;
    size_t n;
    if (cache_meta_list(v->o.cache, rel, &names, &n) < 0) return;
    for (size_t i = 0; i < n; i++) {
        if (hub_check_repo_name(names[i]) == 0) dirlist_add(l, names[i], VFS_UNKNOWN_INO, S_IFDIR);
        free(names[i]);
    }
    free(names);
}

static int vfs_fill_dir(vfs *v, const seg *s, uint64_t ino, dirlist *l)
{
    dirlist_add(l, ".", ino, S_IFDIR);
    dirlist_add(l, "..", VFS_UNKNOWN_INO, S_IFDIR);
    switch (s->kind) {
    case SEG_ROOT:
        dirlist_add(l, ".hfmount", INO_META, S_IFDIR);
        dirlist_add(l, "datasets", INO_DATASETS, S_IFDIR);
        vfs_list_meta(v, "models", l);
        vfs_list_hfcache(v, HUB_MODEL, NULL, l);
        return 0;
    case SEG_DATASETS:
        vfs_list_meta(v, "datasets", l);
        vfs_list_hfcache(v, HUB_DATASET, NULL, l);
        return 0;
    case SEG_META:
        dirlist_add(l, "stats", INO_STATS, S_IFREG);
        return 0;
    case SEG_ORG: {
        org *g = s->ptr;
        char rel[HUB_NAME_MAX + 16];
        snprintf(rel, sizeof rel, "%s/%s", g->kind == HUB_DATASET ? "datasets" : "models", g->name);
        vfs_list_meta(v, rel, l);
        vfs_list_hfcache(v, g->kind, g->name, l);
        pthread_mutex_lock(&v->mu);
        snap *legacy = NULL;
        for (size_t i = 0; i < v->nrepos; i++) {
            if (v->repos[i]->org != g || !repo_current(v->repos[i]->r)) continue;
            if (v->repos[i]->name[0])
                dirlist_add(l, v->repos[i]->name, VFS_UNKNOWN_INO, S_IFDIR);
            else
                legacy = repo_current(v->repos[i]->r);
        }
        pthread_mutex_unlock(&v->mu);
        /* a legacy repo's files show beside the org's repos */
        for (uint32_t k = legacy ? legacy->kid_off[legacy->tree.n] : 0;
             legacy && k < legacy->kid_off[legacy->tree.n + 1]; k++) {
            uint32_t i = legacy->kids[k];
            dirlist_add(l, snap_name(legacy, i), legacy->base + 1 + i,
                        legacy->tree.e[i].is_dir ? S_IFDIR : S_IFREG);
        }
        return 0;
    }
    case SEG_SNAP: {
        snap *sn = s->ptr;
        uint32_t d = ino == sn->base ? (uint32_t)sn->tree.n : (uint32_t)(ino - sn->base - 1);
        if (d < sn->tree.n && !sn->tree.e[d].is_dir) return -ENOTDIR;
        for (uint32_t k = sn->kid_off[d]; k < sn->kid_off[d + 1]; k++) {
            uint32_t i = sn->kids[k];
            if (dirlist_add(l, snap_name(sn, i), sn->base + 1 + i,
                            sn->tree.e[i].is_dir ? S_IFDIR : S_IFREG) < 0)
                return -ENOMEM;
        }
        return 0;
    }
    case SEG_STATS:
        return -ENOTDIR;
    }
    return -ENOTDIR;
}

static void vfs_op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    vfs *v = fuse_req_userdata(req);
    seg s;
    int rc = vfs_seg_find(v, ino, &s);
    dirlist *l = rc == 0 ? calloc(1, sizeof *l) : NULL;
    if (rc == 0 && !l) rc = -ENOMEM;
    if (rc == 0) rc = vfs_fill_dir(v, &s, ino, l);
    if (rc < 0) {
        if (l) dirlist_free(l);
        fuse_reply_err(req, -rc);
        return;
    }
    v->n.readdirs++;
    fi->fh = (uint64_t)(uintptr_t)l;
    fi->cache_readdir = s.kind == SEG_SNAP;
    fi->keep_cache = s.kind == SEG_SNAP;
    fuse_reply_open(req, fi);
}

static void vfs_op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                           struct fuse_file_info *fi)
{
    dirlist *l = (dirlist *)(uintptr_t)fi->fh;
    char *buf = malloc(size);
    if (!buf) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    size_t used = 0;
    for (size_t i = (size_t)off; i < l->n; i++) {
        struct stat st = {.st_ino = l->e[i].ino, .st_mode = l->e[i].type};
        size_t need =
            fuse_add_direntry(req, buf + used, size - used, l->e[i].name, &st, (off_t)(i + 1));
        if (need > size - used) break;
        used += need;
    }
    fuse_reply_buf(req, buf, used);
    free(buf);
}

static void vfs_op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    dirlist_free((dirlist *)(uintptr_t)fi->fh);
    fuse_reply_err(req, 0);
}

/* ---- files ---- */

/* Open handles are listed so that those the kernel never releases (a reader killed while the
 * kernel's own read-ahead still waits, then an unmount) are closed before the pool goes. */
static void vfs_fh_link(vfs *v, vfh *h)
{
    pthread_mutex_lock(&v->fhmu);
    h->prev = NULL;
    h->next = v->open_fh;
    if (h->next) h->next->prev = h;
    v->open_fh = h;
    pthread_mutex_unlock(&v->fhmu);
}

static void vfs_fh_close(vfs *v, vfh *h)
{
    pthread_mutex_lock(&v->fhmu);
    if (h->prev)
        h->prev->next = h->next;
    else
        v->open_fh = h->next;
    if (h->next) h->next->prev = h->prev;
    pthread_mutex_unlock(&v->fhmu);
    if (h->kind == FH_BLOB && h->b)
        blob_close(h->b);
    else if (h->kind == FH_LOCAL)
        close(h->fd);
    free(h->text);
    free(h);
}

static int vfs_open_snap_file(vfs *v, snap *sn, const hub_entry *e, vfh *h)
{
    char *local = hub_hfcache_file(v->o.hubcache, &sn->ref, sn->commit, e->path, e->size);
    if (local) {
        h->fd = open(local, O_RDONLY | O_CLOEXEC);
        free(local);
        if (h->fd >= 0) {
            h->kind = FH_LOCAL;
            return 0;
        }
    }
    const char *id = hub_entry_content_id(e);
    if (!v->blobs || strspn(id, "0") == strlen(id)) {
        log_error("%s:%s: not in the cache and no content id to fetch it by", sn->ref.id, e->path);
        return -EIO;
    }
    blob_desc d = {.id = id,
                   .size = e->size,
                   .is_lfs = e->is_lfs,
                   .sha256 = e->sha256,
                   .repo = &sn->ref,
                   .commit = sn->commit,
                   .path = e->path};
    h->kind = FH_BLOB;
    return blob_open(v->blobs, &d, &h->b);
}

static void vfs_op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    vfs *v = fuse_req_userdata(req);
    seg s;
    if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) {
        fuse_reply_err(req, EROFS);
        return;
    }
    int rc = vfs_seg_find(v, ino, &s);
    vfh *h = rc == 0 ? calloc(1, sizeof *h) : NULL;
    if (rc == 0 && !h) rc = -ENOMEM;
    if (rc == 0 && s.kind == SEG_STATS) {
        h->kind = FH_TEXT; /* the document is built by each read */
        fi->direct_io = 1;
    } else if (rc == 0 && s.kind == SEG_SNAP && ino != ((snap *)s.ptr)->base) {
        snap *sn = s.ptr;
        const hub_entry *e = &sn->tree.e[ino - sn->base - 1];
        rc = e->is_dir ? -EISDIR : vfs_open_snap_file(v, sn, e, h);
        /* The bytes of an inode are one commit's, forever: keep the kernel's pages. */
        fi->keep_cache = 1;
    } else if (rc == 0) {
        rc = -EISDIR;
    }
    if (rc < 0) {
        free(h ? h->text : NULL);
        free(h);
        fuse_reply_err(req, -rc);
        return;
    }
    v->n.opens++;
    fi->fh = (uint64_t)(uintptr_t)h;
    vfs_fh_link(v, h);
    if (fuse_reply_open(req, fi) == -ENOENT) /* the caller was interrupted meanwhile */
        vfs_fh_close(v, h);
}

/* pread until len bytes or end of file: a short read would shrink the file in the kernel. */
static ssize_t vfs_pread_full(int fd, char *buf, size_t len, off_t off)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = pread(fd, buf + done, len - done, off + (off_t)done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -errno;
        if (n == 0) break;
        done += (size_t)n;
    }
    return (ssize_t)done;
}

static void vfs_reply_iov(const struct iovec *iov, int n, void *arg)
{
    /* A failed reply (the reader is gone) is the kernel's business, not an error to send. */
    if (n == 0)
        fuse_reply_buf((fuse_req_t)arg, NULL, 0); /* end of file */
    else
        fuse_reply_iov((fuse_req_t)arg, iov, n);
}

static void vfs_op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                        struct fuse_file_info *fi)
{
    vfs *v = fuse_req_userdata(req);
    v->n.reads++;
    if (ino == INO_STATS) {
        /* Built for each read and owned by it: nothing a concurrent RELEASE could free. */
        char *text = vfs_stats_json(v);
        size_t len = text ? strlen(text) : 0, o = (size_t)off < len ? (size_t)off : len;
        if (text)
            fuse_reply_buf(req, text + o, size < len - o ? size : len - o);
        else
            fuse_reply_err(req, ENOMEM);
        free(text);
        return;
    }
    vfh *h = (vfh *)(uintptr_t)fi->fh;
    long n;
    if (h->kind == FH_LOCAL) {
        char *buf = malloc(size ? size : 1);
        n = buf ? vfs_pread_full(h->fd, buf, size, off) : -ENOMEM;
        if (n >= 0) {
            v->n.hfcache_bytes += n;
            v->n.bytes_read += n;
            fuse_reply_buf(req, buf, (size_t)n);
        }
        free(buf);
    } else {
        /* The reply is written straight from the blocks in memory. */
        vfs_cancel c = {req, v};
        n = blob_read_iov(h->b, off, size, vfs_cancelled, &c, vfs_reply_iov, req);
        if (n >= 0) v->n.bytes_read += n;
    }
    if (n < 0) {
        v->n.read_errors++;
        fuse_reply_err(req, (int)-n);
    }
}

static void vfs_op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    vfs_fh_close(fuse_req_userdata(req), (vfh *)(uintptr_t)fi->fh);
    fuse_reply_err(req, 0);
}

static void vfs_op_statfs(fuse_req_t req, fuse_ino_t ino)
{
    vfs *v = fuse_req_userdata(req);
    struct statvfs st;
    if (statvfs(cache_path(v->o.cache), &st) < 0) memset(&st, 0, sizeof st);
    st.f_flag |= ST_RDONLY;
    st.f_namemax = HUB_NAME_MAX;
    fuse_reply_statfs(req, &st);
}

/* ---- everything that would write ---- */

static void vfs_op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                           struct fuse_file_info *fi)
{
    fuse_reply_err(req, EROFS);
}

static void vfs_op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                         dev_t rdev)
{
    fuse_reply_err(req, EROFS);
}

static void vfs_op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
    fuse_reply_err(req, EROFS);
}

static void vfs_op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    fuse_reply_err(req, EROFS);
}

static void vfs_op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
    fuse_reply_err(req, EROFS);
}

static void vfs_op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                          const char *newname, unsigned int flags)
{
    fuse_reply_err(req, EROFS);
}

static void vfs_op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
    fuse_reply_err(req, EROFS);
}

static void vfs_op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                         struct fuse_file_info *fi)
{
    fuse_reply_err(req, EROFS);
}

static void vfs_op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                          struct fuse_file_info *fi)
{
    fuse_reply_err(req, EROFS);
}

static void vfs_op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
                            size_t size, int flags)
{
    fuse_reply_err(req, EROFS);
}

static void vfs_op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
    fuse_reply_err(req, EROFS);
}

static void vfs_op_init(void *userdata, struct fuse_conn_info *conn)
{
    /* Big reads and many of them in flight: the block fetcher is built for it. */
    conn->max_readahead = conn->max_readahead > (4u << 20) ? (4u << 20) : conn->max_readahead;
    conn->max_background = 64;
    conn->congestion_threshold = 48;
    if (conn->capable & FUSE_CAP_CACHE_SYMLINKS) conn->want |= FUSE_CAP_CACHE_SYMLINKS;
    /* One READ at a time per direct-I/O syscall: with async DIO the kernel may finish the
     * syscall on a short answer while sibling READs of the stats file are still in flight and
     * its RELEASE overtakes them. */
    conn->want &= ~FUSE_CAP_ASYNC_DIO;
    ((vfs *)userdata)->initialized = 1;
}

static const struct fuse_lowlevel_ops vfs_ops_table = {
    .init = vfs_op_init,
    .lookup = vfs_op_lookup,
    .forget = vfs_op_forget,
    .forget_multi = vfs_op_forget_multi,
    .getattr = vfs_op_getattr,
    .setattr = vfs_op_setattr,
    .mknod = vfs_op_mknod,
    .mkdir = vfs_op_mkdir,
    .unlink = vfs_op_unlink,
    .rmdir = vfs_op_unlink,
    .symlink = vfs_op_symlink,
    .rename = vfs_op_rename,
    .link = vfs_op_link,
    .open = vfs_op_open,
    .read = vfs_op_read,
    .write = vfs_op_write,
    .release = vfs_op_release,
    .opendir = vfs_op_opendir,
    .readdir = vfs_op_readdir,
    .releasedir = vfs_op_releasedir,
    .statfs = vfs_op_statfs,
    .setxattr = vfs_op_setxattr,
    .removexattr = vfs_op_removexattr,
    .create = vfs_op_create,
};

int vfs_initialized(vfs *v)
{
    return v->initialized;
}

const struct fuse_lowlevel_ops *vfs_ops(void)
{
    return &vfs_ops_table;
}

/* ---- stats ---- */

char *vfs_stats_json(vfs *v)
{
    blob_stats b = {0};
    cache_stats c;
    if (v->blobs) blob_pool_get_stats(v->blobs, &b);
    cache_get_stats(v->o.cache, &c);
    json_t *j = json_pack("{s:s,s:I,s:b}", "endpoint", v->o.endpoint, "uptime_s",
                          (json_int_t)(time(NULL) - v->started), "offline", v->o.offline);
    char *hbuf = malloc(65536);
    if (v->http && hbuf && http_stats_json(v->http, hbuf, 65536) > 0) {
        json_t *hj = json_loads(hbuf, 0, NULL);
        if (hj) json_object_set_new(j, "http", hj);
    }
    free(hbuf);
    json_object_set_new(
        j, "blocks",
        json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "bytes_network",
                  (json_int_t)b.bytes_network, "bytes_cache", (json_int_t)b.bytes_cache,
                  "bytes_shared", (json_int_t)b.bytes_shared, "fetched",
                  (json_int_t)b.blocks_fetched, "cache_hits", (json_int_t)b.blocks_cache_hits,
                  "readahead", (json_int_t)b.blocks_readahead, "flight_joins",
                  (json_int_t)b.flight_joins, "resolves", (json_int_t)b.resolves, "resolve_retries",
                  (json_int_t)b.resolve_retries, "sha256_ok", (json_int_t)b.sha256_ok, "sha256_bad",
                  (json_int_t)b.sha256_bad, "fetch_errors", (json_int_t)b.fetch_errors, "oid_bad",
                  (json_int_t)b.oid_bad, "files_open", (json_int_t)b.blobs_open));
    json_object_set_new(
        j, "cache",
        json_pack("{s:s,s:I,s:I,s:I,s:I,s:I}", "dir", cache_path(v->o.cache), "bytes",
                  (json_int_t)c.bytes, "max_bytes", (json_int_t)c.max_bytes, "blocks_written",
                  (json_int_t)c.blocks_written, "blocks_corrupt", (json_int_t)c.blocks_corrupt,
                  "blocks_evicted", (json_int_t)c.blocks_evicted));
    json_object_set_new(j, "metadata",
                        json_pack("{s:I,s:I,s:I,s:I,s:I,s:I}", "from_cache",
                                  (json_int_t)v->rcount.meta_loads, "from_hf_cache",
                                  (json_int_t)v->rcount.hfcache_loads, "revision_checks",
                                  (json_int_t)v->rcount.checks, "check_failures",
                                  (json_int_t)v->rcount.check_failures, "trees_fetched",
                                  (json_int_t)v->rcount.trees_fetched, "new_commits",
                                  (json_int_t)v->rcount.new_commits));
    json_object_set_new(
        j, "fs",
        json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "lookups", (json_int_t)v->n.lookups,
                  "negative_lookups", (json_int_t)v->n.negative_lookups, "opens",
                  (json_int_t)v->n.opens, "reads", (json_int_t)v->n.reads, "bytes_read",
                  (json_int_t)v->n.bytes_read, "bytes_hf_cache", (json_int_t)v->n.hfcache_bytes,
                  "read_errors", (json_int_t)v->n.read_errors, "readdirs",
                  (json_int_t)v->n.readdirs));
    char *txt = json_dumps(j, JSON_INDENT(2));
    json_decref(j);
    if (txt) {
        size_t n = strlen(txt);
        char *t2 = realloc(txt, n + 2);
        if (t2) {
            t2[n] = '\n';
            t2[n + 1] = 0;
            txt = t2;
        }
    }
    return txt;
}

/* ---- life cycle ---- */

int vfs_new(const vfs_opts *o, vfs **out)
{
    vfs *v = calloc(1, sizeof *v);
    if (!v) return -ENOMEM;
    v->o = *o;
    v->rctx = (repo_ctx){.cache = o->cache,
                         .endpoint = o->endpoint,
                         .hubcache = o->hubcache,
                         .offline = o->offline,
                         .revalidate_s = o->revalidate_s,
                         .counters = &v->rcount};
    v->started = time(NULL);
    v->uid = getuid();
    v->gid = getgid();
    v->next_ino = INO_FIRST_FREE;
    pthread_rwlock_init(&v->seglk, NULL);
    pthread_mutex_init(&v->mu, NULL);
    pthread_mutex_init(&v->fhmu, NULL);
    *out = v;
    return 0;
}

void vfs_attach(vfs *v, http_client *http, blob_pool *blobs, int (*cancelled)(void *), void *arg)
{
    if (!blobs) /* detaching: the session is over, no release will come any more */
        while (v->open_fh)
            vfs_fh_close(v, v->open_fh);
    v->http = http;
    v->blobs = blobs;
    v->rctx.http = http;
    v->rctx.cancelled = cancelled;
    v->rctx.cancel_arg = arg;
}

void vfs_set_session(vfs *v, struct fuse_session *se)
{
    v->se = se;
}

/* The inodes of every snapshot's files whose content is id (malloc'd, *n of them; on
 * allocation failure the ones found so far). */
static uint64_t *vfs_content_inodes(vfs *v, const char *id, size_t *n)
{
    uint64_t *inos = NULL;
    size_t cap = 0;
    *n = 0;
    pthread_rwlock_rdlock(&v->seglk);
    for (size_t i = 0; i < v->nsegs; i++) {
        const snap *sn = v->segs[i].kind == SEG_SNAP ? v->segs[i].ptr : NULL;
        for (size_t k = 0; sn && k < sn->tree.n; k++) {
            const hub_entry *e = &sn->tree.e[k];
            if (e->is_dir || strcmp(hub_entry_content_id(e), id) != 0) continue;
            if (*n == cap) {
                size_t nc = cap ? cap * 2 : 8;
                uint64_t *ni = realloc(inos, nc * sizeof *ni);
                if (!ni) goto out;
                inos = ni;
                cap = nc;
            }
            inos[(*n)++] = sn->base + 1 + k;
        }
    }
out:
    pthread_rwlock_unlock(&v->seglk);
    return inos;
}

void vfs_bad_content(void *arg, const char *id)
{
    vfs *v = arg;
    size_t n;
    uint64_t *inos = vfs_content_inodes(v, id, &n);
    /* Outside seglk: each notification waits until the reads in progress on that inode are
     * answered, and new snapshots need the lock meanwhile. */
    /* Not once the session loop has ended: nobody would answer the reads the kernel waits for
     * before it lets go of the pages, and the unmount drops them anyway. */
    for (size_t i = 0; i < n && v->se && !fuse_session_exited(v->se); i++) {
        int rc = fuse_lowlevel_notify_inval_inode(v->se, inos[i], 0, 0);
        if (rc < 0 && rc != -ENOENT) /* ENOENT: the kernel holds nothing of that inode */
            log_warn("%s: cannot drop the kernel's cached pages of inode %llu (%s): they may "
                     "serve the bad bytes until evicted or remounted",
                     id, (unsigned long long)inos[i], strerror(-rc));
    }
    log_debug("%s: the kernel's cached pages of %zu inode(s) dropped", id, n);
    free(inos);
}

void vfs_free(vfs *v)
{
    if (!v) return;
    for (size_t i = 0; i < v->nrepos; i++) {
        repo_free(v->repos[i]->r);
        free(v->repos[i]);
    }
    for (size_t i = 0; i < v->norgs; i++)
        free(v->orgs[i]);
    free(v->repos);
    free(v->orgs);
    free(v->segs);
    pthread_rwlock_destroy(&v->seglk);
    pthread_mutex_destroy(&v->mu);
    pthread_mutex_destroy(&v->fhmu);
    free(v);
}
