/* cache.c — see cache.h. */
#include "cache.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "log.h"

#define CACHE_HDR 4096
#define CACHE_ALIGN 4096 /* O_DIRECT alignment of buffers, offsets and lengths */
#define CACHE_MAGIC "HFMBLK1\n"
#define CACHE_HDR_FIXED 48 /* bytes before the chunk sums */
#define CACHE_TOUCH_S 60

typedef struct cache_pin_ent {
    char id[65];
    int count;
} cache_pin_ent;

struct cache {
    char *dir;
    int64_t max_bytes;
    _Atomic int64_t bytes;
    _Atomic int64_t written, corrupt, evicted;
    _Atomic unsigned tmp_seq;
    _Atomic int no_direct; /* the cache's file system refused O_DIRECT */
    pthread_mutex_t mu;    /* pins, evicting */
    cache_pin_ent *pins;
    size_t npins, cappins;
    int evicting;
};

/* The fixed part of a block header, stored little-endian as the host writes it (a cache is
 * local to one machine; the magic and the header hash reject anything else). */
typedef struct cache_hdr {
    char magic[8];
    uint64_t id_hash;
    int64_t index;
    uint32_t len, chunk, nchunks, pad;
    uint64_t hdr_hash;
} cache_hdr;

_Static_assert(sizeof(cache_hdr) == CACHE_HDR_FIXED, "cache_hdr layout");

static uint32_t cache_chunk_size(uint32_t bs)
{
    if (bs <= (16u << 20)) return 64u << 10;
    return ((bs / 256) + 4095) & ~4095u;
}

static uint64_t cache_id_hash(const char *id, uint32_t bs)
{
    char buf[96];
    int n = snprintf(buf, sizeof buf, "%s.%u", id, bs);
    return XXH3_64bits(buf, (size_t)n);
}

static int cache_valid_id(const char *id)
{
    size_t n = strlen(id);
    if (n < 2 || n > 64) return 0;
    for (size_t i = 0; i < n; i++)
        if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f'))) return 0;
    return 1;
}

static void cache_file_dir(const cache *c, const char *id, uint32_t bs, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s/blocks/%.2s/%s.%u", c->dir, id, id, bs);
}

static int cache_mkdirs(char *path)
{
    for (char *p = path + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        int rc = mkdir(path, 0755);
        *p = '/';
        if (rc < 0 && errno != EEXIST) return -errno;
    }
    if (mkdir(path, 0755) < 0 && errno != EEXIST) return -errno;
    return 0;
}

static void cache_scan_sizes(cache *c)
{
    char p1[PATH_MAX];
    snprintf(p1, sizeof p1, "%s/blocks", c->dir);
    DIR *d1 = opendir(p1);
    struct dirent *e1, *e2, *e3;
    int64_t total = 0;
    while (d1 && (e1 = readdir(d1))) {
        if (e1->d_name[0] == '.') continue;
        char p2[PATH_MAX];
        if (snprintf(p2, sizeof p2, "%s/%s", p1, e1->d_name) >= (int)sizeof p2) continue;
        DIR *d2 = opendir(p2);
        while (d2 && (e2 = readdir(d2))) {
            if (e2->d_name[0] == '.') continue;
            char p3[PATH_MAX];
            if (snprintf(p3, sizeof p3, "%s/%s", p2, e2->d_name) >= (int)sizeof p3) continue;
            DIR *d3 = opendir(p3);
            while (d3 && (e3 = readdir(d3))) {
                struct stat st;
                if (e3->d_name[0] != '.' && fstatat(dirfd(d3), e3->d_name, &st, 0) == 0)
                    total += st.st_size;
            }
            if (d3) closedir(d3);
        }
        if (d2) closedir(d2);
    }
    if (d1) closedir(d1);
    c->bytes = total;
}

int cache_open(const char *dir, int64_t max_bytes, cache **out)
{
    cache *c = calloc(1, sizeof *c);
    if (!c || !(c->dir = strdup(dir))) {
        free(c);
        return -ENOMEM;
    }
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/blocks", dir);
    int rc = cache_mkdirs(p);
    if (rc == 0) {
        snprintf(p, sizeof p, "%s/meta", dir);
        rc = cache_mkdirs(p);
    }
    if (rc < 0) {
        log_error("cache: cannot create %s: %s", p, strerror(-rc));
        free(c->dir);
        free(c);
        return rc;
    }
    c->max_bytes = max_bytes;
    pthread_mutex_init(&c->mu, NULL);
    cache_scan_sizes(c);
    *out = c;
    return 0;
}

