/* SPDX-License-Identifier: MIT */
/* The TLS phase of a connection and its TLS I/O, between the engine's
 * completion path (conn.c) and the session (src/tls). A receive completion's
 * bytes go through tls_sess_feed, which calls back here: ciphertext out goes
 * to the send queue (conn_queue_raw), the end of the handshake runs on_open,
 * plaintext goes to on_data. Everything runs in the connection's strand. */
#include "server.h"

#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/log.h"
#include "tls/tls_sess.h"

static int io_out(void *arg, const void *data, size_t len)
{
    return conn_queue_raw(arg, data, len);
}

/* After a callback: go on decrypting, stop (closed), or keep the rest of
 * the input while reading is paused (pc_conn_pause_read, or the send queue
 * above high water), as a plain connection stops after this receive. */
static int io_answer(const pc_conn_t *c)
{
    if (c->state != CS_OPEN) return TLS_IO_STOP;
    return c->paused_user || c->paused_hw ? TLS_IO_PAUSE : TLS_IO_GO;
}

size_t conn_tls_pend(const pc_conn_t *c)
{
    return c->tls_phase >= TLSP_HANDSHAKE && c->ext && c->ext->tls ? tls_sess_pend_len(c->ext->tls)
                                                                   : 0;
}

/* send_held counts the session's buffer for kept plaintext at its
 * capacity, as it counts send-queue chunks, so that max_buffered_bytes
 * bounds it: bring the count to what the session holds now. */
static void pend_held_sync(pc_conn_t *c)
{
    conn_ext_t *x = c->ext;
    if (!x) return;
    size_t cap = x->tls ? tls_sess_pend_cap(x->tls) : 0;
    if (cap > x->tls_pend_held) conn_held_add(conn_srv(c), cap - x->tls_pend_held);
    if (cap < x->tls_pend_held) counter_sub(&conn_srv(c)->send_held, x->tls_pend_held - cap);
    x->tls_pend_held = cap;
}

static int io_open(void *arg)
{
    pc_conn_t *c = arg;
    /* what the session kept went out just now, counted as ciphertext in
     * the send queue: no longer in the inbox's count */
    size_t flushed = tls_sess_pend_flushed(c->ext->tls);
    if (flushed) {
        conn_inbox_count(c, 0, flushed);
        counter_sub(&conn_srv(c)->send_queued, flushed);
    }
    pend_held_sync(c); /* the session freed its buffer */
    c->tls_phase = TLSP_OPEN;
    counter_add(&conn_worker(c)->tls_handshakes_done, 1);
    if (tls_sess_resumed(c->ext->tls)) counter_add(&conn_worker(c)->tls_resumed, 1);
    /* the handshake timeout has done its work; the header timeout goes on
     * to the first request */
    if (c->outbound || !conn_srv(c)->cfg.header_timeout_ms) c->deadline_ms = 0;
    conn_opened(c);
    if (c->state == CS_OPEN && c->ext->close_when_open) { /* asked during the handshake */
        c->ext->close_when_open = 0;
        c->reason = c->ext->close_when_open_reason;
        pc_conn_close(c);
    }
    return io_answer(c);
}

static int io_data(void *arg, const void *data, size_t len)
{
    pc_conn_t *c = arg;
    conn_cb(c)->on_data(c, data, len);
    return io_answer(c);
}

static const tls_io_t conn_io = {io_out, io_open, io_data};

int conn_tls_begin(pc_conn_t *c)
{
    if (c->tls_phase == TLSP_WANTED) { /* accepted: a session of the listener's context */
        conn_ext_t *x = conn_ext(c);
        tls_sess_t *s = x ? tls_sess_new(conn_listener(c)->tls, NULL) : NULL;
        if (!s) return PC_ENOMEM; /* still TLSP_WANTED: closed unseen, nothing to free */
        x->tls = s;
        c->tls_phase = TLSP_HANDSHAKE;
        counter_add(&conn_worker(c)->tls_handshakes, 1);
        return 0;
    }
    counter_add(&conn_worker(c)->tls_handshakes, 1);   /* outbound: made by pc_connect_tls */
    int rc = tls_sess_start(c->ext->tls, &conn_io, c); /* conn_connect made ext */
    if (rc < 0) counter_add(&conn_worker(c)->tls_handshake_errors, 1);
    return rc;
}

