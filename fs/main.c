/* main.c — the hfmount executable: options, environment, mounting, daemonizing, the
 * multi-threaded session loop and an orderly teardown. All state lives in main()'s frame. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "blob.h"
#include "cache.h"
#include "http.h"
#include "log.h"
#include "ratelimit.h"
#include "vfs.h"

typedef struct options {
    const char *mountpoint;
    int foreground, debug, offline;
    char fuse_opts[4096];
    const char *endpoint, *cache_dir, *token_file, *rate, *log_file;
    int64_t revalidate_s, block_size, cache_max;
    double max_wait_s;
    int readahead;
    enum log_level level;
} options;

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: hfmount [options] MOUNTPOINT\n"
        "       hfmount [options] SOURCE MOUNTPOINT  (as mount(8) runs it; a URL SOURCE is the "
        "endpoint)\n"
        "\n"
        "Mount the Hugging Face Hub as a read-only file system: MOUNTPOINT/ORG/REPO is a model\n"
        "repo at its default branch, ORG/REPO@REV a branch, tag or commit (a REV with '/' is\n"
        "written percent-encoded: refs%%2Fpr%%2F1), datasets/ORG/NAME a dataset. Files are\n"
        "fetched lazily in blocks into a verified cache. Daemonizes once the mount is ready.\n"
        "\n"
        "options:\n"
        "  -f                     stay in the foreground (log to stderr)\n"
        "  -d                     debug: foreground, FUSE request tracing, --log-level debug\n"
        "  -o OPT[,OPT...]        FUSE mount options (allow_other, ro, ...); always read-only\n"
        "  --endpoint URL         the Hub (default $HF_ENDPOINT or https://huggingface.co)\n"
        "  --cache-dir DIR        block cache and metadata (default $XDG_CACHE_HOME/hfmount\n"
        "                         or ~/.cache/hfmount)\n"
        "  --token-file FILE      token file (default: $HF_TOKEN, else $HF_TOKEN_PATH, else\n"
        "                         $HF_HOME/token)\n"
        "  --offline              no network at all; serve what is cached (or HF_HUB_OFFLINE=1)\n"
        "  --revalidate SECONDS   recheck a branch's commit at most this often (default 3600)\n"
        "  --block-size SIZE      fetch and cache unit, e.g. 4M (default 4M, 64K..64M)\n"
        "  --cache-max SIZE       bound the cache's disk use, LRU (e.g. 50G; default none)\n"
        "  --max-wait SECONDS     longest a read waits out rate limits and retries (1800)\n"
        "  --rate api=N/S,resolvers=N/S\n"
        "                         client-side request budgets (default: the Hub's quotas)\n"
        "  --readahead N          blocks fetched ahead of a sequential reader (default 8)\n"
        "  --log FILE             append the log to FILE (default: stderr with -f, else\n"
        "                         syslog, else CACHE_DIR/hfmount.log when /dev/log is absent)\n"
        "  --log-level LEVEL      error, warn, info (default) or debug\n"
        "  -h, --help             this text\n"
        "  -V, --version          the version\n"
        "\n"
        "environment: HF_ENDPOINT, HF_TOKEN, HF_TOKEN_PATH, HF_HOME, HF_HUB_CACHE (files\n"
        "already there are served without requests), HF_HUB_OFFLINE, XDG_CACHE_HOME.\n"
        "MOUNTPOINT/.hfmount/stats shows requests, bytes and cache hits as JSON.\n"
        "Unmount with: fusermount3 -u MOUNTPOINT\n");
}

/* "4M", "512K", "1G", "4MiB", "123" → bytes; -1 when malformed. */
static int64_t parse_size(const char *s)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || v < 0) return -1;
    int64_t mul = 1;
    switch (toupper((unsigned char)*end)) {
    case 0:
        break;
    case 'K':
        mul = 1LL << 10;
        end++;
        break;
    case 'M':
        mul = 1LL << 20;
        end++;
        break;
    case 'G':
        mul = 1LL << 30;
        end++;
        break;
    case 'T':
        mul = 1LL << 40;
        end++;
        break;
    default:
        return -1;
    }
    if (*end && strcasecmp(end, "iB") != 0 && strcasecmp(end, "B") != 0) return -1;
    return (int64_t)(v * (double)mul);
}

