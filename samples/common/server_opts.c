/* SPDX-License-Identifier: MIT */
#include "server_opts.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "portcullis/filter.h"

#ifdef _WIN32
#include <windows.h>
#else
#include <unistd.h>
#endif

static volatile sig_atomic_t g_stop, g_reload;

static void on_stop_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

#ifdef SIGHUP
static void on_hup(int sig)
{
    (void)sig;
    g_reload = 1;
}
#endif

void server_opts_init(server_opts_t *o, const char *prog, const char *default_listen,
                      pc_server_config_t *cfg)
{
    memset(o, 0, sizeof *o);
    o->prog = prog;
    o->default_listen = default_listen;
    o->drain_ms = 5000;
    o->cfg = cfg;
    pc_log_set_level(PC_LOG_WARN); /* info lines only with -v */
    /* the samples bound the memory their send queues may hold in total */
    cfg->max_buffered_bytes = SERVER_OPTS_MAX_BUFFERED;
}

void server_opts_usage(FILE *f, const char *default_listen)
{
    fprintf(f,
            "  --listen ADDR:PORT        listen address (default %s; repeatable;\n"
            "                            IPv6 as [::1]:PORT; port 0 picks a free port)\n",
            default_listen);
    fprintf(f,
            "  --tls-cert FILE           serve TLS on every listener: certificate chain (PEM);\n"
            "  --tls-key FILE            and its key; repeat the pair for more certificates,\n"
            "                            chosen by SNI (the first is the default)\n"
            "  --tls-alpn LIST           ALPN protocols, comma-separated (with --tls-cert)\n"
            "  --tls-client-ca FILE      require client certificates signed by these CAs\n"
            "                            (with --tls-cert)\n"
            "  --threads N               worker threads (default: number of CPUs)\n"
            "  --max-conns N             maximum open connections (default 10000)\n"
            "  --idle-timeout MS         close connections idle this long (0 = never;\n"
            "                            default: pc-http 75000, otherwise never)\n"
            "  --handshake-timeout MS    close TLS connections whose handshake has not\n"
            "                            completed this long after the accept (with\n"
            "                            --tls-cert; default 10000; 0 = none; pc-http: only\n"
            "                            with --header-timeout 0, which covers it otherwise)\n"
            "  --write-timeout MS        reset connections whose peer stops reading for this\n"
            "                            long while output is queued (default: never)\n"
            "  --max-buffered BYTES      cap on bytes queued for sending, all connections\n"
            "                            together; sends beyond it are refused (default\n"
            "                            268435456, 0 = no cap, else at least 65536)\n"
            "  --backend NAME            auto, epoll, uring or iocp (default auto)\n"
            "  --accept-batch-us N       under churn, let new connections gather up to N us\n"
            "                            before the accept thread wakes (Linux; default 0)\n"
            "  --accept-data-wait S      accept a connection once its first bytes arrived,\n"
            "                            holding it in the kernel up to S s (Linux; 0 = off;\n"
            "                            default: pc-http 3 on Linux, otherwise 0)\n"
            "  --sched POLICY            batch or default: scheduling of the server's threads;\n"
            "                            batch: a woken thread does not preempt a running\n"
            "                            one, so work gathers per wake-up on busy CPUs\n"
            "                            (Linux; default: pc-http batch on Linux, otherwise\n"
            "                            default)\n"
            "  --rules FILE              allow/deny rules (one per line: allow|deny ADDR[/LEN]);\n"
            "                            SIGHUP reloads it and the lists\n"
            "  --deny-list FILE          deny every address or CIDR listed (one per line, # and\n"
            "  --allow-list FILE         ; comments: FireHOL .netset, Spamhaus DROP); repeatable,\n"
            "                            combined with --rules into one set\n"
            "  --per-source-max N        concurrent connections per source (IPv4 address,\n"
            "                            IPv6 /64)\n"
            "  --per-source-rate R/B     new connections per second per source (1e-6 to 1e9),\n"
            "                            bucket B (refilled within ~146 years)\n"
            "  --shadow                  count what the filter would reject, reject nothing\n"
            "  --proxy-protocol FILE     trusted proxies, rules format (allow ADDR[/LEN] =\n"
            "                            trusted): their connections must start with a\n"
            "                            PROXY v1/v2 header naming the real client\n"
            "  --proxy-timeout MS        time a trusted proxy has to send it (default 3000)\n"
            "  --proxy-versions V        versions accepted: v1, v2 or v1,v2 (default); both\n"
            "                            with --proxy-protocol\n"
            "  --conditional-accept M    on, off or auto (Windows SO_CONDITIONAL_ACCEPT)\n"
            "  --kernel-filter T         auto, ebpf, cbpf or off: drop denied SYNs in the\n"
            "                            kernel before the handshake (Linux; default auto)\n"
            "  -v, --verbose             library info lines too (default: warnings, errors)\n");
}

