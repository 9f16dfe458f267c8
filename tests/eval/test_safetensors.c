/* The safetensors validator: a well-formed file opens and its tensors read back; every
 * malformed case is refused with a message naming the file, the tensor and the problem; shards
 * and their index must agree. Files are written to a temporary directory. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include "safetensors.h"

#include "../check.h"
static char tmpdir[512];

/* dir/name into out (cap bytes); the test's paths are short, so truncation is a failure. */
static char *join(char *out, size_t cap, const char *dir, const char *name)
{
    int n = snprintf(out, cap, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= cap) {
        fprintf(stderr, "path too long: %s/%s\n", dir, name);
        exit(1);
    }
    return out;
}

/* Write a safetensors file: 8-byte length, header, then data bytes. */
static void write_st(const char *name, const char *header, const void *data, size_t dlen,
                     int64_t len_override)
{
    char path[1024];
    join(path, sizeof path, tmpdir, name);
    FILE *f = fopen(path, "wb");
    uint64_t hl = len_override >= 0 ? (uint64_t)len_override : strlen(header);
    unsigned char le[8];
    for (int i = 0; i < 8; i++)
        le[i] = (unsigned char)(hl >> (8 * i));
    fwrite(le, 1, 8, f);
    fwrite(header, 1, strlen(header), f);
    if (dlen) fwrite(data, 1, dlen, f);
    fclose(f);
}

static void write_raw(const char *name, const char *text)
{
    char path[1024];
    join(path, sizeof path, tmpdir, name);
    FILE *f = fopen(path, "wb");
    fputs(text, f);
    fclose(f);
}

/* Open name and expect failure with a message containing want (and the file name). */
static void expect_bad(const char *name, const char *want)
{
    char path[1024], err[2048] = "";
    join(path, sizeof path, tmpdir, name);
    st_set *s = NULL;
    int rc = st_open_file(path, 1, &s, err, sizeof err);
    CHECK(rc < 0, "%s: accepted, expected '%s'", name, want);
    if (rc < 0) {
        CHECK(strstr(err, want) != NULL, "%s: message '%s' lacks '%s'", name, err, want);
        CHECK(strstr(err, name) != NULL, "%s: message '%s' does not name the file", name, err);
    } else {
        st_close(s);
    }
}

static void test_good(void)
{
    float data[6] = {1, 2, 3, 4, 5, 6};
    write_st("good.safetensors",
             "{\"__metadata__\":{\"format\":\"pt\"},\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],"
             "\"data_offsets\":[0,16]},\"b\":{\"dtype\":\"BF16\",\"shape\":[4],"
             "\"data_offsets\":[16,24]}}   ",
             data, sizeof data, -1);
    char path[1024], err[512];
    join(path, sizeof path, tmpdir, "good.safetensors");
    for (int mm = 0; mm < 2; mm++) {
        st_set *s;
        int rc = st_open_file(path, mm, &s, err, sizeof err);
        CHECK(rc == 0, "good file refused: %s", err);
        if (rc) return;
        CHECK(st_count(s) == 2, "2 tensors, got %zu", st_count(s));
        st_tensor *a = st_find(s, "a"), *b = st_find(s, "b");
        CHECK(a && b && !st_find(s, "__metadata__"), "tensors found");
        if (a && b) {
            float v[4];
            memcpy(v, a->data, sizeof v);
            CHECK(v[0] == 1 && v[3] == 4, "data of a");
            CHECK(b->dtype == ST_BF16 && b->shape[0] == 4 && st_elements(b) == 4, "b's shape");
            const char *p;
            uint64_t off;
            int found = st_locate(s, (const char *)b->data + 2, &p, &off);
            CHECK(found == mm, "st_locate only for mappings");
            if (found)
                CHECK(strcmp(p, path) == 0 && off == 8 +
                                                         strlen("{\"__metadata__\":{\"format\":"
                                                                "\"pt\"},\"a\":{\"dtype\":\"F32\","
                                                                "\"shape\":[2,2],\"data_offsets\":"
                                                                "[0,16]},\"b\":{\"dtype\":\"BF16\","
                                                                "\"shape\":[4],\"data_offsets\":"
                                                                "[16,24]}}   ") +
                                                         18,
                      "offset %llu", (unsigned long long)off);
            st_willneed(s, a);
        }
        st_close(s);
    }
}

