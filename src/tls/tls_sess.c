/* SPDX-License-Identifier: MIT */
/* TLS sessions over the completion path. The SSL object reads and writes
 * through one custom BIO that is a view, not a buffer: reads come straight
 * from the receive buffer being fed (tls_sess_feed points it there), writes
 * go straight to the connection's send queue (io->out). So an idle
 * connection holds no BIO memory, and with SSL_MODE_RELEASE_BUFFERS no
 * record buffers either. */
#include "tls/tls_int.h"
#include "tls/tls_sess.h"

#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "core/alloc.h"
#include "core/log.h"

/* feed() stopped for a pause (tls_sess_feed keeps the rest; never returned) */
#define TLS_FEED_PAUSE 3

struct tls_sess_s {
    SSL *ssl;
    pc_tls_ctx_t *ctx;
    /* the feed in progress (read side of the BIO) */
    const unsigned char *in;
    size_t in_len;
    /* where the write side goes during the current call */
    const tls_io_t *io;
    void *arg;
    int out_err;
    /* plaintext written before the handshake completed (sent after it) */
    unsigned char *pend;
    size_t pend_len, pend_cap;
    size_t pend_flushed; /* how much of it went out as the handshake completed */
    /* received bytes not yet fed: a callback paused reading (the next feed
     * takes them first) */
    unsigned char *rest;
    size_t rest_len;
    uint8_t plain_kept; /* a pause left decrypted bytes inside OpenSSL */
    uint8_t established;
    uint8_t failed;
    uint8_t shut;
    char *host; /* client: the name checked / sent; server: the name the
                 * ClientHello asked for (resumption checks it); NULL: none */
};

/* ---- the BIO ------------------------------------------------------------------ */

static BIO_METHOD *bio_method;
static CRYPTO_ONCE bio_once = CRYPTO_ONCE_STATIC_INIT;

static int bio_write_ex(BIO *b, const char *data, size_t len, size_t *written)
{
    tls_sess_t *s = BIO_get_data(b);
    *written = 0;
    if (!s->io || s->out_err) return 0;
    int rc = s->io->out(s->arg, data, len);
    if (rc < 0) {
        s->out_err = rc;
        return 0;
    }
    *written = len;
    return 1;
}

static int bio_read_ex(BIO *b, char *buf, size_t len, size_t *got)
{
    tls_sess_t *s = BIO_get_data(b);
    *got = 0;
    BIO_clear_retry_flags(b);
    if (!s->in_len) {
        BIO_set_retry_read(b); /* "would block": more comes with the next receive */
        return 0;
    }
    size_t n = len < s->in_len ? len : s->in_len;
    memcpy(buf, s->in, n);
    s->in += n;
    s->in_len -= n;
    *got = n;
    return 1;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)num;
    (void)ptr;
    tls_sess_t *s = BIO_get_data(b);
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1;
    case BIO_CTRL_PENDING:
        return s ? (long)s->in_len : 0;
    case BIO_CTRL_WPENDING:
        return 0;
    default:
        return 0;
    }
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static void bio_method_init(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "portcullis");
    if (!m) return;
    BIO_meth_set_write_ex(m, bio_write_ex);
    BIO_meth_set_read_ex(m, bio_read_ex);
    BIO_meth_set_ctrl(m, bio_ctrl);
    BIO_meth_set_create(m, bio_create);
    bio_method = m;
}

/* ---- sessions ------------------------------------------------------------------ */

const char *tls_sess_host_of(const SSL *ssl)
{
    const tls_sess_t *s = SSL_get_app_data(ssl);
    return s && s->host ? s->host : "";
}

int tls_sess_set_hello_name(SSL *ssl, const char *name, size_t len)
{
    tls_sess_t *s = SSL_get_app_data(ssl);
    if (!s) return PC_ENOMEM;
    pc__free(s->host); /* a second ClientHello (after a HelloRetryRequest) replaces it */
    s->host = NULL;
    if (!len) return 0;
    s->host = pc__malloc(len + 1);
    if (!s->host) return PC_ENOMEM;
    memcpy(s->host, name, len);
    s->host[len] = '\0';
    return 0;
}

static int is_ip_literal(const char *host)
{
    ASN1_OCTET_STRING *ip = a2i_IPADDRESS(host);
    if (!ip) return 0;
    ASN1_OCTET_STRING_free(ip);
    return 1;
}

