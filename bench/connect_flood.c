/* SPDX-License-Identifier: MIT */
/* pc-connect-flood: bounded TCP connection attempts from chosen loopback
 * sources, to measure what a denied client costs a server (Linux only).
 *
 *   pc-connect-flood HOST PORT --sources 127.0.9.1-50 [--rate N] [--seconds S]
 *                    [--hold MS] [--max N] [--send FILE]
 *
 * Opens non-blocking connections, each bound to the next source address of
 * the range in turn, at about --rate attempts per second (default 5000) for
 * --seconds (default 5, at most 60) or --max attempts, whichever comes first.
 * An attempt still not connected after --hold ms (default 50) is abandoned
 * (closed: a client that gives up, as a scanner does); a connected one is
 * closed at once. Prints one line:
 *
 *   attempts=N connected=N refused=N reset=N abandoned=N errors=N seconds=S
 *
 * "connected": the handshake completed (the server sent a SYN-ACK); "reset":
 * it completed and a RST followed before the poll saw it (a post-handshake
 * reject); "refused": a RST answered the SYN; "abandoned": no answer within
 * --hold (the SYN was silently dropped). Only loopback destinations are accepted.
 *
 * With --send FILE (at most 16 KiB, e.g. a TLS ClientHello) a connected
 * attempt first sends the file's bytes and waits up to --hold ms more for the
 * server's first answer, then closes (a client that never finishes: the cost
 * of a handshake flood to a server that does TLS before deciding). The line
 * then ends with
 *
 *   answered=N hungup=N silent=N
 *
 * "answered": the server sent bytes back (e.g. its ServerHello flight);
 * "hungup": it closed or reset the connection without a byte; "silent": no
 * answer within --hold.
 * It measures and never judges: exit 0 after a run, 2 on bad usage. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_OPEN 4096

typedef struct attempt_s {
    int fd;
    int sent; /* --send: the payload went out, waiting for the answer */
    uint64_t deadline_ns;
} attempt_t;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int usage(void)
{
    fprintf(stderr, "usage: pc-connect-flood HOST PORT --sources A.B.C.X-Y [--rate N] "
                    "[--seconds S] [--hold MS] [--max N] [--send FILE]\n");
    return 2;
}

