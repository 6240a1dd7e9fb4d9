/* SPDX-License-Identifier: MIT */
/* Engine internals shared by server.c, conn.c, accept*.c. */
#ifndef PC_IOCP_SERVER_H
#define PC_IOCP_SERVER_H

#include "portcullis.h"
#include "core/chunk.h"
#include "core/queue.h"
#include "core/stats.h"
#include "core/thread.h"
#include "core/timer_wheel.h"
#include "filter/pipeline.h"
#include "port.h"

/* op tags: what a completion means to the shared code */
enum {
    TAG_CONN_RECV = 1, /* connection readable */
    TAG_CONN_SEND,     /* connection send finished */
    TAG_CONN_KICK,     /* cross-thread work queued: a worker's kick_op (its kick list), or
                        * synthetic in a connection's strand (conn.c kick_tag_op) */
    TAG_CONN_CONNECT,  /* outbound connect finished */
    TAG_POST,          /* pc_server_post record */
    TAG_EXIT,          /* worker exit */
    TAG_CONN_TIMER,    /* synthetic: the connection's timer expired */
    TAG_STIMER,        /* a server timer to put on the receiving worker's wheel */
};

enum conn_state_e {
    CS_FREE = 0,
    CS_OPENING, /* accepted, handed to its worker, on_open not yet run */
    CS_OPEN,
    CS_CLOSING, /* flushing, then FIN, then discarding until the peer's FIN */
    CS_CLOSED,  /* socket closed, waiting for pending operations */
};

/* cross-thread close requests (conn->inbox_close): the low bits hold the
 * request not yet taken by the strand (INBOX_CLOSE_HOW); INBOX_CLOSE_TAKEN
 * stays once the strand took one, so that no send from another thread is
 * accepted between the request and the close itself */
enum {
    INBOX_CLOSE_NONE = 0,
    INBOX_CLOSE_GRACEFUL = 1,
    INBOX_CLOSE_ABORT = 2,
    INBOX_CLOSE_HOW = 3,
    INBOX_CLOSE_TAKEN = 4,
};

/* conn->no_linger: 0, or pc_conn_close_nolinger asked (NL_ASKED), or asked
 * and the last bytes went with MSG_MORE, held for the FIN (NL_HELD) */
enum { NL_ASKED = 1, NL_HELD = 2 };

/* buffers per gather write: with 4 KiB coalescing chunks this is 64 KiB or
 * more per send. The array is allocated only while a send of more than one
 * buffer is pending; a one-buffer send uses conn_tx_t's iov1. */
#define SEND_IOV_MAX 16
/* bytes per send operation at most: a send completes when all of it is out,
 * so this bounds how long progress stays invisible (the write timeout
 * measures progress per send) */
#define PC_SEND_MAX (256u * 1024u)
/* connection locks: striped over the server (a mutex in every connection
 * would be 40 bytes of each idle connection's record) */
#define PC_CONN_LOCKS 256
/* How far behind a peer deadline may be judged: worker_t.seen_ms lags its
 * last wait by at most this while no wait drains (overload), and a deadline
 * is put off for input the backend holds (port_input_held) at most this
 * long past it. */
#define JUDGE_LAG_MS 1000

/* An IPv4 or IPv6 address, without sockaddr_storage's 128 bytes. */
typedef union sockaddr_any_u {
    struct sockaddr sa;
    struct sockaddr_in v4;
    struct sockaddr_in6 v6;
} sockaddr_any_t;

/* Copy an IPv4/IPv6 address (src points at a sockaddr_in or sockaddr_in6 of
 * that family). Other families: dst zeroed, PC_EINVAL. */
int sockaddr_store(sockaddr_any_t *dst, const struct sockaddr *src);

typedef struct worker_s worker_t;
typedef struct listener_s listener_t;

/* A listener's kernel filter (kfilter_posix.c; docs/kernel-filter.md), under
 * the server's kf_lock. */
typedef struct kfilter_s {
    pc_kernel_filter_t tier; /* in force: EBPF, CBPF, OFF */
    unsigned insns;          /* CBPF program length */
    int logged;              /* the state below was logged */
    char why[160];           /* why lower than asked, "" if as asked */
    struct kf_ebpf_s *ebpf;  /* EBPF tier */
    uint64_t kernel_bytes;   /* EBPF: kernel memory of its program and maps, read
                              * when it was installed (constant until the next
                              * swap: every map is preallocated); 0 otherwise */
    uint64_t source_bytes;   /* EBPF: of which the source maps, shared by every
                              * eBPF listener of the server (kf_summary) */
} kfilter_t;

/* The send side of a connection: what only a connection with bytes to send
 * (or an outbound connect in flight) needs. Allocated from the running
 * worker's cache when the send queue becomes non-empty (pc_conn_send, a
 * kick adopting the inbox's, conn_open of an outbound connection), given
 * back when everything was handed to the kernel and nothing is pending
 * (conn_after), so an idle connection holds none. Strand-owned, except as
 * the inbox (c->inbox_tx, under conn_lock(c)). */
typedef struct conn_tx_s {
    op_t wr_op; /* the pending send, or the outbound connect before it */
    union {
        pc_conn_t *c;                /* in use: the owner (wr_op's completion finds it) */
        struct conn_tx_s *next_free; /* in a worker's cache */
    } u;
    queue_t sendq;        /* chunk_t */
    pc_buf_t iov1;        /* the gather list of a one-buffer send */
    pc_buf_t *iovx;       /* SEND_IOV_MAX buffers, allocated while a longer send is pending */
    uint64_t tx_since_ms; /* send queue non-empty and no progress since (write timeout) */
    /* as the inbox (c->inbox_tx): pc_server_post_to records, newest first,
     * each with the bytes sent by id after it (sendq: those before the
     * oldest) */
    struct inbox_post_s *posts;
} conn_tx_t;

