/* SPDX-License-Identifier: MIT */
/* Byte chunks of send queues (chunk.h). */
#include "chunk.h"

#include <stdint.h>

#include "alloc.h"

chunk_t *chunk_new(size_t need)
{
    size_t cap = need < PC_CHUNK_MIN ? PC_CHUNK_MIN : need;
    if (cap > SIZE_MAX - sizeof(chunk_t)) return NULL; /* the header would wrap it */
    chunk_t *c = pc__malloc(sizeof *c + cap);
    if (!c) return NULL;
    queue_init(&c->link);
    c->off = c->len = 0;
    c->cap = cap;
    return c;
}

void chunk_free(chunk_t *c)
{
    pc__free(c);
}

size_t chunks_mem(const queue_t *q)
{
    size_t mem = 0;
    const queue_t *e;
    queue_foreach(e, q) mem += chunk_mem(pc_container_of(e, chunk_t, link));
    return mem;
}

size_t chunks_bytes(const queue_t *q)
{
    size_t n = 0;
    const queue_t *e;
    queue_foreach(e, q)
    {
        const chunk_t *c = pc_container_of(e, chunk_t, link);
        n += c->len - c->off;
    }
    return n;
}

void chunks_free(queue_t *q)
{
    while (!queue_empty(q)) {
        queue_t *e = queue_head(q);
        queue_remove(e);
        chunk_free(pc_container_of(e, chunk_t, link));
    }
}
