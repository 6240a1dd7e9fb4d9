/* SPDX-License-Identifier: MIT */
/*
 * portcullis — a C11 framework for high-concurrency TCP servers built around a
 * completion port, with a dedicated accept thread that decides per connection
 * whether to accept, reject or defer it.
 *
 * THREADING CONTRACT
 *
 * - One accept thread per listener runs the accept loop and the verdict
 *   pipeline (capacity, rules, per-source limits, user condition). It blocks
 *   only in the accept call itself, never allocates while deciding, and runs
 *   no application code except the optional condition callback, which must be
 *   fast and must not block: while it runs, no other connection is accepted on
 *   that listener.
 * - N worker threads (config.threads, default: number of CPUs) take
 *   completions and run the callbacks on_open, on_data, on_drain, on_close.
 *   Callbacks of one connection never run concurrently with each other.
 *   On Linux a connection is owned by one worker for its whole life (per-worker
 *   event loops), so all its callbacks run on that thread. On Windows all
 *   workers share one completion port and a connection's callbacks may run on
 *   different workers over time, one at a time (a per-connection strand).
 * - A pc_conn_t pointer is valid from on_open until on_close returns. Inside a
 *   callback of that connection every pc_conn_* function may be used. From any
 *   other thread use the 64-bit connection id (pc_conn_id): pc_server_send_to
 *   and pc_server_close_id are safe from any thread at any time and return
 *   PC_ENOTCONN for an id whose connection has closed (ids carry a generation
 *   and connection memory is never returned to the allocator while the server
 *   exists, so a stale id never reaches freed memory or another connection).
 *   The same holds for every pc_server_*_id / *_to call: pc_server_sendv_to,
 *   pc_server_abort_id, pc_server_send_queued, pc_server_post_to (which runs
 *   a function inside the connection's strand, where every pc_conn_* call is
 *   legal) and pc_server_conn_ids. Each of these refuses a NULL server with
 *   PC_EINVAL (pc_server_conn_ids: 0). An accepted connection is reached by id
 *   from its on_open on (before it, while a PROXY header or a TLS handshake
 *   is awaited, these calls treat it as not open); a pc_connect one from the
 *   moment its id is returned. pc_conn_send, pc_conn_close and
 *   pc_conn_abort are also safe from other threads while the caller knows
 *   the connection is open.
 * - pc_server_post runs a function on a worker thread; safe from any thread.
 *   pc_server_timer / pc_server_timer_cancel: server timers on the workers'
 *   timer wheels, from any thread; pc_conn_timer: one timer per connection,
 *   from its callbacks.
 * - pc_server_stats and the pc_rules_* counters may be read from any thread.
 * - pc_server_create, pc_server_listen, pc_server_start, pc_server_stop and
 *   pc_server_destroy are called by the thread that owns the server, never
 *   from a callback.
 *
 * ERRORS
 *
 * Functions return int: 0 on success, a positive count where documented, or a
 * negative PC_E* code (pc_strerror, pc_err_name). Operating-system errors are
 * translated to the same set on every platform.
 */
#ifndef PORTCULLIS_H
#define PORTCULLIS_H

#include <stddef.h>
#include <stdint.h>

#ifdef _WIN32
#include <winsock2.h>
#include <ws2tcpip.h>
#else
#include <sys/socket.h>
#include <netinet/in.h>
#endif

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32) && defined(PC_SHARED_BUILD)
#define PC_API __declspec(dllexport)
#elif defined(_WIN32) && defined(PC_SHARED)
#define PC_API __declspec(dllimport)
#elif defined(__GNUC__)
#define PC_API __attribute__((visibility("default")))
#else
#define PC_API
#endif

#define PC_VERSION_MAJOR 0
#define PC_VERSION_MINOR 1
#define PC_VERSION_PATCH 0

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */
/* ------------------------------------------------------------------------ */

/* One list generates the codes, pc_err_name and pc_strerror. */
#define PC_ERRNO_MAP(XX)                                                 \
    XX(EINVAL, 1, "invalid argument")                                    \
    XX(ENOMEM, 2, "out of memory")                                       \
    XX(EAGAIN, 3, "resource temporarily unavailable")                    \
    XX(ENOTCONN, 4, "connection is not open (closed or stale id)")       \
    XX(ECONNRESET, 5, "connection reset by peer")                        \
    XX(ECONNREFUSED, 6, "connection refused")                            \
    XX(ECONNABORTED, 7, "connection aborted")                            \
    XX(ETIMEDOUT, 8, "operation timed out")                              \
    XX(ECANCELED, 9, "operation canceled")                               \
    XX(EADDRINUSE, 10, "address already in use")                         \
    XX(EADDRNOTAVAIL, 11, "address not available")                       \
    XX(EACCES, 12, "permission denied")                                  \
    XX(EMFILE, 13, "too many open files")                                \
    XX(ENOBUFS, 14, "no buffer space available")                         \
    XX(EPIPE, 15, "broken pipe")                                         \
    XX(ENOSYS, 16, "function not implemented")                           \
    XX(ENOTSUP, 17, "operation not supported")                           \
    XX(EBUSY, 18, "resource busy or wrong state")                        \
    XX(ENOENT, 19, "no such file or directory")                          \
    XX(EIO, 20, "input/output error")                                    \
    XX(EPARSE, 21, "parse error")                                        \
    XX(ENETUNREACH, 22, "network is unreachable")                        \
    XX(EHOSTUNREACH, 23, "host is unreachable")                          \
    XX(ENOPROTOOPT, 24, "protocol option not available")                 \
    XX(EPERM, 25, "operation not permitted")                             \
    XX(ERANGE, 26, "value out of range")                                 \
    XX(EEXIST, 27, "already exists")                                     \
    XX(EDEADLK, 28, "would deadlock (called from a worker or callback)") \
    XX(ETLS, 29, "TLS failure (handshake, certificate, record)")         \
    XX(EUNKNOWN, 99, "unknown error")

typedef enum pc_errno_e {
    PC_OK = 0,
#define PC__ERR_ENUM(name, num, msg) PC_##name = -(num),
    PC_ERRNO_MAP(PC__ERR_ENUM)
#undef PC__ERR_ENUM
} pc_errno_t;

/* Human-readable message for a PC_E* code (or 0). Any thread. Never NULL. */
PC_API const char *pc_strerror(int err);
/* Symbolic name ("PC_ENOTCONN") for a PC_E* code. Any thread. Never NULL. */
PC_API const char *pc_err_name(int err);

/* ------------------------------------------------------------------------ */
/* Logging                                                                  */
/* ------------------------------------------------------------------------ */

typedef enum pc_log_level_e {
    PC_LOG_DEBUG = 0,
    PC_LOG_INFO = 1,
    PC_LOG_WARN = 2,
    PC_LOG_ERROR = 3,
    PC_LOG_OFF = 4,
} pc_log_level_t;

/* A log sink: receives one complete line without trailing newline. It may be
 * called from any library thread, concurrently; it must be thread-safe. */
typedef void (*pc_log_fn)(void *user, pc_log_level_t level, const char *line);

/* Install a log sink (NULL restores the default: one line to stderr); the
 * minimum level passed to it is pc_log_set_level's. Any thread, any time:
 * fn and user are switched together, so each line goes to the old pair or
 * the new one, never one's function with the other's pointer; a line being
 * logged as the call returns may still reach the old sink, so keep what its
 * user pointer points to alive. Each distinct pair set keeps a few bytes for
 * the life of the process. If those bytes cannot be had (no memory), the old
 * sink stays and says so at error level. */
PC_API void pc_log_set_handler(pc_log_fn fn, void *user);
/* Set the minimum level logged (default PC_LOG_INFO). Any thread. */
PC_API void pc_log_set_level(pc_log_level_t level);

/* ------------------------------------------------------------------------ */
/* Allocation                                                               */
/* ------------------------------------------------------------------------ */

/* All library allocation goes through these hooks; the default is mimalloc.
 * A set replaces malloc_fn, realloc_fn and free_fn together (a block goes
 * back to the allocator it came from); calloc_fn may be NULL (then malloc_fn
 * and zeroing). All four NULL: the default. calloc/realloc follow the C
 * library's semantics; free(NULL) must be a no-op. */
