/* pool.h — a fixed set of worker threads that run one parallel loop at a time.
 *
 * The evaluator's hot loops (matrix products, attention heads, log-softmax rows) are split into
 * independent tasks; pool_run() hands the task indices out through an atomic counter so that
 * uneven tasks (causal attention rows) balance themselves. The calling thread works too, so a
 * pool of n threads starts n - 1 workers. Each worker owns a scratch buffer (packed weight
 * tiles), reachable only from its own tasks, so no task ever shares mutable memory.
 *
 * Errors are negative errno values. */
#ifndef HF_POOL_H
#define HF_POOL_H

#include <stddef.h>

typedef struct pool pool;

/* fn(arg, task, worker): worker is in [0, pool_size()) and names the scratch to use. */
typedef void (*pool_fn)(void *arg, size_t task, int worker);

int pool_create(int n_threads, pool **out);
void pool_free(pool *p);
int pool_size(const pool *p);
/* Run fn for every task in [0, n_tasks) and return when all have finished. */
void pool_run(pool *p, size_t n_tasks, pool_fn fn, void *arg);
/* Worker-private scratch of at least bytes bytes (64-byte aligned), or NULL when out of memory.
 * Slot POOL_SCRATCH_GEMM belongs to the matrix product; POOL_SCRATCH_TASK to the task that
 * calls it, so a task can keep its own rows while it runs products. */
enum { POOL_SCRATCH_GEMM, POOL_SCRATCH_TASK, POOL_N_SCRATCH };
void *pool_scratch(pool *p, int worker, int slot, size_t bytes);

#endif