static void test_bad(void)
{
    char z[64] = {0};
    write_raw("short.safetensors", "abc");
    expect_bad("short.safetensors", "too short");
    write_st("hlen.safetensors", "{}", NULL, 0, 1000);
    expect_bad("hlen.safetensors", "runs past the end of the file");
    write_st("cap.safetensors", "{}", NULL, 0, (int64_t)ST_HEADER_CAP + 1);
    expect_bad("cap.safetensors", "exceeds the");
    write_st("json.safetensors", "{\"a\":", NULL, 0, -1);
    expect_bad("json.safetensors", "not valid JSON");
    write_st("array.safetensors", "[1,2]", NULL, 0, -1);
    expect_bad("array.safetensors", "not a JSON object");
    write_st("entry.safetensors", "{\"w\":5}", NULL, 0, -1);
    expect_bad("entry.safetensors", "tensor 'w': entry is not a JSON object");
    write_st("dtype.safetensors",
             "{\"w\":{\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]}}", z, 4, -1);
    expect_bad("dtype.safetensors", "tensor 'w': unknown dtype \"F33\"");
    write_st("nodtype.safetensors", "{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", z, 4, -1);
    expect_bad("nodtype.safetensors", "missing or non-string \"dtype\"");
    write_st("shape.safetensors",
             "{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", z, 4, -1);
    expect_bad("shape.safetensors", "tensor 'w': shape[0] is not a non-negative integer");
    write_st("shape2.safetensors",
             "{\"w\":{\"dtype\":\"F32\",\"shape\":\"x\",\"data_offsets\":[0,4]}}", z, 4, -1);
    expect_bad("shape2.safetensors", "non-array \"shape\"");
    write_st("size.safetensors",
             "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", z, 24, -1);
    expect_bad("size.safetensors", "tensor 'w': shape × F32 is 24 bytes but data_offsets span 20");
    write_st("overflow.safetensors",
             "{\"w\":{\"dtype\":\"F64\",\"shape\":[4294967296,4294967296],"
             "\"data_offsets\":[0,8]}}",
             z, 8, -1);
    expect_bad("overflow.safetensors", "overflows");
    write_st("range.safetensors",
             "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", z, 8, -1);
    expect_bad("range.safetensors", "tensor 'w': data_offsets [0, 16) run past the end");
    write_st("order.safetensors",
             "{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,4]}}", z, 8, -1);
    expect_bad("order.safetensors", "before begin");
    write_st("offsets.safetensors",
             "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", z, 8, -1);
    expect_bad("offsets.safetensors", "\"data_offsets\" must be [begin, end]");
    write_st("overlap.safetensors",
             "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
             "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
             z, 12, -1);
    expect_bad("overlap.safetensors", "tensors 'a' and 'b' overlap");
    write_st("dup.safetensors",
             "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
             "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
             z, 8, -1);
    expect_bad("dup.safetensors", "duplicate");
    write_st("meta.safetensors", "{\"__metadata__\":3}", NULL, 0, -1);
    expect_bad("meta.safetensors", "\"__metadata__\" is not a JSON object");
    write_st("dims.safetensors",
             "{\"w\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", z,
             1, -1);
    expect_bad("dims.safetensors", "9 dimensions");
    write_raw("lfs.safetensors", "version https://git-lfs.github.com/spec/v1\noid sha256:"
                                 "abcd\nsize 1176152\n");
    expect_bad("lfs.safetensors", "Git LFS pointer");
    write_raw("html.safetensors", "\n<!DOCTYPE html><html><body>Sign in</body></html>\n");
    expect_bad("html.safetensors", "HTML");
    char err[512];
    st_set *s;
    CHECK(st_open_file("/nonexistent/x.safetensors", 1, &s, err, sizeof err) == -ENOENT &&
              strstr(err, "/nonexistent/x.safetensors"),
          "missing file: %s", err);
}