typedef struct pc_allocator_s {
    void *(*malloc_fn)(void *user, size_t size);
    void *(*calloc_fn)(void *user, size_t n, size_t size);
    void *(*realloc_fn)(void *user, void *ptr, size_t size);
    void (*free_fn)(void *user, void *ptr);
    void *user;
} pc_allocator_t;

/* Replace the allocator (NULL restores mimalloc). Only while no server, rule
 * set, rules builder, filter or TLS context is alive: memory must be freed by
 * the allocator that allocated it. Call it once, from one thread, before any
 * other thread uses the library. Returns 0, PC_EBUSY if such an object is
 * alive, or PC_EINVAL for a set that gives some of malloc_fn, realloc_fn and
 * free_fn but not all three (the allocator in force stays). */
PC_API int pc_set_allocator(const pc_allocator_t *a);

/* ------------------------------------------------------------------------ */
/* Buffers and addresses                                                    */
/* ------------------------------------------------------------------------ */

/* A buffer descriptor with the layout of WSABUF on Windows and struct iovec
 * elsewhere, so an array of them goes straight to WSASend / writev. */
#ifdef _WIN32
typedef struct pc_buf_s {
    unsigned long len;
    char *base;
} pc_buf_t;
#else
typedef struct pc_buf_s {
    void *base;
    size_t len;
} pc_buf_t;
#endif

/* Parse "1.2.3.4:80", "[::1]:80" or "host-less" ":80" (IPv4 any) into a
 * socket address. No DNS. Returns 0 or PC_EINVAL. Any thread. */
PC_API int pc_parse_endpoint(const char *text, struct sockaddr_storage *out, socklen_t *outlen);
/* Format an address as "1.2.3.4:80" or "[::1]:80" into buf (at least 64
 * bytes is always enough). Returns the length written or PC_EINVAL (not
 * AF_INET or AF_INET6, buf too small). Any thread. */
PC_API int pc_format_endpoint(const struct sockaddr *sa, char *buf, size_t size);

/* ------------------------------------------------------------------------ */
/* Server, connections, callbacks                                           */
/* ------------------------------------------------------------------------ */

typedef struct pc_server_s pc_server_t;
typedef struct pc_conn_s pc_conn_t;
/* A compiled allow/deny rule set (portcullis/filter.h). */
typedef struct pc_rules_s pc_rules_t;
/* Connection id: slot index in the low 32 bits, a generation in the high 32.
 * Never 0. */
typedef uint64_t pc_conn_id_t;

/* Why a connection ended; passed to on_close. */
#define PC_CLOSE_REASON_MAP(XX)                               \
    XX(PEER, "peer closed")                                   \
    XX(LOCAL, "closed by the application")                    \
    XX(ABORT, "aborted (reset) by the application")           \
    XX(RESET, "reset by peer")                                \
    XX(ERROR, "I/O error")                                    \
    XX(IDLE_TIMEOUT, "idle timeout")                          \
    XX(HEADER_TIMEOUT, "first-request timeout")               \
    XX(WRITE_TIMEOUT, "write timeout (peer stopped reading)") \
    XX(SERVER_STOP, "server stopping")                        \
    XX(NOMEM, "out of memory")                                \
    XX(TLS, "TLS handshake failed or bad record")             \
    XX(PROXY, "PROXY header missing, malformed or client rejected")

typedef enum pc_close_reason_e {
#define PC__CR_ENUM(name, msg) PC_CLOSE_##name,
    PC_CLOSE_REASON_MAP(PC__CR_ENUM)
#undef PC__CR_ENUM
        PC_CLOSE_REASON_COUNT
} pc_close_reason_t;

/* Name of a close reason ("idle timeout"). Any thread. Never NULL. */
PC_API const char *pc_close_reason_str(pc_close_reason_t r);

/* Verdict of the accept pipeline and of the user condition callback. */
typedef enum pc_verdict_e {
    PC_ACCEPT = 0,
    PC_REJECT = 1,
    PC_DEFER = 2,
} pc_verdict_t;

/* The steps of the verdict pipeline, in evaluation order (PC_STEP_CAPACITY
 * is 0, PC_STEP_CONDITION 4); stats count rejections per step. */
#define PC_STEP_MAP(XX)            \
    XX(CAPACITY, "capacity")       \
    XX(RULES, "rules")             \
    XX(SOURCE_MAX, "source_max")   \
    XX(SOURCE_RATE, "source_rate") \
    XX(CONDITION, "condition")

typedef enum pc_step_e {
#define PC__STEP_ENUM(name, str) PC_STEP_##name,
    PC_STEP_MAP(PC__STEP_ENUM)
#undef PC__STEP_ENUM
        PC_STEP_COUNT
} pc_step_t;

/* Name of a pipeline step ("capacity", "rules", ...). Never NULL. Any
 * thread. */
PC_API const char *pc_step_name(pc_step_t s);

/* PROXY protocol versions (config.proxy_versions is a mask of them). */
#define PC_PROXY_V1 1
#define PC_PROXY_V2 2

/* Why a PROXY header was refused (stats.proxy_errors[]). */
#define PC_PROXY_ERROR_MAP(XX)                                           \
    XX(SIGNATURE, "not a PROXY protocol header")                         \
    XX(VERSION, "PROXY protocol version unknown or not accepted")        \
    XX(TOO_LONG, "header too long")                                      \
    XX(V1_SYNTAX, "malformed v1 line")                                   \
    XX(ADDRESS, "bad address or port")                                   \
    XX(COMMAND, "unknown v2 command")                                    \
    XX(FAMILY, "unsupported v2 family or transport, or block too short") \
    XX(TLV, "malformed v2 TLV")

typedef enum pc_proxy_error_e {
#define PC__PE_ENUM(name, msg) PC_PROXY_ERR_##name,
    PC_PROXY_ERROR_MAP(PC__PE_ENUM)
#undef PC__PE_ENUM
        PC_PROXY_ERR_COUNT
} pc_proxy_error_t;

/* Text of a PROXY header error cause. Any thread. Never NULL. */
PC_API const char *pc_proxy_error_str(int cause);

/* PROXY v2 TLV types (the spec's PP2_TYPE_*), for pc_conn_proxy_tlv. The
 * PC_PROXY_TLV_SSL_* sub-fields are looked up inside the SSL TLV. */
#define PC_PROXY_TLV_ALPN        0x01
#define PC_PROXY_TLV_AUTHORITY   0x02
#define PC_PROXY_TLV_CRC32C      0x03
#define PC_PROXY_TLV_NOOP        0x04
#define PC_PROXY_TLV_UNIQUE_ID   0x05
#define PC_PROXY_TLV_SSL         0x20
#define PC_PROXY_TLV_SSL_VERSION 0x21
#define PC_PROXY_TLV_SSL_CN      0x22
#define PC_PROXY_TLV_SSL_CIPHER  0x23
#define PC_PROXY_TLV_SSL_SIG_ALG 0x24
#define PC_PROXY_TLV_SSL_KEY_ALG 0x25
#define PC_PROXY_TLV_NETNS       0x30

/* User condition, run on the accept thread for every connection that passed
 * the other steps: decide from the peer and local addresses. Must be fast and
 * must not block or call back into the library; returning PC_DEFER asks the
 * accept thread to retry this connection shortly (the whole pipeline again;
 * it is rejected if still deferred after config.defer_timeout_ms). The
 * retries are not counted again: the connection's rule hit, its would-be
 * rejects (shadow) and its deferral count once. */
typedef pc_verdict_t (*pc_condition_fn)(void *user, const struct sockaddr *peer,
                                        const struct sockaddr *local);

