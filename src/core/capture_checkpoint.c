/* capture_checkpoint.c: find and check an aggregated capture's checkpoint
 * (see capture_checkpoint.h). */
#include "capture_checkpoint.h"

#include <stdio.h>
#include <string.h>

/* The checkpoint numbered seq in slot seq & 1, if it is whole: 0, or -1
 * with err saying what is wrong with it. */
static int
slot_at(const pmt_capture *c, uint64_t seq, pmt_ckpt *k, char *err, size_t errlen)
{
    uint64_t off = c->header.ckpt_slot[seq & 1];
    const size_t hs = sizeof(pmt_mc_ckpt_head);
    if (off % 8 != 0 || off >= c->area_len || c->area_len - off < hs) {
        snprintf(err, errlen, "checkpoint %llu is outside the file (cut short?)",
                 (unsigned long long)seq);
        return -1;
    }
    memset(k, 0, sizeof(*k));
    memcpy(&k->head, c->area + off, hs);
    const pmt_mc_ckpt_head *h = &k->head;
    if (h->kind != PMT_MC_CHECKPOINT || (h->seq & UINT32_MAX) != (seq & UINT32_MAX)) {
        snprintf(err, errlen, "checkpoint %llu is not where the header says",
                 (unsigned long long)seq);
        return -1;
    }
    size_t tallies = (PMT_MC_SIZE_CLASSES + PMT_MC_KINDS) * sizeof(pmt_mc_tally);
    uint64_t avail = c->area_len - off - hs;
    if (h->len > avail || h->n_points > h->len / sizeof(pmt_mc_ckpt_point) ||
        h->n_stacks > h->len / sizeof(pmt_mc_ckpt_stack) ||
        h->len != tallies + h->n_points * sizeof(pmt_mc_ckpt_point) +
                      h->n_stacks * sizeof(pmt_mc_ckpt_stack)) {
        snprintf(err, errlen, "checkpoint %llu is cut short or its lengths disagree",
                 (unsigned long long)seq);
        return -1;
    }
    const uint8_t *p = c->area + off + hs;
    if (pmt_mc_ckpt_sum(p, (size_t)h->len) != h->sum) {
        snprintf(err, errlen, "checkpoint %llu is corrupt (its checksum does not match)",
                 (unsigned long long)seq);
        return -1;
    }
    k->sizes = (const pmt_mc_tally *)p;
    k->kinds = k->sizes + PMT_MC_SIZE_CLASSES;
    k->points = (const pmt_mc_ckpt_point *)(p + tallies);
    k->stacks = (const pmt_mc_ckpt_stack *)(p + tallies +
                                            h->n_points * sizeof(pmt_mc_ckpt_point));
    return 0;
}

int
pmt_ckpt_find(const pmt_capture *c, pmt_ckpt *k, char *err, size_t errlen)
{
    uint64_t seq = c->header.ckpt_commit;
    if (seq == 0) {
        snprintf(err, errlen,
                 "this aggregated capture has no checkpoint: the program was killed or "
                 "crashed before its first one (lower --checkpoint to take them sooner)");
        return -1;
    }
    if (slot_at(c, seq, k, err, errlen) == 0) {
        return 0;
    }
    char first[200];
    snprintf(first, sizeof(first), "%s", err);
    if (seq > 1 && slot_at(c, seq - 1, k, err, errlen) == 0) {
        k->older = 1;
        return 0;
    }
    snprintf(err, errlen, "%s; no earlier checkpoint is whole either", first);
    return -1;
}

int32_t
pmt_ckpt_node_line(const pmt_capture *c, uint32_t node)
{
    if (node == 0) {
        return 0;
    }
    const pmt_cap_node *n = pmt_capture_node(c, node);
    return n && n->kind == PMT_CAP_NODE_PYTHON ? n->line : -1;
}