int conn_tls_recv(pc_conn_t *c, const char *data, size_t n)
{
    int in_handshake = c->tls_phase == TLSP_HANDSHAKE;
    int rc = tls_sess_feed(c->ext->tls, data, n, &conn_io, c);
    if (rc == TLS_FEED_STOP) return 0;
    if (rc < 0 && in_handshake && c->tls_phase == TLSP_HANDSHAKE)
        counter_add(&conn_worker(c)->tls_handshake_errors, 1);
    return rc;
}

int conn_tls_send(pc_conn_t *c, const pc_buf_t *bufs, unsigned n)
{
    if (c->tls_phase == TLSP_WANTED) return PC_ENOTCONN;
    size_t before = conn_tls_pend(c);
    int rc = tls_sess_write(c->ext->tls, bufs, n, &conn_io, c);
    size_t grown = conn_tls_pend(c) - before; /* kept for the handshake: counted */
    if (grown) {
        conn_inbox_count(c, grown, 0);
        counter_add(&conn_srv(c)->send_queued, grown);
        pend_held_sync(c);
    }
    return rc == PC_ETLS ? PC_ENOTCONN : rc;
}

size_t conn_tls_send_mem(const pc_conn_t *c, const pc_buf_t *bufs, unsigned n, size_t room)
{
    const tls_sess_t *t = c->ext->tls;
    return tls_write_mem_max(bufs, n, tls_sess_fragment(t), tls_sess_multiblock(t), room,
                             sizeof(chunk_t), PC_CHUNK_MIN);
}

size_t conn_tls_pend_grow(const pc_conn_t *c, size_t add)
{
    return c->tls_phase == TLSP_HANDSHAKE && c->ext && c->ext->tls
               ? tls_sess_pend_grow(c->ext->tls, add)
               : 0;
}

/* The chunks of q move into the session and are freed: their memory leaves
 * send_held, and what the session's buffer grows by to keep their bytes
 * for the handshake enters it, in one step and before the buffer grows
 * (the growth is this thread's to allocate: conn_buffer_taken), so that
 * the count never stands above max_buffered_bytes for a hand-over and a
 * sender on another thread sees the growth meanwhile. The buffer grows once
 * for all the bytes: doubling (many small hand-overs then copy O(total))
 * if the held memory stays within the cap that way, else by what the bytes
 * need, which the chunks' memory covers, so that the hand-over never takes
 * the held memory up. */
static void handover_count(pc_conn_t *c, const queue_t *q, size_t total, held_take_t *outer)
{
    pc_server_t *s = conn_srv(c);
    size_t cap = s->cfg.max_buffered_bytes, grow = conn_tls_pend_grow(c, total);
    size_t freed = chunks_mem(q);
    int exact = 0;
    if (grow <= freed) {
        counter_sub(&s->send_held, freed - grow);
    } else if (!cap) {
        counter_add(&s->send_held, grow - freed);
    } else if (!counter_add_within(&s->send_held, grow - freed, cap)) {
        exact = 1; /* len + total - buffer <= total < freed */
        grow = conn_tls_pend(c) + total - tls_sess_pend_cap(c->ext->tls);
        counter_sub(&s->send_held, freed - grow);
    }
    conn_buffer_taken(s, grow, outer);
    if (grow) (void)tls_sess_pend_reserve(c->ext->tls, total, exact);
}

void conn_tls_send_chunks(pc_conn_t *c, queue_t *q, size_t total, int in_inbox)
{
    size_t before = conn_tls_pend(c);
    int failed = c->tls_phase == TLSP_WANTED;
    held_take_t outer;
    handover_count(c, q, total, &outer); /* on failure, the writes below try again */
    queue_t *e;
    queue_foreach(e, q)
    {
        if (failed) break;
        chunk_t *ch = pc_container_of(e, chunk_t, link);
        pc_buf_t b;
        b.base = ch->data + ch->off;
        b.len = ch->len - ch->off;
        failed = tls_sess_write(c->ext->tls, &b, 1, &conn_io, c) < 0;
    }
    /* the plaintext was counted when queued; the ciphertext is counted now,
     * or, kept for the handshake, the plaintext stays counted as the pend */
    size_t grown = conn_tls_pend(c) - before;
    conn_inbox_count(c, grown, in_inbox ? total : 0); /* the inbox counts the pend */
    /* one step: a stats reader never sees the kept bytes missing */
    if (grown >= total)
        counter_add(&conn_srv(c)->send_queued, grown - total);
    else
        counter_sub(&conn_srv(c)->send_queued, total - grown);
    pend_held_sync(c);
    conn_buffer_settle(&outer);
    chunks_free(q); /* no longer in send_held: handover_count */
    if (failed) PC_LOGD("tls: bytes queued from another thread dropped (session closed)");
}

