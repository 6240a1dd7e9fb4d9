/* SPDX-License-Identifier: MIT */
/*
 * portcullis TLS: a TLS session per connection (OpenSSL 3 over memory BIOs),
 * driven from the completion path. Included by portcullis.h. The functions
 * exist in every build; a library built without OpenSSL (CMake PC_TLS=OFF,
 * or AUTO without libssl-dev) answers PC_ENOSYS (pc_tls_available says which).
 *
 * THREADS
 *
 * - A pc_tls_ctx_t is built and configured by one thread (pc_tls_ctx_new_*),
 *   then is immutable and may be shared by any number of listeners,
 *   pc_connect_tls calls and servers, on any thread. It is reference counted:
 *   pc_tls_ctx_free drops the caller's reference; a listener or an outbound
 *   connection holds its own until the server is destroyed / the connection
 *   is released. Session-ticket key rotation happens inside under a lock.
 * - Each connection's TLS session lives in its strand: the worker that runs
 *   the connection's callbacks decrypts what a receive delivered and hands
 *   the plaintext to on_data; pc_conn_send / pc_conn_sendv encrypt into the
 *   send queue; pc_server_send_to and sends from other threads are encrypted
 *   when the strand takes them. The application sees plaintext as on a plain
 *   connection, one on_data per TLS record (at most 16 KiB); the records of
 *   a receive already being decrypted are still delivered after
 *   pc_conn_pause_read (the pause applies from the next receive).
 *
 * LIFE OF A TLS CONNECTION
 *
 * - Order of trust: the accept verdict (and the kernel filter, the PROXY
 *   header where the source is a trusted proxy) runs before any TLS byte is
 *   read: a rejected client never reaches OpenSSL.
 * - on_open runs once the handshake is complete. A handshake not complete
 *   within config.handshake_timeout_ms (default 10 s; on accepted
 *   connections config.header_timeout_ms instead when set; armed at accept)
 *   is closed (counted in stats.closed[PC_CLOSE_HEADER_TIMEOUT]); a failed handshake (bad record,
 *   plain text on the TLS port, certificate refused) is closed after the
 *   alert, counted in stats.tls_handshake_errors and
 *   stats.closed[PC_CLOSE_TLS]; neither is shown to the application.
 * - A graceful close (pc_conn_close, pc_server_close_id, server stop) sends
 *   close_notify before the FIN; a close_notify from the peer is an end of
 *   stream (on_close reason PC_CLOSE_PEER). A record that fails to decrypt
 *   after the handshake closes the connection with PC_CLOSE_TLS / PC_ETLS.
 * - Idle connections keep no record buffers (SSL_MODE_RELEASE_BUFFERS); the
 *   BIOs are zero-copy views of the engine's buffers. docs/tls.md has the
 *   measured bytes per idle TLS connection.
 *
 * ERRORS
 *
 * As elsewhere: 0 or a negative PC_E* code. PC_ETLS: OpenSSL refused a file,
 * key or setting (details logged at PC_LOG_WARN), or a handshake / record
 * failed. PC_ENOSYS: the library was built without TLS (every function of
 * this header that returns an error then returns it; pc_tls_available
 * returns 0).
 */
#ifndef PORTCULLIS_TLS_H
#define PORTCULLIS_TLS_H

#include "portcullis.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Protocol versions (the wire values). */
#define PC_TLS_V1_2 0x0303
#define PC_TLS_V1_3 0x0304

typedef struct pc_tls_ctx_s pc_tls_ctx_t;

/* 1 if the library was built with TLS, else 0. Any thread. */
PC_API int pc_tls_available(void);

/* A certificate chain and its private key, PEM files. The chain file holds
 * the leaf first, then intermediates. */
typedef struct pc_tls_cert_s {
    const char *cert_file;
    const char *key_file;
} pc_tls_cert_t;

/* Client-certificate verification by a server. */
typedef enum pc_tls_verify_e {
    PC_TLS_VERIFY_NONE = 0,     /* do not ask for one (default) */
    PC_TLS_VERIFY_OPTIONAL = 1, /* ask; a certificate sent must verify against ca_file */
    PC_TLS_VERIFY_REQUIRED = 2, /* ask and refuse the handshake without a valid one */
} pc_tls_verify_t;

typedef struct pc_tls_server_config_s {
    /* Certificate/key pairs (at least one). certs[0] is the default; the
     * others are chosen by SNI: the first whose certificate matches the
     * name the client sent (subjectAltName DNS names, wildcards included). */
    const pc_tls_cert_t *certs;
    unsigned ncerts;
    /* ALPN protocols offered, comma-separated in preference order
     * ("h2,http/1.1"); NULL or "" = no ALPN. A client whose list shares
     * nothing with it gets no ALPN (the handshake goes on). An empty name
     * (",h2", "h2,") or one over 255 bytes is PC_EINVAL. */
    const char *alpn;
    /* Lowest version accepted: PC_TLS_V1_2 (default) or PC_TLS_V1_3.
     * Ciphers and groups are OpenSSL's defaults. */
    int min_version;
    /* Session tickets (stateless resumption; TLS 1.2 and 1.3): on by
     * default. The ticket keys are random, made inside and rotated every
     * ticket_rotate_s seconds (default 3600); the previous key still
     * decrypts (its tickets are renewed), so a ticket is good for between
     * one and two rotation periods. */
    int no_tickets;
    unsigned ticket_rotate_s;
    /* Client certificates: verification mode and the PEM file of the CAs
     * trusted for them (required unless mode is PC_TLS_VERIFY_NONE). */
    pc_tls_verify_t verify_client;
    const char *client_ca_file;
} pc_tls_server_config_t;