int server_opts_whole(const char *s, unsigned long long max, unsigned long long *out)
{
    if (!s || *s < '0' || *s > '9') return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end || errno == ERANGE || v > max) return -1;
    *out = v;
    return 0;
}

/* --tls-alpn: protocol names of 1 to 255 bytes, comma-separated ("h2,http/1.1"),
 * or "" for no ALPN. */
static int alpn_ok(const char *s)
{
    while (*s) {
        size_t n = strcspn(s, ",");
        if (n == 0 || n > 255) return 0;
        s += n;
        if (*s == ',' && !*++s) return 0; /* a trailing comma: an empty name */
    }
    return 1;
}

static int parse_rate(const char *s, double *rate, unsigned *burst)
{
    char *end;
    /* decimal only: strtod would take blanks, a sign, hex and "inf" */
    if (!s || ((*s < '0' || *s > '9') && *s != '.')) return -1;
    if (s[strspn(s, "0123456789.eE+-/")]) return -1;
    double r = strtod(s, &end);
    if (end == s || !(r >= 1e-6 && r <= 1e9)) return -1; /* NaN too; the library's range */
    unsigned long long b = 0;
    if (*end == '/') {
        if (server_opts_whole(end + 1, 1000000000ul, &b) || b == 0) return -1;
    } else if (*end) {
        return -1;
    }
    *rate = r;
    *burst = (unsigned)b;
    return 0;
}