/* "127.0.9.1-50": base address and the last value of its final byte. */
static int parse_sources(const char *s, uint32_t *first, uint32_t *last)
{
    char buf[64];
    const char *dash = strchr(s, '-');
    size_t n = dash ? (size_t)(dash - s) : strlen(s);
    if (n >= sizeof buf) return -1;
    memcpy(buf, s, n);
    buf[n] = 0;
    struct in_addr a;
    if (inet_pton(AF_INET, buf, &a) != 1) return -1;
    *first = ntohl(a.s_addr);
    *last = *first;
    if (dash) {
        char *end;
        unsigned long hi = strtoul(dash + 1, &end, 10);
        if (*end || hi > 255 || hi < (*first & 0xff)) return -1;
        *last = (*first & ~0xffu) | (uint32_t)hi;
    }
    if ((*first >> 24) != 127) return -1; /* loopback sources only */
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3) return usage();
    const char *host = argv[1];
    int port = atoi(argv[2]);
    uint32_t src_first = 0, src_last = 0;
    double rate = 5000, seconds = 5;
    unsigned hold_ms = 50;
    unsigned long max_attempts = 0;
    static unsigned char payload[16384];
    size_t payload_len = 0;
    const char *send_file = NULL;
    for (int i = 3; i < argc; i += 2) { /* option, value */
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) return usage();
        if (!strcmp(argv[i], "--sources")) {
            if (parse_sources(v, &src_first, &src_last)) return usage();
        } else if (!strcmp(argv[i], "--rate")) {
            rate = atof(v);
        } else if (!strcmp(argv[i], "--seconds")) {
            seconds = atof(v);
        } else if (!strcmp(argv[i], "--hold")) {
            hold_ms = (unsigned)atoi(v);
        } else if (!strcmp(argv[i], "--max")) {
            max_attempts = strtoul(v, NULL, 10);
        } else if (!strcmp(argv[i], "--send")) {
            send_file = v;
        } else {
            return usage();
        }
    }
    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (!src_first || port <= 0 || port > 65535 || rate <= 0 || seconds <= 0 ||
        inet_pton(AF_INET, host, &dst.sin_addr) != 1 || (ntohl(dst.sin_addr.s_addr) >> 24) != 127)
        return usage();
    if (seconds > 60) seconds = 60;
    if (send_file) {
        FILE *f = fopen(send_file, "rb");
        if (!f) {
            fprintf(stderr, "pc-connect-flood: cannot open %s\n", send_file);
            return 2;
        }
        payload_len = fread(payload, 1, sizeof payload, f);
        int more = fgetc(f) != EOF;
        fclose(f);
        if (!payload_len || more) {
            fprintf(stderr, "pc-connect-flood: %s: want 1..%zu bytes\n", send_file, sizeof payload);
            return 2;
        }
    }

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    int ep = epoll_create1(EPOLL_CLOEXEC);
    static attempt_t open_[MAX_OPEN];
    for (int i = 0; i < MAX_OPEN; i++)
        open_[i].fd = -1;
    unsigned long attempts = 0, connected = 0, refused = 0, reset = 0, abandoned = 0, errors = 0;
    unsigned long answered = 0, hungup = 0, silent = 0;
    unsigned nopen = 0;
    uint32_t src = src_first;
    uint64_t t0 = now_ns(), end = t0 + (uint64_t)(seconds * 1e9);
    uint64_t gap = (uint64_t)(1e9 / rate), next = t0;

    for (;;) {
        uint64_t now = now_ns();
        int done = now >= end || (max_attempts && attempts >= max_attempts);
        if (done && nopen == 0) break;
        /* start the attempts that are due */
        while (!done && next <= now && nopen < MAX_OPEN &&
               !(max_attempts && attempts >= max_attempts)) {
            next += gap;
            int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
            if (fd < 0) {
                errors++;
                break;
            }
            struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(src)};
            src = src == src_last ? src_first : src + 1;
            /* a reset on close: no TIME_WAIT left behind by the flood */
            struct linger lg = {1, 0};
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
            if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
                (connect(fd, (struct sockaddr *)&dst, sizeof dst) < 0 && errno != EINPROGRESS)) {
                errors++;
                close(fd);
                continue;
            }
            attempts++;
            int slot = 0;
            while (open_[slot].fd >= 0)
                slot++;
            open_[slot].fd = fd;
            open_[slot].sent = 0;
            open_[slot].deadline_ns = now + (uint64_t)hold_ms * 1000000u;
            struct epoll_event ev = {.events = EPOLLOUT, .data.u32 = (uint32_t)slot};
            epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
            nopen++;
        }
        struct epoll_event evs[256];
        int n = epoll_wait(ep, evs, 256, 1);
        for (int i = 0; i < n; i++) {
            attempt_t *a = &open_[evs[i].data.u32];
            if (a->fd < 0) continue;
            if (a->sent) { /* --send: the server's answer, or its close */
                unsigned char buf[4096];
                ssize_t r = recv(a->fd, buf, sizeof buf, MSG_DONTWAIT);
                if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
                if (r > 0)
                    answered++;
                else
                    hungup++;
                close(a->fd);
                a->fd = -1;
                nopen--;
                continue;
            }
            int err = 0;
            socklen_t el = sizeof err;
            getsockopt(a->fd, SOL_SOCKET, SO_ERROR, &err, &el);
            if (err == 0)
                connected++;
            else if (err == ECONNREFUSED)
                refused++;
            else if (err == ECONNRESET)
                reset++;
            else
                errors++;
            if (err == 0 && payload_len) {
                ssize_t w = send(a->fd, payload, payload_len, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (w == (ssize_t)payload_len) {
                    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP,
                                             .data.u32 = evs[i].data.u32};
                    epoll_ctl(ep, EPOLL_CTL_MOD, a->fd, &ev);
                    a->sent = 1;
                    a->deadline_ns = now_ns() + (uint64_t)hold_ms * 1000000u;
                    continue;
                }
                hungup++; /* reset before the payload went out */
            }
            close(a->fd);
            a->fd = -1;
            nopen--;
        }
        now = now_ns();
        for (int i = 0; i < MAX_OPEN && nopen; i++) {
            if (open_[i].fd >= 0 && open_[i].deadline_ns <= now) {
                close(open_[i].fd);
                open_[i].fd = -1;
                if (open_[i].sent)
                    silent++;
                else
                    abandoned++;
                nopen--;
            }
        }
    }
    printf("attempts=%lu connected=%lu refused=%lu reset=%lu abandoned=%lu errors=%lu "
           "seconds=%.2f",
           attempts, connected, refused, reset, abandoned, errors, (double)(now_ns() - t0) / 1e9);
    if (payload_len) printf(" answered=%lu hungup=%lu silent=%lu", answered, hungup, silent);
    printf("\n");
    return 0;
}
