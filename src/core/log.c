/* SPDX-License-Identifier: MIT */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdatomic.h>

static const char *const level_names[] = {"debug", "info", "warn", "error"};

static void default_sink(void *user, pc_log_level_t level, const char *line)
{
    (void)user;
    /* One fputs per line so concurrent lines do not interleave. */
    char buf[1200];
    snprintf(buf, sizeof buf, "portcullis %s: %s\n", level_names[level], line);
    fputs(buf, stderr);
    fflush(stderr); /* the Windows CRT buffers stderr to files and pipes */
}

/* The sink in force: a function and its user pointer, published together
 * as one record so that a line never goes to one sink's function with
 * another's pointer. Records are never freed (a line being logged may still
 * hold the old one); setting a pair already used takes its record again, so
 * they number the distinct pairs ever set. Plain malloc: the records outlive
 * any pc_set_allocator. */
typedef struct log_sink_s {
    pc_log_fn fn;
    void *user;
    struct log_sink_s *next; /* every record, for reuse */
} log_sink_t;

static log_sink_t default_rec = {default_sink, NULL, NULL};
static _Atomic(log_sink_t *) g_rec = &default_rec;
static log_sink_t *g_records = &default_rec; /* under g_set_lock */
static atomic_flag g_set_lock = ATOMIC_FLAG_INIT;
static atomic_int g_level = PC_LOG_INFO;

void pc_log_set_handler(pc_log_fn fn, void *user)
{
    if (!fn) {
        fn = default_sink;
        user = NULL;
    }
    while (atomic_flag_test_and_set_explicit(&g_set_lock, memory_order_acquire)) {
    }
    log_sink_t *r = g_records;
    while (r && !(r->fn == fn && r->user == user))
        r = r->next;
    if (!r) {
        r = malloc(sizeof *r);
        if (r) {
            r->fn = fn;
            r->user = user;
            r->next = g_records;
            g_records = r;
        }
    }
    if (r) atomic_store_explicit(&g_rec, r, memory_order_release);
    atomic_flag_clear_explicit(&g_set_lock, memory_order_release);
    if (!r) pc__log(PC_LOG_ERROR, "log: no memory for the new sink; the old one stays");
}

void pc_log_set_level(pc_log_level_t level)
{
    atomic_store(&g_level, (int)level);
}

int pc__log_enabled(pc_log_level_t level)
{
    return (int)level >= atomic_load_explicit(&g_level, memory_order_relaxed);
}

void pc__log(pc_log_level_t level, const char *fmt, ...)
{
    if (level >= PC_LOG_OFF || !pc__log_enabled(level)) return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    const log_sink_t *r = atomic_load_explicit(&g_rec, memory_order_acquire);
    r->fn(r->user, level, line);
}
