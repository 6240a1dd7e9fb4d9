/* SPDX-License-Identifier: MIT */
/* pc-http's /metrics page: the server's stats (pc_server_stats) in the
 * Prometheus text exposition format, the HTTP response counts and any lines
 * of the app's metrics hook. */
#ifndef PC_SAMPLE_HTTP_METRICS_H
#define PC_SAMPLE_HTTP_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "http_app.h"

/* What the page shows besides the server's stats: responses counted by
 * status code (codes[i] counted counts[i] times; a code 0 is "other"), and
 * the optional hook (http_app.h) whose lines come last. */
typedef struct http_metrics_src_s {
    const int *codes;
    const uint64_t *counts;
    size_t ncodes;
    http_metrics_hook_fn hook;
    void *hook_user;
} http_metrics_src_t;

/* Format the page for server s into out (cap bytes, cap > 0; NUL-terminated,
 * cut short when it does not fit). Returns the length written. Any thread
 * that may call pc_server_stats (the hook must be thread-safe). */
size_t http_metrics_format(const http_metrics_src_t *src, pc_server_t *s, char *out, size_t cap);

#endif