int server_opts_parse(server_opts_t *o, int argc, char **argv, int *i)
{
    const char *a = argv[*i];
    const char *v = *i + 1 < argc ? argv[*i + 1] : NULL;
    pc_server_config_t *cfg = o->cfg;
    unsigned long long n;
    int bad = 0;
    const char *hint = "";
    /* the value may be good, but the flag is given once too often: at most
     * max of what (a message of its own, not "bad value") */
    const char *too_many = NULL;
    int max = 0;
    if (!strcmp(a, "--shadow")) {
        cfg->shadow = 1;
        return 1;
    }
    if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
        pc_log_set_level(PC_LOG_INFO);
        return 1;
    }
    static const char *const with_value[] = {
        "--listen",
        "--threads",
        "--max-conns",
        "--idle-timeout",
        "--handshake-timeout",
        "--write-timeout",
        "--max-buffered",
        "--backend",
        "--accept-batch-us",
        "--accept-data-wait",
        "--rules",
        "--deny-list",
        "--allow-list",
        "--per-source-max",
        "--per-source-rate",
        "--conditional-accept",
        "--proxy-protocol",
        "--proxy-timeout",
        "--proxy-versions",
        "--kernel-filter",
        "--tls-cert",
        "--tls-key",
        "--tls-alpn",
        "--tls-client-ca",
        "--sched",
    };
    int known = 0;
    for (size_t k = 0; k < sizeof with_value / sizeof with_value[0]; k++)
        known |= !strcmp(a, with_value[k]);
    if (!known) return 0;
    if (!v) {
        fprintf(stderr, "%s: %s needs a value\n", o->prog, a);
        return -1;
    }
    if (!strcmp(a, "--tls-cert") || !strcmp(a, "--tls-key")) {
        int cert = !strcmp(a, "--tls-cert");
        int *cnt = cert ? &o->ntls_cert : &o->ntls_key;
        if (*cnt == SERVER_OPTS_MAX_CERTS) {
            too_many = "certificates";
            max = SERVER_OPTS_MAX_CERTS;
        } else {
            (cert ? o->tls_cert : o->tls_key)[(*cnt)++] = v;
        }
    } else if (!strcmp(a, "--tls-alpn")) {
        bad = !alpn_ok(v);
        hint = " (protocol names of 1 to 255 bytes, comma-separated)";
        o->tls_alpn = v;
        o->tls_alpn_given = 1;
    } else if (!strcmp(a, "--tls-client-ca")) {
        o->tls_client_ca = v;
    } else if (!strcmp(a, "--listen")) {
        struct sockaddr_storage ss;
        socklen_t len;
        if (o->nlisten == SERVER_OPTS_MAX_LISTEN) {
            too_many = "listeners";
            max = SERVER_OPTS_MAX_LISTEN;
        } else if (pc_parse_endpoint(v, &ss, &len) < 0) {
            bad = 1;
        } else {
            o->listen[o->nlisten++] = v;
        }
    } else if (!strcmp(a, "--threads")) {
        bad = server_opts_whole(v, 1024, &n) || n == 0;
        if (!bad) cfg->threads = (int)n;
    } else if (!strcmp(a, "--max-conns")) {
        bad = server_opts_whole(v, 100000000ul, &n) || n == 0;
        if (!bad) cfg->max_connections = (unsigned)n;
    } else if (!strcmp(a, "--idle-timeout")) {
        bad = server_opts_whole(v, 86400000ul, &n);
        if (!bad) cfg->idle_timeout_ms = (unsigned)n;
    } else if (!strcmp(a, "--handshake-timeout")) {
        bad = server_opts_whole(v, 86400000ul, &n);
        if (!bad) cfg->handshake_timeout_ms = (unsigned)n;
        o->handshake_timeout_given = 1;
    } else if (!strcmp(a, "--write-timeout")) {
        bad = server_opts_whole(v, 86400000ul, &n);
        if (!bad) cfg->write_timeout_ms = (unsigned)n;
    } else if (!strcmp(a, "--max-buffered")) {
        _Static_assert(PC_MAX_BUFFERED_MIN == 65536, "the hint below and --help say 65536");
        bad = server_opts_whole(v, 0xfffffffful, &n) || (n && n < PC_MAX_BUFFERED_MIN);
        hint = " (0 for no cap, else at least 65536)";
        if (!bad) cfg->max_buffered_bytes = (size_t)n;
    } else if (!strcmp(a, "--accept-batch-us")) {
        bad = server_opts_whole(v, PC_ACCEPT_BATCH_MAX_US, &n);
        if (!bad) cfg->accept_batch_us = (unsigned)n;
    } else if (!strcmp(a, "--accept-data-wait")) {
        bad = server_opts_whole(v, PC_ACCEPT_DATA_WAIT_MAX_S, &n);
        if (!bad) cfg->accept_data_wait_s = (unsigned)n;
    } else if (!strcmp(a, "--sched")) {
        bad = strcmp(v, "batch") != 0 && strcmp(v, "default") != 0;
        if (!bad) cfg->sched_batch = v[0] == 'b';
    } else if (!strcmp(a, "--backend")) {
        int b = pc_backend_parse(v);
        bad = b < 0;
        if (!bad) cfg->backend = (pc_backend_t)b;
    } else if (!strcmp(a, "--rules")) {
        o->rules_path = v;
    } else if (!strcmp(a, "--deny-list") || !strcmp(a, "--allow-list")) {
        if (o->nlists == SERVER_OPTS_MAX_LISTS) {
            too_many = "list files";
            max = SERVER_OPTS_MAX_LISTS;
        } else {
            o->list_allow[o->nlists] = a[2] == 'a';
            o->list[o->nlists++] = v;
        }
    } else if (!strcmp(a, "--proxy-protocol")) {
        o->proxy_path = v;
    } else if (!strcmp(a, "--proxy-timeout")) {
        o->proxy_flag = a;
        bad = server_opts_whole(v, 86400000ul, &n) || n == 0;
        if (!bad) cfg->proxy_timeout_ms = (unsigned)n;
    } else if (!strcmp(a, "--proxy-versions")) {
        o->proxy_flag = a;
        if (!strcmp(v, "v1"))
            cfg->proxy_versions = PC_PROXY_V1;
        else if (!strcmp(v, "v2"))
            cfg->proxy_versions = PC_PROXY_V2;
        else if (!strcmp(v, "v1,v2") || !strcmp(v, "v2,v1"))
            cfg->proxy_versions = PC_PROXY_V1 | PC_PROXY_V2;
        else
            bad = 1;
    } else if (!strcmp(a, "--per-source-max")) {
        bad = server_opts_whole(v, 100000000ul, &n);
        if (!bad) cfg->per_source_max = (unsigned)n;
    } else if (!strcmp(a, "--per-source-rate")) {
        bad = parse_rate(v, &cfg->per_source_rate, &cfg->per_source_burst);
    } else if (!strcmp(a, "--conditional-accept")) {
        if (!strcmp(v, "on"))
            cfg->conditional_accept = PC_COND_ACCEPT_ON;
        else if (!strcmp(v, "off"))
            cfg->conditional_accept = PC_COND_ACCEPT_OFF;
        else if (!strcmp(v, "auto"))
            cfg->conditional_accept = PC_COND_ACCEPT_AUTO;
        else
            bad = 1;
    } else if (!strcmp(a, "--kernel-filter")) {
        int k = pc_kernel_filter_parse(v);
        bad = k < 0;
        if (!bad) cfg->kernel_filter = (pc_kernel_filter_t)k;
    }
    if (too_many) {
        fprintf(stderr, "%s: %s: at most %d %s\n", o->prog, a, max, too_many);
        return -1;
    }
    if (bad) {
        fprintf(stderr, "%s: bad value for %s: '%s'%s\n", o->prog, a, v, hint);
        return -1;
    }
    (*i)++;
    return 1;
}

