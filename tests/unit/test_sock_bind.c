/* SPDX-License-Identifier: MIT */
/* The source bind of an outbound connection (sock_bind, pc_connect's
 * source): on Linux the port is left to the connect
 * (IP_BIND_ADDRESS_NO_PORT), which picks it for the whole 4-tuple, so the
 * bound socket has no port until it connects, and then has the source
 * address and a port. A bind-time port (the old behaviour) took one of the
 * ephemeral range per socket whatever the peer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#ifdef __linux__
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "iocp/sock.h"

static void port_left_to_connect(void **state)
{
    (void)state;
    /* a listener to connect to, on 127.0.0.1 */
    int l = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(l >= 0);
    struct sockaddr_in la;
    memset(&la, 0, sizeof la);
    la.sin_family = AF_INET;
    la.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(l, (struct sockaddr *)&la, sizeof la), 0);
    assert_int_equal(listen(l, 4), 0);
    socklen_t ll = sizeof la;
    assert_int_equal(getsockname(l, (struct sockaddr *)&la, &ll), 0);

    sock_t s;
    assert_int_equal(sock_open_stream(AF_INET, &s), 0);
    struct sockaddr_in src;
    memset(&src, 0, sizeof src);
    src.sin_family = AF_INET;
    assert_int_equal(inet_pton(AF_INET, "127.0.0.5", &src.sin_addr), 1);
    assert_int_equal(sock_bind(s, (struct sockaddr *)&src, sizeof src), 0);
    struct sockaddr_storage ss;
    assert_int_equal(sock_local_addr(s, &ss), 0);
    const struct sockaddr_in *got = (const struct sockaddr_in *)&ss;
    assert_int_equal(got->sin_addr.s_addr, src.sin_addr.s_addr);
    assert_int_equal(ntohs(got->sin_port), 0); /* no port yet */

    int rc = connect(s, (struct sockaddr *)&la, sizeof la);
    if (rc != 0) {
        struct pollfd p = {.fd = s, .events = POLLOUT};
        assert_int_equal(poll(&p, 1, 5000), 1);
    }
    assert_int_equal(sock_local_addr(s, &ss), 0);
    assert_int_equal(got->sin_addr.s_addr, src.sin_addr.s_addr);
    assert_true(ntohs(got->sin_port) != 0); /* chosen by the connect */
    sock_close(s);
    close(l);
}
#else
static void port_left_to_connect(void **state)
{
    (void)state;
    skip(); /* Linux's IP_BIND_ADDRESS_NO_PORT */
}
#endif

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(port_left_to_connect),
    };
    return cmocka_run_group_tests_name("sock_bind", tests, NULL, NULL);
}
