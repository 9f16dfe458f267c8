/* hub.c — see hub.h. */
#include "hub.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define HUB_TREE_MAX_ENTRIES 1000000
#define HUB_TREE_MAX_PAGES 10000
#define HUB_PAGE_MAX_BODY (32u << 20)

static int hub_is_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return s[n] == 0;
}

int hub_is_commit(const char *s)
{
    return strlen(s) == 40 && hub_is_hex(s, 40);
}

int hub_check_repo_name(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > 96 || name[0] == '.' || name[0] == '-') return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.'))
            return -EINVAL;
    }
    return 0;
}

int hub_check_path(const char *path)
{
    size_t n = strlen(path);
    if (n == 0 || n > HUB_PATH_MAX) return -EINVAL;
    const char *seg = path;
    for (const char *p = path;; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '/' || c == 0) {
            size_t len = (size_t)(p - seg);
            if (len == 0 || len > HUB_NAME_MAX) return -EINVAL;
            if ((len == 1 && seg[0] == '.') || (len == 2 && seg[0] == '.' && seg[1] == '.'))
                return -EINVAL;
            if (c == 0) return 0;
            seg = p + 1;
        } else if (c < 0x20 || c == 0x7f || c == '\\') {
            return -EINVAL;
        }
    }
}

const char *hub_entry_content_id(const hub_entry *e)
{
    return e->is_lfs ? e->sha256 : e->oid;
}

/* Percent-encode src (RFC 3986 unreserved kept; '/' kept when keep_slash). */
static void hub_escape(char *dst, size_t cap, const char *src, int keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)src; *p && o + 4 < cap; p++) {
        unsigned char c = *p;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '~' || (keep_slash && c == '/')) {
            dst[o++] = (char)c;
        } else {
            dst[o++] = '%';
            dst[o++] = hex[c >> 4];
            dst[o++] = hex[c & 15];
        }
    }
    dst[o] = 0;
}

static const char *hub_api_prefix(hub_kind k)
{
    return k == HUB_DATASET ? "datasets" : "models";
}

static void hub_what(char *buf, size_t cap, const hub_repo *r, const char *path)
{
    snprintf(buf, cap, "%s%s%s%s%s%s", r->kind == HUB_DATASET ? "datasets/" : "", r->id,
             r->rev[0] ? "@" : "", r->rev, path ? ":" : "", path ? path : "");
}

/* http_do's own failures, as the file system reports them. */
static int hub_http_errno(int rc, const char *what)
{
    if (rc == -EFBIG)
        log_error("%s: the Hub's answer is larger than %u MiB: refused", what,
                  HUB_PAGE_MAX_BODY >> 20);
    if (rc == -ENETDOWN) log_debug("%s: offline: nothing is fetched", what);
    return rc == -EINTR || rc == -ENOMEM ? rc : -EIO;
}

/* Map a definitive non-2xx answer to an errno, with a log line naming the cause. */
static int hub_status_errno(const http_response *rs, const char *what, int has_token)
{
    const char *code = rs->error_code ? rs->error_code : "";
    const char *msg = rs->error_message ? rs->error_message : "";
    if (rs->status == 404 || (rs->status == 401 && strcmp(code, "RepoNotFound") == 0)) {
        log_debug("%s: not found on the Hub (%ld %s)", what, rs->status, code);
        return -ENOENT;
    }
    if (rs->status == 401 || rs->status == 403) {
        log_error("%s: access denied (%ld %s %s); %s", what, rs->status, code, msg,
                  has_token ? "the token was refused: check it has access to this repo"
                            : "set HF_TOKEN or --token-file (or run `hf auth login`)");
        return -EACCES;
    }
    log_error("%s: unexpected answer %ld from the Hub %s", what, rs->status, msg);
    return -EIO;
}

/* GET one Hub API document (repo info, a tree page). Every API call goes through here so that
 * they share one policy: the api bucket, redirects followed, the body capped at
 * HUB_PAGE_MAX_BODY, the caller's cancellation, and one log line for the failure that ends it.
 * 0 only for a 200; rs must be freed by the caller in every case. */
static int hub_api_get(http_client *h, const char *url, const char *what, hub_cancel_fn cancelled,
                       void *arg, http_response *rs)
{
    http_request rq = {.url = url,
                       .bucket = HTTP_BUCKET_API,
                       .follow = 1,
                       .max_body = HUB_PAGE_MAX_BODY,
                       .what = what,
                       .cancelled = cancelled,
                       .cancel_arg = arg};
    int rc = http_do(h, &rq, rs);
    if (rc < 0) return hub_http_errno(rc, what);
    return rs->status == 200 ? 0 : hub_status_errno(rs, what, 0);
}