/* --rules then the lists, in the order given, as one set; duplicates folded
 * are reported once. Returns 0 (*out NULL when there is no source) or an
 * error with its message in err. */
static int build_rules(server_opts_t *o, pc_rules_t **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!o->rules_path && !o->nlists) return 0;
    pc_rules_builder_t *b;
    int rc = pc_rules_builder_new(&b);
    if (rc) {
        snprintf(err, errlen, "%s", pc_strerror(rc));
        return rc;
    }
    if (o->rules_path) rc = pc_rules_builder_add_file(b, PC_RULES_TEXT, o->rules_path, err, errlen);
    for (int i = 0; i < o->nlists && rc == 0; i++)
        rc = pc_rules_builder_add_file(b,
                                       o->list_allow[i] ? PC_RULES_ALLOW_LIST : PC_RULES_DENY_LIST,
                                       o->list[i], err, errlen);
    if (rc) {
        pc_rules_builder_free(b);
        return rc;
    }
    rc = pc_rules_builder_finish(b, out, err, errlen);
    char msg[512];
    if (rc == 0 && pc_rules_duplicates(*out, NULL, NULL, msg, sizeof msg))
        fprintf(stderr, "%s: warning: %s\n", o->prog, msg);
    return rc;
}

/* "FILE" for --rules alone, else "N files". */
static const char *sources(const server_opts_t *o, char *buf, size_t n)
{
    int k = (o->rules_path != NULL) + o->nlists;
    if (k == 1) return o->rules_path ? o->rules_path : o->list[0];
    snprintf(buf, n, "%d files", k);
    return buf;
}

