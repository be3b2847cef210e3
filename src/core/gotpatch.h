/* gotpatch.h: redirect calls between loaded ELF objects by rewriting their
 * relocation slots (GOT entries), and put them back.
 *
 * The in-process malloc tracker (issue 14) uses this to interpose malloc,
 * free and friends at run time, without LD_PRELOAD: every loaded object's
 * JUMP_SLOT and GLOB_DAT entries for a hooked symbol are pointed at the
 * replacement; objects loaded later are patched by calling pmt_got_apply()
 * again (for example from a hooked dlopen).  pmt_got_restore() writes every
 * saved value back into the objects still loaded, unless something else has
 * rewritten the slot since (then it is left alone and counted).
 *
 * Never patched: the object that holds `own_code` (the replacements must
 * reach the real functions), the dynamic linker and the vDSO.  Calls inside
 * one object that do not go through its GOT (glibc's internal calls to
 * hidden aliases, static functions) are not seen: that is the limit of the
 * method, and the reason LD_PRELOAD stays the complete mode.
 *
 * Linux / glibc, x86-64 and AArch64 (pmt_got_apply fails with ENOSYS
 * elsewhere).  Not async-signal-safe; not for hot paths (it allocates its
 * slot table with mmap).  No Python.h.
 */
#ifndef PMT_GOTPATCH_H
#define PMT_GOTPATCH_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pmt_got_hook {
    const char *name;       /* the symbol whose references are redirected, e.g. "malloc" */
    void *replacement;      /* where calls go instead */
} pmt_got_hook;

typedef struct pmt_got_slot {
    void **addr;            /* the GOT entry */
    void *old;              /* what it held before */
    uintptr_t obj_base;     /* load address of the object that owns it */
    unsigned relro;         /* 1 if the entry lies in the object's read-only-after-relocation part */
} pmt_got_slot;

typedef struct pmt_got_patch {
    const pmt_got_hook *hooks;
    size_t nhooks;
    uintptr_t own_base;     /* load address of the object holding own_code (never patched) */
    int skip_own;           /* own_code was given */
    pmt_got_slot *slots;    /* every entry patched, in patch order */
    size_t nslots, cap;
    int error;              /* errno of the first failure, 0 if none */
} pmt_got_patch;

/* Prepare (no object is touched yet).  `hooks` must outlive the patch.
 * `own_code` is an address in the object holding the replacements, which is
 * then never patched (NULL: patch every object, the caller's too).
 * Returns 0, or -1 with errno (EINVAL: no hooks, a hook without name or
 * replacement, or own_code not in a loaded object). */
int pmt_got_init(pmt_got_patch *p, const pmt_got_hook *hooks, size_t nhooks, const void *own_code);

/* Patch every loaded object's entries for the hooks that do not already
 * point at their replacement.  Returns the number of entries patched by this
 * call, or -1 with errno (ENOSYS on an unsupported architecture; ENOMEM; the
 * errno of a failed mprotect, with the entries patched so far kept and
 * recorded for restore). */
long pmt_got_apply(pmt_got_patch *p);

/* Write back every recorded entry of the objects still loaded whose value is
 * still the replacement.  Returns the number restored; *left (if not NULL)
 * gets the number left alone because something else had rewritten them. */
long pmt_got_restore(pmt_got_patch *p, long *left);

/* Release the slot table (after restore, or to forget the patch). */
void pmt_got_free(pmt_got_patch *p);

#ifdef __cplusplus
}
#endif
#endif
