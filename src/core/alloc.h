/* SPDX-License-Identifier: MIT */
/* Allocation: every allocation of the library goes through here. */
#ifndef PC_CORE_ALLOC_H
#define PC_CORE_ALLOC_H

#include <stddef.h>

void *pc__malloc(size_t size);
void *pc__calloc(size_t n, size_t size);
void *pc__realloc(void *ptr, size_t size);
void pc__free(void *ptr);
/* A copy of s through the library allocator (NULL when out of memory). */
char *pc__strdup(const char *s);

/* Library objects that pin the allocator (servers, rule sets) register here so
 * pc_set_allocator can refuse while they live. */
void pc__alloc_pin(void);
void pc__alloc_unpin(void);

#endif