/* Callbacks, run on worker threads (see the threading contract). */
typedef struct pc_callbacks_s {
    /* A connection was accepted. Optional. */
    void (*on_open)(pc_conn_t *c);
    /* Bytes arrived. data is valid only during the call. Required. */
    void (*on_data)(pc_conn_t *c, const void *data, size_t len);
    /* The send queue fell below send_low_water after having exceeded
     * send_high_water, on a connection on_open has shown (a TLS handshake
     * or PROXY header still pending gets none). Optional. */
    void (*on_drain)(pc_conn_t *c);
    /* The connection ended and its socket is closed. err is 0 or the PC_E*
     * code behind reason. After return the pc_conn_t must not be used. For
     * an accepted connection it runs only if on_open did (one that could not
     * be set up, e.g. out of memory, is closed unseen and counted in
     * stats.closed); for pc_connect see there. */
    void (*on_close)(pc_conn_t *c, pc_close_reason_t reason, int err);
    /* The server is stopping (pc_server_stop): runs once per open connection
     * just before its graceful close starts, so the application can queue a
     * last message (it is flushed before the FIN) or close it itself.
     * pc_server_stopping() is already 1 when it runs. Optional. */
    void (*on_shutdown)(pc_conn_t *c);
    /* The send queue became empty: every byte queued so far, sends by id
     * from other threads included, has been handed to the kernel (not
     * necessarily received by the peer). Runs once per
     * transition from non-empty to empty after the application queued bytes
     * (bytes the library writes itself, such as a TLS handshake, do not
     * count), while the connection is open (not after pc_conn_close began),
     * after on_drain when both apply. Optional. */
    void (*on_sent)(pc_conn_t *c);
} pc_callbacks_t;

typedef enum pc_backend_e {
    PC_BACKEND_AUTO = 0,
    PC_BACKEND_EPOLL = 1,
    PC_BACKEND_URING = 2,
    PC_BACKEND_IOCP = 3,
} pc_backend_t;

/* Size of pc_server_stats_t.backend_why. */
#define PC_BACKEND_WHY_MAX 96

/* Name of a backend ("epoll", ...). Never NULL. Any thread. */
PC_API const char *pc_backend_name(pc_backend_t b);
/* Parse a backend name; returns the value or PC_EINVAL. Any thread. */
PC_API int pc_backend_parse(const char *name);

/* What the accept thread does when max_connections is reached. */
typedef enum pc_capacity_policy_e {
    PC_CAPACITY_DEFER = 0,  /* leave connections in the kernel's queue */
    PC_CAPACITY_REJECT = 1, /* refuse (Windows) / reset (post-handshake) */
} pc_capacity_policy_t;

/* Conditional accept (Windows SO_CONDITIONAL_ACCEPT). */
typedef enum pc_cond_accept_e {
    PC_COND_ACCEPT_AUTO = 0, /* on where the platform has it (Windows) */
    PC_COND_ACCEPT_ON = 1,   /* ask for it; fall back (logged) if refused */
    PC_COND_ACCEPT_OFF = 2,  /* decide after the handshake */
} pc_cond_accept_t;

/* The mode actually in force, reported in the stats. */
typedef enum pc_accept_mode_e {
    PC_ACCEPT_MODE_POST_HANDSHAKE = 0, /* decide after accept, reject with a reset */
    PC_ACCEPT_MODE_PRE_HANDSHAKE = 1,  /* WSAAccept condition before the handshake */
    PC_ACCEPT_MODE_KERNEL = 2,         /* Linux: every listener's kernel filter drops denied SYNs */
} pc_accept_mode_t;

/* The listener's kernel filter (Linux; docs/kernel-filter.md): a socket
 * filter on the listening socket judges every SYN before the handshake, the
 * accept thread's pipeline stays as the second stage. AUTO tries eBPF, then
 * classic BPF (if the rule set fits and shadow mode is off), then runs
 * without; an explicit tier is that tier or none (warning). Windows: ignored
 * (conditional accept is its pre-handshake verdict). */
typedef enum pc_kernel_filter_e {
    PC_KERNEL_FILTER_AUTO = 0, /* best permitted tier (default) */
    PC_KERNEL_FILTER_EBPF = 1, /* maps, counters, per-source limits in the kernel */
    PC_KERNEL_FILTER_CBPF = 2, /* rules only, compiled into a classic program */
    PC_KERNEL_FILTER_OFF = 3,  /* user space decides after the handshake */
} pc_kernel_filter_t;

/* "auto", "ebpf", "cbpf", "off"; "unknown" for any other value (never
 * NULL). Any thread. */
PC_API const char *pc_kernel_filter_name(pc_kernel_filter_t k);
/* Parse one of those names; returns the value or PC_EINVAL. Any thread. */
PC_API int pc_kernel_filter_parse(const char *name);

/* The largest pc_server_config_t.accept_batch_us (100 ms). */
#define PC_ACCEPT_BATCH_MAX_US 100000u
/* The largest pc_server_config_t.accept_data_wait_s (5 minutes). */
#define PC_ACCEPT_DATA_WAIT_MAX_S 300u
/* The smallest pc_server_config_t.max_buffered_bytes other than 0 (64 KiB).
 * A send whose new chunk (or TLS records) is larger than the cap is always
 * refused: under a chunk (4 KiB and its header) that was every send, and a
 * cap of a few KiB refused every send larger than it; 64 KiB leaves room
 * for a few full TLS records (16 KiB each) or larger chunks. */
#define PC_MAX_BUFFERED_MIN 65536u

