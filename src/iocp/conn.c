/* SPDX-License-Identifier: MIT */
/* Connections: the per-connection strand, reading, the send queue, graceful
 * and abortive close, timers. Written once against port.h for every backend.
 *
 * Serialisation: all of a connection's work runs inside its strand
 * (conn_strand). On Linux every completion of a socket arrives on its
 * home worker, so the strand never contends; on Windows completions of one
 * connection may be dequeued by several workers at once and the strand
 * parks the later ones (c->parked, c->timer_due, c->kick_due) until the first finishes.
 * Other threads never touch strand state: they queue into the inbox
 * (inbox_tx, inbox_close) under conn_lock(c) and kick it (conn_kick). */
#include "server.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "tls/tls_sess.h"

static PC_THREAD_LOCAL pc_conn_t *tls_conn;  /* connection whose strand runs here */
static PC_THREAD_LOCAL worker_t *tls_worker; /* the worker running it */

/* held_len's top bit: the held bytes are the library's own copy (bytes
 * after a PROXY header that on_open paused), counted when they were read
 * and freed after delivery, not a backend buffer */
#define HELD_COPY 0x80000000u

#define READ_BUDGET     16 /* receives per readable completion before yielding */
#define CONN_FREE_BATCH 32 /* released records handed to the table at once (conn_release) */

static void conn_after(pc_conn_t *c);
static void conn_close_socket(pc_conn_t *c, int abortive);
static void conn_deliver(worker_t *w, pc_conn_t *c, const char *data, size_t n);
static int proxy_timer(pc_conn_t *c, uint64_t now, uint64_t clock);
static uint64_t user_timer_deadline(const pc_conn_t *c, uint64_t at);
static int user_timer_fire(pc_conn_t *c, uint64_t now);
static chunk_t *sq_chunk_new(pc_server_t *s, size_t need);
static void sq_chunk_free(pc_server_t *s, chunk_t *ch);
static size_t sq_chunk_size(size_t need);
static int over_limit(pc_conn_t *c, size_t total);
static void sendq_take(pc_conn_t *c, queue_t *from);
/* A pc_server_post_to record (in an inbox, or kept until on_open). The
 * bytes sent by id after it (until the next post) wait in its follow
 * queue, so that they leave after what fn sends: the inbox is the bytes
 * before the oldest post (its sendq), then each post with its follow. */
typedef struct inbox_post_s {
    struct inbox_post_s *next;
    void (*fn)(pc_conn_t *c, void *arg);
    void *arg;
    queue_t follow; /* chunk_t */
} xpost_t;

/* Where the bytes a kick hands over are counted: in sendq_bytes (counted),
 * or still in the inbox, kept by a TLS handshake (in_inbox); neither: in
 * send_queued only, until they are queued. */
typedef struct kick_count_s {
    int counted;
    int in_inbox;
} kick_count_t;

/* The posted functions a kick (or open_kept) runs now, from the one
 * running on (oldest first): a graceful close from one of them takes the
 * bytes sent after it and after those still to run (close_begin). Set
 * while they run, on the strand's thread. */
typedef struct posts_rest_s {
    pc_conn_t *c;
    xpost_t *cur;
    kick_count_t k;
} posts_rest_t;
static PC_THREAD_LOCAL posts_rest_t *tls_posts_rest;

static void posts_run(pc_conn_t *c, xpost_t *p, const kick_count_t *k);
static void open_kept(pc_conn_t *c);
static void conn_notify_sent(pc_conn_t *c);
static int hold_data(pc_conn_t *c, void *data, uint32_t len);
static int hold_copy(pc_conn_t *c, const char *data, size_t n);
static int hold_append(pc_conn_t *c, const void *data, uint32_t len);
static void conn_deliver_held(pc_conn_t *c);
static void conn_ext_free(pc_conn_t *c);
static void tls_deliver(pc_conn_t *c, const char *data, size_t n);
static void tls_phase_start(pc_conn_t *c);
static void handle_eof(pc_conn_t *c);
static int sendq_push(pc_conn_t *c, const pc_buf_t *bufs, unsigned n, size_t total);
static int tx_empty(const pc_conn_t *c);
static void sendq_free(pc_server_t *s, queue_t *q);

static port_t *conn_port(pc_conn_t *c)
{
    return conn_srv(c)->port;
}

static void set_state(pc_conn_t *c, uint8_t st)
{
    pc__mutex_lock(conn_lock(c));
    c->state = st;
    pc__mutex_unlock(conn_lock(c));
}

/* Open for a PROXY header or a TLS handshake before on_open: readable and
 * writable, and an accepted connection is not yet visible by id (its id
 * has not been shown to the application; conn_opened shows it). */
static void set_open_hidden(pc_conn_t *c)
{
    pc__mutex_lock(conn_lock(c));
    c->state = CS_OPEN;
    c->hidden = !c->outbound;
    pc__mutex_unlock(conn_lock(c));
}

/* ---- timers ---------------------------------------------------------------- */

/* The timer goes on the wheel of the worker arming it (every arm runs in
 * the strand, so on a worker): that worker computes its next wait after the
 * callbacks, so the new deadline is waited for. Armed on the home worker's
 * wheel instead, it could be missed on a shared port, where the home worker
 * may block in a wait that no packet of this connection ends. */
static void timer_arm(pc_conn_t *c, uint64_t at)
{
    worker_t *w = tls_worker;
    assert(w); /* only strands arm timers (conn_strand sets it) */
    if (c->timer_wk != w->idx) {
        worker_t *old = &conn_srv(c)->workers[c->timer_wk];
        pc__mutex_lock(&old->wheel_lock);
        wheel_del(&old->wheel, &c->timer);
        pc__mutex_unlock(&old->wheel_lock);
        c->timer_wk = (uint16_t)w->idx;
    }
    pc__mutex_lock(&w->wheel_lock);
    wheel_add(&w->wheel, &c->timer, at);
    pc__mutex_unlock(&w->wheel_lock);
    c->timer_on = 1;
}

static void timer_disarm(pc_conn_t *c)
{
    worker_t *w = &conn_srv(c)->workers[c->timer_wk];
    pc__mutex_lock(&w->wheel_lock);
    wheel_del(&w->wheel, &c->timer);
    pc__mutex_unlock(&w->wheel_lock);
    c->timer_on = 0;
}

/* How long a new connection has for what on_open waits for and its first
 * request: header_timeout_ms on an accepted connection; a TLS handshake
 * without one (outbound: always) gets handshake_timeout_ms, which io_open
 * disarms. 0: no deadline. */
static unsigned first_deadline_ms(const pc_conn_t *c)
{
    const pc_server_config_t *cfg = &conn_srv(c)->cfg;
    unsigned ht = c->outbound ? 0 : cfg->header_timeout_ms;
    if (!ht && c->tls_phase) ht = cfg->handshake_timeout_ms;
    return ht;
}

/* The nearest deadline that applies in the current state, 0 if none. */
static uint64_t conn_next_deadline(const pc_conn_t *c)
{
    const pc_server_config_t *cfg = &conn_srv(c)->cfg;
    if (c->state == CS_CLOSING) return c->deadline_ms;
    if (c->state == CS_OPENING) return c->connecting ? c->deadline_ms : 0; /* connect timeout */
    if (c->state != CS_OPEN) return 0;
    uint64_t at = c->deadline_ms;                            /* header deadline, 0 = none */
    if (cfg->idle_timeout_ms && c->px_state != PX_PENDING) { /* the PROXY deadline bounds that */
        uint64_t t = c->last_rx_ms + cfg->idle_timeout_ms;
        if (!at || t < at) at = t;
    }
    if (cfg->write_timeout_ms && atomic_load(&c->sendq_bytes) && c->tx) {
        uint64_t t = c->tx->tx_since_ms + cfg->write_timeout_ms;
        if (!at || t < at) at = t;
    }
    return user_timer_deadline(c, at);
}

/* Arm the timer for the nearest deadline that applies in the current state.
 * The idle deadline moves with every receive without re-arming: the expiry
 * recomputes and re-arms, so the wheel is touched only when a deadline comes
 * closer than the one armed. */
static void timer_update(pc_conn_t *c)
{
    uint64_t at = conn_next_deadline(c);
    if (!at)
        timer_disarm(c);
    else if (!c->timer_on || c->timer.expire_ms != at)
        timer_arm(c, at);
}

/* A deadline may have come closer (a send queue started, a header timeout
 * was armed): re-arm only if it is before the timer already armed. */
static void timer_sooner(pc_conn_t *c, uint64_t at)
{
    if (!c->timer_on || at < c->timer.expire_ms) timer_arm(c, at);
}

/* A peer deadline (PROXY header, request header, idle) has passed, but the
 * backend holds bytes of the peer the strand has not been given yet
 * (port_input_held: received before this pass looked): judge it a tick
 * later, once they are delivered, up to JUDGE_LAG_MS past the deadline. Not
 * while reading is paused (nothing would take them). Returns 1 if put off. */
static int input_defers(pc_conn_t *c, uint64_t deadline, uint64_t clock)
{
    if (!c->reading || c->paused_user || c->paused_hw || clock >= deadline + JUDGE_LAG_MS) return 0;
    if (!port_input_held(conn_port(c), &c->ps, &c->recv_op)) return 0;
    timer_arm(c, clock + PC_WHEEL_TICK_MS);
    return 1;
}

/* The timer fired. The application's own timer runs by the clock; the
 * deadlines that judge the peer run by what the worker has seen (seen_ms):
 * one that passed while the worker was busy with others, before it took
 * this connection's bytes from the port, waits for the next pass, which
 * takes them first (worker_main). */
static void handle_timer(worker_t *w, pc_conn_t *c)
{
    const pc_server_config_t *cfg = &conn_srv(c)->cfg;
    uint64_t clock = pc__now_ms();
    uint64_t now = w->seen_ms < clock ? w->seen_ms : clock;
    c->timer_on = 0; /* it fired (if re-armed since, arming again is exact) */
    if (c->state == CS_CLOSING) {
        if (now >= c->deadline_ms) {
            /* The peer neither read our data nor closed in time. */
            conn_close_socket(c, !tx_empty(c));
            return;
        }
    } else if (c->state == CS_OPENING && c->connecting) {
        if (c->deadline_ms && clock >= c->deadline_ms) { /* connect_timeout_ms */
            c->reason = PC_CLOSE_ERROR;
            c->err = PC_ETIMEDOUT;
            conn_close_socket(c, 1);
            return;
        }
    } else if (c->state == CS_OPEN) {
        if (proxy_timer(c, now, clock)) return;
        if (user_timer_fire(c, clock)) return; /* its function closed the connection */
        if (cfg->write_timeout_ms && atomic_load(&c->sendq_bytes) && c->tx &&
            now >= c->tx->tx_since_ms + cfg->write_timeout_ms) {
            /* the peer stopped reading: nothing queued can be delivered */
            c->reason = PC_CLOSE_WRITE_TIMEOUT;
            conn_close_socket(c, 1);
            return;
        }
        if (c->deadline_ms && now >= c->deadline_ms) {
            if (input_defers(c, c->deadline_ms, clock)) return;
            c->reason = PC_CLOSE_HEADER_TIMEOUT;
            pc_conn_close(c);
            return;
        }
        if (cfg->idle_timeout_ms && c->px_state != PX_PENDING &&
            now >= c->last_rx_ms + cfg->idle_timeout_ms) {
            if (input_defers(c, c->last_rx_ms + cfg->idle_timeout_ms, clock)) return;
            c->reason = PC_CLOSE_IDLE_TIMEOUT;
            pc_conn_close(c);
            return;
        }
    }
    timer_update(c);
}

/* The send queue went from empty to non-empty: the write timeout starts. */
static void sendq_started(pc_conn_t *c)
{
    unsigned wt = conn_srv(c)->cfg.write_timeout_ms;
    if (!wt) return;
    c->tx->tx_since_ms = pc__now_ms();
    if (c->state == CS_OPEN) timer_sooner(c, c->tx->tx_since_ms + wt);
}

/* What this thread took from max_buffered_bytes for the allocations it
 * is about to make, already counted in srv->send_held: one send's worth,
 * between its take and its settle. Thread-local, so the connection record
 * does not grow; keyed by server, and saved and restored around a nested
 * take, so nothing else that runs on the thread meanwhile uses it. */
static PC_THREAD_LOCAL held_take_t held_taken;

void conn_buffer_taken(pc_server_t *s, size_t n, held_take_t *outer)
{
    *outer = held_taken;
    held_taken.srv = s;
    held_taken.n = n;
}

/* A send that needs new memory (a chunk of grow bytes, 0 when it coalesces
 * into a tail chunk; or the growth of a TLS session's buffer) takes it from
 * max_buffered_bytes first, or is refused. */
int conn_buffer_take(pc_server_t *s, size_t grow, held_take_t *outer)
{
    size_t cap = s->cfg.max_buffered_bytes;
    if (cap && grow && !counter_add_within(&s->send_held, grow, cap)) {
        counter_add(&s->send_refused, 1);
        return 1;
    }
    conn_buffer_taken(s, cap ? grow : 0, outer); /* no cap: counted as allocated */
    return 0;
}

