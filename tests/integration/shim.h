/* SPDX-License-Identifier: MIT */
/* A small portable socket shim for the client side of the integration tests
 * (POSIX sockets and Winsock), so the same suite runs on Linux and under
 * Wine. Blocking sockets with timeouts; loopback only. */
#ifndef PC_TEST_SHIM_H
#define PC_TEST_SHIM_H

#include <stddef.h>
#include <stdint.h>

#ifdef _WIN32
#include <winsock2.h>
#include <ws2tcpip.h>
typedef SOCKET shim_sock_t;
#define SHIM_INVALID INVALID_SOCKET
#else
typedef int shim_sock_t;
#define SHIM_INVALID (-1)
#endif

/* Start the socket library (no-op on POSIX). */
void shim_init(void);
/* Connect to ip:port (IPv4 or IPv6 text); bind to src (IPv4 text, port 0)
 * first when src is not NULL. Receive timeout set to timeout_ms. Returns
 * SHIM_INVALID on failure. */
shim_sock_t shim_connect(const char *ip, int port, const char *src, int timeout_ms);
/* A plain listener on 127.0.0.1 with a port of the system's choosing
 * (*port), for tests that play the far end of an outbound connection;
 * SHIM_INVALID if any step fails. */
shim_sock_t shim_listen(int backlog, int *port);
/* After shim_connect returned SHIM_INVALID on this thread: 1 when the
 * connection was made and then reset by the server before connect()
 * returned (a server that accepts and resets at once can win that race), 0
 * for any other failure. */
int shim_connect_was_reset(void);
/* Send all bytes; 0 on success, -1 on error. */
int shim_send_all(shim_sock_t s, const void *buf, size_t len);
/* Receive exactly len bytes; returns len, or the number received before
 * EOF, error or timeout. */
size_t shim_recv_exact(shim_sock_t s, void *buf, size_t len);
/* One recv: > 0 bytes, 0 EOF, -1 reset, -2 timeout, -3 other error. */
int shim_recv_some(shim_sock_t s, void *buf, size_t len);
/* Read and discard until EOF/reset/timeout: returns 0 on FIN (EOF), -1 on
 * reset, -2 on timeout; *nbytes counts what was discarded. */
int shim_wait_close(shim_sock_t s, size_t *nbytes);
/* shim_wait_close, for a connection expected to end with a reset. Under
 * Wine a client whose recv starts after the reset arrived gets EOF; the
 * send that follows then fails at once (after a FIN it would succeed), so
 * on Windows an EOF followed by a failing send also answers -1. */
int shim_wait_reset(shim_sock_t s, size_t *nbytes);
/* Set the receive timeout. */
void shim_set_timeout(shim_sock_t s, int timeout_ms);
/* Shrink the receive buffer (to make backpressure visible quickly). */
void shim_set_rcvbuf(shim_sock_t s, int bytes);
void shim_close(shim_sock_t s);
/* Close with RST (SO_LINGER 0). */
void shim_close_reset(shim_sock_t s);
/* Half-close (FIN). */
void shim_shutdown_write(shim_sock_t s);
void shim_sleep_ms(int ms);
uint64_t shim_now_ms(void);
/* CPU time of the whole process (the server's threads and the test's),
 * user and kernel, in ms. */
uint64_t shim_process_cpu_ms(void);
/* Is IPv6 loopback usable? */
int shim_have_ipv6(void);
/* A socket of this process whose local IPv4 port is port: the server's end
 * of the connection from client c, or with c SHIM_INVALID the one with no
 * peer (the listener); SHIM_INVALID if none. Found by trying descriptor (or
 * handle) values, so a test needs nothing of the engine's internals. */
shim_sock_t shim_socket_on_port(int port, shim_sock_t c);

#endif
