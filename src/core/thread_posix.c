/* SPDX-License-Identifier: MIT */
/* Threads, mutexes and condition variables on POSIX threads (thread.h). */
#include "thread.h"

#include <errno.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "errno_map.h"
#include "portcullis.h"

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
    int rc = pthread_create(t, NULL, thread_main, st);
    if (rc) {
        pc__free(st);
        return pc__from_errno(rc);
    }
    return 0;
}

void pc__thread_join(pc_thread_t t)
{
    pthread_join(t, NULL);
}

int pc__thread_is_self(pc_thread_t t)
{
    return pthread_equal(t, pthread_self());
}

void pc__mutex_init(pc_mutex_t *m)
{
    pthread_mutex_init(m, NULL);
}
void pc__mutex_destroy(pc_mutex_t *m)
{
    pthread_mutex_destroy(m);
}
void pc__mutex_lock(pc_mutex_t *m)
{
    pthread_mutex_lock(m);
}
void pc__mutex_unlock(pc_mutex_t *m)
{
    pthread_mutex_unlock(m);
}

void pc__cond_init(pc_cond_t *c)
{
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(c, &a);
    pthread_condattr_destroy(&a);
}
void pc__cond_destroy(pc_cond_t *c)
{
    pthread_cond_destroy(c);
}
void pc__cond_signal(pc_cond_t *c)
{
    pthread_cond_signal(c);
}
void pc__cond_broadcast(pc_cond_t *c)
{
    pthread_cond_broadcast(c);
}
void pc__cond_wait(pc_cond_t *c, pc_mutex_t *m)
{
    pthread_cond_wait(c, m);
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
    return pthread_cond_timedwait(c, m, &ts) == ETIMEDOUT ? PC_ETIMEDOUT : 0;
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