tls_sess_t *tls_sess_new(pc_tls_ctx_t *ctx, const char *host)
{
    if (!CRYPTO_THREAD_run_once(&bio_once, bio_method_init) || !bio_method) return NULL;
    tls_sess_t *s = pc__calloc(1, sizeof *s);
    if (!s) return NULL;
    s->ssl = SSL_new(ctx->ssl[0]);
    BIO *b = s->ssl ? BIO_new(bio_method) : NULL;
    if (!b) goto fail;
    BIO_set_data(b, s);
    SSL_set_bio(s->ssl, b, b);
    SSL_set_app_data(s->ssl, s);
    if (ctx->server) {
        SSL_set_accept_state(s->ssl);
    } else {
        SSL_set_connect_state(s->ssl);
        if (host && *host) {
            s->host = pc__strdup(host);
            if (!s->host) goto fail;
            int ok;
            if (is_ip_literal(host)) {
                ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(s->ssl), host);
            } else {
                ok =
                    SSL_set_tlsext_host_name(s->ssl, host) == 1 && SSL_set1_host(s->ssl, host) == 1;
            }
            if (!ok) goto fail;
        }
        SSL_SESSION *prev = tls_ctx_take_session(ctx, s->host);
        if (prev) {
            SSL_set_session(s->ssl, prev);
            SSL_SESSION_free(prev);
        }
    }
    tls_ctx_ref(ctx);
    s->ctx = ctx;
    return s;
fail:
    ERR_clear_error();
    if (s->ssl) SSL_free(s->ssl);
    pc__free(s->host);
    pc__free(s);
    return NULL;
}

void tls_sess_free(tls_sess_t *s)
{
    if (!s) return;
    SSL_free(s->ssl);
    pc__free(s->pend);
    pc__free(s->rest);
    pc__free(s->host);
    pc_tls_ctx_t *ctx = s->ctx;
    pc__free(s);
    pc_tls_ctx_free(ctx);
}

int tls_sess_established(const tls_sess_t *s)
{
    return s->established;
}

_Static_assert(TLS_RECORD_OVERHEAD_MAX == SSL3_RT_HEADER_LENGTH + SSL3_RT_MAX_ENCRYPTED_OVERHEAD,
               "a record's overhead at most, as OpenSSL bounds it");

size_t tls_sess_fragment(const tls_sess_t *s)
{
    SSL_SESSION *ss = SSL_get_session(s->ssl);
    uint8_t mfl = ss ? SSL_SESSION_get_max_fragment_length(ss) : 0;
    if (mfl >= TLSEXT_max_fragment_length_512 && mfl <= TLSEXT_max_fragment_length_4096)
        return (size_t)256 << mfl; /* 1: 512 ... 4: 4096 */
    return TLS_PLAIN_CHUNK;
}

int tls_sess_multiblock(const tls_sess_t *s)
{
    const SSL_CIPHER *c = SSL_get_current_cipher(s->ssl);
    return SSL_version(s->ssl) < TLS1_3_VERSION && (!c || !SSL_CIPHER_is_aead(c));
}

int tls_sess_resumed(const tls_sess_t *s)
{
    return s->established && SSL_session_reused(s->ssl);
}

static void sess_bind(tls_sess_t *s, const void *data, size_t n, const tls_io_t *io, void *arg)
{
    s->in = data;
    s->in_len = n;
    s->io = io;
    s->arg = arg;
    ERR_clear_error();
}

static void sess_unbind(tls_sess_t *s)
{
    s->in = NULL;
    s->in_len = 0;
    s->io = NULL;
    s->arg = NULL;
}

/* A failure: OpenSSL has queued its alert (if any) through the BIO. */
static int sess_fail(tls_sess_t *s, const char *what)
{
    s->failed = 1;
    int rc = s->out_err ? s->out_err : PC_ETLS;
    if (pc__log_enabled(PC_LOG_DEBUG))
        tls_log_errors(PC_LOG_DEBUG, what);
    else
        ERR_clear_error();
    return rc;
}

static int write_plain(tls_sess_t *s, const void *data, size_t len)
{
    size_t done = 0;
    while (done < len) {
        size_t w = 0;
        if (SSL_write_ex(s->ssl, (const char *)data + done, len - done, &w) != 1)
            return sess_fail(s, "write");
        done += w;
    }
    return 0;
}

int tls_sess_start(tls_sess_t *s, const tls_io_t *io, void *arg)
{
    sess_bind(s, NULL, 0, io, arg);
    int r = SSL_do_handshake(s->ssl);
    int rc = 0;
    if (r != 1 && (SSL_get_error(s->ssl, r) != SSL_ERROR_WANT_READ || s->out_err))
        rc = sess_fail(s, "handshake start");
    sess_unbind(s);
    return rc;
}