typedef struct pc_server_config_s {
    /* Worker threads. Default 0 = number of CPUs. */
    int threads;
    /* Maximum open connections; default 10000. */
    unsigned max_connections;
    /* At max_connections: defer (default) or reject. */
    pc_capacity_policy_t at_capacity;
    /* How long a deferred connection may wait; still deferred then, it is
     * rejected. At capacity after the handshake (Linux; Windows without
     * conditional accept) the accept thread stops taking connections off
     * the backlog at most this long: the connection it then takes, if still
     * over capacity, is rejected at once, and the next pause starts; a pause
     * that ended with no connection queued rejects nobody (the next one to
     * arrive may wait this long from its arrival). Windows with conditional
     * accept: the request at the head of the queue is refused after this
     * long. Default 1000 ms.
     * stats.deferred counts the connections made to wait, each once, whether
     * then accepted or rejected: deferred by a PC_DEFER verdict (the
     * condition's, or capacity's with PC_CAPACITY_DEFER), or queued in the
     * backlog while the accept thread paused at capacity (counted while
     * they wait: the paused thread looks at the backlog every 50 ms;
     * Windows without conditional accept sees only whether one is queued,
     * so counts the others as they reach the head of the queue during a
     * pause). */
    unsigned defer_timeout_ms;
    /* Close connections with no traffic for this long: neither a received
     * byte nor a sent one (a send completing counts, so a client that only
     * reads stays open while the server writes to it). 0 = never (default).
     * Reason PC_CLOSE_IDLE_TIMEOUT. */
    unsigned idle_timeout_ms;
    /* First-request (header) timeout: a new connection must be told it has
     * what it waits for (pc_conn_set_header_timeout(c, 0), typically once a
     * request head is complete) within this long, or it is closed with
     * PC_CLOSE_HEADER_TIMEOUT. Unlike the idle timeout, bytes trickling in
     * do not extend it. 0 = none (default). */
    unsigned header_timeout_ms;
    /* TLS handshake timeout: a TLS connection whose handshake has not
     * completed this long after it started (accepted: from the accept;
     * pc_connect_tls: from the connect) is closed before on_open, counted
     * and reported as PC_CLOSE_HEADER_TIMEOUT. On accepted connections
     * header_timeout_ms, when set, bounds the handshake instead (with the
     * first request). Default 10000 ms, so that peers that connect and
     * never finish a handshake cannot hold connection slots; 0 = none. */
    unsigned handshake_timeout_ms;
    /* Connect timeout: a pc_connect (any form) not connected this long after
     * it started is closed, on_close with PC_CLOSE_ERROR and PC_ETIMEDOUT,
     * and on_open never runs. The idle, header and handshake timeouts start
     * once connected. Default 10000 ms; 0 = the system's own bound (SYN
     * retries: about 2 minutes on Linux, 21 s on Windows). */
    unsigned connect_timeout_ms;
    /* Write timeout: a connection whose send queue has made no progress for
     * this long (the peer stopped reading) is reset with
     * PC_CLOSE_WRITE_TIMEOUT. Progress is a send operation (at most 256 KiB)
     * completing; the kernel wakes a blocked sender only after a good part
     * of its socket buffer (often megabytes) has drained, so like nginx's
     * send_timeout this is meant in seconds. 0 = never (default). */
    unsigned write_timeout_ms;
    /* pc_conn_close and graceful stop: how long to read-and-discard after
     * our FIN while waiting for the peer's, before closing. Before the FIN,
     * while the queue flushes, it bounds each stretch without progress (a
     * send completing): a peer that reads slowly gets everything, one that
     * stopped reading is reset. pc_server_stop's own deadline bounds both.
     * 0: the socket is closed at the worker's next timer tick after our
     * FIN, whether the peer's came or not, and a flush that made no
     * progress by its next tick is reset. Default 5000. */
    unsigned close_linger_ms;
    /* Send queue marks: above high the connection stops reading; on_drain
     * fires when it falls to low. Defaults 1 MiB and 256 KiB. */
    size_t send_high_water;
    size_t send_low_water;
    /* Global cap on the memory held by send queues over all connections
     * (the capacity of their chunks, not only the payload, so it bounds the
     * process's memory whatever the message sizes: small sends coalesce into
     * a connection's tail chunk, from any thread; a TLS connection's
     * plaintext kept until its handshake completes counts with its
     * buffer's capacity): a send that needs a new chunk (or a larger
     * buffer) that would take the held memory past the cap is refused with
     * PC_ENOBUFS (counted in stats.send_refused) and, if that connection has
     * bytes queued, it stops reading until they drain. A send takes its
     * memory from the cap before allocating it, so senders on several
     * threads at once do not pass it together; on an open TLS connection,
     * the memory its records can take (docs/engine.md). 0 = no cap
     * (default); else at least PC_MAX_BUFFERED_MIN, or pc_server_create
     * fails with PC_EINVAL. */
    size_t max_buffered_bytes;
    /* Per-connection bound on queued bytes (sent or not yet handed over from
     * other threads): a send, from any thread, that would take a non-empty
     * queue past it is refused with PC_ENOBUFS, nothing queued, counted in
     * stats.send_limit_refused. A send into an empty queue is never refused
     * by it, so one message larger than the limit still goes out. On an
     * open TLS connection the queue holds records: a send from the
     * connection's callbacks counts the record bytes it makes (its
     * plaintext plus each record's header and tag, 22 bytes per record
     * under TLS 1.3), a send by id its plaintext until its worker encrypts
     * it; so the same sends fill the limit a little sooner from the
     * callbacks. A send from the connection's callbacks racing sends by id
     * from another thread may overshoot the limit by that one send (it is
     * checked without the connection's lock). 0 = 4 x send_high_water
     * (default); SIZE_MAX = no limit. */
    size_t send_queue_limit;
    /* Bytes read per receive (worker scratch buffer). Default 64 KiB; less
     * than 512 runs as 512. */
    size_t recv_buffer_size;
    /* listen() backlog. Default 511 (also for 0 or less). */
    int backlog;
    /* Backend; default PC_BACKEND_AUTO: IOCP on Windows; on Linux io_uring
     * when the kernel offers it (measured cheaper per request than epoll,
     * docs/uring.md), else epoll. The PORTCULLIS_BACKEND environment
     * variable, if set, overrides AUTO. pc_server_stats reports the backend
     * in force and why. */
    pc_backend_t backend;
    /* Conditional accept; default AUTO. */
    pc_cond_accept_t conditional_accept;
    /* Kernel filter on the listening sockets (Linux); default AUTO. */
    pc_kernel_filter_t kernel_filter;
    /* Accept batching under churn, in microseconds; 0 (default) = off:
     * the accept thread wakes for each new connection. With N > 0 (Linux),
     * an accept thread whose last drain of the backlog took 2 or more
     * connections, with 32 or more open, sleeps N us and then takes the
     * whole backlog: one wake-up per batch instead of one per connection,
     * for up to N us more before a new connection is handed over. A lone
     * connection, or a few clients reconnecting in turn, never wait. Every
     * connection still gets its verdict on the accept thread. Windows
     * accept threads take connections as WSAAccept returns them (logged
     * once, by pc_server_create). pc_server_stats has what runs (accept_batch_us) and
     * the sleeps (accept_batch_waits); docs/accept-batch.md the figures. At
     * most PC_ACCEPT_BATCH_MAX_US, else pc_server_create fails with
     * PC_EINVAL. */
    unsigned accept_batch_us;
    /* Accept once data arrived (Linux), in seconds; 0 (default) = off. With
     * N > 0 the kernel holds a new connection whose handshake completed
     * until the client's first bytes arrive (TCP_DEFER_ACCEPT), and only
     * then queues it for the accept thread: the verdict, the hand-over and
     * the worker's first receive then happen with the request already
     * there, instead of a worker waking once for the connection and again
     * for its data. For protocols where the client speaks first (HTTP, TLS,
     * a PROXY header). A client that sends nothing is accepted after about
     * N s, when it answers the SYN-ACK the kernel sends again (the kernel
     * rounds N up to its retransmission schedule, 1, 3, 7, 15, ... s; 300
     * becomes 367), so a protocol where the server speaks first would wait
     * that long for every client: leave it off there. While held, a
     * connection takes a place in the listener's SYN queue (backlog), not a
     * socket or a record; once that queue is full the kernel answers new
     * SYNs with cookies (net.ipv4.tcp_syncookies), and those connections
     * are accepted without the wait. Windows' WSAAccept has no equivalent
     * (logged once by pc_server_create). pc_server_stats has what runs
     * (accept_data_wait_s, as the kernel rounded it). At most
     * PC_ACCEPT_DATA_WAIT_MAX_S, else pc_server_create fails with
     * PC_EINVAL. */
    unsigned accept_data_wait_s;
    /* Batch scheduling for the server's threads (Linux); 0 (default) = off.
     * With 1, pc_server_start puts the accept and worker threads under
     * SCHED_BATCH, nice value unchanged: a woken server thread does not
     * preempt the thread running on its CPU, it waits for that one's turn
     * to end, and then finds more work waiting. A CPU with time to spare
     * runs it at once, as before; on busy CPUs connections and requests
     * gather per wake-up instead of each waking a thread. The cost is
     * latency while the CPUs are busy: a woken thread may wait the kernel's
     * time slice (a few ms). The application's callbacks run on these
     * workers, so they are scheduled the same way. A thread started under
     * another policy than the default (threads inherit their creator's:
     * real-time, SCHED_IDLE) keeps it. pc_server_stats.sched_batch reports
     * what runs; where it cannot be had (Windows, another policy kept, the
     * call refused) pc_server_start logs why once and starts anyway.
     * docs/sched-batch.md has the figures. */
    int sched_batch;
    /* Callbacks. on_data is required. */
    pc_callbacks_t cb;
    /* ---- accept filter (steps 2-4 of the pipeline; portcullis/filter.h) ---- */
    /* Initial rule set; the server takes ownership when pc_server_create
     * succeeds (freed at destroy or when replaced); if it fails, the set
     * stays the caller's. NULL: no rules (everyone passes step 2). Not the
     * set given as proxy_trusted (each is owned and freed on its own):
     * pc_server_create refuses that with PC_EINVAL. */
    pc_rules_t *rules;
    /* Concurrent connections per source; 0 = unlimited (default). */
    unsigned per_source_max;
    /* New connections per second per source (token bucket) and the bucket
     * size; rate 0 = unlimited (default); burst 0 = max(1, rate). A rate
     * below 1e-6 (one per ~11.6 days), or a bucket whose burst - 1 tokens
     * take over ~146 years to refill, is refused (PC_EINVAL). */
    double per_source_rate;
    unsigned per_source_burst;
    /* Source key: the address masked to these prefix lengths. Defaults 32
     * (IPv4 address) and 64 (IPv6 /64). */
    unsigned source_prefix_v4;
    unsigned source_prefix_v6;
    /* Entries of the per-source table (bounded; default 65536). When it is
     * full, new sources share one overflow entry (limited together) and the
     * stats count it (stats.source_table_full); see docs/filter.md. At most
     * 2^30 when a per-source limit is set, else pc_server_create fails with
     * PC_EINVAL. */
    unsigned source_table_size;
    /* Fail closed when the per-source table is full: a new source that finds
     * no entry is refused (counted in stats.rejected[PC_STEP_SOURCE_MAX] and
     * stats.source_table_full) instead of sharing the overflow entry.
     * Default 0 (share). */
    int source_table_full_reject;
    /* An explicit allow rule exempts its sources from the per-source limits
     * (default 0: limits apply to everyone unless asked). */
    int allow_exempts;
    /* Shadow (dry-run) mode: evaluate rules and per-source limits, count
     * what would have been rejected (stats.would_reject), accept anyway.
     * Capacity and the user condition still apply. Default 0. */
    int shadow;
    /* With shadow: dry-run the user condition too. A reject from it is
     * counted (stats.would_reject[PC_STEP_CONDITION]) and, like a defer, the
     * connection is accepted. Ignored without shadow. Default 0. */
    int shadow_condition;
    /* Optional user condition (pipeline step 5) and its argument. */
    pc_condition_fn condition;
    void *condition_user;
    /* ---- PROXY protocol (v1/v2; docs/scale-out.md) ----
     * Trusted proxies: a connection whose source matches an allow rule of
     * this set must begin with a PROXY header; any other source is never
     * parsed for one (its bytes are the application's). The server takes
     * ownership once pc_server_create succeeds (on failure the caller keeps
     * it); it is fixed for the server's life. NULL (default): PROXY
     * protocol off.
     * At the accept thread a trusted proxy is judged by capacity, the rules
     * and the condition on its own address, but not by the per-source limits
     * (its address is shared by all its clients). On the worker, before
     * on_open, the header is read within proxy_timeout_ms, then the real
     * client gets a second verdict: rules, per-source limits keyed by it,
     * the condition (called with the real peer address; PC_DEFER counts as a
     * reject there). A missing (timeout), malformed or rejected header resets
     * the connection without on_open or on_close (reason PC_CLOSE_PROXY in
     * stats.closed, as is a peer that closes or resets before its header is
     * complete); until then proxy_timeout_ms alone bounds the connection
     * (idle_timeout_ms starts counting from on_open). A LOCAL header (or
     * v1 UNKNOWN) keeps the socket's addresses and skips the second
     * verdict. */
    pc_rules_t *proxy_trusted;
    /* Versions accepted: PC_PROXY_V1 | PC_PROXY_V2 (default, and 0: both). */
    unsigned proxy_versions;
    /* How long a trusted connection has to deliver its header; default (and
     * 0) 3000. */
    unsigned proxy_timeout_ms;
    /* Opaque pointer for the application (pc_server_user_data). */
    void *user_data;
} pc_server_config_t;