/* "2024-02-19T10:57:45.000Z" → Unix time, or 0. */
static int64_t hub_parse_date(const char *s)
{
    struct tm tm = {0};
    if (!s || !strptime(s, "%Y-%m-%dT%H:%M:%S", &tm)) return 0;
    return (int64_t)timegm(&tm);
}

int hub_fetch_commit(http_client *h, const char *endpoint, const hub_repo *r, hub_commit *out,
                     hub_cancel_fn cancelled, void *arg)
{
    char url[2048], rev[3 * HUB_REV_MAX + 1], what[600];
    hub_escape(rev, sizeof rev, r->rev, 0);
    snprintf(url, sizeof url, "%s/api/%s/%s%s%s", endpoint, hub_api_prefix(r->kind), r->id,
             r->rev[0] ? "/revision/" : "", rev);
    hub_what(what, sizeof what, r, NULL);
    http_response rs;
    int rc = hub_api_get(h, url, what, cancelled, arg, &rs);
    if (rc == 0) {
        json_error_t err;
        json_t *j = json_loadb(rs.body, rs.body_len, 0, &err);
        const char *sha = j ? json_string_value(json_object_get(j, "sha")) : NULL;
        if (!sha || !hub_is_commit(sha)) {
            log_error("%s: repo info has no valid \"sha\" (%s)", what,
                      j ? "missing or not 40 hex" : err.text);
            rc = -EIO;
        } else {
            memcpy(out->sha, sha, 41);
            out->mtime = hub_parse_date(json_string_value(json_object_get(j, "lastModified")));
        }
        json_decref(j);
    }
    http_response_free(&rs);
    return rc;
}

/* ---- tree parsing and validation ---- */

static int hub_entry_cmp(const void *a, const void *b)
{
    return strcmp(((const hub_entry *)a)->path, ((const hub_entry *)b)->path);
}

/* Check one JSON entry and fill e; -EINVAL (logged) when it must not be exposed. */
static int hub_entry_parse(json_t *o, const char *what, hub_entry *e)
{
    json_t *jp = json_object_get(o, "path");
    const char *type = json_string_value(json_object_get(o, "type"));
    const char *path = json_string_value(jp);
    memset(e, 0, sizeof *e);
    if (!path || !type) {
        log_warn("%s: tree entry without path or type rejected", what);
        return -EINVAL;
    }
    if (json_string_length(jp) != strlen(path) || hub_check_path(path) < 0) {
        log_warn("%s: tree entry with an unsafe name rejected (\"%.80s\")", what, path);
        return -EINVAL;
    }
    if (strcmp(type, "directory") == 0) {
        e->is_dir = 1;
    } else if (strcmp(type, "file") == 0) {
        json_t *js = json_object_get(o, "size");
        const char *oid = json_string_value(json_object_get(o, "oid"));
        json_t *lfs = json_object_get(o, "lfs");
        if (!json_is_integer(js) || json_integer_value(js) < 0 ||
            json_integer_value(js) > HUB_SIZE_MAX) {
            log_warn("%s: %s: absurd or missing size rejected", what, path);
            return -EINVAL;
        }
        e->size = json_integer_value(js);
        if (!oid || strlen(oid) != 40 || !hub_is_hex(oid, 40)) {
            log_warn("%s: %s: missing or malformed oid rejected", what, path);
            return -EINVAL;
        }
        memcpy(e->oid, oid, 41);
        if (lfs) {
            const char *sha = json_string_value(json_object_get(lfs, "oid"));
            json_t *ls = json_object_get(lfs, "size");
            if (!sha || strlen(sha) != 64 || !hub_is_hex(sha, 64) ||
                (ls && (!json_is_integer(ls) || json_integer_value(ls) != e->size))) {
                log_warn("%s: %s: malformed lfs object rejected", what, path);
                return -EINVAL;
            }
            memcpy(e->sha256, sha, 65);
            e->is_lfs = 1;
        }
    } else {
        log_warn("%s: %s: unknown entry type \"%.20s\" rejected", what, path, type);
        return -EINVAL;
    }
    e->path = strdup(path);
    return e->path ? 0 : -ENOMEM;
}

