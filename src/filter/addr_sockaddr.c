/* SPDX-License-Identifier: MIT */
/* Socket address -> addr_t. The only file of src/filter that includes
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
