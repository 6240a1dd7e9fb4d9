/* SPDX-License-Identifier: MIT */
/* Error names and messages, generated from PC_ERRNO_MAP. */
#include "portcullis.h"

const char *pc_err_name(int err)
{
    switch (err) {
    case 0:
        return "PC_OK";
#define PC__ERR_NAME(name, num, msg) \
    case -(num):                     \
        return "PC_" #name;
        PC_ERRNO_MAP(PC__ERR_NAME)
#undef PC__ERR_NAME
    default:
        return "PC_EUNKNOWN";
    }
}

const char *pc_strerror(int err)
{
    switch (err) {
    case 0:
        return "success";
#define PC__ERR_MSG(name, num, msg) \
    case -(num):                    \
        return msg;
        PC_ERRNO_MAP(PC__ERR_MSG)
#undef PC__ERR_MSG
    default:
        return "unknown error";
    }
}

const char *pc_close_reason_str(pc_close_reason_t r)
{
    static const char *const names[] = {
#define PC__CR_STR(name, msg) msg,
        PC_CLOSE_REASON_MAP(PC__CR_STR)
#undef PC__CR_STR
    };
    if ((unsigned)r >= PC_CLOSE_REASON_COUNT) return "unknown";
    return names[r];
}

const char *pc_step_name(pc_step_t s)
{
    static const char *const names[] = {
#define PC__STEP_STR(name, str) str,
        PC_STEP_MAP(PC__STEP_STR)
#undef PC__STEP_STR
    };
    if ((unsigned)s >= PC_STEP_COUNT) return "unknown";
    return names[s];
}

const char *pc_proxy_error_str(int cause)
{
    static const char *const names[] = {
#define PC__PE_STR(name, msg) msg,
        PC_PROXY_ERROR_MAP(PC__PE_STR)
#undef PC__PE_STR
    };
    if ((unsigned)cause >= PC_PROXY_ERR_COUNT) return "unknown";
    return names[cause];
}
