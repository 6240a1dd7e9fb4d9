/* SPDX-License-Identifier: MIT */
/* Environment-variable knobs (env.h). */
#include "env.h"

#include <errno.h>
#include <stdio.h>
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
    static const char *const words[] = {"0", "off", "1", "on"};
    int i = pc__env_choice(name, words, 4);
    return i < 0 ? -1 : i / 2;
}

int pc__env_choice(const char *name, const char *const *choices, int n)
{
    const char *v = pc__env(name);
    if (!v) return -1;
    /* the allowed words, whole: a list too long for the line ends with
     * ", ..." after the last word that fits (room for it is kept) */
    static const char more[] = ", ...";
    char allowed[128] = "";
    size_t used = 0;
    int cut = 0;
    for (int i = 0; i < n; i++) {
        if (strcmp(v, choices[i]) == 0) return i;
        if (cut) continue;
        size_t w = (i ? 2 : 0) + strlen(choices[i]);
        if (used + w + sizeof more > sizeof allowed) {
            memcpy(allowed + used, used ? more : more + 2, sizeof more - (used ? 0 : 2));
            cut = 1;
            continue;
        }
        snprintf(allowed + used, sizeof allowed - used, "%s%s", i ? ", " : "", choices[i]);
        used += w;
    }
    PC_LOGW("%s=%s ignored (allowed: %s)", name, v, allowed);
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
    /* digits only: strtoul would also take leading blanks and a sign (a
     * negative value wraps round to a large one, or a small one) */
    char *end = (char *)v;
    unsigned long n = 0;
    if (*v >= '0' && *v <= '9') {
        errno = 0;
        n = strtoul(v, &end, 10);
        if (errno == ERANGE) end = (char *)v;
    }
    if (end == v || *end || n < lo || n > hi) {
        PC_LOGW("%s=%s ignored (allowed: %u..%u)", name, v, lo, hi);
        return def;
    }
    return (unsigned)n;
}
