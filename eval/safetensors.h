/* safetensors.h — a model's weights as the Hub ships them (model.safetensors, or the shards named
 * by model.safetensors.index.json), mapped read-only and never copied.
 *
 * Each file's header is read with pread and validated before the mapping is touched: the length
 * against the file size and a 100 MB cap, the JSON shape, known dtypes, shape × dtype size equal
 * to the byte range, ranges inside the file and not overlapping, and, for shards, the index and
 * the shard headers agreeing. A Git LFS pointer or an HTML page (a failed download) is recognised
 * as such. Every error message names the file, the tensor when there is one, and the problem.
 *
 * Data is reached through a MAP_PRIVATE, PROT_READ mapping (or, with use_mmap == 0, a buffer
 * filled with pread). st_willneed() asks the kernel to read a tensor's pages ahead of use; the
 * mapping is never populated at once and never marked MADV_RANDOM, so a lazily fetched file
 * (a FUSE mount) is read as the evaluation reaches it. st_locate() turns a faulting address
 * (SIGBUS: the file could not be read) into the file and offset to report.
 *
 * Errors are negative errno values with the message in err. */
#ifndef HF_SAFETENSORS_H
#define HF_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#define ST_MAX_DIMS 8
#define ST_HEADER_CAP (100u << 20) /* the safetensors reference implementation's limit */

typedef enum {
    ST_BOOL,
    ST_U8,
    ST_I8,
    ST_I16,
    ST_U16,
    ST_F16,
    ST_BF16,
    ST_I32,
    ST_U32,
    ST_F32,
    ST_I64,
    ST_U64,
    ST_F64,
    ST_F8_E4M3,
    ST_F8_E5M2,
    ST_N_DTYPES
} st_dtype;

typedef struct {
    char *name;
    st_dtype dtype;
    int ndim;
    uint64_t shape[ST_MAX_DIMS];
    uint64_t begin, end; /* byte range relative to the data section */
    int file;            /* index into the set's files */
    const void *data;    /* NULL until the set is mapped */
    int used;            /* set by the model loader: unused tensors are reported */
} st_tensor;

typedef struct st_set st_set;

/* Parse and validate one header. buf holds the whole file prefix (at least 8 + header length
 * bytes when available, fewer is an error); file_size is the file's length; path names the file
 * in messages. On success *tensors (malloc'd, free with st_tensors_free) holds *n entries. */
int st_parse(const unsigned char *buf, size_t len, uint64_t file_size, const char *path,
             st_tensor **tensors, size_t *n, char *err, size_t errlen);
void st_tensors_free(st_tensor *t, size_t n);

/* Open DIR/model.safetensors, or DIR/model.safetensors.index.json and its shards. */
int st_open_dir(const char *dir, int use_mmap, st_set **out, char *err, size_t errlen);
/* Open one file (also used by the tests and the fuzzer's corpus check). */
int st_open_file(const char *path, int use_mmap, st_set **out, char *err, size_t errlen);
void st_close(st_set *s);

size_t st_count(const st_set *s);
st_tensor *st_at(st_set *s, size_t i);
st_tensor *st_find(st_set *s, const char *name);
const char *st_file_path(const st_set *s, int file);
uint64_t st_elements(const st_tensor *t);
const char *st_dtype_name(st_dtype d);
size_t st_dtype_size(st_dtype d);

/* Byte offset of the tensor's data in its file, and whether the set is mapped (not pread). */
uint64_t st_file_offset(const st_set *s, const st_tensor *t);
int st_mapped(const st_set *s);

/* Ask for the tensor's pages ahead of use (MADV_WILLNEED; a no-op without mmap). */
void st_willneed(const st_set *s, const st_tensor *t);

/* If addr lies in one of the set's mappings, set *path and *offset (bytes from the start of the
 * file) and return 1; else 0. Async-signal-safe: it only reads the set. */
int st_locate(const st_set *s, const void *addr, const char **path, uint64_t *offset);

/* The one-line report of a failed page fault at addr (SIGBUS) into buf (cap bytes, NUL
 * terminated): "I/O error reading the weights: FILE at offset N could not be read (...)".
 * Async-signal-safe (no allocation, no stdio): called from the signal handler. Returns the
 * length written. */
size_t st_fault_message(const st_set *s, const void *addr, char *buf, size_t cap);

#endif
