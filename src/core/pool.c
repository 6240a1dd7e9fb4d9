#include "pool.h"

#include "alloc.h"

typedef struct slab_s {
    struct slab_s *next;
    /* objects follow, aligned */
} slab_t;

#define POOL_ALIGN 16u

static size_t align_up(size_t n)
{
    return (n + POOL_ALIGN - 1) & ~(size_t)(POOL_ALIGN - 1);
}

void pool_init(pool_t *p, size_t obj_size, size_t per_slab)
{
    p->obj_size = align_up(obj_size < sizeof(void *) ? sizeof(void *) : obj_size);
    p->per_slab = per_slab ? per_slab : 64;
    p->free_list = NULL;
    p->slabs = NULL;
    p->in_use = 0;
    p->capacity = 0;
}

void *pool_get(pool_t *p)
{
    if (!p->free_list) {
        size_t hdr = align_up(sizeof(slab_t));
        slab_t *s = pc__malloc(hdr + p->obj_size * p->per_slab);
        if (!s) return NULL;
        s->next = p->slabs;
        p->slabs = s;
        char *base = (char *)s + hdr;
        for (size_t i = p->per_slab; i-- > 0;) {
            void **o = (void **)(void *)(base + i * p->obj_size);
            *o = p->free_list;
            p->free_list = o;
        }
        p->capacity += p->per_slab;
    }
    void **o = p->free_list;
    p->free_list = *o;
    p->in_use++;
    return o;
}

void pool_put(pool_t *p, void *obj)
{
    if (!obj) return;
    *(void **)obj = p->free_list;
    p->free_list = obj;
    p->in_use--;
}

void pool_destroy(pool_t *p)
{
    slab_t *s = p->slabs;
    while (s) {
        slab_t *n = s->next;
        pc__free(s);
        s = n;
    }
    p->slabs = p->free_list = NULL;
    p->in_use = p->capacity = 0;
}

chunk_t *chunk_new(size_t need)
{
    size_t cap = need < PC_CHUNK_MIN ? PC_CHUNK_MIN : need;
    chunk_t *c = pc__malloc(sizeof *c + cap);
    if (!c) return NULL;
    queue_init(&c->link);
    c->off = c->len = 0;
    c->cap = cap;
    return c;
}

void chunk_free(chunk_t *c)
{
    pc__free(c);
}
