/* hub.h — the Hub API as a read-only client sees it: repo references, revision → commit, tree
 * listings, file resolution, and the huggingface_hub cache on local disk.
 *
 * Owns the translation between the mount's names (ORG/REPO@REV, datasets/ORG/NAME) and the
 * Hub's URLs, and the validation of everything the Hub sends back: the server is not trusted,
 * so every tree entry is checked (no `.`/`..`/empty segments, no `\`, NUL or control characters,
 * bounded lengths, sane sizes, well-formed ids, no duplicates) and a bad entry is dropped with a
 * log line instead of being exposed. All network traffic goes through http_do().
 * Errors: -ENOENT (404), -EACCES (401/403), -EIO (anything else), -ENETDOWN (offline). */
#ifndef HF_HUB_H
#define HF_HUB_H

#include <stddef.h>
#include <stdint.h>

#include "http.h"

#define HUB_ID_MAX 256
#define HUB_REV_MAX 256
#define HUB_NAME_MAX 255         /* one path component */
#define HUB_PATH_MAX 4096        /* a whole path inside a repo */
#define HUB_SIZE_MAX (1LL << 42) /* 4 TiB: larger announced sizes are treated as hostile */

typedef enum hub_kind { HUB_MODEL = 0, HUB_DATASET = 1 } hub_kind;

typedef struct hub_repo {
    hub_kind kind;
    char id[HUB_ID_MAX];   /* "org/name" or a legacy one-segment "name" */
    char rev[HUB_REV_MAX]; /* as requested, decoded; "" = the default branch */
} hub_repo;

typedef struct hub_entry {
    char *path;   /* relative to the repo root, validated */
    int64_t size; /* real size (the LFS size for LFS files) */
    int is_dir;
    int is_lfs;
    char oid[41];    /* git blob/tree oid */
    char sha256[65]; /* LFS content sha256, "" when not LFS */
} hub_entry;

typedef struct hub_tree {
    hub_entry *e; /* sorted by path (bytewise); every ancestor directory present */
    size_t n;
} hub_tree;

typedef struct hub_commit {
    char sha[41];
    int64_t mtime; /* commit date, Unix time, or 0 */
} hub_commit;

/* nonzero when s is exactly 40 lowercase hex digits (an immutable commit id). */
int hub_is_commit(const char *s);
/* 0 when name is an acceptable repo/org name component, else -EINVAL. */
int hub_check_repo_name(const char *name);
/* 0 when path is an acceptable path inside a repo (see the contract above), else -EINVAL. */
int hub_check_path(const char *path);
/* The content id of a file entry: the LFS sha256, else the git oid. */
const char *hub_entry_content_id(const hub_entry *e);

/* Gives up (-EINTR) when cancelled(arg) turns nonzero; NULL = never. */
typedef int (*hub_cancel_fn)(void *arg);

/* Resolve r's revision to a commit with one API request. */
int hub_fetch_commit(http_client *h, const char *endpoint, const hub_repo *r, hub_commit *out,
                     hub_cancel_fn cancelled, void *arg);
/* List the whole tree of r at commit (recursive, following the Link pagination). On success
 * *json receives the validated entries in the Hub's own JSON form (for persisting), if non-NULL. */
int hub_fetch_tree(http_client *h, const char *endpoint, const hub_repo *r, const char *commit,
                   hub_tree *out, char **json, hub_cancel_fn cancelled, void *arg);
/* The /resolve/ URL of path at commit (malloc'd). */
char *hub_resolve_url(const char *endpoint, const hub_repo *r, const char *commit,
                      const char *path);

/* Parse a tree from the Hub's JSON (an array of entries, or several arrays concatenated by
 * hub_fetch_tree). Bad entries are dropped and logged; what names the source in log lines. */
int hub_tree_parse(const char *json, size_t len, const char *what, hub_tree *out);
/* Index of path in t, or -1. */
long hub_tree_find(const hub_tree *t, const char *path);
void hub_tree_free(hub_tree *t);

/* huggingface_hub cache ($HF_HUB_CACHE). commit: r->rev if it is a commit, else refs/<rev>. */
int hub_hfcache_commit(const char *hubcache, const hub_repo *r, char commit[41]);
/* The tree from trees/<commit>.json, or else from the snapshot folder (files present only). */
int hub_hfcache_tree(const char *hubcache, const hub_repo *r, const char *commit, hub_tree *out);
/* malloc'd real path of snapshots/<commit>/<path> if it is a regular file of size bytes inside
 * the cache, else NULL. */
char *hub_hfcache_file(const char *hubcache, const hub_repo *r, const char *commit,
                       const char *path, int64_t size);

#endif
