/* SPDX-License-Identifier: MIT */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
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

static pc_log_fn g_sink = default_sink;
static void *g_sink_user;
static atomic_int g_level = PC_LOG_INFO;

void pc_log_set_handler(pc_log_fn fn, void *user)
{
    g_sink_user = user;
    g_sink = fn ? fn : default_sink;
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
    g_sink(g_sink_user, level, line);
}
