/* SPDX-License-Identifier: MIT */
/* Endpoints (parse/format), threads, condition variables, the clock, the
 * log sink. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#ifndef _WIN32
#include <pthread.h>
#include <signal.h>
#include <unistd.h>
#endif

#include <cmocka.h>

#include "portcullis.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/thread.h"

static void roundtrip(const char *in, const char *out)
{
    struct sockaddr_storage ss;
    socklen_t len;
    char buf[80];
    assert_int_equal(pc_parse_endpoint(in, &ss, &len), 0);
    assert_true(pc_format_endpoint((struct sockaddr *)&ss, buf, sizeof buf) > 0);
    assert_string_equal(buf, out);
}

static void endpoints(void **state)
{
    (void)state;
    roundtrip("127.0.0.1:7000", "127.0.0.1:7000");
    roundtrip("[::1]:80", "[::1]:80");
    roundtrip(":8080", "0.0.0.0:8080");
    roundtrip("[2001:db8::1]:0", "[2001:db8::1]:0");
    struct sockaddr_storage ss;
    socklen_t len;
    const char *bad[] = {"",         "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "1.2.3:80",
                         "[::1:80",  "[::1]80",   "::1:80",     "host.example:80", "127.0.0.1:8x",
                         "[zz::]:1", NULL};
    for (int i = 0; bad[i]; i++)
        assert_int_equal(pc_parse_endpoint(bad[i], &ss, &len), PC_EINVAL);
    char small[8];
    pc_parse_endpoint("127.0.0.1:7000", &ss, &len);
    assert_int_equal(pc_format_endpoint((struct sockaddr *)&ss, small, sizeof small), PC_EINVAL);
    /* a buffer one byte short of the text and its terminator: refused, not
     * cut; with the byte, the whole text */
    char exact[15];
    assert_int_equal(pc_format_endpoint((struct sockaddr *)&ss, exact, sizeof exact - 1),
                     PC_EINVAL);
    assert_int_equal(pc_format_endpoint((struct sockaddr *)&ss, exact, sizeof exact), 14);
    assert_string_equal(exact, "127.0.0.1:7000");
    /* a host text longer than any address: refused before it is copied */
    char longer[200];
    memset(longer, '1', sizeof longer);
    memcpy(longer + sizeof longer - 4, ":80", 4);
    assert_int_equal(pc_parse_endpoint(longer, &ss, &len), PC_EINVAL);
    longer[0] = '[';
    memcpy(longer + sizeof longer - 5, "]:80", 5);
    assert_int_equal(pc_parse_endpoint(longer, &ss, &len), PC_EINVAL);
}

/* The port's digits and bounds: every digit counts (9 too), 0 and 65535
 * are the ends of the range, and a number past 65535 is refused however
 * many digits it has, one that an unsigned would wrap back into the range
 * included (4294967376 is 2^32 + 80): the bound is checked digit by
 * digit, not once at the end. */
static void endpoint_ports(void **state)
{
    (void)state;
    roundtrip("127.0.0.1:65535", "127.0.0.1:65535");
    roundtrip("[::1]:65535", "[::1]:65535");
    roundtrip("127.0.0.1:9", "127.0.0.1:9");
    roundtrip("127.0.0.1:19999", "127.0.0.1:19999");
    roundtrip("127.0.0.1:0", "127.0.0.1:0");
    struct sockaddr_storage ss;
    socklen_t len;
    const char *bad[] = {"127.0.0.1:4294967376",
                         "[::1]:4294967376",
                         "127.0.0.1:18446744073709551696",
                         "127.0.0.1:-1",
                         "127.0.0.1:+80",
                         "127.0.0.1: 80",
                         "[::1]:",
                         NULL};
    for (int i = 0; bad[i]; i++)
        assert_int_equal(pc_parse_endpoint(bad[i], &ss, &len), PC_EINVAL);
}

/* The parsed address is all a bind or connect needs, whatever the caller's
 * storage held before: its length is its family's sockaddr's (an IPv6
 * address given the IPv4 length is cut short by the kernel), and what the
 * text does not say is zero (the IPv4 padding; the IPv6 flow label and
 * scope id: a stale scope id makes a bind to ::1 fail or picks an
 * interface). */