void conn_tls_close_notify(pc_conn_t *c)
{
    tls_sess_close_notify(c->ext->tls, &conn_io, c);
}

void conn_tls_free(pc_conn_t *c)
{
    if (c->tls_phase >= TLSP_HANDSHAKE && c->ext) {
        tls_sess_free(c->ext->tls);
        c->ext->tls = NULL;
        pend_held_sync(c); /* 0 now */
    }
    c->tls_phase = TLSP_NONE;
}

/* ---- public API ------------------------------------------------------------------ */

int pc_server_listen_tls(pc_server_t *s, const char *endpoint, pc_tls_ctx_t *ctx)
{
    if (!pc_tls_available()) return PC_ENOSYS;
    if (!s || !ctx || !tls_ctx_is_server(ctx)) return PC_EINVAL;
    int idx = pc_server_listen(s, endpoint);
    if (idx < 0) return idx;
    tls_ctx_ref(ctx);
    s->listeners[idx].tls = ctx;
    return idx;
}

/* "1.2.3.4:80" -> "1.2.3.4", "[::1]:80" -> "::1" */
static int endpoint_host(const char *endpoint, char *out, size_t size)
{
    const char *p = endpoint, *e;
    if (*p == '[') {
        p++;
        e = strchr(p, ']');
    } else {
        e = strrchr(p, ':');
    }
    if (!e || (size_t)(e - p) >= size) return PC_EINVAL;
    memcpy(out, p, (size_t)(e - p));
    out[e - p] = 0;
    return 0;
}

/* A name or address the peer's certificate can be checked against: not
 * empty (an empty name would check nothing), at most 255 bytes (SNI's
 * limit), no spaces or control characters. */
static int tls_host_valid(const char *h)
{
    size_t n = strlen(h);
    if (n == 0 || n > 255) return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)h[i];
        if (ch <= 0x20 || ch == 0x7f) return 0;
    }
    return 1;
}

int pc_connect_tls(pc_server_t *s, const char *endpoint, const char *source, pc_tls_ctx_t *ctx,
                   const char *host, const pc_callbacks_t *cb, void *user, pc_conn_id_t *id)
{
    if (!pc_tls_available()) return PC_ENOSYS;
    if (!ctx) return PC_EINVAL;
    pc_connect_opts_t o;
    pc_connect_opts_init(&o);
    o.source = source;
    o.tls = ctx;
    o.tls_host = host;
    return pc_connect_ex(s, endpoint, &o, cb, user, id);
}

int pc_connect_ex(pc_server_t *s, const char *endpoint, const pc_connect_opts_t *o,
                  const pc_callbacks_t *cb, void *user, pc_conn_id_t *id)
{
    pc_connect_opts_t none;
    if (!o) {
        pc_connect_opts_init(&none);
        o = &none;
    }
    if (!o->tls) return conn_connect(s, endpoint, o->source, cb, user, id, NULL, o);
    if (!pc_tls_available()) return PC_ENOSYS;
    if (!s || !endpoint || tls_ctx_is_server(o->tls)) return PC_EINVAL;
    const char *host = o->tls_host;
    char addr[64];
    if (!host) {
        if (endpoint_host(endpoint, addr, sizeof addr) < 0) return PC_EINVAL;
        host = addr;
    }
    if (!tls_host_valid(host)) return PC_EINVAL;
    tls_sess_t *ts = tls_sess_new(o->tls, host);
    if (!ts) return PC_ENOMEM;
    int rc = conn_connect(s, endpoint, o->source, cb, user, id, ts, o);
    if (rc < 0) tls_sess_free(ts);
    return rc;
}

int pc_conn_tls_info(const pc_conn_t *c, pc_tls_info_t *out)
{
    if (!pc_tls_available()) return PC_ENOSYS;
    if (!c || !out) return PC_EINVAL;
    if (c->tls_phase != TLSP_OPEN) return PC_ENOTSUP;
    return tls_sess_info(c->ext->tls, out);
}
