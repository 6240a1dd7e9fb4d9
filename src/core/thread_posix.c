/* SPDX-License-Identifier: MIT */
/* Threads, mutexes and condition variables on POSIX threads (thread.h). */
#include "thread.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "errno_map.h"
#include "portcullis.h"

_Static_assert(sizeof(pthread_t) <= sizeof(pc_thread_t) &&
                   _Alignof(pthread_t) <= _Alignof(pc_thread_t),
               "pc_thread_t cannot hold a pthread_t");
_Static_assert(sizeof(pthread_mutex_t) <= sizeof(pc_mutex_t) &&
                   _Alignof(pthread_mutex_t) <= _Alignof(pc_mutex_t),
               "pc_mutex_t cannot hold a pthread_mutex_t");
_Static_assert(sizeof(pthread_cond_t) <= sizeof(pc_cond_t) &&
                   _Alignof(pthread_cond_t) <= _Alignof(pc_cond_t),
               "pc_cond_t cannot hold a pthread_cond_t");

/* The native objects inside the opaque storage of thread.h. */
static pthread_mutex_t *mx(pc_mutex_t *m)
{
    return (pthread_mutex_t *)m;
}
static pthread_cond_t *cv(pc_cond_t *c)
{
    return (pthread_cond_t *)c;
}
static pthread_t th(pc_thread_t t)
{
    pthread_t p;
    memcpy(&p, t.bytes, sizeof p);
    return p;
}

typedef struct thread_start_s {
    pc_thread_fn fn;
    void *arg;
    char name[16];
} thread_start_t;

static void *thread_main(void *p)
{
    thread_start_t st = *(thread_start_t *)p;
    pc__free(p);
#ifdef __linux__
    if (st.name[0]) pthread_setname_np(pthread_self(), st.name);
#endif
    st.fn(st.arg);
    return NULL;
}

int pc__thread_start(pc_thread_t *t, pc_thread_fn fn, void *arg, const char *name)
{
    thread_start_t *st = pc__malloc(sizeof *st);
    if (!st) return PC_ENOMEM;
    st->fn = fn;
    st->arg = arg;
    st->name[0] = 0;
    if (name) {
        strncpy(st->name, name, sizeof st->name - 1);
        st->name[sizeof st->name - 1] = 0;
    }
    pthread_t p;
    int rc = pthread_create(&p, NULL, thread_main, st);
    if (rc) {
        pc__free(st);
        return pc__from_errno(rc);
    }
    memset(t, 0, sizeof *t);
    memcpy(t->bytes, &p, sizeof p);
    return 0;
}

void pc__thread_join(pc_thread_t t)
{
    pthread_join(th(t), NULL);
}

int pc__thread_is_self(pc_thread_t t)
{
    return pthread_equal(th(t), pthread_self());
}

int pc__thread_sched_batch(pc_thread_t t, const char **why)
{
    *why = NULL;
#ifdef SCHED_BATCH
    int pol;
    struct sched_param sp;
    int rc = pthread_getschedparam(th(t), &pol, &sp);
    if (rc) return pc__from_errno(rc);
    if (pol == SCHED_BATCH) return 0;
    if (pol != SCHED_OTHER) {
        *why = "a policy other than SCHED_OTHER";
        if (pol == SCHED_FIFO) *why = "SCHED_FIFO";
        if (pol == SCHED_RR) *why = "SCHED_RR";
#ifdef SCHED_IDLE
        if (pol == SCHED_IDLE) *why = "SCHED_IDLE";
#endif
        return PC_EEXIST;
    }
    memset(&sp, 0, sizeof sp); /* the priority of the non-real-time policies is 0 */
    rc = pthread_setschedparam(th(t), SCHED_BATCH, &sp);
    return rc ? pc__from_errno(rc) : 0;
#else
    (void)t;
    return PC_ENOTSUP;
#endif
}

void pc__mutex_init(pc_mutex_t *m)
{
    pthread_mutex_init(mx(m), NULL);
}
void pc__mutex_destroy(pc_mutex_t *m)
{
    pthread_mutex_destroy(mx(m));
}
void pc__mutex_lock(pc_mutex_t *m)
{
    pthread_mutex_lock(mx(m));
}
int pc__mutex_trylock(pc_mutex_t *m)
{
    return pthread_mutex_trylock(mx(m)) == 0;
}
void pc__mutex_unlock(pc_mutex_t *m)
{
    pthread_mutex_unlock(mx(m));
}

void pc__cond_init(pc_cond_t *c)
{
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(cv(c), &a);
    pthread_condattr_destroy(&a);
}
void pc__cond_destroy(pc_cond_t *c)
{
    pthread_cond_destroy(cv(c));
}
void pc__cond_signal(pc_cond_t *c)
{
    pthread_cond_signal(cv(c));
}
void pc__cond_broadcast(pc_cond_t *c)
{
    pthread_cond_broadcast(cv(c));
}
void pc__cond_wait(pc_cond_t *c, pc_mutex_t *m)
{
    pthread_cond_wait(cv(c), mx(m));
}
int pc__cond_timedwait(pc_cond_t *c, pc_mutex_t *m, unsigned ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return pthread_cond_timedwait(cv(c), mx(m), &ts) == ETIMEDOUT ? PC_ETIMEDOUT : 0;
}
int pc__cpu_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}
void pc__sleep_ms(unsigned ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}
