/* tok_regex.c — Oniguruma-compatible escapes, PCRE2 compile and match loop. */
#include "tok_regex.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tok_util.h"

/* Oniguruma's Unicode classes, spelled for PCRE2 (without the surrounding brackets). */
#define ONIG_SPACE "\\s\\x{85}"
/* Oniguruma's Word: Alphabetic, marks, decimal digits, connector punctuation, joiners, and the
 * Latin-1 superscripts and fractions its single-byte table marks as word characters. */
#define ONIG_WORD                                                                                  \
    "\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\x{200C}\\x{200D}\\x{B2}\\x{B3}\\x{B9}\\x{BC}-\\x{BE}"
#define ONIG_WORD_CLASS "[" ONIG_WORD "]"
/* Inside [...] Oniguruma uses the Unicode definition only, without the Latin-1 extras. */
#define ONIG_WORD_IN_CLASS "\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\x{200C}\\x{200D}"
#define ONIG_HEX "0-9a-fA-F" /* \h is a hex digit in Oniguruma, blank space in PCRE2 */

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

/* Translation state: class nesting (Oniguruma allows [a[bc]]: a union, flattened here), the
 * start of the last atom and of the open groups (to wrap X{n}+, which Oniguruma reads as
 * (?:X{n})+ and PCRE2 as possessive). */
struct xlat {
    tok_buf *out;
    int depth;
    unsigned char flat[64]; /* per depth: the ] of this class is dropped */
    size_t group[64];
    int ngroup;
    size_t atom;
};

static int is_hex(char c)
{
    return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f');
}

/* One escape at p[i] (p[i] == '\\'); returns the number of pattern bytes consumed or -errno. */
static long xlat_escape(struct xlat *x, const char *p, size_t n, size_t i)
{
    char e = p[i + 1];
    int in = x->depth > 0, rc;
    if (e == 's' || e == 'S')
        rc = put_class(x->out, in, e == 'S', ONIG_SPACE);
    else if (e == 'w' || e == 'W')
        rc = put_class(x->out, in, e == 'W', in ? ONIG_WORD_IN_CLASS : ONIG_WORD);
    else if (e == 'h' || e == 'H')
        rc = put_class(x->out, in, e == 'H', ONIG_HEX);
    else if (e == 'u' && i + 5 < n + 0 && is_hex(p[i + 2]) && is_hex(p[i + 3]) &&
             is_hex(p[i + 4]) && is_hex(p[i + 5])) {
        /* \uHHHH is Oniguruma's; PCRE2 spells it \x{HHHH} */
        if (tok_buf_put(x->out, "\\x{", 3) || tok_buf_put(x->out, p + i + 2, 4) ||
            tok_buf_putc(x->out, '}'))
            return -ENOMEM;
        return 6;
    } else if (e == 'p' && n - i >= 8 && !memcmp(p + i + 1, "p{Word}", 7)) {
        rc = put_class(x->out, in, 0, ONIG_WORD);
        return rc ? rc : 8;
    } else if ((e == 'b' || e == 'B') && !in) {
        /* word boundaries with Oniguruma's word characters */
        static const char wb[] = "(?:(?<=" ONIG_WORD_CLASS ")(?!" ONIG_WORD_CLASS
                                 ")|(?<!" ONIG_WORD_CLASS ")(?=" ONIG_WORD_CLASS "))";
        static const char nwb[] = "(?:(?<=" ONIG_WORD_CLASS ")(?=" ONIG_WORD_CLASS
                                  ")|(?<!" ONIG_WORD_CLASS ")(?!" ONIG_WORD_CLASS "))";
        rc = tok_buf_put(x->out, e == 'b' ? wb : nwb, e == 'b' ? sizeof wb - 1 : sizeof nwb - 1);
    } else if ((e == 'p' || e == 'P' || e == 'x') && i + 2 < n && p[i + 2] == '{') {
        const char *close = memchr(p + i, '}', n - i);
        size_t len = close ? (size_t)(close - (p + i)) + 1 : 2;
        return tok_buf_put(x->out, p + i, len) ? -ENOMEM : (long)len;
    } else
        rc = tok_buf_put(x->out, p + i, 2) ? -ENOMEM : 0;
    return rc ? rc : 2;
}

