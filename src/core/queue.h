/* SPDX-License-Identifier: MIT */
/* Intrusive doubly linked queue (circular, with a sentinel head). An element
 * embeds a queue_t and is recovered with pc_container_of. No allocation. */
#ifndef PC_CORE_QUEUE_H
#define PC_CORE_QUEUE_H

#include <stddef.h>

typedef struct queue_s {
    struct queue_s *next;
    struct queue_s *prev;
} queue_t;

/* The object of type whose member ptr points at. The byte arithmetic needs a
 * char pointer; the result is the start of a real object of type (ptr lies
 * inside one), so it is aligned for type: the void * step says so to
 * -Wcast-align, which cannot see it. */
#define pc_container_of(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

static inline void queue_init(queue_t *h)
{
    h->next = h->prev = h;
}
static inline int queue_empty(const queue_t *h)
{
    return h->next == h;
}
/* Is the element linked into some queue? (Elements are initialised with
 * queue_init and removed with queue_remove, which re-initialises them.) */
static inline int queue_linked(const queue_t *e)
{
    return e->next != e;
}
static inline void queue_insert_tail(queue_t *h, queue_t *e)
{
    e->prev = h->prev;
    e->next = h;
    h->prev->next = e;
    h->prev = e;
}
static inline void queue_insert_head(queue_t *h, queue_t *e)
{
    e->next = h->next;
    e->prev = h;
    h->next->prev = e;
    h->next = e;
}
static inline void queue_remove(queue_t *e)
{
    e->prev->next = e->next;
    e->next->prev = e->prev;
    e->next = e->prev = e;
}
static inline queue_t *queue_head(const queue_t *h)
{
    return h->next;
}
/* Move every element of src to the tail of dst; src becomes empty. */
static inline void queue_move_all(queue_t *dst, queue_t *src)
{
    if (queue_empty(src)) return;
    src->next->prev = dst->prev;
    dst->prev->next = src->next;
    src->prev->next = dst;
    dst->prev = src->prev;
    queue_init(src);
}

#define queue_foreach(q, h) for ((q) = (h)->next; (q) != (h); (q) = (q)->next)

#endif
