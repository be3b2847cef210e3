/* pystack.c: whole Python stacks per allocation, interned as a tree.
 *
 * With PYMEMTRACE_MALLOC_STACKS=1 every allocation carries its thread's
 * whole Python stack (at most STACK_MAX frames, innermost first from
 * py_stack()).  A stack is written once, as a path in a tree: each node is
 * (parent node, code id, line) and gets a STACK definition record the first
 * time it is seen, so a new stack costs one record per frame that
 * differs from stacks already written (a few varint bytes), and an event names its innermost
 * node (its `code` field; `line` is still the innermost line).  Each thread
 * keeps the last stacks it saw by a hash of their frames (code object, its
 * file and name, position): a repeated stack costs the walk, the hash and
 * one cache probe.  The global node table (parent, code, line) -> id is
 * guarded by g_code_lock, like the code ids.
 */
#include <string.h>

#include "preload.h"

typedef struct {
    uint32_t parent, code;
    int32_t line;
    uint32_t id;
} node_entry;

static node_entry *g_nodes;
static size_t g_nodes_cap, g_nodes_len;
uint32_t g_next_node_id = 1;

static inline size_t
node_hash(uint32_t parent, uint32_t code, int32_t line)
{
    uint64_t x = ((uint64_t)parent << 32 | code) * 0x9E3779B97F4A7C15ull;
    x ^= (uint64_t)(uint32_t)line * 0xC2B2AE3D27D4EB4Full;
    x ^= x >> 29;
    return (size_t)x;
}

static node_entry *
node_find(node_entry *table, size_t cap, uint32_t parent, uint32_t code, int32_t line)
{
    size_t mask = cap - 1;
    for (size_t i = node_hash(parent, code, line) & mask;; i = (i + 1) & mask) {
        node_entry *e = &table[i];
        if (e->id == 0 || (e->parent == parent && e->code == code && e->line == line)) {
            return e;
        }
    }
}

static int
node_used(const void *e)
{
    return ((const node_entry *)e)->id != 0;
}

static void *
node_place(void *table, size_t cap, const void *e)
{
    const node_entry *n = e;
    return node_find(table, cap, n->parent, n->code, n->line);
}

/* The node (parent, code, line), written to the capture if new.  tb locked. */
uint32_t
py_stack_node(tbuf *tb, uint32_t parent, uint32_t code, int32_t line)
{
    uint32_t id = 0;
    pthread_mutex_lock(&g_code_lock);
    void *tab = g_nodes;
    if ((g_nodes_len + 1) * 10 >= g_nodes_cap * 7 &&
        table_grow(&tab, &g_nodes_cap, sizeof(node_entry), node_used, node_place) < 0) {
        pthread_mutex_unlock(&g_code_lock);
        return 0;
    }
    g_nodes = tab;
    node_entry *e = node_find(g_nodes, g_nodes_cap, parent, code, line);
    if (e->id == 0) {
        e->parent = parent;
        e->code = code;
        e->line = line;
        e->id = g_next_node_id++;
        g_nodes_len++;
        uint64_t uv[4] = {e->id, parent, code, pmt_zz((uint64_t)(int64_t)line)};
        put_def(tb, PMT_MC_STACK, uv, 4, NULL, 0);
    }
    id = e->id;
    pthread_mutex_unlock(&g_code_lock);
    return id;
}

/* Not inlined into the allocation path: its frame array would weigh on the
 * common case (innermost frame only). */
__attribute__((noinline)) void
py_stack_site(tbuf *tb, uint32_t *node, int32_t *line)
{
    pmt_pyframe fr[STACK_MAX];
    int n = py_stack(fr, STACK_MAX);
    if (n == 0) {
        return;
    }
    uint64_t h = (uint64_t)n;
    for (int i = 0; i < n; i++) {
        h = (h ^ py_frame_hash(&fr[i])) * 0x100000001B3ull;
    }
    stack_slot *ss = &tb->stacks[(h ^ h >> 32) & (STACK_CACHE - 1)];
    if (LIKELY(ss->hash == h && ss->node != 0)) {
        *node = ss->node;
        *line = ss->line;
        return;
    }
    uint32_t parent = thread_node(tb);
    int32_t l = -1;
    for (int i = n - 1; i >= 0; i--) {     /* outermost first: a path from the root */
        uint32_t code = py_frame_site(tb, &fr[i], &l);
        if (code == 0 || (parent = py_stack_node(tb, parent, code, l)) == 0) {
            return;     /* out of memory: no attribution */
        }
    }
    ss->hash = h;
    ss->node = parent;
    ss->line = l;
    *node = parent;
    *line = l;
}

/* A forked child writes its own capture: every node is defined again
 * (g_code_lock is reinitialised by py_forget_codes). */
void
py_forget_stacks(void)
{
    if (g_nodes) {
        memset(g_nodes, 0, g_nodes_cap * sizeof(node_entry));
    }
    g_nodes_len = 0;
}