void conn_buffer_settle(const held_take_t *outer)
{
    if (held_taken.n) counter_sub(&held_taken.srv->send_held, held_taken.n);
    held_taken = *outer;
}

void conn_held_add(pc_server_t *s, size_t mem)
{
    size_t use = held_taken.srv != s ? 0 : mem < held_taken.n ? mem : held_taken.n;
    held_taken.n -= use;
    if (mem > use) counter_add(&s->send_held, mem - use);
}

/* ---- the send side (conn_tx_t) ------------------------------------------- */

static void tx_init(conn_tx_t *tx, pc_conn_t *c)
{
    memset(&tx->wr_op, 0, sizeof tx->wr_op);
    tx->wr_op.tag = TAG_CONN_SEND;
    tx->u.c = c;
    queue_init(&tx->sendq);
    tx->iovx = NULL;
    tx->tx_since_ms = 0;
    tx->posts = NULL;
}

/* Give an empty send side back: to w's cache (w: the worker whose thread
 * this is, or NULL), or to the allocator. */
static void tx_free(worker_t *w, conn_tx_t *tx)
{
    pc__free(tx->iovx);
    tx->iovx = NULL;
    if (w && w->tx_cached < TX_CACHE_MAX) {
        tx->u.next_free = w->tx_cache;
        w->tx_cache = tx;
        w->tx_cached++;
        return;
    }
    pc__free(tx);
}

/* An inbox's send side whose chunks were taken (strand): it becomes the
 * connection's if the connection has none (so taking accepted bytes never
 * needs memory: the sender allocated it), else goes to this worker's
 * cache. */
static void tx_adopt(pc_conn_t *c, conn_tx_t *itx)
{
    if (!c->tx && c->state != CS_CLOSED) {
        tx_init(itx, c);
        c->tx = itx;
    } else {
        tx_free(tls_worker, itx);
    }
}

/* The connection's send side, taken from the running worker's cache if it
 * has none (strand). NULL: out of memory. */
static conn_tx_t *tx_get(pc_conn_t *c)
{
    if (c->tx) return c->tx;
    worker_t *w = tls_worker;
    conn_tx_t *tx;
    if (w && w->tx_cache) {
        tx = w->tx_cache;
        w->tx_cache = tx->u.next_free;
        w->tx_cached--;
    } else if (!(tx = pc__malloc(sizeof *tx))) {
        return NULL;
    }
    tx_init(tx, c);
    c->tx = tx;
    return tx;
}

/* Nothing queued to send (the send side may be absent). */
static int tx_empty(const pc_conn_t *c)
{
    return !c->tx || queue_empty(&c->tx->sendq);
}

/* Everything was handed to the kernel and nothing is pending: the
 * connection is idle on the send side and gives it back (strand). */
static void tx_idle(pc_conn_t *c)
{
    conn_tx_t *tx = c->tx;
    if (!tx || c->sending || c->connecting || !queue_empty(&tx->sendq)) return;
    c->tx = NULL;
    tx_free(tls_worker, tx);
}

void conn_tx_cache_free(worker_t *w)
{
    while (w->tx_cache) {
        conn_tx_t *tx = w->tx_cache;
        w->tx_cache = tx->u.next_free;
        pc__free(tx);
    }
    w->tx_cached = 0;
}

void conn_tx_destroy(pc_conn_t *c)
{
    conn_tx_t *txs[2] = {c->tx, c->inbox_tx};
    for (int k = 0; k < 2; k++) {
        if (!txs[k]) continue;
        sendq_free(conn_srv(c), &txs[k]->sendq);
        tx_free(NULL, txs[k]);
    }
    c->tx = c->inbox_tx = NULL;
    conn_ext_free(c); /* as conn_release would have (the port is still open) */
}

/* ---- sending ------------------------------------------------------------- */

static void sendq_free(pc_server_t *s, queue_t *q)
{
    counter_sub(&s->send_held, chunks_mem(q));
    chunks_free(q);
}

/* Append the buffers' bytes to ch (which has room). An empty buffer may
 * have a NULL base, which memcpy must not see even for 0 bytes. */
static void copy_bufs(chunk_t *ch, const pc_buf_t *bufs, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        if (!bufs[i].len) continue;
        memcpy(ch->data + ch->len, bufs[i].base, bufs[i].len);
        ch->len += bufs[i].len;
    }
}

/* Copy bufs into the tail of q (coalescing into the last chunk when it has
 * room). Returns 0 or PC_ENOMEM (nothing appended). */
static int sendq_append(pc_server_t *s, queue_t *q, const pc_buf_t *bufs, unsigned n, size_t total)
{
    chunk_t *tail = queue_empty(q) ? NULL : pc_container_of(q->prev, chunk_t, link);
    if (!tail || tail->cap - tail->len < total) {
        tail = sq_chunk_new(s, total);
        if (!tail) return PC_ENOMEM;
        queue_insert_tail(q, &tail->link);
    }
    copy_bufs(tail, bufs, n);
    return 0;
}

static void conn_flush(pc_conn_t *c)
{
    conn_tx_t *tx = c->tx;
    if (!tx || c->sending || c->state == CS_CLOSED || queue_empty(&tx->sendq)) return;
    /* one chunk (the common case: a response) goes out of iov1; more take
     * the iovx array, allocated for the send and freed when it completes
     * (without memory, one chunk at a time still makes progress) */
    pc_buf_t *iov = &tx->iov1;
    unsigned max = 1;
    if (tx->sendq.next->next != &tx->sendq) { /* more than one chunk */
        if (!tx->iovx) tx->iovx = pc__malloc(SEND_IOV_MAX * sizeof *tx->iovx);
        if (tx->iovx) {
            iov = tx->iovx;
            max = SEND_IOV_MAX;
        }
    }
    unsigned n = 0;
    size_t total = 0;
    int all = 1; /* the send takes the whole queue */
    queue_t *e;
    queue_foreach(e, &tx->sendq)
    {
        chunk_t *ch = pc_container_of(e, chunk_t, link);
        size_t len = ch->len - ch->off;
        if (!len) continue;
        if (n == max || total >= PC_SEND_MAX) {
            all = 0;
            break;
        }
        if (len > PC_SEND_MAX - total) {
            len = PC_SEND_MAX - total;
            all = 0;
        }
        iov[n].base = ch->data + ch->off;
        iov[n].len = len;
        total += len;
        n++;
    }
    if (!n) return;
    c->sending = 1;
    c->ops_pending++;
    tx->wr_op.tag = TAG_CONN_SEND;
    /* closing, and these are the last bytes: the FIN follows this send's
     * completion (conn_after, do_fin), so it may ride in their segment */
    tx->wr_op.fin_next = (uint8_t)(all && c->state == CS_CLOSING);
    if (tx->wr_op.fin_next && c->no_linger) c->no_linger = NL_HELD;
    int rc = port_send(conn_port(c), &c->ps, &tx->wr_op, iov, n);
    if (rc < 0) {
        c->sending = 0;
        c->ops_pending--;
        c->reason = PC_CLOSE_ERROR;
        c->err = rc;
        conn_close_socket(c, 1);
    }
}

/* Drop n sent bytes from the head of the send queue. */
static void sendq_consume(pc_conn_t *c, size_t n)
{
    size_t done = n;
    conn_tx_t *tx = c->tx; /* a send completed: it has one */
    while (n && !queue_empty(&tx->sendq)) {
        chunk_t *ch = pc_container_of(queue_head(&tx->sendq), chunk_t, link);
        size_t avail = ch->len - ch->off;
        size_t take = n < avail ? n : avail;
        ch->off += take;
        n -= take;
        if (ch->off == ch->len) {
            queue_remove(&ch->link);
            sq_chunk_free(conn_srv(c), ch);
        }
    }
    atomic_fetch_sub(&c->sendq_bytes, done);
    counter_sub(&conn_srv(c)->send_queued, done);
    counter_add(&conn_worker(c)->bytes_out, done);
    if (done) c->last_rx_ms = pc__now_ms(); /* traffic out counts for the idle timeout */
    if (conn_srv(c)->cfg.write_timeout_ms) tx->tx_since_ms = pc__now_ms(); /* progress */
    /* a graceful close flushing its queue: close_linger_ms bounds a stretch
     * without progress, not the whole flush (a peer reading a large answer
     * slowly was reset half-way); the deadline moves without re-arming, the
     * timer re-reads it when it fires */
    if (done && c->state == CS_CLOSING && !c->fin_sent)
        c->deadline_ms = pc__now_ms() + conn_srv(c)->cfg.close_linger_ms;
}

/* ---- reading ---------------------------------------------------------- */

static int read_wanted(const pc_conn_t *c)
{
    if (c->state == CS_CLOSING) return !c->peer_eof;
    return c->state == CS_OPEN && !c->paused_user && !c->paused_hw && !c->peer_eof;
}

/* Received bytes a pause kept: a backend buffer (x->held) or, while open,
 * the rest of a TLS receive. No receive starts while there are some: they
 * go first (conn_deliver_held, at the end of every event), and a receive
 * started meanwhile would deliver newer bytes ahead of them (a closing
 * connection discards what it reads: the TLS rest goes with it). */
static int tls_rest_kept(const pc_conn_t *c)
{
    return c->state == CS_OPEN && c->tls_phase == TLSP_OPEN && tls_sess_has_rest(c->ext->tls);
}

static int conn_kept(const pc_conn_t *c)
{
    if (!c->ext || c->state == CS_CLOSED) return 0;
    return c->ext->held != NULL || tls_rest_kept(c);
}

/* Wait for readability (after EAGAIN, or on open). */
static void conn_arm_read(pc_conn_t *c)
{
    if (c->reading || !read_wanted(c) || conn_kept(c)) return;
    c->reading = 1;
    c->ops_pending++;
    c->recv_op.tag = TAG_CONN_RECV;
    int rc = port_recv(conn_port(c), &c->ps, &c->recv_op);
    if (rc < 0) {
        c->reading = 0;
        c->ops_pending--;
        c->reason = PC_CLOSE_ERROR;
        c->err = rc;
        conn_close_socket(c, 1);
    }
}

/* Continue reading later without waiting for a new edge (data may remain). */
static void conn_continue_read(pc_conn_t *c)
{
    if (conn_port(c)->recv_data) { /* the backend holds received data, in order */
        conn_arm_read(c);
        return;
    }
    if (c->reading || !read_wanted(c) || conn_kept(c)) return;
    c->reading = 1;
    c->ops_pending++;
    c->recv_op.tag = TAG_CONN_RECV;
    port_post(conn_port(c), c->ps.q, &c->recv_op);
}

/* Received bytes cannot be kept for a paused connection (no memory): reset
 * it rather than deliver them against the pause. */
static void conn_fail_nomem(pc_conn_t *c)
{
    c->reason = PC_CLOSE_NOMEM;
    c->err = PC_ENOMEM;
    conn_close_socket(c, 1);
}

/* The peer ended an open outbound connection during its TLS handshake (a
 * FIN, or a reset): the handshake failed (tls.h), not a close the
 * application could take for one after on_open. Not when the application
 * asked for the close first (the connection is closing then). */
static int tls_cut_by_peer(const pc_conn_t *c)
{
    return c->outbound && c->state == CS_OPEN && c->tls_phase == TLSP_HANDSHAKE;
}

static void conn_fail(pc_conn_t *c, int err)
{
    if (c->state == CS_CLOSED) return;
    /* a reset that follows an EOF we took for a peer close (a failed send
     * can consume the socket's error first, so recv saw 0) is a reset */
    if (tls_cut_by_peer(c) && err == PC_ECONNRESET) {
        c->reason = PC_CLOSE_TLS;
        c->err = err;
    } else if (c->state != CS_CLOSING || c->reason == PC_CLOSE_LOCAL ||
               (c->reason == PC_CLOSE_PEER && err == PC_ECONNRESET)) {
        c->reason = (err == PC_ECONNRESET) ? PC_CLOSE_RESET : PC_CLOSE_ERROR;
        c->err = err;
    } else if (!c->err) {
        /* the reason stays (a failed handshake, a timeout): so does the
         * error behind it, which a later reset must not replace */
        c->err = err;
    }
    conn_close_socket(c, 1);
}

static void do_fin(pc_conn_t *c)
{
    if (c->fin_sent || c->state != CS_CLOSING) return;
    c->fin_sent = 1;
    if (c->peer_eof || c->no_linger) {
        /* close() on a socket with bytes not yet read resets at once and
         * drops what the kernel still holds: a last segment held for the
         * FIN (MSG_MORE) goes out with it through shutdown() first */
        if (c->no_linger == NL_HELD && !c->peer_eof) sock_shutdown_write(c->ps.fd);
        conn_close_socket(c, 0); /* close() sends the FIN; the kernel delivers what is queued */
        return;
    }
    sock_shutdown_write(c->ps.fd);
    /* close_linger_ms of read-and-discard, from our FIN (the timer re-reads
     * the later deadline when the earlier one fires) */
    c->deadline_ms = pc__now_ms() + conn_srv(c)->cfg.close_linger_ms;
}

static void handle_eof(pc_conn_t *c)
{
    c->peer_eof = 1;
    if (tls_cut_by_peer(c)) {
        c->reason = PC_CLOSE_TLS;
        c->err = PC_ETLS;
        pc_conn_close(c);
    } else if (c->state == CS_OPEN) {
        c->reason = PC_CLOSE_PEER;
        pc_conn_close(c); /* flush what is queued, FIN, close */
    } else if (c->state == CS_CLOSING && c->fin_sent) {
        conn_close_socket(c, 0);
    }
}

