/* SPDX-License-Identifier: MIT */
/* Cross-thread posts to one worker of a Linux backend (epoll, io_uring): a
 * locked list of ops and an eventfd written once per wake-up. The worker
 * calls post_list_woken when the eventfd fires and only then takes the
 * list, so a post that lands after the take always writes again. The
 * backend creates the eventfd (blocking or not, as its wait needs) and
 * closes it. */
#ifndef PC_IOCP_POST_LIST_H
#define PC_IOCP_POST_LIST_H

#include <errno.h>
#include <stdint.h>
#include <unistd.h>

#include "core/thread.h"
#include "port.h"

typedef struct post_list_s {
    pc_mutex_t lock;
    op_fifo_t ops; /* under lock */
    atomic_int wake_pending;
    int evfd;
} post_list_t;

static inline void post_list_init(post_list_t *pl)
{
    pc__mutex_init(&pl->lock);
    pl->ops.head = pl->ops.tail = NULL;
    atomic_store(&pl->wake_pending, 0);
    pl->evfd = -1;
}

static inline void post_list_destroy(post_list_t *pl)
{
    pc__mutex_destroy(&pl->lock);
}

/* Append op (any thread) and wake the worker unless a wake-up is pending. */
static inline void post_list_push(post_list_t *pl, op_t *op)
{
    pc__mutex_lock(&pl->lock);
    op_fifo_push(&pl->ops, op);
    pc__mutex_unlock(&pl->lock);
    if (atomic_exchange(&pl->wake_pending, 1) == 0) {
        uint64_t one = 1;
        ssize_t w;
        do {
            w = write(pl->evfd, &one, sizeof one);
        } while (w < 0 && errno == EINTR);
    }
}

/* The eventfd fired: later posts must write it again. Call before taking. */
static inline void post_list_woken(post_list_t *pl)
{
    atomic_store(&pl->wake_pending, 0);
}

/* Detach the whole list (worker), in post order. */
static inline op_t *post_list_take(post_list_t *pl)
{
    pc__mutex_lock(&pl->lock);
    op_t *h = pl->ops.head;
    pl->ops.head = pl->ops.tail = NULL;
    pc__mutex_unlock(&pl->lock);
    return h;
}

#endif
