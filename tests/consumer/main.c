/* SPDX-License-Identifier: MIT */
/* A program built against an installed portcullis (tests/consumer/run.sh):
 * an echo server on 127.0.0.1, one client round trip through it. Exits 0 when
 * the bytes come back, 1 with a message otherwise. */
#include <portcullis.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static void on_data(pc_conn_t *c, const void *data, size_t len)
{
    pc_conn_send(c, data, len);
}

static int round_trip(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    static const char msg[] = "consumer ping";
    char got[sizeof msg];
    size_t n = 0;
    int rc = -1;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
        send(fd, msg, sizeof msg - 1, 0) == (ssize_t)(sizeof msg - 1)) {
        while (n < sizeof msg - 1) {
            ssize_t k = recv(fd, got + n, sizeof msg - 1 - n, 0);
            if (k <= 0) break;
            n += (size_t)k;
        }
        rc = n == sizeof msg - 1 && memcmp(got, msg, n) == 0 ? 0 : -1;
    }
    close(fd);
    return rc;
}

int main(void)
{
    pc_log_set_level(PC_LOG_WARN);
    pc_server_config_t cfg;
    pc_server_config_init(&cfg);
    cfg.threads = 1;
    cfg.cb.on_data = on_data;
    pc_server_t *s;
    int rc = pc_server_create(&cfg, &s);
    if (rc < 0) {
        fprintf(stderr, "consumer: pc_server_create: %s\n", pc_strerror(rc));
        return 1;
    }
    if ((rc = pc_server_listen(s, "127.0.0.1:0")) < 0 || (rc = pc_server_start(s)) < 0) {
        fprintf(stderr, "consumer: listen/start: %s\n", pc_strerror(rc));
        pc_server_destroy(s);
        return 1;
    }
    int ok = round_trip(pc_server_listener_port(s, 0)) == 0;
    pc_server_stop(s, 1000);
    pc_server_destroy(s);
    if (!ok) {
        fprintf(stderr, "consumer: the echo round trip failed\n");
        return 1;
    }
    printf("consumer: portcullis %d.%d.%d echo ok\n", PC_VERSION_MAJOR, PC_VERSION_MINOR,
           PC_VERSION_PATCH);
    return 0;
}