static void conn_read(worker_t *w, pc_conn_t *c)
{
    for (int budget = READ_BUDGET; budget > 0; budget--) {
        if (!read_wanted(c) || conn_kept(c)) return; /* kept bytes first: conn_after */
        int n = sock_recv(c->ps.fd, w->scratch, w->scratch_size);
        if (n > 0) {
            counter_add(&w->bytes_in, (uint64_t)n);
            c->last_rx_ms = pc__now_ms();
            if (c->state == CS_OPEN) conn_deliver(w, c, w->scratch, (size_t)n);
            continue;
        }
        if (n == 0) {
            handle_eof(c);
            return;
        }
        if (n == PC_EAGAIN) {
            conn_arm_read(c);
            return;
        }
        conn_fail(c, n);
        return;
    }
    conn_continue_read(c);
}

/* ---- the PROXY protocol phase (conn_proxy.c has the header and the verdict) ---- */

/* A connection from a trusted proxy: open for reading, on_open deferred
 * until its header has passed; the header deadline is the proxy timeout. */
static void proxy_phase_start(pc_conn_t *c)
{
    int rc = conn_proxy_begin(c);
    if (rc < 0) {
        c->reason = PC_CLOSE_NOMEM;
        c->err = rc;
        conn_close_socket(c, 1); /* still CS_OPENING: the application never sees it */
        return;
    }
    c->deadline_ms = c->last_rx_ms + conn_srv(c)->cfg.proxy_timeout_ms;
    set_open_hidden(c);
    timer_update(c);
    conn_arm_read(c);
}

/* The header's deadline passed: reset, unless the header's bytes are
 * held (input_defers). Returns 1 if the timer is done with (the connection
 * gone, or the judgement put off). */
static int proxy_timer(pc_conn_t *c, uint64_t now, uint64_t clock)
{
    if (c->px_state != PX_PENDING || now < c->deadline_ms) return 0;
    if (input_defers(c, c->deadline_ms, clock)) return 1;
    conn_proxy_timed_out(c);
    c->reason = PC_CLOSE_PROXY;
    conn_close_socket(c, 1);
    return 1;
}

/* Received bytes: the header's first while one is pending, then the
 * application's (on_open runs once the real client passed its verdict). */
static void conn_deliver(worker_t *w, pc_conn_t *c, const char *data, size_t n)
{
    if (c->px_state == PX_PENDING) {
        size_t used = 0;
        int rc = conn_proxy_feed(w, c, data, n, &used);
        if (rc == 0) return;
        if (rc < 0) { /* malformed, rejected or no memory: counted, reset */
            c->reason = rc == PC_ENOMEM ? PC_CLOSE_NOMEM : PC_CLOSE_PROXY;
            c->err = rc;
            conn_close_socket(c, 1);
            return;
        }
        unsigned ht = first_deadline_ms(c);
        c->deadline_ms = ht ? pc__now_ms() + ht : 0;
        timer_update(c);
        if (c->tls_phase) { /* the TLS handshake follows the header */
            if (conn_tls_begin(c) < 0) {
                c->reason = PC_CLOSE_NOMEM;
                conn_close_socket(c, 1);
                return;
            }
        } else {
            conn_opened(c);
        }
        data += used;
        n -= used;
        if (!n || c->state != CS_OPEN) return;
        /* on_open paused: the bytes after the header wait, as a receive
         * would; without memory to keep them the pause still holds, and
         * the connection goes */
        if (!c->tls_phase && !read_wanted(c)) {
            if (!hold_copy(c, data, n)) conn_fail_nomem(c);
            return;
        }
    }
    if (c->tls_phase) {
        tls_deliver(c, data, n);
        return;
    }
    conn_cb(c)->on_data(c, data, n);
}

/* ---- TLS (conn_tls.c has the phase, src/tls the session) ---- */

/* Received bytes of a TLS connection: the session decrypts them. */
static void tls_deliver(pc_conn_t *c, const char *data, size_t n)
{
    int rc = conn_tls_recv(c, data, n);
    if (rc == TLS_FEED_EOF) {
        handle_eof(c); /* close_notify: the peer's end of stream */
    } else if (rc < 0 && c->state == CS_OPEN) {
        c->reason = rc == PC_ENOMEM ? PC_CLOSE_NOMEM : PC_CLOSE_TLS;
        c->err = rc;
        pc_conn_close(c); /* the alert (if any) goes out before the FIN */
    }
}

/* A TLS connection is established: on_open waits for the handshake, which
 * first_deadline_ms bounds (accepted: from the accept). */
static void tls_phase_start(pc_conn_t *c)
{
    unsigned ht = first_deadline_ms(c);
    c->deadline_ms = ht ? (c->outbound ? pc__now_ms() : c->last_rx_ms) + ht : 0;
    set_open_hidden(c);
    timer_update(c);
    int rc = conn_tls_begin(c);
    if (rc < 0) {
        c->reason = rc == PC_ENOMEM ? PC_CLOSE_NOMEM : PC_CLOSE_TLS;
        c->err = rc;
        conn_close_socket(c, 1);
        return;
    }
    conn_arm_read(c);
}

void conn_opened(pc_conn_t *c)
{
    if (c->hidden) { /* only the strand sets it */
        pc__mutex_lock(conn_lock(c));
        c->hidden = 0; /* calls by id reach it from now on */
        pc__mutex_unlock(conn_lock(c));
    }
    if (conn_cb(c)->on_open) conn_cb(c)->on_open(c);
}

/* ---- open, close ---------------------------------------------------------- */

/* The entry in [from, to) of the local-address table for address a of
 * listener li, or 0. */
static uint8_t local_find(const pc_server_t *s, int from, int to, int li, const sockaddr_any_t *a)
{
    for (int i = from; i < to; i++)
        if (s->locals[i].listener == li && memcmp(&s->locals[i].addr, a, sizeof *a) == 0)
            return (uint8_t)i;
    return 0;
}

/* The entry of the local-address table for address a of listener li: an
 * existing one, or a new one appended; 0 when the table is full. Any
 * worker; entries never change once published (nlocals, release). */
static uint8_t local_intern(pc_server_t *s, int li, const sockaddr_any_t *a)
{
    int n = atomic_load_explicit(&s->nlocals, memory_order_acquire);
    uint8_t ix = local_find(s, PC_MAX_LISTENERS + 1, n, li, a);
    if (ix) return ix;
    pc__mutex_lock(&s->locals_lock);
    int m = atomic_load_explicit(&s->nlocals, memory_order_relaxed);
    ix = local_find(s, n, m, li, a); /* appended since the scan above */
    if (!ix && m < PC_LOCALS_MAX) {
        s->locals[m].addr = *a;
        s->locals[m].listener = (uint8_t)li;
        atomic_store_explicit(&s->nlocals, m + 1, memory_order_release);
        ix = (uint8_t)m;
    }
    pc__mutex_unlock(&s->locals_lock);
    return ix;
}

/* The connection's local address if it is known yet, else NULL. */
static const sockaddr_any_t *local_known(const pc_conn_t *c)
{
    if (c->lst > PC_MAX_LISTENERS || (c->lst && conn_listener(c)->specific))
        return &conn_srv(c)->locals[c->lst].addr;
    if (c->ext && c->ext->local.sa.sa_family) return &c->ext->local;
    return NULL;
}

/* Learn the local address of a connection while its socket is open (strand):
 * nothing to do for a listener bound to a specific address; else read from
 * the socket, then an entry of the server's table (accepted) or ext
 * (outbound, or the table full). Without memory for ext it stays unknown
 * until pc_conn_local_addr tries again. */
static void local_learn(pc_conn_t *c)
{
    if (local_known(c)) return;
    listener_t *l = conn_listener(c);
    struct sockaddr_storage ss;
    if (c->ps.fd == SOCK_INVALID || sock_local_addr(c->ps.fd, &ss) != 0) return;
    sockaddr_any_t a;
    sockaddr_store(&a, (const struct sockaddr *)&ss);
    uint8_t ix = l ? local_intern(conn_srv(c), l->idx, &a) : 0;
    if (ix) {
        c->lst = ix;
        return;
    }
    conn_ext_t *x = conn_ext(c);
    if (x) x->local = a;
}

/* The socket is connected (accepted, or an outbound connect finished). */
static int sendq_push_front(pc_conn_t *c, const void *data, size_t len);

/* An outbound connection asked for a PROXY v2 header: queue it ahead of
 * anything queued while connecting (bytes sent by id), before any TLS byte. */
static int send_proxy_header(pc_conn_t *c)
{
    uint8_t hdr[CONN_PROXY_OUT_MAX];
    size_t n = conn_proxy_out_build(c, hdr);
    if (!n) return PC_EINVAL; /* the connection's own address is not IP */
    return sendq_push_front(c, hdr, n);
}

static void conn_established(pc_conn_t *c)
{
    /* a syscall per connection saved where possible: accepted sockets
     * inherit TCP_NODELAY (Linux), and on a listener bound to a specific
     * address that address is the local one */
    if (c->outbound || !SOCK_ACCEPT_INHERITS_NODELAY) sock_set_nodelay(c->ps.fd);
    local_learn(c);
    c->last_rx_ms = pc__now_ms();
    c->deadline_ms = 0; /* an outbound connect's timeout has done its work */
    /* bytes queued while connecting (sent by id) could not move: the write
     * timeout judges the peer's reading, which starts now */
    if (c->tx && !queue_empty(&c->tx->sendq)) c->tx->tx_since_ms = c->last_rx_ms;
    if (c->outbound && c->ext && c->ext->px) { /* pc_connect_ex: a PROXY header first */
        int rc = send_proxy_header(c);
        if (rc < 0) {
            c->reason = rc == PC_ENOMEM ? PC_CLOSE_NOMEM : PC_CLOSE_ERROR;
            c->err = rc;
            conn_close_socket(c, 1);
            return;
        }
    }
    if (c->px_state == PX_WANTED) {
        proxy_phase_start(c); /* on_open waits for the header */
        return;
    }
    if (c->tls_phase) {
        tls_phase_start(c); /* on_open waits for the handshake */
        open_kept(c);
        return;
    }
    unsigned ht = first_deadline_ms(c);
    c->deadline_ms = ht ? c->last_rx_ms + ht : 0;
    set_state(c, CS_OPEN);
    timer_update(c);
    if (conn_cb(c)->on_open) conn_cb(c)->on_open(c);
    conn_arm_read(c);
    open_kept(c);
}

/* First event of a connection on its worker: associate the socket with the
 * port, then either it is established (accepted) or the connect starts. */
static void conn_open(pc_conn_t *c)
{
    pc_server_t *s = conn_srv(c);
    if (c->lst) kfilter_accepted(conn_listener(c), c->ps.fd);
    int rc = port_attach(s->port, &c->ps);
    conn_tx_t *tx = NULL;
    if (rc >= 0 && c->outbound && !(tx = tx_get(c))) rc = PC_ENOMEM; /* the connect's op */
    if (rc >= 0 && c->outbound) {
        c->connecting = 1;
        c->ops_pending++;
        tx->wr_op.tag = TAG_CONN_CONNECT;
        rc = port_connect(s->port, &c->ps, &tx->wr_op, &c->peer.sa,
                          c->peer.sa.sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                           : sizeof(struct sockaddr_in));
        if (rc < 0) {
            c->connecting = 0;
            c->ops_pending--;
        } else if (s->cfg.connect_timeout_ms) {
            c->deadline_ms = pc__now_ms() + s->cfg.connect_timeout_ms;
            timer_update(c);
        }
    }
    if (rc < 0) {
        PC_LOGD("starting a connection failed: %s", pc_strerror(rc));
        c->reason = rc == PC_ENOMEM ? PC_CLOSE_NOMEM : PC_CLOSE_ERROR;
        c->err = rc;
        conn_close_socket(c, 1);
        return;
    }
    if (!c->outbound) conn_established(c);
}

/* Close the socket now; on_close runs; the memory is released once the
 * backend has returned every pending operation. */
static void conn_close_socket(pc_conn_t *c, int abortive)
{
    if (c->state == CS_CLOSED) return;
    pc_server_t *s = conn_srv(c);
    /* an accepted connection that never opened (attaching it failed, its
     * PROXY header or its real client refused, its TLS handshake unfinished)
     * was never shown to the application: no on_close either (an outbound
     * one reports its failed connect through on_close, as documented) */
    int notify = c->outbound || (c->state != CS_OPENING && !c->hidden &&
                                 c->px_state != PX_PENDING && !CONN_TLS_UNSEEN(c));
    set_state(c, CS_CLOSED);
    atomic_fetch_add(&conn_worker(c)->unreleased, 1);
    timer_disarm(c);
    port_detach(s->port, &c->ps);
    if (abortive)
        sock_close_reset(c->ps.fd);
    else
        sock_close(c->ps.fd);
    c->ps.fd = SOCK_INVALID;
    /* the peer ended it while its PROXY header was awaited: a missing header */
    if (c->px_state == PX_PENDING &&
        (c->reason == PC_CLOSE_PEER || c->reason == PC_CLOSE_RESET || c->reason == PC_CLOSE_ERROR))
        c->reason = PC_CLOSE_PROXY;
    counter_add(&conn_worker(c)->closed[c->reason], 1);
    if (notify && conn_cb(c)->on_close) conn_cb(c)->on_close(c, c->reason, c->err);
    if (c->ext && c->ext->open_posts) { /* it never opened: they run with NULL */
        xpost_t *p = c->ext->open_posts;
        c->ext->open_posts = NULL;
        posts_run(c, p, NULL); /* their bytes are settled at release */
    }
    if (!c->outbound) {
        filter_release(s->filter, &c->ticket);
        kfilter_source_changed(s, &c->peer.sa);
        atomic_fetch_sub(&s->active, 1);
    } else
        atomic_fetch_sub(&s->outbound, 1);
    server_capacity_changed(s);
}