static int parse_seconds(const char *s, const char *opt, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || v < 0) {
        fprintf(stderr, "hfmount: %s wants a number of seconds, not \"%s\"\n", opt, s);
        return -1;
    }
    *out = v;
    return 0;
}

static int env_true(const char *name)
{
    const char *v = getenv(name);
    return v && (!strcasecmp(v, "1") || !strcasecmp(v, "on") || !strcasecmp(v, "yes") ||
                 !strcasecmp(v, "true"));
}

/* $XDG_CACHE_HOME/sub, else ~/.cache/sub. */
static void default_cache_path(char *buf, size_t cap, const char *sub)
{
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (xdg && *xdg)
        snprintf(buf, cap, "%s/%s", xdg, sub);
    else
        snprintf(buf, cap, "%s/.cache/%s", home && *home ? home : "/tmp", sub);
}

static int add_fuse_opt(options *o, const char *opt)
{
    size_t n = strlen(o->fuse_opts);
    if (n + strlen(opt) + 2 >= sizeof o->fuse_opts) {
        fprintf(stderr, "hfmount: -o options too long\n");
        return -1;
    }
    snprintf(o->fuse_opts + n, sizeof o->fuse_opts - n, ",%s", opt);
    return 0;
}

enum {
    OPT_ENDPOINT = 256,
    OPT_CACHE_DIR,
    OPT_TOKEN_FILE,
    OPT_OFFLINE,
    OPT_REVALIDATE,
    OPT_BLOCK_SIZE,
    OPT_CACHE_MAX,
    OPT_MAX_WAIT,
    OPT_RATE,
    OPT_READAHEAD,
    OPT_LOG_LEVEL,
    OPT_LOG
};