/* What some connections need and an idle plain one does not: allocated at
 * first use (conn_ext), freed at the connection's release. Strand-owned,
 * or by pc_connect's caller before the connection is handed over. */
typedef struct conn_ext_s {
    void (*timer_fn)(pc_conn_t *c);
    uint64_t timer_at; /* 0: not armed */
    /* a backend buffer (io_uring provided buffers) that arrived while
     * reading was paused: a receive started before the pause (from another
     * thread with pc_server_post_to, or a cross-thread send passing high
     * water) completes with data anyway; it is delivered on resume */
    void *held;
    uint32_t held_len;
    sockaddr_any_t local; /* pc_conn_local_addr, once asked (family 0: not yet) */
    /* PX_PENDING: the header parser; PX_DONE: what the header said, if
     * anything is kept (conn_proxy.c); else NULL */
    void *px;
    /* TLSP_HANDSHAKE, TLSP_OPEN: the connection's tls_sess_t (src/tls) */
    void *tls;
    /* what of srv->send_held is the session's buffer for plaintext kept
     * until the handshake completes (conn_tls.c) */
    size_t tls_pend_held;
    const pc_callbacks_t *cb; /* pc_connect's own callbacks, else NULL (conn_cb) */
    /* a pc_connect connection still connecting: pc_server_post_to records
     * and a graceful close by id kept for the connect (newest first, each
     * with the bytes sent by id after it, counted in sendq_bytes, or in
     * the inbox if open_posts_in_inbox: a pc_connect_tls connection, whose
     * handshake keeps them; conn.c open_kept runs them); close_when_open also marks a graceful
     * close asked during a TLS handshake that holds plaintext, run once
     * the handshake completes (pc_conn_close, conn_tls.c io_open) */
    struct inbox_post_s *open_posts;
    uint8_t open_posts_in_inbox;
    uint8_t close_when_open;
    uint8_t close_when_open_reason;
} conn_ext_t;

/* conn_tx_t kept per worker for reuse (beyond it they are freed) */
#define TX_CACHE_MAX 256

/* One connection. Every idle connection costs this record and nothing else
 * in user space, so it is kept small (docs/engine.md has the layout); what
 * only an active connection needs is allocated while it is needed. */
struct pc_conn_s {
    /* the server is not stored (conn_srv); ps.q is the home worker (conn_worker) */
    port_sock_t ps;
    _Atomic uint64_t id; /* read by other threads (lookups by id) */
    /* ---- under conn_lock(c): strand state and the cross-thread inbox ---- */
    /* bytes other threads queued: chunks in the sendq of a conn_tx_t that
     * the first of them allocated (the kick adopts it as c->tx or gives it
     * to its worker's cache), NULL when the inbox is empty */
    struct conn_tx_s *inbox_tx;
    _Atomic size_t inbox_send_bytes; /* written under the lock, read anywhere */
    /* the home worker's kick list (under its kick_lock), while kick_posted:
     * a kick costs 8 bytes of the record, not an op of 40 */
    struct pc_conn_s *kick_next;
    uint8_t in_dispatch;
    /* completions that arrived while another worker ran the strand (shared
     * port only): parked says which ops, in which order (PARK_*, conn.c),
     * their results wait in op->res_*; a timer expiry is timer_due, a kick
     * kick_due */
    uint8_t parked;
    uint8_t timer_due;
    uint8_t kick_due;    /* shared port: a kick for the worker running the strand */
    uint8_t kick_posted; /* on the home worker's kick list, or its kick running */
    uint8_t inbox_close;
    uint8_t inbox_close_reason; /* pc_close_reason_t */
    /* open for I/O but not shown to the application yet (an accepted
     * connection's PROXY header or TLS handshake before on_open): calls by
     * id treat it as not open */
    uint8_t hidden;
    /* ---- owned by the strand ----
     * aligned apart from the locked bytes above: the compiler may read
     * neighbouring strand bytes with one wider load, which must not span
     * bytes other threads write under the lock (TSan reports it) */
    _Alignas(8) uint8_t state;
    uint8_t reading;     /* an OP_RECV is pending */
    uint8_t sending;     /* an OP_SEND is pending */
    uint8_t paused_user; /* pc_conn_pause_read */
    uint8_t paused_hw;   /* send queue above high water */
    uint8_t fin_sent;
    uint8_t peer_eof;
    uint8_t outbound;   /* opened by pc_connect (counted in srv->outbound, else in active) */
    uint8_t connecting; /* outbound connect in flight (tx->wr_op) */
    uint8_t no_linger;  /* pc_conn_close_nolinger: close at the FIN; NL_HELD once the
                         * last bytes went with MSG_MORE (conn_flush, do_fin) */
    uint8_t sent_due;   /* the application queued bytes since on_sent last ran */
    uint8_t reason;     /* pc_close_reason_t */
    uint8_t px_state;   /* PROXY protocol phase: PX_* (conn_proxy.c) */
    /* the timer as the strand last left it (the link is touched by the
     * expiring worker under that wheel's lock, or after it in its list of
     * claimed expiries, whose strands it owns); stale only while an expiry
     * is on its way to the strand, which re-evaluates */
    uint8_t timer_on;
    uint8_t tls_phase; /* TLSP_* (conn_tls.c) */
    /* accepted: an entry of the server's local-address table (srv->locals:
     * 1..PC_MAX_LISTENERS are the listeners, higher ones what a wildcard
     * listener's connections were accepted on); 0 for pc_connect's */
    uint8_t lst;
    /* the worker whose wheel holds the timer: the one that armed it, which
     * is awake and computes its next wait with the new deadline (on a shared
     * port the home worker may sleep in a wait that no packet ends) */
    uint16_t timer_wk;
    uint16_t ops_pending;   /* ops the backend holds (at most one per op of the record) */
    filter_ticket_t ticket; /* per-source slot held by an accepted connection */
    /* the send side, while the send queue holds bytes, a send or an
     * outbound connect is pending; NULL when idle (conn.c: tx_get, tx_idle) */
    struct conn_tx_s *tx;
    _Atomic size_t sendq_bytes; /* read by other threads (pc_conn_send_queued) */
    op_t recv_op;
    wheel_timer_t timer;
    uint64_t last_rx_ms; /* last receive (idle timeout) */
    /* CS_OPEN: header deadline, 0 = none; CS_CLOSING: the close deadline */
    uint64_t deadline_ms;
    /* the local address is not kept here: lst names it in the server's
     * table, or it is in ext (pc_conn_local_addr) */
    sockaddr_any_t peer;
    int err; /* here it fills the hole after peer */
    union {
        void *user;                  /* in use: pc_conn_set_user_data */
        struct pc_conn_s *next_free; /* free: the server's free list (table_lock),
                                      * or before that a worker's batch (its thread) */
    } u;
    /* pc_conn_timer's state, the local address once asked for, the PROXY
     * header's parser or results, the TLS session: allocated at first use */
    struct conn_ext_s *ext;
};

