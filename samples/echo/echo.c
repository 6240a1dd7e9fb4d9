/* SPDX-License-Identifier: MIT */
/* pc-echo: an echo server on portcullis. Every byte received is sent back.
 *
 *   pc-echo [--listen ADDR:PORT]... [--threads N] [--max-conns N]
 *           [--idle-timeout MS] [--write-timeout MS] [--max-buffered BYTES]
 *           [--backend NAME] [--rules FILE]
 *           [--per-source-max N] [--per-source-rate R/B] [--shadow]
 *
 * Prints "listening on ADDR:PORT" per listener when ready; SIGINT/SIGTERM
 * stop it gracefully (exit 0); SIGHUP reloads the rules file; bad flags
 * print usage and exit 2; a bad rules file at start exits 1 naming
 * FILE:LINE. */
#include <stdio.h>
#include <string.h>

#include "portcullis.h"
#include "server_opts.h"

#define DEFAULT_LISTEN "127.0.0.1:7000"

static void on_data(pc_conn_t *c, const void *data, size_t len)
{
    /* a refused send (out of memory, --max-buffered) would leave a gap in
     * the echo: close instead, so the peer gets an exact prefix, then FIN */
    if (pc_conn_send(c, data, len) < 0) pc_conn_close(c);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: pc-echo [options]\n");
    server_opts_usage(f, DEFAULT_LISTEN);
}

int main(int argc, char **argv)
{
    pc_server_config_t cfg;
    pc_server_config_init(&cfg);
    cfg.cb.on_data = on_data;
    server_opts_t o;
    server_opts_init(&o, "pc-echo", DEFAULT_LISTEN, &cfg);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        }
        int r = server_opts_parse(&o, argc, argv, &i);
        if (r == 1) continue;
        if (r == 0) fprintf(stderr, "pc-echo: unknown argument '%s'\n", argv[i]);
        usage(stderr);
        return 2;
    }
    int rc = server_opts_check(&o);
    if (rc) return rc;
    pc_server_t *srv;
    rc = server_opts_start(&o, &srv);
    if (rc) return rc;
    server_opts_run(&o, srv);
    pc_server_stats_t st;
    pc_server_stats(srv, &st);
    printf("stopped: %llu accepted, %llu bytes in, %llu bytes out\n",
           (unsigned long long)st.accepted, (unsigned long long)st.bytes_in,
           (unsigned long long)st.bytes_out);
    pc_server_destroy(srv);
    return 0;
}
