/* SPDX-License-Identifier: MIT */
/* TLS contexts: certificates and SNI, ALPN, versions, session tickets with
 * key rotation, client-certificate verification, client trust and the
 * client's resumption slot. */
#include "tls/tls_int.h"
#include "tls/tls_sess.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "core/alloc.h"
#include "core/errno_map.h"
#include "core/clock.h"
#include "core/log.h"

#define SESSION_ID_CONTEXT "portcullis"

int pc_tls_available(void)
{
    return 1;
}

void tls_log_errors(pc_log_level_t level, const char *what)
{
    unsigned long e;
    int any = 0;
    char buf[256];
    while ((e = ERR_get_error()) != 0) {
        ERR_error_string_n(e, buf, sizeof buf);
        pc__log(level, "tls: %s: %s", what, buf);
        any = 1;
    }
    if (!any) pc__log(level, "tls: %s", what);
}

void pc_tls_server_config_init(pc_tls_server_config_t *cfg)
{
    if (!cfg) return;
    memset(cfg, 0, sizeof *cfg);
    cfg->min_version = PC_TLS_V1_2;
    cfg->ticket_rotate_s = 3600;
}

void pc_tls_client_config_init(pc_tls_client_config_t *cfg)
{
    if (!cfg) return;
    memset(cfg, 0, sizeof *cfg);
    cfg->min_version = PC_TLS_V1_2;
}

/* "h2,http/1.1" -> "\x02h2\x08http/1.1". 0, PC_EINVAL (an empty name or
 * one over 255 bytes), PC_ENOMEM. */
static int alpn_wire(const char *list, unsigned char **out, unsigned *outlen)
{
    *out = NULL;
    *outlen = 0;
    if (!list || !*list) return 0;
    size_t n = strlen(list);
    unsigned char *w = pc__malloc(n + 1);
    if (!w) return PC_ENOMEM;
    size_t wl = 0;
    const char *p = list;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == 0 || len > 255) {
            pc__free(w);
            return PC_EINVAL;
        }
        w[wl++] = (unsigned char)len;
        memcpy(w + wl, p, len);
        wl += len;
        p += len;
        if (*p == ',' && !*++p) { /* a trailing comma: an empty name */
            pc__free(w);
            return PC_EINVAL;
        }
    }
    *out = w;
    *outlen = (unsigned)wl;
    return 0;
}

/* 0 if path can be opened for reading, else why not, as the rules loader
 * says it (pc__from_open_errno). */
static int file_check(const char *path)
{
    if (!path) return PC_EINVAL;
    errno = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return pc__from_open_errno(errno);
    fclose(f);
    return 0;
}

static void ctx_destroy(pc_tls_ctx_t *ctx)
{
    for (unsigned i = 0; i < ctx->nssl; i++)
        SSL_CTX_free(ctx->ssl[i]);
    pc__free(ctx->ssl);
    pc__free(ctx->alpn);
    if (ctx->rs_last) SSL_SESSION_free(ctx->rs_last);
    pc__mutex_destroy(&ctx->tk_lock);
    pc__mutex_destroy(&ctx->rs_lock);
    pc__free(ctx);
    pc__alloc_unpin();
}

void tls_ctx_ref(pc_tls_ctx_t *ctx)
{
    atomic_fetch_add(&ctx->refs, 1);
}

void pc_tls_ctx_free(pc_tls_ctx_t *ctx)
{
    if (ctx && atomic_fetch_sub(&ctx->refs, 1) == 1) ctx_destroy(ctx);
}

int tls_ctx_is_server(const pc_tls_ctx_t *ctx)
{
    return ctx->server;
}

static pc_tls_ctx_t *ctx_alloc(int server, unsigned nssl)
{
    pc_tls_ctx_t *ctx = pc__calloc(1, sizeof *ctx);
    if (!ctx) return NULL;
    ctx->ssl = pc__calloc(nssl, sizeof *ctx->ssl);
    if (!ctx->ssl) {
        pc__free(ctx);
        return NULL;
    }
    pc__alloc_pin(); /* it holds allocations until its last reference goes */
    atomic_init(&ctx->refs, 1);
    ctx->server = server;
    pc__mutex_init(&ctx->tk_lock);
    pc__mutex_init(&ctx->rs_lock);
    return ctx;
}