#if defined(__linux__) && UINTPTR_MAX == UINT64_MAX
/* An idle connection costs its record (and on io_uring a 24-byte urx_t):
 * 260 bytes per idle connection against nginx's 525, where issue 14's
 * target is half. Growing the record is a decision to take with that
 * figure in hand (docs/engine.md, "The connection record"). */
_Static_assert(sizeof(struct pc_conn_s) <= 232, "the idle connection record grew");
#endif

struct worker_s {
    pc_server_t *srv;
    int idx;
    pc_thread_t thread;
    timer_wheel_t wheel;
    timer_wheel_t swheel;  /* server timers (pc_server_timer), under wheel_lock too */
    pc_mutex_t wheel_lock; /* the wheel: uncontended on Linux; on a shared port (Windows)
                            * other workers disarm timers this worker armed, or move
                            * them to their own wheels; expiry takes connection locks
                            * while holding it (never the reverse) */
    /* connections of this home worker with cross-thread work queued (their
     * kick_posted set), oldest first, run by whichever worker takes kick_op */
    pc_mutex_t kick_lock;
    struct pc_conn_s *kick_head, *kick_tail;
    int kick_posted; /* kick_op is posted and has not yet taken the list */
    op_t kick_op;
    conn_tx_t *tx_cache; /* free conn_tx_t, touched only by this worker's thread */
    unsigned tx_cached;
    /* released connection records on their way to the table's free list,
     * handed over CONN_FREE_BATCH at a time (one table_lock for the batch),
     * and at the latest when the worker finds nothing to do (worker_main);
     * touched only by this worker's thread */
    struct pc_conn_s *free_head, *free_tail;
    unsigned free_n;
    char *scratch; /* receive buffer */
    size_t scratch_size;
    op_t exit_op;
    int exiting;
    uint64_t exit_by; /* exiting: the longest it waits for unreleased (worker_main) */
    /* connections of this home worker closed and not yet released (from
     * conn_close_socket to conn_release: operations still in the backend);
     * an exiting worker waits for them. Atomic: on a shared port (Windows)
     * another worker may release them. */
    _Atomic unsigned unreleased;
    /* Every completion of this worker's queue that arrived before this time
     * has been dispatched (worker_main: the return of the last drained wait,
     * kept at most JUDGE_LAG_MS behind the last wait). Deadlines that judge
     * the peer (idle, header, write, PROXY, linger) are judged against it
     * rather than the clock, so bytes that waited in the port while the
     * worker was busy count as arrived in time. This worker's thread only. */
    uint64_t seen_ms;
    /* counters written by this worker */
    counter_t bytes_in, bytes_out;
    counter_t closed[PC_CLOSE_REASON_COUNT];
    counter_t proxy_headers, proxy_timeouts, proxy_rejected;
    counter_t proxy_errors[PC_PROXY_ERR_COUNT];
    counter_t tls_handshakes, tls_handshake_errors, tls_handshakes_done, tls_resumed;
};

struct listener_s {
    pc_server_t *srv;
    int idx;
    sock_t fd;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    pc_thread_t thread;
    int thread_started;
    int cond_err; /* why SO_CONDITIONAL_ACCEPT was refused, or 0 */
    pc_accept_mode_t mode;
    kfilter_t kf;
    /* a kernel filter may be on the socket (set before the first attach,
     * never cleared): the sockets accepted from it inherit the program and
     * take it off (kfilter_accepted) */
    _Atomic int kf_inherit;
    int specific; /* bound to one address (not 0.0.0.0 / ::): it is every
                   * accepted connection's local address */
    _Atomic int stopping;
    /* the ticket of the connection accept_decide last accepted; consumed by
     * conn_start_accepted or accept_undo (one accept thread per listener) */
    filter_ticket_t pending_ticket;
    /* that connection came from a trusted proxy: it must start with a PROXY
     * header (consumed by conn_start_accepted, like pending_ticket) */
    uint8_t pending_proxy;
    pc_tls_ctx_t *tls;    /* TLS listener (pc_server_listen_tls): its context, a reference */
    unsigned data_wait_s; /* TCP_DEFER_ACCEPT in force, as the kernel rounded it; 0: none */
    void *accept_ev;      /* Windows: the event the accept thread waits on (FD_ACCEPT,
                           * and the stop's wake); NULL elsewhere */
};