static int hub_tree_push(hub_tree *t, size_t *cap, const hub_entry *e)
{
    if (t->n == *cap) {
        size_t nc = *cap ? *cap * 2 : 64;
        hub_entry *ne = realloc(t->e, nc * sizeof *ne);
        if (!ne) return -ENOMEM;
        t->e = ne;
        *cap = nc;
    }
    t->e[t->n++] = *e;
    return 0;
}

/* Add the ancestor directories the listing did not name (a listing may omit them). */
static int hub_tree_add_parents(hub_tree *t, size_t *cap)
{
    size_t n0 = t->n;
    for (size_t i = 0; i < n0; i++) {
        char *p = strdup(t->e[i].path);
        if (!p) return -ENOMEM;
        for (char *s = strrchr(p, '/'); s; s = strrchr(p, '/')) {
            *s = 0;
            if (hub_tree_find(t, p) >= 0) break;
            int dup = 0;
            for (size_t k = n0; k < t->n && !dup; k++)
                dup = strcmp(t->e[k].path, p) == 0;
            if (dup) continue;
            hub_entry d = {.path = strdup(p), .is_dir = 1};
            if (!d.path || hub_tree_push(t, cap, &d) < 0) {
                free(d.path);
                free(p);
                return -ENOMEM;
            }
        }
        free(p);
    }
    qsort(t->e, t->n, sizeof *t->e, hub_entry_cmp);
    return 0;
}

/* Drop duplicates and entries whose parent is not a directory; keeps t sorted. */
static void hub_tree_prune(hub_tree *t, const char *what)
{
    size_t o = 0;
    for (size_t i = 0; i < t->n; i++) {
        hub_entry *e = &t->e[i];
        int bad = 0;
        if (o > 0 && strcmp(t->e[o - 1].path, e->path) == 0) {
            log_warn("%s: duplicate tree entry \"%.80s\" dropped", what, e->path);
            bad = 1;
        } else {
            char *slash = strrchr(e->path, '/');
            if (slash) {
                *slash = 0;
                hub_tree sofar = {t->e, o};
                long p = hub_tree_find(&sofar, e->path);
                *slash = '/';
                if (p < 0 || !t->e[p].is_dir) {
                    log_warn("%s: \"%.80s\" lies under a file: dropped", what, e->path);
                    bad = 1;
                }
            }
        }
        if (bad)
            free(e->path);
        else
            t->e[o++] = *e;
    }
    t->n = o;
}

static int hub_tree_from_array(json_t *arr, const char *what, hub_tree *out, json_t *clean)
{
    hub_tree t = {0};
    size_t cap = 0, i;
    json_t *o;
    if (!json_is_array(arr)) {
        log_error("%s: tree listing is not a JSON array", what);
        return -EIO;
    }
    json_array_foreach(arr, i, o)
    {
        hub_entry e;
        if (t.n >= HUB_TREE_MAX_ENTRIES) {
            log_error("%s: tree listing has more than %d entries", what, HUB_TREE_MAX_ENTRIES);
            hub_tree_free(&t);
            return -EIO;
        }
        if (!json_is_object(o) || hub_entry_parse(o, what, &e) < 0) continue;
        if (hub_tree_push(&t, &cap, &e) < 0) {
            free(e.path);
            hub_tree_free(&t);
            return -ENOMEM;
        }
        if (clean) json_array_append(clean, o);
    }
    qsort(t.e, t.n, sizeof *t.e, hub_entry_cmp);
    int rc = hub_tree_add_parents(&t, &cap);
    if (rc < 0) {
        hub_tree_free(&t);
        return rc;
    }
    hub_tree_prune(&t, what);
    *out = t;
    return 0;
}

int hub_tree_parse(const char *json, size_t len, const char *what, hub_tree *out)
{
    json_error_t err;
    json_t *j = json_loadb(json, len, JSON_ALLOW_NUL, &err);
    if (!j) {
        log_error("%s: malformed tree JSON (line %d: %s)", what, err.line, err.text);
        return -EIO;
    }
    int rc = hub_tree_from_array(j, what, out, NULL);
    json_decref(j);
    return rc;
}

long hub_tree_find(const hub_tree *t, const char *path)
{
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(t->e[mid].path, path);
        if (c == 0) return (long)mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

void hub_tree_free(hub_tree *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->e[i].path);
    free(t->e);
    t->e = NULL;
    t->n = 0;
}

