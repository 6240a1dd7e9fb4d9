/* SPDX-License-Identifier: MIT */
/* pc-http: a small HTTP/1.1 responder on portcullis (see http_app.h).
 *
 *   pc-http [--listen ADDR:PORT]... [--threads N] [--max-conns N]
 *           [--idle-timeout MS] [--backend NAME] [--rules FILE]
 *           [--per-source-max N] [--per-source-rate R/B] [--shadow]
 *           [--header-timeout MS] [--max-header-bytes N] [--max-body-bytes N]
 *           [--tls-cert FILE --tls-key FILE]... [--tls-alpn LIST] (HTTPS; ALPN
 *           defaults to http/1.1)
 *
 * Prints "listening on ADDR:PORT" per listener when ready; SIGINT/SIGTERM
 * stop it gracefully (exit 0); SIGHUP reloads the rules file; bad flags print
 * usage and exit 2; a bad rules file at start exits 1 naming FILE:LINE. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_app.h"
#include "portcullis.h"
#include "server_opts.h"

#define DEFAULT_LISTEN "127.0.0.1:8080"

static void usage(FILE *f)
{
    fprintf(f, "usage: pc-http [options]\n");
    server_opts_usage(f, DEFAULT_LISTEN);
    fprintf(f,
            "  --header-timeout MS       time allowed for a request head: from the accept for\n"
            "                            the first request (with --accept-data-wait, once its\n"
            "                            first byte arrived or the wait ended), from its first\n"
            "                            byte for later ones; trickled bytes do not extend it;\n"
            "                            then the connection closes without a response\n"
            "                            (0 = none; default 60000); with TLS it bounds the\n"
            "                            handshake too, in place of --handshake-timeout\n"
            "  --max-header-bytes N      request head limit, larger is a 431 (default 8192)\n"
            "  --max-body-bytes N        request bodies read and discarded up to N bytes,\n"
            "                            larger is a 413 (default 1048576)\n"
            "Routes: GET|HEAD / -> 200 \"Hello, World!\"; GET|HEAD /metrics -> Prometheus text;\n"
            "        GET|HEAD /whoami -> the client's address (and the proxy's, behind one).\n");
}

/* /metrics: the rules with the most hits, as a labelled counter. */
static size_t top_rules_metrics(void *user, pc_server_t *srv, char *out, size_t cap)
{
    (void)user;
    pc_rule_info_t top[10];
    int n = pc_server_top_rules(srv, top, 10);
    size_t len = 0;
    pc_server_stats_t st;
    pc_server_stats(srv, &st);
    int w = snprintf(out, cap,
                     "# HELP pc_rules Rules in force.\n# TYPE pc_rules gauge\npc_rules %llu\n"
                     "# HELP pc_rule_duplicates Duplicate lines (same prefix, same action) "
                     "folded into the rules in force.\n"
                     "# TYPE pc_rule_duplicates gauge\npc_rule_duplicates %llu\n"
                     "# HELP pc_rule_hits_total Connections decided by a rule (top 10).\n"
                     "# TYPE pc_rule_hits_total counter\n",
                     (unsigned long long)st.rule_count, (unsigned long long)st.rule_duplicates);
    if (w < 0 || (size_t)w >= cap) return 0;
    len = (size_t)w;
    for (int i = 0; i < n; i++) {
        w = snprintf(out + len, cap - len, "pc_rule_hits_total{rule=\"%s\",line=\"%u\"} %llu\n",
                     top[i].text, top[i].line, (unsigned long long)top[i].hits);
        if (w < 0 || (size_t)w >= cap - len) break;
        len += (size_t)w;
    }
    return len;
}