int server_opts_load_rules(server_opts_t *o)
{
    if (!o->nlisten) o->listen[o->nlisten++] = o->default_listen;
    char err[512];
    pc_rules_t *r;
    if (o->proxy_path) {
        if (pc_rules_load_file(o->proxy_path, &r, err, sizeof err) < 0) {
            fprintf(stderr, "%s: --proxy-protocol: %s\n", o->prog, err);
            return 1;
        }
        o->cfg->proxy_trusted = r;
    }
    if (build_rules(o, &r, err, sizeof err) < 0) {
        fprintf(stderr, "%s: %s\n", o->prog, err);
        if (o->cfg->proxy_trusted) pc_rules_free(o->cfg->proxy_trusted);
        o->cfg->proxy_trusted = NULL;
        return 1;
    }
    o->cfg->rules = r;
    return 0;
}

void server_opts_signals(void)
{
    signal(SIGINT, on_stop_signal);
    signal(SIGTERM, on_stop_signal);
#ifdef SIGHUP
    signal(SIGHUP, on_hup);
#endif
}

/* "kernel filter: cbpf (N insns)", "kernel filter: ebpf (M MiB of kernel
 * memory)" / "kernel filter: off: why" for listener i. */
static void print_kernel_filter(FILE *f, const server_opts_t *o, pc_server_t *srv, int i)
{
#ifndef _WIN32
    pc_listener_filter_t kf;
    if (pc_server_listener_filter(srv, i, &kf) < 0) return;
    if (kf.tier == PC_KERNEL_FILTER_CBPF)
        fprintf(f, "kernel filter: cbpf (%u insns)", kf.insns);
    else
        fprintf(f, "kernel filter: %s", pc_kernel_filter_name(kf.tier));
    if (kf.kernel_bytes) /* eBPF: its maps and program */
        fprintf(f, " (%.1f MiB of kernel memory)", (double)kf.kernel_bytes / (1024.0 * 1024.0));
    if (kf.tier == PC_KERNEL_FILTER_EBPF && !kf.per_source &&
        (o->cfg->per_source_rate > 0 || o->cfg->per_source_max > 0))
        fprintf(f, " (per-source limits after the accept only)");
    fprintf(f, "%s%s\n", !kf.why[0] ? "" : kf.tier == PC_KERNEL_FILTER_OFF ? ": " : "; ", kf.why);
#else
    (void)f, (void)o, (void)srv, (void)i;
#endif
}

void server_opts_announce(server_opts_t *o, pc_server_t *srv)
{
    pc_server_stats_t st;
    pc_server_stats(srv, &st);
    printf("backend %s (%s), %d threads, conditional accept: %s\n", pc_backend_name(st.backend),
           st.backend_why, st.threads,
           st.accept_mode == PC_ACCEPT_MODE_PRE_HANDSHAKE ? "pre-handshake"
           : st.accept_mode == PC_ACCEPT_MODE_KERNEL      ? "kernel filter before the handshake"
                                                          : "post-handshake");
    if (o->cfg->accept_batch_us) {
        if (st.accept_batch_us)
            printf("accept batching: %u us\n", st.accept_batch_us);
        else
            printf("accept batching: off (not on this platform)\n");
    }
    if (o->cfg->accept_data_wait_s) {
        if (st.accept_data_wait_s)
            printf("accept data wait: up to %u s (connections are accepted once their first "
                   "bytes arrived)\n",
                   st.accept_data_wait_s);
        else
#ifdef _WIN32
            printf("accept data wait: off (not on this platform)\n");
#else
            printf("accept data wait: off (the kernel refused it; see the log)\n");
#endif
    }
    if (o->cfg->sched_batch) {
        if (st.sched_batch)
            printf("scheduling: batch (SCHED_BATCH)\n");
        else
#ifdef _WIN32
            printf("scheduling: default (no batch scheduling on this platform)\n");
#else
            printf("scheduling: default (batch not had; see the log)\n");
#endif
    }
    if (o->cfg->idle_timeout_ms || o->cfg->write_timeout_ms) {
        printf("timeouts: idle %u ms, write %u ms (0 = none)\n", o->cfg->idle_timeout_ms,
               o->cfg->write_timeout_ms);
    }
    char what[32];
    if (o->rules_path || o->nlists) {
        printf("rules: %llu from %s", (unsigned long long)st.rule_count,
               sources(o, what, sizeof what));
        if (st.rule_duplicates)
            printf(" (%llu duplicate lines ignored)", (unsigned long long)st.rule_duplicates);
        printf("\n");
    }
    if (o->proxy_path) printf("PROXY protocol: trusted proxies from %s\n", o->proxy_path);
    if (o->ntls_cert)
        printf("TLS: %d certificate(s), ALPN %s%s\n", o->ntls_cert,
               o->tls_alpn && *o->tls_alpn ? o->tls_alpn : "none",
               o->tls_client_ca ? ", client certificates required" : "");
    for (int i = 0; i < o->nlisten; i++) {
        struct sockaddr_storage ss;
        socklen_t len;
        char buf[80];
        if (pc_parse_endpoint(o->listen[i], &ss, &len) < 0) continue;
        unsigned short port = (unsigned short)pc_server_listener_port(srv, i);
        if (ss.ss_family == AF_INET)
            ((struct sockaddr_in *)&ss)->sin_port = htons(port);
        else
            ((struct sockaddr_in6 *)&ss)->sin6_port = htons(port);
        pc_format_endpoint((struct sockaddr *)&ss, buf, sizeof buf);
        printf("listening on %s\n", buf);
        print_kernel_filter(stdout, o, srv, i);
    }
    fflush(stdout);
}

