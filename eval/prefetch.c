/* prefetch.c — see prefetch.h. A FIFO of (file, offset, length) pieces under one mutex; the
 * threads keep one descriptor per file they have read. */
#include "prefetch.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PF_PIECE (4u << 20) /* hfmount's default block: one fetch per piece */
#define PF_BUF (1u << 20)

typedef struct {
    int file;
    uint64_t off, len;
} pf_piece;

struct pf_reader {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t *threads;
    int n_threads, quit;
    char **paths;
    int n_paths;
    pf_piece *q;
    size_t head, tail, cap; /* pending pieces are q[head, tail) */
};

static int pf_file_id(pf_reader *r, const char *path)
{
    for (int i = 0; i < r->n_paths; i++)
        if (strcmp(r->paths[i], path) == 0) return i;
    char **p = realloc(r->paths, (size_t)(r->n_paths + 1) * sizeof *p);
    if (!p) return -ENOMEM;
    r->paths = p;
    if (!(p[r->n_paths] = strdup(path))) return -ENOMEM;
    return r->n_paths++;
}

static void *pf_thread(void *arg)
{
    pf_reader *r = arg;
    char *buf = malloc(PF_BUF);
    int *fds = NULL, n_fds = 0;
    pthread_mutex_lock(&r->mu);
    while (buf) {
        while (!r->quit && r->head == r->tail)
            pthread_cond_wait(&r->cv, &r->mu);
        if (r->quit) break;
        pf_piece pc = r->q[r->head++];
        if (pc.file >= n_fds) { /* descriptors of files queued since the last piece */
            int *nf = realloc(fds, (size_t)r->n_paths * sizeof *nf);
            if (!nf) continue;
            fds = nf;
            for (int i = n_fds; i < r->n_paths; i++)
                fds[i] = open(r->paths[i], O_RDONLY | O_CLOEXEC);
            n_fds = r->n_paths;
        }
        int fd = fds[pc.file];
        pthread_mutex_unlock(&r->mu);
        for (uint64_t done = 0; fd >= 0 && done < pc.len;) {
            size_t want = pc.len - done < PF_BUF ? (size_t)(pc.len - done) : PF_BUF;
            ssize_t got = pread(fd, buf, want, (off_t)(pc.off + done));
            if (got < 0 && errno == EINTR) continue;
            if (got <= 0) break; /* the mapping will report it */
            done += (uint64_t)got;
        }
        pthread_mutex_lock(&r->mu);
    }
    pthread_mutex_unlock(&r->mu);
    for (int i = 0; i < n_fds; i++)
        if (fds[i] >= 0) close(fds[i]);
    free(fds);
    free(buf);
    return NULL;
}

int pf_start(int n_threads, pf_reader **out)
{
    pf_reader *r = calloc(1, sizeof *r);
    if (!r) return -ENOMEM;
    r->threads = calloc((size_t)n_threads, sizeof *r->threads);
    if (!r->threads) {
        free(r);
        return -ENOMEM;
    }
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    for (int i = 0; i < n_threads; i++) {
        if (pthread_create(&r->threads[i], NULL, pf_thread, r) != 0) break;
        r->n_threads++;
    }
    if (r->n_threads == 0) {
        pf_stop(r);
        return -EAGAIN;
    }
    *out = r;
    return 0;
}

int pf_queue(pf_reader *r, const char *path, uint64_t off, uint64_t len)
{
    pthread_mutex_lock(&r->mu);
    int id = pf_file_id(r, path), rc = id < 0 ? id : 0;
    /* pieces aligned to PF_PIECE so that two threads never wait on the same block */
    for (uint64_t a = off; rc == 0 && a < off + len;) {
        uint64_t b = (a / PF_PIECE + 1) * PF_PIECE;
        if (b > off + len) b = off + len;
        if (r->tail == r->cap) {
            size_t live = r->tail - r->head;
            if (r->head > 0) { /* reuse the consumed front first */
                memmove(r->q, r->q + r->head, live * sizeof *r->q);
            } else {
                size_t cap = r->cap ? 2 * r->cap : 256;
                pf_piece *q = realloc(r->q, cap * sizeof *q);
                if (!q) {
                    rc = -ENOMEM;
                    break;
                }
                r->q = q;
                r->cap = cap;
            }
            r->head = 0;
            r->tail = live;
        }
        r->q[r->tail++] = (pf_piece){id, a, b - a};
        a = b;
    }
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    return rc;
}

void pf_stop(pf_reader *r)
{
    if (!r) return;
    pthread_mutex_lock(&r->mu);
    r->quit = 1;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    /* A reader may be inside a pread on a stalled mount: wait a little, and if it is still
     * there, leave it (and the reader state it uses) behind rather than hang the caller. */
    int stuck = 0;
    for (int i = 0; i < r->n_threads; i++) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 2;
        if (pthread_timedjoin_np(r->threads[i], NULL, &until) != 0) {
            pthread_detach(r->threads[i]);
            stuck = 1;
        }
    }
    if (stuck) return;
    for (int i = 0; i < r->n_paths; i++)
        free(r->paths[i]);
    free(r->paths);
    free(r->q);
    free(r->threads);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    free(r);
}
