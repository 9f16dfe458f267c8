/* sha256.c — see sha256.h. */
#include "sha256.h"

#include <errno.h>
#include <openssl/evp.h>
#include <string.h>

int sha256_init(sha256_ctx *c)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(md);
        md = NULL;
    }
    c->md = md;
    return md ? 0 : -ENOMEM;
}

void sha256_update(sha256_ctx *c, const void *data, size_t n)
{
    if (c->md && n > 0) EVP_DigestUpdate(c->md, data, n);
}

void sha256_final(sha256_ctx *c, uint8_t out[32])
{
    unsigned int len = 0;
    /* A failed context yields all zeros, which matches no real file's hash. */
    if (!c->md || EVP_DigestFinal_ex(c->md, out, &len) != 1 || len != 32) memset(out, 0, 32);
    EVP_MD_CTX_free(c->md);
    c->md = NULL;
}

void sha256_final_hex(sha256_ctx *c, char out[65])
{
    static const char hex[] = "0123456789abcdef";
    uint8_t d[32];
    sha256_final(c, d);
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hex[d[i] >> 4];
        out[2 * i + 1] = hex[d[i] & 15];
    }
    out[64] = 0;
}
