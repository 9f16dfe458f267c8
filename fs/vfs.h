/* vfs.h — the mount's namespace and the FUSE low-level operations.
 *
 * Owns the mapping from FUSE inodes to what they show:
 *   MOUNT/                     orgs present in the cache (and .hfmount, datasets)
 *   MOUNT/ORG/                 repos of ORG present in the cache; any ORG name can be entered
 *   MOUNT/ORG/REPO[@REV]/...   a model repo at its default branch or at REV (branch, tag,
 *                              commit; a REV with '/' is written percent-encoded, refs%2Fpr%2F1)
 *   MOUNT/datasets/ORG/NAME/…  datasets, the same way
 *   MOUNT/.hfmount/stats       JSON counters (requests, bytes, cache hits, retries, waits)
 * Each snapshot (repo at one commit, see repo.h) owns a contiguous range of inode numbers, so
 * an inode names one commit's file forever: an open file never mixes two commits' bytes, and
 * its kernel page cache can be kept across opens (keep_cache; dropped when its content fails
 * its whole-file check). Names that are not in a snapshot's tree answer ENOENT from memory with
 * zero requests. Offline, a repo that is not
 * cached answers ENOENT, and the log says so once per repo. Everything is read-only
 * (0444/0555); operations that would write answer EROFS. Every request gets exactly one reply.
 * Errors map 404 → ENOENT, 401/403 → EACCES, network exhausted → EIO. */
#ifndef HF_VFS_H
#define HF_VFS_H

#include <stdint.h>

#define FUSE_USE_VERSION 34
#include <fuse_lowlevel.h>

#include "blob.h"
#include "cache.h"
#include "http.h"

typedef struct vfs_opts {
    cache *cache;
    const char *endpoint;
    const char *hubcache; /* $HF_HUB_CACHE or NULL */
    int offline;
    int64_t revalidate_s;
} vfs_opts;

typedef struct vfs vfs;

/* The namespace; no threads are started and nothing is fetched until vfs_attach(). */
int vfs_new(const vfs_opts *o, vfs **out);
/* Give the running daemon its network client and block fetcher (created after daemonizing);
 * cancelled(arg) nonzero makes metadata requests give up (the session is ending).
 * vfs_attach(v, NULL, NULL, NULL, NULL) detaches, after the session: it closes the handles the
 * kernel never released, before the block pool is freed. */
void vfs_attach(vfs *v, http_client *http, blob_pool *blobs, int (*cancelled)(void *), void *arg);
/* The session whose kernel gets the cache invalidations below; set before the session loop
 * and the block pool's workers start. */
void vfs_set_session(vfs *v, struct fuse_session *se);
/* For blob_pool_opts.on_bad_content (arg: the vfs): content id failed its whole-file check, so
 * the kernel drops its cached pages (and mappings) of every inode that shows that content, in
 * every snapshot; the next reads come back to the mount, which fetches the blocks again. Must
 * not run on a FUSE request's thread: the kernel waits for the pages being read to finish. */
void vfs_bad_content(void *arg, const char *id);
void vfs_free(vfs *v);
/* The operations table; the session's userdata must be the vfs. */
const struct fuse_lowlevel_ops *vfs_ops(void);

/* nonzero once the kernel's INIT has been answered (the connection's settings are final). */
int vfs_initialized(vfs *v);

/* The stats document (as MOUNT/.hfmount/stats shows it), malloc'd. */
char *vfs_stats_json(vfs *v);

#endif