#define PC_MAX_LISTENERS 16
/* entries of the local-address table: the listeners', then the addresses
 * wildcard listeners accepted on (conn.c: local_intern) */
#define PC_LOCALS_MAX 256

/* The local address a connection was accepted on, and its listener. */
typedef struct local_ent_s {
    sockaddr_any_t addr;
    uint8_t listener; /* index in srv->listeners */
} local_ent_t;
#define PC_CONN_CHUNK      1024 /* connections per table chunk */
#define PC_CONN_CHUNKS_MAX 4096

/* The eBPF tier's SYN counters the server sums (kfilter_counts): seen,
 * dropped by rules, rate, max, would drop, retransmissions passed. */
enum { KF_COUNTS = 6 };

struct pc_server_s {
    pc_server_config_t cfg;
    port_t *port;
    char backend_why[PC_BACKEND_WHY_MAX]; /* why this backend (stats, start-up log) */
    int nworkers;
    worker_t *workers;
    listener_t listeners[PC_MAX_LISTENERS];
    int nlisteners;
    /* local addresses of accepted connections, shared by them (an idle
     * connection keeps a byte, not 28): entry i + 1 is listener i, then the
     * addresses wildcard listeners accepted on, appended under locals_lock
     * and published by nlocals (release); never removed before destroy */
    local_ent_t locals[PC_LOCALS_MAX];
    _Atomic int nlocals;
    pc_mutex_t locals_lock;
    _Atomic int started;
    _Atomic int stopping;
    int stopped; /* the owner's thread only */
    /* the gate of posts to the workers' queues (server_post_admit) */
    _Atomic int posts_closed;
    _Atomic int posts_inflight;
    /* connection table: chunks of stable memory, never freed before destroy;
     * records are initialised only when first handed out, so a chunk's
     * untouched tail costs no resident memory */
    pc_mutex_t table_lock;
    pc_conn_t *chunks[PC_CONN_CHUNKS_MAX];
    _Atomic uint32_t nslots; /* records initialised; published with release */
    uint32_t nchunks;        /* chunks allocated (under table_lock) */
    pc_conn_t *free_conns;
    pc_mutex_t conn_locks[PC_CONN_LOCKS];
    _Atomic uint32_t next_worker;
    /* capacity: active connections; accept threads (room for one more) and
     * pc_server_stop (none left) wait on cap_cond */
    _Atomic uint64_t active;
    _Atomic uint64_t outbound; /* open pc_connect connections */
    pc_mutex_t cap_lock;
    pc_cond_t cap_cond;
    /* threads inside a cap_cond wait loop; server_capacity_changed takes
     * cap_lock only when there is one (see server_cap_wait_begin) */
    _Atomic int cap_waiters;
    /* counters written by the accept threads */
    counter_t accepted, deferred, accept_errors, connects;
    counter_t accept_batch_waits; /* accept-thread sleeps that gathered a batch */
    counter_t rejected[PC_STEP_COUNT];
    counter_t would_reject[PC_STEP_COUNT];
    counter_t send_queued;        /* bytes in all send queues */
    counter_t send_held;          /* memory of all send queues' chunks */
    counter_t send_refused;       /* sends refused by max_buffered_bytes */
    counter_t send_limit_refused; /* sends refused by send_queue_limit */
    /* server timers (server_timer.c): the registry of live timers; lock
     * order stimer_lock, then a worker's wheel_lock */
    pc_mutex_t stimer_lock;
    /* the live timers, chained by id (server_timer.c): cancel finds one
     * without a walk of every live timer under stimer_lock */
    struct stimer_s **stimer_tab;
    size_t stimer_tab_n, stimer_count;
    int64_t stimer_next_id;
    int stimer_closed; /* stop cancelled them all: no new ones */
    pc_accept_mode_t accept_mode;
    filter_t *filter; /* steps 1-5 of the verdict pipeline */
    /* kf_lock: listeners' kernel filters; serialises rule swaps and listener
     * set-up, held through a compile (a large set: a third of a second).
     * kf_mu: short; which eBPF objects the listeners hold (a pointer changes
     * and an object closes under both), kf_gone, nlisteners. The accept
     * thread, the workers and the stats take only kf_mu, so a swap under way
     * never stalls them. Order: kf_lock, then kf_mu. */
    pc_mutex_t kf_lock;
    pc_mutex_t kf_mu;
    /* a rule swap or a listener's set-up wants or holds kf_lock (for a
     * compile): kfilter_collect_hits skips rather than waits */
    _Atomic int kf_long;
    _Atomic int kf_ebpf;    /* listeners with the eBPF tier (per-source max in the kernel) */
    _Atomic int kf_weakest; /* the weakest listener's tier, for the stats (no lock) */
    _Atomic uint64_t kf_kernel_bytes; /* the listeners' kf.kernel_bytes summed, for the stats */
    uint64_t kf_gone[KF_COUNTS];      /* SYN counters of closed programs (kf_mu; kfilter_counts) */
    int kf_exempt_logged;             /* "per-source limits not on SYNs" was logged (kf_lock) */
    /* the smallest accept data wait in force over the listeners (seconds,
     * as the kernel rounded it), UINT_MAX before the first listener: read
     * by pc_server_stats from any thread */
    _Atomic unsigned data_wait_min;
    int data_wait_logged; /* a listener's refusal was logged (listen: setup thread) */
    /* cfg.sched_batch: 1 once every thread of the server runs under batch
     * scheduling (pc_server_stats from any thread) */
    atomic_int sched_batch_on;
};

