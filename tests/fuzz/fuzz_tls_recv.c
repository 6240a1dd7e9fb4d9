/* SPDX-License-Identifier: MIT */
/* Fuzz target: the TLS receive path of a connection (src/tls), without
 * sockets: what a receive completion delivers goes to tls_sess_feed exactly
 * as conn_tls.c hands it over.
 *
 * The first input byte picks the mode and a split size; the rest is the
 * peer's byte stream:
 *   - mode 0: a fresh server session (ClientHello parsing, the server_name
 *     kept for resumption and matched against a second certificate's names,
 *     the handshake);
 *   - mode 1: a server session whose handshake with an in-memory client has
 *     completed first (record decryption, alerts, close_notify, tickets).
 * Invariants (abort() on violation): a feed answers 0, TLS_FEED_EOF or a
 * negative PC_E* code; once it failed it keeps failing without output; the
 * application sees plaintext only after on_open; every callback length is
 * sane. The session is freed after every input (LeakSanitizer checks it). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "portcullis.h"
#include "tls/tls_sess.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#ifndef PC_TLS_TEST_DATA
#define PC_TLS_TEST_DATA "tests/data/tls"
#endif

static pc_tls_ctx_t *g_srv_ctx, *g_cli_ctx;

typedef struct side_s {
    unsigned char *out; /* what the session wrote (ciphertext) */
    size_t out_len, out_cap;
    int opened;
    size_t plain;
} side_t;

static int io_out(void *arg, const void *d, size_t n)
{
    side_t *s = arg;
    if (n == 0 || n > (1u << 20)) abort();
    if (s->out_len + n > s->out_cap) {
        size_t cap = (s->out_len + n) * 2;
        unsigned char *p = realloc(s->out, cap);
        if (!p) return PC_ENOMEM;
        s->out = p;
        s->out_cap = cap;
    }
    memcpy(s->out + s->out_len, d, n);
    s->out_len += n;
    return 0;
}

static int io_open(void *arg)
{
    side_t *s = arg;
    if (s->opened) abort(); /* once */
    s->opened = 1;
    return 0;
}

static int io_data(void *arg, const void *d, size_t n)
{
    side_t *s = arg;
    (void)d;
    if (!s->opened || n == 0 || n > 16384) abort();
    s->plain += n;
    return 0;
}

static const tls_io_t g_io = {io_out, io_open, io_data};

/* at exit: the contexts live in the library's heap (mimalloc), which
 * LeakSanitizer does not scan, so what OpenSSL holds for them must be freed */
static void fini(void)
{
    pc_tls_ctx_free(g_srv_ctx);
    pc_tls_ctx_free(g_cli_ctx);
}

static void init(void)
{
    if (g_srv_ctx) return;
    atexit(fini);
    pc_log_set_level(PC_LOG_OFF);
    /* two certificates, so the ClientHello's server_name is matched against
     * the second one's names (sni_cb; with one it is never looked at) */
    static const pc_tls_cert_t pairs[2] = {
        {PC_TLS_TEST_DATA "/server.pem", PC_TLS_TEST_DATA "/server.key"},
        {PC_TLS_TEST_DATA "/second.pem", PC_TLS_TEST_DATA "/second.key"},
    };
    pc_tls_server_config_t sc;
    pc_tls_server_config_init(&sc);
    sc.certs = pairs;
    sc.ncerts = 2;
    sc.alpn = "http/1.1";
    pc_tls_client_config_t cc;
    pc_tls_client_config_init(&cc);
    cc.insecure = 1;
    if (pc_tls_ctx_new_server(&sc, &g_srv_ctx) != 0 || pc_tls_ctx_new_client(&cc, &g_cli_ctx) != 0)
        abort();
}

/* Run the handshake between a client session and srv in memory. */
static int handshake(tls_sess_t *srv, side_t *ss)
{
    side_t cs = {0};
    tls_sess_t *cli = tls_sess_new(g_cli_ctx, "localhost");
    if (!cli) return -1;
    int rc = tls_sess_start(cli, &g_io, &cs);
    for (int round = 0; rc >= 0 && round < 8 && !(ss->opened && cs.opened); round++) {
        size_t n = cs.out_len;
        cs.out_len = 0;
        rc = tls_sess_feed(srv, cs.out, n, &g_io, ss);
        if (rc < 0) break;
        n = ss->out_len;
        ss->out_len = 0;
        rc = tls_sess_feed(cli, ss->out, n, &g_io, &cs);
    }
    tls_sess_free(cli);
    free(cs.out);
    return ss->opened ? 0 : -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    init();
    if (size < 1) return 0;
    unsigned mode = data[0] & 1;
    size_t step = (size_t)(data[0] >> 1) + 1;
    /* an exact-size copy, so ASan sees any over-read */
    size_t n = size - 1;
    uint8_t *in = malloc(n ? n : 1);
    memcpy(in, data + 1, n);
    side_t ss = {0};
    tls_sess_t *srv = tls_sess_new(g_srv_ctx, NULL);
    if (!srv) abort();
    if (mode == 1 && handshake(srv, &ss) < 0) abort(); /* a valid handshake must pass */
    int failed = 0, eof = 0;
    for (size_t off = 0; off < n && !eof; off += step) {
        size_t k = n - off < step ? n - off : step;
        size_t before = ss.out_len;
        int rc = tls_sess_feed(srv, in + off, k, &g_io, &ss);
        if (failed && (rc >= 0 || ss.out_len != before)) abort(); /* stays failed, silent */
        if (rc < 0) {
            if (rc != PC_ETLS && rc != PC_ENOMEM) abort();
            failed = 1;
        } else if (rc == TLS_FEED_EOF) {
            eof = 1;
        } else if (rc != 0) {
            abort();
        }
    }
    if (!failed && ss.opened) {
        pc_buf_t b;
        b.base = (void *)"reply";
        b.len = 5;
        tls_sess_write(srv, &b, 1, &g_io, &ss);
        tls_sess_close_notify(srv, &g_io, &ss);
    }
    tls_sess_free(srv);
    free(ss.out);
    free(in);
    return 0;
}
