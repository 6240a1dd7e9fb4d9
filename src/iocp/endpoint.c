/* SPDX-License-Identifier: MIT */
/* Parsing and formatting "ADDR:PORT" / "[V6]:PORT" endpoints. No DNS. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "portcullis.h"
#include "sock.h" /* inet_pton, inet_ntop */

static int parse_port(const char *p, unsigned *out)
{
    if (!*p) return PC_EINVAL;
    unsigned v = 0;
    for (; *p; p++) {
        if (*p < '0' || *p > '9') return PC_EINVAL;
        v = v * 10 + (unsigned)(*p - '0');
        if (v > 65535) return PC_EINVAL;
    }
    *out = v;
    return 0;
}

int pc_parse_endpoint(const char *text, struct sockaddr_storage *out, socklen_t *outlen)
{
    if (!text || !out || !outlen) return PC_EINVAL;
    char host[64];
    const char *port;
    memset(out, 0, sizeof *out);
    if (text[0] == '[') {
        const char *end = strchr(text, ']');
        if (!end || end[1] != ':' || (size_t)(end - text - 1) >= sizeof host) return PC_EINVAL;
        memcpy(host, text + 1, (size_t)(end - text - 1));
        host[end - text - 1] = 0;
        port = end + 2;
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)out;
        unsigned pv;
        if (parse_port(port, &pv) < 0 || inet_pton(AF_INET6, host, &s6->sin6_addr) != 1)
            return PC_EINVAL;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((unsigned short)pv);
        *outlen = sizeof *s6;
        return 0;
    }
    const char *colon = strrchr(text, ':');
    if (!colon || (size_t)(colon - text) >= sizeof host) return PC_EINVAL;
    memcpy(host, text, (size_t)(colon - text));
    host[colon - text] = 0;
    port = colon + 1;
    struct sockaddr_in *s4 = (struct sockaddr_in *)out;
    unsigned pv;
    if (parse_port(port, &pv) < 0) return PC_EINVAL;
    if (host[0] == 0)
        s4->sin_addr.s_addr = htonl(INADDR_ANY);
    else if (inet_pton(AF_INET, host, &s4->sin_addr) != 1)
        return PC_EINVAL;
    s4->sin_family = AF_INET;
    s4->sin_port = htons((unsigned short)pv);
    *outlen = sizeof *s4;
    return 0;
}

int pc_format_endpoint(const struct sockaddr *sa, char *buf, size_t size)
{
    char host[64];
    int n;
    if (!sa || !buf || !size) return PC_EINVAL;
    if (sa->sa_family == AF_INET) {
        /* copied: the caller's struct sockaddr promises less alignment */
        struct sockaddr_in s4;
        memcpy(&s4, sa, sizeof s4);
        if (!inet_ntop(AF_INET, &s4.sin_addr, host, sizeof host)) return PC_EINVAL;
        n = snprintf(buf, size, "%s:%u", host, (unsigned)ntohs(s4.sin_port));
    } else if (sa->sa_family == AF_INET6) {
        struct sockaddr_in6 s6;
        memcpy(&s6, sa, sizeof s6);
        if (!inet_ntop(AF_INET6, &s6.sin6_addr, host, sizeof host)) return PC_EINVAL;
        n = snprintf(buf, size, "[%s]:%u", host, (unsigned)ntohs(s6.sin6_port));
    } else {
        return PC_EINVAL;
    }
    return (n < 0 || (size_t)n >= size) ? PC_EINVAL : n;
}
