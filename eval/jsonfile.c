/* jsonfile.c — see jsonfile.h. */
#include "jsonfile.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

int jf_load(const char *path, size_t flags, json_t **out, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        int e = errno;
        snprintf(err, errlen, "%s: %s", path, strerror(e));
        return -e;
    }
    /* fopen succeeds on a directory; the read would then fail with a vague parse error. */
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        fclose(f);
        snprintf(err, errlen, "%s: %s", path, strerror(EISDIR));
        return -EISDIR;
    }
    json_error_t jerr;
    errno = 0;
    json_t *root = json_loadf(f, flags, &jerr);
    int e = ferror(f) ? (errno ? errno : EIO) : 0;
    fclose(f);
    if (e) {
        json_decref(root);
        snprintf(err, errlen, "%s: read error: %s", path, strerror(e));
        return -e;
    }
    if (!root) {
        snprintf(err, errlen, "%s: not valid JSON: %s (line %d)", path, jerr.text, jerr.line);
        return -EINVAL;
    }
    *out = root;
    return 0;
}
