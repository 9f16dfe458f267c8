/* repo.h — which commit a repo reference means now, and that commit's file tree.
 *
 * Owns the revision policy of the mount. A repo reference (kind, id, revision as named in the
 * mount) maps to a snapshot: one commit and its validated tree, immutable once built. Snapshots
 * come, cheapest first, from
 *   1. memory, while the last check is younger than --revalidate (a commit never rechecks);
 *   2. the persisted metadata in the cache (refs with their check time, trees by commit), so a
 *      second mount within the revalidation period makes zero requests;
 *   3. the huggingface_hub cache (refs/<rev>, trees/<commit>.json or the snapshot folder);
 *   4. the Hub: one API request for revision → commit, plus the tree listing for a new commit.
 * When a check fails for a transient reason (offline, 429, 5xx) the known commit keeps serving:
 * "Hub unreachable" never means "repo deleted". A definitive 404/401/403 is cached as a negative
 * result for a while. A new commit gives a new snapshot with new inode numbers; snapshots are
 * never freed while the mount lives, so open files keep their commit's bytes. */
#ifndef HF_REPO_H
#define HF_REPO_H

#include <stdint.h>

#include "cache.h"
#include "http.h"
#include "hub.h"

typedef struct repo_counters {
    _Atomic int64_t meta_loads;     /* snapshots loaded from the persisted metadata */
    _Atomic int64_t hfcache_loads;  /* snapshots taken from the huggingface_hub cache */
    _Atomic int64_t checks;         /* revision → commit requests */
    _Atomic int64_t check_failures; /* of those, failed: the known commit kept serving */
    _Atomic int64_t trees_fetched;  /* tree listings fetched from the Hub */
    _Atomic int64_t new_commits;    /* a branch moved to a new commit */
} repo_counters;

typedef struct repo_ctx {
    http_client *http; /* NULL until the daemon is running: then nothing is fetched */
    cache *cache;
    const char *endpoint;
    const char *hubcache; /* $HF_HUB_CACHE, or NULL */
    int offline;
    int64_t revalidate_s;
    repo_counters *counters;
    hub_cancel_fn cancelled; /* e.g. the session is ending: stop waiting on the network */
    void *cancel_arg;
} repo_ctx;

typedef struct snap {
    hub_repo ref;
    char commit[41];
    int64_t mtime; /* commit date */
    hub_tree tree;
    uint32_t
        *kid_off; /* children of dir d (d = tree.n is the root): kids[kid_off[d]..kid_off[d+1]) */
    uint32_t *kids;
    uint64_t base; /* inode of the root dir; entry i is base + 1 + i */
} snap;

typedef struct repo repo;

/* Called once per new snapshot to give it inode numbers (sets s->base). */
typedef void (*repo_register_fn)(void *arg, snap *s);

repo *repo_new(const hub_repo *r);
void repo_free(repo *r);
const hub_repo *repo_ref(const repo *r);
/* nonzero when the reference names a commit (never revalidated). */
int repo_is_pinned(const repo *r);
/* The snapshot to serve now (see above). 0, -ENOENT, -EACCES, -EIO. */
int repo_snapshot(repo *r, const repo_ctx *ctx, repo_register_fn reg, void *arg, snap **out);
/* The current snapshot if one is loaded, without any check, else NULL. */
snap *repo_current(repo *r);

/* Index of the child name of dir d in s, or -1. */
long snap_lookup(const snap *s, uint32_t d, const char *name);
/* Last component of entry i's path. */
const char *snap_name(const snap *s, uint32_t i);

#endif
