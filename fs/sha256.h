/* sha256.h — SHA-256, streaming, for the one hash the Hub publishes for LFS files.
 *
 * Owns checking bytes against the Hub's LFS sha256 (tree `lfs.oid`, `X-Linked-Etag`): the cache
 * checks every completed LFS file against it before trusting the file as a whole, and hfppl
 * names the evaluated text by it. A thin wrapper over OpenSSL's libcrypto, whose SHA-NI and
 * AVX2 code hashes about five times faster than portable C: the check of a 10 GB file must not
 * compete with the reads it protects. */
#ifndef HF_SHA256_H
#define HF_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct sha256_ctx {
    void *md; /* the library's context; NULL after final */
} sha256_ctx;

/* 0, or -ENOMEM. A context that was initialised must be finished with sha256_final*(). */
int sha256_init(sha256_ctx *c);
void sha256_update(sha256_ctx *c, const void *data, size_t n);
/* Writes the 32-byte digest and frees the context. */
void sha256_final(sha256_ctx *c, uint8_t out[32]);
/* Writes the digest as 64 lowercase hex characters plus NUL and frees the context. */
void sha256_final_hex(sha256_ctx *c, char out[65]);

#endif
