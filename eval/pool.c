/* pool.c — see pool.h. One mutex/condvar pair publishes a "generation" of work; tasks are
 * claimed with an atomic counter; the last worker to finish wakes the caller. */
#include "pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

struct scratch {
    void *buf;
    size_t size;
};

struct pool {
    int n;
    pthread_t *threads;
    struct scratch *scratch;
    pthread_mutex_t mu;
    pthread_cond_t start, done;
    unsigned long generation;
    int quit;
    int running; /* workers still inside the current generation */
    pool_fn fn;
    void *arg;
    size_t n_tasks;
    atomic_size_t next;
};

struct worker_arg {
    pool *p;
    int id;
};

static void pool_drain(pool *p, pool_fn fn, void *arg, size_t n_tasks, int id)
{
    for (;;) {
        size_t t = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed);
        if (t >= n_tasks) return;
        fn(arg, t, id);
    }
}

static void *pool_worker(void *v)
{
    struct worker_arg *wa = v;
    pool *p = wa->p;
    int id = wa->id;
    free(wa);
    unsigned long seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->quit && p->generation == seen)
            pthread_cond_wait(&p->start, &p->mu);
        if (p->quit) break;
        seen = p->generation;
        pool_fn fn = p->fn;
        void *arg = p->arg;
        size_t n_tasks = p->n_tasks;
        pthread_mutex_unlock(&p->mu);
        pool_drain(p, fn, arg, n_tasks, id);
        pthread_mutex_lock(&p->mu);
        if (--p->running == 0) pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

int pool_create(int n_threads, pool **out)
{
    if (n_threads < 1) n_threads = 1;
    pool *p = calloc(1, sizeof *p);
    if (!p) return -ENOMEM;
    p->n = n_threads;
    p->threads = calloc((size_t)n_threads, sizeof *p->threads);
    p->scratch = calloc((size_t)n_threads * POOL_N_SCRATCH, sizeof *p->scratch);
    if (!p->threads || !p->scratch) {
        free(p->threads);
        free(p->scratch);
        free(p);
        return -ENOMEM;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->start, NULL);
    pthread_cond_init(&p->done, NULL);
    atomic_init(&p->next, 0);
    for (int i = 1; i < n_threads; i++) {
        struct worker_arg *wa = malloc(sizeof *wa);
        if (wa) {
            wa->p = p;
            wa->id = i;
        }
        if (!wa || pthread_create(&p->threads[i], NULL, pool_worker, wa) != 0) {
            free(wa);
            p->n = i; /* only the started workers are joined */
            pool_free(p);
            return -EAGAIN;
        }
    }
    *out = p;
    return 0;
}

void pool_free(pool *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->quit = 1;
    pthread_cond_broadcast(&p->start);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++)
        pthread_join(p->threads[i], NULL);
    for (int i = 0; i < p->n * POOL_N_SCRATCH; i++)
        free(p->scratch[i].buf);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->start);
    pthread_cond_destroy(&p->done);
    free(p->scratch);
    free(p->threads);
    free(p);
}

int pool_size(const pool *p)
{
    return p ? p->n : 1;
}

void pool_run(pool *p, size_t n_tasks, pool_fn fn, void *arg)
{
    if (n_tasks == 0) return;
    if (p->n == 1 || n_tasks == 1) {
        for (size_t t = 0; t < n_tasks; t++)
            fn(arg, t, 0);
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->arg = arg;
    p->n_tasks = n_tasks;
    atomic_store_explicit(&p->next, 0, memory_order_relaxed);
    p->running = p->n - 1;
    p->generation++;
    pthread_cond_broadcast(&p->start);
    pthread_mutex_unlock(&p->mu);

    pool_drain(p, fn, arg, n_tasks, 0);

    pthread_mutex_lock(&p->mu);
    while (p->running > 0)
        pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

void *pool_scratch(pool *p, int worker, int slot, size_t bytes)
{
    struct scratch *s = &p->scratch[worker * POOL_N_SCRATCH + slot];
    if (s->size >= bytes) return s->buf;
    free(s->buf);
    size_t rounded = (bytes + 63) & ~(size_t)63;
    s->buf = aligned_alloc(64, rounded);
    s->size = s->buf ? rounded : 0;
    return s->buf;
}