static int parse_level(const char *s, enum log_level *out)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    for (int i = 0; i < 4; i++)
        if (strcasecmp(s, names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    fprintf(stderr, "hfmount: --log-level wants error, warn, info or debug, not \"%s\"\n", s);
    return -1;
}

/* 0 ok, 1 exit successfully (help/version), -1 error (already reported). */
static int parse_args(int argc, char **argv, options *o)
{
    static const struct option longs[] = {{"endpoint", required_argument, 0, OPT_ENDPOINT},
                                          {"cache-dir", required_argument, 0, OPT_CACHE_DIR},
                                          {"token-file", required_argument, 0, OPT_TOKEN_FILE},
                                          {"offline", no_argument, 0, OPT_OFFLINE},
                                          {"revalidate", required_argument, 0, OPT_REVALIDATE},
                                          {"block-size", required_argument, 0, OPT_BLOCK_SIZE},
                                          {"cache-max", required_argument, 0, OPT_CACHE_MAX},
                                          {"max-wait", required_argument, 0, OPT_MAX_WAIT},
                                          {"rate", required_argument, 0, OPT_RATE},
                                          {"readahead", required_argument, 0, OPT_READAHEAD},
                                          {"log-level", required_argument, 0, OPT_LOG_LEVEL},
                                          {"log", required_argument, 0, OPT_LOG},
                                          {"help", no_argument, 0, 'h'},
                                          {"version", no_argument, 0, 'V'},
                                          {0, 0, 0, 0}};
    double d;
    int c;
    char *end;
    while ((c = getopt_long(argc, argv, "fdo:hV", longs, NULL)) != -1) {
        switch (c) {
        case 'f':
            o->foreground = 1;
            break;
        case 'd':
            o->debug = o->foreground = 1;
            o->level = LOG_LVL_DEBUG;
            break;
        case 'o':
            if (add_fuse_opt(o, optarg) < 0) return -1;
            break;
        case 'h':
            usage(stdout);
            return 1;
        case 'V':
            printf("hfmount %s\n", HF_VERSION);
            return 1;
        case OPT_ENDPOINT:
            o->endpoint = optarg;
            break;
        case OPT_CACHE_DIR:
            o->cache_dir = optarg;
            break;
        case OPT_TOKEN_FILE:
            o->token_file = optarg;
            break;
        case OPT_OFFLINE:
            o->offline = 1;
            break;
        case OPT_RATE:
            o->rate = optarg;
            break;
        case OPT_REVALIDATE:
            if (parse_seconds(optarg, "--revalidate", &d) < 0) return -1;
            o->revalidate_s = (int64_t)d;
            break;
        case OPT_MAX_WAIT:
            if (parse_seconds(optarg, "--max-wait", &o->max_wait_s) < 0) return -1;
            break;
        case OPT_BLOCK_SIZE:
            o->block_size = parse_size(optarg);
            if (o->block_size < (64 << 10) || o->block_size > (64 << 20) || o->block_size % 4096) {
                fprintf(stderr, "hfmount: --block-size \"%s\": want 64K..64M, a multiple of 4K\n",
                        optarg);
                return -1;
            }
            break;
        case OPT_CACHE_MAX:
            o->cache_max = parse_size(optarg);
            if (o->cache_max < 0) {
                fprintf(stderr, "hfmount: --cache-max \"%s\" is not a size (e.g. 50G)\n", optarg);
                return -1;
            }
            break;
        case OPT_READAHEAD:
            o->readahead = (int)strtol(optarg, &end, 10);
            if (*end || end == optarg || o->readahead < 0 || o->readahead > 256) {
                fprintf(stderr, "hfmount: --readahead \"%s\": want 0..256 blocks\n", optarg);
                return -1;
            }
            break;
        case OPT_LOG_LEVEL:
            if (parse_level(optarg, &o->level) < 0) return -1;
            break;
        case OPT_LOG:
            o->log_file = optarg;
            break;
        default:
            fprintf(stderr, "Try 'hfmount --help'.\n");
            return -1;
        }
    }
    /* mount(8) and /etc/fstab call "hfmount SOURCE MOUNTPOINT -o OPTS": a SOURCE that is a
     * URL selects the endpoint, any other (e.g. "hfmount") is a label. */
    if (optind == argc - 2) {
        const char *src = argv[optind++];
        if (!o->endpoint && (!strncmp(src, "http://", 7) || !strncmp(src, "https://", 8)))
            o->endpoint = src;
    }
    if (optind != argc - 1) {
        fprintf(stderr, "hfmount: %s\nTry 'hfmount --help'.\n",
                optind >= argc ? "missing MOUNTPOINT" : "exactly one MOUNTPOINT expected");
        return -1;
    }
    o->mountpoint = argv[optind];
    return 0;
}

/* The token: --token-file, else HF_TOKEN, else HF_TOKEN_PATH, else $HF_HOME/token. */
static char *read_token(const options *o, const char *hf_home)
{
    const char *env = getenv("HF_TOKEN");
    char path[PATH_MAX];
    if (!o->token_file && env && *env) return strdup(env);
    if (o->token_file)
        snprintf(path, sizeof path, "%s", o->token_file);
    else if (getenv("HF_TOKEN_PATH"))
        snprintf(path, sizeof path, "%s", getenv("HF_TOKEN_PATH"));
    else if (snprintf(path, sizeof path, "%s/token", hf_home) >= (int)sizeof path)
        return NULL;
    FILE *f = fopen(path, "r");
    if (!f) {
        if (o->token_file)
            fprintf(stderr, "hfmount: cannot read --token-file %s: %s\n", path, strerror(errno));
        return NULL;
    }
    char buf[1024] = {0};
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    while (n > 0 && isspace((unsigned char)buf[n - 1]))
        buf[--n] = 0;
    char *s = buf;
    while (isspace((unsigned char)*s))
        s++;
    return *s ? strdup(s) : NULL;
}

static int mkdirs(const char *path)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s", path);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = 0;
        if (mkdir(p, 0755) < 0 && errno != EEXIST) return -errno;
        *s = '/';
    }
    if (mkdir(p, 0755) < 0 && errno != EEXIST) return -errno;
    return 0;
}

