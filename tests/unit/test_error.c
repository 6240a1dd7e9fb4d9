/* SPDX-License-Identifier: MIT */
/* Error codes: names and messages come from one list and round-trip. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <errno.h>

#include <cmocka.h>

#include "portcullis.h"
#include "core/errno_map.h"

static void names_and_messages(void **state)
{
    (void)state;
    assert_string_equal(pc_err_name(PC_ENOTCONN), "PC_ENOTCONN");
    assert_string_equal(pc_err_name(0), "PC_OK");
    assert_string_equal(pc_strerror(0), "success");
    assert_string_equal(pc_strerror(PC_ENOMEM), "out of memory");
    assert_string_equal(pc_err_name(-12345), "PC_EUNKNOWN");
    assert_string_equal(pc_strerror(-12345), "unknown error");
#define CHECK(name, num, msg)                                 \
    assert_string_equal(pc_err_name(PC_##name), "PC_" #name); \
    assert_string_equal(pc_strerror(PC_##name), msg);         \
    assert_int_equal(PC_##name, -(num));
    PC_ERRNO_MAP(CHECK)
#undef CHECK
}

static void errno_translation(void **state)
{
    (void)state;
    /* every errno the library maps: errno_table */
    assert_int_equal(pc__from_errno(0), 0);
    assert_int_equal(pc__from_errno(123456), PC_EUNKNOWN);
    /* a file that could not be opened, as the rules loader and TLS say it */
    assert_int_equal(pc__from_open_errno(ENOENT), PC_ENOENT);
    assert_int_equal(pc__from_open_errno(ENOTDIR), PC_ENOENT);
    assert_int_equal(pc__from_open_errno(EACCES), PC_EACCES);
    assert_int_equal(pc__from_open_errno(EPERM), PC_EACCES);
    assert_int_equal(pc__from_open_errno(ENOMEM), PC_ENOMEM);
    assert_int_equal(pc__from_open_errno(EMFILE), PC_EIO);
}

/* Every errno the library maps, with its code: a code mapped to a
 * neighbour's (ECONNABORTED as a reset, EHOSTUNREACH as ENETUNREACH) or
 * dropped to PC_EUNKNOWN changed what callers are told. */
static void errno_table(void **state)
{
    (void)state;
    static const struct {
        int e, pc;
    } map[] = {
        {EINVAL, PC_EINVAL},
        {ENOMEM, PC_ENOMEM},
        {EAGAIN, PC_EAGAIN},
#ifdef EWOULDBLOCK
        {EWOULDBLOCK, PC_EAGAIN},
#endif
        {ENOTCONN, PC_ENOTCONN},
        {ECONNRESET, PC_ECONNRESET},
        {ECONNREFUSED, PC_ECONNREFUSED},
        {ECONNABORTED, PC_ECONNABORTED},
        {ETIMEDOUT, PC_ETIMEDOUT},
        {ECANCELED, PC_ECANCELED},
        {EADDRINUSE, PC_EADDRINUSE},
        {EADDRNOTAVAIL, PC_EADDRNOTAVAIL},
        {EACCES, PC_EACCES},
        {EPERM, PC_EPERM},
        {EMFILE, PC_EMFILE},
        {ENFILE, PC_EMFILE},
        {ENOBUFS, PC_ENOBUFS},
        {EPIPE, PC_EPIPE},
        {ENOSYS, PC_ENOSYS},
        {ENOTSUP, PC_ENOTSUP},
#ifdef EOPNOTSUPP
        {EOPNOTSUPP, PC_ENOTSUP},
#endif
        {EBUSY, PC_EBUSY},
        {ENOENT, PC_ENOENT},
        {EIO, PC_EIO},
        {ENETUNREACH, PC_ENETUNREACH},
        {EHOSTUNREACH, PC_EHOSTUNREACH},
        {ENOPROTOOPT, PC_ENOPROTOOPT},
        {ERANGE, PC_ERANGE},
        {EEXIST, PC_EEXIST},
        {EDEADLK, PC_EDEADLK},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (pc__from_errno(map[i].e) != map[i].pc)
            fail_msg("errno %d: %s, expected %s", map[i].e, pc_err_name(pc__from_errno(map[i].e)),
                     pc_err_name(map[i].pc));
}

static void other_names(void **state)
{
    (void)state;
    assert_string_equal(pc_close_reason_str(PC_CLOSE_IDLE_TIMEOUT), "idle timeout");
    assert_string_equal(pc_close_reason_str(PC_CLOSE_REASON_COUNT), "unknown");
    assert_string_equal(pc_step_name(PC_STEP_RULES), "rules");
    assert_string_equal(pc_step_name(PC_STEP_COUNT), "unknown");
    /* below the table too: a negative value is no index */
    assert_string_equal(pc_close_reason_str((pc_close_reason_t)-1), "unknown");
    assert_string_equal(pc_step_name((pc_step_t)-1), "unknown");
    assert_string_equal(pc_proxy_error_str(-1), "unknown");
    assert_string_equal(pc_proxy_error_str(PC_PROXY_ERR_COUNT), "unknown");
    assert_string_equal(pc_backend_name(PC_BACKEND_EPOLL), "epoll");
    assert_string_equal(pc_backend_name((pc_backend_t)99), "unknown");
    assert_int_equal(pc_backend_parse("uring"), PC_BACKEND_URING);
    assert_int_equal(pc_backend_parse("io_uring"), PC_BACKEND_URING);
    assert_int_equal(pc_backend_parse("kqueue"), PC_EINVAL);
    assert_int_equal(pc_backend_parse(NULL), PC_EINVAL);
    /* every kernel filter name parses back to its value */
    for (int k = PC_KERNEL_FILTER_AUTO; k <= PC_KERNEL_FILTER_OFF; k++)
        assert_int_equal(pc_kernel_filter_parse(pc_kernel_filter_name((pc_kernel_filter_t)k)), k);
    assert_string_equal(pc_kernel_filter_name(PC_KERNEL_FILTER_CBPF), "cbpf");
    assert_string_equal(pc_kernel_filter_name((pc_kernel_filter_t)99), "unknown");
    assert_int_equal(pc_kernel_filter_parse("unknown"), PC_EINVAL);
    assert_int_equal(pc_kernel_filter_parse("EBPF"), PC_EINVAL);
    assert_int_equal(pc_kernel_filter_parse(NULL), PC_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(names_and_messages),
        cmocka_unit_test(errno_translation),
        cmocka_unit_test(errno_table),
        cmocka_unit_test(other_names),
    };
    return cmocka_run_group_tests_name("error", tests, NULL, NULL);
}