void cache_close(cache *c)
{
    if (!c) return;
    pthread_mutex_destroy(&c->mu);
    free(c->pins);
    free(c->dir);
    free(c);
}

const char *cache_path(const cache *c)
{
    return c->dir;
}

/* Delete the bad block file that was opened as *st (NULL: unknown, delete what is there). Two
 * readers may find the same bad block at once: only the one that deletes that very file counts
 * and logs it, and a good block stored under the name meanwhile is left alone. */
static void cache_drop_bad(cache *c, const char *path, const struct stat *st, const char *why)
{
    struct stat now;
    if (st && (stat(path, &now) < 0 || now.st_ino != st->st_ino || now.st_dev != st->st_dev)) {
        log_debug("cache: block %s was corrupt (%s), already dropped", path, why);
        return;
    }
    if (unlink(path) < 0) {
        log_debug("cache: block %s was corrupt (%s), already dropped", path, why);
        return;
    }
    log_warn("cache: block %s is corrupt (%s): dropped, it will be fetched again", path, why);
    if (st) c->bytes -= st->st_size;
    c->corrupt++;
}

/* Read and check the header of an open block file; the reason on failure, else NULL. */
static const char *cache_check_hdr(int fd, const char *id, uint32_t bs, int64_t idx,
                                   unsigned char *h, cache_hdr *hd, int64_t fsize)
{
    if (pread(fd, h, CACHE_HDR, 0) != CACHE_HDR) return "short header";
    memcpy(hd, h, sizeof *hd);
    uint64_t want = hd->hdr_hash;
    memset(h + offsetof(cache_hdr, hdr_hash), 0, 8);
    if (memcmp(hd->magic, CACHE_MAGIC, 8) != 0 || XXH3_64bits(h, CACHE_HDR) != want)
        return "header checksum";
    if (hd->id_hash != cache_id_hash(id, bs) || hd->index != idx)
        return "header names another block";
    if (hd->len == 0 || hd->len > bs || hd->chunk != cache_chunk_size(bs) ||
        hd->nchunks != (hd->len + hd->chunk - 1) / hd->chunk ||
        CACHE_HDR_FIXED + 8 * (size_t)hd->nchunks > CACHE_HDR)
        return "header fields";
    if (fsize != CACHE_HDR + (int64_t)hd->len) return "file size";
    return NULL;
}

int cache_block_read(cache *c, const char *id, uint32_t bs, int64_t idx, size_t off, size_t len,
                     void *dst)
{
    char dir[PATH_MAX - 32], path[PATH_MAX];
    if (!cache_valid_id(id) || len == 0) return -EINVAL;
    cache_file_dir(c, id, bs, dir, sizeof dir);
    snprintf(path, sizeof path, "%s/%lld", dir, (long long)idx);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? -ENOENT : -errno;
    unsigned char h[CACHE_HDR];
    cache_hdr hd;
    struct stat st;
    int have_st = fstat(fd, &st) == 0;
    const char *why = have_st ? NULL : "stat";
    if (!why) why = cache_check_hdr(fd, id, bs, idx, h, &hd, st.st_size);
    if (!why && off + len > hd.len) why = "shorter than the file says";
    if (why) {
        close(fd);
        cache_drop_bad(c, path, have_st ? &st : NULL, why);
        return -EBADMSG;
    }
    size_t c0 = off / hd.chunk, c1 = (off + len - 1) / hd.chunk;
    size_t s0 = c0 * hd.chunk, s1 = (c1 + 1) * hd.chunk;
    if (s1 > hd.len) s1 = hd.len;
    /* A chunk-aligned range (the kernel's reads usually are) is read straight into dst. */
    int direct = s0 == off && s1 == off + len;
    unsigned char *buf = direct ? dst : malloc(s1 - s0);
    if (!buf) {
        close(fd);
        return -ENOMEM;
    }
    ssize_t got = pread(fd, buf, s1 - s0, CACHE_HDR + (off_t)s0);
    if (got != (ssize_t)(s1 - s0)) why = "short data";
    for (size_t k = c0; !why && k <= c1; k++) {
        size_t a = k * hd.chunk - s0, n = hd.chunk;
        if (k * hd.chunk + n > hd.len) n = hd.len - k * hd.chunk;
        uint64_t sum;
        memcpy(&sum, h + CACHE_HDR_FIXED + 8 * k, 8);
        if (XXH3_64bits(buf + a, n) != sum) why = "data checksum";
    }
    if (!why) {
        if (!direct) memcpy(dst, buf + (off - s0), len);
        /* The mtime is the LRU clock; refreshing it costs a write, so do it rarely. */
        if (c->max_bytes > 0 && st.st_mtime < time(NULL) - CACHE_TOUCH_S) futimens(fd, NULL);
    } else if (direct) {
        memset(dst, 0, len); /* never leave unverified bytes in the caller's buffer */
    }
    if (!direct) free(buf);
    close(fd);
    if (why) {
        cache_drop_bad(c, path, &st, why);
        return -EBADMSG;
    }
    return 0;
}

