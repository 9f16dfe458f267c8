/* safetensors.c — see safetensors.h. */
#include "safetensors.h"
#include "jsonfile.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct st_file {
    char *path;
    uint64_t size;
    uint64_t data_off;   /* 8 + header length */
    unsigned char *base; /* the whole file: a mapping, or a pread buffer */
    int mapped;
};

struct st_set {
    struct st_file *files;
    int n_files;
    st_tensor *tensors;
    size_t n;
};

static const struct {
    const char *name;
    size_t size;
} st_dtypes[ST_N_DTYPES] = {
    [ST_BOOL] = {"BOOL", 1}, [ST_U8] = {"U8", 1},           [ST_I8] = {"I8", 1},
    [ST_I16] = {"I16", 2},   [ST_U16] = {"U16", 2},         [ST_F16] = {"F16", 2},
    [ST_BF16] = {"BF16", 2}, [ST_I32] = {"I32", 4},         [ST_U32] = {"U32", 4},
    [ST_F32] = {"F32", 4},   [ST_I64] = {"I64", 8},         [ST_U64] = {"U64", 8},
    [ST_F64] = {"F64", 8},   [ST_F8_E4M3] = {"F8_E4M3", 1}, [ST_F8_E5M2] = {"F8_E5M2", 1},
};

const char *st_dtype_name(st_dtype d)
{
    return d < ST_N_DTYPES ? st_dtypes[d].name : "?";
}

size_t st_dtype_size(st_dtype d)
{
    return d < ST_N_DTYPES ? st_dtypes[d].size : 0;
}

__attribute__((format(printf, 3, 4))) static int st_fail(char *err, size_t errlen, const char *fmt,
                                                         ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -EINVAL;
}

uint64_t st_elements(const st_tensor *t)
{
    uint64_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= t->shape[i];
    return n;
}

void st_tensors_free(st_tensor *t, size_t n)
{
    if (!t) return;
    for (size_t i = 0; i < n; i++)
        free(t[i].name);
    free(t);
}

/* A download that went wrong leaves a text file where the weights should be: say which. */
static int st_not_safetensors(const unsigned char *buf, size_t len, const char *path, char *err,
                              size_t errlen)
{
    static const char lfs[] = "version https://git-lfs";
    if (len >= sizeof lfs - 1 && memcmp(buf, lfs, sizeof lfs - 1) == 0)
        return st_fail(err, errlen,
                       "%s: is a Git LFS pointer file, not the weights (the LFS object was "
                       "not downloaded)",
                       path);
    size_t i = 0;
    while (i < len && isspace(buf[i]))
        i++;
    if (i < len && buf[i] == '<') {
        char head[16] = {0};
        for (size_t j = 0; j < sizeof head - 1 && i + 1 + j < len; j++)
            head[j] = (char)tolower(buf[i + 1 + j]);
        if (strncmp(head, "!doctype html", 13) == 0 || strncmp(head, "html", 4) == 0 ||
            strncmp(head, "head", 4) == 0 || strncmp(head, "?xml", 4) == 0)
            return st_fail(err, errlen,
                           "%s: is an HTML/XML page (an error or login page saved in place of "
                           "the file), not safetensors",
                           path);
    }
    return 0;
}

static int st_dtype_parse(const char *s, st_dtype *out)
{
    for (int d = 0; d < ST_N_DTYPES; d++)
        if (strcmp(s, st_dtypes[d].name) == 0) {
            *out = (st_dtype)d;
            return 0;
        }
    return -1;
}

static int st_u64_value(json_t *v, uint64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0) return -1;
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