/* The connection's slot in the table: the low half of its id (never
 * changes; only the generation, the high half, does). */
static inline uint32_t conn_slot(const pc_conn_t *c)
{
    return (uint32_t)atomic_load_explicit(&((pc_conn_t *)c)->id, memory_order_relaxed);
}

/* A chunk of the connection table: its records after a header naming the
 * server, so that a record finds its server from its slot rather than a
 * pointer of its own (8 bytes of every idle connection). */
typedef struct conn_chunk_s {
    pc_server_t *srv;
    pc_conn_t conns[]; /* PC_CONN_CHUNK */
} conn_chunk_t;

static inline pc_server_t *conn_srv(const pc_conn_t *c)
{
    const pc_conn_t *first = c - conn_slot(c) % PC_CONN_CHUNK;
    return pc_container_of(first, conn_chunk_t, conns)->srv;
}

/* The connection's home worker: its queue (Linux: the only one its
 * completions arrive on), the counters it adds to. Derived, not stored: 8
 * bytes of every idle connection. */
#define conn_worker(c) (&conn_srv(c)->workers[(c)->ps.q])

/* The connection's callbacks: the server's, or those pc_connect was given
 * (kept in ext: a pointer in every idle record would be 8 of its bytes). */
static inline const pc_callbacks_t *conn_cb(const pc_conn_t *c)
{
    return c->ext && c->ext->cb ? c->ext->cb : &conn_srv(c)->cfg.cb;
}

/* The listener an accepted connection came from (NULL: pc_connect's). */
static inline listener_t *conn_listener(const pc_conn_t *c)
{
    if (!c->lst) return NULL;
    pc_server_t *s = conn_srv(c);
    return &s->listeners[s->locals[c->lst].listener];
}

/* The lock of a connection's strand state and inbox (striped). */
static inline pc_mutex_t *conn_lock(const pc_conn_t *c)
{
    return &conn_srv(c)->conn_locks[conn_slot(c) % PC_CONN_LOCKS];
}

/* server.c */
pc_conn_t *server_conn_alloc(pc_server_t *s);
void server_conn_release(pc_server_t *s, pc_conn_t *c);
/* The two halves of server_conn_release: retire_id under conn_lock(c) (ids
 * of this connection fail from then on), then free_list hands records
 * first..last (linked through u.next_free) back to the table. */
void server_conn_retire_id(pc_conn_t *c);
void server_conn_free_list(pc_server_t *s, pc_conn_t *first, pc_conn_t *last);
pc_conn_t *server_conn_lookup(pc_server_t *s, pc_conn_id_t id);
worker_t *server_pick_worker(pc_server_t *s);
/* Post op to a worker's queue from any thread (pc_server_post, a server
 * timer's arming), through a gate that pc_server_stop closes before it
 * posts the workers' exits; it then waits for the posts inside the gate, so
 * every admitted post is queued ahead of the exits and runs. Returns 0, the
 * error of port_post, or PC_ENOTCONN (not started, or the stop is past its
 * drain): then nobody holds op. */
int server_post_op(pc_server_t *s, op_t *op);
/* Wakes the threads waiting on capacity (cap_cond). Call after changing
 * active, outbound or a stopping flag: it skips the lock when nobody waits. */
void server_capacity_changed(pc_server_t *s);
/* The wait loop on cap_cond is bracketed by these, under cap_lock: begin
 * before the loop's first check of the condition, end after its last. */
void server_cap_wait_begin(pc_server_t *s);
void server_cap_wait_end(pc_server_t *s);

/* server_worker.c: a worker thread's body (arg: its worker_t), started by
 * pc_server_start; returns after the worker's TAG_EXIT once it has nothing
 * left to wait for. */
void worker_main(void *arg);
/* How long a worker waits for completions: the sooner of its connection
 * wheel's and its server-timer wheel's waits (wheel_timeout: -1 none, at
 * most INT_MAX ms), cut by the slack that wakes it before the tick. -1:
 * no deadline. */
int worker_wait_ms(int conn_ms, int timer_ms);

/* server_timer.c */
void stimer_init(pc_server_t *s);
/* An TAG_STIMER op reached worker w: arm the timer on w's server wheel. */
void stimer_arm_op(worker_t *w, op_t *op);
/* Under w's wheel_lock: move the server timers wheel_expire put on expired
 * to w's own list due, off the wheel for good (a cancel from now on leaves
 * them to w). */
void stimer_claim(queue_t *expired, queue_t *due);
/* Run the server timers stimer_claim put on due. */
void stimer_run_expired(worker_t *w, queue_t *due);
/* Cancel every timer and refuse new ones (stop). */
void stimer_cancel_all(pc_server_t *s);
/* Free what is left (destroy, after the workers are joined). */
void stimer_destroy(pc_server_t *s);

/* conn.c */
/* c's ext, allocated (zeroed) if it has none; NULL: out of memory. */
conn_ext_t *conn_ext(pc_conn_t *c);
/* Run the post_to functions still queued on a connection being released
 * (in its inbox, or kept for a connect), with c == NULL (destroy after a
 * stop that could not close everything). */
void conn_drop_posts(pc_conn_t *c);
/* Hand the worker's batch of released records (conn_release) to the
 * table's free list now; the worker's thread only. */
void conn_release_flush(worker_t *w);
/* A worker is done (destroy, after the join): free its conn_tx_t cache. */
void conn_tx_cache_free(worker_t *w);
/* Free a connection's send side, inbox and extension (destroy, after the
 * join: a record a stop left unreleased). */
void conn_tx_destroy(pc_conn_t *c);
/* Worker w took home's kick_op: run the kicks on home's list (each in its
 * connection's strand). */
