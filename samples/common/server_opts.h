/* SPDX-License-Identifier: MIT */
/* Command-line options shared by the sample servers (pc-echo, pc-http):
 * listeners, threads, limits, backend, the accept filter (rules file, deny
 * and allow lists, per-source limits, shadow mode) and -v, plus the run loop
 * that stops on SIGINT/SIGTERM and reloads the rules and lists on SIGHUP.
 * Library logs: warnings and errors always, info lines only with -v. */
#ifndef PC_SAMPLES_SERVER_OPTS_H
#define PC_SAMPLES_SERVER_OPTS_H

#include <stdio.h>

#include "portcullis.h"

#define SERVER_OPTS_MAX_LISTEN 16
#define SERVER_OPTS_MAX_LISTS  32
#define SERVER_OPTS_MAX_CERTS  8
/* default --max-buffered: 256 MiB of queued output over all connections */
#define SERVER_OPTS_MAX_BUFFERED (256u << 20)

typedef struct server_opts_s {
    const char *prog;
    const char *listen[SERVER_OPTS_MAX_LISTEN];
    int nlisten;
    const char *default_listen;
    const char *rules_path;
    const char *list[SERVER_OPTS_MAX_LISTS]; /* --deny-list / --allow-list, in order */
    unsigned char list_allow[SERVER_OPTS_MAX_LISTS];
    int nlists;
    const char *proxy_path; /* --proxy-protocol: trusted proxies */
    const char *proxy_flag; /* --proxy-timeout or --proxy-versions, if given */
    /* TLS: --tls-cert / --tls-key pairs (in order; the first is the default,
     * the others chosen by SNI), --tls-alpn (the program may set a default),
     * --tls-client-ca (ask for client certificates, verify them) */
    const char *tls_cert[SERVER_OPTS_MAX_CERTS];
    const char *tls_key[SERVER_OPTS_MAX_CERTS];
    int ntls_cert, ntls_key;
    const char *tls_alpn;
    int tls_alpn_given; /* --tls-alpn was on the command line (not the default) */
    const char *tls_client_ca;
    int handshake_timeout_given; /* --handshake-timeout was on the command line */
    pc_tls_ctx_t *tls;           /* built by server_opts_tls when certificates were given */
    unsigned drain_ms;
    pc_server_config_t *cfg;
} server_opts_t;

void server_opts_init(server_opts_t *o, const char *prog, const char *default_listen,
                      pc_server_config_t *cfg);
/* Try argv[*i] (and its value) as a shared option. Returns 1 if consumed
 * (*i advanced past the value), 0 if not a shared option, -1 if its value is
 * bad (message printed). */
int server_opts_parse(server_opts_t *o, int argc, char **argv, int *i);
/* After the parse loop: the checks that concern several shared options
 * (--tls-cert and --tls-key in pairs; --tls-alpn, --tls-client-ca and
 * --handshake-timeout only with them; --proxy-timeout and --proxy-versions
 * only with --proxy-protocol). Returns 0 or 2 (message printed). */
int server_opts_check(server_opts_t *o);
/* A whole number of at most max, digits only: no sign, no blank, no hex,
 * nothing after it, nothing that overflows (strtoul alone takes " -5" as
 * 2^64 - 5 and clamps an out-of-range value to its maximum). Returns 0 and
 * *out, or -1. */
int server_opts_whole(const char *s, unsigned long long max, unsigned long long *out);
/* The shared options' usage lines; default_listen is the program's own
 * (the one given to server_opts_init). */
void server_opts_usage(FILE *f, const char *default_listen);
/* The steps of server_opts_start, for servers that create their own
 * pc_server_t (pc-http): load --rules and the lists into one set in
 * cfg->rules and --proxy-protocol into cfg->proxy_trusted (returns 0 or the
 * exit status, message with FILE:LINE printed; duplicates folded are
 * reported once as a warning); install the signal handlers;
 * print the backend, accept mode, rule count and "listening on ADDR:PORT"
 * for each listener (o->listen[i] is listener i). */
int server_opts_load_rules(server_opts_t *o);
void server_opts_signals(void);
/* Build o->tls from the --tls-* options (nothing without --tls-cert;
 * server_opts_check first). Returns 0 or the exit status (message printed). */
int server_opts_tls(server_opts_t *o);
void server_opts_announce(server_opts_t *o, pc_server_t *srv);
/* Load rules, create, listen, start, announce. Returns 0, or the process
 * exit status to use (message printed). */
int server_opts_start(server_opts_t *o, pc_server_t **out);
/* Block until SIGINT/SIGTERM (then stop gracefully); SIGHUP reloads the
 * rules file and the lists together (a bad one logs FILE:LINE and keeps the
 * whole set in force). */
void server_opts_run(server_opts_t *o, pc_server_t *srv);

#endif
