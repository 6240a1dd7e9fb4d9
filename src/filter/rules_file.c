/* SPDX-License-Identifier: MIT */
/* pc_rules_load_file and pc_rules_builder_add_file: the one place in
 * src/filter that touches the file system (plain C stdio, the same on every
 * platform). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "portcullis.h"
#include "portcullis/filter.h"
#include "core/alloc.h"
#include "core/errno_map.h"

static int report(const char *path, int rc, int e, char *err, size_t errlen)
{
    if (err && errlen) {
        const char *why = pc_strerror(rc);
#ifdef EISDIR
        if (e == EISDIR) why = "is a directory";
#endif
        snprintf(err, errlen, "%s: %s", path, why);
    }
    return rc;
}

/* The whole file in a new buffer (*buf, *len); on failure a message "PATH: reason". */
static int read_all(const char *path, char **out, size_t *out_len, char *err, size_t errlen)
{
    errno = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        int e = errno;
        return report(path, pc__from_open_errno(e), e, err, errlen);
    }
    size_t cap = 64 * 1024, len = 0;
    char *buf = pc__malloc(cap);
    if (!buf) {
        fclose(f);
        return report(path, PC_ENOMEM, 0, err, errlen);
    }
    for (;;) {
        if (len == cap) {
            char *nb = cap <= SIZE_MAX / 2 ? pc__realloc(buf, cap * 2) : NULL;
            if (!nb) {
                pc__free(buf);
                fclose(f);
                return report(path, PC_ENOMEM, 0, err, errlen);
            }
            buf = nb;
            cap *= 2;
        }
        errno = 0;
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0) break;
    }
    if (ferror(f)) {
        int e = errno;
        pc__free(buf);
        fclose(f);
        return report(path, e == ENOMEM ? PC_ENOMEM : PC_EIO, e, err, errlen);
    }
    fclose(f);
    *out = buf;
    *out_len = len;
    return 0;
}

int pc_rules_builder_add_file(pc_rules_builder_t *b, pc_rules_format_t fmt, const char *path,
                              char *err, size_t errlen)
{
    if (err && errlen) err[0] = '\0';
    if (!b || !path) return PC_EINVAL;
    char *buf = NULL;
    size_t len = 0;
    int rc = read_all(path, &buf, &len, err, errlen);
    if (rc) return rc;
    if (len == 0) {
        /* what a file being rewritten in place reads like: taking it would
         * drop every rule at a reload; a file of comments alone loads none */
        pc__free(buf);
        if (err && errlen)
            snprintf(err, errlen,
                     "%s:1: empty file (0 bytes), refused; to load no rules, write a comment line",
                     path);
        return PC_EPARSE;
    }
    rc = pc_rules_builder_add_string(b, fmt, buf, len, path, err, errlen);
    pc__free(buf);
    return rc;
}

int pc_rules_load_file(const char *path, pc_rules_t **out, char *err, size_t errlen)
{
    if (err && errlen) err[0] = '\0';
    if (!out) return PC_EINVAL;
    *out = NULL;
    if (!path) return PC_EINVAL;
    pc_rules_builder_t *b;
    int rc = pc_rules_builder_new(&b);
    if (rc) return report(path, rc, 0, err, errlen);
    rc = pc_rules_builder_add_file(b, PC_RULES_TEXT, path, err, errlen);
    if (rc) {
        pc_rules_builder_free(b);
        return rc;
    }
    return pc_rules_builder_finish(b, out, err, errlen);
}
