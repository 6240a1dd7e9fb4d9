/* SPDX-License-Identifier: MIT */
#include "errno_map.h"

#include <errno.h>

#include "portcullis.h"

int pc__from_errno(int e)
{
    switch (e) {
    case 0:
        return 0;
    case EINVAL:
        return PC_EINVAL;
    case ENOMEM:
        return PC_ENOMEM;
    case EAGAIN:
#if defined(EWOULDBLOCK) && EWOULDBLOCK != EAGAIN
    case EWOULDBLOCK:
#endif
        return PC_EAGAIN;
    case ENOTCONN:
        return PC_ENOTCONN;
    case ECONNRESET:
        return PC_ECONNRESET;
    case ECONNREFUSED:
        return PC_ECONNREFUSED;
    case ECONNABORTED:
        return PC_ECONNABORTED;
    case ETIMEDOUT:
        return PC_ETIMEDOUT;
    case ECANCELED:
        return PC_ECANCELED;
    case EADDRINUSE:
        return PC_EADDRINUSE;
    case EADDRNOTAVAIL:
        return PC_EADDRNOTAVAIL;
    case EACCES:
        return PC_EACCES;
    case EPERM:
        return PC_EPERM;
    case EMFILE:
    case ENFILE:
        return PC_EMFILE;
    case ENOBUFS:
        return PC_ENOBUFS;
    case EPIPE:
        return PC_EPIPE;
    case ENOSYS:
        return PC_ENOSYS;
#if defined(EOPNOTSUPP) && EOPNOTSUPP != ENOTSUP
    case EOPNOTSUPP:
#endif
    case ENOTSUP:
        return PC_ENOTSUP;
    case EBUSY:
        return PC_EBUSY;
    case ENOENT:
        return PC_ENOENT;
    case EIO:
        return PC_EIO;
    case ENETUNREACH:
        return PC_ENETUNREACH;
    case EHOSTUNREACH:
        return PC_EHOSTUNREACH;
    case ENOPROTOOPT:
        return PC_ENOPROTOOPT;
    case ERANGE:
        return PC_ERANGE;
    case EEXIST:
        return PC_EEXIST;
    case EDEADLK:
        return PC_EDEADLK;
    default:
        return PC_EUNKNOWN;
    }
}

int pc__from_open_errno(int e)
{
    switch (e) {
    case ENOENT:
    case ENOTDIR:
        return PC_ENOENT;
    case EACCES:
    case EPERM:
        return PC_EACCES;
    case ENOMEM:
        return PC_ENOMEM;
    default:
        return PC_EIO;
    }
}