/* Final release: every pending op has come back. */
static void conn_release(worker_t *w, pc_conn_t *c)
{
    pc_server_t *s = conn_srv(c);
    atomic_fetch_sub(&conn_worker(c)->unreleased, 1);
    size_t q = atomic_load(&c->sendq_bytes);
    if (c->tx) {
        sendq_free(s, &c->tx->sendq);
        tx_free(w, c->tx);
        c->tx = NULL;
    }
    counter_sub(&s->send_queued, q);
    atomic_store(&c->sendq_bytes, 0);
    conn_ext_free(c);
    pc__mutex_lock(conn_lock(c));
    conn_tx_t *itx = c->inbox_tx;
    c->inbox_tx = NULL;
    counter_sub(&s->send_queued, atomic_load(&c->inbox_send_bytes));
    atomic_store(&c->inbox_send_bytes, 0);
    c->state = CS_FREE;
    server_conn_retire_id(c);
    pc__mutex_unlock(conn_lock(c));
    if (itx) {
        /* closed: no post_to adds to it any more; its functions run with NULL */
        if (itx->posts) posts_run(c, itx->posts, NULL);
        itx->posts = NULL;
        sendq_free(s, &itx->sendq);
        tx_free(w, itx);
    }
    /* to the table's free list in batches: its lock is shared by every
     * worker and the accept threads, and each closed connection passes here */
    c->u.next_free = w->free_head;
    if (!w->free_head) w->free_tail = c;
    w->free_head = c;
    if (++w->free_n >= CONN_FREE_BATCH) conn_release_flush(w);
}

void conn_release_flush(worker_t *w)
{
    if (!w->free_head) return;
    server_conn_free_list(w->srv, w->free_head, w->free_tail);
    w->free_head = w->free_tail = NULL;
    w->free_n = 0;
}

/* ---- the strand ------------------------------------------------------------- */

void conn_inbox_count(pc_conn_t *c, size_t add, size_t sub)
{
    if (add == sub) return;
    pc__mutex_lock(conn_lock(c));
    size_t in = atomic_load(&c->inbox_send_bytes) + add;
    atomic_store(&c->inbox_send_bytes, in > sub ? in - sub : 0);
    pc__mutex_unlock(conn_lock(c));
}

/* Plaintext counted in the send queue, about to be encrypted into it
 * (conn_tls_send_chunks): its count moves to the inbox's under the lock, so
 * that a reader under it (send_queue_limit, pc_server_send_queued) sees it
 * in one or the other until the records are counted; taken off the send
 * queue's first, the bytes were in neither meanwhile. The send queue's
 * count alone (high water) no longer has them. */
static void count_to_inbox(pc_conn_t *c, size_t n)
{
    pc__mutex_lock(conn_lock(c));
    atomic_fetch_sub(&c->sendq_bytes, n);
    atomic_fetch_add(&c->inbox_send_bytes, n);
    pc__mutex_unlock(conn_lock(c));
}

/* What handle_kick kept while a pc_connect connection was connecting runs
 * once it is established: right after on_open, or as its TLS handshake
 * starts (where posted functions always ran, their sends kept for the
 * handshake, and where a close by id always closed). The posted functions
 * first, in order, then the graceful close. */
static void open_kept(pc_conn_t *c)
{
    conn_ext_t *x = c->ext;
    if (!x || (!x->open_posts && !x->close_when_open)) return;
    xpost_t *p = x->open_posts;
    x->open_posts = NULL;
    int close = x->close_when_open;
    x->close_when_open = 0;
    /* their bytes are counted where handle_kick left them */
    kick_count_t k = {!x->open_posts_in_inbox, x->open_posts_in_inbox};
    if (p) posts_run(c, p, &k);
    if (close && c->state == CS_OPEN) {
        c->reason = x->close_when_open_reason;
        pc_conn_close(c);
    }
}

/* Bytes a kick took from the inbox (all of them, or those sent after a
 * posted function, once it ran) go to the send queue, encrypted with TLS;
 * closed (or the FIN sent), they are dropped. k says where they are
 * counted (strand). */
static void kick_bytes(pc_conn_t *c, queue_t *q, const kick_count_t *k)
{
    if (queue_empty(q)) return;
    pc_server_t *s = conn_srv(c);
    size_t n = chunks_bytes(q);
    int accept =
        c->state == CS_OPEN || c->state == CS_OPENING || (c->state == CS_CLOSING && !c->fin_sent);
    if (accept && c->tls_phase) {
        /* encrypted into the send queue; the plaintext leaves it */
        if (k->counted) count_to_inbox(c, n);
        conn_tls_send_chunks(c, q, n, k->counted || k->in_inbox); /* and frees them */
        c->sent_due = 1;
        return;
    }
    /* the send side is there (handle_kick adopted the inbox's if there
     * was none); tx_get only if a posted function gave it back */
    if (accept && tx_get(c)) {
        int was_empty = queue_empty(&c->tx->sendq);
        sendq_take(c, q);
        if (!k->counted) atomic_fetch_add(&c->sendq_bytes, n);
        if (was_empty) sendq_started(c);
        if (atomic_load(&c->sendq_bytes) > s->cfg.send_high_water) c->paused_hw = 1;
        c->sent_due = 1;
        return;
    }
    sendq_free(s, q);
    if (k->counted) atomic_fetch_sub(&c->sendq_bytes, n);
    counter_sub(&s->send_queued, n);
    if (k->in_inbox) conn_inbox_count(c, 0, n); /* still counted in the inbox */
    if (accept) conn_fail_nomem(c);             /* no memory for a send side */
}

static void handle_kick(pc_conn_t *c)
{
    queue_t local;
    queue_init(&local);
    /* an outbound TLS connection before its handshake: its session keeps
     * what it is given, and that stays counted in the inbox (conn_tls_pend) */
    int keep = c->tls_phase == TLSP_HANDSHAKE;
    size_t pend = keep ? conn_tls_pend(c) : 0;
    pc__mutex_lock(conn_lock(c));
    c->kick_posted = 0;
    conn_tx_t *itx = c->inbox_tx; /* the inbox's bytes, in the sendq of a spare send side */
    c->inbox_tx = NULL;
    size_t counted = atomic_load(&c->inbox_send_bytes);
    size_t xbytes = counted > pend ? counted - pend : 0;
    /* the bytes move to sendq_bytes in the same critical section, so that
     * per-connection limit checks and pc_server_send_queued never see them
     * in neither: a pc_connect connection's also before conn_open below
     * starts its connect (should that fail, kick_bytes drops them from
     * sendq_bytes); not an accepted one's, whose conn_open runs on_open
     * and must not see bytes it has no queue for (its id is not shown
     * before on_open: only a guessed one sends so early); kept for a
     * handshake, they stay where they are */
    int moved = !keep && xbytes && (c->state != CS_OPENING || c->connecting || c->outbound);
    if (moved) atomic_fetch_add(&c->sendq_bytes, xbytes);
    if (!keep) atomic_store(&c->inbox_send_bytes, counted - xbytes);
    int inbox_close = c->inbox_close & INBOX_CLOSE_HOW;
    pc_close_reason_t xreason = c->inbox_close_reason;
    if (inbox_close) c->inbox_close = INBOX_CLOSE_TAKEN; /* sends stay refused */
    pc__mutex_unlock(conn_lock(c));
    xpost_t *posts = NULL;
    if (itx) {
        posts = itx->posts;
        itx->posts = NULL;
        /* the sender allocated it, so taking these bytes never needs memory:
         * it becomes the send side if there is none (also the op of an
         * outbound connect, below), else goes to this worker's cache */
        queue_move_all(&local, &itx->sendq);
        tx_adopt(c, itx);
    }

    if (c->state == CS_OPENING && !c->connecting) conn_open(c);
    /* opened: the bytes count as queued from here (those after a post too,
     * which wait for it); closed, they were never queued */
    if (!moved && !keep && xbytes && c->state != CS_CLOSED) {
        atomic_fetch_add(&c->sendq_bytes, xbytes);
        moved = 1;
    }
    kick_count_t k = {moved, keep};
    /* A pc_connect connection still connecting: posted functions (with the
     * bytes sent after them) and a graceful close wait for the connect
     * (open_kept), as its bytes wait in the queue (an abort does not wait).
     * Without the memory to keep them: run now, and the close becomes a
     * reset, as before. */
    int connecting = c->outbound && c->state == CS_OPENING;
    /* the bytes before the first post: after the posts an earlier kick kept
     * for the connect, or else into the send queue (while an outbound
     * connect is in flight they wait there; conn_after flushes once the
     * connection is established); counted as k says either way */
    if (connecting && c->ext && c->ext->open_posts)
        queue_move_all(&c->ext->open_posts->follow, &local); /* the newest kept one */
    else
        kick_bytes(c, &local, &k);
    if (posts && connecting && conn_ext(c)) {
        xpost_t *last = posts; /* newest first: the new ones go before the kept ones */
        while (last->next)
            last = last->next;
        last->next = c->ext->open_posts;
        c->ext->open_posts = posts;
        c->ext->open_posts_in_inbox = (uint8_t)keep; /* the same for every kick while connecting */
        posts = NULL;
    }
    if (inbox_close == INBOX_CLOSE_GRACEFUL && connecting && conn_ext(c)) {
        c->ext->close_when_open = 1;
        c->ext->close_when_open_reason = (uint8_t)xreason;
        inbox_close = 0;
    }
    /* after the bytes queued before them, each before the bytes sent after
     * it, and before a close requested with them */
    if (posts) posts_run(c, posts, &k);
    if (inbox_close == INBOX_CLOSE_GRACEFUL && c->state == CS_OPENING)
        inbox_close = INBOX_CLOSE_ABORT; /* connecting, nothing kept */
    if (inbox_close == INBOX_CLOSE_ABORT && c->state != CS_CLOSED) {
        c->reason = xreason;
        conn_close_socket(c, 1);
    } else if (inbox_close == INBOX_CLOSE_GRACEFUL && c->state == CS_OPEN) {
        /* a stopping server tells the application first: what it queues
         * now is flushed before the FIN */
        if (xreason == PC_CLOSE_SERVER_STOP && conn_cb(c)->on_shutdown &&
            c->px_state != PX_PENDING && !CONN_TLS_UNSEEN(c))
            conn_cb(c)->on_shutdown(c);
        if (c->state != CS_OPEN) return;
        c->reason = xreason;
        pc_conn_close(c);
    }
}

static void handle(worker_t *w, pc_conn_t *c, const completion_t *cpl)
{
    switch (cpl->op->tag) {
    case TAG_CONN_RECV:
        c->reading = 0;
        c->ops_pending--;
        if (cpl->data) { /* backend-supplied data (io_uring provided buffers) */
            /* every byte received counts, kept, delivered or discarded
             * while closing, as conn_read counts them */
            counter_add(&w->bytes_in, cpl->bytes);
            /* arrived for a receive started before a pause: kept for later
             * (without memory for that, the pause still holds: the
             * connection goes) */
            if (cpl->bytes && c->state == CS_OPEN && !read_wanted(c)) {
                if (hold_data(c, cpl->data, cpl->bytes)) break;
                int appended = hold_append(c, cpl->data, cpl->bytes);
                port_recv_done(conn_port(c), &c->ps, cpl->data);
                if (!appended) conn_fail_nomem(c);
                break;
            }
            if (cpl->bytes && c->state == CS_OPEN) {
                c->last_rx_ms = pc__now_ms();
                conn_deliver(w, c, cpl->data, cpl->bytes);
            }
            port_recv_done(conn_port(c), &c->ps, cpl->data);
            if (c->state != CS_CLOSED && cpl->status == 0) conn_continue_read(c);
            break;
        }
        if (c->state == CS_CLOSED || cpl->status == PC_ECANCELED) break;
        if (cpl->status < 0) {
            conn_fail(c, cpl->status);
            break;
        }
        conn_read(w, c);
        break;
    case TAG_CONN_SEND:
        c->sending = 0;
        c->ops_pending--;
        if (c->tx->iovx) {
            pc__free(c->tx->iovx);
            c->tx->iovx = NULL;
        }
        if (cpl->bytes) sendq_consume(c, cpl->bytes);
        if (c->state == CS_CLOSED) break;
        if (cpl->status < 0) {
            conn_fail(c, cpl->status == PC_ECANCELED ? PC_ECONNABORTED : cpl->status);
            break;
        }
        break;
    case TAG_CONN_KICK:
        handle_kick(c);
        break;
    case TAG_CONN_CONNECT:
        c->ops_pending--;
        c->connecting = 0;
        if (c->state == CS_CLOSED) break;
        if (cpl->status < 0) {
            c->reason = PC_CLOSE_ERROR;
            c->err = cpl->status;
            conn_close_socket(c, 1);
            break;
        }
        conn_established(c);
        break;
    case TAG_CONN_TIMER:
        handle_timer(w, c);
        break;
    default:
        break;
    }
    conn_after(c);
}