/* One "name": {"dtype", "shape", "data_offsets"} entry. */
static int st_parse_entry(const char *path, const char *name, json_t *obj, uint64_t data_size,
                          st_tensor *t, char *err, size_t errlen)
{
    if (!json_is_object(obj))
        return st_fail(err, errlen, "%s: tensor '%s': entry is not a JSON object", path, name);
    json_t *dt = json_object_get(obj, "dtype"), *sh = json_object_get(obj, "shape"),
           *off = json_object_get(obj, "data_offsets");
    if (!json_is_string(dt))
        return st_fail(err, errlen, "%s: tensor '%s': missing or non-string \"dtype\"", path, name);
    if (st_dtype_parse(json_string_value(dt), &t->dtype) < 0)
        return st_fail(err, errlen, "%s: tensor '%s': unknown dtype \"%s\"", path, name,
                       json_string_value(dt));
    if (!json_is_array(sh))
        return st_fail(err, errlen, "%s: tensor '%s': missing or non-array \"shape\"", path, name);
    if (json_array_size(sh) > ST_MAX_DIMS)
        return st_fail(err, errlen, "%s: tensor '%s': %zu dimensions (at most %d supported)", path,
                       name, json_array_size(sh), ST_MAX_DIMS);
    t->ndim = (int)json_array_size(sh);
    uint64_t bytes = st_dtypes[t->dtype].size;
    for (int i = 0; i < t->ndim; i++) {
        if (st_u64_value(json_array_get(sh, (size_t)i), &t->shape[i]) < 0)
            return st_fail(err, errlen, "%s: tensor '%s': shape[%d] is not a non-negative integer",
                           path, name, i);
        if (__builtin_mul_overflow(bytes, t->shape[i], &bytes))
            return st_fail(err, errlen, "%s: tensor '%s': shape overflows 64 bits", path, name);
    }
    if (!json_is_array(off) || json_array_size(off) != 2 ||
        st_u64_value(json_array_get(off, 0), &t->begin) < 0 ||
        st_u64_value(json_array_get(off, 1), &t->end) < 0)
        return st_fail(err, errlen,
                       "%s: tensor '%s': \"data_offsets\" must be [begin, end] with "
                       "non-negative integers",
                       path, name);
    if (t->end < t->begin)
        return st_fail(err, errlen,
                       "%s: tensor '%s': data_offsets end %" PRIu64 " before begin %" PRIu64, path,
                       name, t->end, t->begin);
    if (t->end - t->begin != bytes)
        return st_fail(err, errlen,
                       "%s: tensor '%s': shape × %s is %" PRIu64
                       " bytes but data_offsets span %" PRIu64,
                       path, name, st_dtypes[t->dtype].name, bytes, t->end - t->begin);
    if (t->end > data_size)
        return st_fail(err, errlen,
                       "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64
                       ") run past the end of the data (%" PRIu64 " bytes; file truncated?)",
                       path, name, t->begin, t->end, data_size);
    return 0;
}

static int st_cmp_begin(const void *a, const void *b)
{
    const st_tensor *x = *(st_tensor *const *)a, *y = *(st_tensor *const *)b;
    return x->begin < y->begin   ? -1
           : x->begin > y->begin ? 1
                                 : (x->end > y->end) - (x->end < y->end);
}

static int st_check_overlaps(const char *path, st_tensor *t, size_t n, char *err, size_t errlen)
{
    st_tensor **order = malloc((n ? n : 1) * sizeof *order);
    if (!order) return -ENOMEM;
    for (size_t i = 0; i < n; i++)
        order[i] = &t[i];
    qsort(order, n, sizeof *order, st_cmp_begin);
    int rc = 0;
    for (size_t i = 1; i < n && rc == 0; i++)
        if (order[i]->begin < order[i - 1]->end && order[i]->end > order[i]->begin)
            rc = st_fail(err, errlen, "%s: tensors '%s' and '%s' overlap in the data section", path,
                         order[i - 1]->name, order[i]->name);
    free(order);
    return rc;
}

static int st_parse_object(const char *path, json_t *root, uint64_t data_size, st_tensor **out,
                           size_t *n_out, char *err, size_t errlen)
{
    size_t cap = json_object_size(root), n = 0;
    st_tensor *t = calloc(cap ? cap : 1, sizeof *t);
    if (!t) return -ENOMEM;
    const char *key;
    json_t *val;
    int rc = 0;
    json_object_foreach(root, key, val)
    {
        if (strcmp(key, "__metadata__") == 0) {
            if (!json_is_object(val)) {
                rc = st_fail(err, errlen, "%s: \"__metadata__\" is not a JSON object", path);
                break;
            }
            continue;
        }
        rc = st_parse_entry(path, key, val, data_size, &t[n], err, errlen);
        if (rc < 0) break;
        if (!(t[n].name = strdup(key))) {
            rc = -ENOMEM;
            break;
        }
        n++;
    }
    if (rc == 0) rc = st_check_overlaps(path, t, n, err, errlen);
    if (rc < 0) {
        st_tensors_free(t, n);
        return rc;
    }
    *out = t;
    *n_out = n;
    return 0;
}