int server_opts_check(server_opts_t *o)
{
    if (o->ntls_cert != o->ntls_key) {
        fprintf(stderr, "%s: --tls-cert and --tls-key come in pairs\n", o->prog);
        return 2;
    }
    /* without a certificate the listeners are plain TCP: a TLS option that
     * would be ignored is a mistake to report, not to run with */
    const char *tls_only = o->tls_client_ca             ? "--tls-client-ca"
                           : o->tls_alpn_given          ? "--tls-alpn"
                           : o->handshake_timeout_given ? "--handshake-timeout"
                                                        : NULL;
    if (!o->ntls_cert && tls_only) {
        fprintf(stderr,
                "%s: %s needs --tls-cert/--tls-key (without them the listeners are plain TCP)\n",
                o->prog, tls_only);
        return 2;
    }
    /* without trusted proxies no connection is read for a PROXY header */
    if (!o->proxy_path && o->proxy_flag) {
        fprintf(stderr,
                "%s: %s needs --proxy-protocol (without it no connection carries a PROXY "
                "header)\n",
                o->prog, o->proxy_flag);
        return 2;
    }
    return 0;
}

/* 1 if FILE (the value of FLAG) opens for reading, else 0 with the reason
 * printed. */
static int readable(const server_opts_t *o, const char *flag, const char *file)
{
    FILE *f = fopen(file, "rb");
    if (!f) {
        fprintf(stderr, "%s: TLS: cannot read %s %s: %s\n", o->prog, flag, file, strerror(errno));
        return 0;
    }
    fclose(f);
    return 1;
}

