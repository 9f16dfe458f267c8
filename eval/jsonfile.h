/* jsonfile.h — loading a whole JSON file (config.json, model.safetensors.index.json) with an
 * error that names the real cause. jansson's json_load_file reports an unreadable file, a
 * directory and a syntax error alike, so this module opens the file itself first: a failed
 * open or read is reported with strerror, and only text that was read and does not parse is
 * called "not valid JSON". It owns nothing after it returns. */
#ifndef HF_JSONFILE_H
#define HF_JSONFILE_H

#include <jansson.h>
#include <stddef.h>

/* Parse path with jansson flags into *out (the caller's reference). Returns 0, or a negative
 * errno (-EINVAL for bad JSON) with "PATH: cause" in err. */
int jf_load(const char *path, size_t flags, json_t **out, char *err, size_t errlen);

#endif
