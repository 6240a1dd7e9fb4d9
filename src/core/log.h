/* SPDX-License-Identifier: MIT */
/* Logging through the user-settable sink. No printf in library code. */
#ifndef PC_CORE_LOG_H
#define PC_CORE_LOG_H

#include "portcullis.h"

#include <stdio.h>

#if defined(__MINGW32__)
/* To mingw's gcc "printf" means the msvcrt dialect (no %zu); -std=c11 turns
 * on mingw's C99 stdio, whose dialect is __MINGW_PRINTF_FORMAT. */
#define PC__PRINTF(a, b) __attribute__((format(__MINGW_PRINTF_FORMAT, a, b)))
#elif defined(__GNUC__)
#define PC__PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define PC__PRINTF(a, b)
#endif

void pc__log(pc_log_level_t level, const char *fmt, ...) PC__PRINTF(2, 3);
int pc__log_enabled(pc_log_level_t level);

#define PC_LOGD(...) pc__log(PC_LOG_DEBUG, __VA_ARGS__)
#define PC_LOGI(...) pc__log(PC_LOG_INFO, __VA_ARGS__)
#define PC_LOGW(...) pc__log(PC_LOG_WARN, __VA_ARGS__)
#define PC_LOGE(...) pc__log(PC_LOG_ERROR, __VA_ARGS__)

#endif
