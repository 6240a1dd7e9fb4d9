/* Threads, mutexes, condition variables, thread-locals: POSIX and Win32.
 * Atomics are C11 <stdatomic.h> on both (gcc and mingw-w64). */
#ifndef PC_CORE_THREAD_H
#define PC_CORE_THREAD_H

#include <stdatomic.h>
#include <stdint.h>

#ifdef _WIN32
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <windows.h>
typedef HANDLE pc_thread_t;
typedef SRWLOCK pc_mutex_t;
typedef CONDITION_VARIABLE pc_cond_t;
#if defined(_MSC_VER)
#define PC_THREAD_LOCAL __declspec(thread)
#else /* mingw-w64 gcc ignores __declspec(thread) (a plain global!); C11 works */
#define PC_THREAD_LOCAL _Thread_local
#endif
#else
#include <pthread.h>
typedef pthread_t pc_thread_t;
typedef pthread_mutex_t pc_mutex_t;
typedef pthread_cond_t pc_cond_t;
#define PC_THREAD_LOCAL _Thread_local
#endif

typedef void (*pc_thread_fn)(void *arg);

/* Start a thread running fn(arg); name (<= 15 chars) shows in debuggers.
 * Returns 0 or a PC_E* code. */
int pc__thread_start(pc_thread_t *t, pc_thread_fn fn, void *arg, const char *name);
void pc__thread_join(pc_thread_t t);
/* Is t the calling thread? */
int pc__thread_is_self(pc_thread_t t);

void pc__mutex_init(pc_mutex_t *m);
void pc__mutex_destroy(pc_mutex_t *m);
void pc__mutex_lock(pc_mutex_t *m);
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
