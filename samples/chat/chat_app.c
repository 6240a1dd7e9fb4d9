/* SPDX-License-Identifier: MIT */
/* pc-chat's server logic (chat_app.h).
 *
 * Threads and what each touches:
 * - workers run the callbacks: on_data cuts lines and appends them to the
 *   inbox (under the chat's mutex); a talker that takes the inbox past its
 *   limit is paused (pc_conn_pause_read, legal in its callback) and its id
 *   noted;
 * - the broadcaster thread takes the inbox, snapshots the open ids
 *   (pc_server_conn_ids) and sends the batch to each by id. A refused send
 *   (PC_ENOBUFS) is retried until the round's deadline (patience_ms); then
 *   every client whose queue did not shrink meanwhile has stopped reading
 *   and is aborted by id, its queue dropped, so clients that stopped
 *   reading cost neither memory nor the others' lines. Paused talkers are
 *   resumed by running a function in their strand (pc_server_post_to),
 *   since pause/resume are strand-only calls.
 * A connection's own state (its partial line, paused flag) is touched only
 * in its strand: callbacks and post_to functions. Nothing holds a
 * pc_conn_t across threads; a stale id is refused with PC_ENOTCONN. */
#include "chat_app.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _WIN32
#include <windows.h>
typedef HANDLE chat_thread_t;
typedef CRITICAL_SECTION chat_mutex_t;
typedef CONDITION_VARIABLE chat_cond_t;
#define mutex_init(m)   InitializeCriticalSection(m)
#define mutex_free(m)   DeleteCriticalSection(m)
#define mutex_lock(m)   EnterCriticalSection(m)
#define mutex_unlock(m) LeaveCriticalSection(m)
#define cond_init(c)    InitializeConditionVariable(c)
#define cond_free(c)    ((void)(c))
#define cond_signal(c)  WakeConditionVariable(c)
#define cond_wait(c, m) SleepConditionVariableCS((c), (m), INFINITE)
#else
#include <pthread.h>
#include <time.h>
typedef pthread_t chat_thread_t;
typedef pthread_mutex_t chat_mutex_t;
typedef pthread_cond_t chat_cond_t;
#define mutex_init(m)   pthread_mutex_init((m), NULL)
#define mutex_free(m)   pthread_mutex_destroy(m)
#define mutex_lock(m)   pthread_mutex_lock(m)
#define mutex_unlock(m) pthread_mutex_unlock(m)
#define cond_init(c)    pthread_cond_init((c), NULL)
#define cond_free(c)    pthread_cond_destroy(c)
#define cond_signal(c)  pthread_cond_signal(c)
#define cond_wait(c, m) pthread_cond_wait((c), (m))
#endif

static void sleep_ms(unsigned ms)
{
#ifdef _WIN32
    Sleep(ms);
#else
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
#endif
}

/* A growable byte buffer. */
typedef struct bytes_s {
    char *p;
    size_t len, cap;
} bytes_t;

static int bytes_add(bytes_t *b, const void *data, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) return -1;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    return 0;
}

struct chat_s {
    chat_config_t cc;
    size_t send_limit; /* the server's send_queue_limit */
    pc_server_t *srv;
    chat_thread_t thread;
    int thread_started;
    chat_mutex_t mu; /* inbox, paused, stop, stats */
    chat_cond_t cv;
    bytes_t inbox; /* whole lines, newline-terminated */
    pc_conn_id_t *paused;
    size_t npaused, cap_paused;
    int stop;
    chat_stats_t st;
};

/* Per connection, touched only in its strand. */
typedef struct client_s {
    size_t len;
    int paused;
    char line[]; /* cc.max_line + 1 */
} client_t;

static chat_t *chat_of(pc_conn_t *c)
{
    return pc_server_user_data(pc_conn_server(c));
}

static void on_open(pc_conn_t *c)
{
    chat_t *ch = chat_of(c);
    client_t *cl = malloc(sizeof *cl + ch->cc.max_line + 1);
    if (!cl) {
        pc_conn_abort(c);
        return;
    }
    cl->len = 0;
    cl->paused = 0;
    pc_conn_set_user_data(c, cl);
    /* from here on the broadcaster's snapshots include this client */
    static const char hello[] = "* welcome\n";
    pc_conn_send(c, hello, sizeof hello - 1);
}