/* Work that follows every event: flush queued bytes (one send for all that
 * the callbacks queued), backpressure transitions, FIN once flushed. */
static void conn_after(pc_conn_t *c)
{
    if (c->state == CS_CLOSED || c->state == CS_OPENING) return;
    conn_flush(c);
    size_t q = atomic_load(&c->sendq_bytes);
    if (c->paused_hw && q <= conn_srv(c)->cfg.send_low_water) {
        c->paused_hw = 0;
        /* not for a connection the application has not seen (its PROXY
         * header or TLS handshake pending: the handshake's own flight can
         * pass a small high water) */
        if (c->state == CS_OPEN && conn_cb(c)->on_drain && c->px_state != PX_PENDING &&
            !CONN_TLS_UNSEEN(c))
            conn_cb(c)->on_drain(c);
        if (c->state == CS_CLOSED) return;
        conn_flush(c);
        conn_continue_read(c);
    }
    conn_notify_sent(c);
    /* last: a resume from any callback above (on_drain, on_sent) finds
     * what a pause kept delivered before a receive is started */
    conn_deliver_held(c);
    if (c->state == CS_CLOSING && !c->sending && tx_empty(c)) {
        do_fin(c);
        if (c->state != CS_CLOSED) conn_arm_read(c);
    }
    if (c->state != CS_CLOSED) tx_idle(c);
}

/* Parked completions (shared port): at most one of each of the two ops
 * (the receive and tx->wr_op; a kick or a timer expiry is a flag of its
 * own), so their order fits in three bits. Under conn_lock(c). */
enum { PARK_RECV = 1, PARK_WR = 2, PARK_WR_FIRST = 4 };

/* The oldest parked op, unparked, or NULL. */
static op_t *parked_take(pc_conn_t *c)
{
    if ((c->parked & PARK_WR) && ((c->parked & PARK_WR_FIRST) || !(c->parked & PARK_RECV))) {
        c->parked &= (uint8_t) ~(PARK_WR | PARK_WR_FIRST);
        return &c->tx->wr_op; /* a parked send or connect keeps its send side */
    }
    if (c->parked & PARK_RECV) {
        c->parked &= (uint8_t)~PARK_RECV;
        return &c->recv_op;
    }
    return NULL;
}

/* The timer's pseudo-op: its expiry runs through handle() like a completion
 * (only the tag is read; the connection is the strand's). */
static op_t timer_tag_op = {.tag = TAG_CONN_TIMER};
/* A kick's, likewise: a connection has no kick op of its own (a worker's
 * kick_op runs its list, conn_kicks_run) */
static op_t kick_tag_op = {.tag = TAG_CONN_KICK};

/* Run the strand from the event cur on: the caller owns it (in_dispatch on
 * a shared port). Events parked meanwhile by other workers are taken in
 * order before it is given up. */
static void conn_strand(worker_t *w, pc_conn_t *c, completion_t cur)
{
    int shared = !conn_port(c)->single_owner;
    pc_conn_t *prev = tls_conn;
    worker_t *prev_w = tls_worker;
    tls_conn = c;
    tls_worker = w;
    int release = 0;
    for (;;) {
        handle(w, c, &cur);
        if (!shared) {
            /* kick_posted is set by other threads: read it under the lock,
             * which is needed only once the connection is done */
            if (c->state == CS_CLOSED && c->ops_pending == 0) {
                pc__mutex_lock(conn_lock(c));
                release = !c->kick_posted;
                pc__mutex_unlock(conn_lock(c));
            }
            break;
        }
        pc__mutex_lock(conn_lock(c));
        op_t *op = parked_take(c);
        if (op) { /* the next parked completion */
            op->busy = 0;
            cur = (completion_t){op, op->res_status, op->res_bytes, op->res_data};
            pc__mutex_unlock(conn_lock(c));
            continue;
        }
        if (c->timer_due) {
            c->timer_due = 0;
            cur = (completion_t){&timer_tag_op, 0, 0, NULL};
            pc__mutex_unlock(conn_lock(c));
            continue;
        }
        if (c->kick_due) {
            c->kick_due = 0;
            cur = (completion_t){&kick_tag_op, 0, 0, NULL};
            pc__mutex_unlock(conn_lock(c));
            continue;
        }
        c->in_dispatch = 0;
        release = c->state == CS_CLOSED && c->ops_pending == 0 && !c->kick_posted;
        pc__mutex_unlock(conn_lock(c));
        break;
    }
    tls_conn = prev;
    tls_worker = prev_w;
    if (release) conn_release(w, c);
}

/* Take the connection's strand for one event: cpl, or the timer's expiry
 * when cpl is NULL. Returns 1 if the caller now runs the strand; 0 if
 * another worker runs it (shared port) and was handed the event: a
 * completion's results are parked in its op (which nobody else touches
 * until it is restarted, and each op has at most one completion
 * outstanding), an expiry in timer_due; the running worker takes them in
 * order before it gives the strand up. */
static int strand_claim(pc_conn_t *c, const completion_t *cpl)
{
    /* where every completion of a socket arrives on its own worker (Linux)
     * the strand can never be busy elsewhere: no lock on the way in */
    if (conn_port(c)->single_owner) return 1;
    pc__mutex_lock(conn_lock(c));
    int run = !c->in_dispatch;
    if (run) {
        c->in_dispatch = 1;
    } else if (!cpl) {
        c->timer_due = 1;
    } else if (cpl->op == &kick_tag_op) {
        c->kick_due = 1;
    } else {
        op_t *op = cpl->op;
        op->res_status = cpl->status;
        op->res_bytes = (uint32_t)cpl->bytes;
        op->res_data = cpl->data;
        if (op == &c->recv_op)
            c->parked |= PARK_RECV;
        else /* the send or connect: first unless the receive is parked */
            c->parked |= (c->parked & PARK_RECV) ? PARK_WR : (PARK_WR | PARK_WR_FIRST);
    }
    pc__mutex_unlock(conn_lock(c));
    return run;
}

void conn_dispatch(worker_t *w, pc_conn_t *c, const completion_t *cpl)
{
    if (strand_claim(c, cpl)) conn_strand(w, c, *cpl);
}

/* An empty inbox takes *spare (allocated by the caller outside the lock)
 * as the conn_tx_t that carries it to the strand; a non-empty one has its
 * own and leaves *spare to the caller to free. Under conn_lock(c). */
static void inbox_open_locked(pc_conn_t *c, conn_tx_t **spare)
{
    if (c->inbox_tx) return;
    tx_init(*spare, c);
    c->inbox_tx = *spare;
    *spare = NULL;
}

/* Cross-thread work was queued for c and its kick_posted set (under the
 * connection's lock, by the caller, which has released it): put c on its
 * home worker's kick list, and post that worker's kick_op unless it is
 * already on its way. c cannot be released meanwhile (not while
 * kick_posted), nor pushed twice (handle_kick clears kick_posted after it
 * was taken off the list). Needs no memory. */
static void conn_kick(pc_conn_t *c)
{
    worker_t *w = conn_worker(c);
    pc__mutex_lock(&w->kick_lock);
    c->kick_next = NULL;
    if (w->kick_tail)
        w->kick_tail->kick_next = c;
    else
        w->kick_head = c;
    w->kick_tail = c;
    int post = !w->kick_posted;
    w->kick_posted = 1;
    pc__mutex_unlock(&w->kick_lock);
    if (post && port_post(conn_srv(c)->port, w->idx, &w->kick_op) < 0) {
        /* not posted (IOCP out of resources): the next kick posts again */
        pc__mutex_lock(&w->kick_lock);
        w->kick_posted = 0;
        pc__mutex_unlock(&w->kick_lock);
        PC_LOGE("worker %d: posting its kicks failed", w->idx);
    }
}

void conn_kicks_run(worker_t *w, worker_t *home)
{
    pc__mutex_lock(&home->kick_lock);
    pc_conn_t *c = home->kick_head;
    home->kick_head = home->kick_tail = NULL;
    home->kick_posted = 0;
    pc__mutex_unlock(&home->kick_lock);
    completion_t kick = {&kick_tag_op, 0, 0, NULL};
    while (c) {
        /* read before the kick runs: once it has, c may be kicked again
         * (kick_next rewritten) or released */
        pc_conn_t *next = c->kick_next;
        conn_dispatch(w, c, &kick);
        c = next;
    }
}

/* Called with the wheel locked, so the connection cannot be disarmed nor
 * released meanwhile: every close disarms (under this lock) before the
 * strand can decide the release, and once claimed here the strand is ours
 * or holds timer_due, which it takes before deciding. */
int conn_timer_claim(pc_conn_t *c)
{
    return strand_claim(c, NULL);
}

void conn_timer_expired(worker_t *w, pc_conn_t *c)
{
    conn_strand(w, c, (completion_t){&timer_tag_op, 0, 0, NULL});
}

int sockaddr_store(sockaddr_any_t *dst, const struct sockaddr *src)
{
    memset(dst, 0, sizeof *dst);
    if (src->sa_family == AF_INET)
        memcpy(&dst->v4, src, sizeof dst->v4);
    else if (src->sa_family == AF_INET6)
        memcpy(&dst->v6, src, sizeof dst->v6);
    else
        return PC_EINVAL;
    return 0;
}

/* ---- hand-off from the accept thread ------------------------------------------ */

/* A record for a new connection on socket fd, given a home worker (round
 * robin), not yet visible to its worker. NULL when out of memory. */
static pc_conn_t *conn_new(pc_server_t *s, sock_t fd, const struct sockaddr_storage *peer)
{
    pc_conn_t *c = server_conn_alloc(s);
    if (!c) return NULL;
    worker_t *w = server_pick_worker(s);
    c->ps.fd = fd;
    c->ps.q = (uint16_t)w->idx;
    c->ps.rd = c->ps.wr = NULL;
    c->ps.backend_flags = 0;
    c->ps.backend_priv = NULL;
    sockaddr_store(&c->peer, (const struct sockaddr *)peer);
    c->lst = 0;
    c->reason = PC_CLOSE_LOCAL;
    c->err = 0;
    c->px_state = PX_NONE;
    c->tls_phase = TLSP_NONE;
    return c;
}

int conn_start_accepted(pc_server_t *s, listener_t *l, sock_t fd,
                        const struct sockaddr_storage *peer)
{
    pc_conn_t *c = conn_new(s, fd, peer);
    if (!c) return PC_ENOMEM;
    c->lst = (uint8_t)(l->idx + 1);
    c->u.user = NULL;
    c->ticket = l->pending_ticket;
    if (l->pending_proxy) c->px_state = PX_WANTED;
    if (l->tls) c->tls_phase = TLSP_WANTED; /* the session is made on the worker (conn_tls_begin) */
    counter_add(&s->accepted, 1);
    pc__mutex_lock(conn_lock(c));
    c->state = CS_OPENING;
    c->kick_posted = 1;
    pc__mutex_unlock(conn_lock(c));
    conn_kick(c);
    return 0;
}

int pc_connect(pc_server_t *s, const char *endpoint, const char *source, const pc_callbacks_t *cb,
               void *user, pc_conn_id_t *id)
{
    return conn_connect(s, endpoint, source, cb, user, id, NULL, NULL);
}

void pc_connect_opts_init(pc_connect_opts_t *o)
{
    if (o) memset(o, 0, sizeof *o);
}

