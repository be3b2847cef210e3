/* self_module.h: this test executable standing for a traced module in the C
 * tests that symbolise native frames: its path as a capture records it and
 * its load bias. */
#ifndef PMT_SELF_MODULE_H
#define PMT_SELF_MODULE_H
#include <link.h>
#include <stdint.h>
#include <stdlib.h>

static int
self_first_object(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    *(uint64_t *)arg = info->dlpi_addr;
    return 1;
}

/* The executable's real path (malloc'd; NULL if unknown); *bias its load bias. */
static inline char *
self_module(uint64_t *bias)
{
    *bias = 0;
    dl_iterate_phdr(self_first_object, bias);
    return realpath("/proc/self/exe", NULL);
}

#endif
