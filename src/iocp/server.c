/* SPDX-License-Identifier: MIT */
/* Server config, lifecycle (create, listen, start, stop, destroy), the
 * connection table (stable memory, generation-checked ids) and stats. The
 * worker threads' loop and posted work are in server_worker.c. */
#include "server.h"

#include <stdio.h>
#include <stdlib.h>
#include <limits.h>
#include <string.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/env.h"
#include "core/log.h"
#include "filter/source_tracker.h"

/* ---- config ------------------------------------------------------------------ */

void pc_server_config_init(pc_server_config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->threads = 0;
    cfg->max_connections = 10000;
    cfg->at_capacity = PC_CAPACITY_DEFER;
    cfg->defer_timeout_ms = 1000;
    cfg->idle_timeout_ms = 0;
    cfg->close_linger_ms = 5000;
    cfg->handshake_timeout_ms = 10000;
    cfg->connect_timeout_ms = 10000;
    cfg->send_high_water = 1u << 20;
    cfg->send_low_water = 256u << 10;
    cfg->recv_buffer_size = 64u << 10;
    cfg->backlog = 511;
    cfg->backend = PC_BACKEND_AUTO;
    cfg->conditional_accept = PC_COND_ACCEPT_AUTO;
    cfg->source_prefix_v4 = 32;
    cfg->source_prefix_v6 = 64;
    cfg->source_table_size = 65536;
    cfg->allow_exempts = 0;
    cfg->proxy_versions = PC_PROXY_V1 | PC_PROXY_V2;
    cfg->proxy_timeout_ms = 3000;
}

const char *pc_backend_name(pc_backend_t b)
{
    switch (b) {
    case PC_BACKEND_AUTO:
        return "auto";
    case PC_BACKEND_EPOLL:
        return "epoll";
    case PC_BACKEND_URING:
        return "uring";
    case PC_BACKEND_IOCP:
        return "iocp";
    }
    return "unknown";
}

int pc_backend_parse(const char *name)
{
    if (!name) return PC_EINVAL;
    static const pc_backend_t all[] = {PC_BACKEND_AUTO, PC_BACKEND_EPOLL, PC_BACKEND_URING,
                                       PC_BACKEND_IOCP};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (strcmp(name, pc_backend_name(all[i])) == 0) return (int)all[i];
    if (strcmp(name, "io_uring") == 0) return PC_BACKEND_URING;
    return PC_EINVAL;
}

const char *pc_kernel_filter_name(pc_kernel_filter_t k)
{
    switch (k) {
    case PC_KERNEL_FILTER_AUTO:
        return "auto";
    case PC_KERNEL_FILTER_EBPF:
        return "ebpf";
    case PC_KERNEL_FILTER_CBPF:
        return "cbpf";
    case PC_KERNEL_FILTER_OFF:
        return "off";
    }
    return "unknown";
}

int pc_kernel_filter_parse(const char *name)
{
    if (!name) return PC_EINVAL;
    for (int k = PC_KERNEL_FILTER_AUTO; k <= PC_KERNEL_FILTER_OFF; k++)
        if (strcmp(name, pc_kernel_filter_name((pc_kernel_filter_t)k)) == 0) return k;
    return PC_EINVAL;
}

/* ---- connection table -------------------------------------------------------- */

/* Hand out a record never used before: the next slot of the table,
 * allocating a chunk when the last one is full (under table_lock). The chunk
 * is not zeroed: each record is initialised here, so memory becomes resident
 * connection by connection rather than a chunk at a time. */
static pc_conn_t *table_fresh(pc_server_t *s)
{
    uint32_t slot = atomic_load_explicit(&s->nslots, memory_order_relaxed);
    uint32_t ci = slot / PC_CONN_CHUNK;
    if (ci >= PC_CONN_CHUNKS_MAX) return NULL;
    if (ci >= s->nchunks) {
        conn_chunk_t *chunk = pc__malloc(sizeof *chunk + PC_CONN_CHUNK * sizeof(pc_conn_t));
        if (!chunk) return NULL;
        chunk->srv = s;
        s->chunks[ci] = chunk->conns;
        s->nchunks = ci + 1;
    }
    pc_conn_t *c = &s->chunks[ci][slot % PC_CONN_CHUNK];
    memset(c, 0, sizeof *c);
    wheel_timer_init(&c->timer);
    c->recv_op.tag = TAG_CONN_RECV;
    atomic_store(&c->id, (uint64_t)slot); /* generation 0: never valid */
    /* publish after the record is initialised (lookups read nslots);
     * seq_cst for close_all (a pc_connect racing with the stop) */
    atomic_store(&s->nslots, slot + 1);
    return c;
}

