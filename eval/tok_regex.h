/* tok_regex.h — the Oniguruma regexes of tokenizer.json run on PCRE2.
 *
 * The Rust library compiles Split / Replace patterns with Oniguruma, whose Unicode \s, \w and
 * \S, \W differ from PCRE2's even with PCRE2_UCP (Oniguruma's \s includes U+0085, its \w
 * includes marks and connector punctuation). tok_regex_compile() rewrites those escapes into
 * explicit classes with Oniguruma's meaning, then compiles with UTF, UCP and JIT. A compiled
 * regex is immutable; each thread passes its own match data to tok_regex_next(). */
#ifndef HF_TOK_REGEX_H
#define HF_TOK_REGEX_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stddef.h>

typedef struct {
    pcre2_code *code;
} tok_regex;

int tok_regex_compile(tok_regex *re, const char *pattern, size_t len, const char *where, char *err,
                      size_t errlen);
void tok_regex_free(tok_regex *re);
pcre2_match_data *tok_regex_match_data(const tok_regex *re);

/* Find the next non-empty match in s[0..len) at or after *pos (s is valid UTF-8). Returns 1
 * with [*ms, *me) set, 0 when there is none, negative errno on a matcher error. */
int tok_regex_next(const tok_regex *re, pcre2_match_data *md, const char *s, size_t len, size_t pos,
                   size_t *ms, size_t *me);

#endif
