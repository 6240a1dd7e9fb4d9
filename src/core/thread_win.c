/* SPDX-License-Identifier: MIT */
/* Threads, SRW locks and condition variables on Win32 (thread.h). */
#include "thread.h"

#include <process.h>

#include "alloc.h"
#include "portcullis.h"

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
    *t = (HANDLE)h;
    return 0;
}

void pc__thread_join(pc_thread_t t)
{
    WaitForSingleObject(t, INFINITE);
    CloseHandle(t);
}

int pc__thread_is_self(pc_thread_t t)
{
    return t && GetThreadId(t) == GetCurrentThreadId();
}

void pc__mutex_init(pc_mutex_t *m)
{
    InitializeSRWLock(m);
}
void pc__mutex_destroy(pc_mutex_t *m)
{
    (void)m;
}
void pc__mutex_lock(pc_mutex_t *m)
{
    AcquireSRWLockExclusive(m);
}
void pc__mutex_unlock(pc_mutex_t *m)
{
    ReleaseSRWLockExclusive(m);
}
void pc__cond_init(pc_cond_t *c)
{
    InitializeConditionVariable(c);
}
void pc__cond_destroy(pc_cond_t *c)
{
    (void)c;
}
void pc__cond_signal(pc_cond_t *c)
{
    WakeConditionVariable(c);
}
void pc__cond_broadcast(pc_cond_t *c)
{
    WakeAllConditionVariable(c);
}
void pc__cond_wait(pc_cond_t *c, pc_mutex_t *m)
{
    SleepConditionVariableSRW(c, m, INFINITE, 0);
}
int pc__cond_timedwait(pc_cond_t *c, pc_mutex_t *m, unsigned ms)
{
    if (SleepConditionVariableSRW(c, m, ms, 0)) return 0;
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
