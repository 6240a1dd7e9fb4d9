/* SPDX-License-Identifier: MIT */
/* Fuzz target: endpoint parsing ("ADDR:PORT", "[V6]:PORT") from untrusted
 * command lines and config; a parsed endpoint must format and re-parse to
 * the same address. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "portcullis.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char text[128];
    if (size >= sizeof text) return 0;
    memcpy(text, data, size);
    text[size] = 0;
    struct sockaddr_storage ss, ss2;
    socklen_t len, len2;
    if (pc_parse_endpoint(text, &ss, &len) != 0) return 0;
    char out[80];
    int n = pc_format_endpoint((struct sockaddr *)&ss, out, sizeof out);
    if (n <= 0) abort();
    if (pc_parse_endpoint(out, &ss2, &len2) != 0 || len != len2 || memcmp(&ss, &ss2, len) != 0)
        abort();
    return 0;
}
