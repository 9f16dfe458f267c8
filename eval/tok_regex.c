/* tok_regex.c — Oniguruma-compatible escapes, PCRE2 compile and match loop. */
#include "tok_regex.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tok_util.h"

/* Oniguruma's Unicode classes, spelled for PCRE2 (without the surrounding brackets). */
#define ONIG_SPACE "\\s\\x{85}"
#define ONIG_WORD "\\p{L}\\p{M}\\p{Nd}\\p{Pc}"

static int put_class(tok_buf *b, int in_class, int negate, const char *body)
{
    if (in_class) {
        if (negate) return -ENOTSUP; /* \S or \W inside [...] has no simple spelling */
        return tok_buf_put(b, body, strlen(body));
    }
    if (tok_buf_put(b, negate ? "[^" : "[", negate ? 2 : 1) || tok_buf_put(b, body, strlen(body)))
        return -ENOMEM;
    return tok_buf_putc(b, ']');
}

/* Rewrite \s \S \w \W; everything else is copied. Tracks [...] nesting (POSIX [:x:] too). */
static int translate(const char *p, size_t n, tok_buf *out)
{
    int depth = 0;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c == '\\' && i + 1 < n) {
            char e = p[i + 1];
            int rc = 1;
            if (e == 's' || e == 'S')
                rc = put_class(out, depth > 0, e == 'S', ONIG_SPACE);
            else if (e == 'w' || e == 'W')
                rc = put_class(out, depth > 0, e == 'W', ONIG_WORD);
            if (rc <= 0) {
                if (rc < 0) return rc;
                i++;
                continue;
            }
            if (tok_buf_put(out, p + i, 2)) return -ENOMEM;
            i++;
            continue;
        }
        if (c == '[') {
            depth++;
            if (tok_buf_putc(out, c)) return -ENOMEM;
            if (i + 1 < n && p[i + 1] == '^' && tok_buf_putc(out, p[++i])) return -ENOMEM;
            if (i + 1 < n && p[i + 1] == ']' && tok_buf_putc(out, p[++i]))
                return -ENOMEM; /* a leading ] is a literal */
            continue;
        }
        if (c == ']' && depth > 0) depth--;
        if (tok_buf_putc(out, c)) return -ENOMEM;
    }
    return 0;
}

int tok_regex_compile(tok_regex *re, const char *pattern, size_t len, const char *where, char *err,
                      size_t errlen)
{
    tok_buf b = {0};
    int rc = translate(pattern, len, &b);
    if (rc || tok_buf_reserve(&b, 1)) {
        tok_buf_free(&b);
        tok_seterr(err, errlen, "%s: regex /%.*s/ cannot be translated (\\S or \\W inside a class)",
                   where, (int)(len > 200 ? 200 : len), pattern);
        return rc ? rc : -ENOMEM;
    }
    int ecode;
    PCRE2_SIZE eoff;
    re->code = pcre2_compile((PCRE2_SPTR)b.p, b.len, PCRE2_UTF | PCRE2_UCP, &ecode, &eoff, NULL);
    tok_buf_free(&b);
    if (!re->code) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(ecode, msg, sizeof msg);
        tok_seterr(err, errlen, "%s: regex /%.*s/ does not compile: %s", where,
                   (int)(len > 200 ? 200 : len), pattern, (const char *)msg);
        return -EINVAL;
    }
    pcre2_jit_compile(re->code, PCRE2_JIT_COMPLETE); /* falls back to the interpreter */
    return 0;
}

void tok_regex_free(tok_regex *re)
{
    pcre2_code_free(re->code);
    re->code = NULL;
}

pcre2_match_data *tok_regex_match_data(const tok_regex *re)
{
    return pcre2_match_data_create_from_pattern(re->code, NULL);
}

int tok_regex_next(const tok_regex *re, pcre2_match_data *md, const char *s, size_t len, size_t pos,
                   size_t *ms, size_t *me)
{
    while (pos <= len) {
        int rc = pcre2_match(re->code, (PCRE2_SPTR)s, len, pos, PCRE2_NO_UTF_CHECK, md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) return 0;
        if (rc < 0) return -EIO;
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        if (ov[1] > ov[0]) {
            *ms = ov[0];
            *me = ov[1];
            return 1;
        }
        /* An empty match splits nothing; step over one character and look again. */
        if (ov[0] >= len) return 0;
        pos = ov[0] + tok_utf8_len((unsigned char)s[ov[0]]);
    }
    return 0;
}