pc_conn_t *server_conn_alloc(pc_server_t *s)
{
    pc__mutex_lock(&s->table_lock);
    pc_conn_t *c = s->free_conns;
    if (c)
        s->free_conns = c->u.next_free;
    else
        c = table_fresh(s);
    pc__mutex_unlock(&s->table_lock);
    if (!c) return NULL;

    /* the generation was advanced at release (a fresh record has 0) */
    uint64_t old = atomic_load(&c->id);
    uint32_t gen = (uint32_t)(old >> 32);
    if (gen == 0) gen = 1;
    pc__mutex_lock(conn_lock(c));
    atomic_store(&c->id, ((uint64_t)gen << 32) | conn_slot(c));
    c->in_dispatch = 0;
    c->timer_due = 0;
    c->parked = 0;
    atomic_store(&c->inbox_send_bytes, 0);
    c->kick_posted = 0;
    c->kick_due = 0;
    c->inbox_close = INBOX_CLOSE_NONE;
    c->hidden = 0;
    c->state = CS_FREE;
    pc__mutex_unlock(conn_lock(c));
    c->reading = c->sending = c->paused_user = c->paused_hw = 0;
    c->fin_sent = c->peer_eof = 0;
    c->outbound = c->connecting = c->no_linger = 0;
    c->sent_due = 0;
    c->timer_on = 0; /* disarmed at close; timer_wk may stay as it was */
    c->ops_pending = 0;
    c->deadline_ms = 0;
    atomic_store(&c->sendq_bytes, 0);
    c->ticket.slot = TRACK_NO_SLOT;
    return c;
}

void server_conn_retire_id(pc_conn_t *c)
{
    /* advance the generation now, so the ids of this connection fail at
     * once, not only after reuse; the next allocation takes this one (no id
     * with it was ever handed out) */
    uint32_t gen = (uint32_t)(atomic_load(&c->id) >> 32) + 1;
    if (gen == 0) gen = 1;
    atomic_store(&c->id, ((uint64_t)gen << 32) | conn_slot(c));
}

void server_conn_free_list(pc_server_t *s, pc_conn_t *first, pc_conn_t *last)
{
    pc__mutex_lock(&s->table_lock);
    last->u.next_free = s->free_conns;
    s->free_conns = first;
    pc__mutex_unlock(&s->table_lock);
}

void server_conn_release(pc_server_t *s, pc_conn_t *c)
{
    pc__mutex_lock(conn_lock(c));
    server_conn_retire_id(c);
    pc__mutex_unlock(conn_lock(c));
    server_conn_free_list(s, c, c);
}

pc_conn_t *server_conn_lookup(pc_server_t *s, pc_conn_id_t id)
{
    if (!s || (id >> 32) == 0) return NULL;
    uint32_t slot = (uint32_t)id;
    /* lock-free: records are published with release and never freed while
     * the server exists */
    if (slot >= atomic_load_explicit(&s->nslots, memory_order_acquire)) return NULL;
    pc_conn_t *c = &s->chunks[slot / PC_CONN_CHUNK][slot % PC_CONN_CHUNK];
    return atomic_load(&c->id) == id ? c : NULL;
}

worker_t *server_pick_worker(pc_server_t *s)
{
    uint32_t i = atomic_fetch_add(&s->next_worker, 1);
    return &s->workers[i % (uint32_t)s->nworkers];
}

static int server_post_admit(pc_server_t *s)
{
    /* counted before the check, the stop closes before it reads the count
     * (both seq_cst): either the post sees the gate closed or the stop
     * sees the post and waits for it */
    atomic_fetch_add(&s->posts_inflight, 1);
    if (atomic_load(&s->started) && !atomic_load(&s->posts_closed)) return 1;
    atomic_fetch_sub(&s->posts_inflight, 1);
    return 0;
}

static void server_post_done(pc_server_t *s)
{
    atomic_fetch_sub(&s->posts_inflight, 1);
}

int server_post_op(pc_server_t *s, op_t *op)
{
    if (!server_post_admit(s)) return PC_ENOTCONN;
    worker_t *w = server_pick_worker(s);
    int rc = port_post(s->port, w->idx, op);
    server_post_done(s);
    return rc;
}

/* Every connection that closes calls server_capacity_changed, and a lock
 * shared by all workers on each close is a point of contention on a large
 * machine; nearly always nobody waits. The waiter counts itself (seq_cst)
 * before it checks its condition, the notifier changed the condition
 * (seq_cst) before it reads the count: so either the waiter sees the new
 * state and does not sleep, or the notifier sees the waiter and takes the
 * lock, which the waiter holds from its check into the wait. */
void server_cap_wait_begin(pc_server_t *s)
{
    atomic_fetch_add(&s->cap_waiters, 1);
}

void server_cap_wait_end(pc_server_t *s)
{
    atomic_fetch_sub(&s->cap_waiters, 1);
}

void server_capacity_changed(pc_server_t *s)
{
    if (atomic_load(&s->cap_waiters) == 0) return;
    pc__mutex_lock(&s->cap_lock);
    pc__cond_broadcast(&s->cap_cond);
    pc__mutex_unlock(&s->cap_lock);
}

/* ---- lifecycle ------------------------------------------------------------------ */

/* The backend asked for: the configuration's, else PORTCULLIS_BACKEND's, else
 * AUTO; why says which of them asked (port_open explains an AUTO choice). */
