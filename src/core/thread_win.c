/* SPDX-License-Identifier: MIT */
/* Threads, SRW locks and condition variables on Win32 (thread.h). */
#include "thread.h"

#include <windows.h>

#include <process.h>
#include <string.h>

#include "alloc.h"
#include "portcullis.h"

_Static_assert(sizeof(HANDLE) <= sizeof(pc_thread_t) && _Alignof(HANDLE) <= _Alignof(pc_thread_t),
               "pc_thread_t cannot hold a HANDLE");
_Static_assert(sizeof(SRWLOCK) <= sizeof(pc_mutex_t) && _Alignof(SRWLOCK) <= _Alignof(pc_mutex_t),
               "pc_mutex_t cannot hold an SRWLOCK");
_Static_assert(sizeof(CONDITION_VARIABLE) <= sizeof(pc_cond_t) &&
                   _Alignof(CONDITION_VARIABLE) <= _Alignof(pc_cond_t),
               "pc_cond_t cannot hold a CONDITION_VARIABLE");

/* The native objects inside the opaque storage of thread.h. */
static SRWLOCK *mx(pc_mutex_t *m)
{
    return (SRWLOCK *)m;
}
static CONDITION_VARIABLE *cv(pc_cond_t *c)
{
    return (CONDITION_VARIABLE *)c;
}
static HANDLE th(pc_thread_t t)
{
    HANDLE h;
    memcpy(&h, t.bytes, sizeof h);
    return h;
}

typedef struct thread_start_s {
    pc_thread_fn fn;
    void *arg;
} thread_start_t;

static unsigned __stdcall thread_main(void *p)
{
    thread_start_t st = *(thread_start_t *)p;
    pc__free(p);
    st.fn(st.arg);
    return 0;
}

int pc__thread_start(pc_thread_t *t, pc_thread_fn fn, void *arg, const char *name)
{
    thread_start_t *st = pc__malloc(sizeof *st);
    if (!st) return PC_ENOMEM;
    st->fn = fn;
    st->arg = arg;
    (void)name;
    uintptr_t h = _beginthreadex(NULL, 0, thread_main, st, 0, NULL);
    if (!h) {
        pc__free(st);
        return PC_ENOMEM;
    }
    HANDLE hd = (HANDLE)h;
    memset(t, 0, sizeof *t);
    memcpy(t->bytes, &hd, sizeof hd);
    return 0;
}

void pc__thread_join(pc_thread_t t)
{
    HANDLE h = th(t);
    WaitForSingleObject(h, INFINITE);
    CloseHandle(h);
}

int pc__thread_is_self(pc_thread_t t)
{
    HANDLE h = th(t);
    return h && GetThreadId(h) == GetCurrentThreadId();
}

int pc__thread_sched_batch(pc_thread_t t, const char **why)
{
    (void)t;
    *why = NULL;
    return PC_ENOTSUP; /* Windows has no batch scheduling class */
}

void pc__mutex_init(pc_mutex_t *m)
{
    InitializeSRWLock(mx(m));
}
void pc__mutex_destroy(pc_mutex_t *m)
{
    (void)m;
}
void pc__mutex_lock(pc_mutex_t *m)
{
    AcquireSRWLockExclusive(mx(m));
}
int pc__mutex_trylock(pc_mutex_t *m)
{
    return TryAcquireSRWLockExclusive(mx(m)) != 0;
}
void pc__mutex_unlock(pc_mutex_t *m)
{
    ReleaseSRWLockExclusive(mx(m));
}
void pc__cond_init(pc_cond_t *c)
{
    InitializeConditionVariable(cv(c));
}
void pc__cond_destroy(pc_cond_t *c)
{
    (void)c;
}
void pc__cond_signal(pc_cond_t *c)
{
    WakeConditionVariable(cv(c));
}
void pc__cond_broadcast(pc_cond_t *c)
{
    WakeAllConditionVariable(cv(c));
}
void pc__cond_wait(pc_cond_t *c, pc_mutex_t *m)
{
    SleepConditionVariableSRW(cv(c), mx(m), INFINITE, 0);
}
int pc__cond_timedwait(pc_cond_t *c, pc_mutex_t *m, unsigned ms)
{
    if (SleepConditionVariableSRW(cv(c), mx(m), ms, 0)) return 0;
    return GetLastError() == ERROR_TIMEOUT ? PC_ETIMEDOUT : 0;
}
int pc__cpu_count(void)
{
    SYSTEM_INFO si;
    GetSystemInfo(&si);
    return si.dwNumberOfProcessors > 0 ? (int)si.dwNumberOfProcessors : 1;
}
void pc__sleep_ms(unsigned ms)
{
    Sleep(ms);
}