/* Fill a config with the documented defaults. Any thread. */
PC_API void pc_server_config_init(pc_server_config_t *cfg);

/* Create a server from a config (copied). Starts no thread. The thread that
 * will own the server (see the threading contract above). Errors: PC_EINVAL
 * (cfg or out NULL, or a bad config: on_data NULL, a field out of its
 * documented range, an enum field such as backend or kernel_filter holding
 * none of its values, ...; each refused config is logged with the field's
 * name),
 * PC_ENOMEM, PC_ENOSYS (backend not built or not usable), or the system's
 * error when the backend's queue cannot be made (e.g. PC_EMFILE; an io_uring
 * backend asked for by name reports its ring's error). On failure cfg->rules
 * stays the caller's to free. */
PC_API int pc_server_create(const pc_server_config_t *cfg, pc_server_t **out);

/* Bind and listen on an address ("127.0.0.1:7000", "[::1]:0"); port 0 picks a
 * free port, read it back with pc_server_listener_port. IPv6 listeners are
 * IPv6-only. May be called several times before pc_server_start, for at most
 * 16 listeners. The thread that owns the server. Returns the listener index
 * (>= 0) or PC_EINVAL, PC_EADDRINUSE, PC_EACCES, PC_EBUSY (already started),
 * PC_ENOBUFS (16 listeners already), or another system error of bind or
 * listen. */
PC_API int pc_server_listen(pc_server_t *s, const char *endpoint);
/* Same with a socket address: AF_INET (len at least sizeof(struct
 * sockaddr_in)) or AF_INET6 (at least sizeof(struct sockaddr_in6)); any
 * other family (AF_UNIX, ...) or a shorter len is PC_EINVAL. The thread
 * that owns the server, before pc_server_start, as pc_server_listen. */
PC_API int pc_server_listen_addr(pc_server_t *s, const struct sockaddr *sa, socklen_t len);
/* Bound port of listener idx, or PC_EINVAL (s NULL, idx not a listener).
 * Any thread once the server is started; before, the thread that adds the
 * listeners. */
PC_API int pc_server_listener_port(const pc_server_t *s, int idx);

/* Start the worker threads and one accept thread per listener (a server
 * with no listener only runs outbound connections, see pc_connect). The
 * thread that owns the server. Returns 0, PC_EINVAL (s NULL), PC_EBUSY
 * (already started), or the system's error when a thread cannot be started
 * (e.g. PC_ENOMEM); then no thread of the server runs. */
PC_API int pc_server_start(pc_server_t *s);

/* Stop gracefully: stop accepting, tell the application (on_shutdown per
 * connection, pc_server_stopping), close every connection gracefully
 * (queued bytes are flushed, FIN, read-and-discard until the peer closes),
 * wait at most drain_ms for that, then abort what remains (reset), and join
 * all threads. on_close runs for every connection before this returns.
 * The thread that owns the server (or any other thread that is not one of
 * the server's). Returns 0, PC_EINVAL (s NULL), or PC_EDEADLK if called
 * from one of the server's own threads
 * (a callback or posted function on a worker, the condition callback on an
 * accept thread): nothing is stopped then. Idempotent. */
PC_API int pc_server_stop(pc_server_t *s, unsigned drain_ms);

/* Replace the rule set atomically, between two accepts: the accept threads
 * never wait and never see a half-built set. The server takes ownership of
 * rules (NULL removes every rule); the old set is freed once no accept thread
 * uses it, and hit counters of rules present in both carry over. Listeners
 * with a kernel filter get the new set in the kernel first; a listener whose
 * tier cannot take it (too big for classic BPF, attach refused) drops its
 * kernel filter (logged, pc_server_listener_filter) and user space judges it
 * after the handshake. The call returns once the kernel holds the new set:
 * with a kernel filter and a large set that is the compile (1.1M prefixes:
 * about 0.3 s), during which accepts, connections, pc_server_stats and
 * pc_server_top_rules go on; a second pc_server_set_rules or
 * pc_server_listener_filter waits for it. Any thread (not from the condition
 * callback).
 * Returns 0, or PC_EINVAL (s NULL, or rules is the set already in force or
 * the server's proxy_trusted set); on PC_EINVAL nothing changes: the
 * server takes nothing (a set the caller owned stays the caller's). */
PC_API int pc_server_set_rules(pc_server_t *s, pc_rules_t *rules);

/* Copy up to max rules of the set in force, most hits first, into out
 * (pc_rule_info_t, portcullis/filter.h). The eBPF kernel filter's drops are
 * folded into the hits first (a bpf-map read, no syscall), so a rule's hits
 * include the SYNs it dropped before the handshake (pc_rules_get on a set
 * shows them once this or a reload folded them). While a pc_server_set_rules
 * is putting a set in the kernel (or a listener is being added), the fold is
 * skipped rather than waited for (the swap folds them itself). Any thread.
 * Returns how many (0 when s or out is NULL or max <= 0). */
struct pc_rule_info_s;
PC_API int pc_server_top_rules(pc_server_t *s, struct pc_rule_info_s *out, int max);

/* 1 once pc_server_stop has begun (the server no longer accepts and is
 * closing its connections), else 0. Any thread. */
PC_API int pc_server_stopping(const pc_server_t *s);

/* Free a server (stopping it first with a 0 ms drain if still running). The
 * thread that owns the server; from one of the server's own threads (see
 * pc_server_stop) it refuses, logged, and the server goes on running. */
PC_API void pc_server_destroy(pc_server_t *s);

