/* SPDX-License-Identifier: MIT */
/* Byte chunks of send queues (chunk.h). */
#include "chunk.h"

#include "alloc.h"

chunk_t *chunk_new(size_t need)
{
    size_t cap = need < PC_CHUNK_MIN ? PC_CHUNK_MIN : need;
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
