/* prefetch.h — background readers that fetch weight ranges before the forward pass needs them.
 *
 * On a lazily fetched file system (an hfmount mount) a page fault on the mapping waits for the
 * block to be downloaded, one fault at a time; madvise(WILLNEED) alone does not start enough
 * requests to keep the network busy. A few threads pread() the queued ranges in block-sized
 * pieces, in parallel and in the order they were queued, so the download of the next layers
 * overlaps the computation of this one (the bytes read land in the page cache that the mapping
 * shares). Each range is queued once per run; the buffers read into are discarded.
 *
 * Errors are negative errno values. Read errors are ignored here: the mapping reports them
 * (SIGBUS) when the pages are used. */
#ifndef HF_PREFETCH_H
#define HF_PREFETCH_H

#include <stddef.h>
#include <stdint.h>

typedef struct pf_reader pf_reader;

int pf_start(int n_threads, pf_reader **out);
/* Queue bytes [off, off + len) of path (the path is copied). */
int pf_queue(pf_reader *r, const char *path, uint64_t off, uint64_t len);
/* Stop the threads (pending ranges are dropped) and free everything; a thread still blocked
 * in a read after 2 s is detached and its state left allocated, so this never hangs. */
void pf_stop(pf_reader *r);

#endif