static void cache_maybe_evict(cache *c);

/* pwrite all of n bytes at off: 0, -errno, or -ENOSPC for a short write. */
static int cache_pwrite_all(int fd, const void *p, size_t n, off_t off)
{
    ssize_t w = pwrite(fd, p, n, off);
    if (w < 0) return -errno;
    return (size_t)w == n ? 0 : -ENOSPC;
}

static int cache_clear_direct(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 || fcntl(fd, F_SETFL, fl & ~O_DIRECT) < 0 ? -errno : 0;
}

/* The header, the data's page-aligned head (O_DIRECT when direct) and its unaligned tail,
 * which O_DIRECT cannot write: the tail goes through the page cache after clearing it. */
static int cache_store_parts(int fd, const unsigned char *h, const void *data, size_t len,
                             int direct)
{
    size_t head = direct ? len & ~(size_t)(CACHE_ALIGN - 1) : len;
    int rc = cache_pwrite_all(fd, h, CACHE_HDR, 0);
    if (rc == 0) rc = cache_pwrite_all(fd, data, head, CACHE_HDR);
    if (rc < 0 || head == len) return rc;
    if ((rc = cache_clear_direct(fd)) < 0) return rc;
    return cache_pwrite_all(fd, (const unsigned char *)data + head, len - head,
                            CACHE_HDR + (off_t)head);
}

/* Write header and data to the new file tmp. When the data is page aligned, it goes with
 * O_DIRECT: the device reads it from the caller's buffer, so the CPU copies nothing into the
 * page cache (the bytes are already in the FUSE file's page cache, or about to be; caching
 * them twice only evicts something useful). A file system without O_DIRECT (tmpfs before
 * Linux 6.6, some network file systems) is remembered and written through the page cache.
 * The unaligned tail of a last block is written buffered after clearing O_DIRECT. */
static int cache_block_store(cache *c, const char *tmp, const unsigned char *h, const void *data,
                             size_t len, int *fdp)
{
    int flags = O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC;
    int direct = !c->no_direct && (uintptr_t)data % CACHE_ALIGN == 0 && len >= CACHE_ALIGN;
    int fd = open(tmp, flags | (direct ? O_DIRECT : 0), 0644);
    if (fd < 0 && direct && errno == EINVAL) {
        /* Refused after the file was created (the check comes at open, past O_CREAT). */
        c->no_direct = 1;
        direct = 0;
        unlink(tmp);
        fd = open(tmp, flags, 0644);
    }
    *fdp = fd;
    if (fd < 0) return -errno;
    int rc = cache_store_parts(fd, h, data, len, direct);
    if (rc == -EINVAL && direct) {
        /* O_DIRECT accepted at open but refused at write (the device's alignment rules) */
        c->no_direct = 1;
        if ((rc = cache_clear_direct(fd)) == 0) rc = cache_store_parts(fd, h, data, len, 0);
    }
    return rc;
}

