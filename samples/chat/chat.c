/* SPDX-License-Identifier: MIT */
/* pc-chat: a line broadcast server on portcullis. Every line a client sends
 * goes to every connected client, in order, from a broadcaster thread that
 * reaches connections only by id. A client that stops reading is refused by
 * its send_queue_limit, retried for --patience, and kicked (reset) if its
 * queue has not shrunk by then; a talker faster than the broadcaster is
 * paused until it catches up.
 *
 *   pc-chat [--max-line BYTES] [--send-limit BYTES] [--inbox BYTES] [--patience MS]
 *           [--listen ADDR:PORT]... [--threads N] [--max-conns N]
 *           [--idle-timeout MS] [--write-timeout MS] [--max-buffered BYTES]
 *           [--backend NAME] [--rules FILE]
 *           [--per-source-max N] [--per-source-rate R/B] [--shadow]
 *
 * Prints "listening on ADDR:PORT" per listener when ready; SIGINT/SIGTERM
 * stop it gracefully (every client is told "* server shutting down", then
 * closed) and it prints its counters; bad flags print usage and exit 2. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat_app.h"
#include "portcullis.h"
#include "server_opts.h"

#define DEFAULT_LISTEN "127.0.0.1:7001"

static void usage(FILE *f)
{
    fprintf(f, "usage: pc-chat [options]\n"
               "  --max-line BYTES     longest line accepted (default 1024, 16 to 1 MiB;\n"
               "                       below --send-limit, so above 256 KiB raise that too)\n"
               "  --send-limit BYTES   per-client send queue; beyond it the client's lines\n"
               "                       wait, and it is kicked after --patience if it has not\n"
               "                       read meanwhile (default 256 KiB)\n"
               "  --inbox BYTES        lines waiting for the broadcaster before talkers are\n"
               "                       paused (default 64 KiB)\n"
               "  --patience MS        how long everybody waits for clients whose queues are\n"
               "                       full before those that did not read are kicked\n"
               "                       (default 1000, at most 60000)\n");
    server_opts_usage(f, DEFAULT_LISTEN);
}

/* A whole number from 1 to max (server_opts_whole: digits only). */
static int parse_size(const char *s, unsigned long long max, size_t *out)
{
    unsigned long long v;
    if (server_opts_whole(s, max, &v) || v == 0) return -1;
    *out = (size_t)v;
    return 0;
}

int main(int argc, char **argv)
{
    pc_server_config_t cfg;
    pc_server_config_init(&cfg);
    /* chat output is small lines: a client far behind is a client gone */
    cfg.send_queue_limit = 256u << 10;
    cfg.send_high_water = 64u << 10;
    cfg.send_low_water = 16u << 10;
    chat_config_t cc;
    chat_config_init(&cc);
    server_opts_t o;
    server_opts_init(&o, "pc-chat", DEFAULT_LISTEN, &cfg);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        }
        size_t *target = NULL;
        unsigned long long max = 1ull << 30; /* byte counts: up to 1 GiB */
        const char *what = "a byte count from 1 to 1073741824";
        if (!strcmp(argv[i], "--max-line")) {
            target = &cc.max_line;
            max = 1u << 20;
            what = "a byte count from 16 to 1048576";
        }
        if (!strcmp(argv[i], "--send-limit")) target = &cfg.send_queue_limit;
        if (!strcmp(argv[i], "--inbox")) target = &cc.inbox_limit;
        size_t patience = 0;
        if (!strcmp(argv[i], "--patience")) {
            target = &patience;
            max = 60000;
            what = "milliseconds from 1 to 60000";
        }
        if (target) {
            if (i + 1 >= argc || parse_size(argv[i + 1], max, target) < 0 ||
                (target == &cc.max_line && cc.max_line < 16)) {
                fprintf(stderr, "pc-chat: %s needs %s\n", argv[i], what);
                usage(stderr);
                return 2;
            }
            i++;
            if (target == &patience) cc.patience_ms = (unsigned)patience;
            continue;
        }
        int r = server_opts_parse(&o, argc, argv, &i);
        if (r == 1) continue;
        if (r == 0) fprintf(stderr, "pc-chat: unknown argument '%s'\n", argv[i]);
        usage(stderr);
        return 2;
    }
    if (server_opts_check(&o)) return 2;
    if (cfg.send_queue_limit <= cc.max_line) {
        /* a longest line could never be queued: every client would be kicked */
        fprintf(stderr, "pc-chat: --send-limit (%zu) must be larger than --max-line (%zu)\n",
                cfg.send_queue_limit, cc.max_line);
        return 2;
    }
    if (cc.batch_max > cfg.send_queue_limit / 4) cc.batch_max = cfg.send_queue_limit / 4;
    chat_t *ch;
    if (chat_create(&cc, &cfg, &ch) < 0) {
        fprintf(stderr, "pc-chat: out of memory\n");
        return 1;
    }
    pc_server_t *srv;
    int rc = server_opts_start(&o, &srv);
    if (rc) {
        chat_destroy(ch);
        return rc;
    }
    rc = chat_start(ch, srv);
    if (rc < 0) {
        fprintf(stderr, "pc-chat: cannot start the broadcaster: %s\n", pc_strerror(rc));
        pc_server_destroy(srv);
        chat_destroy(ch);
        return 1;
    }
    fflush(stdout);
    server_opts_run(&o, srv); /* until SIGINT/SIGTERM, then a graceful stop */
    chat_stop(ch);
    chat_stats_t cs;
    chat_stats(ch, &cs);
    pc_server_stats_t st;
    pc_server_stats(srv, &st);
    printf("stopped: %llu accepted, %llu lines, %llu rounds, %llu kicked, %llu paused, "
           "%llu send refusals by the per-client limit\n",
           (unsigned long long)st.accepted, (unsigned long long)cs.lines,
           (unsigned long long)cs.rounds, (unsigned long long)cs.kicked,
           (unsigned long long)cs.paused, (unsigned long long)st.send_limit_refused);
    pc_server_destroy(srv);
    chat_destroy(ch);
    return 0;
}