/* mountinfo writes space, tab, newline and backslash in paths as \ooo. */
static void unescape_octal(char *s)
{
    char *w = s;
    for (char *r = s; *r; r++) {
        if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' &&
            r[3] >= '0' && r[3] <= '7') {
            *w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
            r += 3;
        } else {
            *w++ = *r;
        }
    }
    *w = 0;
}

/* The topmost mount on the absolute path real, from /proc/self/mountinfo: its device and file
 * system type (e.g. "fuse.hfmount"). 0 when found, -ENOENT when real is not a mount point. */
static int mount_lookup(const char *real, unsigned *maj, unsigned *min, char *type, size_t cap)
{
    char line[8192];
    FILE *f = fopen("/proc/self/mountinfo", "r");
    if (!f) return -errno;
    int found = -ENOENT;
    while (fgets(line, sizeof line, f)) { /* later lines are mounted on top of earlier ones */
        char mnt[4096], fstype[256], *dash = strstr(line, " - ");
        unsigned a, b;
        if (!dash || sscanf(line, "%*d %*d %u:%u %*s %4095s", &a, &b, mnt) != 3 ||
            sscanf(dash + 3, "%255s", fstype) != 1)
            continue;
        unescape_octal(mnt);
        if (strcmp(mnt, real) != 0) continue;
        *maj = a;
        *min = b;
        snprintf(type, cap, "%s", fstype);
        found = 0;
    }
    fclose(f);
    return found;
}

/* The mount point must be an existing directory that is neither a live hfmount mount nor a
 * dead mount left by a killed daemon (either would be silently stacked over). It is resolved to
 * an absolute path: the daemon runs in / and the unmount at exit must still find it. 0 or -1
 * (reported). */
static void report_dead_mount(const char *mnt)
{
    fprintf(stderr,
            "hfmount: %s is a dead mount (Transport endpoint is not connected): the daemon "
            "that served it died; run 'fusermount3 -u %s' and mount again\n",
            mnt, mnt);
}

static int check_mountpoint(const char *mnt, char real[PATH_MAX])
{
    struct stat st;
    if (stat(mnt, &st) < 0) {
        if (errno == ENOTCONN)
            report_dead_mount(mnt);
        else
            fprintf(stderr, "hfmount: mount point %s: %s\n", mnt, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        fprintf(stderr, "hfmount: mount point %s is not a directory\n", mnt);
        return -1;
    }
    if (!realpath(mnt, real)) {
        fprintf(stderr, "hfmount: mount point %s: %s\n", mnt, strerror(errno));
        return -1;
    }
    unsigned maj, min;
    char type[256];
    if (mount_lookup(real, &maj, &min, type, sizeof type) == 0 && !strcmp(type, "fuse.hfmount")) {
        /* stat may have answered from the kernel's attribute cache; statfs always asks. */
        struct statvfs sv;
        if (statvfs(real, &sv) < 0 && errno == ENOTCONN) {
            report_dead_mount(mnt);
            return -1;
        }
        fprintf(stderr,
                "hfmount: %s is already an hfmount mount; unmount it first "
                "(fusermount3 -u %s)\n",
                real, real);
        return -1;
    }
    return 0;
}

/* Split an http(s)://[userinfo@]host[:port]/... endpoint into host and port strings. */
static int endpoint_hostport(const char *ep, char *host, size_t hcap, char *port, size_t pcap)
{
    const char *p = strstr(ep, "://");
    if (!p) return -EINVAL;
    snprintf(port, pcap, "%s", strncmp(ep, "https", 5) == 0 ? "443" : "80");
    p += 3;
    size_t auth = strcspn(p, "/?#");
    const char *at = memchr(p, '@', auth);
    if (at) p = at + 1;
    size_t n;
    if (*p == '[') {
        const char *close = strchr(p, ']');
        if (!close) return -EINVAL;
        n = (size_t)(close - p - 1);
        snprintf(host, hcap, "%.*s", (int)n, p + 1);
        p = close + 1;
    } else {
        n = strcspn(p, ":/?#");
        snprintf(host, hcap, "%.*s", (int)n, p);
        p += n;
    }
    if (*p == ':') {
        n = strcspn(p + 1, "/?#");
        if (n) snprintf(port, pcap, "%.*s", (int)n, p + 1);
    }
    return *host ? 0 : -EINVAL;
}

/* One non-blocking connect, waited for at most ms. 0 or a positive errno. */
static int connect_within(const struct addrinfo *ai, int ms)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return errno;
    int err = 0;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        err = errno;
        if (err == EINPROGRESS) {
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            int n = poll(&pfd, 1, ms);
            socklen_t len = sizeof err;
            if (n == 0)
                err = ETIMEDOUT;
            else if (n < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
                err = errno;
        }
    }
    close(fd);
    return err;
}

