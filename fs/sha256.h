/* sha256.h — SHA-256 (FIPS 180-4), streaming.
 *
 * Owns the one hash the Hub publishes for LFS files (tree `lfs.oid`, `X-Linked-Etag`): the cache
 * checks every completed LFS file against it before trusting the file as a whole. Self-contained
 * so that the mount needs no crypto library for a single public-domain algorithm. */
#ifndef HF_SHA256_H
#define HF_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct sha256_ctx {
    uint32_t h[8];
    uint64_t len; /* bytes hashed so far */
    uint8_t buf[64];
    size_t fill; /* bytes waiting in buf */
} sha256_ctx;

void sha256_init(sha256_ctx *c);
void sha256_update(sha256_ctx *c, const void *data, size_t n);
/* Writes the 32-byte digest. */
void sha256_final(sha256_ctx *c, uint8_t out[32]);
/* Writes the digest as 64 lowercase hex characters plus NUL. */
void sha256_final_hex(sha256_ctx *c, char out[65]);

#endif