static void endpoint_parsed_whole(void **state)
{
    (void)state;
    struct sockaddr_storage ss;
    socklen_t len = 0;
    memset(&ss, 0xa5, sizeof ss);
    assert_int_equal(pc_parse_endpoint("127.0.0.1:80", &ss, &len), 0);
    assert_int_equal(len, sizeof(struct sockaddr_in));
    struct sockaddr_in w4;
    memset(&w4, 0, sizeof w4);
    w4.sin_family = AF_INET;
    w4.sin_port = htons(80);
    w4.sin_addr.s_addr = htonl(0x7f000001);
    assert_memory_equal(&ss, &w4, sizeof w4);

    memset(&ss, 0xa5, sizeof ss);
    len = 0;
    assert_int_equal(pc_parse_endpoint("[::1]:443", &ss, &len), 0);
    assert_int_equal(len, sizeof(struct sockaddr_in6));
    struct sockaddr_in6 w6;
    memset(&w6, 0, sizeof w6);
    w6.sin6_family = AF_INET6;
    w6.sin6_port = htons(443);
    w6.sin6_addr.s6_addr[15] = 1;
    assert_memory_equal(&ss, &w6, sizeof w6);
}

/* What neither call can work with is refused, not dereferenced: a missing
 * text, result or length; a missing address or buffer, a buffer of no
 * size, an address neither IPv4 nor IPv6. */
static void endpoint_refuses_missing(void **state)
{
    (void)state;
    struct sockaddr_storage ss;
    socklen_t len;
    assert_int_equal(pc_parse_endpoint(NULL, &ss, &len), PC_EINVAL);
    assert_int_equal(pc_parse_endpoint("127.0.0.1:80", NULL, &len), PC_EINVAL);
    assert_int_equal(pc_parse_endpoint("127.0.0.1:80", &ss, NULL), PC_EINVAL);
    assert_int_equal(pc_parse_endpoint("127.0.0.1:80", &ss, &len), 0);
    char buf[64];
    assert_int_equal(pc_format_endpoint(NULL, buf, sizeof buf), PC_EINVAL);
    assert_int_equal(pc_format_endpoint((struct sockaddr *)&ss, NULL, sizeof buf), PC_EINVAL);
    assert_int_equal(pc_format_endpoint((struct sockaddr *)&ss, buf, 0), PC_EINVAL);
    memset(&ss, 0, sizeof ss);
    ss.ss_family = AF_UNSPEC;
    assert_int_equal(pc_format_endpoint((struct sockaddr *)&ss, buf, sizeof buf), PC_EINVAL);
}

/* Host texts at the size of the copy the parser makes of them (63, 64 and
 * 65 characters, bracketed or not; no address is that long): refused, and
 * the 64-character one not copied with its terminator one byte past the
 * copy (what a sanitizer build would catch). */
static void endpoint_host_at_copy_size(void **state)
{
    (void)state;
    struct sockaddr_storage ss;
    socklen_t len;
    for (int n = 63; n <= 65; n++) {
        char text[80];
        memset(text, '1', (size_t)n);
        memcpy(text + n, ":80", 4);
        assert_int_equal(pc_parse_endpoint(text, &ss, &len), PC_EINVAL);
        text[0] = '[';
        memset(text + 1, '1', (size_t)n);
        memcpy(text + 1 + n, "]:80", 5);
        assert_int_equal(pc_parse_endpoint(text, &ss, &len), PC_EINVAL);
    }
}

typedef struct shared_s {
    pc_mutex_t m;
    pc_cond_t c;
    int value;
    long counter;
} shared_t;

static void bump(void *arg)
{
    shared_t *s = arg;
    for (int i = 0; i < 100000; i++) {
        pc__mutex_lock(&s->m);
        s->counter++;
        pc__mutex_unlock(&s->m);
    }
    pc__mutex_lock(&s->m);
    s->value++;
    pc__cond_signal(&s->c);
    pc__mutex_unlock(&s->m);
}

/* One try at s->m: s->value is 1 if it was taken (then given back). */
static void try_once(void *arg)
{
    shared_t *s = arg;
    s->value = pc__mutex_trylock(&s->m);
    if (s->value) pc__mutex_unlock(&s->m);
}