static void test_index(void)
{
    char sub[512], err[2048];
    float z[4] = {0};
    join(sub, sizeof sub, tmpdir, "idx");
    CHECK(mkdir(sub, 0700) == 0, "mkdir");
    char save[512];
    memcpy(save, tmpdir, sizeof save);
    memcpy(tmpdir, sub, sizeof tmpdir);
    write_st("s1.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
             z, 8, -1);
    write_st("s2.safetensors",
             "{\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
             "\"c\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
             z, 16, -1);
    const struct {
        const char *index, *want;
    } cases[] = {
        {"{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s2.safetensors\","
         "\"c\":\"s2.safetensors\"}}",
         NULL},
        {"{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s2.safetensors\"}}",
         "tensor 'c' is in shard s2.safetensors but not in the index"},
        {"{\"weight_map\":{\"a\":\"s2.safetensors\",\"b\":\"s2.safetensors\","
         "\"c\":\"s2.safetensors\"}}",
         "tensor 'a' is listed for shard s2.safetensors but not in it"},
        {"{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s1.safetensors\"}}",
         "tensor 'b' is listed for shard s1.safetensors but not in it"},
        {"{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s3.safetensors\"}}",
         "s3.safetensors: No such file"},
        {"{\"weight_map\":{\"a\":\"../s1.safetensors\"}}", "is not a shard file name"},
        {"{\"weight_map\":{}}", "missing or empty \"weight_map\""},
        {"{\"weight_map\":", "not valid JSON"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_raw("model.safetensors.index.json", cases[i].index);
        st_set *s = NULL;
        int rc = st_open_dir(sub, 1, &s, err, sizeof err);
        if (!cases[i].want) {
            CHECK(rc == 0 && st_count(s) == 3, "good index refused: %s", err);
        } else {
            CHECK(rc < 0, "index case %zu accepted", i);
            CHECK(rc >= 0 || strstr(err, cases[i].want), "index case %zu: '%s' lacks '%s'", i, err,
                  cases[i].want);
        }
        st_close(s);
    }
    memcpy(tmpdir, save, sizeof tmpdir);
    CHECK(st_open_dir(tmpdir, 1, &(st_set *){NULL}, err, sizeof err) == -ENOENT &&
              strstr(err, "no model.safetensors"),
          "empty dir: %s", err);
}

/* The bundled sample opens and has the 48 tensors its REFERENCE.md lists. */
static void test_sample(const char *dir)
{
    char err[1024];
    st_set *s;
    int rc = st_open_dir(dir, 1, &s, err, sizeof err);
    CHECK(rc == 0, "sample: %s", err);
    if (rc == 0) {
        CHECK(st_count(s) == 48, "sample has %zu tensors", st_count(s));
        st_close(s);
    }
}

/* A mapped file that shrinks under the reader: the page fault (SIGBUS) is reported with the
 * file and offset. The handler jumps back here; the test's own jump buffer is its state. */
static sigjmp_buf fault_jmp;
static const st_set *fault_set;
static char fault_msg[1024];

static void on_fault(int sig, siginfo_t *si, void *uc)
{
    (void)sig, (void)uc;
    st_fault_message(fault_set, si->si_addr, fault_msg, sizeof fault_msg);
    siglongjmp(fault_jmp, 1);
}

static void test_sigbus(void)
{
    static float data[4096];
    write_st("shrink.safetensors",
             "{\"w\":{\"dtype\":\"F32\",\"shape\":[4096],\"data_offsets\":[0,16384]}}", data,
             sizeof data, -1);
    char path[1024], err[512];
    join(path, sizeof path, tmpdir, "shrink.safetensors");
    st_set *s;
    if (st_open_file(path, 1, &s, err, sizeof err) < 0) {
        CHECK(0, "%s", err);
        return;
    }
    const st_tensor *t = st_find(s, "w");
    if (truncate(path, 64) != 0) {
        CHECK(0, "truncate");
        st_close(s);
        return;
    }
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGBUS, &sa, &old);
    fault_set = s;
    volatile float sink = 0;
    if (sigsetjmp(fault_jmp, 1) == 0) {
        const volatile float *p = (const volatile float *)t->data;
        sink += p[3000]; /* page 3 of the data: beyond the new end of the file */
        CHECK(0, "reading past the truncated end did not fault");
    }
    (void)sink;
    sigaction(SIGBUS, &old, NULL);
    /* the faulting float is at file offset 8 + header length + 3000 * 4 */
    char want[1100];
    size_t hlen = strlen("{\"w\":{\"dtype\":\"F32\",\"shape\":[4096],\"data_offsets\":[0,16384]}}");
    snprintf(want, sizeof want, "%s at offset %zu ", path, 8 + hlen + 12000);
    CHECK(strstr(fault_msg, want) != NULL, "fault message '%s' lacks '%s'", fault_msg, want);
    CHECK(strstr(fault_msg, "could not be read") != NULL, "fault message: %s", fault_msg);
    st_close(s);
}

/* Inputs the fuzzer found (or edge cases kept with them): each must give a result or a
 * message, under the sanitizers without a report. */
static void test_regressions(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[1024], err[512] = "";
        FILE *f = fopen(join(path, sizeof path, dir, e->d_name), "rb");
        if (!f) continue;
        static unsigned char buf[1 << 20];
        size_t len = fread(buf, 1, sizeof buf, f);
        fclose(f);
        st_tensor *t = NULL;
        size_t nt = 0;
        if (st_parse(buf, len, len, e->d_name, &t, &nt, err, sizeof err) == 0)
            st_tensors_free(t, nt);
        else
            CHECK(err[0] != 0, "%s: refused without a message", e->d_name);
        n++;
    }
    closedir(d);
    printf("replayed %d fuzz regression inputs\n", n);
}

int main(int argc, char **argv)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/hfppl-st-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_good();
    test_bad();
    test_index();
    test_sigbus();
    if (argc > 1) test_sample(argv[1]);
    if (argc > 2) test_regressions(argv[2]);
    char cmd[600];
    if (snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir) >= (int)sizeof cmd) return 1;
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    if (failures) {
        fprintf(stderr, "%d failures\n", failures);
        return 1;
    }
    printf("safetensors: all checks passed\n");
    return 0;
}
