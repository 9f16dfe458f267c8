/* sha256.h — SHA-256 (FIPS 180-4) of the evaluated text, recorded in --json output so that a
 * result names exactly which bytes it was computed on. */
#ifndef HF_SHA256_H
#define HF_SHA256_H

#include <stddef.h>
#include <stdint.h>

/* hex receives 64 lowercase hex digits and a NUL. */
void sha256_hex(const void *data, size_t len, char hex[65]);

#endif