static void threads_and_conditions(void **state)
{
    (void)state;
    shared_t s = {0};
    pc__mutex_init(&s.m);
    pc__cond_init(&s.c);
    pc_thread_t t[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pc__thread_start(&t[i], bump, &s, "bump"), 0);
    pc__mutex_lock(&s.m);
    while (s.value < 4)
        pc__cond_wait(&s.c, &s.m);
    pc__mutex_unlock(&s.m);
    for (int i = 0; i < 4; i++)
        pc__thread_join(t[i]);
    assert_int_equal(s.counter, 400000);
    /* a timed wait with nobody signalling times out after about its time */
    uint64_t t0 = pc__now_ms();
    pc__mutex_lock(&s.m);
    int rc = pc__cond_timedwait(&s.c, &s.m, 50);
    pc__mutex_unlock(&s.m);
    uint64_t dt = pc__now_ms() - t0;
    assert_int_equal(rc, PC_ETIMEDOUT);
    assert_true(dt >= 45 && dt < 1000);
    assert_true(pc__cpu_count() >= 1);
#ifndef _WIN32
    assert_int_equal(pc__cpu_count(), (int)sysconf(_SC_NPROCESSORS_ONLN));
#endif
    /* a try at a mutex another thread holds fails, at a free one succeeds */
    pc_thread_t tt;
    pc__mutex_lock(&s.m);
    s.value = -1;
    assert_int_equal(pc__thread_start(&tt, try_once, &s, "try"), 0);
    pc__thread_join(tt);
    assert_int_equal(s.value, 0);
    pc__mutex_unlock(&s.m);
    assert_int_equal(pc__thread_start(&tt, try_once, &s, "try"), 0);
    pc__thread_join(tt);
    assert_int_equal(s.value, 1);
    pc__mutex_destroy(&s.m);
    pc__cond_destroy(&s.c);
}

/* A thread is itself and no other: pc__thread_is_self of its handle is 1
 * on the thread and 0 on the one that started it. The thread waits for
 * its handle to be published (pc__thread_start writes it on return). */
typedef struct self_s {
    pc_mutex_t m;
    pc_cond_t c;
    pc_thread_t t;
    int published;
    int self;
} self_t;

static void check_self(void *arg)
{
    self_t *s = arg;
    pc__mutex_lock(&s->m);
    while (!s->published)
        pc__cond_wait(&s->c, &s->m);
    s->self = pc__thread_is_self(s->t);
    pc__mutex_unlock(&s->m);
}

static void thread_knows_itself(void **state)
{
    (void)state;
    self_t s = {0};
    s.self = -1;
    pc__mutex_init(&s.m);
    pc__cond_init(&s.c);
    pc_thread_t t;
    assert_int_equal(pc__thread_start(&t, check_self, &s, "self"), 0);
    pc__mutex_lock(&s.m);
    s.t = t;
    s.published = 1;
    pc__cond_signal(&s.c);
    pc__mutex_unlock(&s.m);
    assert_int_equal(pc__thread_is_self(t), 0);
    pc__thread_join(t);
    assert_int_equal(s.self, 1);
    pc__mutex_destroy(&s.m);
    pc__cond_destroy(&s.c);
}

/* A broadcast wakes every waiter, not one: two threads wait on go (5 s at
 * most) for a flag the main thread sets and broadcasts once both are
 * waiting (a waiter counts itself under the mutex, which the wait gives up,
 * and tells the main thread on counted: on go, its signal could wake the
 * other waiter instead). */
typedef struct crowd_s {
    pc_mutex_t m;
    pc_cond_t counted, go_cond;
    int waiting;
    int go;
    int timed_out;
} crowd_t;

static void wait_for_go(void *arg)
{
    crowd_t *s = arg;
    pc__mutex_lock(&s->m);
    s->waiting++;
    pc__cond_signal(&s->counted);
    while (!s->go) {
        /* a time-out, go set or not: the broadcast did not wake it */
        if (pc__cond_timedwait(&s->go_cond, &s->m, 5000) == PC_ETIMEDOUT) {
            s->timed_out++;
            break;
        }
    }
    pc__mutex_unlock(&s->m);
}

static void broadcast_wakes_all(void **state)
{
    (void)state;
    crowd_t s = {0};
    pc__mutex_init(&s.m);
    pc__cond_init(&s.counted);
    pc__cond_init(&s.go_cond);
    pc_thread_t t[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pc__thread_start(&t[i], wait_for_go, &s, "waiter"), 0);
    pc__mutex_lock(&s.m);
    while (s.waiting < 2)
        pc__cond_wait(&s.counted, &s.m);
    s.go = 1;
    pc__cond_broadcast(&s.go_cond);
    pc__mutex_unlock(&s.m);
    for (int i = 0; i < 2; i++)
        pc__thread_join(t[i]);
    assert_int_equal(s.timed_out, 0);
    pc__mutex_destroy(&s.m);
    pc__cond_destroy(&s.counted);
    pc__cond_destroy(&s.go_cond);
}