/* An interval {n}, {n,}, {n,m} or {,m} at p[i]: its length, or 0. */
static size_t interval_len(const char *p, size_t n, size_t i)
{
    size_t j = i + 1;
    int digits = 0, comma = 0;
    for (; j < n && p[j] != '}'; j++) {
        if (p[j] == ',' && !comma)
            comma = 1;
        else if (p[j] >= '0' && p[j] <= '9')
            digits = 1;
        else
            return 0;
    }
    return j < n && digits ? j - i + 1 : 0;
}

static int xlat_interval(struct xlat *x, const char *p, size_t n, size_t *i)
{
    size_t len = interval_len(p, n, *i);
    if (!len) return tok_buf_putc(x->out, '{');
    /* {,m} means {0,m} in Oniguruma and a literal in PCRE2 */
    if (p[*i + 1] == ',') {
        if (tok_buf_put(x->out, "{0", 2) || tok_buf_put(x->out, p + *i + 1, len - 1))
            return -ENOMEM;
    } else if (tok_buf_put(x->out, p + *i, len))
        return -ENOMEM;
    *i += len - 1;
    if (*i + 1 < n && p[*i + 1] == '+') { /* not possessive: (?:X{n})+ */
        if (tok_buf_reserve(x->out, 4)) return -ENOMEM;
        char *at = x->out->p + x->atom;
        memmove(at + 3, at, x->out->len - x->atom);
        memcpy(at, "(?:", 3);
        x->out->len += 3;
        return tok_buf_putc(x->out, ')');
    }
    return 0;
}

static int translate(const char *p, size_t n, tok_buf *out);

/* A top-level class holding \S, \W or \H, which PCRE2 cannot complement inside a class:
 * [A\SB] becomes (?:[AB]|[^space]) and [^A\SB] becomes (?:(?![AB])[space]). Returns 1 when
 * the class at p[*i] was not of that kind, 0 when it was written, or -errno. */
static int xlat_negated_shorthands(struct xlat *x, const char *p, size_t n, size_t *i)
{
    size_t j = *i + 1, end;
    int neg = j < n && p[j] == '^';
    if (neg) j++;
    tok_buf rest = {0};
    const char *bodies[8];
    int nb = 0, rc = 0;
    if (tok_buf_putc(&rest, '[')) return -ENOMEM;
    for (end = j; end < n && (p[end] != ']' || end == j); end++) {
        if (p[end] == '[') goto plain; /* nested or POSIX: not handled here */
        if (p[end] == '\\' && end + 1 < n) {
            char e = p[end + 1];
            const char *body = e == 'S'   ? ONIG_SPACE
                               : e == 'W' ? ONIG_WORD_IN_CLASS
                               : e == 'H' ? ONIG_HEX
                                          : NULL;
            if (body && nb < 8)
                bodies[nb++] = body;
            else if (tok_buf_put(&rest, p + end, 2))
                goto oom;
            end++;
        } else if (tok_buf_putc(&rest, p[end]))
            goto oom;
    }
    if (end >= n || !nb) goto plain;
    x->atom = x->out->len;
    rc = tok_buf_put(x->out, "(?:", 3) ? -ENOMEM : 0;
    if (!rc && rest.len > 1) {
        if (neg) rc = tok_buf_put(x->out, "(?!", 3) ? -ENOMEM : 0;
        if (!rc && !tok_buf_putc(&rest, ']')) rc = translate(rest.p, rest.len, x->out);
        if (!rc) rc = tok_buf_putc(x->out, neg ? ')' : '|') ? -ENOMEM : 0;
    }
    for (int k = 0; k < nb && !rc; k++) {
        const char *open = neg ? (k + 1 < nb ? "(?=[" : "[") : "[^";
        const char *close = neg ? (k + 1 < nb ? "])" : "]") : (k + 1 < nb ? "]|" : "]");
        if (tok_buf_put(x->out, open, strlen(open)) ||
            tok_buf_put(x->out, bodies[k], strlen(bodies[k])) ||
            tok_buf_put(x->out, close, strlen(close)))
            rc = -ENOMEM;
    }
    if (!rc && tok_buf_putc(x->out, ')')) rc = -ENOMEM;
    tok_buf_free(&rest);
    *i = end;
    return rc;
plain:
    tok_buf_free(&rest);
    return 1;
oom:
    tok_buf_free(&rest);
    return -ENOMEM;
}