static pc_backend_t want_backend(pc_backend_t b, char *why, size_t whylen)
{
    if (b != PC_BACKEND_AUTO) {
        snprintf(why, whylen, "requested by the configuration");
        return b;
    }
    const char *e = pc__env("PORTCULLIS_BACKEND");
    if (!e) return b;
    int v = pc_backend_parse(e);
    if (v < 0) {
        PC_LOGW("PORTCULLIS_BACKEND=%s is not a backend name; using auto", e);
        return b;
    }
    if (v != PC_BACKEND_AUTO) snprintf(why, whylen, "requested by PORTCULLIS_BACKEND=%.40s", e);
    return (pc_backend_t)v;
}

/* cfg.accept_batch_us where the accept loop cannot batch: said once. */
static void accept_batch_check(const pc_server_t *s)
{
    if (s->cfg.accept_batch_us && !accept_batch_us(s))
        PC_LOGW("accept_batch_us=%u: the accept threads take connections as they come "
                "(no accept batching on this platform)",
                s->cfg.accept_batch_us);
}

/* cfg.accept_data_wait_s where listeners cannot hold connections: said once. */
static void accept_data_wait_check(const pc_server_t *s)
{
    if (s->cfg.accept_data_wait_s && !accept_data_wait_available())
        PC_LOGW("accept_data_wait_s=%u: connections are accepted as their handshake "
                "completes (no accept data wait on this platform)",
                s->cfg.accept_data_wait_s);
}

/* Why cfg is refused, logged naming the field: 1, else 0. The filter's
 * own checks (the per-source rate and burst) are filter_create's. */
static int config_refused(const pc_server_config_t *cfg)
{
#define REFUSE(cond, ...)                                          \
    do {                                                           \
        if (cond) {                                                \
            PC_LOGE("server configuration refused: " __VA_ARGS__); \
            return 1;                                              \
        }                                                          \
    } while (0)
#define ENUM_CHECK(field, last)                                                         \
    REFUSE((unsigned)cfg->field > (unsigned)(last), #field " %d is none of its values", \
           (int)cfg->field)
    ENUM_CHECK(backend, PC_BACKEND_IOCP);
    ENUM_CHECK(conditional_accept, PC_COND_ACCEPT_OFF);
    ENUM_CHECK(kernel_filter, PC_KERNEL_FILTER_OFF);
    ENUM_CHECK(at_capacity, PC_CAPACITY_REJECT);
#undef ENUM_CHECK
    REFUSE(cfg->max_buffered_bytes && cfg->max_buffered_bytes < PC_MAX_BUFFERED_MIN,
           "max_buffered_bytes %zu is below %u (room for too few sends); 0 means no cap",
           cfg->max_buffered_bytes, PC_MAX_BUFFERED_MIN);
    /* the server would own (and free) one set twice */
    REFUSE(cfg->rules && cfg->rules == cfg->proxy_trusted,
           "rules and proxy_trusted are the same rule set (the server owns each); load the "
           "text twice for two sets");
    REFUSE(!cfg->cb.on_data, "cb.on_data is NULL (it is required)");
    REFUSE(cfg->max_connections == 0, "max_connections is 0");
    REFUSE(cfg->send_low_water > cfg->send_high_water,
           "send_low_water %zu is above send_high_water %zu", cfg->send_low_water,
           cfg->send_high_water);
    REFUSE(cfg->threads < 0 || cfg->threads > 1024, "threads %d is not within 0..1024",
           cfg->threads);
    REFUSE(cfg->accept_batch_us > PC_ACCEPT_BATCH_MAX_US, "accept_batch_us %u is above %u",
           cfg->accept_batch_us, PC_ACCEPT_BATCH_MAX_US);
    REFUSE(cfg->accept_data_wait_s > PC_ACCEPT_DATA_WAIT_MAX_S, "accept_data_wait_s %u is above %u",
           cfg->accept_data_wait_s, PC_ACCEPT_DATA_WAIT_MAX_S);
    REFUSE(cfg->source_prefix_v4 > 32, "source_prefix_v4 %u is above 32", cfg->source_prefix_v4);
    REFUSE(cfg->source_prefix_v6 > 128, "source_prefix_v6 %u is above 128", cfg->source_prefix_v6);
    REFUSE(cfg->proxy_versions & ~(unsigned)(PC_PROXY_V1 | PC_PROXY_V2),
           "proxy_versions 0x%x holds bits other than PC_PROXY_V1 | PC_PROXY_V2",
           cfg->proxy_versions);
    /* the per-source table exists only with a per-source limit */
    REFUSE((cfg->per_source_max || cfg->per_source_rate > 0) &&
               cfg->source_table_size > TRACKER_CAPACITY_MAX,
           "source_table_size %u is above %u", cfg->source_table_size, TRACKER_CAPACITY_MAX);
#undef REFUSE
    return 0;
}