void conn_kicks_run(worker_t *w, worker_t *home);
/* A completion of one of c's ops (recv_op, tx->wr_op) reached worker w:
 * run it in c's strand, now or, on a shared port, by the worker that runs
 * the strand (server_worker.c's loop finds c from the op's tag). */
void conn_dispatch(worker_t *w, pc_conn_t *c, const completion_t *cpl);
/* Hand an accepted socket to a worker (accept thread). */
int conn_start_accepted(pc_server_t *s, listener_t *l, sock_t fd,
                        const struct sockaddr_storage *peer);
/* A timer just taken off w's wheel, with the wheel still locked: returns 1
 * if the caller owns the connection's strand now and must run the expiry
 * with conn_timer_expired once the wheel is unlocked; 0 if the worker
 * running the strand was told instead (shared port). */
int conn_timer_claim(pc_conn_t *c);
/* Run a claimed timer expiry in the connection's strand. */
void conn_timer_expired(worker_t *w, pc_conn_t *c);
/* Cross-thread close by the server (stop): also a connection not yet shown
 * to the application. 0, or PC_ENOTCONN (closed, or id no longer c's). */
int conn_request_close(pc_conn_t *c, uint64_t id, int how, pc_close_reason_t reason);

/* conn_proxy.c: the PROXY protocol phase of an accepted connection from a
 * trusted proxy, between the socket's hand-over and on_open. The strand runs
 * it (conn.c holds the state machine, this file the header and the verdict). */
enum { PX_NONE = 0, PX_WANTED, PX_PENDING, PX_DONE };
/* filter reader index of worker w (after the accept threads' indices) */
#define PX_READER(w) (PC_MAX_LISTENERS + (w)->idx)
/* Start reading the header: allocate the parser. 0 or PC_ENOMEM. */
int conn_proxy_begin(pc_conn_t *c);
/* Bytes arrived while PX_PENDING. Returns 0 (need more; all taken), 1 (the
 * header is complete and the real client passed the second verdict: *used
 * bytes were the header, the rest is the application's), or < 0: malformed
 * or rejected (counted; the caller resets the connection). w: the worker
 * running the strand (its filter reader index). */
int conn_proxy_feed(worker_t *w, pc_conn_t *c, const char *data, size_t n, size_t *used);
/* The header did not come in time (counts it). */
void conn_proxy_timed_out(pc_conn_t *c);
/* Free what the phase holds (at the connection's release). */
void conn_proxy_free(pc_conn_t *c);
/* An outbound connection's PROXY v2 header (pc_connect_opts_t.proxy_v2):
 * conn_proxy_out_new checks o's addresses (PC_EINVAL) and returns the record
 * kept in ext->px until connected (*out NULL when o asks for none; PC_ENOMEM);
 * conn_proxy_out_build writes the header once connected, from the record and
 * the connection's own addresses, frees the record, and returns the length
 * (0: an address of no usable family). */
int conn_proxy_out_new(const pc_connect_opts_t *o, void **out);
#define CONN_PROXY_OUT_MAX 64 /* >= PROXY_V2_BUILT_MAX */
size_t conn_proxy_out_build(pc_conn_t *c, uint8_t buf[CONN_PROXY_OUT_MAX]);
/* Is this source a trusted proxy? Accept threads (the set never changes). */
int server_proxy_trusted(const pc_server_t *s, const addr_t *a);

/* conn_tls.c: the TLS phase and TLS I/O of a connection (src/tls holds the
 * session; no OpenSSL header here). A TLS connection reads its handshake
 * after the accept verdict and the PROXY header, and runs on_open once the
 * handshake is complete; conn.c calls these where a plain connection would
 * deliver, send or close. */
enum { TLSP_NONE = 0, TLSP_WANTED, TLSP_HANDSHAKE, TLSP_OPEN };
/* A connection the application has not seen (its handshake is pending). */
#define CONN_TLS_UNSEEN(c) \
    (!(c)->outbound && ((c)->tls_phase == TLSP_WANTED || (c)->tls_phase == TLSP_HANDSHAKE))
/* The socket is established: create the session (accepted) and, for an
 * outbound one, write the ClientHello. 0 or < 0 (the caller resets). */
int conn_tls_begin(pc_conn_t *c);
/* Received bytes of a TLS connection: on_open once the handshake is done,
 * plaintext to on_data. Returns 0, TLS_FEED_EOF (close_notify), or < 0
 * (failed: counted; the caller closes with PC_CLOSE_TLS). */
int conn_tls_recv(pc_conn_t *c, const char *data, size_t n);
/* Encrypt the application's bytes into the send queue (strand). */
int conn_tls_send(pc_conn_t *c, const pc_buf_t *bufs, unsigned n);
/* Encrypt chunks other threads queued (chunk_t in q, total bytes counted in
 * send_queued, and still in inbox_send_bytes if in_inbox) into the send
 * queue, or keep them for the handshake, and free them. */
void conn_tls_send_chunks(pc_conn_t *c, queue_t *q, size_t total, int in_inbox);
/* inbox_send_bytes += add - sub, under the connection's lock (never below
 * 0): bytes a TLS session keeps for its handshake are counted there. */
void conn_inbox_count(pc_conn_t *c, size_t add, size_t sub);
/* Plaintext the session keeps until its handshake completes (an outbound
 * connection's bytes queued by id, or sent by a pc_server_post_to function,
 * meanwhile). It stays counted in inbox_send_bytes and send_queued, so that
 * send_queue_limit and pc_server_send_queued see it, and the memory holding
 * it in send_held, which max_buffered_bytes bounds (conn_ext_t
 * tls_pend_held): conn_tls_send and conn_tls_send_chunks add what they made
 * it grow, io_open takes out what the session wrote as the handshake
 * completed, conn_tls_free the rest. Strand only. */