/* A plain TCP connect to the endpoint (no HTTP request, so request counts stay exact), 3 s
 * at most: a mistyped or dead endpoint is reported at mount time rather than by a read that
 * waits out --max-wait. 0 when reachable, else -1 with the cause in why. */
static int probe_endpoint(const char *ep, char *why, size_t cap)
{
    char host[1024], port[32];
    if (endpoint_hostport(ep, host, sizeof host, port, sizeof port) < 0) {
        snprintf(why, cap, "no host in the URL");
        return -1;
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    int g = getaddrinfo(host, port, &hints, &res);
    if (g != 0) {
        snprintf(why, cap, "cannot resolve %s: %s", host, gai_strerror(g));
        return -1;
    }
    int err = EHOSTUNREACH;
    for (struct addrinfo *ai = res; ai && err; ai = ai->ai_next)
        err = connect_within(ai, 3000);
    freeaddrinfo(res);
    if (err) snprintf(why, cap, "connect to %s port %s: %s", host, port, strerror(err));
    return err ? -1 : 0;
}

/* Where the daemon's log goes: --log FILE, else syslog, else (no /dev/log to receive it) a
 * file in the cache dir. Opened before detaching so that a bad path is reported. The fd
 * (appending) or -1 for syslog/stderr; -2 when it cannot be opened (reported). */
static int open_log(const options *o, const char *cache_dir, char *path, size_t cap)
{
    if (o->log_file)
        snprintf(path, cap, "%s", o->log_file);
    else if (!o->foreground && access("/dev/log", F_OK) != 0) {
        if (snprintf(path, cap, "%s/hfmount.log", cache_dir) >= (int)cap) {
            fprintf(stderr, "hfmount: cache directory path too long: %s\n", cache_dir);
            return -2;
        }
    } else
        return -1;
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "hfmount: cannot open the log file %s: %s\n", path, strerror(errno));
        return -2;
    }
    return fd;
}

/* Detach like fuse_daemonize(), except that the parent stays until the child reports (with
 * daemon_ready()) that it serves: the exit status is then the daemon's start-up result and
 * an error after the fork still reaches the terminal, which the child keeps as stderr until
 * then. In the child: the fd to report on, or -1 (no fork: reported). */
static int daemon_detach(void)
{
    int fds[2];
    if (pipe(fds) < 0) {
        fprintf(stderr, "hfmount: pipe: %s\n", strerror(errno));
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "hfmount: fork: %s\n", strerror(errno));
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid > 0) {
        close(fds[1]);
        unsigned char st = 1;
        ssize_t n;
        do
            n = read(fds[0], &st, 1);
        while (n < 0 && errno == EINTR);
        _exit(n == 1 ? st : 1); /* no byte: the child died starting up */
    }
    close(fds[0]);
    setsid();
    if (chdir("/") < 0) { /* keep going: paths in use are absolute */
    }
    return fds[1];
}