/* A complete line (with its newline) for everyone. Worker thread. */
static void post_line(chat_t *ch, pc_conn_t *c, client_t *cl, const char *line, size_t n)
{
    mutex_lock(&ch->mu);
    int full = bytes_add(&ch->inbox, line, n) < 0;
    if (!full) ch->st.lines++;
    if ((full || ch->inbox.len > ch->cc.inbox_limit) && !cl->paused) {
        /* the broadcaster is behind: stop reading this talker (TCP pushes
         * back on it) until the broadcaster resumes it */
        if (ch->npaused == ch->cap_paused) {
            size_t cap = ch->cap_paused ? 2 * ch->cap_paused : 16;
            pc_conn_id_t *p = realloc(ch->paused, cap * sizeof *p);
            if (p) {
                ch->paused = p;
                ch->cap_paused = cap;
            }
        }
        if (ch->npaused < ch->cap_paused) {
            ch->paused[ch->npaused++] = pc_conn_id(c);
            cl->paused = 1;
            ch->st.paused++;
            pc_conn_pause_read(c);
        }
    }
    cond_signal(&ch->cv);
    mutex_unlock(&ch->mu);
}

static void on_data(pc_conn_t *c, const void *data, size_t len)
{
    chat_t *ch = chat_of(c);
    client_t *cl = pc_conn_user_data(c);
    if (!cl) return;
    const char *p = data;
    while (len) {
        const char *nl = memchr(p, '\n', len);
        size_t take = nl ? (size_t)(nl - p) + 1 : len;
        if (cl->len + take > ch->cc.max_line + 1) {
            static const char msg[] = "* line too long, bye\n";
            pc_conn_send(c, msg, sizeof msg - 1);
            pc_conn_close(c);
            return;
        }
        memcpy(cl->line + cl->len, p, take);
        cl->len += take;
        p += take;
        len -= take;
        if (nl) {
            post_line(ch, c, cl, cl->line, cl->len);
            cl->len = 0;
        }
    }
}

static void on_close(pc_conn_t *c, pc_close_reason_t reason, int err)
{
    (void)reason;
    (void)err;
    free(pc_conn_user_data(c));
    pc_conn_set_user_data(c, NULL);
}

static void on_shutdown(pc_conn_t *c)
{
    static const char msg[] = "* server shutting down\n";
    pc_conn_send(c, msg, sizeof msg - 1); /* flushed before the FIN */
}

/* Runs in the talker's strand (pc_server_post_to), or with c == NULL if it
 * closed before its turn (nothing to free: arg is unused). */
static void resume_talker(pc_conn_t *c, void *arg)
{
    chat_t *ch = arg;
    if (!c) return;
    client_t *cl = pc_conn_user_data(c);
    if (!cl || !cl->paused) return;
    cl->paused = 0;
    pc_conn_resume_read(c);
    mutex_lock(&ch->mu);
    ch->st.resumed++;
    mutex_unlock(&ch->mu);
}

/* What a round knows of each open client. */
typedef struct slot_s {
    pc_conn_id_t id;
    int64_t ref; /* its queued bytes when last judged: one that does not go
                    below it in patience_ms, while not empty, is not reading */
    int pending; /* the batch has not gone to it yet */
} slot_t;

static uint64_t now_ms(void)
{
#ifdef _WIN32
    return (uint64_t)GetTickCount64();
#else
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
#endif
}

static int stopping(chat_t *ch)
{
    mutex_lock(&ch->mu);
    int s = ch->stop;
    mutex_unlock(&ch->mu);
    return s;
}

/* Snapshot the open connections into *slots (grown as needed). Returns
 * how many. */
