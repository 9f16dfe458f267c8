/* check.h — the C unit tests' one assertion: CHECK(cond, fmt, ...) reports a failed condition
 * with its file, line, the condition's text and a message, counts it in `failures`, and lets the
 * test go on so one run shows every failure. Each test's main() returns failures != 0.
 * Included once per test program (it defines the counter). The count comes after the calls
 * that print, so a CHECK placed after a load expected to fault (and siglongjmp away) is not
 * counted early: the compiler may not move the increment above a function call. */
#ifndef HF_TEST_CHECK_H
#define HF_TEST_CHECK_H

#include <stdio.h>

static int failures;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                        \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

#endif
