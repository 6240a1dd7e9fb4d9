/* SPDX-License-Identifier: MIT */
/* Inside the TLS layer (tls_ctx.c, tls_sess.c): the context record. The
 * only header of the library that includes OpenSSL's. */
#ifndef PC_TLS_INT_H
#define PC_TLS_INT_H

#include "portcullis.h"

#include <stdatomic.h>

#include <openssl/ssl.h>

#include "core/thread.h"

/* one session-ticket key: name (sent in the ticket), AES-256, HMAC-SHA256 */
typedef struct tls_ticket_key_s {
    unsigned char name[16];
    unsigned char aes[32];
    unsigned char hmac[32];
} tls_ticket_key_t;

struct pc_tls_ctx_s {
    _Atomic int refs;
    int server;
    /* server: one SSL_CTX per certificate pair, [0] the default (the
     * others are switched to by SNI); client: one */
    SSL_CTX **ssl;
    unsigned nssl;
    unsigned char *alpn; /* wire format: length-prefixed names */
    unsigned alpn_len;
    /* server tickets: keys rotated every rotate_s, the previous kept */
    pc_mutex_t tk_lock;
    tls_ticket_key_t tk_cur, tk_prev;
    int tk_have_prev;
    uint64_t tk_born_ms;
    unsigned rotate_s;
    /* client resumption: the last session a server gave, and for which host */
    int resume;
    pc_mutex_t rs_lock;
    SSL_SESSION *rs_last;
    char rs_host[256];
};

/* Log OpenSSL's error queue (and empty it) after what failed. */
void tls_log_errors(pc_log_level_t level, const char *what);
/* The host a client session checks, or the name a server session's
 * ClientHello asked for ("" if none), from its SSL. */
const char *tls_sess_host_of(const SSL *ssl);
/* Server: keep the name the ClientHello asks for (len bytes, not
 * terminated; len 0: none) as the session's host. 0 or PC_ENOMEM. */
int tls_sess_set_hello_name(SSL *ssl, const char *name, size_t len);
/* The client context's session for host, with a reference (NULL if none). */
SSL_SESSION *tls_ctx_take_session(pc_tls_ctx_t *ctx, const char *host);

#endif
