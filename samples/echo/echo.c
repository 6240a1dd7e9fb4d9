/* pc-echo: an echo server on portcullis. Every byte received is sent back.
 *
 *   pc-echo [--listen ADDR:PORT]... [--threads N] [--max-conns N]
 *           [--idle-timeout MS] [--backend NAME]
 *
 * Prints "listening on ADDR:PORT" per listener when ready; SIGINT/SIGTERM
 * stop it gracefully (exit 0); bad flags print usage and exit 2. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "portcullis.h"

#ifdef _WIN32
#include <windows.h>
#else
#include <unistd.h>
#endif

#define MAX_LISTEN 16

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

static void on_data(pc_conn_t *c, const void *data, size_t len)
{
    pc_conn_send(c, data, len);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: pc-echo [--listen ADDR:PORT]... [--threads N] [--max-conns N]\n"
               "               [--idle-timeout MS] [--backend auto|epoll|uring|iocp]\n"
               "  --listen ADDR:PORT   listen address (repeatable; default 127.0.0.1:7000;\n"
               "                       IPv6 as [::1]:7000; port 0 picks a free port)\n"
               "  --threads N          worker threads (default: number of CPUs)\n"
               "  --max-conns N        maximum open connections (default 10000)\n"
               "  --idle-timeout MS    close connections idle this long (default: never)\n"
               "  --backend NAME       completion backend (default auto)\n");
}

static int parse_uint(const char *s, unsigned long max, unsigned long *out)
{
    char *end;
    if (!s || !*s || *s == '-') return -1;
    unsigned long v = strtoul(s, &end, 10);
    if (*end || v > max) return -1;
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    pc_server_config_t cfg;
    pc_server_config_init(&cfg);
    cfg.cb.on_data = on_data;
    const char *listen[MAX_LISTEN];
    int nlisten = 0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        unsigned long n;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--listen") && v) {
            if (nlisten == MAX_LISTEN) {
                fprintf(stderr, "pc-echo: at most %d --listen\n", MAX_LISTEN);
                return 2;
            }
            listen[nlisten++] = v;
        } else if (!strcmp(a, "--threads") && v && !parse_uint(v, 1024, &n) && n > 0) {
            cfg.threads = (int)n;
        } else if (!strcmp(a, "--max-conns") && v && !parse_uint(v, 100000000, &n) && n > 0) {
            cfg.max_connections = (unsigned)n;
        } else if (!strcmp(a, "--idle-timeout") && v && !parse_uint(v, 86400000, &n)) {
            cfg.idle_timeout_ms = (unsigned)n;
        } else if (!strcmp(a, "--backend") && v && pc_backend_parse(v) >= 0) {
            cfg.backend = (pc_backend_t)pc_backend_parse(v);
        } else {
            fprintf(stderr, "pc-echo: bad argument '%s'%s\n", a, v ? "" : " (missing value?)");
            usage(stderr);
            return 2;
        }
        i++;
    }
    if (!nlisten) listen[nlisten++] = "127.0.0.1:7000";

    pc_server_t *srv;
    int rc = pc_server_create(&cfg, &srv);
    if (rc < 0) {
        fprintf(stderr, "pc-echo: %s\n", pc_strerror(rc));
        return 1;
    }
    for (int i = 0; i < nlisten; i++) {
        int idx = pc_server_listen(srv, listen[i]);
        if (idx < 0) {
            fprintf(stderr, "pc-echo: cannot listen on %s: %s\n", listen[i], pc_strerror(idx));
            pc_server_destroy(srv);
            return idx == PC_EINVAL ? 2 : 1;
        }
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    rc = pc_server_start(srv);
    if (rc < 0) {
        fprintf(stderr, "pc-echo: start: %s\n", pc_strerror(rc));
        pc_server_destroy(srv);
        return 1;
    }
    for (int i = 0; i < nlisten; i++) {
        struct sockaddr_storage ss;
        socklen_t len;
        char buf[80];
        pc_parse_endpoint(listen[i], &ss, &len);
        if (ss.ss_family == AF_INET)
            ((struct sockaddr_in *)&ss)->sin_port = htons((unsigned short)pc_server_listener_port(srv, i));
        else
            ((struct sockaddr_in6 *)&ss)->sin6_port = htons((unsigned short)pc_server_listener_port(srv, i));
        pc_format_endpoint((struct sockaddr *)&ss, buf, sizeof buf);
        printf("listening on %s\n", buf);
    }
    fflush(stdout);
    while (!g_stop) {
#ifdef _WIN32
        Sleep(50);
#else
        usleep(50000);
#endif
    }
    pc_server_stop(srv, 5000);
    pc_server_stats_t st;
    pc_server_stats(srv, &st);
    printf("stopped: %llu accepted, %llu bytes in, %llu bytes out\n",
           (unsigned long long)st.accepted, (unsigned long long)st.bytes_in,
           (unsigned long long)st.bytes_out);
    pc_server_destroy(srv);
    return 0;
}
