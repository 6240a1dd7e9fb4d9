/* SPDX-License-Identifier: MIT */
/*
 * http_app — the HTTP/1.1 responder behind pc-http, as a library so the
 * integration tests run exactly the server logic that the sample ships.
 *
 *   GET|HEAD /          200 "Hello, World!" (text/plain)
 *   GET|HEAD /metrics   the server's stats in Prometheus text format
 *   GET|HEAD /whoami    "client ADDR:PORT\nproxy ADDR:PORT|-\n": the client as the
 *                       server sees it (behind a trusted proxy: the real one)
 *   other paths         404; other known methods 405; unknown methods 501
 *
 * Keep-alive and pipelining: every complete request in one read is answered
 * in order from the same on_data call, so the responses leave in one gather
 * write, up to the server's send_high_water: past it, the rest of the read
 * waits (reading paused) until the send queue drains to low water
 * (on_drain), so a pipelined flood is answered whole at bounded memory
 * instead of running into send_queue_limit (set below send_high_water, that
 * limit refuses first, and the connection closes). Request bodies
 * (Content-Length, or chunked) are read and discarded up to max_body_bytes
 * (beyond: 413). A Content-Length request is answered when its head is
 * complete, a chunked one when its body ends ("100 Continue" first if the
 * client asked for it).
 * Parser errors (400, 431, 501 for a transfer coding other than chunked,
 * 505), malformed chunked framing (400) and 413 are answered with
 * Connection: close and a graceful close.
 *
 * Memory: a connection owns no application memory while it sits between
 * requests; a small state block (parser, the bytes of a partial head) is
 * allocated only while a request head or body is split across reads, or
 * while pipelined requests wait for the queue to drain (at most the rest of
 * one read), and freed as soon as that ends.
 *
 * THREADING: callbacks run on the server's workers (see portcullis.h); the
 * app keeps no lock on the request path (per-thread caches and counters).
 * http_app_create / http_app_start / http_app_destroy are called by the
 * thread that owns the server.
 */
#ifndef PC_HTTP_APP_H
#define PC_HTTP_APP_H

#include <stddef.h>
#include <stdint.h>

#include "portcullis.h"

#ifdef __cplusplus
extern "C" {
#endif

#define HTTP_APP_MAX_LISTEN 16
/* Header lines accepted per request (one more is a 431). */
#define HTTP_APP_MAX_HEADERS 64

/* Extra /metrics lines (e.g. the filter's top rule hits): write at most cap
 * bytes of Prometheus text to out and return the length written. Called on a
 * worker thread for each /metrics request; must be thread-safe. */
typedef size_t (*http_metrics_hook_fn)(void *user, pc_server_t *s, char *out, size_t cap);

typedef struct http_app_config_s {
    /* Server settings (threads, max_connections, idle_timeout_ms, backend,
     * condition, ...). cb and user_data are overwritten by the app. */
    pc_server_config_t server;
    /* Listen addresses; none means 127.0.0.1:8080. */
    const char *listen[HTTP_APP_MAX_LISTEN];
    int nlisten;
    /* TLS context for every listener (HTTPS), or NULL. The listeners take
     * their own references. */
    pc_tls_ctx_t *tls;
    /* Limit on a request head (request line + headers); default 8 KiB, and 0
     * means the default. */
    size_t max_header_bytes;
    /* Largest request body read and discarded; larger is a 413. Default 1 MiB. */
    uint64_t max_body_bytes;
    /* Time allowed for a request head (the server's header_timeout_ms):
     * from the accept for the first request, from its first byte for later
     * ones; 0 for none. It does not bound the idle time between keep-alive
     * requests (server.idle_timeout_ms does). */
    unsigned header_timeout_ms;
    /* Optional extra /metrics output (see http_metrics_hook_fn). */
    http_metrics_hook_fn metrics_hook;
    void *metrics_hook_user;
} http_app_config_t;

/* Fill cfg with the defaults (pc_server_config_init for the server part).
 * Any thread. */
void http_app_config_init(http_app_config_t *cfg);

/* Create the server and bind every listener, but do not start it (so the
 * caller may configure the server further, then pc_server_start). Returns 0,
 * or a PC_E* code from pc_server_create / pc_server_listen; when a listener
 * fails, *failed_listen (if not NULL) is its index in cfg->listen, else -1. */
int http_app_create(const http_app_config_t *cfg, pc_server_t **out, int *failed_listen);

/* http_app_create, then pc_server_start. *port (if not NULL) receives the
 * port of the first listener. Returns 0 or a PC_E* code (nothing is left
 * allocated on error). */
int http_app_start(const http_app_config_t *cfg, pc_server_t **out, int *port);

/* Stop the server (graceful, drain_ms as pc_server_stop), destroy it and
 * free the app state. NULL is a no-op. */
void http_app_destroy(pc_server_t *s, unsigned drain_ms);

/* Requests answered so far with this status class (status / 100: 1..5), over
 * all workers. Any thread. */
uint64_t http_app_responses(const pc_server_t *s, int status_class);

#ifdef __cplusplus
}
#endif

#endif