size_t conn_tls_pend(const pc_conn_t *c);
/* How much the session's buffer for the handshake would grow if add more
 * bytes were sent now: 0 outside the handshake (they then go to send-queue
 * chunks) or while the buffer has room. Strand only. */
size_t conn_tls_pend_grow(const pc_conn_t *c, size_t add);
/* The most memory a send of bufs takes in the send queue, as TLS records,
 * when its last chunk has room bytes free (tls_write_mem_max): what
 * max_buffered_bytes checks a send on an open TLS connection against.
 * TLSP_OPEN only; strand. */
size_t conn_tls_send_mem(const pc_conn_t *c, const pc_buf_t *bufs, unsigned n, size_t room);
/* Graceful close: queue close_notify (after a completed handshake). */
void conn_tls_close_notify(pc_conn_t *c);
/* At the connection's release. */
void conn_tls_free(pc_conn_t *c);
/* Memory a thread took from max_buffered_bytes for the allocations it is
 * about to make, already counted in srv->send_held (conn.c). */
typedef struct held_take_s {
    pc_server_t *srv;
    size_t n;
} held_take_t;
/* conn.c: take memory for grow more bytes of send queue or TLS buffer
 * from max_buffered_bytes before allocating it. 0: send_held counts them
 * from now, and what this thread allocates next for s's send queues or TLS
 * buffers uses them up (conn_held_add); 1 if they would take the held
 * memory past the cap (counted in stats.send_refused, nothing taken, no
 * settle). The check and the count are one step, so senders on several
 * threads do not pass the cap together. A take that returned 0 is
 * followed, once allocated, by conn_buffer_settle(outer) on the same
 * thread; outer keeps the take it nests in (a log handler that sends).
 * Any thread. */
int conn_buffer_take(pc_server_t *s, size_t grow, held_take_t *outer);
/* The same for n bytes the caller has already counted in send_held (a
 * hand-over that counts its growth and the chunks it frees in one step):
 * what this thread allocates next uses them up. Never refused. */
void conn_buffer_taken(pc_server_t *s, size_t n, held_take_t *outer);
/* Give back what this thread took and its allocations did not use. */
void conn_buffer_settle(const held_take_t *outer);
/* Count mem bytes just allocated for one of s's send queues or TLS
 * sessions' kept plaintext in send_held, out of what this thread took
 * first. */
void conn_held_add(pc_server_t *s, size_t mem);
/* conn.c for conn_tls.c: queue raw (encrypted) bytes; 0 or PC_ENOMEM. */
int conn_queue_raw(pc_conn_t *c, const void *data, size_t len);
/* conn.c for conn_tls.c: the handshake is complete, run on_open. */
void conn_opened(pc_conn_t *c);
/* conn.c: an outbound connection (pc_connect), with a TLS session or NULL,
 * and o's PROXY header if o asks for one (o may be NULL). */
int conn_connect(pc_server_t *s, const char *endpoint, const char *source, const pc_callbacks_t *cb,
                 void *user, pc_conn_id_t *id, void *tls, const pc_connect_opts_t *o);

/* accept.c: the verdict pipeline (shared by the accept loops). On
 * PC_ACCEPT a capacity slot and a per-source ticket are held for the
 * connection: hand it over with conn_start_accepted, or give both back with
 * accept_undo if the socket cannot be had after all. again: the user
 * condition deferred this same connection at its last ask (its rule hit and
 * dry-run counts are not taken twice; FILTER_RETRY). */
pc_verdict_t accept_decide(listener_t *l, const struct sockaddr *peer, const struct sockaddr *local,
                           int *step, int again);
void accept_undo(listener_t *l);
/* Wait (on the capacity condvar) until the server is below max_connections,
 * the monotonic deadline passes or the listener stops. Returns 1 if capacity
 * is available. Accept threads. */
int accept_wait_capacity_until(listener_t *l, uint64_t deadline);
/* The connections an accept loop saw queued through its last pause for
 * capacity: deferred and counted already, not yet taken. */
typedef struct accept_pause_s {
    unsigned held;
    uint64_t deadline; /* that pause's */
} accept_pause_t;
/* Before taking the next connection off the backlog: at capacity, pause
 * until capacity frees, defer_timeout_ms passes or the listener stops, so
 * the backlog holds what does not fit. Meanwhile, every
 * ACCEPT_PAUSE_LOOK_MS and when the pause ends, look at the backlog: the
 * connections queued there beyond the p->held already counted are
 * deferred, counted once each in `deferred` now, and p->held grows to the
 * number queued; p->deadline becomes the pause's. Below capacity, p is
 * left as it is. Accept threads. */
#define ACCEPT_PAUSE_LOOK_MS 50
void accept_wait_capacity(listener_t *l, accept_pause_t *p);
/* The connection just taken off the backlog: the deadline to give
 * accept_hold_deferred, that of the pause it was queued through (taking
 * it from p->held), 0 if none (not deferred yet). Accept threads. */
uint64_t accept_pause_take(accept_pause_t *p);
/* accept_posix.c / accept_win.c: how many connections the listener's
 * backlog holds (Linux: its accept queue's length; Windows: 1 if one is
 * queued, as Winsock does not say how many). 0 once it stops. */
unsigned accept_backlog_queued(listener_t *l);
/* accept.c: a listener's name for log lines, the address fd is bound to
 * (with the port the system picked for port 0); failing that, asked
 * formatted, or "?" if asked is NULL. */
void listener_name(sock_t fd, const struct sockaddr *asked, char *buf, size_t n);

