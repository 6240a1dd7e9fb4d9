/* SPDX-License-Identifier: MIT */
/* The TLS layer as the engine sees it: a session per connection, fed with
 * what a receive delivered and with the application's plaintext, talking
 * back through tls_io_t. No OpenSSL type crosses this header, so src/iocp
 * never includes OpenSSL. Every call on a session runs in its connection's
 * strand (one thread at a time); contexts are shared and immutable.
 *
 * tls_ctx.c holds the contexts (pc_tls_ctx_t: certificates, SNI, ALPN,
 * tickets and their rotation, verification); tls_sess.c the sessions (the
 * handshake, records, close_notify, info); tls_none.c the build without
 * OpenSSL. */
#ifndef PC_TLS_SESS_H
#define PC_TLS_SESS_H

#include "portcullis.h"

#include <stddef.h>

typedef struct tls_sess_s tls_sess_t;

/* How a session hands results back to its connection (arg). */
typedef struct tls_io_s {
    /* Ciphertext to send, in order. 0, or PC_ENOMEM (the session then
     * fails). */
    int (*out)(void *arg, const void *data, size_t len);
    /* The handshake completed. Return TLS_IO_GO, TLS_IO_STOP (the
     * connection closed meanwhile: stop feeding) or TLS_IO_PAUSE (reading
     * is paused: keep the rest of the input, tls_sess_has_rest). */
    int (*open)(void *arg);
    /* Plaintext arrived. Same answers as open. */
    int (*data)(void *arg, const void *data, size_t len);
} tls_io_t;

enum { TLS_IO_GO = 0, TLS_IO_STOP = 1, TLS_IO_PAUSE = 2 };

/* tls_sess_feed results besides 0 (all taken, need more) and < 0 errors */
#define TLS_FEED_EOF  1 /* the peer sent close_notify */
#define TLS_FEED_STOP 2 /* a callback asked to stop */

/* Take / drop a reference on a context (pc_tls_ctx_free drops one). */
void tls_ctx_ref(pc_tls_ctx_t *ctx);
/* 1 for a server context, 0 for a client one. */
int tls_ctx_is_server(const pc_tls_ctx_t *ctx);

/* A session of ctx: server side, or client side checking host (may be
 * NULL: no name check, no SNI). Holds a context reference. NULL when out of
 * memory. */
tls_sess_t *tls_sess_new(pc_tls_ctx_t *ctx, const char *host);
void tls_sess_free(tls_sess_t *s);
/* 1 once the handshake has completed. */
int tls_sess_established(const tls_sess_t *s);
/* 1 if the completed handshake resumed a session. */
int tls_sess_resumed(const tls_sess_t *s);
/* Client side: write the ClientHello. 0 or PC_ETLS / PC_ENOMEM. */
int tls_sess_start(tls_sess_t *s, const tls_io_t *io, void *arg);
/* Bytes received: handshake, then plaintext to io->data. Returns 0 (all
 * taken, or kept: a callback paused), TLS_FEED_EOF, TLS_FEED_STOP, or
 * PC_ETLS (handshake or record failure; an alert may have gone to io->out) /
 * PC_ENOMEM. When io->open or io->data answers TLS_IO_PAUSE, the input not
 * yet decrypted is kept in the session (at most what this feed brought and
 * what an earlier pause kept) and goes first in the next feed, which may
 * bring no new bytes (n == 0). Without memory to keep it: PC_ENOMEM (the
 * pause holds; the caller closes the connection). */
int tls_sess_feed(tls_sess_t *s, const void *data, size_t n, const tls_io_t *io, void *arg);
/* 1 while a pause keeps input in the session (tls_sess_feed with n == 0
 * delivers it). */
int tls_sess_has_rest(const tls_sess_t *s);
/* Plaintext written before the handshake completed and kept for it. */
size_t tls_sess_pend_len(const tls_sess_t *s);
/* What of it was written as the handshake completed (before io->open,
 * which may read it). */
size_t tls_sess_pend_flushed(const tls_sess_t *s);
/* Memory the session holds for that plaintext (its buffer's capacity; 0
 * before the first kept byte and from the handshake's completion on). */
size_t tls_sess_pend_cap(const tls_sess_t *s);
/* How much that memory would grow if add more bytes were written now: 0
 * once the handshake has completed (they are encrypted, not kept) or while
 * the buffer has room. */
size_t tls_sess_pend_grow(const tls_sess_t *s, size_t add);
/* Make room for add more kept bytes at once: growing the buffer by
 * tls_sess_pend_grow(s, add), or with exact to just what they need rather
 * than doubling (for a caller near a memory cap). No-op once the handshake
 * has completed or while there is room. 0 or PC_ENOMEM. */
int tls_sess_pend_reserve(tls_sess_t *s, size_t add, int exact);
/* Plaintext that tls_sess_write joins into one write when it comes in
 * several pieces (and one SSL_read's worth). */
#define TLS_PLAIN_CHUNK 16384
/* 1 if tls_sess_write makes one write of n pieces of total bytes (small
 * pieces, a head and a body, make one record, not several), 0 if it writes
 * them one by one. */
static inline int tls_write_joins(unsigned n, size_t total)
{
    return n > 1 && total <= TLS_PLAIN_CHUNK;
}
/* The most a record adds to the plaintext it carries (its header, an
 * explicit IV, a MAC or tag, block padding; the sessions pad no further,
 * see tls_ctx.c): SSL3_RT_HEADER_LENGTH + SSL3_RT_MAX_ENCRYPTED_OVERHEAD,
 * the largest expansion OpenSSL allows a record it reads. Measured: 22
 * bytes under TLS 1.3, 29 with TLS 1.2 AES-GCM, 53-81 with CBC ciphers. */