int cache_block_write(cache *c, const char *id, uint32_t bs, int64_t idx, const void *data,
                      size_t len)
{
    char dir[PATH_MAX - 64], path[PATH_MAX], tmp[PATH_MAX];
    if (!cache_valid_id(id) || len == 0 || len > bs) return -EINVAL;
    cache_file_dir(c, id, bs, dir, sizeof dir);
    int rc = cache_mkdirs(dir);
    if (rc < 0) return rc;
    _Alignas(CACHE_ALIGN) unsigned char h[CACHE_HDR] = {0};
    cache_hdr hd = {.id_hash = cache_id_hash(id, bs),
                    .index = idx,
                    .len = (uint32_t)len,
                    .chunk = cache_chunk_size(bs)};
    memcpy(hd.magic, CACHE_MAGIC, 8);
    hd.nchunks = (hd.len + hd.chunk - 1) / hd.chunk;
    for (uint32_t k = 0; k < hd.nchunks; k++) {
        size_t n = k == hd.nchunks - 1 ? len - (size_t)k * hd.chunk : hd.chunk;
        uint64_t sum = XXH3_64bits((const unsigned char *)data + (size_t)k * hd.chunk, n);
        memcpy(h + CACHE_HDR_FIXED + 8 * k, &sum, 8);
    }
    memcpy(h, &hd, sizeof hd);
    hd.hdr_hash = XXH3_64bits(h, CACHE_HDR);
    memcpy(h + offsetof(cache_hdr, hdr_hash), &hd.hdr_hash, 8);

    snprintf(path, sizeof path, "%s/%lld", dir, (long long)idx);
    snprintf(tmp, sizeof tmp, "%s/.tmp.%d.%u", dir, (int)getpid(), c->tmp_seq++);
    /* No fsync: the checksummed header makes a torn or unwritten block detectable, and the
     * rename makes the name appear only once the whole block was written. */
    int fd = -1;
    rc = cache_block_store(c, tmp, h, data, len, &fd);
    if (fd >= 0 && close(fd) < 0 && rc == 0) rc = -errno;
    if (rc == 0 && rename(tmp, path) < 0) rc = -errno;
    if (rc < 0) {
        unlink(tmp);
        log_warn("cache: cannot store block %s: %s", path, strerror(-rc));
        return rc;
    }
    c->bytes += CACHE_HDR + (int64_t)len;
    c->written++;
    cache_maybe_evict(c);
    return 0;
}

int cache_block_scan(cache *c, const char *id, uint32_t bs, int64_t nblocks, unsigned char *present)
{
    char dir[PATH_MAX];
    memset(present, 0, (size_t)nblocks);
    if (!cache_valid_id(id)) return -EINVAL;
    cache_file_dir(c, id, bs, dir, sizeof dir);
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        char *end;
        if (de->d_name[0] < '0' || de->d_name[0] > '9') continue;
        long long k = strtoll(de->d_name, &end, 10);
        if (*end == 0 && k >= 0 && k < nblocks) present[k] = 1;
    }
    closedir(d);
    return 0;
}

int cache_file_drop(cache *c, const char *id, uint32_t bs)
{
    char dir[PATH_MAX - 300];
    if (!cache_valid_id(id)) return -EINVAL;
    cache_file_dir(c, id, bs, dir, sizeof dir);
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        char p[PATH_MAX];
        struct stat st;
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        if (stat(p, &st) == 0 && unlink(p) == 0) c->bytes -= st.st_size;
    }
    closedir(d);
    rmdir(dir);
    return 0;
}

int cache_file_is_verified(cache *c, const char *id, uint32_t bs)
{
    char dir[PATH_MAX - 16], p[PATH_MAX];
    cache_file_dir(c, id, bs, dir, sizeof dir);
    snprintf(p, sizeof p, "%s/verified", dir);
    return access(p, F_OK) == 0;
}

int cache_file_set_verified(cache *c, const char *id, uint32_t bs)
{
    char dir[PATH_MAX - 16], p[PATH_MAX];
    cache_file_dir(c, id, bs, dir, sizeof dir);
    snprintf(p, sizeof p, "%s/verified", dir);
    int fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return -errno;
    close(fd);
    return 0;
}

