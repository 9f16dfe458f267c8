/* cache.h — the on-disk cache: content-addressed, self-verifying blocks and persisted metadata.
 *
 * Owns everything under --cache-dir:
 *   blocks/<id[0:2]>/<id>.<blocksize>/<index>  one block of the file whose content id (LFS sha256
 *       or git oid) is <id>. A block file is a 4 KiB header — magic, a hash of the id, the
 *       index, the length, and an xxh3-64 of each 64 KiB chunk, the header itself hashed too —
 *       followed by the data. Blocks are written to a temporary file, fsync'd and renamed into
 *       place, so a crash (kill -9, power loss, full disk) leaves either no block or a whole one.
 *       Every read from disk checks the chunks it touches; a block that fails is deleted and
 *       reported as -EBADMSG, never served. The map of present blocks is the directory itself.
 *   blocks/<id[0:2]>/<id>.<blocksize>/verified  marker: the whole file matched its sha256.
 *   meta/...  small metadata files (refs, tree listings), written atomically (tmp+fsync+rename).
 * Content addressing means a file shared by two repos or revisions is stored once.
 * --cache-max: blocks are evicted oldest-use first (a block's mtime is its last use, refreshed
 * at most once a minute) when the total passes the limit, skipping files pinned as in use.
 * Thread-safe; several processes may share one cache directory (rename is the only
 * synchronisation the data needs: a block is whole or absent). */
#ifndef HF_CACHE_H
#define HF_CACHE_H

#include <stddef.h>
#include <stdint.h>

typedef struct cache cache;

typedef struct cache_stats {
    int64_t bytes;     /* bytes of block files on disk (as tracked by this process) */
    int64_t max_bytes; /* --cache-max, 0 = unlimited */
    int64_t blocks_written;
    int64_t blocks_corrupt; /* failed verification and were dropped */
    int64_t blocks_evicted;
} cache_stats;

/* Open (creating) the cache at dir; max_bytes 0 = unbounded. Scans the block tree once to
 * learn its size. */
int cache_open(const char *dir, int64_t max_bytes, cache **out);
void cache_close(cache *c);
const char *cache_path(const cache *c);

/* Copy [off, off+len) of block idx of file id into dst. 0, -ENOENT when the block is absent,
 * -EBADMSG when it was corrupt (it has been deleted), other negative errno on I/O errors.
 * The range must lie inside the block. */
int cache_block_read(cache *c, const char *id, uint32_t bs, int64_t idx, size_t off, size_t len,
                     void *dst);
/* Store a whole block (len <= bs; only the last block of a file is shorter). */
int cache_block_write(cache *c, const char *id, uint32_t bs, int64_t idx, const void *data,
                      size_t len);
/* Fill present[0..nblocks) with 1 for each block on disk (the headers are not read). */
int cache_block_scan(cache *c, const char *id, uint32_t bs, int64_t nblocks,
                     unsigned char *present);
/* Delete every block of id (e.g. after a sha256 mismatch). */
int cache_file_drop(cache *c, const char *id, uint32_t bs);
int cache_file_is_verified(cache *c, const char *id, uint32_t bs);
int cache_file_set_verified(cache *c, const char *id, uint32_t bs);

/* Files in use are never evicted. Counted: pin twice, unpin twice. */
void cache_pin(cache *c, const char *id);
void cache_unpin(cache *c, const char *id);

/* Metadata: rel is a relative path of validated components. Atomic replace. */
int cache_meta_write(cache *c, const char *rel, const char *data, size_t len);
/* *data malloc'd and NUL terminated. -ENOENT when absent. */
int cache_meta_read(cache *c, const char *rel, char **data, size_t *len);
/* Names of the subdirectories of meta/rel, malloc'd array of malloc'd strings. */
int cache_meta_list(cache *c, const char *rel, char ***names, size_t *n);

void cache_get_stats(cache *c, cache_stats *s);

#endif
