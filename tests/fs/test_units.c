/* Unit tests of hfmount's modules without FUSE or network: sha256 against FIPS vectors, name
 * and path validation, tree parsing of hostile listings, the block cache (round trip, partial
 * reads, corruption of data, header and length, eviction), metadata, and repo snapshots loaded
 * from persisted metadata with no network client at all. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache.h"
#include "hub.h"
#include "repo.h"
#include "sha1.h"
#include "sha256.h"

static int failures;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);               \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

static void sha_hex(const void *data, size_t n, char out[65])
{
    sha256_ctx c;
    CHECK(sha256_init(&c) == 0);
    sha256_update(&c, data, n);
    sha256_final_hex(&c, out);
}

static void test_sha256(void)
{
    char hex[65];
    sha_hex("", 0, hex);
    CHECK(strcmp(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855") == 0);
    sha_hex("abc", 3, hex);
    CHECK(strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") == 0);
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    sha_hex(m, strlen(m), hex);
    CHECK(strcmp(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1") == 0);
    /* a million 'a' fed in uneven pieces exercises the buffering */
    sha256_ctx c;
    char buf[997];
    memset(buf, 'a', sizeof buf);
    CHECK(sha256_init(&c) == 0);
    for (size_t left = 1000000; left;) {
        size_t n = left < sizeof buf ? left : (left % 7) + 990;
        sha256_update(&c, buf, n);
        left -= n;
    }
    sha256_final_hex(&c, hex);
    CHECK(strcmp(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0") == 0);
}

static void test_sha1(void)
{
    sha1_ctx c;
    char hex[41];
    sha1_init(&c);
    sha1_update(&c, "abc", 3);
    sha1_final_hex(&c, hex);
    CHECK(strcmp(hex, "a9993e364706816aba3e25717850c26c9cd0d89d") == 0);
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    sha1_init(&c);
    sha1_update(&c, m, 10);
    sha1_update(&c, m + 10, strlen(m) - 10);
    sha1_final_hex(&c, hex);
    CHECK(strcmp(hex, "84983e441c3bd26ebaae4aa1f95129e5e54670f1") == 0);
    sha1_git_blob("", 0, hex); /* git's empty blob */
    CHECK(strcmp(hex, "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391") == 0);
    sha1_git_blob("hello\n", 6, hex); /* git hash-object of "hello\n" */
    CHECK(strcmp(hex, "ce013625030ba8dba906f756967f9e9ca394464a") == 0);
}

static void test_names(void)
{
    const char *good[] = {"a", "config.json", "sub/dir/file.bin", ".gitattributes", "a b", "é"};
    const char *bad[] = {"",    "/abs", "a/",          "a//b",   ".",     "..",     "a/../b",
                         "./a", "a/.",  "back\\slash", "tab\tx", "nl\nx", "del\x7f"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++)
        CHECK(hub_check_path(good[i]) == 0);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECK(hub_check_path(bad[i]) < 0);
    char longname[300];
    memset(longname, 'x', 256);
    longname[256] = 0;
    CHECK(hub_check_path(longname) < 0);
    longname[255] = 0;
    CHECK(hub_check_path(longname) == 0);
    CHECK(hub_check_repo_name("gpt2") == 0);
    CHECK(hub_check_repo_name("Llama-3.1_8B") == 0);
    CHECK(hub_check_repo_name(".hidden") < 0);
    CHECK(hub_check_repo_name("a b") < 0);
    CHECK(hub_check_repo_name("a@b") < 0);
    CHECK(hub_check_repo_name("") < 0);
    CHECK(hub_is_commit("0123456789abcdef0123456789abcdef01234567"));
    CHECK(!hub_is_commit("0123456789ABCDEF0123456789abcdef01234567"));
    CHECK(!hub_is_commit("main"));
}

#define OID "\"oid\":\"0123456789abcdef0123456789abcdef01234567\""

static void test_tree_parse(void)
{
    const char *json =
        "[{\"type\":\"file\",\"path\":\"b/c.txt\",\"size\":3," OID "},"
        "{\"type\":\"file\",\"path\":\"a.bin\",\"size\":10," OID ",\"lfs\":{\"oid\":\""
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "\",\"size\":10}},"
        "{\"type\":\"file\",\"path\":\"a.bin\",\"size\":99," OID "},"      /* duplicate */
        "{\"type\":\"file\",\"path\":\"../x\",\"size\":1," OID "},"        /* escape */
        "{\"type\":\"file\",\"path\":\"nul\\u0000x\",\"size\":1," OID "}," /* NUL */
        "{\"type\":\"file\",\"path\":\"neg\",\"size\":-1," OID "},"        /* size */
        "{\"type\":\"file\",\"path\":\"big\",\"size\":9223372036854775807," OID "},"
        "{\"type\":\"file\",\"path\":\"str\",\"size\":\"3\"," OID "},"
        "{\"type\":\"file\",\"path\":\"nooid\",\"size\":3},"
        "{\"type\":\"file\",\"path\":\"a.bin/under\",\"size\":3," OID "}," /* under a file */
        "{\"type\":\"weird\",\"path\":\"w\",\"size\":3," OID "},"
        "17, \"s\", null]";
    hub_tree t;
    CHECK(hub_tree_parse(json, strlen(json), "unit", &t) == 0);
    /* a.bin (first one kept), b (synthesized), b/c.txt */
    CHECK(t.n == 3);
    if (t.n == 3) {
        CHECK(strcmp(t.e[0].path, "a.bin") == 0 && t.e[0].is_lfs && t.e[0].size == 10);
        CHECK(strcmp(hub_entry_content_id(&t.e[0]), t.e[0].sha256) == 0);
        CHECK(strcmp(t.e[1].path, "b") == 0 && t.e[1].is_dir);
        CHECK(strcmp(t.e[2].path, "b/c.txt") == 0 && !t.e[2].is_lfs);
        CHECK(hub_tree_find(&t, "b/c.txt") == 2);
        CHECK(hub_tree_find(&t, "b/d") == -1);
    }
    hub_tree_free(&t);
    CHECK(hub_tree_parse("{not json", 9, "unit", &t) < 0);
    CHECK(hub_tree_parse("{\"a\":1}", 7, "unit", &t) < 0);
}

/* A new cache in a new directory under base; NULL (a failed check) if it cannot be made. */
static cache *tmp_cache(const char *base, char **dir)
{
    char tmpl[4096];
    snprintf(tmpl, sizeof tmpl, "%s/hfunit-XXXXXX", base);
    char *d = mkdtemp(tmpl);
    cache *c = NULL;
    *dir = d ? strdup(d) : NULL;
    if (!*dir || cache_open(*dir, 0, &c) != 0) {
        CHECK(!"cannot open a cache in a temporary directory");
        free(*dir);
        *dir = NULL;
        return NULL;
    }
    return c;
}

/* Remove a temporary directory made by tmp_cache, and free its name. */
static void rm_tree(char *dir)
{
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    free(dir);
}

static void flip(const char *path, off_t off)
{
    int fd = open(path, O_RDWR);
    unsigned char c = 0;
    CHECK(fd >= 0 && pread(fd, &c, 1, off) == 1);
    c ^= 0x20;
    CHECK(pwrite(fd, &c, 1, off) == 1);
    close(fd);
}

static void test_cache(void)
{
    char *dir;
    cache *c = tmp_cache("/tmp", &dir);
    if (!c) return;
    const char *id = "0123456789abcdef0123456789abcdef01234567";
    uint32_t bs = 256 << 10;
    unsigned char *data = malloc(bs), *got = malloc(bs);
    for (uint32_t i = 0; i < bs; i++)
        data[i] = (unsigned char)(i * 31 + (i >> 9));
    CHECK(cache_block_read(c, id, bs, 0, 0, 10, got) == -ENOENT);
    CHECK(cache_block_write(c, id, bs, 0, data, bs) == 0);
    CHECK(cache_block_write(c, id, bs, 1, data, 1000) == 0); /* a short last block */
    CHECK(cache_block_read(c, id, bs, 0, 0, bs, got) == 0 && memcmp(got, data, bs) == 0);
    CHECK(cache_block_read(c, id, bs, 0, 70000, 5, got) == 0 && memcmp(got, data + 70000, 5) == 0);
    CHECK(cache_block_read(c, id, bs, 1, 10, 990, got) == 0 && memcmp(got, data + 10, 990) == 0);
    CHECK(cache_block_read(c, id, bs, 1, 10, 991, got) == -EBADMSG); /* beyond the block */
    unsigned char present[4];
    cache_block_scan(c, id, bs, 4, present);
    CHECK(present[0] == 1 && present[1] == 0 && present[2] == 0); /* block 1 was dropped */
    /* a flipped data byte: the chunk that holds it fails, the others still verify */
    char path[4200];
    snprintf(path, sizeof path, "%s/blocks/01/%s.%u/0", dir, id, bs);
    flip(path, 4096 + 200000);
    CHECK(cache_block_read(c, id, bs, 0, 0, 1000, got) == 0);
    CHECK(cache_block_read(c, id, bs, 0, 199000, 2000, got) == -EBADMSG);
    CHECK(access(path, F_OK) != 0);
    /* a flipped header byte, and a block renamed to another index */
    CHECK(cache_block_write(c, id, bs, 0, data, bs) == 0);
    flip(path, 20);
    CHECK(cache_block_read(c, id, bs, 0, 0, 10, got) == -EBADMSG);
    CHECK(cache_block_write(c, id, bs, 2, data, bs) == 0);
    char other[4200];
    snprintf(other, sizeof other, "%s/blocks/01/%s.%u/3", dir, id, bs);
    snprintf(path, sizeof path, "%s/blocks/01/%s.%u/2", dir, id, bs);
    CHECK(rename(path, other) == 0);
    CHECK(cache_block_read(c, id, bs, 3, 0, 10, got) == -EBADMSG);
    cache_stats st;
    cache_get_stats(c, &st);
    CHECK(st.blocks_corrupt == 4);
    /* metadata */
    char *txt;
    size_t len;
    CHECK(cache_meta_write(c, "models/o/r/refs/x", "hello", 5) == 0);
    CHECK(cache_meta_read(c, "models/o/r/refs/x", &txt, &len) == 0 && len == 5 &&
          strcmp(txt, "hello") == 0);
    free(txt);
    CHECK(cache_meta_read(c, "../etc/passwd", &txt, &len) < 0);
    char **names;
    size_t n;
    CHECK(cache_meta_list(c, "models", &names, &n) == 0 && n == 1 && strcmp(names[0], "o") == 0);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    cache_close(c);
    /* eviction: 4 blocks fit, the oldest go first, pinned files stay */
    CHECK(cache_open(dir, 5 * (bs + 4096), &c) == 0);
    cache_file_drop(c, id, bs);
    const char *ids[3] = {"aa11", "bb22", "cc33"};
    cache_pin(c, ids[0]);
    for (int f = 0; f < 3; f++)
        for (int k = 0; k < 3; k++)
            CHECK(cache_block_write(c, ids[f], bs, k, data, bs) == 0);
    cache_get_stats(c, &st);
    CHECK(st.bytes <= 5 * (bs + 4096));
    CHECK(st.blocks_evicted >= 4);
    CHECK(cache_block_read(c, ids[0], bs, 0, 0, 10, got) == 0); /* pinned: kept */
    cache_unpin(c, ids[0]);
    cache_close(c);
    free(data);
    free(got);
    rm_tree(dir);
}

/* Blocks are written with O_DIRECT when the buffer allows it, through the page cache when not,
 * and an unaligned tail after an aligned head: every way must read back the same bytes. Run in
 * /tmp and, where it exists, in a tmpfs (/dev/shm), whose O_DIRECT support varies by kernel. */
static void test_cache_direct_in(const char *base)
{
    char *dir;
    cache *c = tmp_cache(base, &dir);
    if (!c) return;
    const char *id = "00aa";
    uint32_t bs = 1 << 20;
    unsigned char *data = aligned_alloc(4096, bs + 4096), *got = malloc(bs + 1);
    for (uint32_t i = 0; i < bs + 4096; i++)
        data[i] = (unsigned char)(i * 7 + (i >> 12));
    size_t lens[] = {bs, 3 * 4096 + 123, 4096, 100, bs - 1};
    for (int k = 0; k < 5; k++) {
        const unsigned char *src = data + (k == 4 ? 1 : 0); /* unaligned buffer */
        CHECK(cache_block_write(c, id, bs, k, src, lens[k]) == 0);
        memset(got, 0, bs + 1);
        CHECK(cache_block_read(c, id, bs, k, 0, lens[k], got) == 0);
        CHECK(memcmp(got, src, lens[k]) == 0);
        CHECK(cache_block_read(c, id, bs, k, 0, lens[k] + 1, got) == -EBADMSG);
    }
    cache_close(c);
    free(data);
    free(got);
    rm_tree(dir);
}

static void test_cache_direct(void)
{
    test_cache_direct_in("/tmp");
    struct stat st;
    if (stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && access("/dev/shm", W_OK) == 0)
        test_cache_direct_in("/dev/shm");
    /* ramfs refuses O_DIRECT, and only after open has created the file: the fallback must
     * still store the very first block. Mounting it needs root. */
    char ram[] = "/tmp/hfunit-ramfs-XXXXXX";
    if (geteuid() != 0 || !mkdtemp(ram)) {
        printf("SKIP: the ramfs (no O_DIRECT) case needs root\n");
        return;
    }
    if (mount("ramfs", ram, "ramfs", 0, NULL) == 0) {
        test_cache_direct_in(ram);
        CHECK(umount(ram) == 0);
    } else {
        printf("SKIP: cannot mount a ramfs (%s)\n", strerror(errno));
    }
    rmdir(ram);
}

static void count_reg(void *arg, snap *s)
{
    (*(int *)arg)++;
    s->base = 1000;
}

static void test_repo_from_metadata(void)
{
    char *dir;
    cache *c = tmp_cache("/tmp", &dir);
    if (!c) return;
    const char *commit = "fedcba9876543210fedcba9876543210fedcba98";
    char ref[200], rel[200];
    snprintf(ref, sizeof ref, "{\"commit\":\"%s\",\"mtime\":1700000000,\"checked\":1}", commit);
    CHECK(cache_meta_write(c, "models/org/m/refs/@default", ref, strlen(ref)) == 0);
    const char *tree = "[{\"type\":\"file\",\"path\":\"d/x.json\",\"size\":3," OID "},"
                       "{\"type\":\"file\",\"path\":\"y.bin\",\"size\":5," OID "}]";
    snprintf(rel, sizeof rel, "models/org/m/trees/%s.json", commit);
    CHECK(cache_meta_write(c, rel, tree, strlen(tree)) == 0);
    repo_counters rc = {0};
    /* no network client: an old check is still served (nothing can be asked) */
    repo_ctx ctx = {.cache = c, .endpoint = "http://unused", .revalidate_s = 3600, .counters = &rc};
    hub_repo ref_ = {.kind = HUB_MODEL, .id = "org/m"};
    repo *r = repo_new(&ref_);
    snap *s = NULL;
    int regs = 0;
    CHECK(repo_snapshot(r, &ctx, count_reg, &regs, &s) == 0 && s);
    if (s) {
        CHECK(strcmp(s->commit, commit) == 0 && s->mtime == 1700000000);
        CHECK(s->tree.n == 3 && regs == 1 && s->base == 1000);
        long d = snap_lookup(s, (uint32_t)s->tree.n, "d");
        CHECK(d >= 0 && s->tree.e[d].is_dir);
        long x = snap_lookup(s, (uint32_t)d, "x.json");
        CHECK(x >= 0 && strcmp(snap_name(s, (uint32_t)x), "x.json") == 0);
        CHECK(snap_lookup(s, (uint32_t)d, "y.bin") < 0);
        CHECK(snap_lookup(s, (uint32_t)s->tree.n, "x.json") < 0);
        /* the root lists d and y.bin; d lists x.json */
        CHECK(s->kid_off[s->tree.n + 1] - s->kid_off[s->tree.n] == 2);
        CHECK(s->kid_off[d + 1] - s->kid_off[d] == 1 && s->kids[s->kid_off[d]] == (uint32_t)x);
    }
    CHECK(rc.meta_loads == 1 && rc.checks == 0);
    repo_free(r);
    hub_repo missing = {.kind = HUB_MODEL, .id = "org/none"};
    r = repo_new(&missing);
    CHECK(repo_snapshot(r, &ctx, count_reg, &regs, &s) == -ENOENT);
    repo_free(r);
    cache_close(c);
    rm_tree(dir);
}

int main(void)
{
    test_sha256();
    test_sha1();
    test_names();
    test_tree_parse();
    test_cache();
    test_cache_direct();
    test_repo_from_metadata();
    if (failures)
        fprintf(stderr, "%d check(s) failed\n", failures);
    else
        printf("all fs unit checks passed\n");
    return failures ? 1 : 0;
}