int st_parse(const unsigned char *buf, size_t len, uint64_t file_size, const char *path,
             st_tensor **tensors, size_t *n, char *err, size_t errlen)
{
    int rc = st_not_safetensors(buf, len, path, err, errlen);
    if (rc < 0) return rc;
    if (file_size < 8 || len < 8)
        return st_fail(err, errlen, "%s: %" PRIu64 " bytes, too short for a safetensors file", path,
                       file_size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | buf[i];
    if (hlen > ST_HEADER_CAP)
        return st_fail(err, errlen,
                       "%s: header length %" PRIu64 " exceeds the %u-byte cap (not a "
                       "safetensors file?)",
                       path, hlen, ST_HEADER_CAP);
    if (hlen > file_size - 8)
        return st_fail(err, errlen,
                       "%s: header length %" PRIu64 " runs past the end of the file (%" PRIu64
                       " bytes; truncated?)",
                       path, hlen, file_size);
    if (len < 8 + hlen) return st_fail(err, errlen, "%s: header truncated", path);
    json_error_t jerr;
    json_t *root = json_loadb((const char *)buf + 8, hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return st_fail(err, errlen, "%s: header is not valid JSON: %s (header byte %d)", path,
                       jerr.text, jerr.position);
    if (!json_is_object(root)) {
        json_decref(root);
        return st_fail(err, errlen, "%s: header is not a JSON object", path);
    }
    rc = st_parse_object(path, root, file_size - 8 - hlen, tensors, n, err, errlen);
    json_decref(root);
    return rc;
}

/* ---- files ---- */

static int st_read_full(int fd, unsigned char *buf, size_t len, uint64_t off)
{
    while (len > 0) {
        ssize_t r = pread(fd, buf, len, (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return -errno;
        if (r == 0) return -EIO;
        buf += r;
        len -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

/* Read and validate the header of path, then map (or read) the file. */
static int st_load_file(const char *path, int use_mmap, struct st_file *f, st_tensor **tensors,
                        size_t *n, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        snprintf(err, errlen, "%s: %s", path, strerror(e));
        return -e;
    }
    struct stat st;
    int rc = 0;
    unsigned char *hdr = NULL;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        rc = st_fail(err, errlen, "%s: not a regular file", path);
        goto out;
    }
    unsigned char head[64];
    size_t hn = (size_t)st.st_size < sizeof head ? (size_t)st.st_size : sizeof head;
    if ((rc = st_read_full(fd, head, hn, 0)) < 0) {
        snprintf(err, errlen, "%s: read error: %s", path, strerror(-rc));
        goto out;
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0 && hn >= 8; i--)
        hlen = hlen << 8 | head[i];
    /* Ask st_parse about the prefix first: it rejects LFS pointers, HTML and bad lengths
     * before anything as large as the claimed header is read. */
    if (hn < 8 || hlen > ST_HEADER_CAP || hlen > (uint64_t)st.st_size - 8) {
        rc = st_parse(head, hn, (uint64_t)st.st_size, path, tensors, n, err, errlen);
        if (rc == 0) /* cannot happen: the length checks failed */
            rc = st_fail(err, errlen, "%s: bad header", path);
        goto out;
    }
    hdr = malloc(8 + hlen);
    if (!hdr) {
        rc = -ENOMEM;
        goto out;
    }
    if ((rc = st_read_full(fd, hdr, 8 + hlen, 0)) < 0) {
        snprintf(err, errlen, "%s: read error: %s", path, strerror(-rc));
        goto out;
    }
    if ((rc = st_parse(hdr, 8 + hlen, (uint64_t)st.st_size, path, tensors, n, err, errlen)) < 0)
        goto out;
    f->size = (uint64_t)st.st_size;
    f->data_off = 8 + hlen;
    if (use_mmap) {
        void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            rc = -errno;
            snprintf(err, errlen, "%s: mmap: %s", path, strerror(-rc));
        } else {
            f->base = m;
            f->mapped = 1;
        }
    } else if (!(f->base = malloc((size_t)st.st_size ? (size_t)st.st_size : 1))) {
        rc = -ENOMEM;
        snprintf(err, errlen, "%s: out of memory reading %" PRIu64 " bytes", path, f->size);
    } else if ((rc = st_read_full(fd, f->base, (size_t)st.st_size, 0)) < 0) {
        snprintf(err, errlen, "%s: read error: %s", path, strerror(-rc));
    }
    if (rc < 0) {
        st_tensors_free(*tensors, *n);
        *tensors = NULL;
    }
out:
    free(hdr);
    close(fd);
    return rc;
}

void st_close(st_set *s)
{
    if (!s) return;
    for (int i = 0; i < s->n_files; i++) {
        struct st_file *f = &s->files[i];
        if (f->mapped)
            munmap(f->base, (size_t)f->size);
        else
            free(f->base);
        free(f->path);
    }
    free(s->files);
    st_tensors_free(s->tensors, s->n);
    free(s);
}

/* Append the tensors of one more file to the set. */
static int st_add_file(st_set *s, const char *path, int use_mmap, char *err, size_t errlen)
{
    struct st_file *files = realloc(s->files, (size_t)(s->n_files + 1) * sizeof *files);
    if (!files) return -ENOMEM;
    s->files = files;
    struct st_file *f = &files[s->n_files];
    memset(f, 0, sizeof *f);
    st_tensor *t = NULL;
    size_t n = 0;
    int rc = st_load_file(path, use_mmap, f, &t, &n, err, errlen);
    if (rc < 0) return rc;
    if (!(f->path = strdup(path))) {
        if (f->mapped)
            munmap(f->base, (size_t)f->size);
        else
            free(f->base);
        st_tensors_free(t, n);
        return -ENOMEM;
    }
    st_tensor *all = realloc(s->tensors, (s->n + n + 1) * sizeof *all);
    if (!all) {
        s->n_files++; /* closed with the set */
        st_tensors_free(t, n);
        return -ENOMEM;
    }
    s->tensors = all;
    for (size_t i = 0; i < n; i++) {
        t[i].file = s->n_files;
        t[i].data = f->base + f->data_off + t[i].begin;
        all[s->n + i] = t[i];
    }
    free(t); /* names moved into the set */
    s->n += n;
    s->n_files++;
    return 0;
}

int st_open_file(const char *path, int use_mmap, st_set **out, char *err, size_t errlen)
{
    st_set *s = calloc(1, sizeof *s);
    if (!s) return -ENOMEM;
    int rc = st_add_file(s, path, use_mmap, err, errlen);
    if (rc < 0) {
        st_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

static int st_shard_name_ok(const char *name)
{
    return name[0] && strchr(name, '/') == NULL && strcmp(name, ".") != 0 &&
           strcmp(name, "..") != 0;
}

/* The index's weight_map and the shard headers must describe the same tensors. */
static int st_check_index(st_set *s, json_t *map, const char *ipath, char *err, size_t errlen)
{
    for (size_t i = 0; i < s->n; i++) {
        json_t *v = json_object_get(map, s->tensors[i].name);
        const char *shard = strrchr(s->files[s->tensors[i].file].path, '/') + 1;
        if (!v)
            return st_fail(err, errlen, "%s: tensor '%s' is in shard %s but not in the index",
                           ipath, s->tensors[i].name, shard);
        if (strcmp(json_string_value(v), shard) != 0)
            return st_fail(err, errlen,
                           "%s: tensor '%s' is in shard %s but the index places it in %s", ipath,
                           s->tensors[i].name, shard, json_string_value(v));
        for (size_t j = 0; j < i; j++)
            if (strcmp(s->tensors[j].name, s->tensors[i].name) == 0)
                return st_fail(err, errlen, "%s: tensor '%s' appears in two shards", ipath,
                               s->tensors[i].name);
    }
    const char *key;
    json_t *val;
    json_object_foreach(map, key, val)
    {
        if (!st_find(s, key))
            return st_fail(err, errlen, "%s: tensor '%s' is listed for shard %s but not in it",
                           ipath, key, json_string_value(val));
    }
    return 0;
}

static int st_open_index(const char *dir, const char *ipath, int use_mmap, st_set **out, char *err,
                         size_t errlen)
{
    json_t *root;
    int lrc = jf_load(ipath, JSON_REJECT_DUPLICATES, &root, err, errlen);
    if (lrc < 0) return lrc;
    json_t *map = json_object_get(root, "weight_map");
    int rc = 0;
    if (!json_is_object(map) || json_object_size(map) == 0)
        rc = st_fail(err, errlen, "%s: missing or empty \"weight_map\" object", ipath);
    const char *key;
    json_t *val;
    if (rc == 0) json_object_foreach(map, key, val)
        {
            if (!json_is_string(val) || !st_shard_name_ok(json_string_value(val))) {
                rc = st_fail(err, errlen, "%s: weight_map entry '%s' is not a shard file name",
                             ipath, key);
                break;
            }
        }
    st_set *s = calloc(1, sizeof *s);
    if (!s) rc = -ENOMEM;
    if (rc == 0) json_object_foreach(map, key, val)
        {
            const char *shard = json_string_value(val);
            int seen = 0;
            for (int i = 0; i < s->n_files && !seen; i++)
                seen = strcmp(strrchr(s->files[i].path, '/') + 1, shard) == 0;
            if (seen) continue;
            char path[4096];
            if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, shard) >= sizeof path) {
                rc = st_fail(err, errlen, "%s: path too long", dir);
                break;
            }
            if ((rc = st_add_file(s, path, use_mmap, err, errlen)) < 0) break;
        }
    if (rc == 0) rc = st_check_index(s, map, ipath, err, errlen);
    json_decref(root);
    if (rc < 0) {
        st_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

int st_open_dir(const char *dir, int use_mmap, st_set **out, char *err, size_t errlen)
{
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir) >= sizeof path)
        return st_fail(err, errlen, "%s: path too long", dir);
    if (access(path, F_OK) == 0) return st_open_index(dir, path, use_mmap, out, err, errlen);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (access(path, F_OK) != 0) {
        int e = errno;
        snprintf(err, errlen,
                 "%s: no model.safetensors or model.safetensors.index.json (%s); only "
                 "safetensors weights are supported",
                 dir, strerror(e));
        return -ENOENT;
    }
    return st_open_file(path, use_mmap, out, err, errlen);
}

size_t st_count(const st_set *s)
{
    return s->n;
}

st_tensor *st_at(st_set *s, size_t i)
{
    return &s->tensors[i];
}

st_tensor *st_find(st_set *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->tensors[i].name, name) == 0) return &s->tensors[i];
    return NULL;
}

const char *st_file_path(const st_set *s, int file)
{
    return s->files[file].path;
}

uint64_t st_file_offset(const st_set *s, const st_tensor *t)
{
    return s->files[t->file].data_off + t->begin;
}

int st_mapped(const st_set *s)
{
    return s->n_files > 0 && s->files[0].mapped;
}

void st_willneed(const st_set *s, const st_tensor *t)
{
    const struct st_file *f = &s->files[t->file];
    if (!f->mapped || t->end == t->begin) return;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = (uintptr_t)t->data & ~(page - 1);
    uintptr_t b = (uintptr_t)t->data + (uintptr_t)(t->end - t->begin);
    (void)madvise((void *)a, b - a, MADV_WILLNEED); /* advice only: failure changes nothing */
}

int st_locate(const st_set *s, const void *addr, const char **path, uint64_t *offset)
{
    uintptr_t p = (uintptr_t)addr;
    for (int i = 0; i < s->n_files; i++) {
        const struct st_file *f = &s->files[i];
        uintptr_t b = (uintptr_t)f->base;
        if (f->mapped && p >= b && p < b + f->size) {
            *path = f->path;
            *offset = p - b;
            return 1;
        }
    }
    return 0;
}

static void st_put(char *buf, size_t *n, size_t cap, const char *s)
{
    while (*s && *n + 1 < cap)
        buf[(*n)++] = *s++;
}

size_t st_fault_message(const st_set *s, const void *addr, char *buf, size_t cap)
{
    size_t n = 0;
    const char *path;
    uint64_t off;
    if (cap == 0) return 0;
    st_put(buf, &n, cap, "I/O error reading the weights: ");
    if (s && st_locate(s, addr, &path, &off)) {
        char num[24];
        int i = (int)sizeof num - 1;
        num[i] = 0;
        do
            num[--i] = (char)('0' + off % 10);
        while ((off /= 10) && i > 0);
        st_put(buf, &n, cap, path);
        st_put(buf, &n, cap, " at offset ");
        st_put(buf, &n, cap, num + i);
        st_put(buf, &n, cap,
               " could not be read (SIGBUS: the file is shorter than its header "
               "says, or the mount failed to fetch it)");
    } else {
        st_put(buf, &n, cap, "SIGBUS outside the weight mappings");
    }
    buf[n] = 0;
    return n;
}