/* ---- pins and eviction ---- */

void cache_pin(cache *c, const char *id)
{
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < c->npins; i++)
        if (strcmp(c->pins[i].id, id) == 0) {
            c->pins[i].count++;
            pthread_mutex_unlock(&c->mu);
            return;
        }
    if (c->npins == c->cappins) {
        size_t nc = c->cappins ? 2 * c->cappins : 16;
        cache_pin_ent *np = realloc(c->pins, nc * sizeof *np);
        if (!np) {
            pthread_mutex_unlock(&c->mu);
            return; /* unpinned: at worst evictable, never wrong */
        }
        c->pins = np;
        c->cappins = nc;
    }
    snprintf(c->pins[c->npins].id, sizeof c->pins[0].id, "%s", id);
    c->pins[c->npins++].count = 1;
    pthread_mutex_unlock(&c->mu);
}

void cache_unpin(cache *c, const char *id)
{
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < c->npins; i++)
        if (strcmp(c->pins[i].id, id) == 0) {
            if (--c->pins[i].count == 0) c->pins[i] = c->pins[--c->npins];
            break;
        }
    pthread_mutex_unlock(&c->mu);
}

static int cache_is_pinned_locked(cache *c, const char *id)
{
    for (size_t i = 0; i < c->npins; i++)
        if (strcmp(c->pins[i].id, id) == 0) return 1;
    return 0;
}

typedef struct cache_victim {
    int64_t mtime, size;
    char *path;
} cache_victim;

static int cache_victim_cmp(const void *a, const void *b)
{
    const cache_victim *x = a, *y = b;
    return (x->mtime > y->mtime) - (x->mtime < y->mtime);
}

/* Collect every unpinned block file with its last-use time. */
static size_t cache_collect(cache *c, cache_victim **out)
{
    size_t n = 0, cap = 0;
    cache_victim *v = NULL;
    char p1[PATH_MAX];
    snprintf(p1, sizeof p1, "%s/blocks", c->dir);
    DIR *d1 = opendir(p1);
    struct dirent *e1, *e2, *e3;
    while (d1 && (e1 = readdir(d1))) {
        char p2[PATH_MAX];
        if (e1->d_name[0] == '.') continue;
        if (snprintf(p2, sizeof p2, "%s/%s", p1, e1->d_name) >= (int)sizeof p2) continue;
        DIR *d2 = opendir(p2);
        while (d2 && (e2 = readdir(d2))) {
            char p3[PATH_MAX], id[NAME_MAX + 1];
            if (e2->d_name[0] == '.') continue;
            if (snprintf(id, sizeof id, "%s", e2->d_name) >= (int)sizeof id) continue;
            char *dot = strchr(id, '.');
            if (dot) *dot = 0;
            pthread_mutex_lock(&c->mu);
            int pinned = cache_is_pinned_locked(c, id);
            pthread_mutex_unlock(&c->mu);
            if (pinned) continue;
            if (snprintf(p3, sizeof p3, "%s/%s", p2, e2->d_name) >= (int)sizeof p3) continue;
            DIR *d3 = opendir(p3);
            while (d3 && (e3 = readdir(d3))) {
                struct stat st;
                char p4[PATH_MAX];
                if (e3->d_name[0] < '0' || e3->d_name[0] > '9') continue;
                if (snprintf(p4, sizeof p4, "%s/%s", p3, e3->d_name) >= (int)sizeof p4) continue;
                if (stat(p4, &st) < 0) continue;
                if (n == cap) {
                    size_t nc = cap ? cap * 2 : 256;
                    cache_victim *nv = realloc(v, nc * sizeof *nv);
                    if (!nv) break;
                    v = nv;
                    cap = nc;
                }
                v[n].mtime = st.st_mtime;
                v[n].size = st.st_size;
                v[n].path = strdup(p4);
                if (v[n].path) n++;
            }
            if (d3) closedir(d3);
        }
        if (d2) closedir(d2);
    }
    if (d1) closedir(d1);
    *out = v;
    return n;
}