int main(int argc, char **argv)
{
    http_app_config_t cfg;
    http_app_config_init(&cfg);
    server_opts_t o;
    server_opts_init(&o, "pc-http", DEFAULT_LISTEN, &cfg.server);
    o.tls_alpn = "http/1.1"; /* HTTPS when --tls-cert is given */
    /* a server on a network bounds what a silent or trickling client holds:
     * a request head gets 60 s, and a connection that sends nothing for
     * 75 s (between requests, or in the middle of a body) is closed, as
     * nginx's client_header_timeout and keepalive_timeout do by default;
     * 0 turns either off */
    cfg.header_timeout_ms = 60000;
    cfg.server.idle_timeout_ms = 75000;
#ifdef __linux__
    /* HTTP clients speak first: a connection is worth a worker's time once
     * its request arrived (--accept-data-wait 0 turns it off; Windows has
     * no such wait, so it is not asked for there by default) */
    cfg.server.accept_data_wait_s = 3;
    /* a busy HTTP server is throughput work: its threads gather requests
     * and connections per wake-up rather than preempt whoever runs
     * (--sched default turns it off; docs/sched-batch.md) */
    cfg.server.sched_batch = 1;
#endif

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        unsigned long long n;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        int r = server_opts_parse(&o, argc, argv, &i);
        if (r == 1) continue;
        if (r < 0) {
            usage(stderr);
            return 2;
        }
        /* the same words as the shared options: unknown, no value, bad value */
        int hdr_to = !strcmp(a, "--header-timeout"), hdr_max = !strcmp(a, "--max-header-bytes");
        int body_max = !strcmp(a, "--max-body-bytes");
        int bad = 0;
        if (!hdr_to && !hdr_max && !body_max) {
            fprintf(stderr, "pc-http: unknown argument '%s'\n", a);
        } else if (!v) {
            fprintf(stderr, "pc-http: %s needs a value\n", a);
        } else if (hdr_to) {
            bad = server_opts_whole(v, 86400000, &n);
            if (!bad) cfg.header_timeout_ms = (unsigned)n;
        } else if (hdr_max) {
            bad = server_opts_whole(v, 1u << 30, &n) || n < 64;
            if (!bad) cfg.max_header_bytes = (size_t)n;
        } else {
            bad = server_opts_whole(v, 1ull << 62, &n);
            if (!bad) cfg.max_body_bytes = n;
        }
        if (bad) fprintf(stderr, "pc-http: bad value for %s: '%s'\n", a, v);
        if (bad || !v || !(hdr_to || hdr_max || body_max)) {
            usage(stderr);
            return 2;
        }
        i++;
    }
    int rc = server_opts_check(&o);
    if (rc) return rc;
    /* the library bounds a TLS handshake by the header timeout when there is
     * one (the first request's deadline runs from the accept), and by
     * handshake_timeout_ms only without: given with the header timeout on,
     * the flag would be ignored */
    if (o.handshake_timeout_given && cfg.header_timeout_ms) {
        fprintf(stderr,
                "pc-http: --handshake-timeout has no effect while --header-timeout is on (%u ms; "
                "it bounds the handshake too): use --header-timeout, or --header-timeout 0 "
                "with it\n",
                cfg.header_timeout_ms);
        return 2;
    }
    rc = server_opts_load_rules(&o);
    if (rc) return rc;
    rc = server_opts_tls(&o);
    if (rc) return rc;
    cfg.tls = o.tls;
    for (int i = 0; i < o.nlisten; i++)
        cfg.listen[i] = o.listen[i];
    cfg.nlisten = o.nlisten;
    cfg.metrics_hook = top_rules_metrics;

    pc_server_t *srv;
    int bad = -1;
    rc = http_app_create(&cfg, &srv, &bad);
    pc_tls_ctx_free(o.tls); /* the listeners hold theirs */
    o.tls = NULL;
    if (rc < 0) {
        if (bad >= 0)
            fprintf(stderr, "pc-http: cannot listen on %s: %s\n", cfg.listen[bad], pc_strerror(rc));
        else
            fprintf(stderr, "pc-http: %s\n", pc_strerror(rc));
        return bad >= 0 && rc == PC_EINVAL ? 2 : 1;
    }
    server_opts_signals();
    rc = pc_server_start(srv);
    if (rc < 0) {
        fprintf(stderr, "pc-http: start: %s\n", pc_strerror(rc));
        http_app_destroy(srv, 0);
        return 1;
    }
    server_opts_announce(&o, srv);
    if (cfg.header_timeout_ms) printf("request head timeout: %u ms\n", cfg.header_timeout_ms);
    fflush(stdout);
    server_opts_run(&o, srv); /* SIGHUP reloads --rules; SIGINT/SIGTERM stop */
    pc_server_stats_t st;
    pc_server_stats(srv, &st);
    printf("stopped: %llu accepted, %llu responses (%llu 2xx), %llu bytes in, %llu bytes out\n",
           (unsigned long long)st.accepted,
           (unsigned long long)(http_app_responses(srv, 2) + http_app_responses(srv, 4) +
                                http_app_responses(srv, 5)),
           (unsigned long long)http_app_responses(srv, 2), (unsigned long long)st.bytes_in,
           (unsigned long long)st.bytes_out);
    http_app_destroy(srv, 0);
    return 0;
}
