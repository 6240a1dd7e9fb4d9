/* Buffers: fixed-size object pools and byte chunks for send queues. */
#ifndef PC_CORE_POOL_H
#define PC_CORE_POOL_H

#include <stddef.h>
#include "queue.h"

/* A free-list pool of equal-sized objects, grown in slabs, never shrunk until
 * pool_destroy. Not thread-safe: one owner. */
typedef struct pool_s {
    size_t obj_size;
    size_t per_slab;
    void *free_list;
    void *slabs;
    size_t in_use;
    size_t capacity;
} pool_t;

void pool_init(pool_t *p, size_t obj_size, size_t per_slab);
void *pool_get(pool_t *p); /* NULL on allocation failure */
void pool_put(pool_t *p, void *obj);
void pool_destroy(pool_t *p);

/* A byte chunk of a send queue: data[off, len) is pending. */
typedef struct chunk_s {
    queue_t link;
    size_t off;
    size_t len;
    size_t cap;
    char data[];
} chunk_t;

#define PC_CHUNK_MIN 4096u

/* A chunk with room for at least need bytes (rounded up to PC_CHUNK_MIN). */
chunk_t *chunk_new(size_t need);
void chunk_free(chunk_t *c);

#endif
