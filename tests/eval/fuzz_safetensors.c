/* libFuzzer target for the safetensors header parser (scripts/fuzz-safetensors builds it):
 * the input is a whole file; st_parse must return a result or a message, never crash, leak or
 * read out of bounds. */
#include <stddef.h>
#include <stdint.h>

#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    st_tensor *t = NULL;
    size_t n = 0;
    char err[512];
    if (st_parse(data, size, size, "fuzz.safetensors", &t, &n, err, sizeof err) == 0)
        st_tensors_free(t, n);
    return 0;
}