#define TLS_RECORD_OVERHEAD_MAX (5 + 256 + 64)
/* A record an application write may carry ahead of its own: the KeyUpdate
 * a peer asked for is answered by the next write (5 bytes of plaintext). */
#define TLS_EXTRA_RECORD_MAX (5 + TLS_RECORD_OVERHEAD_MAX)

/* The largest plaintext one record of s carries: 16384, or the fragment
 * negotiated with the max_fragment_length extension. Established only. */
size_t tls_sess_fragment(const tls_sess_t *s);
/* 1 if OpenSSL may write s's records in multi-block groups: TLS 1.2 with a
 * cipher that is not AEAD (it does so with CBC-HMAC ciphers on CPUs with
 * AES instructions, when encrypt-then-MAC is off). Established only. */
int tls_sess_multiblock(const tls_sess_t *s);

/* Bytes on the wire, at most, of the records of one write of len bytes of
 * plaintext in records of at most frag bytes; *records gets their number
 * and *last the plaintext in the last one. */
static inline size_t tls_records_max(size_t len, size_t frag, size_t *records, size_t *last)
{
    size_t full = len / frag, rest = len % frag;
    *records = full + (rest != 0);
    *last = rest ? rest : frag;
    return len + *records * (size_t)TLS_RECORD_OVERHEAD_MAX;
}

/* New chunks' memory, at most, for one write cut (tls_records_max) into
 * records of plaintext, the last of last bytes, each of at most frag, with
 * one extra record ahead; with multi also in OpenSSL's multi-block writes
 * of 4 or 8 records of a shorter unit followed by records of frag bytes
 * (records and last then counted in the unit; see tls_write_mem_max). */
static inline size_t tls_write_chunks_max(size_t records, size_t last, size_t frag, int multi,
                                          size_t hdr, size_t min)
{
    size_t rec = frag + TLS_RECORD_OVERHEAD_MAX;
    if (rec <= min) { /* records share chunks of min bytes (unit == frag) */
        size_t per = min / rec, m = (records + 1 + per - 1) / per * (hdr + min);
        if (multi) { /* groups of 4 (or 8) records in one write each, then
                      * up to 4 records and the extra one sharing */
            size_t four = 4 * rec;
            size_t g =
                records / 4 * (hdr + (four > min ? four : min)) + (5 + per - 1) / per * (hdr + min);
            m = g > m ? g : m;
        }
        return m;
    }
    size_t tail = last + TLS_RECORD_OVERHEAD_MAX;
    /* one record and the extra one fit a chunk of min bytes together */
    if (records == 1 && tail + TLS_EXTRA_RECORD_MAX <= min) return hdr + min;
    /* as many records as the shorter unit makes (full ones may follow a
     * multi-block group), each charged as a full one; a group of 4 or 8
     * takes no more than its records would alone */
    return (records - 1) * (hdr + rec) + hdr + (tail > min ? tail : min) + hdr + min;
}

/* The most memory the records of tls_sess_write(s, bufs, n) take (once
 * established; frag: tls_sess_fragment) in a send queue whose last chunk
 * has room bytes free, where a record that fits the last chunk goes there
 * and one that does not starts a chunk of hdr + max(min, its bytes): 0 when
 * all of them at their largest fit the room, else an upper bound on the
 * new chunks. Each write may carry one extra record ahead of its own (a
 * KeyUpdate). Records are cut at frag bytes of plaintext; with multiblock
 * (tls_sess_multiblock), a write of 4 fragments or more may go out in
 * OpenSSL's multi-block writes, 4 or 8 records in one, cut 512 bytes short
 * of a fragment that is a multiple of 4 KiB (the rest then in full
 * records), and is counted so that either way is covered. Records that
 * surely fit min bytes several at once share chunks; larger ones take a
 * chunk each. SIZE_MAX for lengths near the address space. Pure: the
 * engine checks a send against its cap with it before the records are
 * made (they cannot be taken back). Any thread. */
static inline size_t tls_write_mem_max(const pc_buf_t *bufs, unsigned n, size_t frag,
                                       int multiblock, size_t room, size_t hdr, size_t min)
{
    const size_t huge = (size_t)-1 / 16;
    size_t total = 0, wire = 0, mem = 0, records, last;
    for (unsigned i = 0; i < n; i++) {
        if (bufs[i].len > huge - total) return (size_t)-1;
        total += bufs[i].len;
    }
    int joined = tls_write_joins(n, total);
    for (unsigned i = 0; i < (joined ? 1u : n); i++) {
        size_t len = joined ? total : bufs[i].len;
        if (!len) continue;
        int multi = multiblock && len >= 4 * frag;
        size_t unit = multi && !(frag & 0xfff) ? frag - 512 : frag;
        wire += tls_records_max(len, unit, &records, &last) + TLS_EXTRA_RECORD_MAX;
        mem += tls_write_chunks_max(records, last, frag, multi, hdr, min);
    }
    return wire <= room ? 0 : mem;
}

/* Encrypt the application's bytes to io->out; before the handshake has
 * completed they are kept and written as it completes, before io->open. 0, PC_ENOMEM,
 * PC_ETLS (the session failed or is shut down). */
int tls_sess_write(tls_sess_t *s, const pc_buf_t *bufs, unsigned n, const tls_io_t *io, void *arg);
/* Graceful close: write close_notify (only once, only after a completed
 * handshake). 0 or < 0. */
int tls_sess_close_notify(tls_sess_t *s, const tls_io_t *io, void *arg);
/* The handshake's outcome (pc_conn_tls_info). 0 or PC_ENOTCONN (not
 * established). */
int tls_sess_info(const tls_sess_t *s, pc_tls_info_t *out);

#endif