static void cache_maybe_evict(cache *c)
{
    if (c->max_bytes <= 0 || c->bytes <= c->max_bytes) return;
    pthread_mutex_lock(&c->mu);
    int busy = c->evicting;
    c->evicting = 1;
    pthread_mutex_unlock(&c->mu);
    if (busy) return;
    cache_victim *v = NULL;
    size_t n = cache_collect(c, &v);
    log_debug("cache: over --cache-max: %zu blocks may be evicted", n);
    qsort(v, n, sizeof *v, cache_victim_cmp);
    /* Go down to 90% so that eviction runs once per batch of blocks, not once per block. */
    int64_t goal = c->max_bytes - c->max_bytes / 10;
    for (size_t i = 0; i < n; i++) {
        if (c->bytes > goal && unlink(v[i].path) == 0) {
            c->bytes -= v[i].size;
            c->evicted++;
        }
        free(v[i].path);
    }
    free(v);
    if (c->bytes > c->max_bytes)
        log_warn("cache: %lld bytes in use exceed --cache-max %lld (blocks of open files are "
                 "kept)",
                 (long long)c->bytes, (long long)c->max_bytes);
    pthread_mutex_lock(&c->mu);
    c->evicting = 0;
    pthread_mutex_unlock(&c->mu);
}

/* ---- metadata ---- */

static int cache_meta_path(cache *c, const char *rel, char *buf, size_t cap)
{
    if (strstr(rel, "..") || rel[0] == '/') return -EINVAL;
    snprintf(buf, cap, "%s/meta/%s", c->dir, rel);
    return 0;
}

int cache_meta_write(cache *c, const char *rel, const char *data, size_t len)
{
    char path[PATH_MAX], tmp[PATH_MAX + 32];
    int rc = cache_meta_path(c, rel, path, sizeof path);
    if (rc < 0) return rc;
    char *slash = strrchr(path, '/');
    *slash = 0;
    rc = cache_mkdirs(path);
    *slash = '/';
    if (rc < 0) return rc;
    snprintf(tmp, sizeof tmp, "%s.tmp.%d.%u", path, (int)getpid(), c->tmp_seq++);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) return -errno;
    if (write(fd, data, len) != (ssize_t)len || fsync(fd) < 0) rc = errno ? -errno : -EIO;
    close(fd);
    if (rc == 0 && rename(tmp, path) < 0) rc = -errno;
    if (rc < 0) {
        unlink(tmp);
        log_warn("cache: cannot write %s: %s", path, strerror(-rc));
    }
    return rc;
}

int cache_meta_read(cache *c, const char *rel, char **data, size_t *len)
{
    char path[PATH_MAX];
    int rc = cache_meta_path(c, rel, path, sizeof path);
    if (rc < 0) return rc;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    struct stat st;
    if (fstat(fd, &st) < 0 || st.st_size > (1LL << 30)) {
        close(fd);
        return -EIO;
    }
    char *buf = malloc((size_t)st.st_size + 1);
    ssize_t got = buf ? read(fd, buf, (size_t)st.st_size) : -1;
    close(fd);
    if (got != st.st_size) {
        free(buf);
        return -EIO;
    }
    buf[got] = 0;
    *data = buf;
    *len = (size_t)got;
    return 0;
}

int cache_meta_list(cache *c, const char *rel, char ***names, size_t *n)
{
    char path[PATH_MAX];
    *names = NULL;
    *n = 0;
    int rc = cache_meta_path(c, rel, path, sizeof path);
    if (rc < 0) return rc;
    DIR *d = opendir(path);
    if (!d) return -errno;
    size_t cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        struct stat st;
        if (de->d_name[0] == '.' || fstatat(dirfd(d), de->d_name, &st, 0) < 0 ||
            !S_ISDIR(st.st_mode))
            continue;
        if (*n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            char **nn = realloc(*names, nc * sizeof *nn);
            if (!nn) break;
            *names = nn;
            cap = nc;
        }
        if (((*names)[*n] = strdup(de->d_name))) (*n)++;
    }
    closedir(d);
    return 0;
}

void cache_get_stats(cache *c, cache_stats *s)
{
    s->bytes = c->bytes;
    s->max_bytes = c->max_bytes;
    s->blocks_written = c->written;
    s->blocks_corrupt = c->corrupt;
    s->blocks_evicted = c->evicted;
}
