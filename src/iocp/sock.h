/* SPDX-License-Identifier: MIT */
/* Portable socket primitives used by the shared engine code. Implemented by
 * sock_posix.c (Linux) and sock_win.c (Winsock). All return PC_E* codes. */
#ifndef PC_IOCP_SOCK_H
#define PC_IOCP_SOCK_H

#include <stddef.h>
#include "portcullis.h"

#ifdef _WIN32
typedef SOCKET sock_t;
#define SOCK_INVALID INVALID_SOCKET
#else
#include <arpa/inet.h> /* inet_pton, inet_ntop (ws2tcpip.h on Windows) */
typedef int sock_t;
#define SOCK_INVALID (-1)
#endif

/* Process-wide socket library start/stop (WSAStartup/WSACleanup on Windows;
 * on Linux ignores SIGPIPE for writes by using MSG_NOSIGNAL). Reference
 * counted. */
int sock_lib_init(void);
void sock_lib_cleanup(void);

/* Accepted sockets inherit TCP_NODELAY from the listener (Linux copies the
 * listening socket's options into the connection), so sock_listen sets it
 * and the engine skips the per-connection setsockopt. */
#ifdef _WIN32
#define SOCK_ACCEPT_INHERITS_NODELAY 0
#else
#define SOCK_ACCEPT_INHERITS_NODELAY 1
#endif

/* Create a listening socket bound to sa. cond_accept != 0 asks for
 * SO_CONDITIONAL_ACCEPT before listen (Windows); *cond_err receives 0 or the
 * error that refused it (PC_ENOPROTOOPT under Wine; always PC_ENOTSUP on
 * Linux when asked). */
int sock_listen(const struct sockaddr *sa, socklen_t len, int backlog, int cond_accept,
                int *cond_err, sock_t *out);
#ifndef _WIN32
/* sock_listen with a step between bind and listen: before_listen(fd, ud) runs
 * on the bound socket (the listener's kernel filter is attached there, so no
 * SYN is ever judged without it); its error aborts. NULL: none. */
int sock_listen_with(const struct sockaddr *sa, socklen_t len, int backlog,
                     int (*before_listen)(sock_t fd, void *ud), void *ud, sock_t *out);
#endif
/* Non-blocking TCP socket for an outbound connection of sa's family. */
int sock_open_stream(int family, sock_t *out);
/* Bind s to a local address (outbound connections from a chosen source,
 * port 0). On Linux the port is then chosen by the connect
 * (IP_BIND_ADDRESS_NO_PORT), not by the bind. */
int sock_bind(sock_t s, const struct sockaddr *sa, socklen_t len);
int sock_local_addr(sock_t s, struct sockaddr_storage *ss);
int sock_peer_addr(sock_t s, struct sockaddr_storage *ss);
int sock_set_nonblock(sock_t s);
int sock_set_nodelay(sock_t s);
/* Non-blocking receive: > 0 bytes, 0 orderly EOF, PC_EAGAIN, or an error. */
int sock_recv(sock_t s, void *buf, size_t len);
/* Non-blocking gather send: bytes written (>= 0), PC_EAGAIN, or an error.
 * more (POSIX): MSG_MORE, the last bytes before a FIN that follows at once;
 * ignored on Windows. */
int sock_sendv(sock_t s, const pc_buf_t *bufs, unsigned n, int more);
/* FIN: shutdown the send direction. */
int sock_shutdown_write(sock_t s);
#ifndef _WIN32
/* Wake a thread blocked in accept() on s (shutdown). The Windows accept
 * loop waits on an event instead (accept_win.c). */
void sock_unblock_accept(sock_t s);
#endif
void sock_close(sock_t s);
/* Abortive close: SO_LINGER {1, 0}, then close: the peer gets RST. */
void sock_close_reset(sock_t s);
/* Last socket error of the calling thread as a PC_E* code. */
int sock_last_error(void);

#endif