int pc_server_create(const pc_server_config_t *cfg, pc_server_t **out)
{
    if (!cfg || !out) return PC_EINVAL;
    if (config_refused(cfg)) return PC_EINVAL;
    int rc = sock_lib_init();
    if (rc < 0) return rc;
    pc_server_t *s = pc__calloc(1, sizeof *s);
    if (!s) {
        sock_lib_cleanup();
        return PC_ENOMEM;
    }
    stimer_init(s);
    s->cfg = *cfg;
    atomic_init(&s->data_wait_min, UINT_MAX);
    atomic_init(&s->sched_batch_on, 0);
    s->cfg.proxy_trusted = NULL; /* owned only once created */
    if (!s->cfg.proxy_versions) s->cfg.proxy_versions = PC_PROXY_V1 | PC_PROXY_V2;
    if (!s->cfg.proxy_timeout_ms) s->cfg.proxy_timeout_ms = 3000;
    if (s->cfg.send_queue_limit == 0) {
        size_t hw = s->cfg.send_high_water;
        s->cfg.send_queue_limit = hw > SIZE_MAX / 4 ? SIZE_MAX : 4 * hw;
    }
    if (s->cfg.recv_buffer_size < 512) s->cfg.recv_buffer_size = 512;
    if (s->cfg.backlog <= 0) s->cfg.backlog = 511;
    s->nworkers = cfg->threads ? cfg->threads : pc__cpu_count();
    pc__mutex_init(&s->table_lock);
    pc__mutex_init(&s->locals_lock);
    atomic_init(&s->nlocals, PC_MAX_LISTENERS + 1);
    for (int i = 0; i < PC_CONN_LOCKS; i++)
        pc__mutex_init(&s->conn_locks[i]);
    pc__mutex_init(&s->cap_lock);
    pc__cond_init(&s->cap_cond);
    pc__mutex_init(&s->kf_lock);
    pc__mutex_init(&s->kf_mu);
    atomic_store(&s->kf_weakest, (int)PC_KERNEL_FILTER_OFF);
    s->accept_mode = PC_ACCEPT_MODE_POST_HANDSHAKE;
    pc__alloc_pin();

    pc_backend_t want = want_backend(cfg->backend, s->backend_why, sizeof s->backend_why);
    rc = port_open(&s->port, want, s->nworkers, s->backend_why, sizeof s->backend_why);
    if (rc < 0) {
        PC_LOGE("cannot open the %s backend: %s", pc_backend_name(want), pc_strerror(rc));
        goto fail;
    }
    PC_LOGI("backend: %s (%s)", s->port->vt->name, s->backend_why);
    accept_batch_check(s);
    accept_data_wait_check(s);
    s->workers = pc__calloc((size_t)s->nworkers, sizeof *s->workers);
    if (!s->workers) {
        rc = PC_ENOMEM;
        goto fail;
    }
    for (int i = 0; i < s->nworkers; i++) {
        worker_t *w = &s->workers[i];
        w->srv = s;
        w->idx = i;
        pc__mutex_init(&w->wheel_lock);
        pc__mutex_init(&w->kick_lock);
        w->kick_op.tag = TAG_CONN_KICK;
        wheel_init(&w->wheel, pc__now_ms());
        w->seen_ms = pc__now_ms();
        wheel_init(&w->swheel, pc__now_ms());
        w->exit_op.tag = TAG_EXIT;
        w->scratch_size = s->cfg.recv_buffer_size;
        w->scratch = pc__malloc(w->scratch_size);
        if (!w->scratch) {
            rc = PC_ENOMEM;
            goto fail;
        }
    }
    for (int i = 0; i < PC_MAX_LISTENERS; i++)
        s->listeners[i].fd = SOCK_INVALID;

    filter_config_t fc;
    filter_config_init(&fc);
    fc.per_source_max = cfg->per_source_max;
    fc.per_source_rate = cfg->per_source_rate;
    if (s->cfg.per_source_rate > 0 && s->cfg.per_source_burst == 0) {
        /* max(1, rate), rounded up, within an unsigned; kept in s->cfg, where
         * the kernel filter's program reads it too */
        double b = s->cfg.per_source_rate + 0.999;
        s->cfg.per_source_burst = b < 1 ? 1 : b >= (double)UINT_MAX ? UINT_MAX : (unsigned)b;
    }
    fc.per_source_burst = s->cfg.per_source_burst;
    fc.source_prefix_v4 = (uint8_t)cfg->source_prefix_v4;
    fc.source_prefix_v6 = (uint8_t)cfg->source_prefix_v6;
    fc.source_table_size = cfg->source_table_size;
    fc.full_policy = cfg->source_table_full_reject ? TRACKER_FULL_REJECT : TRACKER_FULL_SHARED;
    fc.allow_exempts = cfg->allow_exempts;
    fc.shadow = cfg->shadow;
    fc.shadow_condition = cfg->shadow_condition;
    fc.at_capacity = cfg->at_capacity;
    /* accept threads, then one reader per worker (the PROXY second verdict) */
    fc.max_readers = PC_MAX_LISTENERS + s->nworkers;
    rc = filter_create(&fc, &s->filter);
    if (rc == PC_EINVAL)
        PC_LOGE("filter configuration refused: per_source_rate %g, per_source_burst %u (a "
                "rate is at least 1e-6 per second, and burst - 1 tokens refill within ~146 "
                "years)",
                fc.per_source_rate, fc.per_source_burst);
    if (rc < 0) goto fail;
    /* last: from here on the server owns cfg->rules */
    if (cfg->rules) filter_set_rules(s->filter, cfg->rules);
    s->cfg.rules = NULL;
    s->cfg.proxy_trusted = cfg->proxy_trusted;
    if (cfg->proxy_trusted)
        PC_LOGI("PROXY protocol: %zu trusted-proxy rule(s), versions%s%s, timeout %u ms",
                pc_rules_count(cfg->proxy_trusted),
                (s->cfg.proxy_versions & PC_PROXY_V1) ? " v1" : "",
                (s->cfg.proxy_versions & PC_PROXY_V2) ? " v2" : "", s->cfg.proxy_timeout_ms);
    *out = s;
    return 0;
fail:
    pc_server_destroy(s);
    return rc;
}

