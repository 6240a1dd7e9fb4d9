/* SPDX-License-Identifier: MIT */
/* Byte chunks for send queues. Not thread-safe: a chunk has one owner. */
#ifndef PC_CORE_CHUNK_H
#define PC_CORE_CHUNK_H

#include <stddef.h>
#include "queue.h"

/* A byte chunk of a send queue: data[off, len) is pending. */
typedef struct chunk_s {
    queue_t link;
    size_t off;
    size_t len;
    size_t cap;
    char data[];
} chunk_t;

#define PC_CHUNK_MIN 4096u

/* A chunk with room for at least need bytes (rounded up to PC_CHUNK_MIN),
 * empty and unlinked; NULL when out of memory (or need leaves no room for
 * the header). Any thread. */
chunk_t *chunk_new(size_t need);
/* Free a chunk (NULL is a no-op). Any thread. */
void chunk_free(chunk_t *c);
/* The memory a chunk holds: its header and capacity (what the server's
 * send_held counts for it). Any thread. */
static inline size_t chunk_mem(const chunk_t *c)
{
    return sizeof(chunk_t) + c->cap;
}
/* The memory the chunks linked in q hold (chunk_mem of each). The
 * queue's owner. */
size_t chunks_mem(const queue_t *q);
/* The bytes pending in the chunks linked in q (data[off, len) of each).
 * The queue's owner. */
size_t chunks_bytes(const queue_t *q);
/* Unlink and free every chunk of q, which is left empty. The queue's
 * owner. */
void chunks_free(queue_t *q);

#endif