/* The config's user_data. Any thread. */
PC_API void *pc_server_user_data(const pc_server_t *s);

/* Queue a copy of data for the connection with this id. Any thread. Small
 * sends coalesce into the connection's tail chunk. Returns 0, PC_EINVAL
 * (s NULL, or data NULL with len > 0), PC_ENOTCONN (closed, closing or
 * stale id), PC_ENOMEM, PC_ENOBUFS (the connection's send_queue_limit or
 * the server's max_buffered_bytes would be passed; nothing queued). */
PC_API int pc_server_send_to(pc_server_t *s, pc_conn_id_t id, const void *data, size_t len);
/* Gather variant of pc_server_send_to: n buffers, one call, one copy, queued
 * as one message (all or nothing). Any thread. Same errors, and PC_EINVAL
 * for bufs NULL with n > 0 or lengths whose sum passes SIZE_MAX. */
PC_API int pc_server_sendv_to(pc_server_t *s, pc_conn_id_t id, const pc_buf_t *bufs, unsigned n);
/* Gracefully close the connection with this id (as pc_conn_close). Any
 * thread. Returns 0, PC_EINVAL (s NULL) or PC_ENOTCONN. A pc_connect
 * connection still connecting closes once connected (after its on_open;
 * with TLS, as its handshake starts, and once it completes if bytes were
 * sent to it: see pc_conn_close), flushing what was sent to it. */
PC_API int pc_server_close_id(pc_server_t *s, pc_conn_id_t id);
/* Abort the connection with this id (as pc_conn_abort): bytes not yet handed
 * over by other threads are dropped at once, the connection's own queue as
 * soon as its worker runs it (at once if it is idle), and the peer gets a
 * reset; no later send is accepted. on_close runs with PC_CLOSE_ABORT. Any
 * thread. Returns 0, PC_EINVAL (s NULL) or PC_ENOTCONN (closed or stale id). */
PC_API int pc_server_abort_id(pc_server_t *s, pc_conn_id_t id);
/* Bytes queued for the connection with this id and not yet handed to the
 * kernel (its send queue plus what other threads queued and its worker has
 * not taken yet; each read atomically, not one instant). Any thread.
 * Returns the count (>= 0), PC_EINVAL (s NULL) or PC_ENOTCONN. */
PC_API int64_t pc_server_send_queued(pc_server_t *s, pc_conn_id_t id);
/* Run fn(c, arg) inside the connection's strand: on its worker, never
 * concurrently with its callbacks, so every pc_conn_* function is legal
 * there (pause/resume reading, send, close, timers). Functions posted to
 * one connection and bytes sent to it by id keep the order they were
 * given in: fn runs after the bytes sent before it, and what fn sends
 * goes out before the bytes sent by id after it (if fn closes the
 * connection gracefully, those still go before the FIN: they were
 * accepted before the close). That is the order of calls from other
 * threads: from the connection's own callbacks (fn included) the by-id
 * calls act at once, as pc_conn_send/close/abort do, while a function
 * posted there runs after the callback returns, so after them. Once this
 * returned 0, fn runs exactly once: with c the connection if it is still
 * open then (or closing: pc_conn_* calls then return PC_ENOTCONN where
 * they would in a callback), or with c == NULL, on a worker, if the
 * connection closed (on_close ran) before fn's turn, so arg can always be
 * freed in fn (one still queued when pc_server_destroy frees the server, on
 * a connection whose worker gave up on its backend at the stop, runs there,
 * on the destroying thread, with c == NULL). On a pc_connect connection
 * still connecting, fn waits for the connect: after on_open (with TLS, as
 * the handshake starts), or NULL if it fails. Any thread, including the
 * connection's own callbacks (fn runs after the current callback returns).
 * Returns 0, PC_EINVAL (s or fn NULL), PC_ENOTCONN (closed or stale id; fn
 * is not called), PC_ENOMEM. */
PC_API int pc_server_post_to(pc_server_t *s, pc_conn_id_t id, void (*fn)(pc_conn_t *c, void *arg),
                             void *arg);
/* Copy the ids of the open connections into out, at most max: accepted
 * ones once on_open has run, pc_connect ones once connected (a TLS one from
 * the start of its handshake, before its on_open: by-id calls reach it from
 * its id's return on), each until its close began.
 * A snapshot: connections may open or close meanwhile. Any thread. Returns
 * how many were written (== max: there may be more; 0 when s or out is NULL
 * or max <= 0). */
PC_API int pc_server_conn_ids(pc_server_t *s, pc_conn_id_t *out, int max);

/* Run fn(s, arg) on a worker thread ms milliseconds from now (timer wheel:
 * 10 ms resolution, never early), then every ms milliseconds if repeat.
 * Runs of one timer never overlap. Timers not yet cancelled are cancelled
 * by pc_server_stop after its drain (while connections close, they still
 * run). Any thread. Returns the timer's id (> 0; ids count up from 1 in
 * each server, so keep a timer's id with its server), or PC_EINVAL (s or fn NULL,
 * repeat with ms 0), PC_ENOMEM, PC_ENOTCONN (server not running or
 * stopped). */
PC_API int64_t pc_server_timer(pc_server_t *s, unsigned ms, int repeat,
                               void (*fn)(pc_server_t *s, void *arg), void *arg);
/* Cancel a server timer: fn is not started again after this returns. Any
 * thread, including fn itself. Returns 0; PC_EBUSY when fn is running right
 * now on another thread (it finishes that run; free arg after it returned:
 * calling again answers PC_EBUSY for as long as that run lasts, then
 * PC_ENOENT, so retrying until it is not PC_EBUSY waits for it; also for a
 * timer pc_server_stop cancelled); PC_ENOENT (unknown id, one-shot timer
 * already run, already cancelled and not running). */
PC_API int pc_server_timer_cancel(pc_server_t *s, int64_t id);

/* Run fn(s, arg) once on a worker thread. Any thread. A post that returned
 * 0 runs, also when pc_server_stop is under way (it runs before the workers
 * exit). Returns 0, PC_EINVAL (s or fn NULL), PC_ENOMEM, PC_ENOTCONN
 * (server not started, or its stop is past the drain). */
PC_API int pc_server_post(pc_server_t *s, void (*fn)(pc_server_t *s, void *arg), void *arg);

/* Open an outbound TCP connection to endpoint ("127.0.0.1:80", "[::1]:80")
 * on the server's workers, so clients are built on the same engine. source,
 * if not NULL, is a local IP address to bind first ("127.0.0.2"; on Linux
 * its port is chosen by the connect, for the whole 4-tuple, so one source is
 * not limited to the ephemeral range across different peers). cb, if not
 * NULL, replaces the server's callbacks for this connection (on_data is
 * required then); it is kept, not copied, so it must stay valid until the
 * connection's on_close has returned (a static or long-lived struct). user
 * becomes the connection's user data. When connected,
 * on_open runs; if the connection fails, on_close runs with PC_CLOSE_ERROR
 * and the error (PC_ECONNREFUSED, ...) and on_open never does. The server
 * must be started (it needs no listener). Outbound connections do not count
 * against max_connections and skip the accept pipeline. Any thread. Returns
 * 0 and the id in *id (may be NULL), or PC_EINVAL, PC_ENOMEM, PC_EMFILE,
 * PC_ENOTCONN (server not running), or what binding source failed with
 * (PC_EADDRNOTAVAIL, PC_EADDRINUSE, PC_EACCES). On Linux a source with no
 * port left for that peer is found out by the connect, on the worker:
 * on_close with PC_CLOSE_ERROR and PC_EADDRNOTAVAIL, not this return. */
PC_API int pc_connect(pc_server_t *s, const char *endpoint, const char *source,
                      const pc_callbacks_t *cb, void *user, pc_conn_id_t *id);