int conn_connect(pc_server_t *s, const char *endpoint, const char *source, const pc_callbacks_t *cb,
                 void *user, pc_conn_id_t *id, void *tls, const pc_connect_opts_t *o)
{
    if (!s || !endpoint || (cb && !cb->on_data)) return PC_EINVAL;
    if (!s->started || atomic_load(&s->stopping)) return PC_ENOTCONN;
    struct sockaddr_storage peer;
    socklen_t plen;
    int rc = pc_parse_endpoint(endpoint, &peer, &plen);
    if (rc < 0) return rc;
    void *px_out = NULL; /* the PROXY header's record, kept in ext->px until connected */
    rc = conn_proxy_out_new(o, &px_out);
    if (rc < 0) return rc;
    sock_t fd;
    rc = sock_open_stream(peer.ss_family, &fd);
    if (rc < 0) {
        pc__free(px_out);
        return rc;
    }
    if (source) {
        struct sockaddr_storage src;
        socklen_t slen;
        char ep[80];
        snprintf(ep, sizeof ep, peer.ss_family == AF_INET6 ? "[%s]:0" : "%s:0", source);
        rc = pc_parse_endpoint(ep, &src, &slen);
        if (rc == 0) rc = sock_bind(fd, (struct sockaddr *)&src, slen);
        if (rc < 0) {
            sock_close(fd);
            pc__free(px_out);
            return rc;
        }
    }
    pc_conn_t *c = conn_new(s, fd, &peer);
    if (!c) {
        sock_close(fd);
        pc__free(px_out);
        return PC_ENOMEM;
    }
    c->u.user = user;
    c->outbound = 1;
    /* its own callbacks, a TLS session or a PROXY header go in ext (conn_cb) */
    if ((cb && cb != &s->cfg.cb) || tls || px_out) {
        if (!conn_ext(c)) {
            server_conn_release(s, c);
            sock_close(fd);
            pc__free(px_out);
            return PC_ENOMEM;
        }
        if (cb && cb != &s->cfg.cb) c->ext->cb = cb;
        c->ext->tls = tls; /* the caller frees it if this fails */
        c->ext->px = px_out;
    }
    c->tls_phase = tls ? TLSP_HANDSHAKE : TLSP_NONE;
    atomic_fetch_add(&s->outbound, 1);
    /* a stop that began after the check above may have found no outbound
     * connection and gone on to end the workers, or swept the connections
     * (close_all) before this one was opening, so it was not asked to
     * close: look again now that this one is counted, under the lock that
     * publishes its state. The stop sets stopping before its sweep, whose
     * request_close takes this lock: either the sweep finds it opening and
     * asks it to close, or this sees stopping and refuses. (Checked before
     * taking the lock, a sweep could fall between the check and the state:
     * the connection opened and stayed open until the drain ran out.) */
    pc_conn_id_t cid = atomic_load(&c->id);
    pc__mutex_lock(conn_lock(c));
    int stopping = atomic_load(&s->stopping);
    if (!stopping) {
        c->state = CS_OPENING;
        c->kick_posted = 1;
    }
    pc__mutex_unlock(conn_lock(c));
    if (stopping) {
        atomic_fetch_sub(&s->outbound, 1);
        server_capacity_changed(s);
        pc__free(px_out);
        pc__free(c->ext); /* the session in it is the caller's again */
        c->ext = NULL;
        server_conn_release(s, c);
        sock_close(fd);
        return PC_ENOTCONN;
    }
    counter_add(&s->connects, 1);
    if (id) *id = cid;
    conn_kick(c);
    return 0;
}

/* ---- cross-thread requests ------------------------------------------------------- */

/* Under the lock: may another thread still send to c (named by id, or 0:
 * the caller holds c)? */
static int xsend_open_locked(const pc_conn_t *c, uint64_t id)
{
    return !(id && (atomic_load(&c->id) != id || c->hidden)) &&
           (c->state == CS_OPEN || c->state == CS_OPENING) && !c->inbox_close;
}

/* An empty send from another thread (id 0: by pointer): nothing to queue,
 * but the answer is a send's, so the state is read under the lock. */
static int xsend_empty(pc_conn_t *c, uint64_t id)
{
    pc__mutex_lock(conn_lock(c));
    int open = xsend_open_locked(c, id);
    pc__mutex_unlock(conn_lock(c));
    return open ? 0 : PC_ENOTCONN;
}

/* Under the lock: may total bytes from another thread be queued now? */
static int xsend_check_locked(pc_conn_t *c, uint64_t id, size_t total)
{
    if (!xsend_open_locked(c, id)) return PC_ENOTCONN;
    if (over_limit(c, total)) return PC_ENOBUFS;
    return 0;
}

/* Under the lock: bytes were added to the inbox; returns 1 if the kick op
 * must be posted (once until it runs). */
static int xsend_commit_locked(pc_conn_t *c, size_t total)
{
    atomic_fetch_add(&c->inbox_send_bytes, total);
    counter_add(&conn_srv(c)->send_queued, total);
    int post = !c->kick_posted;
    c->kick_posted = 1;
    return post;
}

/* Where bytes sent by id go in an inbox: after the newest posted function,
 * if there is one (under the lock). */
static queue_t *inbox_tail_queue(conn_tx_t *itx)
{
    return itx->posts ? &itx->posts->follow : &itx->sendq;
}

/* Queue bytes from another thread. id == 0: caller vouches for c. Bytes
 * that fit the inbox's tail chunk are copied there under the lock (a
 * stream of small messages costs its bytes, not a chunk each); others get
 * a chunk of their own, allocated and filled outside the lock. */
static int conn_xsend(pc_conn_t *c, uint64_t id, const pc_buf_t *bufs, unsigned n, size_t total)
{
    /* a stale id costs no allocation (checked again under the lock) */
    if (id && atomic_load(&c->id) != id) return PC_ENOTCONN;
    pc_server_t *s = conn_srv(c);
    pc__mutex_lock(conn_lock(c));
    int rc = xsend_check_locked(c, id, total);
    int need_tx = !c->inbox_tx;
    queue_t *iq = c->inbox_tx ? inbox_tail_queue(c->inbox_tx) : NULL;
    if (rc == 0 && iq && !queue_empty(iq)) {
        chunk_t *tail = pc_container_of(iq->prev, chunk_t, link);
        if (tail->cap - tail->len >= total) {
            copy_bufs(tail, bufs, n);
            int post = xsend_commit_locked(c, total);
            pc__mutex_unlock(conn_lock(c));
            if (post) conn_kick(c);
            return 0;
        }
    }
    pc__mutex_unlock(conn_lock(c));
    if (rc < 0) return rc;
    held_take_t outer;
    if (conn_buffer_take(s, sq_chunk_size(total), &outer)) return PC_ENOBUFS;
    chunk_t *ch = sq_chunk_new(s, total);
    conn_buffer_settle(&outer);
    if (!ch) return PC_ENOMEM;
    copy_bufs(ch, bufs, n);
    /* an empty inbox needs a send side to carry its chunks, allocated here
     * so that the kick never needs memory to take accepted bytes */
    conn_tx_t *spare = NULL;
    for (;;) {
        if (need_tx && !spare && !(spare = pc__malloc(sizeof *spare))) {
            sq_chunk_free(s, ch);
            return PC_ENOMEM;
        }
        pc__mutex_lock(conn_lock(c));
        rc = xsend_check_locked(c, id, total);
        if (rc < 0 || c->inbox_tx || spare) break;
        pc__mutex_unlock(conn_lock(c)); /* a kick took the inbox meanwhile */
        need_tx = 1;
    }
    if (rc < 0) {
        pc__mutex_unlock(conn_lock(c));
        sq_chunk_free(s, ch);
        pc__free(spare);
        return rc;
    }
    inbox_open_locked(c, &spare);
    queue_insert_tail(inbox_tail_queue(c->inbox_tx), &ch->link);
    int post = xsend_commit_locked(c, total);
    pc__mutex_unlock(conn_lock(c));
    pc__free(spare); /* another sender's was there first */
    if (post) conn_kick(c);
    return 0;
}

/* Ask c's strand to close it (how: INBOX_CLOSE_*). id: 0 (the caller
 * holds c) or the id named, checked under the lock. by_app: a call by id
 * of the application, to which a hidden connection is not open. */
static int request_close(pc_conn_t *c, uint64_t id, int how, pc_close_reason_t reason, int by_app)
{
    pc__mutex_lock(conn_lock(c));
    if ((id && atomic_load(&c->id) != id) || (by_app && c->hidden) || c->state == CS_FREE ||
        c->state == CS_CLOSED) {
        pc__mutex_unlock(conn_lock(c));
        return PC_ENOTCONN;
    }
    if (how > (c->inbox_close & INBOX_CLOSE_HOW)) {
        c->inbox_close = (uint8_t)((c->inbox_close & INBOX_CLOSE_TAKEN) | how);
        c->inbox_close_reason = reason;
    }
    int post = !c->kick_posted;
    c->kick_posted = 1;
    pc__mutex_unlock(conn_lock(c));
    if (post) conn_kick(c);
    return 0;
}

int conn_request_close(pc_conn_t *c, uint64_t id, int how, pc_close_reason_t reason)
{
    return request_close(c, id, how, reason, 0);
}

/* ---- public connection API ------------------------------------------------------- */

/* The bytes of n buffers in *total. Returns 0, or PC_EINVAL when their sum
 * passes SIZE_MAX (it would wrap to a small total, and the copy into a
 * chunk of that size would run past it). */
static int bufs_total(const pc_buf_t *bufs, unsigned n, size_t *total)
{
    size_t t = 0;
    for (unsigned i = 0; i < n; i++) {
        if (bufs[i].len > SIZE_MAX - t) return PC_EINVAL;
        t += bufs[i].len;
    }
    *total = t;
    return 0;
}

int pc_conn_sendv(pc_conn_t *c, const pc_buf_t *bufs, unsigned n)
{
    if (!c || (!bufs && n)) return PC_EINVAL;
    size_t total;
    if (bufs_total(bufs, n, &total) < 0) return PC_EINVAL;
    if (!total && tls_conn == c)
        return (c->state == CS_OPEN || c->state == CS_OPENING) ? 0 : PC_ENOTCONN;
    if (!total) return xsend_empty(c, 0); /* another thread */
    if (tls_conn != c) return conn_xsend(c, 0, bufs, n, total);
    if (c->state != CS_OPEN) return PC_ENOTCONN;
    if (over_limit(c, total)) return PC_ENOBUFS;
    size_t grow;
    if (c->tls_phase == TLSP_HANDSHAKE) { /* kept by the session, not in a chunk */
        grow = conn_tls_pend_grow(c, total);
    } else {
        chunk_t *tail = tx_empty(c) ? NULL : pc_container_of(c->tx->sendq.prev, chunk_t, link);
        size_t room = tail ? tail->cap - tail->len : 0;
        if (c->tls_phase == TLSP_OPEN) /* its records, longer than it, go in the queue */
            grow = conn_tls_send_mem(c, bufs, n, room);
        else
            grow = tail && room >= total ? 0 : sq_chunk_size(total);
    }
    held_take_t outer;
    if (conn_buffer_take(conn_srv(c), grow, &outer)) {
        /* stop reading (what it reads makes more output) until its own
         * queue drains; with nothing queued there is nothing to wait for */
        if (atomic_load(&c->sendq_bytes)) c->paused_hw = 1;
        return PC_ENOBUFS;
    }
    /* encrypted by conn_queue_raw with a TLS session */
    int rc = c->tls_phase ? conn_tls_send(c, bufs, n) : sendq_push(c, bufs, n, total);
    conn_buffer_settle(&outer);
    if (rc == 0) c->sent_due = 1; /* on_sent once the queue is empty */
    return rc;
}

/* total bytes went into the send queue: count them, start the write
 * timeout if the queue held no chunk before (was_empty; not sendq_bytes,
 * which already counts the bytes sent by id after a posted function that
 * is running now: handle_kick moves their count before their chunks),
 * stop reading above high water. */
static void sendq_counted(pc_conn_t *c, size_t total, int was_empty)
{
    size_t q = atomic_fetch_add(&c->sendq_bytes, total) + total;
    counter_add(&conn_srv(c)->send_queued, total);
    if (was_empty) sendq_started(c);
    if (q > conn_srv(c)->cfg.send_high_water) c->paused_hw = 1;
}

/* Append bytes to the send queue (strand). The send itself starts in
 * conn_after, once the callback returns, so that everything queued by one
 * callback goes out in one gather write. */
static int sendq_push(pc_conn_t *c, const pc_buf_t *bufs, unsigned n, size_t total)
{
    conn_tx_t *tx = tx_get(c);
    if (!tx) return PC_ENOMEM;
    int was_empty = queue_empty(&tx->sendq);
    int rc = sendq_append(conn_srv(c), &tx->sendq, bufs, n, total);
    if (rc < 0) return rc; /* an empty send side goes back in conn_after */
    sendq_counted(c, total, was_empty);
    return 0;
}

/* sendq_push ahead of what is queued; only before anything was sent. */
static int sendq_push_front(pc_conn_t *c, const void *data, size_t len)
{
    conn_tx_t *tx = tx_get(c);
    if (!tx) return PC_ENOMEM;
    queue_t front;
    queue_init(&front);
    pc_buf_t b;
    b.base = (void *)(uintptr_t)data;
    b.len = len;
    int was_empty = queue_empty(&tx->sendq);
    int rc = sendq_append(conn_srv(c), &front, &b, 1, len);
    if (rc < 0) return rc;
    queue_move_all(&front, &tx->sendq); /* the queued bytes after it */
    queue_move_all(&tx->sendq, &front);
    sendq_counted(c, len, was_empty);
    return 0;
}

int conn_queue_raw(pc_conn_t *c, const void *data, size_t len)
{
    pc_buf_t b;
    b.base = (void *)(uintptr_t)data;
    b.len = len;
    return sendq_push(c, &b, 1, len);
}

int pc_conn_send(pc_conn_t *c, const void *data, size_t len)
{
    if (!data && len) return PC_EINVAL;
    pc_buf_t b;
    b.base = (void *)(uintptr_t)data;
    b.len = len;
    return pc_conn_sendv(c, &b, 1);
}

/* Reverse a list of posts (newest first <-> oldest first). */
static xpost_t *posts_reverse(xpost_t *p)
{
    xpost_t *r = NULL;
    while (p) {
        xpost_t *nx = p->next;
        p->next = r;
        r = p;
        p = nx;
    }
    return r;
}