typedef struct pc_tls_client_config_s {
    /* Trust: CA certificates (PEM file); NULL = the system's default store.
     * The peer's chain is verified and its name checked against the host
     * given to pc_connect_tls (DNS name or IP address). */
    const char *ca_file;
    /* No verification at all (load generators, tests). Default 0. */
    int insecure;
    /* ALPN protocols offered, comma-separated; NULL or "" = none. Names as
     * for the server's list. */
    const char *alpn;
    /* Lowest version: PC_TLS_V1_2 (default) or PC_TLS_V1_3; max_version 0 =
     * the highest OpenSSL has. A max_version below min_version is refused
     * (PC_EINVAL). */
    int min_version;
    int max_version;
    /* Resumption: keep the last session ticket a server gave to a
     * connection of this context and offer it on the next pc_connect_tls to
     * the same host. Default 0 (every handshake full). */
    int resume;
    /* Optional client certificate and key (PEM), for servers that ask. */
    const char *cert_file;
    const char *key_file;
} pc_tls_client_config_t;

/* Fill a config with the defaults above. Any thread. */
PC_API void pc_tls_server_config_init(pc_tls_server_config_t *cfg);
PC_API void pc_tls_client_config_init(pc_tls_client_config_t *cfg);

/* Build a server context: loads every pair (the key must match its
 * certificate) and the client CA file. The files are read now; cfg is not
 * kept. Any thread. Returns 0 and *out, or PC_EINVAL (no pair, bad field),
 * PC_ENOENT (a file missing), PC_EACCES (a file not readable), PC_EIO (a
 * file that could not be opened otherwise), PC_ETLS (OpenSSL refused a file
 * or key), PC_ENOMEM, PC_ENOSYS (built without TLS). */
PC_API int pc_tls_ctx_new_server(const pc_tls_server_config_t *cfg, pc_tls_ctx_t **out);
/* Build a client context (for pc_connect_tls). Any thread. Same errors. */
PC_API int pc_tls_ctx_new_client(const pc_tls_client_config_t *cfg, pc_tls_ctx_t **out);
/* Drop the caller's reference (NULL is ignored). Listeners and
 * connections using the context keep it alive. Any thread. */
PC_API void pc_tls_ctx_free(pc_tls_ctx_t *ctx);

/* Listen on endpoint (as pc_server_listen) and speak TLS on every
 * connection accepted there, with ctx (a server context; the listener takes
 * a reference). The thread that owns the server, before pc_server_start, as
 * pc_server_listen. Returns the listener index or the errors of
 * pc_server_listen, PC_EINVAL (ctx NULL or a client context), PC_ENOSYS. */
PC_API int pc_server_listen_tls(pc_server_t *s, const char *endpoint, pc_tls_ctx_t *ctx);

/* pc_connect over TLS with a client context: host is the name the peer's
 * certificate must match and, when a DNS name, is sent as SNI (NULL: the
 * endpoint's address is checked, no SNI). on_open runs once the handshake
 * is complete (the certificate verified); a failed handshake runs on_close
 * with PC_CLOSE_TLS and PC_ETLS (refused, or the peer closed during it;
 * PC_ECONNRESET: the peer reset it), or PC_CLOSE_ERROR and the connect error.
 * Bytes sent (pc_server_send_to) before the handshake completes wait for it,
 * counted as queued (send_queue_limit, pc_server_send_queued), and go out
 * as it completes, before on_open runs.
 * Any thread. Returns as pc_connect, and PC_EINVAL (ctx not a client
 * context; host empty, longer than 255 bytes, or with spaces or control
 * characters), PC_ENOSYS. */
PC_API int pc_connect_tls(pc_server_t *s, const char *endpoint, const char *source,
                          pc_tls_ctx_t *ctx, const char *host, const pc_callbacks_t *cb, void *user,
                          pc_conn_id_t *id);

/* What a connection's handshake settled. Strings are NUL-terminated copies
 * ("" when absent). */
typedef struct pc_tls_info_s {
    int version;            /* PC_TLS_V1_2, PC_TLS_V1_3 */
    int resumed;            /* 1 if the session was resumed (no full handshake) */
    int peer_verified;      /* 1 if the peer sent a certificate that verified */
    char version_name[16];  /* "TLSv1.3" */
    char cipher[64];        /* "TLS_AES_128_GCM_SHA256" */
    char alpn[32];          /* protocol agreed, e.g. "http/1.1" */
    char sni[256];          /* name the client asked for (server side) or sent */
    char peer_subject[256]; /* the peer certificate's subject, one line */
} pc_tls_info_t;

/* Fill *out for a TLS connection whose handshake has completed. From the
 * connection's callbacks (on_open on; the session belongs to its strand).
 * Returns 0, PC_ENOTSUP (not a TLS connection, or its handshake is not
 * complete), PC_EINVAL (NULL argument), PC_ENOSYS. */
PC_API int pc_conn_tls_info(const pc_conn_t *c, pc_tls_info_t *out);

#ifdef __cplusplus
}
#endif

#endif /* PORTCULLIS_TLS_H */