static int version_of(int v, int *out)
{
    if (v == 0) {
        *out = 0;
        return 0;
    }
    if (v == PC_TLS_V1_2)
        *out = TLS1_2_VERSION;
    else if (v == PC_TLS_V1_3)
        *out = TLS1_3_VERSION;
    else
        return PC_EINVAL;
    return 0;
}

/* ---- server: tickets ------------------------------------------------------ */

static int ticket_key_new(tls_ticket_key_t *k)
{
    return RAND_bytes((unsigned char *)k, (int)sizeof *k) == 1 ? 0 : PC_ETLS;
}

/* Rotate when the current key is older than rotate_s. Under tk_lock. */
static void ticket_rotate_due(pc_tls_ctx_t *ctx)
{
    uint64_t now = pc__now_ms();
    if (now - ctx->tk_born_ms < (uint64_t)ctx->rotate_s * 1000u) return;
    tls_ticket_key_t fresh;
    if (ticket_key_new(&fresh) < 0) return; /* keep the current key */
    ctx->tk_prev = ctx->tk_cur;
    ctx->tk_have_prev = 1;
    ctx->tk_cur = fresh;
    ctx->tk_born_ms = now;
    PC_LOGD("tls: session-ticket key rotated");
}

static int ticket_mac_init(EVP_MAC_CTX *hctx, const tls_ticket_key_t *k)
{
    OSSL_PARAM params[3];
    params[0] =
        OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, (void *)k->hmac, sizeof k->hmac);
    params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
    params[2] = OSSL_PARAM_construct_end();
    return EVP_MAC_CTX_set_params(hctx, params);
}

/* OpenSSL's ticket key callback: enc = 1 to seal a new ticket with the
 * current key; enc = 0 to open one: 1 (current key), 2 (previous key, or
 * any key under TLS 1.3: valid, renew it), 0 (unknown key: full handshake). */
static int ticket_cb(SSL *ssl, unsigned char key_name[16], unsigned char *iv, EVP_CIPHER_CTX *cctx,
                     EVP_MAC_CTX *hctx, int enc)
{
    pc_tls_ctx_t *ctx = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    tls_ticket_key_t k;
    int rc = 1;
    pc__mutex_lock(&ctx->tk_lock);
    ticket_rotate_due(ctx);
    if (enc) {
        k = ctx->tk_cur;
    } else if (memcmp(key_name, ctx->tk_cur.name, 16) == 0) {
        k = ctx->tk_cur;
        /* TLS 1.3 clients should not offer a ticket twice (RFC 8446, C.4):
         * 2 makes OpenSSL send a fresh one after the resumed handshake */
        if (SSL_version(ssl) >= TLS1_3_VERSION) rc = 2;
    } else if (ctx->tk_have_prev && memcmp(key_name, ctx->tk_prev.name, 16) == 0) {
        k = ctx->tk_prev;
        rc = 2;
    } else {
        rc = 0;
    }
    pc__mutex_unlock(&ctx->tk_lock);
    if (rc == 0) return 0;
    if (enc) {
        memcpy(key_name, k.name, 16);
        if (RAND_bytes(iv, EVP_CIPHER_get_iv_length(EVP_aes_256_cbc())) != 1) return -1;
        if (EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k.aes, iv) != 1) return -1;
    } else if (EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k.aes, iv) != 1) {
        return -1;
    }
    if (ticket_mac_init(hctx, &k) != 1) return -1;
    OPENSSL_cleanse(&k, sizeof k);
    return rc;
}

/* ---- server: resumption under the name it was made for ------------------------ */

/* Every ClientHello, before the ticket is opened: keep the name it asks for
 * (server_name: a list of one host_name; anything else keeps none, and
 * OpenSSL refuses a malformed one itself). */
static int hello_cb(SSL *ssl, int *alert, void *arg)
{
    (void)arg;
    const unsigned char *p;
    size_t len, n = 0;
    const char *name = NULL;
    if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &p, &len) && len >= 5 &&
        ((size_t)p[0] << 8 | p[1]) == len - 2 && p[2] == TLSEXT_NAMETYPE_host_name &&
        ((size_t)p[3] << 8 | p[4]) <= len - 5) {
        n = (size_t)p[3] << 8 | p[4];
        name = (const char *)p + 5;
    }
    if (tls_sess_set_hello_name(ssl, name, n) != 0) {
        *alert = SSL_AD_INTERNAL_ERROR;
        return SSL_CLIENT_HELLO_ERROR;
    }
    return SSL_CLIENT_HELLO_SUCCESS;
}