/* Options of pc_connect_ex; pc_connect_opts_init sets them all off. */
typedef struct pc_connect_opts_s {
    const char *source; /* local IP address to bind first; NULL: any */
    /* A client context (pc_tls_ctx_new_client): TLS over the connection, as
     * pc_connect_tls; NULL: plain. tls_host as pc_connect_tls's host. */
    struct pc_tls_ctx_s *tls;
    const char *tls_host;
    /* 1: the connection starts with a PROXY protocol v2 header (command
     * PROXY, TCP), sent before any other byte, the TLS handshake included,
     * as a load balancer does for the server behind it. It names proxy_src
     * -> proxy_dst (AF_INET or AF_INET6 addresses with their ports, copied
     * by the call); NULL names the connection's own local (src) or remote
     * (dst) address. A mix of families is sent as IPv6, the IPv4 address
     * mapped. Bytes queued by id while connecting go after it. If the
     * header cannot be made once connected (the connection's own address
     * is not IP), the connection closes: on_close with PC_CLOSE_ERROR and
     * PC_EINVAL, on_open never runs. */
    int proxy_v2;
    const struct sockaddr *proxy_src;
    const struct sockaddr *proxy_dst;
} pc_connect_opts_t;

/* Fill o with the defaults (no source, plain, no PROXY header). Any thread. */
PC_API void pc_connect_opts_init(pc_connect_opts_t *o);

/* pc_connect with options (o NULL: the defaults); pc_connect and
 * pc_connect_tls are shorthands of it. Any thread. Returns as pc_connect
 * and pc_connect_tls, and PC_EINVAL for a proxy address that is not
 * AF_INET or AF_INET6, PC_ENOSYS for o->tls in a build without TLS. */
PC_API int pc_connect_ex(pc_server_t *s, const char *endpoint, const pc_connect_opts_t *o,
                         const pc_callbacks_t *cb, void *user, pc_conn_id_t *id);

/* Queue a copy of len bytes for sending. From the connection's callbacks, or
 * from any thread while the connection is known to be open. Returns 0,
 * PC_EINVAL (c NULL, or data NULL with len > 0), PC_ENOTCONN (closing or
 * closed), PC_ENOMEM, PC_ENOBUFS (max_buffered_bytes or send_queue_limit
 * reached; nothing queued). Bytes are sent in order; once the queue exceeds
 * send_high_water the connection stops reading until it drains (on_drain). */
PC_API int pc_conn_send(pc_conn_t *c, const void *data, size_t len);
/* Gather variant: one call, one copy. Same rules and errors (PC_EINVAL: c
 * NULL, bufs NULL with n > 0, or lengths whose sum passes SIZE_MAX). */
PC_API int pc_conn_sendv(pc_conn_t *c, const pc_buf_t *bufs, unsigned n);
/* Graceful close: flush queued bytes (also what other threads' sends by id
 * had queued before it: later ones are refused), send FIN, read and discard
 * until the peer closes or close_linger_ms, then close. A well-behaved peer sees no
 * reset. Idempotent. From the connection's callbacks, or from any thread
 * while the connection is known to be open (as pc_conn_send). Returns 0,
 * PC_EINVAL (c NULL) or PC_ENOTCONN. On a pc_connect_tls
 * connection whose handshake is still running (a posted function runs as
 * it starts) with bytes sent to it, the close waits for the handshake (at
 * most close_linger_ms, then it is cut as a header timeout), on_open runs,
 * and the bytes go out before close_notify and FIN. */
PC_API int pc_conn_close(pc_conn_t *c);
/* Graceful close without the linger: flush queued bytes, then close the
 * socket (FIN) at once instead of reading until the peer's FIN. For when the
 * peer has said it sends nothing more (an HTTP request with "Connection:
 * close" and no bytes after it): it saves a wake-up and a receive per
 * connection. If the peer sends more anyway, or sent bytes not yet read, the
 * close resets the connection once the queued bytes have left, and the
 * peer's kernel may then discard what the peer had not read yet.
 * From the connection's callbacks only. Returns 0, PC_EINVAL (other thread),
 * PC_ENOTCONN. */
PC_API int pc_conn_close_nolinger(pc_conn_t *c);
/* Abortive close: drop queued bytes and reset the connection (RST). Also
 * after pc_conn_close or pc_conn_close_nolinger, while that close is still
 * flushing or lingering: the graceful close becomes a reset and on_close
 * says PC_CLOSE_ABORT. From the connection's callbacks, or from any thread
 * while the connection is known to be open (as pc_conn_send). Returns 0,
 * PC_EINVAL (c NULL) or PC_ENOTCONN (already closed). */
PC_API int pc_conn_abort(pc_conn_t *c);
/* Arm (ms > 0) or cancel (ms == 0) the connection's header timeout: unless
 * cancelled first, the connection is closed gracefully ms from now with
 * PC_CLOSE_HEADER_TIMEOUT. Arming while a deadline is already pending keeps
 * the earlier one, so a peer cannot push it back by sending bytes. Accepted
 * connections start armed with config.header_timeout_ms when it is set; a
 * protocol cancels it once it has a complete request head and arms it again
 * when the next request starts. From the connection's callbacks only.
 * Returns 0, PC_EINVAL (other thread), PC_ENOTCONN. */
PC_API int pc_conn_set_header_timeout(pc_conn_t *c, unsigned ms);
/* Arm (ms > 0) or cancel (ms == 0) the connection's own timer: fn(c) runs
 * in the connection's strand ms from now (10 ms resolution, never early;
 * late by up to 1 s while the worker cannot keep up with its completions,
 * as the connection's timeouts are judged by what it has dispatched:
 * docs/engine.md, Timeouts), once; arming again replaces the deadline and
 * fn. It never runs after the close began (pc_conn_close, abort, peer
 * close, stop): a close cancels it. Costs nothing until first used (then a
 * record of about 100 bytes, freed with the connection). From the
 * connection's callbacks (or a pc_server_post_to function) only. Returns 0,
 * PC_EINVAL (other thread, fn NULL with ms > 0), PC_ENOTCONN (not open),
 * PC_ENOMEM. */
PC_API int pc_conn_timer(pc_conn_t *c, unsigned ms, void (*fn)(pc_conn_t *c));
/* Stop / restart delivering on_data (TCP flow control pushes back on the
 * peer meanwhile). Paused inside on_data, no further on_data runs until the
 * resume, on a TLS connection too (the rest of a receive holding several
 * records is kept and delivered first after the resume). From the
 * connection's callbacks (or a pc_server_post_to function) only. Returns 0,
 * PC_EINVAL (other thread), PC_ENOTCONN (not open). */
PC_API int pc_conn_pause_read(pc_conn_t *c);
PC_API int pc_conn_resume_read(pc_conn_t *c);
/* The connection's id (see pc_conn_id_t). From the connection's callbacks,
 * or any thread that knows the connection is open (see the contract above);
 * other threads keep the id, not the pointer. This accessor and the ones
 * below cannot fail: c must be a connection handed to a callback (not NULL,
 * not one whose on_close has returned). */
PC_API pc_conn_id_t pc_conn_id(const pc_conn_t *c);
/* The server owning the connection. Threads as pc_conn_id. */
PC_API pc_server_t *pc_conn_server(const pc_conn_t *c);
/* Application pointer of the connection (NULL initially). From the
 * connection's callbacks (its strand): nothing orders a write from another
 * thread with them. */
PC_API void pc_conn_set_user_data(pc_conn_t *c, void *p);
PC_API void *pc_conn_user_data(const pc_conn_t *c);
/* Peer and local addresses (valid until on_close returns). From the
 * connection's callbacks (or a pc_server_post_to function). The local
 * address is known from the connection's start (connections accepted on the
 * same address share one copy; pc_connect's keep theirs in a small record,
 * as pc_conn_timer's); only when that record could not be allocated and the
 * socket is already closed is it unknown: a zeroed address (sa_family
 * AF_UNSPEC). */
PC_API const struct sockaddr *pc_conn_peer_addr(const pc_conn_t *c);
PC_API const struct sockaddr *pc_conn_local_addr(const pc_conn_t *c);
/* Bytes queued and not yet handed to the kernel (as pc_server_send_queued).
 * Threads as pc_conn_id; other threads ask pc_server_send_queued by id. */
PC_API size_t pc_conn_send_queued(const pc_conn_t *c);
/* PROXY protocol. pc_conn_peer_addr returns the real client named by the
 * header; this returns the address of the proxy the connection came from,
 * or NULL when the connection was not proxied (untrusted source, PROXY off)
 * or the header was LOCAL / UNKNOWN (the peer address is then the proxy's).
 * From the connection's callbacks (valid until on_close returns). */