typedef struct daemon_io {
    int ready_fd; /* report fd of a detached child, -1 in the foreground */
    int log_fd;   /* the log file, -1 for syslog (detached) or stderr (foreground) */
    enum log_level level;
} daemon_io;

/* Start-up done: the log leaves the terminal (for the file or syslog), a detached child drops
 * its terminal and releases the waiting parent with status 0. Before threads log anything. */
static void daemon_ready(daemon_io *io)
{
    if (io->ready_fd >= 0) {
        int nul = open("/dev/null", O_RDWR);
        if (nul >= 0) {
            dup2(nul, 0);
            dup2(nul, 1);
            dup2(io->log_fd >= 0 ? io->log_fd : nul, 2);
            if (nul > 2) close(nul);
        }
        if (io->log_fd < 0) log_setup(1, io->level);
        unsigned char ok = 0;
        if (write(io->ready_fd, &ok, 1) != 1) { /* the parent is gone: nothing to tell */
        }
        close(io->ready_fd);
        io->ready_fd = -1;
    } else if (io->log_fd >= 0) {
        dup2(io->log_fd, 2);
    }
}

/* The kernel reads ahead only read_ahead_kb of a FUSE file (128 KiB by default) in requests of
 * at most that size; a model load is sequential and the block fetcher is parallel, so raise it
 * to a few blocks. The mount's device comes from mountinfo (a stat of the mount point would
 * need the session loop, which is not running yet). Best effort: it needs root. */
static void raise_readahead(const char *real, int64_t bytes)
{
    unsigned maj = 0, min = 0;
    char type[256];
    if (mount_lookup(real, &maj, &min, type, sizeof type) < 0 || strcmp(type, "fuse.hfmount"))
        return;
    char path[128];
    snprintf(path, sizeof path, "/sys/class/bdi/%u:%u/read_ahead_kb", maj, min);
    FILE *ra = fopen(path, "w");
    if (!ra) {
        log_debug("cannot raise the kernel read-ahead (%s): %s", path, strerror(errno));
        return;
    }
    fprintf(ra, "%lld\n", (long long)(bytes >> 10));
    fclose(ra);
}

typedef struct ra_job {
    vfs *v;
    char mountpoint[PATH_MAX];
    int64_t bytes;
} ra_job;

/* The INIT answer sets the read-ahead, so raise it only after that. */
static void *raise_readahead_later(void *arg)
{
    ra_job *j = arg;
    for (int i = 0; i < 500 && !vfs_initialized(j->v); i++)
        usleep(10000);
    raise_readahead(j->mountpoint, j->bytes);
    return NULL;
}

/* Transfers and waits poll this: once the session is ending (unmount, SIGTERM), a request
 * stuck in retries gives up so that the worker threads can be joined. */
static int session_ending(void *arg)
{
    return fuse_session_exited((struct fuse_session *)arg);
}