/* kf_lock for a compile (a rule swap, a listener's set-up): kf_long says so
 * first, so that kfilter_collect_hits skips instead of waiting for it. */
static void kf_lock_long(pc_server_t *s)
{
    atomic_fetch_add(&s->kf_long, 1);
    pc__mutex_lock(&s->kf_lock);
}

static void kf_unlock_long(pc_server_t *s)
{
    pc__mutex_unlock(&s->kf_lock);
    atomic_fetch_sub(&s->kf_long, 1);
}

int pc_server_listen_addr(pc_server_t *s, const struct sockaddr *sa, socklen_t len)
{
    if (!s || !sa) return PC_EINVAL;
    /* TCP over IPv4 or IPv6 only: the filter judges IP sources */
    if (!(sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) &&
        !(sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)))
        return PC_EINVAL;
    if (len > (socklen_t)sizeof(struct sockaddr_storage)) return PC_EINVAL;
    if (s->started) return PC_EBUSY;
    if (s->nlisteners >= PC_MAX_LISTENERS) return PC_ENOBUFS;
    listener_t *l = &s->listeners[s->nlisteners];
    memset(l, 0, sizeof *l);
    l->srv = s;
    l->idx = s->nlisteners;
    l->fd = SOCK_INVALID;
    l->kf.tier = PC_KERNEL_FILTER_OFF;
    memcpy(&l->addr, sa, len);
    l->addrlen = len;
    kf_lock_long(s); /* accept_listener_open's contract */
    int rc = accept_listener_open(s, l);
    if (rc < 0) {
        kf_unlock_long(s);
        return rc;
    }
    sock_local_addr(l->fd, &l->addr);
    if (l->addr.ss_family == AF_INET) {
        l->specific = ((struct sockaddr_in *)&l->addr)->sin_addr.s_addr != htonl(INADDR_ANY);
    } else if (l->addr.ss_family == AF_INET6) {
        static const struct in6_addr any6; /* :: */
        l->specific =
            memcmp(&((struct sockaddr_in6 *)&l->addr)->sin6_addr, &any6, sizeof any6) != 0;
    }
    /* the listener's entry of the local-address table: its bound address */
    sockaddr_store(&s->locals[l->idx + 1].addr, (const struct sockaddr *)&l->addr);
    s->locals[l->idx + 1].listener = (uint8_t)l->idx;
    pc__mutex_lock(&s->kf_mu); /* kfilter_counts reads it under kf_mu only */
    s->nlisteners++;
    pc__mutex_unlock(&s->kf_mu);
    kf_unlock_long(s);
    if (l->data_wait_s < atomic_load(&s->data_wait_min))
        atomic_store(&s->data_wait_min, l->data_wait_s);
    return l->idx;
}

int pc_server_listen(pc_server_t *s, const char *endpoint)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int rc = pc_parse_endpoint(endpoint, &ss, &len);
    if (rc < 0) return rc;
    return pc_server_listen_addr(s, (struct sockaddr *)&ss, len);
}

int pc_server_listener_port(const pc_server_t *s, int idx)
{
    if (!s || idx < 0 || idx >= s->nlisteners) return PC_EINVAL;
    const struct sockaddr_storage *ss = &s->listeners[idx].addr;
    if (ss->ss_family == AF_INET) return ntohs(((const struct sockaddr_in *)ss)->sin_port);
    return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
}

/* cfg.sched_batch on a thread the server has just started, after `moved`
 * threads were. Returns 0, or -1 when the thread cannot have it: said once
 * (the caller stops asking), the threads after it are left as they are,
 * and the stats report it off. Every thread inherits the same policy from
 * the caller, so in practice only the first can be refused. */
static int sched_batch_apply(pc_thread_t t, int moved)
{
    const char *why = NULL;
    int rc = pc__thread_sched_batch(t, &why);
    if (rc == 0) return 0;
    if (rc == PC_ENOTSUP)
        PC_LOGW("sched_batch=1: the server's threads keep the default scheduling (no batch "
                "scheduling class on this platform)");
    else if (rc == PC_EEXIST)
        PC_LOGW("sched_batch=1: the server's threads keep %s, the policy they inherited from "
                "the thread that started the server",
                why);
    else
        PC_LOGW("sched_batch=1: SCHED_BATCH refused (%s): %s", pc_strerror(rc),
                moved ? "the threads started before it keep SCHED_BATCH, the others their "
                        "scheduling"
                      : "the server's threads keep their scheduling");
    return -1;
}

