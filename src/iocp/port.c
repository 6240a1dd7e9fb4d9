/* SPDX-License-Identifier: MIT */
/* Backend selection. */
#include "port.h"

#include <stdio.h>

/* AUTO on Linux is io_uring when the kernel offers every operation it needs,
 * else epoll. io_uring keeps the default because it is the cheaper one,
 * measured: keep-alive HTTP server CPU per request 0.87-0.96x epoll's at 100
 * connections and 0.82-0.93x at 1000 (three runs, issue 14); docs/uring.md
 * has the figures and the command that reproduces them. */
int port_open(port_t **out, pc_backend_t want, int nqueues, char *why, size_t whylen)
{
#ifdef _WIN32
    if (want != PC_BACKEND_AUTO && want != PC_BACKEND_IOCP) return PC_ENOSYS;
    if (want == PC_BACKEND_AUTO) snprintf(why, whylen, "auto: IOCP, the Windows backend");
    return port_win_open(out, nqueues);
#else
    if (want == PC_BACKEND_IOCP) return PC_ENOSYS;
#ifdef PC_HAVE_URING
    if (want == PC_BACKEND_URING) return port_uring_open(out, nqueues);
    if (want == PC_BACKEND_AUTO) {
        int rc = port_uring_probe();
        if (rc == 0) {
            rc = port_uring_open(out, nqueues);
            if (rc == 0) {
                snprintf(why, whylen, "auto: io_uring, the kernel offers every operation needed");
                return 0;
            }
            /* out of memory is not "io_uring unavailable": report it */
            if (rc == PC_ENOMEM) return rc;
        }
        snprintf(why, whylen, "auto: io_uring unavailable (%s)", pc_strerror(rc));
    }
#else
    if (want == PC_BACKEND_URING) return PC_ENOSYS;
    if (want == PC_BACKEND_AUTO) snprintf(why, whylen, "auto: io_uring not built");
#endif
    return port_epoll_open(out, nqueues);
#endif
}