static int snapshot(chat_t *ch, slot_t **slots, pc_conn_id_t **ids, int *cap)
{
    int k;
    for (;;) {
        k = pc_server_conn_ids(ch->srv, *ids, *cap);
        if (k < *cap) break;
        pc_conn_id_t *more = realloc(*ids, 2 * (size_t)*cap * sizeof **ids);
        if (!more) break;
        *ids = more;
        slot_t *ms = realloc(*slots, 2 * (size_t)*cap * sizeof **slots);
        if (!ms) break;
        *slots = ms;
        *cap *= 2;
    }
    for (int i = 0; i < k; i++) {
        (*slots)[i].id = (*ids)[i];
        (*slots)[i].pending = 1;
        (*slots)[i].ref = 0;
    }
    return k;
}

/* One round: the batch to every open client, by id. A send refused with
 * PC_ENOBUFS (that client's send_queue_limit, or the server's
 * max_buffered_bytes when many queues are full) is retried until a deadline
 * shared by the whole round, patience_ms away, so a reader slowed for a
 * moment loses nothing and the others wait at most patience_ms however
 * many clients stopped reading. At the deadline every client whose queue
 * is not empty and has not shrunk meanwhile has stopped reading: it is
 * kicked (aborted, its queue dropped: a graceful close would keep it until
 * close_linger_ms). A client still refused although it reads (the server's
 * cap, held by others) gets another window. */
static void broadcast(chat_t *ch, const char *p, size_t n, slot_t *sl, int k)
{
    uint64_t kicked = 0;
    pc_conn_id_t last = 0;
    int npend = 0;
    uint64_t deadline = now_ms() + ch->cc.patience_ms;
    for (;;) {
        npend = 0;
        for (int i = 0; i < k; i++) {
            if (!sl[i].pending) continue;
            int64_t before = pc_server_send_queued(ch->srv, sl[i].id);
            int rc = before < 0 ? PC_ENOTCONN : pc_server_send_to(ch->srv, sl[i].id, p, n);
            if (rc == PC_ENOBUFS) {
                if (!sl[i].ref || before < sl[i].ref) sl[i].ref = before;
                npend++;
                continue;
            }
            sl[i].pending = 0; /* sent, or gone (PC_ENOTCONN) */
            sl[i].ref = rc == 0 ? pc_server_send_queued(ch->srv, sl[i].id) : -1;
        }
        if (!npend) break;
        if (now_ms() < deadline) {
            sleep_ms(1);
            continue;
        }
        if (stopping(ch)) break;
        /* patience is over: whoever has not read since is gone */
        for (int i = 0; i < k; i++) {
            if (sl[i].ref <= 0) continue; /* empty, gone or already judged */
            int64_t q = pc_server_send_queued(ch->srv, sl[i].id);
            if (q > 0 && q >= sl[i].ref) {
                if (pc_server_abort_id(ch->srv, sl[i].id) == 0) {
                    kicked++;
                    last = sl[i].id;
                }
                sl[i].pending = 0;
                sl[i].ref = -1;
            } else {
                sl[i].ref = q; /* it reads: judged again from here */
            }
        }
        deadline = now_ms() + ch->cc.patience_ms;
    }
    mutex_lock(&ch->mu);
    ch->st.rounds++;
    ch->st.kicked += kicked;
    if (last) ch->st.last_kicked = last;
    mutex_unlock(&ch->mu);
}