int pc_server_start(pc_server_t *s)
{
    if (!s) return PC_EINVAL;
    if (s->started) return PC_EBUSY;
    int nstarted = 0, rc = 0, moved = 0;
    int batch = s->cfg.sched_batch != 0; /* asked, and no thread refused yet */
    for (; nstarted < s->nworkers; nstarted++) {
        rc = pc__thread_start(&s->workers[nstarted].thread, worker_main, &s->workers[nstarted],
                              "pc-worker");
        if (rc < 0) break;
        if (batch && sched_batch_apply(s->workers[nstarted].thread, moved++) < 0) batch = 0;
    }
    if (rc < 0) {
        for (int i = 0; i < nstarted; i++)
            port_post(s->port, i, &s->workers[i].exit_op);
        for (int i = 0; i < nstarted; i++)
            pc__thread_join(s->workers[i].thread);
        return rc;
    }
    s->started = 1;
    for (int i = 0; i < s->nlisteners; i++) {
        listener_t *l = &s->listeners[i];
        rc = pc__thread_start(&l->thread, accept_thread_main, l, "pc-accept");
        if (rc < 0) {
            pc_server_stop(s, 0);
            return rc;
        }
        l->thread_started = 1;
        if (batch && sched_batch_apply(l->thread, moved++) < 0) batch = 0;
    }
    atomic_store(&s->sched_batch_on, batch);
    PC_LOGI("server started: backend %s (%s), %d worker threads, %d listener(s), max %u "
            "connections, %s scheduling",
            s->port->vt->name, s->backend_why, s->nworkers, s->nlisteners, s->cfg.max_connections,
            batch ? "batch" : "default");
    return 0;
}

/* Ask every live connection to close (gracefully or not). */
static void close_all(pc_server_t *s, int how)
{
    /* seq_cst, as table_fresh's store: a pc_connect that publishes a fresh
     * record after this read sees stopping (set before) and refuses */
    uint32_t n = atomic_load(&s->nslots);
    for (uint32_t slot = 0; slot < n; slot++) {
        pc_conn_t *c = &s->chunks[slot / PC_CONN_CHUNK][slot % PC_CONN_CHUNK];
        uint64_t id = atomic_load(&c->id);
        if (id >> 32) conn_request_close(c, id, how, PC_CLOSE_SERVER_STOP);
    }
}

/* Connections stop waits for: accepted ones and pc_connect's (also those
 * still connecting). */
static uint64_t open_count(pc_server_t *s)
{
    return (uint64_t)atomic_load(&s->active) + (uint64_t)atomic_load(&s->outbound);
}

/* Wait until no connection is open or the deadline passes. */
static int wait_idle(pc_server_t *s, uint64_t deadline)
{
    pc__mutex_lock(&s->cap_lock);
    server_cap_wait_begin(s);
    while (open_count(s) > 0) {
        uint64_t now = pc__now_ms();
        if (now >= deadline) break;
        uint64_t left = deadline - now;
        pc__cond_timedwait(&s->cap_cond, &s->cap_lock, left > 100 ? 100 : (unsigned)left);
    }
    int idle = open_count(s) == 0;
    server_cap_wait_end(s);
    pc__mutex_unlock(&s->cap_lock);
    return idle;
}

/* Is the caller one of the server's own threads (a worker, or an accept
 * thread running the condition callback)? Those cannot join themselves. */
static int server_own_thread(const pc_server_t *s)
{
    if (!s->started) return 0;
    for (int i = 0; i < s->nworkers; i++)
        if (pc__thread_is_self(s->workers[i].thread)) return 1;
    for (int i = 0; i < s->nlisteners; i++)
        if (s->listeners[i].thread_started && pc__thread_is_self(s->listeners[i].thread)) return 1;
    return 0;
}