/* A ticket opened: resume only when the ClientHello asks for the name the
 * session was made under (RFC 6066, 3: a different server_name must not
 * resume; both without a name is the same). Else a full handshake, with the
 * certificate the name selects, and a new ticket. All of a context's
 * certificates share its ticket keys, so without this a ticket from one
 * name resumed a connection asking for another: no certificate for the new
 * name, and (TLS 1.2) the old name in pc_conn_tls_info's sni. */
static SSL_TICKET_RETURN ticket_dec_cb(SSL *ssl, SSL_SESSION *ss, const unsigned char *keyname,
                                       size_t keyname_len, SSL_TICKET_STATUS status, void *arg)
{
    (void)keyname, (void)keyname_len, (void)arg;
    if (status != SSL_TICKET_SUCCESS && status != SSL_TICKET_SUCCESS_RENEW)
        return status == SSL_TICKET_EMPTY || status == SSL_TICKET_NO_DECRYPT
                   ? SSL_TICKET_RETURN_IGNORE_RENEW
                   : SSL_TICKET_RETURN_ABORT; /* OpenSSL's own answers */
    const char *was = SSL_SESSION_get0_hostname(ss);
    /* OpenSSL's comparison ignores ASCII case only, whatever the locale */
    if (OPENSSL_strcasecmp(was ? was : "", tls_sess_host_of(ssl)) != 0)
        return SSL_TICKET_RETURN_IGNORE_RENEW;
    return status == SSL_TICKET_SUCCESS ? SSL_TICKET_RETURN_USE : SSL_TICKET_RETURN_USE_RENEW;
}

/* ---- server: SNI and ALPN ---------------------------------------------------- */

static int sni_cb(SSL *ssl, int *alert, void *arg)
{
    (void)alert;
    pc_tls_ctx_t *ctx = arg;
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (!name || ctx->nssl < 2) return SSL_TLSEXT_ERR_OK;
    for (unsigned i = 1; i < ctx->nssl; i++) {
        X509 *leaf = SSL_CTX_get0_certificate(ctx->ssl[i]);
        if (leaf && X509_check_host(leaf, name, 0, 0, NULL) == 1) {
            SSL_set_SSL_CTX(ssl, ctx->ssl[i]);
            break;
        }
    }
    return SSL_TLSEXT_ERR_OK; /* no match: the default certificate */
}