int hub_fetch_tree(http_client *h, const char *endpoint, const hub_repo *r, const char *commit,
                   hub_tree *out, char **json, hub_cancel_fn cancelled, void *arg)
{
    char what[600];
    char *url = malloc(2048);
    json_t *all = json_array();
    int rc = url && all ? 0 : -ENOMEM;
    hub_what(what, sizeof what, r, NULL);
    if (url)
        snprintf(url, 2048, "%s/api/%s/%s/tree/%s?recursive=true&expand=false", endpoint,
                 hub_api_prefix(r->kind), r->id, commit);
    for (int page = 0; rc == 0 && url; page++) {
        if (page >= HUB_TREE_MAX_PAGES) {
            log_error("%s: tree listing has more than %d pages", what, HUB_TREE_MAX_PAGES);
            rc = -EIO;
            break;
        }
        http_response rs;
        rc = hub_api_get(h, url, what, cancelled, arg, &rs);
        if (rc == 0) {
            json_error_t err;
            /* NUL is accepted by the parser so that the entry naming it can be rejected. */
            json_t *j = json_loadb(rs.body, rs.body_len, JSON_ALLOW_NUL, &err);
            if (!json_is_array(j)) {
                log_error("%s: tree page %d is not a JSON array (%s)", what, page,
                          j ? "wrong type" : err.text);
                rc = -EIO;
            } else {
                json_array_extend(all, j);
            }
            json_decref(j);
        }
        free(url);
        url = NULL;
        if (rc == 0 && rs.link_next) url = strdup(rs.link_next);
        http_response_free(&rs);
    }
    free(url);
    json_t *clean = json ? json_array() : NULL;
    if (rc == 0) rc = hub_tree_from_array(all, what, out, clean);
    if (rc == 0 && json) {
        *json = json_dumps(clean, JSON_COMPACT);
        if (!*json) {
            hub_tree_free(out);
            rc = -ENOMEM;
        }
    }
    json_decref(clean);
    json_decref(all);
    return rc;
}

/* ---- resolve ---- */

char *hub_resolve_url(const char *endpoint, const hub_repo *r, const char *commit, const char *path)
{
    size_t cap = strlen(endpoint) + strlen(r->id) + 3 * strlen(path) + 128;
    char *url = malloc(cap), *ep = malloc(3 * strlen(path) + 1);
    if (url && ep) {
        hub_escape(ep, 3 * strlen(path) + 1, path, 1);
        snprintf(url, cap, "%s/%s%s/resolve/%s/%s", endpoint,
                 r->kind == HUB_DATASET ? "datasets/" : "", r->id, commit, ep);
    }
    free(ep);
    return url;
}

/* ---- huggingface_hub cache ---- */

static void hub_hfcache_folder(char *buf, size_t cap, const char *hubcache, const hub_repo *r)
{
    char id[HUB_ID_MAX * 2];
    size_t o = 0;
    for (const char *p = r->id; *p && o + 3 < sizeof id; p++) {
        if (*p == '/') {
            id[o++] = '-';
            id[o++] = '-';
        } else {
            id[o++] = *p;
        }
    }
    id[o] = 0;
    snprintf(buf, cap, "%s/%s--%s", hubcache, hub_api_prefix(r->kind), id);
}

int hub_hfcache_commit(const char *hubcache, const hub_repo *r, char commit[41])
{
    if (!hubcache) return -ENOENT;
    if (hub_is_commit(r->rev)) {
        memcpy(commit, r->rev, 41);
        return 0;
    }
    char path[PATH_MAX], folder[PATH_MAX - 300];
    hub_hfcache_folder(folder, sizeof folder, hubcache, r);
    if (strstr(r->rev, "..")) return -ENOENT;
    snprintf(path, sizeof path, "%s/refs/%s", folder, r->rev[0] ? r->rev : "main");
    FILE *f = fopen(path, "r");
    if (!f) return -ENOENT;
    char buf[64] = {0};
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' ' || buf[n - 1] == '\r'))
        buf[--n] = 0;
    if (!hub_is_commit(buf)) return -ENOENT;
    memcpy(commit, buf, 41);
    return 0;
}

/* trees/<commit>.json: {"format_version": 1, "files": {"<path>": {"size", "blob_id",
 * "lfs_sha256"?}}} — converted to the Hub's tree entry form and validated like a listing. */
