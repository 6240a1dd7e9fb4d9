/* SPDX-License-Identifier: MIT */
/* Threads, mutexes, condition variables, thread-locals: POSIX and Win32
 * (thread_posix.c, thread_win.c).
 * Atomics are C11 <stdatomic.h> on both (gcc and mingw-w64). */
#ifndef PC_CORE_THREAD_H
#define PC_CORE_THREAD_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* The handles are opaque storage, large and aligned enough for each
 * platform's native object (pthread_t / pthread_mutex_t / pthread_cond_t on
 * POSIX, HANDLE / SRWLOCK / CONDITION_VARIABLE on Windows): thread_posix.c
 * and thread_win.c check the fit at compile time and are the only files that
 * look inside. */
typedef union pc_thread_u {
    max_align_t align;
    unsigned char bytes[16];
} pc_thread_t;
typedef union pc_mutex_u {
    max_align_t align;
    unsigned char bytes[64];
} pc_mutex_t;
typedef union pc_cond_u {
    max_align_t align;
    unsigned char bytes[64];
} pc_cond_t;

#if defined(_MSC_VER)
#define PC_THREAD_LOCAL __declspec(thread)
#else /* mingw-w64 gcc ignores __declspec(thread) (a plain global!); C11 works */
#define PC_THREAD_LOCAL _Thread_local
#endif

typedef void (*pc_thread_fn)(void *arg);

/* Start a thread running fn(arg); name (<= 15 chars) shows in debuggers.
 * Returns 0 or a PC_E* code. */
int pc__thread_start(pc_thread_t *t, pc_thread_fn fn, void *arg, const char *name);
void pc__thread_join(pc_thread_t t);
/* Is t the calling thread? */
int pc__thread_is_self(pc_thread_t t);
/* Put thread t in the platform's batch scheduling class (Linux SCHED_BATCH,
 * nice value unchanged): when woken it does not preempt the thread running
 * on its CPU, it waits for that one's turn to end. Only a thread under the
 * default policy is moved: one under another (real-time, idle) keeps it.
 * Returns 0 (t runs under SCHED_BATCH now, or already did), PC_EEXIST (t
 * runs under another policy than the default, kept; *why says which),
 * PC_ENOTSUP (no batch class: Windows) or the error of the system call. */
int pc__thread_sched_batch(pc_thread_t t, const char **why);

void pc__mutex_init(pc_mutex_t *m);
void pc__mutex_destroy(pc_mutex_t *m);
void pc__mutex_lock(pc_mutex_t *m);
/* Take m if it is free: 1 (taken, unlock it), 0 (held elsewhere; not taken). */
int pc__mutex_trylock(pc_mutex_t *m);
void pc__mutex_unlock(pc_mutex_t *m);

void pc__cond_init(pc_cond_t *c);
void pc__cond_destroy(pc_cond_t *c);
void pc__cond_signal(pc_cond_t *c);
void pc__cond_broadcast(pc_cond_t *c);
void pc__cond_wait(pc_cond_t *c, pc_mutex_t *m);
/* Returns 0 if signalled (or spuriously woken), PC_ETIMEDOUT on timeout. */
int pc__cond_timedwait(pc_cond_t *c, pc_mutex_t *m, unsigned ms);

/* Number of online CPUs (>= 1). */
int pc__cpu_count(void);
/* Sleep the calling thread. */
void pc__sleep_ms(unsigned ms);

#endif