#ifdef _WIN32
static DWORD WINAPI broadcaster(LPVOID arg)
#else
static void *broadcaster(void *arg)
#endif
{
    chat_t *ch = arg;
    bytes_t batch = {0};
    int cap = 64;
    pc_conn_id_t *ids = malloc((size_t)cap * sizeof *ids);
    slot_t *slots = malloc((size_t)cap * sizeof *slots);
    pc_conn_id_t *resume = NULL;
    size_t nresume = 0;
    for (;;) {
        mutex_lock(&ch->mu);
        while (!ch->stop && ch->inbox.len == 0)
            cond_wait(&ch->cv, &ch->mu);
        if (ch->inbox.len == 0) { /* stopping and nothing left */
            mutex_unlock(&ch->mu);
            break;
        }
        /* take whole lines, at most batch_max (one longer line alone) */
        size_t n = 0;
        while (n < ch->inbox.len) {
            const char *nl = memchr(ch->inbox.p + n, '\n', ch->inbox.len - n);
            size_t end = (size_t)(nl - ch->inbox.p) + 1; /* lines always end in '\n' */
            if (n && end > ch->cc.batch_max) break;
            n = end;
        }
        batch.len = 0;
        if (bytes_add(&batch, ch->inbox.p, n) == 0) {
            memmove(ch->inbox.p, ch->inbox.p + n, ch->inbox.len - n);
            ch->inbox.len -= n;
        }
        /* caught up to half the limit: the paused talkers may talk again */
        if (ch->npaused && ch->inbox.len <= ch->cc.inbox_limit / 2) {
            free(resume);
            resume = ch->paused;
            nresume = ch->npaused;
            ch->paused = NULL;
            ch->npaused = ch->cap_paused = 0;
        }
        mutex_unlock(&ch->mu);
        if (batch.len && ids && slots)
            broadcast(ch, batch.p, batch.len, slots, snapshot(ch, &slots, &ids, &cap));
        for (size_t i = 0; i < nresume; i++)
            pc_server_post_to(ch->srv, resume[i], resume_talker, ch); /* stale: ENOTCONN */
        nresume = 0;
    }
    free(resume);
    free(ids);
    free(slots);
    free(batch.p);
#ifdef _WIN32
    return 0;
#else
    return NULL;
#endif
}

void chat_config_init(chat_config_t *cc)
{
    cc->max_line = 1024;
    cc->inbox_limit = 64u << 10;
    cc->batch_max = 16u << 10;
    cc->patience_ms = 1000;
}

int chat_create(const chat_config_t *cc, pc_server_config_t *cfg, chat_t **out)
{
    chat_t *ch = calloc(1, sizeof *ch);
    if (!ch) return PC_ENOMEM;
    ch->cc = *cc;
    size_t hw = cfg->send_high_water;
    ch->send_limit =
        cfg->send_queue_limit ? cfg->send_queue_limit : (hw > SIZE_MAX / 4 ? SIZE_MAX : 4 * hw);
    if (ch->cc.max_line < 16) ch->cc.max_line = 16;
    if (ch->cc.batch_max < ch->cc.max_line + 1) ch->cc.batch_max = ch->cc.max_line + 1;
    mutex_init(&ch->mu);
    cond_init(&ch->cv);
    cfg->cb.on_open = on_open;
    cfg->cb.on_data = on_data;
    cfg->cb.on_close = on_close;
    cfg->cb.on_shutdown = on_shutdown;
    cfg->user_data = ch;
    *out = ch;
    return 0;
}

int chat_start(chat_t *ch, pc_server_t *srv)
{
    ch->srv = srv;
#ifdef _WIN32
    ch->thread = CreateThread(NULL, 0, broadcaster, ch, 0, NULL);
    if (!ch->thread) return PC_ENOMEM;
#else
    if (pthread_create(&ch->thread, NULL, broadcaster, ch) != 0) return PC_ENOMEM;
#endif
    ch->thread_started = 1;
    return 0;
}

void chat_stop(chat_t *ch)
{
    if (!ch->thread_started) return;
    mutex_lock(&ch->mu);
    ch->stop = 1;
    cond_signal(&ch->cv);
    mutex_unlock(&ch->mu);
#ifdef _WIN32
    WaitForSingleObject(ch->thread, INFINITE);
    CloseHandle(ch->thread);
#else
    pthread_join(ch->thread, NULL);
#endif
    ch->thread_started = 0;
}

void chat_stats(chat_t *ch, chat_stats_t *out)
{
    mutex_lock(&ch->mu);
    *out = ch->st;
    mutex_unlock(&ch->mu);
}

void chat_destroy(chat_t *ch)
{
    if (!ch) return;
    chat_stop(ch);
    free(ch->inbox.p);
    free(ch->paused);
    cond_free(&ch->cv);
    mutex_free(&ch->mu);
    free(ch);
}