static int hub_hfcache_tree_json(const char *file, const char *what, hub_tree *out)
{
    json_error_t err;
    json_t *j = json_load_file(file, 0, &err);
    json_t *files = json_object_get(j, "files");
    if (!json_is_object(files)) {
        json_decref(j);
        return -ENOENT;
    }
    json_t *arr = json_array(), *v;
    const char *k;
    json_object_foreach(files, k, v)
    {
        json_t *e = json_pack("{s:s,s:s,s:O,s:O}", "type", "file", "path", k, "size",
                              json_object_get(v, "size"), "oid", json_object_get(v, "blob_id"));
        const char *sha = json_string_value(json_object_get(v, "lfs_sha256"));
        if (e && sha) json_object_set_new(e, "lfs", json_pack("{s:s}", "oid", sha));
        if (e) json_array_append_new(arr, e);
    }
    int rc = hub_tree_from_array(arr, what, out, NULL);
    json_decref(arr);
    json_decref(j);
    return rc;
}

/* Walk the snapshot folder; the blob name a symlink points at is the content id. */
static int hub_hfcache_walk(const char *root, const char *rel, json_t *arr, int depth)
{
    char dirpath[PATH_MAX];
    snprintf(dirpath, sizeof dirpath, "%s%s%s", root, rel[0] ? "/" : "", rel);
    DIR *d = opendir(dirpath);
    if (!d || depth > 64) {
        if (d) closedir(d);
        return 0;
    }
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.' && (!de->d_name[1] || (de->d_name[1] == '.' && !de->d_name[2])))
            continue;
        char sub[PATH_MAX], full[PATH_MAX], link[PATH_MAX];
        if (snprintf(sub, sizeof sub, "%s%s%s", rel, rel[0] ? "/" : "", de->d_name) >=
            (int)sizeof sub)
            continue;
        if (snprintf(full, sizeof full, "%s/%s", root, sub) >= (int)sizeof full) continue;
        struct stat st;
        if (stat(full, &st) < 0) continue;
        if (S_ISDIR(st.st_mode)) {
            hub_hfcache_walk(root, sub, arr, depth + 1);
            continue;
        }
        if (!S_ISREG(st.st_mode)) continue;
        ssize_t ln = readlink(full, link, sizeof link - 1);
        link[ln > 0 ? ln : 0] = 0;
        const char *base = strrchr(link, '/') ? strrchr(link, '/') + 1 : link;
        char oid[41];
        memset(oid, '0', 40);
        oid[40] = 0;
        if (strlen(base) == 40 && hub_is_hex(base, 40)) memcpy(oid, base, 41);
        json_t *e = json_pack("{s:s,s:s,s:I,s:s}", "type", "file", "path", sub, "size",
                              (json_int_t)st.st_size, "oid", oid);
        if (e && strlen(base) == 64 && hub_is_hex(base, 64))
            json_object_set_new(e, "lfs", json_pack("{s:s}", "oid", base));
        if (e) json_array_append_new(arr, e);
    }
    closedir(d);
    return 0;
}

int hub_hfcache_tree(const char *hubcache, const hub_repo *r, const char *commit, hub_tree *out)
{
    if (!hubcache || !hub_is_commit(commit)) return -ENOENT;
    char folder[PATH_MAX - 300], path[PATH_MAX], what[600];
    hub_hfcache_folder(folder, sizeof folder, hubcache, r);
    hub_what(what, sizeof what, r, NULL);
    snprintf(path, sizeof path, "%s/trees/%s.json", folder, commit);
    if (hub_hfcache_tree_json(path, what, out) == 0) return 0;
    snprintf(path, sizeof path, "%s/snapshots/%s", folder, commit);
    struct stat st;
    if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode)) return -ENOENT;
    json_t *arr = json_array();
    hub_hfcache_walk(path, "", arr, 0);
    int rc = hub_tree_from_array(arr, what, out, NULL);
    json_decref(arr);
    return rc;
}

char *hub_hfcache_file(const char *hubcache, const hub_repo *r, const char *commit,
                       const char *path, int64_t size)
{
    if (!hubcache || !hub_is_commit(commit) || hub_check_path(path) < 0) return NULL;
    char folder[PATH_MAX - 300], full[PATH_MAX + HUB_PATH_MAX], real[PATH_MAX], croot[PATH_MAX];
    hub_hfcache_folder(folder, sizeof folder, hubcache, r);
    snprintf(full, sizeof full, "%s/snapshots/%s/%s", folder, commit, path);
    struct stat st;
    if (stat(full, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size != size) return NULL;
    /* The link must stay inside the cache (a snapshot link is ../../blobs/<etag>). */
    if (!realpath(full, real) || !realpath(folder, croot)) return NULL;
    size_t n = strlen(croot);
    if (strncmp(real, croot, n) != 0 || real[n] != '/') return NULL;
    return strdup(real);
}