static int alpn_select_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                          const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl;
    pc_tls_ctx_t *ctx = arg;
    unsigned char *sel = NULL;
    if (SSL_select_next_proto(&sel, outlen, ctx->alpn, ctx->alpn_len, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

/* How every SSL_CTX, server or client, writes records: buffers released
 * when idle, a retried write accepted from a moved buffer, and no record
 * padding, whatever openssl.cnf's RecordPadding says: a record's size must
 * follow from its plaintext, which max_buffered_bytes checks sends
 * against (tls_write_mem_max). */
static void ssl_records_setup(SSL_CTX *sc)
{
    SSL_CTX_set_mode(sc, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_block_padding(sc, 0);
}

/* Settings every SSL_CTX of a server context shares (SNI switches between
 * them mid-handshake, and some settings are read from the switched-to one). */
static int server_ssl_setup(pc_tls_ctx_t *ctx, SSL_CTX *sc, const pc_tls_server_config_t *cfg,
                            const pc_tls_cert_t *pair)
{
    int minv;
    if (version_of(cfg->min_version ? cfg->min_version : PC_TLS_V1_2, &minv) < 0) return PC_EINVAL;
    SSL_CTX_set_app_data(sc, ctx);
    SSL_CTX_set_min_proto_version(sc, minv);
    ssl_records_setup(sc);
    SSL_CTX_set_options(sc, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_session_id_context(sc, (const unsigned char *)SESSION_ID_CONTEXT,
                                   sizeof SESSION_ID_CONTEXT - 1);
    /* stateless tickets only: no server-side session cache to grow */
    SSL_CTX_set_session_cache_mode(sc, SSL_SESS_CACHE_OFF);
    if (cfg->no_tickets) {
        SSL_CTX_set_options(sc, SSL_OP_NO_TICKET);
        SSL_CTX_set_num_tickets(sc, 0);
    } else {
        SSL_CTX_set_tlsext_ticket_key_evp_cb(sc, ticket_cb);
        SSL_CTX_set_client_hello_cb(sc, hello_cb, NULL);
        SSL_CTX_set_session_ticket_cb(sc, NULL, ticket_dec_cb, NULL);
        /* two periods, in a long: 32 bits on Windows, where a rotate_s
         * near UINT_MAX would wrap negative */
        uint64_t life = (uint64_t)ctx->rotate_s * 2;
        SSL_CTX_set_timeout(sc, life > LONG_MAX ? LONG_MAX : (long)life);
        SSL_CTX_set_num_tickets(sc, 1);
    }
    if (ctx->alpn) SSL_CTX_set_alpn_select_cb(sc, alpn_select_cb, ctx);
    SSL_CTX_set_tlsext_servername_callback(sc, sni_cb);
    SSL_CTX_set_tlsext_servername_arg(sc, ctx);
    if (SSL_CTX_use_certificate_chain_file(sc, pair->cert_file) != 1) {
        tls_log_errors(PC_LOG_WARN, pair->cert_file);
        return PC_ETLS;
    }
    if (SSL_CTX_use_PrivateKey_file(sc, pair->key_file, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(sc) != 1) {
        tls_log_errors(PC_LOG_WARN, pair->key_file);
        return PC_ETLS;
    }
    if (cfg->verify_client != PC_TLS_VERIFY_NONE) {
        if (SSL_CTX_load_verify_locations(sc, cfg->client_ca_file, NULL) != 1) {
            tls_log_errors(PC_LOG_WARN, cfg->client_ca_file);
            return PC_ETLS;
        }
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(cfg->client_ca_file);
        if (names) SSL_CTX_set_client_CA_list(sc, names);
        int mode = SSL_VERIFY_PEER;
        if (cfg->verify_client == PC_TLS_VERIFY_REQUIRED) mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
        SSL_CTX_set_verify(sc, mode, NULL);
    }
    return 0;
}

int pc_tls_ctx_new_server(const pc_tls_server_config_t *cfg, pc_tls_ctx_t **out)
{
    if (!out) return PC_EINVAL;
    *out = NULL;
    if (!cfg || !cfg->certs || cfg->ncerts == 0 || cfg->verify_client > PC_TLS_VERIFY_REQUIRED ||
        cfg->verify_client < PC_TLS_VERIFY_NONE)
        return PC_EINVAL;
    for (unsigned i = 0; i < cfg->ncerts; i++) {
        if (!cfg->certs[i].cert_file || !cfg->certs[i].key_file) return PC_EINVAL;
        int frc = file_check(cfg->certs[i].cert_file);
        if (frc == 0) frc = file_check(cfg->certs[i].key_file);
        if (frc < 0) {
            PC_LOGW("tls: cannot read %s or %s: %s", cfg->certs[i].cert_file,
                    cfg->certs[i].key_file, pc_strerror(frc));
            return frc;
        }
    }
    if (cfg->verify_client != PC_TLS_VERIFY_NONE) {
        if (!cfg->client_ca_file) return PC_EINVAL;
        int frc = file_check(cfg->client_ca_file);
        if (frc < 0) return frc;
    }
    int minv;
    if (version_of(cfg->min_version, &minv) < 0) return PC_EINVAL;
    pc_tls_ctx_t *ctx = ctx_alloc(1, cfg->ncerts);
    if (!ctx) return PC_ENOMEM;
    ctx->rotate_s = cfg->ticket_rotate_s ? cfg->ticket_rotate_s : 3600;
    int rc = alpn_wire(cfg->alpn, &ctx->alpn, &ctx->alpn_len);
    if (rc == 0 && !cfg->no_tickets) rc = ticket_key_new(&ctx->tk_cur);
    ctx->tk_born_ms = pc__now_ms();
    for (unsigned i = 0; rc == 0 && i < cfg->ncerts; i++) {
        SSL_CTX *sc = SSL_CTX_new(TLS_server_method());
        if (!sc) {
            rc = PC_ENOMEM;
            break;
        }
        ctx->ssl[ctx->nssl++] = sc;
        rc = server_ssl_setup(ctx, sc, cfg, &cfg->certs[i]);
    }
    if (rc < 0) {
        ctx_destroy(ctx);
        return rc;
    }
    *out = ctx;
    return 0;
}

/* ---- client ------------------------------------------------------------------ */

/* A server gave a session (ticket): keep the newest for resumption. */
static int new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
    pc_tls_ctx_t *ctx = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    const char *host = tls_sess_host_of(ssl);
    pc__mutex_lock(&ctx->rs_lock);
    if (ctx->rs_last) SSL_SESSION_free(ctx->rs_last);
    ctx->rs_last = sess; /* returning 1 keeps OpenSSL's reference for us */
    snprintf(ctx->rs_host, sizeof ctx->rs_host, "%s", host);
    pc__mutex_unlock(&ctx->rs_lock);
    return 1;
}

SSL_SESSION *tls_ctx_take_session(pc_tls_ctx_t *ctx, const char *host)
{
    if (!ctx->resume) return NULL;
    SSL_SESSION *s = NULL;
    pc__mutex_lock(&ctx->rs_lock);
    if (ctx->rs_last && strcmp(ctx->rs_host, host ? host : "") == 0 &&
        SSL_SESSION_is_resumable(ctx->rs_last)) {
        s = ctx->rs_last;
        SSL_SESSION_up_ref(s);
    }
    pc__mutex_unlock(&ctx->rs_lock);
    return s;
}

int pc_tls_ctx_new_client(const pc_tls_client_config_t *cfg, pc_tls_ctx_t **out)
{
    if (!out) return PC_EINVAL;
    *out = NULL;
    int minv, maxv;
    if (!cfg || version_of(cfg->min_version, &minv) < 0 ||
        version_of(cfg->max_version, &maxv) < 0 || (!cfg->cert_file != !cfg->key_file))
        return PC_EINVAL;
    if (maxv && maxv < (minv ? minv : TLS1_2_VERSION)) {
        /* no version left: every handshake would fail */
        PC_LOGW("tls: client config refused: max_version 0x%04x is below min_version 0x%04x",
                (unsigned)cfg->max_version,
                (unsigned)(cfg->min_version ? cfg->min_version : PC_TLS_V1_2));
        return PC_EINVAL;
    }
    int frc = cfg->ca_file ? file_check(cfg->ca_file) : 0;
    if (frc == 0 && cfg->cert_file) frc = file_check(cfg->cert_file);
    if (frc == 0 && cfg->cert_file) frc = file_check(cfg->key_file);
    if (frc < 0) return frc;
    pc_tls_ctx_t *ctx = ctx_alloc(0, 1);
    if (!ctx) return PC_ENOMEM;
    ctx->resume = cfg->resume;
    int rc = alpn_wire(cfg->alpn, &ctx->alpn, &ctx->alpn_len);
    SSL_CTX *sc = rc == 0 ? SSL_CTX_new(TLS_client_method()) : NULL;
    if (rc == 0 && !sc) rc = PC_ENOMEM;
    if (sc) {
        ctx->ssl[ctx->nssl++] = sc;
        SSL_CTX_set_app_data(sc, ctx);
        SSL_CTX_set_min_proto_version(sc, minv ? minv : TLS1_2_VERSION);
        if (maxv) SSL_CTX_set_max_proto_version(sc, maxv);
        ssl_records_setup(sc);
        SSL_CTX_set_options(sc, SSL_OP_NO_RENEGOTIATION);
        if (ctx->resume) {
            SSL_CTX_set_session_cache_mode(sc, SSL_SESS_CACHE_CLIENT |
                                                   SSL_SESS_CACHE_NO_INTERNAL_STORE);
            SSL_CTX_sess_set_new_cb(sc, new_session_cb);
        }
        if (ctx->alpn && SSL_CTX_set_alpn_protos(sc, ctx->alpn, ctx->alpn_len) != 0) rc = PC_ENOMEM;
        if (rc == 0 && !cfg->insecure) {
            int ok = cfg->ca_file ? SSL_CTX_load_verify_locations(sc, cfg->ca_file, NULL)
                                  : SSL_CTX_set_default_verify_paths(sc);
            if (ok != 1) {
                tls_log_errors(PC_LOG_WARN, cfg->ca_file ? cfg->ca_file : "system CA store");
                rc = PC_ETLS;
            }
            SSL_CTX_set_verify(sc, SSL_VERIFY_PEER, NULL);
        }
        if (rc == 0 && cfg->cert_file) {
            if (SSL_CTX_use_certificate_chain_file(sc, cfg->cert_file) != 1 ||
                SSL_CTX_use_PrivateKey_file(sc, cfg->key_file, SSL_FILETYPE_PEM) != 1 ||
                SSL_CTX_check_private_key(sc) != 1) {
                tls_log_errors(PC_LOG_WARN, cfg->cert_file);
                rc = PC_ETLS;
            }
        }
    }
    if (rc < 0) {
        ctx_destroy(ctx);
        return rc;
    }
    *out = ctx;
    return 0;
}