int pc_server_stop(pc_server_t *s, unsigned drain_ms)
{
    if (!s) return PC_EINVAL;
    if (s->stopped || !s->started) return 0;
    if (server_own_thread(s)) return PC_EDEADLK;
    atomic_store(&s->stopping, 1);
    /* 1. stop accepting */
    for (int i = 0; i < s->nlisteners; i++) {
        listener_t *l = &s->listeners[i];
        atomic_store(&l->stopping, 1);
        if (l->thread_started) accept_listener_wake(l);
    }
    server_capacity_changed(s); /* wake accept threads waiting on capacity */
    for (int i = 0; i < s->nlisteners; i++) {
        listener_t *l = &s->listeners[i];
        if (l->thread_started) pc__thread_join(l->thread);
        l->thread_started = 0;
        pc__mutex_lock(&s->kf_lock);
        kfilter_detach(s, l);
        accept_listener_close(l);
        l->fd = SOCK_INVALID; /* under kf_lock: pc_server_set_rules reads it */
        pc__mutex_unlock(&s->kf_lock);
    }
    /* 2. graceful close of every connection, bounded by drain_ms */
    uint64_t t0 = pc__now_ms();
    close_all(s, INBOX_CLOSE_GRACEFUL);
    if (!wait_idle(s, t0 + drain_ms)) {
        uint64_t out = (uint64_t)atomic_load(&s->outbound);
        PC_LOGW("stop: %llu connection(s) not closed after the %u ms drain%s; resetting them",
                (unsigned long long)open_count(s), drain_ms,
                out ? " (outbound ones still connecting included)" : "");
        close_all(s, INBOX_CLOSE_ABORT);
        if (!wait_idle(s, pc__now_ms() + 10000))
            PC_LOGE("stop: %llu connection(s) did not close", (unsigned long long)open_count(s));
    }
    /* 3. server timers: cancelled (one running now finishes first) */
    stimer_cancel_all(s);
    /* 4. no more posts (those under way are queued first), then one exit
     * completion per worker, and join */
    atomic_store(&s->posts_closed, 1);
    while (atomic_load(&s->posts_inflight) > 0)
        pc__sleep_ms(1);
    for (int i = 0; i < s->nworkers; i++)
        port_post(s->port, i, &s->workers[i].exit_op);
    for (int i = 0; i < s->nworkers; i++)
        pc__thread_join(s->workers[i].thread);
    atomic_store(&s->sched_batch_on, 0); /* no thread left */
    s->stopped = 1;
    PC_LOGI("server stopped in %llu ms", (unsigned long long)(pc__now_ms() - t0));
    return 0;
}

void pc_server_destroy(pc_server_t *s)
{
    if (!s) return;
    if (!s->stopped && server_own_thread(s)) { /* it would free the thread running it */
        PC_LOGE("pc_server_destroy called from the server's own thread (a callback): refused, "
                "the server goes on; call it from the thread that owns the server");
        return;
    }
    if (s->started && !s->stopped) pc_server_stop(s, 0);
    for (int i = 0; i < s->nlisteners; i++) {
        pc_tls_ctx_free(s->listeners[i].tls);
        if (s->listeners[i].fd == SOCK_INVALID) continue;
        pc__mutex_lock(&s->kf_lock); /* kfilter_detach's contract */
        kfilter_detach(s, &s->listeners[i]);
        pc__mutex_unlock(&s->kf_lock);
        accept_listener_close(&s->listeners[i]);
    }
    uint32_t nslots = atomic_load(&s->nslots);
    for (uint32_t slot = 0; slot < nslots; slot++) {
        pc_conn_t *c = &s->chunks[slot / PC_CONN_CHUNK][slot % PC_CONN_CHUNK];
        conn_drop_posts(c); /* before the inbox that holds them goes */
        conn_tx_destroy(c); /* and the extension */
    }
    stimer_destroy(s);
    for (uint32_t ci = 0; ci < s->nchunks; ci++)
        pc__free(pc_container_of(s->chunks[ci], conn_chunk_t, conns));
    for (int i = 0; i < PC_CONN_LOCKS; i++)
        pc__mutex_destroy(&s->conn_locks[i]);
    if (s->workers) {
        for (int i = 0; i < s->nworkers; i++) {
            pc__free(s->workers[i].scratch);
            conn_tx_cache_free(&s->workers[i]);
            pc__mutex_destroy(&s->workers[i].wheel_lock);
            pc__mutex_destroy(&s->workers[i].kick_lock);
        }
        pc__free(s->workers);
    }
    if (s->port) port_close(s->port);
    if (s->filter) filter_destroy(s->filter);
    if (s->cfg.proxy_trusted) pc_rules_free(s->cfg.proxy_trusted);
    pc__mutex_destroy(&s->table_lock);
    pc__mutex_destroy(&s->locals_lock);
    pc__mutex_destroy(&s->cap_lock);
    pc__cond_destroy(&s->cap_cond);
    pc__mutex_destroy(&s->kf_lock);
    pc__mutex_destroy(&s->kf_mu);
    pc__free(s);
    pc__alloc_unpin();
    sock_lib_cleanup();
}

int pc_server_set_rules(pc_server_t *s, pc_rules_t *rules)
{
    if (!s) return PC_EINVAL;
    if (rules && rules == s->cfg.proxy_trusted) { /* owned already, fixed for the server's life */
        PC_LOGE("pc_server_set_rules: refused, the set is the server's proxy_trusted set");
        return PC_EINVAL;
    }
    /* the kernel first: a SYN the new set denies is never let through by a
     * kernel program older than the user-space set */
    kf_lock_long(s);
    pc_rules_t *old = filter_rules_peek(s->filter);
    int rc = PC_EINVAL;
    if (rules != old || !rules) {
        for (int i = 0; i < s->nlisteners; i++)
            kfilter_reload(s, &s->listeners[i], old, rules);
        rc = filter_set_rules(s->filter, rules);
    }
    kf_unlock_long(s);
    return rc;
}