/* The pipeline deferred a connection that is already established (Linux,
 * or Windows without conditional accept): hold it, and so the backlog behind
 * it, as Winsock's queue holds the requests behind a deferred one, until the
 * verdict changes, the listener stops or the deadline passes; a verdict
 * still PC_DEFER then becomes PC_REJECT, counted at the step that deferred
 * it. deadline 0: a new deferral, counted in `deferred`, that may last
 * defer_timeout_ms from now; else the deadline of the pause the connection
 * was queued through (already counted; passed: rejected at once, so the
 * pause and the hold together last at most defer_timeout_ms). *step is
 * accept_decide's. Accept threads. */
#define ACCEPT_DEFER_RETRY_MS 5 /* pause before re-asking about a user-deferred connection */
pc_verdict_t accept_hold_deferred(listener_t *l, const struct sockaddr *peer, int *step,
                                  uint64_t deadline);

/* Back-off state of an accept loop after accept errors. */
typedef struct accept_backoff_s {
    unsigned delay_ms;   /* 0 after a success; 10 ms doubling to 1 s */
    unsigned suppressed; /* failures not logged since the last line */
    uint64_t last_log_ms;
} accept_backoff_t;

/* An accept call failed with a non-transient error (EMFILE, ENOBUFS, ...):
 * count it, log at most once a second (with the suppressed count), sleep the
 * next back-off step (a stop of the listener ends it early). err: the PC_E*
 * code; os_err: the errno / WSA code. */
void accept_failed(listener_t *l, accept_backoff_t *b, int err, int os_err);
/* The listener's kernel filter (kfilter_posix.c; kfilter_win.c: none), all under
 * s->kf_lock (they take kf_mu for the moments an eBPF object changes
 * hands). kfilter_attach: choose the tier for a bound, not yet listening
 * socket fd by trying (cfg.kernel_filter), attach, log the outcome; returns 0
 * (a refused tier is not an error: the listener runs with less, logged).
 * kfilter_reload: put rules (replacing old, the set in force) in the kernel,
 * before the user-space swap; a tier that cannot take it is dropped (logged).
 * kfilter_detach: detach and free before the listening socket closes. */
int kfilter_attach(pc_server_t *s, listener_t *l, sock_t fd, const pc_rules_t *rules);
void kfilter_reload(pc_server_t *s, listener_t *l, pc_rules_t *old, const pc_rules_t *rules);
void kfilter_detach(pc_server_t *s, listener_t *l);
/* A socket accepted from l, on its worker before it is used: take off the
 * kernel filter it inherited from the listener. Left on, the program ran on
 * every segment the connection received, and kept the rule set it was
 * built with (program, maps: megabytes for a large list) in kernel memory
 * for as long as the connection lived, one set per reload. */
void kfilter_accepted(listener_t *l, sock_t fd);
/* 1 when listener l's kernel filter applies the per-source limits to SYNs:
 * the eBPF tier, limits configured, and no source exempt from them (trusted
 * PROXY sources, allow_exempts). kf_lock held. */
int kfilter_per_source_in_kernel(const pc_server_t *s, const listener_t *l);
/* A connection from peer was accepted or closed: with per_source_max and the
 * eBPF tier, mark the source in the kernel while it holds its maximum (its
 * SYNs are dropped) and unmark it below. Re-reads the count under kf_mu, so
 * the last call leaves the mark right. No-op (no lock) without the eBPF tier.
 * Accept threads and workers; never waits for a rule swap (kf_mu only). */
void kfilter_source_changed(pc_server_t *s, const struct sockaddr *peer);
/* Fold the eBPF tier's kernel drops per rule into the hit counters of the
 * set in force. Any thread. During a rule swap or a listener's set-up
 * (kf_long) it returns at once: the program and the set in force may not
 * match then, and the swap folds the old program's drops itself. */
void kfilter_collect_hits(pc_server_t *s);
/* Add the eBPF tier's SYN counters (every listener, those detached included)
 * to out->kernel_* (takes kf_mu; never waits for a rule swap). Any thread. */
void kfilter_counts(pc_server_t *s, pc_server_stats_t *out);

/* Accept loops (accept_posix.c / accept_win.c). */
void accept_thread_main(void *arg);
/* The accept batching in force (cfg.accept_batch_us on Linux; 0 on
 * Windows, whose accept loop takes connections as WSAAccept returns them). */
unsigned accept_batch_us(const pc_server_t *s);
/* 1 when listeners can hold connections until data arrives (Linux:
 * TCP_DEFER_ACCEPT), 0 on Windows. */
int accept_data_wait_available(void);
/* Open, bind and listen l (its kernel filter attached before listen).
 * Called with s->kf_lock held, which pc_server_listen_addr keeps until the
 * listener is counted in s->nlisteners: a pc_server_set_rules meanwhile
 * waits, then reloads this listener's filter with the others, instead of
 * missing it (it loops over nlisteners) while it holds the set attached
 * before the swap. */
int accept_listener_open(pc_server_t *s, listener_t *l);
/* Make l's accept thread return (l->stopping is set first). Its listening
 * socket stays open: close it with accept_listener_close once the thread has
 * been joined. */
void accept_listener_wake(listener_t *l);
/* Close l's listening socket (and what the accept loop keeps with it); the
 * caller then forgets l->fd. Never while l's accept thread runs. */
void accept_listener_close(listener_t *l);
#ifdef _WIN32
/* Tests only (NULL otherwise): called on the accept thread after its stop
 * check and before each WSAAccept, with the listening handle it is about to
 * pass, so that a test can hold the thread in that gap. */
extern void (*volatile accept_win_gap_hook)(sock_t lfd);
#endif

#endif