/* Do the posts of a list (newest first) hold bytes sent after them? */
static int follows_any(const xpost_t *p)
{
    for (; p; p = p->next)
        if (!queue_empty(&p->follow)) return 1;
    return 0;
}

/* Move the follow queues of the posts from fifo on (oldest first) to the
 * tail of q. Returns their bytes. */
static size_t follows_move(queue_t *q, xpost_t *fifo)
{
    queue_t taken;
    queue_init(&taken);
    for (; fifo; fifo = fifo->next)
        queue_move_all(&taken, &fifo->follow);
    size_t n = chunks_bytes(&taken);
    queue_move_all(q, &taken);
    return n;
}

/* follows_move for a list of posts (newest first), left as it was. */
static size_t follows_take(queue_t *q, xpost_t **posts)
{
    xpost_t *fifo = posts_reverse(*posts);
    size_t n = follows_move(q, fifo);
    *posts = posts_reverse(fifo);
    return n;
}

/* A graceful close begins on the strand: the connection becomes closing
 * and, in the same critical section, the bytes other threads queued before
 * it (their sends returned 0) leave the inbox, so that no send after the
 * close is accepted and none before it is lost: the kick that would carry
 * them finds the FIN sent (and with TLS, close_notify written). So do the
 * bytes a running kick holds after the posted function closing and after
 * the ones still to run (tls_posts_rest), and those kept with posts that
 * wait for a connect's open_kept, which came before the inbox's.
 * Posted functions stay for the kick. Returns how many bytes were taken
 * into q; they are counted in sendq_bytes from here (as handle_kick moves
 * them). Not during a TLS handshake, whose session keeps what it is given.
 * When the connection has no send side and the inbox holds no posted
 * function, *spare receives the inbox's own (allocated by the sender so
 * that taking accepted bytes never needs memory, as in handle_kick). */
static size_t close_begin(pc_conn_t *c, queue_t *q, conn_tx_t **spare)
{
    size_t n = 0;
    queue_init(q);
    *spare = NULL;
    posts_rest_t *rest = tls_posts_rest;
    int handshake = c->tls_phase == TLSP_HANDSHAKE;
    if (rest && rest->c == c && !handshake && !rest->k.in_inbox) {
        n = follows_move(q, rest->cur); /* oldest first already */
        if (!rest->k.counted) atomic_fetch_add(&c->sendq_bytes, n);
    }
    /* a pc_connect connection closing from on_open: the bytes kept with
     * the posts that wait for open_kept, also older than the inbox's */
    conn_ext_t *x = c->ext;
    if (x && x->open_posts && !x->open_posts_in_inbox && !handshake)
        n += follows_take(q, &x->open_posts); /* counted in sendq_bytes by the kick */
    pc__mutex_lock(conn_lock(c));
    conn_tx_t *itx = c->inbox_tx;
    if (itx && (!queue_empty(&itx->sendq) || follows_any(itx->posts)) && !handshake) {
        queue_move_all(q, &itx->sendq);
        follows_take(q, &itx->posts); /* counted in inbox_send_bytes */
        size_t in = atomic_load(&c->inbox_send_bytes);
        n += in;
        atomic_store(&c->inbox_send_bytes, 0);
        atomic_fetch_add(&c->sendq_bytes, in);
        if (!c->tx && !itx->posts) {
            *spare = itx;
            c->inbox_tx = NULL;
        }
    }
    c->state = CS_CLOSING;
    pc__mutex_unlock(conn_lock(c));
    return n;
}

/* close_begin's bytes into the send queue (encrypted with TLS), ahead of
 * close_notify and the FIN; spare becomes the send side if there is none.
 * Returns 0, or -1 when there was no memory for a send side (the bytes are
 * dropped; the caller resets the connection). */
static int close_queue_taken(pc_conn_t *c, queue_t *q, size_t n, conn_tx_t *spare)
{
    if (spare) tx_adopt(c, spare);
    if (c->tls_phase) {
        count_to_inbox(c, n);             /* the records are counted instead */
        conn_tls_send_chunks(c, q, n, 1); /* and frees them */
        return 0;
    }
    if (!tx_get(c)) {
        sendq_free(conn_srv(c), q);
        atomic_fetch_sub(&c->sendq_bytes, n);
        counter_sub(&conn_srv(c)->send_queued, n);
        return -1;
    }
    int was_empty = queue_empty(&c->tx->sendq);
    sendq_take(c, q);
    if (was_empty) sendq_started(c);
    return 0;
}

int pc_conn_close(pc_conn_t *c)
{
    if (!c) return PC_EINVAL;
    if (tls_conn != c) return conn_request_close(c, 0, INBOX_CLOSE_GRACEFUL, PC_CLOSE_LOCAL);
    if (c->state == CS_CLOSING) return 0;
    if (c->state != CS_OPEN) return PC_ENOTCONN;
    if (c->tls_phase == TLSP_HANDSHAKE && c->reason == PC_CLOSE_LOCAL && c->ext &&
        (conn_tls_pend(c) || atomic_load(&c->inbox_send_bytes))) {
        /* plaintext waits for the handshake (an outbound connection: sent by
         * id or from its strand): a closing connection would read nothing
         * more, so the handshake would never end and the bytes never leave.
         * Close once it completes (io_open), within close_linger_ms: a
         * handshake still running then is cut as a header timeout. */
        if (!c->ext->close_when_open) {
            c->ext->close_when_open = 1;
            c->ext->close_when_open_reason = PC_CLOSE_LOCAL;
            uint64_t at = pc__now_ms() + conn_srv(c)->cfg.close_linger_ms;
            if (!c->deadline_ms || at < c->deadline_ms) c->deadline_ms = at;
            timer_update(c);
        }
        return 0;
    }
    queue_t taken;
    conn_tx_t *spare;
    size_t n = close_begin(c, &taken, &spare);
    if (n && close_queue_taken(c, &taken, n, spare) < 0) {
        conn_fail_nomem(c);
        return 0;
    }
    if (c->tls_phase == TLSP_OPEN) conn_tls_close_notify(c); /* before the FIN */
    c->paused_user = 0;
    c->paused_hw = 0;
    c->deadline_ms = pc__now_ms() + conn_srv(c)->cfg.close_linger_ms;
    timer_update(c);
    /* FIN, discard-reading and the final close follow in conn_after */
    return 0;
}

int pc_conn_close_nolinger(pc_conn_t *c)
{
    if (!c || tls_conn != c) return PC_EINVAL;
    int rc = pc_conn_close(c);
    if (rc == 0 && c->state != CS_CLOSED)
        c->no_linger = NL_ASKED; /* not reset for lack of memory */
    return rc;
}

int pc_conn_abort(pc_conn_t *c)
{
    if (!c) return PC_EINVAL;
    if (tls_conn != c) return conn_request_close(c, 0, INBOX_CLOSE_ABORT, PC_CLOSE_ABORT);
    if (c->state == CS_CLOSED) return PC_ENOTCONN;
    c->reason = PC_CLOSE_ABORT;
    conn_close_socket(c, 1);
    return 0;
}

int pc_conn_set_header_timeout(pc_conn_t *c, unsigned ms)
{
    if (!c || tls_conn != c) return PC_EINVAL;
    if (c->state != CS_OPEN) return PC_ENOTCONN;
    if (!ms) {
        c->deadline_ms = 0; /* the timer recomputes when it fires */
        return 0;
    }
    if (c->deadline_ms) return 0; /* the earlier deadline stands */
    c->deadline_ms = pc__now_ms() + ms;
    timer_sooner(c, c->deadline_ms);
    return 0;
}

int pc_conn_pause_read(pc_conn_t *c)
{
    if (!c || tls_conn != c) return PC_EINVAL;
    if (c->state != CS_OPEN) return PC_ENOTCONN;
    c->paused_user = 1;
    return 0;
}

int pc_conn_resume_read(pc_conn_t *c)
{
    if (!c || tls_conn != c) return PC_EINVAL;
    if (c->state != CS_OPEN) return PC_ENOTCONN;
    if (c->paused_user) {
        c->paused_user = 0;
        conn_continue_read(c);
    }
    return 0;
}

pc_conn_id_t pc_conn_id(const pc_conn_t *c)
{
    return atomic_load(&((pc_conn_t *)c)->id);
}

pc_server_t *pc_conn_server(const pc_conn_t *c)
{
    return conn_srv(c);
}

void pc_conn_set_user_data(pc_conn_t *c, void *p)
{
    c->u.user = p;
}

void *pc_conn_user_data(const pc_conn_t *c)
{
    return c->u.user;
}

const struct sockaddr *pc_conn_peer_addr(const pc_conn_t *c)
{
    return &c->peer.sa;
}

/* The send queue's count plus the inbox's: under the lock, or on the
 * strand (the kick and a close move bytes from one to the other under the
 * lock, so a reader without it could see them in neither). */
static size_t send_queued_sum(pc_conn_t *c)
{
    return atomic_load(&c->sendq_bytes) + atomic_load(&c->inbox_send_bytes);
}

size_t pc_conn_send_queued(const pc_conn_t *c)
{
    pc_conn_t *m = (pc_conn_t *)c;
    if (tls_conn == m) return send_queued_sum(m);
    pc__mutex_lock(conn_lock(m)); /* another thread */
    size_t q = send_queued_sum(m);
    pc__mutex_unlock(conn_lock(m));
    return q;
}

int pc_server_send_to(pc_server_t *s, pc_conn_id_t id, const void *data, size_t len)
{
    if (!s || (!data && len)) return PC_EINVAL;
    pc_conn_t *c = server_conn_lookup(s, id);
    if (!c) return PC_ENOTCONN;
    pc_buf_t b;
    b.base = (void *)(uintptr_t)data;
    b.len = len;
    if (tls_conn == c && atomic_load(&c->id) == id) return pc_conn_sendv(c, &b, 1);
    if (!len) return xsend_empty(c, id);
    return conn_xsend(c, id, &b, 1, len);
}

int pc_server_close_id(pc_server_t *s, pc_conn_id_t id)
{
    if (!s) return PC_EINVAL;
    pc_conn_t *c = server_conn_lookup(s, id);
    if (!c) return PC_ENOTCONN;
    if (tls_conn == c && atomic_load(&c->id) == id) return pc_conn_close(c);
    return request_close(c, id, INBOX_CLOSE_GRACEFUL, PC_CLOSE_LOCAL, 1);
}

/* ---- embedding by id: true accounting, limits, post_to, timers, on_sent ---- */

/* What a chunk for need bytes holds of memory (its header and capacity). */
static size_t sq_chunk_size(size_t need)
{
    return sizeof(chunk_t) + (need < PC_CHUNK_MIN ? PC_CHUNK_MIN : need);
}

/* Send-queue chunks are counted in srv->send_held, which max_buffered_bytes
 * bounds: memory held, not payload (16-byte messages in chunks of their own
 * once held 256 times their bytes). */
static chunk_t *sq_chunk_new(pc_server_t *s, size_t need)
{
    chunk_t *ch = chunk_new(need);
    if (ch) conn_held_add(s, chunk_mem(ch));
    return ch;
}

static void sq_chunk_free(pc_server_t *s, chunk_t *ch)
{
    counter_sub(&s->send_held, chunk_mem(ch));
    chunk_free(ch);
}

/* send_queue_limit: refuse a send that would take a non-empty queue (the
 * strand's plus the inbox) past it. Strand or under the lock; the bytes
 * move from the inbox to the queue under the lock, so neither caller sees
 * them missing. */
static int over_limit(pc_conn_t *c, size_t total)
{
    size_t lim = conn_srv(c)->cfg.send_queue_limit;
    size_t q = atomic_load(&c->sendq_bytes) + atomic_load(&c->inbox_send_bytes);
    if (!q || (total <= lim && q <= lim - total)) return 0;
    counter_add(&conn_srv(c)->send_limit_refused, 1);
    return 1;
}

/* Move the inbox's chunks to the send queue, copying those that fit into
 * the queue's tail chunk (even one being sent: its pending range was fixed
 * when the send started, bytes after it are free) and freeing them, so a
 * stream of small cross-thread messages holds about its bytes. */
static void sendq_take(pc_conn_t *c, queue_t *from)
{
    while (!queue_empty(from)) {
        chunk_t *ch = pc_container_of(queue_head(from), chunk_t, link);
        queue_remove(&ch->link);
        size_t len = ch->len - ch->off;
        chunk_t *tail =
            queue_empty(&c->tx->sendq) ? NULL : pc_container_of(c->tx->sendq.prev, chunk_t, link);
        if (tail && tail->cap - tail->len >= len) {
            memcpy(tail->data + tail->len, ch->data + ch->off, len);
            tail->len += len;
            sq_chunk_free(conn_srv(c), ch);
        } else {
            queue_insert_tail(&c->tx->sendq, &ch->link);
        }
    }
}

/* ---- pc_conn_timer: one user deadline multiplexed on the connection's timer */

conn_ext_t *conn_ext(pc_conn_t *c)
{
    if (!c->ext) {
        c->ext = pc__malloc(sizeof *c->ext);
        if (c->ext) memset(c->ext, 0, sizeof *c->ext);
    }
    return c->ext;
}

/* Not kept in the record (28 bytes of every idle connection): an accepted
 * connection's is an entry of the server's table (lst), shared by all the
 * connections accepted on that address; an outbound connection's, or one
 * the table had no room for, is in ext. Unknown (AF_UNSPEC) only when memory
 * for ext was missing and the socket is closed by the time of the call. */