PC_API const struct sockaddr *pc_conn_proxy_addr(const pc_conn_t *c);
/* The value of the first v2 TLV of this type (PC_PROXY_TLV_*; the SSL
 * sub-fields are found inside PC_PROXY_TLV_SSL) and its length in *len, or
 * NULL when the connection's header had none (or was v1, LOCAL, or there
 * was no header). The value is not NUL-terminated. From the connection's
 * callbacks (valid until on_close returns). */
PC_API const void *pc_conn_proxy_tlv(const pc_conn_t *c, unsigned type, size_t *len);

/* ------------------------------------------------------------------------ */
/* Stats                                                                    */
/* ------------------------------------------------------------------------ */

typedef struct pc_server_stats_s {
    uint64_t accepted;                         /* connections accepted (passed the pipeline) */
    uint64_t rejected[PC_STEP_COUNT];          /* rejected, per pipeline step */
    uint64_t would_reject[PC_STEP_COUNT];      /* shadow mode: would have been rejected */
    uint64_t deferred;                         /* connections made to wait, once each (see
                                                * config.defer_timeout_ms) */
    uint64_t accept_errors;                    /* accept() failures (EMFILE, ...) */
    uint64_t active;                           /* open accepted connections now */
    uint64_t connects;                         /* pc_connect connections made (each ends
                                                  once, in closed[], failed connects too) */
    uint64_t outbound;                         /* pc_connect connections open or connecting
                                                  now (active + outbound: every open one) */
    uint64_t closed[PC_CLOSE_REASON_COUNT];    /* connections ended, per reason, accepted
                                                  and pc_connect's */
    uint64_t bytes_in;                         /* read from sockets (any state, TLS: records) */
    uint64_t bytes_out;                        /* written to sockets */
    uint64_t send_queued_bytes;                /* bytes waiting in send queues now */
    uint64_t send_held_bytes;                  /* memory send queues hold (chunks, TLS pend) */
    uint64_t send_refused;                     /* sends refused by max_buffered_bytes */
    uint64_t send_limit_refused;               /* sends refused by send_queue_limit */
    uint64_t source_table_full;                /* accepts that found the per-source table full */
    uint64_t source_entries;                   /* source table slots holding a source now
                                                * (an idle one keeps its slot until another
                                                * source needs it) */
    uint64_t source_active;                    /* of which sources holding open connections */
    uint64_t rule_count;                       /* rules in force */
    uint64_t rule_duplicates;                  /* lines of their sources folded as duplicates
                                                  (same prefix, same action; pc_rules_duplicates) */
    uint64_t proxy_headers;                    /* PROXY headers parsed */
    uint64_t proxy_errors[PC_PROXY_ERR_COUNT]; /* malformed headers, per cause */
    uint64_t proxy_timeouts;                   /* trusted, no header in time */
    uint64_t proxy_rejected;                   /* real client rejected (also in rejected[]) */
    uint64_t tls_handshakes;                   /* TLS handshakes started (sessions created) */
    uint64_t tls_handshake_errors;             /* of which failed (alert, bad record, refused) */
    uint64_t tls_handshakes_done;              /* of which completed (full or resumed); the
                                                  rest were cut (hang-up, timeout, stop) or run */
    uint64_t tls_resumed;                      /* of which completed by resumption */
    pc_accept_mode_t accept_mode;              /* conditional accept mode in force */
    /* the weakest kernel filter tier over the listeners (OFF if any listener
     * has none, or none listens); per listener: pc_server_listener_filter */
    pc_kernel_filter_t kernel_filter;
    /* kernel memory the listeners' eBPF programs and maps hold, in bytes
     * (pc_listener_filter_t.kernel_bytes summed, the per-source maps every
     * listener shares counted once; kept as they are installed and swapped,
     * so reading it takes no lock) */
    uint64_t kernel_filter_bytes;
    /* SYNs the eBPF tier saw and dropped, per cause, over every listener
     * since start (0 with the classic tier, which cannot count) */
    uint64_t kernel_syn_seen;
    uint64_t kernel_dropped_rules; /* a deny rule (also in the rules' hits) */
    uint64_t kernel_dropped_rate;  /* per-source SYN bucket empty */
    uint64_t kernel_dropped_max;   /* source holding per_source_max */
    uint64_t kernel_would_drop;    /* shadow mode: counted, passed */
    /* retransmitted SYNs the per-source rate did not charge again: a SYN
     * repeating one that took a token (same source address, port and
     * initial sequence number) within ~16 s, at most 3 times per attempt,
     * for the last 4 attempts of the source that took a token */
    uint64_t kernel_syn_retransmits;
    pc_backend_t backend; /* backend running */
    /* accept batching in force (pc_server_config_t.accept_batch_us; 0
     * on Windows) and the accept-thread sleeps that gathered a batch */
    unsigned accept_batch_us;
    uint64_t accept_batch_waits;
    /* the accept data wait in force, in seconds as the kernel rounded
     * pc_server_config_t.accept_data_wait_s; the smallest over the
     * listeners, 0 when off, on Windows, before any listener, or when a
     * listener's kernel refused it (logged) */
    unsigned accept_data_wait_s;
    /* 1 when every thread of the server runs under batch scheduling
     * (pc_server_config_t.sched_batch): 0 when off, before
     * pc_server_start, after pc_server_stop, or where it could not be had
     * (logged) */
    int sched_batch;
    /* why that one: "requested by the configuration", "requested by
     * PORTCULLIS_BACKEND=uring", or AUTO's reason ("auto: io_uring, ...",
     * "auto: io_uring unavailable (why)"); also in the start-up log */
    char backend_why[PC_BACKEND_WHY_MAX];
    int threads;
} pc_server_stats_t;

/* Snapshot of the counters (each read atomically; not one instant). The
 * per-source figures are counts kept as connections come and go, not a scan
 * of the source table, so a scrape costs the same at any table size. With
 * the eBPF kernel filter the kernel_* counters cost a few bpf() map reads
 * per listener (under a short lock a rule swap does not hold while it
 * compiles): cheap, but not for a hot loop. Any thread. s NULL: all
 * zero; out NULL: nothing is done. */
PC_API void pc_server_stats(const pc_server_t *s, pc_server_stats_t *out);

/* The kernel filter of one listener. */
typedef struct pc_listener_filter_s {
    pc_kernel_filter_t tier; /* in force: EBPF, CBPF or OFF */
    unsigned insns;          /* CBPF: instructions of the program */
    char why[160];           /* why lower than asked ("" when as asked; after
                              * pc_server_stop "the listener is closed") */
    /* 1: the per-source limits (rate, max) are also applied to SYNs in the
     * kernel (EBPF). 0: they run after the accept only: not configured, a
     * tier that cannot, or some sources are exempt from them (a trusted
     * PROXY set, allow_exempts), which the kernel program cannot tell
     * apart (logged once). */
    int per_source;
    /* EBPF: kernel memory the listener's program and maps hold, in bytes:
     * the sum of their /proc fdinfo "memlock" figures, read when the
     * program was installed (at start and on each rule swap). Linux 6.4
     * and later count what was allocated; 5.11 to 6.3 give an estimate
     * from the maps' sizes; the program's JIT image is not included. The
     * per-source maps are sized by the configuration and shared by every
     * listener of the server: each counts them (docs/kernel-filter-ebpf.md).
     * 0 with another tier, after pc_server_stop, or when the kernel did not
     * say. */
    uint64_t kernel_bytes;
} pc_listener_filter_t;

/* The kernel filter in force on listener idx (it changes when a rule reload
 * does not fit the tier). Waits for a pc_server_set_rules under way (its
 * tier is being chosen). Any thread. Returns 0 or PC_EINVAL. */
PC_API int pc_server_listener_filter(const pc_server_t *s, int idx, pc_listener_filter_t *out);

#ifdef __cplusplus
}
#endif

#include "portcullis/filter.h"
#include "portcullis/tls.h"

#endif /* PORTCULLIS_H */
