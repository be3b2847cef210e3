/* pyinterp.c: which Python the traced process runs, and whether its frames are read.
 *
 * At load the library looks for CPython's exported symbols (dlsym: nothing
 * is linked against libpython, and no Python header is included, so one
 * build serves every interpreter).  The version comes from Py_Version
 * (3.11+) or the Py_GetVersion() string, and selects the layout row of
 * pylayout.h written for that minor version.  Frames are read only when
 * there is such a row and the build is a plain release build: a debug
 * build (Py_REF_DEBUG / Py_TRACE_REFS symbols), a free-threaded one, 3.8,
 * 3.14 or anything unknown is traced without Python frames, and the META
 * record says so (PMT_MC_PY_MISMATCH with the version).
 */
#define _GNU_SOURCE 1     /* RTLD_DEFAULT */
#include <dlfcn.h>
#include <string.h>

#include "preload.h"
#include "pylayout.h"

pmt_py_api g_py;
int g_py_on;
uint64_t g_py_hex;
uint32_t g_py_status = PMT_MC_PY_NONE;

/* Symbols that only debug builds export: their object layout may differ. */
static const char *const debug_only[] = {
    "_Py_NegativeRefcount", "_Py_RefTotal", "_Py_GetRefTotal", "_Py_PrintReferences",
};

/* "3.10.13 (main, ...": major, minor, micro.  0 if it is not that shape. */
static int
parse_version(const char *s, unsigned v[3])
{
    for (int i = 0; i < 3; i++) {
        if (*s < '0' || *s > '9') {
            return 0;
        }
        v[i] = 0;
        while (*s >= '0' && *s <= '9' && v[i] < 1000) {
            v[i] = v[i] * 10 + (unsigned)(*s++ - '0');
        }
        if (i < 2 && *s++ != '.') {
            return 0;
        }
    }
    return 1;
}

void
resolve_python(void)
{
    void *ts = dlsym(RTLD_DEFAULT, "PyGILState_GetThisThreadState");
    const char *(*get_version)(void) =
        (const char *(*)(void))dlsym(RTLD_DEFAULT, "Py_GetVersion");
    if (ts == NULL || get_version == NULL) {
        g_py_status = PMT_MC_PY_NONE;   /* no Python (yet) in this process */
        return;
    }
    g_py_status = PMT_MC_PY_MISMATCH;
    const char *text = get_version();   /* static text; formatted without allocating */
    unsigned v[3];
    if (text == NULL || !parse_version(text, v)) {
        return;
    }
    const unsigned long *hex = dlsym(RTLD_DEFAULT, "Py_Version");
    g_py_hex = hex ? *hex : ((uint64_t)v[0] << 24 | v[1] << 16 | v[2] << 8 | 0xf0);
    if (hex && ((*hex >> 24) != v[0] || ((*hex >> 16) & 0xff) != v[1])) {
        return;     /* two Pythons disagree: read neither */
    }
    const pmt_pylayout *layout = pmt_pylayout_for(v[0], v[1]);
    if (layout == NULL || strstr(text, "free-threading") != NULL) {
        return;
    }
    for (size_t i = 0; i < sizeof(debug_only) / sizeof(debug_only[0]); i++) {
        if (dlsym(RTLD_DEFAULT, debug_only[i]) != NULL) {
            return;
        }
    }
    void *a2l = dlsym(RTLD_DEFAULT, "PyCode_Addr2Line");
    void *fin = dlsym(RTLD_DEFAULT, "Py_IsFinalizing");
    if (fin == NULL) {
        fin = dlsym(RTLD_DEFAULT, "_Py_IsFinalizing");
    }
    const void *code_type = dlsym(RTLD_DEFAULT, "PyCode_Type");
    const void *str_type = dlsym(RTLD_DEFAULT, "PyUnicode_Type");
    if (a2l == NULL || fin == NULL || code_type == NULL || str_type == NULL) {
        return;
    }
    g_py.layout = layout;
    g_py.this_tstate = (void *(*)(void))ts;
    g_py.addr2line = (int (*)(const void *, int))a2l;
    g_py.finalizing = (int (*)(void))fin;
    g_py.code_type = code_type;
    g_py.str_type = str_type;
    g_py_status = PMT_MC_PY_ON;
    g_py_on = 1;
}