/* A timed wait of more than a second, with a fraction of a second that
 * takes the deadline's nanoseconds past a whole second (unless the clock
 * reads less than 1 ms into its second), waits all of it: its whole
 * seconds counted, the deadline carried into the next second (else an
 * invalid deadline returned at once). */
static void long_timed_wait(void **state)
{
    (void)state;
    pc_mutex_t m;
    pc_cond_t c;
    pc__mutex_init(&m);
    pc__cond_init(&c);
    uint64_t t0 = pc__now_ms();
    pc__mutex_lock(&m);
    int rc = pc__cond_timedwait(&c, &m, 1999);
    pc__mutex_unlock(&m);
    uint64_t dt = pc__now_ms() - t0;
    assert_int_equal(rc, PC_ETIMEDOUT);
    assert_true(dt >= 1950 && dt < 10000); /* a Windows wait may end a tick early */
    pc__mutex_destroy(&m);
    pc__cond_destroy(&c);
}

static void clock_is_monotonic(void **state)
{
    (void)state;
    uint64_t a = pc__now_ns();
    pc__sleep_ms(20);
    uint64_t b = pc__now_ns();
    assert_true(b - a >= 19000000ull);
    assert_true(pc__now_ms() >= a / 1000000ull);
}

#ifndef _WIN32
/* A sleep of more than a second lasts all of it, signals or not: its whole
 * seconds counted, and a signal that interrupts it (EINTR) does not end it.
 * A helper thread signals the sleeping thread every few ms until it
 * wakes. Not on Windows (no signals). */
static atomic_int g_slept;
static pthread_t g_sleeper;
static void on_usr1(int sig)
{
    (void)sig;
}
static void interrupt_sleeper(void *arg)
{
    (void)arg;
    while (!atomic_load(&g_slept)) {
        pthread_kill(g_sleeper, SIGUSR1);
        pc__sleep_ms(5);
    }
}

static void sleep_through_signals(void **state)
{
    (void)state;
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1; /* no SA_RESTART: nanosleep says EINTR anyway */
    sigemptyset(&sa.sa_mask);
    assert_int_equal(sigaction(SIGUSR1, &sa, &old), 0);
    atomic_store(&g_slept, 0);
    g_sleeper = pthread_self();
    pc_thread_t t;
    assert_int_equal(pc__thread_start(&t, interrupt_sleeper, NULL, "interrupt"), 0);
    uint64_t t0 = pc__now_ms();
    pc__sleep_ms(1001);
    uint64_t dt = pc__now_ms() - t0;
    atomic_store(&g_slept, 1);
    pc__thread_join(t);
    sigaction(SIGUSR1, &old, NULL);
    assert_true(dt >= 1000);
}
#endif

static char g_line[256];
static int g_lines;
static void sink(void *u, pc_log_level_t lvl, const char *line)
{
    (void)u;
    (void)lvl;
    strncpy(g_line, line, sizeof g_line - 1);
    g_lines++;
}

static void log_sink_and_level(void **state)
{
    (void)state;
    pc_log_set_handler(sink, NULL);
    pc_log_set_level(PC_LOG_WARN);
    pc__log(PC_LOG_INFO, "hidden %d", 1);
    assert_int_equal(g_lines, 0);
    pc__log(PC_LOG_WARN, "shown %d", 2);
    assert_int_equal(g_lines, 1);
    assert_string_equal(g_line, "shown 2");
    pc_log_set_handler(NULL, NULL);
    pc_log_set_level(PC_LOG_INFO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(endpoints),
        cmocka_unit_test(endpoint_ports),
        cmocka_unit_test(endpoint_parsed_whole),
        cmocka_unit_test(endpoint_refuses_missing),
        cmocka_unit_test(endpoint_host_at_copy_size),
        cmocka_unit_test(threads_and_conditions),
        cmocka_unit_test(clock_is_monotonic),
        cmocka_unit_test(thread_knows_itself),
        cmocka_unit_test(broadcast_wakes_all),
        cmocka_unit_test(long_timed_wait),
#ifndef _WIN32
        cmocka_unit_test(sleep_through_signals),
#endif
        cmocka_unit_test(log_sink_and_level),
    };
    return cmocka_run_group_tests_name("endpoint_thread", tests, NULL, NULL);
}