static int feed(tls_sess_t *s)
{
    const tls_io_t *io = s->io;
    void *arg = s->arg;
    if (!s->established) {
        int r = SSL_do_handshake(s->ssl);
        if (r != 1) {
            if (SSL_get_error(s->ssl, r) == SSL_ERROR_WANT_READ && !s->out_err) return 0;
            return sess_fail(s, "handshake");
        }
        s->established = 1;
        /* what was kept goes first, in the order it was written, then
         * open (whose callback may send more) */
        s->pend_flushed = s->pend_len;
        if (s->pend_len) {
            int rc = write_plain(s, s->pend, s->pend_len);
            pc__free(s->pend);
            s->pend = NULL;
            s->pend_len = s->pend_cap = 0;
            if (rc < 0) return rc;
        }
        int opened = io->open(arg);
        if (opened == TLS_IO_STOP) return TLS_FEED_STOP;
        if (opened == TLS_IO_PAUSE) return TLS_FEED_PAUSE;
    }
    unsigned char buf[TLS_PLAIN_CHUNK];
    for (;;) {
        size_t got = 0;
        /* the callbacks may have left errors on this thread's queue (the
         * application's own OpenSSL calls): SSL_get_error below would take
         * them for this session's and fail it */
        ERR_clear_error();
        if (SSL_read_ex(s->ssl, buf, sizeof buf, &got) == 1) {
            int r = io->data(arg, buf, got);
            if (r == TLS_IO_STOP) return TLS_FEED_STOP;
            /* a record is read whole into buf (one record's plaintext at
             * most): what is left is in the input, kept by the caller */
            if (r == TLS_IO_PAUSE) return TLS_FEED_PAUSE;
            continue;
        }
        int e = SSL_get_error(s->ssl, 0);
        if (e == SSL_ERROR_WANT_READ && !s->out_err) return 0;
        if (e == SSL_ERROR_ZERO_RETURN) return TLS_FEED_EOF;
        return sess_fail(s, "read");
    }
}

int tls_sess_feed(tls_sess_t *s, const void *data, size_t n, const tls_io_t *io, void *arg)
{
    if (s->failed) return PC_ETLS;
    /* input an earlier pause kept goes first, then this feed's */
    unsigned char *own = NULL;
    if (s->rest_len) {
        own = s->rest;
        if (n) {
            unsigned char *p = pc__realloc(own, s->rest_len + n);
            if (!p) return PC_ENOMEM; /* the session cannot go on in order */
            memcpy(p + s->rest_len, data, n);
            own = p;
        }
        data = own;
        n += s->rest_len;
        s->rest = NULL;
        s->rest_len = 0;
    }
    sess_bind(s, data, n, io, arg);
    s->plain_kept = 0;
    int rc = feed(s);
    if (rc == TLS_FEED_PAUSE) {
        rc = 0;
        /* a record is read whole (no read-ahead), so none is expected; if
         * there is, the next feed (has_rest) takes it */
        s->plain_kept = SSL_pending(s->ssl) > 0;
        if (s->in_len && own) { /* the kept block holds it: move it to the front */
            memmove(own, s->in, s->in_len);
            s->rest = own;
            s->rest_len = s->in_len;
            own = NULL;
        } else if (s->in_len) {
            s->rest = pc__malloc(s->in_len);
            if (s->rest) {
                memcpy(s->rest, s->in, s->in_len);
                s->rest_len = s->in_len;
            } else { /* the pause must hold: the connection goes */
                rc = PC_ENOMEM;
            }
        }
    }
    sess_unbind(s);
    pc__free(own);
    return rc;
}

size_t tls_sess_pend_len(const tls_sess_t *s)
{
    return s->pend_len;
}

size_t tls_sess_pend_flushed(const tls_sess_t *s)
{
    return s->pend_flushed;
}

size_t tls_sess_pend_cap(const tls_sess_t *s)
{
    return s->pend_cap;
}

/* The capacity the buffer needs for total kept bytes: doubling, so many
 * small writes copy O(total). */
static size_t pend_cap_for(const tls_sess_t *s, size_t total)
{
    if (total <= s->pend_cap) return s->pend_cap;
    return s->pend_cap * 2 > total ? s->pend_cap * 2 : total;
}

size_t tls_sess_pend_grow(const tls_sess_t *s, size_t add)
{
    if (s->established || s->failed || s->shut) return 0;
    return pend_cap_for(s, s->pend_len + add) - s->pend_cap;
}

/* Grow the buffer to cap bytes (> pend_cap). */
static int pend_resize(tls_sess_t *s, size_t cap)
{
    unsigned char *p = pc__realloc(s->pend, cap ? cap : 1);
    if (!p) return PC_ENOMEM;
    s->pend = p;
    s->pend_cap = cap;
    return 0;
}