int pc_server_listener_filter(const pc_server_t *s, int idx, pc_listener_filter_t *out)
{
    if (!s || !out || idx < 0) return PC_EINVAL;
    pc_server_t *ms = (pc_server_t *)s;
    pc__mutex_lock(&ms->kf_lock); /* a listener's set-up holds it, count included */
    if (idx >= s->nlisteners) {
        pc__mutex_unlock(&ms->kf_lock);
        return PC_EINVAL;
    }
    const kfilter_t *kf = &s->listeners[idx].kf;
    out->tier = kf->tier;
    out->insns = kf->insns;
    memcpy(out->why, kf->why, sizeof out->why);
    out->per_source = kfilter_per_source_in_kernel(s, &s->listeners[idx]);
    out->kernel_bytes = kf->kernel_bytes;
    pc__mutex_unlock(&ms->kf_lock);
    return 0;
}

int pc_server_top_rules(pc_server_t *s, struct pc_rule_info_s *out, int max)
{
    if (!s || !out || max <= 0) return 0;
    kfilter_collect_hits(s); /* the kernel's drops count as hits */
    /* one pass under one lock; only the winners are formatted */
    return (int)filter_rules_top(s->filter, out, (size_t)max);
}

int pc_server_stopping(const pc_server_t *s)
{
    return s ? atomic_load(&((pc_server_t *)s)->stopping) : 0;
}

void *pc_server_user_data(const pc_server_t *s)
{
    return s ? s->cfg.user_data : NULL;
}

void pc_server_stats(const pc_server_t *s, pc_server_stats_t *out)
{
    if (!out) return;
    memset(out, 0, sizeof *out);
    if (!s) return;
    out->accepted = counter_get(&s->accepted);
    out->deferred = counter_get(&s->deferred);
    out->accept_errors = counter_get(&s->accept_errors);
    filter_stats_t fs;
    filter_stats(s->filter, &fs);
    for (int i = 0; i < PC_STEP_COUNT; i++) {
        /* the filter's decisions, plus deferrals that timed out into rejects */
        out->rejected[i] = fs.rejected[i] + counter_get(&s->rejected[i]);
        out->would_reject[i] = fs.would_reject[i];
    }
    out->source_table_full = fs.tracker_full;
    out->source_entries = fs.tracker_used;
    out->source_active = fs.tracker_active;
    out->rule_count = fs.rules;
    out->rule_duplicates = fs.rule_duplicates;
    out->active = atomic_load(&((pc_server_t *)s)->active);
    out->outbound = atomic_load(&((pc_server_t *)s)->outbound);
    out->connects = counter_get(&s->connects);
    for (int i = 0; i < s->nworkers; i++) {
        const worker_t *w = &s->workers[i];
        out->bytes_in += counter_get(&w->bytes_in);
        out->bytes_out += counter_get(&w->bytes_out);
        for (int r = 0; r < PC_CLOSE_REASON_COUNT; r++)
            out->closed[r] += counter_get(&w->closed[r]);
        out->proxy_headers += counter_get(&w->proxy_headers);
        out->proxy_timeouts += counter_get(&w->proxy_timeouts);
        out->proxy_rejected += counter_get(&w->proxy_rejected);
        for (int e = 0; e < PC_PROXY_ERR_COUNT; e++)
            out->proxy_errors[e] += counter_get(&w->proxy_errors[e]);
        out->tls_handshakes += counter_get(&w->tls_handshakes);
        out->tls_handshake_errors += counter_get(&w->tls_handshake_errors);
        out->tls_handshakes_done += counter_get(&w->tls_handshakes_done);
        out->tls_resumed += counter_get(&w->tls_resumed);
    }
    out->send_queued_bytes = counter_get(&s->send_queued);
    out->send_held_bytes = counter_get(&s->send_held);
    out->send_refused = counter_get(&s->send_refused);
    out->send_limit_refused = counter_get(&s->send_limit_refused);
    out->accept_mode = s->accept_mode;
    /* the weakest listener's kernel tier (kfilter_posix.c keeps it) */
    pc_kernel_filter_t kt = (pc_kernel_filter_t)atomic_load(&((pc_server_t *)s)->kf_weakest);
    out->kernel_filter = kt;
    out->kernel_filter_bytes = atomic_load(&((pc_server_t *)s)->kf_kernel_bytes);
    if (kt != PC_KERNEL_FILTER_OFF && out->accept_mode == PC_ACCEPT_MODE_POST_HANDSHAKE)
        out->accept_mode = PC_ACCEPT_MODE_KERNEL;
    kfilter_counts((pc_server_t *)s, out);
    out->backend = s->port ? s->port->vt->id : PC_BACKEND_AUTO;
    memcpy(out->backend_why, s->backend_why, sizeof out->backend_why);
    out->threads = s->nworkers;
    out->accept_batch_us = accept_batch_us(s);
    out->accept_batch_waits = counter_get(&s->accept_batch_waits);
    unsigned dw = atomic_load(&((pc_server_t *)s)->data_wait_min);
    out->accept_data_wait_s = dw == UINT_MAX ? 0 : dw;
    out->sched_batch = atomic_load(&((pc_server_t *)s)->sched_batch_on);
}
