/* SPDX-License-Identifier: MIT */
/* Backend selection. */
#include "port.h"

#include "core/log.h"

int port_open(port_t **out, pc_backend_t want, int nqueues)
{
#ifdef _WIN32
    if (want != PC_BACKEND_AUTO && want != PC_BACKEND_IOCP) return PC_ENOSYS;
    return port_win_open(out, nqueues);
#else
    if (want == PC_BACKEND_IOCP) return PC_ENOSYS;
#ifdef PC_HAVE_URING
    if (want == PC_BACKEND_URING) return port_uring_open(out, nqueues);
    if (want == PC_BACKEND_AUTO) {
        int why = port_uring_probe();
        if (why == 0) {
            why = port_uring_open(out, nqueues);
            if (why == 0) {
                PC_LOGI("backend: io_uring (auto: the kernel supports every operation needed)");
                return 0;
            }
            /* out of memory is not "io_uring unavailable": report it */
            if (why == PC_ENOMEM) return why;
        }
        PC_LOGI("backend: epoll (auto: io_uring unavailable: %s)", pc_strerror(why));
    }
#else
    if (want == PC_BACKEND_URING) return PC_ENOSYS;
#endif
    return port_epoll_open(out, nqueues);
#endif
}