int tls_sess_pend_reserve(tls_sess_t *s, size_t add, int exact)
{
    size_t total = s->pend_len + add;
    if (s->established || s->failed || s->shut || total <= s->pend_cap) return 0;
    return pend_resize(s, exact ? total : pend_cap_for(s, total));
}

int tls_sess_has_rest(const tls_sess_t *s)
{
    return s->rest_len != 0 || s->plain_kept; /* asked per event: no OpenSSL call */
}

int tls_sess_write(tls_sess_t *s, const pc_buf_t *bufs, unsigned n, const tls_io_t *io, void *arg)
{
    if (s->failed || s->shut) return PC_ETLS;
    if (!s->established) { /* kept until the handshake completes */
        size_t total = s->pend_len;
        for (unsigned i = 0; i < n; i++)
            total += bufs[i].len;
        if (total > s->pend_cap && pend_resize(s, pend_cap_for(s, total)) < 0) return PC_ENOMEM;
        for (unsigned i = 0; i < n; i++) {
            if (!bufs[i].len) continue; /* pend may still be NULL */
            memcpy(s->pend + s->pend_len, bufs[i].base, bufs[i].len);
            s->pend_len += bufs[i].len;
        }
        return 0;
    }
    /* the application may send from on_data, inside a feed: the feed's
     * input stays where it is */
    const tls_io_t *saved_io = s->io;
    void *saved_arg = s->arg;
    s->io = io;
    s->arg = arg;
    int rc = 0;
    size_t total = 0;
    for (unsigned i = 0; i < n; i++)
        total += bufs[i].len;
    if (tls_write_joins(n, total)) {
        unsigned char one[TLS_PLAIN_CHUNK];
        size_t off = 0;
        for (unsigned i = 0; i < n; i++) {
            if (!bufs[i].len) continue; /* its base may be NULL */
            memcpy(one + off, bufs[i].base, bufs[i].len);
            off += bufs[i].len;
        }
        rc = write_plain(s, one, off);
    } else {
        for (unsigned i = 0; i < n && rc == 0; i++)
            if (bufs[i].len) rc = write_plain(s, bufs[i].base, bufs[i].len);
    }
    s->io = saved_io;
    s->arg = saved_arg;
    return rc;
}

int tls_sess_close_notify(tls_sess_t *s, const tls_io_t *io, void *arg)
{
    if (!s->established || s->failed || s->shut) return 0;
    s->shut = 1;
    /* may run inside a feed (pc_conn_close from on_data): keep its input */
    const tls_io_t *saved_io = s->io;
    void *saved_arg = s->arg;
    s->io = io;
    s->arg = arg;
    ERR_clear_error();
    int r = SSL_shutdown(s->ssl); /* 0: our close_notify is out, the peer's not yet in */
    int rc = (r < 0 || s->out_err) ? sess_fail(s, "close_notify") : 0;
    s->io = saved_io;
    s->arg = saved_arg;
    return rc;
}

static void copy_str(char *dst, size_t size, const char *src, size_t len)
{
    if (!src) len = 0;
    if (len >= size) len = size - 1;
    if (len) memcpy(dst, src, len);
    dst[len] = 0;
}

int tls_sess_info(const tls_sess_t *s, pc_tls_info_t *out)
{
    memset(out, 0, sizeof *out);
    if (!s->established) return PC_ENOTCONN;
    SSL *ssl = s->ssl;
    out->version = SSL_version(ssl) == TLS1_3_VERSION ? PC_TLS_V1_3 : SSL_version(ssl);
    out->resumed = SSL_session_reused(ssl);
    const char *v = SSL_get_version(ssl);
    copy_str(out->version_name, sizeof out->version_name, v, v ? strlen(v) : 0);
    const char *cn = SSL_CIPHER_get_name(SSL_get_current_cipher(ssl));
    copy_str(out->cipher, sizeof out->cipher, cn, cn ? strlen(cn) : 0);
    const unsigned char *alpn = NULL;
    unsigned alen = 0;
    SSL_get0_alpn_selected(ssl, &alpn, &alen);
    copy_str(out->alpn, sizeof out->alpn, (const char *)alpn, alen);
    const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    copy_str(out->sni, sizeof out->sni, sni, sni ? strlen(sni) : 0);
    X509 *peer = SSL_get0_peer_certificate(ssl);
    if (peer) {
        X509_NAME_oneline(X509_get_subject_name(peer), out->peer_subject,
                          (int)sizeof out->peer_subject);
        out->peer_verified = SSL_get_verify_result(ssl) == X509_V_OK;
    }
    return 0;
}