const struct sockaddr *pc_conn_local_addr(const pc_conn_t *cc)
{
    static const sockaddr_any_t unknown; /* zeroed: sa_family AF_UNSPEC */
    pc_conn_t *c = (pc_conn_t *)cc;
    const sockaddr_any_t *a = local_known(c);
    if (!a) { /* local_learn found no memory: try again while the socket is open */
        local_learn(c);
        a = local_known(c);
    }
    return a ? &a->sa : &unknown.sa;
}

/* Returns 1 if the buffer is kept (for conn_deliver_held), 0 if not: no
 * memory for the record, or bytes are held already (hold_append). */
static int hold_data(pc_conn_t *c, void *data, uint32_t len)
{
    conn_ext_t *x = conn_ext(c);
    if (!x || x->held) return 0; /* one receive is pending at most: never two */
    x->held = data;
    x->held_len = len;
    return 1;
}

/* Keep a copy of received bytes that a pause stopped (the same rules). */
static int hold_copy(pc_conn_t *c, const char *data, size_t n)
{
    if (n >= HELD_COPY) return 0;
    void *p = pc__malloc(n);
    if (!p) return 0;
    memcpy(p, data, n);
    if (hold_data(c, p, (uint32_t)n | HELD_COPY)) return 1;
    pc__free(p);
    return 0;
}

/* A receive completed while bytes are held (a receive was in flight when
 * the copy was made: on_open resumed, then paused again): its bytes go
 * behind them, in one copy (a held backend buffer is copied and given
 * back). 1 if appended (the caller gives the new buffer back), 0 when there
 * is no memory for it. */
static int hold_append(pc_conn_t *c, const void *data, uint32_t len)
{
    conn_ext_t *x = c->ext;
    if (!x || !x->held) return 0;
    uint32_t have = x->held_len & ~HELD_COPY;
    if (len >= HELD_COPY - have) return 0;
    char *p;
    if (x->held_len & HELD_COPY) {
        p = pc__realloc(x->held, (size_t)have + len);
        if (!p) return 0;
    } else {
        p = pc__malloc((size_t)have + len);
        if (!p) return 0;
        memcpy(p, x->held, have);
        port_recv_done(conn_port(c), &c->ps, x->held);
    }
    memcpy(p + have, data, len);
    x->held = p;
    x->held_len = (have + len) | HELD_COPY;
    return 1;
}

static void held_free(pc_conn_t *c, void *data, uint32_t len)
{
    if (len & HELD_COPY)
        pc__free(data);
    else
        port_recv_done(conn_port(c), &c->ps, data);
}

/* Reading resumed (conn_after, outside callbacks): the kept buffer first,
 * then the receive goes on. */
static void conn_deliver_held(pc_conn_t *c)
{
    if (!conn_kept(c)) return;
    conn_ext_t *x = c->ext;
    if (c->state == CS_OPEN && !read_wanted(c)) return;
    /* received before the held buffer: the TLS input a pause kept */
    if (tls_rest_kept(c)) {
        tls_deliver(c, NULL, 0);
        if (c->state == CS_CLOSED) return;
        conn_flush(c);
        if (c->state == CS_OPEN && !read_wanted(c)) return; /* paused again */
    }
    if (x->held) {
        void *data = x->held;
        uint32_t tag = x->held_len, len = tag & ~HELD_COPY;
        x->held = NULL;
        if (c->state == CS_OPEN) { /* as a receive: through TLS or the PROXY parser */
            c->last_rx_ms = pc__now_ms();
            conn_deliver(tls_worker, c, data, len);
        }
        held_free(c, data, tag);
        if (c->state == CS_CLOSED) return;
        conn_flush(c);
    }
    conn_continue_read(c); /* nothing kept: receive again (unless paused) */
}

/* The record's extension and what it holds: the PROXY phase, the TLS
 * session, a kept buffer (given back to the backend, or freed). */
static void conn_ext_free(pc_conn_t *c)
{
    conn_proxy_free(c);
    conn_tls_free(c);
    if (c->ext && c->ext->held) held_free(c, c->ext->held, c->ext->held_len);
    pc__free(c->ext);
    c->ext = NULL;
}

static uint64_t user_timer_deadline(const pc_conn_t *c, uint64_t at)
{
    if (!c->ext || !c->ext->timer_at) return at;
    return (!at || c->ext->timer_at < at) ? c->ext->timer_at : at;
}

/* The timer expired while open: run the user's function if it is due.
 * Returns 1 if the connection is no longer open after it. */
static int user_timer_fire(pc_conn_t *c, uint64_t now)
{
    conn_ext_t *x = c->ext;
    if (!x || !x->timer_at || now < x->timer_at) return 0;
    x->timer_at = 0;
    x->timer_fn(c); /* may re-arm, close, abort */
    if (c->state == CS_OPEN) return 0;
    return 1;
}

int pc_conn_timer(pc_conn_t *c, unsigned ms, void (*fn)(pc_conn_t *c))
{
    if (!c || tls_conn != c || (ms && !fn)) return PC_EINVAL;
    if (c->state != CS_OPEN) return PC_ENOTCONN;
    if (!ms) {
        if (c->ext) c->ext->timer_at = 0; /* the timer recomputes when it fires */
        return 0;
    }
    if (!conn_ext(c)) return PC_ENOMEM;
    c->ext->timer_fn = fn;
    c->ext->timer_at = pc__deadline_ms(ms); /* never early */
    timer_sooner(c, c->ext->timer_at);
    return 0;
}

/* ---- on_sent ---- */

static void conn_notify_sent(pc_conn_t *c)
{
    /* bytes other threads queued wait in the inbox (or, during a TLS
     * handshake, in the session) for a kick: not handed over yet either */
    if (!c->sent_due || c->sending || !tx_empty(c) || atomic_load(&c->inbox_send_bytes)) return;
    c->sent_due = 0;
    if (c->state != CS_OPEN || !conn_cb(c)->on_sent) return;
    conn_cb(c)->on_sent(c);
    if (c->state != CS_CLOSED) conn_flush(c); /* what on_sent queued */
}

/* Under the lock: is c the connection the application knows by this id,
 * and not closed (on_close has not run)? */
static int id_open_locked(pc_conn_t *c, uint64_t id)
{
    return atomic_load(&c->id) == id && !c->hidden && c->state != CS_FREE && c->state != CS_CLOSED;
}

/* ---- pc_server_post_to ---- */

/* Run posted functions (newest first in p) in the order posted, each
 * followed by the bytes sent by id after it (kick_bytes, counted as k
 * says). k NULL: the connection is gone, every fn gets NULL, and their
 * bytes are freed, the caller settling the byte counts. */
static void posts_run(pc_conn_t *c, xpost_t *p, const kick_count_t *k)
{
    xpost_t *fifo = posts_reverse(p);
    posts_rest_t rest = {c, NULL, {0, 0}};
    posts_rest_t *prev = tls_posts_rest;
    if (k) {
        rest.k = *k;
        tls_posts_rest = &rest;
    }
    while (fifo) {
        xpost_t *nx = fifo->next;
        rest.cur = fifo;
        /* open or closing: the connection; closed (on_close ran): NULL */
        fifo->fn(k && c->state != CS_CLOSED ? c : NULL, fifo->arg);
        if (k)
            kick_bytes(c, &fifo->follow, k);
        else
            sendq_free(conn_srv(c), &fifo->follow);
        pc__free(fifo);
        fifo = nx;
    }
    tls_posts_rest = prev;
}

void conn_drop_posts(pc_conn_t *c)
{
    /* first those kept for a connect that never completed (older) */
    if (c->ext && c->ext->open_posts) {
        xpost_t *kept = c->ext->open_posts;
        c->ext->open_posts = NULL;
        posts_run(c, kept, NULL);
    }
    pc__mutex_lock(conn_lock(c));
    xpost_t *p = c->inbox_tx ? c->inbox_tx->posts : NULL;
    if (p) c->inbox_tx->posts = NULL;
    pc__mutex_unlock(conn_lock(c));
    if (p) posts_run(c, p, NULL);
}

int pc_server_post_to(pc_server_t *s, pc_conn_id_t id, void (*fn)(pc_conn_t *c, void *arg),
                      void *arg)
{
    if (!s || !fn) return PC_EINVAL;
    pc_conn_t *c = server_conn_lookup(s, id);
    if (!c) return PC_ENOTCONN;
    xpost_t *p = pc__malloc(sizeof *p);
    if (!p) return PC_ENOMEM;
    p->fn = fn;
    p->arg = arg;
    queue_init(&p->follow);
    /* the records wait in the inbox, a conn_tx_t (conn_xsend): allocated
     * here if it is empty, so that the kick needs no memory */
    conn_tx_t *spare = NULL;
    for (;;) {
        pc__mutex_lock(conn_lock(c));
        /* closed: on_close ran, the id is as good as stale */
        if (!id_open_locked(c, id)) {
            pc__mutex_unlock(conn_lock(c));
            pc__free(p);
            pc__free(spare);
            return PC_ENOTCONN;
        }
        if (c->inbox_tx || spare) break;
        pc__mutex_unlock(conn_lock(c));
        if (!(spare = pc__malloc(sizeof *spare))) {
            pc__free(p);
            return PC_ENOMEM;
        }
    }
    inbox_open_locked(c, &spare);
    p->next = c->inbox_tx->posts;
    c->inbox_tx->posts = p;
    int post = !c->kick_posted;
    c->kick_posted = 1;
    pc__mutex_unlock(conn_lock(c));
    pc__free(spare); /* another caller's was there first */
    if (post) conn_kick(c);
    return 0;
}

/* ---- other by-id calls ---- */

int pc_server_sendv_to(pc_server_t *s, pc_conn_id_t id, const pc_buf_t *bufs, unsigned n)
{
    if (!s || (!bufs && n)) return PC_EINVAL;
    pc_conn_t *c = server_conn_lookup(s, id);
    if (!c) return PC_ENOTCONN;
    if (tls_conn == c && atomic_load(&c->id) == id) return pc_conn_sendv(c, bufs, n);
    size_t total;
    if (bufs_total(bufs, n, &total) < 0) return PC_EINVAL;
    if (!total) return xsend_empty(c, id);
    return conn_xsend(c, id, bufs, n, total);
}

int pc_server_abort_id(pc_server_t *s, pc_conn_id_t id)
{
    if (!s) return PC_EINVAL;
    pc_conn_t *c = server_conn_lookup(s, id);
    if (!c) return PC_ENOTCONN;
    if (tls_conn == c && atomic_load(&c->id) == id) return pc_conn_abort(c);
    int rc = request_close(c, id, INBOX_CLOSE_ABORT, PC_CLOSE_ABORT, 1);
    if (rc < 0) return rc;
    /* drop what other threads queued now: no later send is accepted
     * (inbox_close); posted functions stay (they run, exactly once) */
    queue_t drop;
    queue_init(&drop);
    pc__mutex_lock(conn_lock(c));
    size_t bytes = 0;
    if (atomic_load(&c->id) == id && c->inbox_tx) {
        queue_move_all(&drop, &c->inbox_tx->sendq);
        follows_take(&drop, &c->inbox_tx->posts);
        /* the dropped chunks' bytes only: the count may also hold bytes a
         * kick is handing over right now, or a TLS session's pend
         * (conn_tls_pend), which their own paths settle */
        bytes = chunks_bytes(&drop);
        size_t in = atomic_load(&c->inbox_send_bytes);
        if (bytes > in) bytes = in;
        atomic_store(&c->inbox_send_bytes, in - bytes);
    }
    pc__mutex_unlock(conn_lock(c));
    sendq_free(s, &drop);
    counter_sub(&s->send_queued, bytes);
    return 0;
}

int64_t pc_server_send_queued(pc_server_t *s, pc_conn_id_t id)
{
    if (!s) return PC_EINVAL;
    pc_conn_t *c = server_conn_lookup(s, id);
    if (!c) return PC_ENOTCONN;
    pc__mutex_lock(conn_lock(c));
    /* the record may have been reused meanwhile: only a count read while the
     * id holds is this connection's */
    int open = id_open_locked(c, id);
    size_t q = send_queued_sum(c);
    pc__mutex_unlock(conn_lock(c));
    return open ? (int64_t)q : PC_ENOTCONN;
}

int pc_server_conn_ids(pc_server_t *s, pc_conn_id_t *out, int max)
{
    if (!s || !out || max <= 0) return 0;
    int n = 0;
    uint32_t slots = atomic_load_explicit(&s->nslots, memory_order_acquire);
    for (uint32_t slot = 0; slot < slots && n < max; slot++) {
        pc_conn_t *c = &s->chunks[slot / PC_CONN_CHUNK][slot % PC_CONN_CHUNK];
        if ((atomic_load(&c->id) >> 32) == 0) continue;
        pc__mutex_lock(conn_lock(c));
        uint64_t id = atomic_load(&c->id);
        /* not before on_open, not once a close was asked for */
        int open = c->state == CS_OPEN && !c->hidden && !c->inbox_close;
        pc__mutex_unlock(conn_lock(c));
        if (open) out[n++] = id;
    }
    return n;
}
