/* sha1.h — SHA-1 (FIPS 180-4), streaming.
 *
 * Owns the check of git-stored files: their id on the Hub is the git blob oid,
 * sha1("blob <size>\0" + content), so a whole small file fetched in one block is verified
 * against it before it is cached. (SHA-1 serves here as git's content address, not as a
 * defence against a chosen-collision attacker; LFS files are checked by sha256.) */
#ifndef HF_SHA1_H
#define HF_SHA1_H

#include <stddef.h>
#include <stdint.h>

typedef struct sha1_ctx {
    uint32_t h[5];
    uint64_t len;
    uint8_t buf[64];
    size_t fill;
} sha1_ctx;

void sha1_init(sha1_ctx *c);
void sha1_update(sha1_ctx *c, const void *data, size_t n);
/* Writes the digest as 40 lowercase hex characters plus NUL. */
void sha1_final_hex(sha1_ctx *c, char out[41]);
/* The git blob oid of data (40 hex + NUL). */
void sha1_git_blob(const void *data, size_t n, char out[41]);

#endif
