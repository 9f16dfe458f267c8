/* blob.h — the bytes of one remote file, fetched block by block.
 *
 * Owns the read path between the FUSE layer and the network: a file's content (keyed by its
 * content id, shared by every inode, handle and repo that has the same bytes) is split into
 * aligned blocks of --block-size bytes. A read is served from the cache when the block is on
 * disk, else the block is fetched with one ranged GET:
 *   - single-flight: concurrent misses on one block make exactly one request, the others wait
 *     for its buffer (and give up on the FUSE request's interrupt);
 *   - the /resolve/ redirect target is resolved once per file and reused for every block until
 *     it expires or is refused, then resolved again once;
 *   - sequential access is detected per file (a few offset streams, whatever handle or process
 *     reads), and the next --readahead blocks are fetched in parallel by a small worker pool;
 *   - once every block of an LFS file is on disk its sha256 is checked against the Hub's; a
 *     mismatch drops the file's blocks, is logged and is reported to on_bad_content (copies
 *     of the bad bytes made outside this module are the caller's to drop). A git-stored file
 *     small enough to be one block is checked against its git oid before it is stored or
 *     served.
 * blob_read_iov() hands over the whole range asked for (clamped at end of file) or an error: never
 * a short read before end of file. Thread-safe. */
#ifndef HF_BLOB_H
#define HF_BLOB_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "cache.h"
#include "http.h"
#include "hub.h"

typedef struct blob_pool blob_pool;
typedef struct blob blob;

typedef struct blob_pool_opts {
    http_client *http;
    cache *cache;
    const char *endpoint;
    uint32_t block_size;
    int readahead;              /* blocks fetched ahead of a sequential reader */
    int workers;                /* read-ahead threads */
    int (*stopping)(void *arg); /* nonzero: the mount is going away, abandon transfers */
    void *stop_arg;
    /* Optional: an LFS file's whole-file sha256 check failed, so bytes already served under
     * content id may be wrong (a reader's copies, e.g. the kernel's page cache, should go).
     * Called once per failed check, after the blocks are dropped (new reads fetch them again)
     * and before sha256_bad counts it, from a worker thread that holds no lock and that no
     * read waits on, so it may block until the reads in progress finish. */
    void (*on_bad_content)(void *arg, const char *id);
    void *bad_content_arg;
} blob_pool_opts;

typedef struct blob_desc {
    const char *id; /* content id: LFS sha256 or git oid */
    int64_t size;
    int is_lfs;
    const char *sha256; /* LFS sha256 ("" when not LFS) */
    const hub_repo *repo;
    const char *commit; /* the commit the bytes are resolved at */
    const char *path;   /* path in the repo, for resolving and log lines */
} blob_desc;

typedef struct blob_stats {
    int64_t bytes_network, bytes_cache, bytes_shared; /* shared: from a block in memory */
    int64_t blocks_fetched, blocks_cache_hits, blocks_readahead, flight_joins;
    int64_t resolves, resolve_retries, sha256_ok, sha256_bad, fetch_errors;
    int64_t blobs_open;
    int64_t oid_bad; /* git-stored files whose bytes did not match their git oid */
} blob_stats;

int blob_pool_new(const blob_pool_opts *o, blob_pool **out);
/* Stops the workers (in-flight transfers are cancelled) and frees the pool. */
void blob_pool_free(blob_pool *p);
void blob_pool_get_stats(blob_pool *p, blob_stats *s);

/* A reference to the blob of d->id (created on first use). */
int blob_open(blob_pool *p, const blob_desc *d, blob **out);
void blob_close(blob *b);
/* Read [off, off+len): hands sink the bytes as pieces that point into the blocks themselves (no
 * copy for a block in memory), valid only during the call; iov is NULL and n 0 at end of file.
 * sink is called once on success and not at all on error. Returns the bytes read (len unless
 * clamped at EOF) or a negative errno: -EIO (fetch failed), -ENOENT/-EACCES (the Hub refused),
 * -EINTR (cancelled). */
typedef void (*blob_sink)(const struct iovec *iov, int n, void *arg);
long blob_read_iov(blob *b, int64_t off, size_t len, int (*cancelled)(void *), void *arg,
                   blob_sink sink, void *sink_arg);

#endif