/* The daemon proper, once mounted: network client, fetcher, the loop. */
static int serve(struct fuse_session *se, vfs *v, cache *c, const options *o, const char *endpoint,
                 const char *token, const char *cache_dir, const char *mnt_real, daemon_io *io)
{
    http_opts ho = {.endpoint = endpoint,
                    .token = token,
                    .rate = o->rate,
                    .state_dir = cache_dir,
                    .connect_timeout_s = 10,
                    .stall_timeout_s = 30,
                    .deadline_s = 600,
                    .max_wait_s = o->max_wait_s,
                    .offline = o->offline};
    http_client *http = NULL;
    blob_pool *blobs = NULL;
    int rc = http_client_new(&ho, &http);
    if (rc < 0) {
        log_error("cannot start the HTTP client: %s", strerror(-rc));
        return 1;
    }
    blob_pool_opts bo = {.http = http,
                         .cache = c,
                         .endpoint = endpoint,
                         .block_size = (uint32_t)o->block_size,
                         .readahead = o->readahead,
                         .workers = o->readahead < 4 ? 4 : (o->readahead > 16 ? 16 : o->readahead),
                         .stopping = session_ending,
                         .stop_arg = se,
                         .on_bad_content = vfs_bad_content,
                         .bad_content_arg = v};
    vfs_set_session(v, se); /* before the workers that call vfs_bad_content start */
    rc = blob_pool_new(&bo, &blobs);
    if (rc < 0) {
        log_error("cannot start the block fetcher: %s", strerror(-rc));
        http_client_free(http);
        return 1;
    }
    vfs_attach(v, http, blobs, session_ending, se);
    daemon_ready(io);
    log_info("serving %s on %s (cache %s, block size %lld%s)", endpoint, mnt_real, cache_dir,
             (long long)o->block_size, o->offline ? ", offline" : "");
    ra_job ra = {.v = v, .bytes = 4 * o->block_size};
    snprintf(ra.mountpoint, sizeof ra.mountpoint, "%s", mnt_real);
    pthread_t ra_thread;
    int ra_started = pthread_create(&ra_thread, NULL, raise_readahead_later, &ra) == 0;
    struct fuse_loop_config *lc = fuse_loop_cfg_create();
    fuse_loop_cfg_set_max_threads(lc, 64);
    fuse_loop_cfg_set_idle_threads(lc, 8);
    rc = fuse_session_loop_mt(se, lc);
    fuse_loop_cfg_destroy(lc);
    if (ra_started) pthread_join(ra_thread, NULL);
    vfs_attach(v, NULL, NULL, NULL, NULL);
    blob_pool_free(blobs);
    http_client_free(http);
    return rc == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    options o = {.revalidate_s = 3600,
                 .block_size = 4 << 20,
                 .max_wait_s = 1800,
                 .readahead = 8,
                 .level = LOG_LVL_INFO};
    int pr = parse_args(argc, argv, &o);
    if (pr != 0) return pr > 0 ? 0 : 1;
    log_setup(0, o.level);
    if (env_true("HF_HUB_OFFLINE")) o.offline = 1;

    char endpoint[2048], cache_dir[PATH_MAX], hf_home[PATH_MAX], hubcache[PATH_MAX];
    snprintf(endpoint, sizeof endpoint, "%s",
             o.endpoint
                 ? o.endpoint
                 : (getenv("HF_ENDPOINT") && *getenv("HF_ENDPOINT") ? getenv("HF_ENDPOINT")
                                                                    : "https://huggingface.co"));
    for (size_t n = strlen(endpoint); n > 0 && endpoint[n - 1] == '/'; n--)
        endpoint[n - 1] = 0;
    if (strncmp(endpoint, "http://", 7) != 0 && strncmp(endpoint, "https://", 8) != 0) {
        fprintf(stderr, "hfmount: endpoint \"%s\" must start with http:// or https://\n", endpoint);
        return 1;
    }
    if (getenv("HF_HOME") && *getenv("HF_HOME"))
        snprintf(hf_home, sizeof hf_home, "%s", getenv("HF_HOME"));
    else
        default_cache_path(hf_home, sizeof hf_home, "huggingface");
    if (getenv("HF_HUB_CACHE") && *getenv("HF_HUB_CACHE"))
        snprintf(hubcache, sizeof hubcache, "%s", getenv("HF_HUB_CACHE"));
    else if (snprintf(hubcache, sizeof hubcache, "%s/hub", hf_home) >= (int)sizeof hubcache)
        hubcache[0] = 0;
    if (o.cache_dir)
        snprintf(cache_dir, sizeof cache_dir, "%s", o.cache_dir);
    else
        default_cache_path(cache_dir, sizeof cache_dir, "hfmount");
    int rc = mkdirs(cache_dir);
    char real[PATH_MAX];
    if (rc < 0 || !realpath(cache_dir, real)) {
        fprintf(stderr, "hfmount: cannot create the cache directory %s: %s\n", cache_dir,
                strerror(rc < 0 ? -rc : errno));
        return 1;
    }
    snprintf(cache_dir, sizeof cache_dir, "%s", real); /* the daemon runs in / */
    char mnt_real[PATH_MAX]; /* resolved before mounting: afterwards it would ask the mount */
    if (check_mountpoint(o.mountpoint, mnt_real) < 0) return 1;
    /* Everything that can fail is checked here, while the error still reaches the terminal
     * and the exit status (the HTTP client itself starts threads, so it starts after the fork). */
    long rq[RL_NBUCKETS];
    double rw[RL_NBUCKETS];
    if (rl_parse_rate(o.rate, rq, rw) < 0) return 1;
    char log_path[PATH_MAX];
    daemon_io io = {.ready_fd = -1,
                    .log_fd = open_log(&o, cache_dir, log_path, sizeof log_path),
                    .level = o.level};
    if (io.log_fd == -2) return 1;
    char *token = read_token(&o, hf_home);
    if (o.token_file && !token) {
        if (io.log_fd >= 0) close(io.log_fd);
        return 1;
    }

    char why[1200];
    if (!o.offline && probe_endpoint(endpoint, why, sizeof why) < 0)
        fprintf(stderr,
                "hfmount: warning: cannot reach %s (%s); cached repos are served, others wait "
                "up to --max-wait (%g s); check HF_ENDPOINT / --endpoint, or use --offline\n",
                endpoint, why, o.max_wait_s);
    cache *c = NULL;
    vfs *v = NULL;
    if (cache_open(cache_dir, o.cache_max, &c) < 0 ||
        vfs_new(&(vfs_opts){.cache = c,
                            .endpoint = endpoint,
                            .hubcache = hubcache,
                            .offline = o.offline,
                            .revalidate_s = o.revalidate_s},
                &v) < 0) {
        fprintf(stderr, "hfmount: cannot open the cache %s\n", cache_dir);
        cache_close(c);
        free(token);
        if (io.log_fd >= 0) close(io.log_fd);
        return 1;
    }
    char fopts[4200];
    snprintf(fopts, sizeof fopts, "ro,default_permissions,fsname=hfmount,subtype=hfmount%s",
             o.fuse_opts);
    char *fargv[] = {argv[0], "-o", fopts, o.debug ? "-d" : NULL, NULL};
    struct fuse_args args = FUSE_ARGS_INIT(o.debug ? 4 : 3, fargv);
    struct fuse_session *se = fuse_session_new(&args, vfs_ops(), sizeof *vfs_ops(), v);
    rc = 1;
    if (!se) {
        fprintf(stderr, "hfmount: bad FUSE options \"%s\"\n", o.fuse_opts);
    } else if (fuse_set_signal_handlers(se) != 0) {
        fuse_session_destroy(se);
    } else if (fuse_session_mount(se, mnt_real) != 0) {
        fprintf(stderr, "hfmount: cannot mount on %s (is /dev/fuse usable? see fusermount3)\n",
                mnt_real);
        fuse_remove_signal_handlers(se);
        fuse_session_destroy(se);
    } else {
        /* The mount exists now; a detached parent exits once the child serves (0) or failed
         * (1); a failing child unmounts before it exits. */
        if (o.foreground || (io.ready_fd = daemon_detach()) >= 0)
            rc = serve(se, v, c, &o, endpoint, token, cache_dir, mnt_real, &io);
        fuse_session_unmount(se);
        fuse_remove_signal_handlers(se);
        fuse_session_destroy(se);
    }
    fuse_opt_free_args(&args);
    if (io.log_fd >= 0) close(io.log_fd);
    vfs_free(v);
    cache_close(c);
    free(token);
    return rc;
}