static int xlat_class_open(struct xlat *x, const char *p, size_t n, size_t *i)
{
    if (x->depth == 0) {
        int rc = xlat_negated_shorthands(x, p, n, i);
        if (rc <= 0) return rc;
    }
    if (x->depth > 0 && *i + 1 < n && p[*i + 1] == ':') /* POSIX [:alpha:] */
        return tok_buf_putc(x->out, '[');
    if (x->depth >= 63) return -ENOTSUP;
    int nested = x->depth > 0;
    x->depth++;
    x->flat[x->depth] = (unsigned char)nested;
    if (nested) return *i + 1 < n && p[*i + 1] == '^' ? -ENOTSUP : 0;
    x->atom = x->out->len;
    if (tok_buf_putc(x->out, '[')) return -ENOMEM;
    if (*i + 1 < n && p[*i + 1] == '^' && tok_buf_putc(x->out, p[++*i])) return -ENOMEM;
    if (*i + 1 < n && p[*i + 1] == ']' && tok_buf_putc(x->out, p[++*i]))
        return -ENOMEM; /* a leading ] is a literal */
    return 0;
}

static int xlat_plain(struct xlat *x, const char *p, size_t n, size_t *i)
{
    char c = p[*i];
    if (x->depth > 0) {
        if (c == '&' && *i + 1 < n && p[*i + 1] == '&') return -ENOTSUP; /* intersection */
        if (c == ']') {
            int flat = x->flat[x->depth--];
            return flat ? 0 : tok_buf_putc(x->out, c);
        }
        return tok_buf_putc(x->out, c);
    }
    if (c == '{') return xlat_interval(x, p, n, i);
    if (c == '(') {
        if (x->ngroup >= 64) return -ENOTSUP;
        x->group[x->ngroup++] = x->out->len;
    } else if (c == ')' && x->ngroup > 0)
        x->atom = x->group[--x->ngroup];
    else if (!strchr("*+?|^$", c))
        x->atom = x->out->len;
    return tok_buf_putc(x->out, c);
}

/* Rewrite the Oniguruma-only syntax; everything else is copied. */
static int translate(const char *p, size_t n, tok_buf *out)
{
    struct xlat x = {.out = out};
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\\' && i + 1 < n) {
            if (x.depth == 0) x.atom = out->len;
            long k = xlat_escape(&x, p, n, i);
            if (k < 0) return (int)k;
            i += (size_t)k - 1;
            continue;
        }
        int rc = p[i] == '[' ? xlat_class_open(&x, p, n, &i) : xlat_plain(&x, p, n, &i);
        if (rc) return rc;
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
        tok_seterr(err, errlen,
                   "%s: regex /%.*s/ uses Oniguruma syntax with no PCRE2 equivalent (\\S, \\W in a "
                   "class, [^...] inside a class, &&)",
                   where, (int)(len > 200 ? 200 : len), pattern);
        return rc ? rc : -ENOMEM;
    }
    int ecode;
    PCRE2_SIZE eoff;
    re->code = pcre2_compile((PCRE2_SPTR)b.p, b.len, PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE,
                             &ecode, &eoff, NULL);
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
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT) /* the interpreter keeps its stack on the heap */
            rc = pcre2_match(re->code, (PCRE2_SPTR)s, len, pos, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT,
                             md, NULL);
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
