/* SPDX-License-Identifier: MIT */
/* Environment-variable knobs (env.h). */
#include "env.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"

const char *pc__env(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

int pc__env_switch(const char *name)
{
    const char *v = getenv(name);
    if (!v) return -1;
    if (strcmp(v, "0") == 0 || strcmp(v, "off") == 0) return 0;
    if (strcmp(v, "1") == 0 || strcmp(v, "on") == 0) return 1;
    return -1;
}

int pc__env_flag(const char *name)
{
    const char *v = pc__env(name);
    return v && strcmp(v, "0") != 0;
}

unsigned pc__env_uint(const char *name, unsigned def, unsigned lo, unsigned hi)
{
    const char *v = pc__env(name);
    if (!v) return def;
    char *end;
    unsigned long n = strtoul(v, &end, 10);
    if (*end || n < lo || n > hi) {
        PC_LOGW("%s=%s ignored (allowed: %u..%u)", name, v, lo, hi);
        return def;
    }
    return (unsigned)n;
}
