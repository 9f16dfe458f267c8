/* nettest.h — helpers shared by the request-layer tests: checks, the Hub server's control
 * endpoint and request log, and files of the temporary repo tree. */
#ifndef HF_NETTEST_H
#define HF_NETTEST_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

extern int nt_failures; /* the test's one counter, defined by each test's main file */

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            nt_failures++;                                                                         \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                        \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
        }                                                                                          \
    } while (0)

double nt_now(void);
/* POST a control command (JSON text) to the Hub server; 0 on a 200 answer. */
int nt_control(const char *hub, const char *json);
/* The request log entries from index since, as a JSON array (caller json_decref's). */
json_t *nt_log(const char *hub, size_t since);
size_t nt_log_len(const char *hub);
/* Whole file ROOT/REL into a malloc'd buffer; *len gets its size. */
unsigned char *nt_read_file(const char *root, const char *rel, size_t *len);

#endif