int server_opts_tls(server_opts_t *o)
{
    int rc = server_opts_check(o);
    if (rc || !o->ntls_cert) return rc;
    pc_tls_cert_t pairs[SERVER_OPTS_MAX_CERTS];
    for (int i = 0; i < o->ntls_cert; i++) {
        pairs[i].cert_file = o->tls_cert[i];
        pairs[i].key_file = o->tls_key[i];
    }
    pc_tls_server_config_t tc;
    pc_tls_server_config_init(&tc);
    tc.certs = pairs;
    tc.ncerts = (unsigned)o->ntls_cert;
    tc.alpn = o->tls_alpn;
    if (o->tls_client_ca) {
        tc.verify_client = PC_TLS_VERIFY_REQUIRED;
        tc.client_ca_file = o->tls_client_ca;
    }
    /* pc_tls_ctx_new_server does not say which input it could not use: the
     * files are tried here first, so that a missing one is named with its
     * flag (the ALPN list was checked at its flag) */
    for (int i = 0; pc_tls_available() && i < o->ntls_cert; i++)
        if (!readable(o, "--tls-cert", o->tls_cert[i]) || !readable(o, "--tls-key", o->tls_key[i]))
            return 2;
    if (pc_tls_available() && o->tls_client_ca && !readable(o, "--tls-client-ca", o->tls_client_ca))
        return 2;
    rc = pc_tls_ctx_new_server(&tc, &o->tls);
    if (rc < 0) {
        /* a file OpenSSL refused (PC_ETLS; its warning above names it), or
         * something else: every input, as given */
        fprintf(stderr, "%s: TLS: %s%s; from", o->prog, pc_strerror(rc),
                rc == PC_ETLS ? " (the warning above names the file)" : "");
        for (int i = 0; i < o->ntls_cert; i++)
            fprintf(stderr, " --tls-cert %s --tls-key %s", o->tls_cert[i], o->tls_key[i]);
        if (o->tls_client_ca) fprintf(stderr, " --tls-client-ca %s", o->tls_client_ca);
        if (o->tls_alpn) fprintf(stderr, " --tls-alpn '%s'", o->tls_alpn);
        fprintf(stderr, "\n");
        return rc == PC_ENOSYS ? 1 : 2;
    }
    return 0;
}

int server_opts_start(server_opts_t *o, pc_server_t **out)
{
    int rc = server_opts_load_rules(o);
    if (rc) return rc;
    rc = server_opts_tls(o);
    if (rc) return rc;
    pc_server_t *srv;
    rc = pc_server_create(o->cfg, &srv);
    if (rc < 0) {
        fprintf(stderr, "%s: %s\n", o->prog, pc_strerror(rc));
        if (o->cfg->rules) pc_rules_free(o->cfg->rules);
        if (o->cfg->proxy_trusted) pc_rules_free(o->cfg->proxy_trusted);
        return 1;
    }
    for (int i = 0; i < o->nlisten; i++) {
        int idx = o->tls ? pc_server_listen_tls(srv, o->listen[i], o->tls)
                         : pc_server_listen(srv, o->listen[i]);
        if (idx < 0) {
            fprintf(stderr, "%s: cannot listen on %s: %s\n", o->prog, o->listen[i],
                    pc_strerror(idx));
            pc_server_destroy(srv);
            pc_tls_ctx_free(o->tls);
            o->tls = NULL;
            return 1;
        }
    }
    pc_tls_ctx_free(o->tls); /* the listeners hold theirs */
    o->tls = NULL;
    server_opts_signals();
    rc = pc_server_start(srv);
    if (rc < 0) {
        fprintf(stderr, "%s: start: %s\n", o->prog, pc_strerror(rc));
        pc_server_destroy(srv);
        return 1;
    }
    server_opts_announce(o, srv);
    *out = srv;
    return 0;
}

static void reload(server_opts_t *o, pc_server_t *srv)
{
    char err[512], what[32];
    pc_rules_t *r;
    if (build_rules(o, &r, err, sizeof err) < 0) {
        fprintf(stderr, "%s: reload refused, rules in force kept: %s\n", o->prog, err);
        return;
    }
    size_t n = pc_rules_count(r);
    pc_server_set_rules(srv, r);
    fprintf(stderr, "%s: reloaded %llu rules from %s\n", o->prog, (unsigned long long)n,
            sources(o, what, sizeof what));
    for (int i = 0; i < o->nlisten; i++)
        print_kernel_filter(stderr, o, srv, i);
}

void server_opts_run(server_opts_t *o, pc_server_t *srv)
{
    while (!g_stop) {
#ifdef _WIN32
        Sleep(50);
#else
        usleep(50000);
#endif
        if (g_reload) {
            g_reload = 0;
            if (o->rules_path || o->nlists)
                reload(o, srv);
            else
                fprintf(stderr, "%s: SIGHUP: no --rules or list file to reload\n", o->prog);
        }
    }
    pc_server_stop(srv, o->drain_ms);
}
