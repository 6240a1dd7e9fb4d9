/* SPDX-License-Identifier: MIT */
/* Socket address <-> addr_t. The only file of src/filter that includes
 * socket headers; the accept layer calls it with the peer address. */
#include "filter/addr.h"

#include "portcullis.h" /* the platform's socket headers */

int addr_from_sockaddr(const struct sockaddr *sa, addr_t *out)
{
    if (!sa || !out) return PC_EINVAL;
    memset(out, 0, sizeof *out);
    if (sa->sa_family == AF_INET) {
        struct sockaddr_in in;
        memcpy(&in, sa, sizeof in); /* no alignment assumption on sa */
        out->family = 4;
        memcpy(out->b, &in.sin_addr, 4);
        return 0;
    }
    if (sa->sa_family == AF_INET6) {
        struct sockaddr_in6 in6;
        memcpy(&in6, sa, sizeof in6);
        out->family = 6;
        memcpy(out->b, &in6.sin6_addr, 16);
        addr_normalize(out);
        return 0;
    }
    return PC_EINVAL;
}

int addr_to_sockaddr(const addr_t *a, uint16_t port, struct sockaddr *out, size_t cap)
{
    if (a->family == 4) {
        struct sockaddr_in in;
        if (cap < sizeof in) return PC_EINVAL;
        memset(out, 0, cap);
        memset(&in, 0, sizeof in);
        in.sin_family = AF_INET;
        in.sin_port = htons(port);
        memcpy(&in.sin_addr, a->b, 4);
        memcpy(out, &in, sizeof in); /* no alignment assumption on out */
        return (int)sizeof in;
    }
    struct sockaddr_in6 in6;
    if (cap < sizeof in6) return PC_EINVAL;
    memset(out, 0, cap);
    memset(&in6, 0, sizeof in6);
    in6.sin6_family = AF_INET6;
    in6.sin6_port = htons(port);
    memcpy(&in6.sin6_addr, a->b, 16);
    memcpy(out, &in6, sizeof in6);
    return (int)sizeof in6;
}
