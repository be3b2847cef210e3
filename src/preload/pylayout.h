/* pylayout.h: where CPython 3.9 to 3.13 keep what the malloc tracer reads.
 *
 * The preload library runs inside whatever Python the traced command starts,
 * so it includes no Python header: it learns the version at run time
 * (pyinterp.c) and reads the interpreter's structures through the one row of
 * this table written for that minor version.  Every number below was taken
 * from that version's own headers (cpython/pystate.h, cpython/frameobject.h
 * for 3.9/3.10, internal/pycore_frame.h for 3.11+, cpython/code.h,
 * cpython/unicodeobject.h) for x86-64/aarch64 LP64 release builds;
 * tests/c/pylayout_check.c recompiles against each installed version's
 * headers and compares every field with offsetof()/sizeof() (run by
 * tests/test_malloc_pyversions.py).  A version without a row here is never
 * read: its allocations are recorded without Python frames.
 */
#ifndef PMT_PYLAYOUT_H
#define PMT_PYLAYOUT_H

#include <stdint.h>

/* How a thread's frames are kept. */
enum {
    PMT_PYL_FRAMEOBJECT = 1,    /* 3.9, 3.10: tstate->frame, a PyFrameObject chain,
                                 * f_lasti an int (3.9: bytes, 3.10: code units) */
    PMT_PYL_CFRAME = 2,         /* 3.11, 3.12: tstate->cframe->current_frame,
                                 * _PyInterpreterFrame chain, an instruction pointer */
    PMT_PYL_TSTATE = 3,         /* 3.13: tstate->current_frame, likewise */
};

typedef struct pmt_pylayout_s {
    uint8_t minor;              /* 3.<minor> */
    uint8_t scheme;             /* PMT_PYL_* */
    /* thread state */
    uint16_t ts_frame;          /* FRAMEOBJECT: frame; CFRAME: cframe; TSTATE: current_frame */
    uint16_t cframe_current;    /* CFRAME: _PyCFrame.current_frame */
    /* frame */
    uint16_t f_code;            /* f_code (3.13: f_executable) */
    uint16_t f_back;            /* f_back / previous */
    uint16_t f_instr;           /* FRAMEOBJECT: int f_lasti; else prev_instr / instr_ptr */
    uint16_t f_owner;           /* char owner (0: none, FRAMEOBJECT) */
    uint8_t lasti_bytes;        /* FRAMEOBJECT: bytes per unit of f_lasti */
    uint8_t owner_generator;    /* FRAME_OWNED_BY_GENERATOR */
    uint8_t owner_cstack;       /* FRAME_OWNED_BY_CSTACK (0xff: none) */
    uint16_t f_is_entry;        /* 3.11: bool is_entry, the first frame of an evaluation
                                 * call (0: none; 3.9/3.10 every frame is one, 3.12+
                                 * mark them with a C-stack shim frame) */
    /* code object */
    uint16_t co_filename;
    uint16_t co_name;
    uint16_t co_firstlineno;    /* int */
    uint16_t co_code;           /* co_code_adaptive: the first code unit (0: FRAMEOBJECT) */
    uint16_t co_firsttraceable; /* int _co_firsttraceable (0: FRAMEOBJECT) */
    /* str (PyASCIIObject / PyCompactUnicodeObject) */
    uint16_t str_length;        /* Py_ssize_t length */
    uint16_t str_state;         /* the state bit field, a 32-bit word */
    uint16_t str_ascii_size;    /* sizeof(PyASCIIObject): compact ASCII data follows */
    uint16_t str_compact_size;  /* sizeof(PyCompactUnicodeObject): compact data follows */
    int8_t str_ready_bit;       /* state bit "ready" (-1: every str is ready) */
} pmt_pylayout;

/* PyObject: ob_refcnt then ob_type, in every version here (not with
 * Py_TRACE_REFS, nor free-threaded builds: refused in pyinterp.c). */
#define PMT_PYL_OB_TYPE 8
/* str state bits (from the low bit): interned:2, kind:3, compact:1, ascii:1 */
#define PMT_PYL_STR_KIND(state) (((state) >> 2) & 7u)
#define PMT_PYL_STR_COMPACT(state) (((state) >> 5) & 1u)
#define PMT_PYL_STR_ASCII(state) (((state) >> 6) & 1u)

static const pmt_pylayout pmt_pylayouts[] = {
    {.minor = 9, .scheme = PMT_PYL_FRAMEOBJECT,
     .ts_frame = 24, .cframe_current = 0,
     .f_code = 32, .f_back = 24, .f_instr = 104, .f_owner = 0,
     .lasti_bytes = 1, .owner_generator = 0xff, .owner_cstack = 0xff,
     .co_filename = 104, .co_name = 112, .co_firstlineno = 40,
     .co_code = 0, .co_firsttraceable = 0,
     .str_length = 16, .str_state = 32, .str_ascii_size = 48, .str_compact_size = 72,
     .str_ready_bit = 7},
    {.minor = 10, .scheme = PMT_PYL_FRAMEOBJECT,
     .ts_frame = 24, .cframe_current = 0,
     .f_code = 32, .f_back = 24, .f_instr = 96, .f_owner = 0,
     .lasti_bytes = 2, .owner_generator = 0xff, .owner_cstack = 0xff,
     .co_filename = 104, .co_name = 112, .co_firstlineno = 40,
     .co_code = 0, .co_firsttraceable = 0,
     .str_length = 16, .str_state = 32, .str_ascii_size = 48, .str_compact_size = 72,
     .str_ready_bit = 7},
    {.minor = 11, .scheme = PMT_PYL_CFRAME,
     .ts_frame = 56, .cframe_current = 8,
     .f_code = 32, .f_back = 48, .f_instr = 56, .f_owner = 69,
     .lasti_bytes = 0, .owner_generator = 1, .owner_cstack = 0xff, .f_is_entry = 68,
     .co_filename = 112, .co_name = 120, .co_firstlineno = 72,
     .co_code = 184, .co_firsttraceable = 168,
     .str_length = 16, .str_state = 32, .str_ascii_size = 48, .str_compact_size = 72,
     .str_ready_bit = 7},
    {.minor = 12, .scheme = PMT_PYL_CFRAME,
     .ts_frame = 56, .cframe_current = 0,
     .f_code = 0, .f_back = 8, .f_instr = 56, .f_owner = 70,
     .lasti_bytes = 0, .owner_generator = 1, .owner_cstack = 3,
     .co_filename = 112, .co_name = 120, .co_firstlineno = 68,
     .co_code = 192, .co_firsttraceable = 176,
     .str_length = 16, .str_state = 32, .str_ascii_size = 40, .str_compact_size = 56,
     .str_ready_bit = -1},
    {.minor = 13, .scheme = PMT_PYL_TSTATE,
     .ts_frame = 72, .cframe_current = 0,
     .f_code = 0, .f_back = 8, .f_instr = 56, .f_owner = 70,
     .lasti_bytes = 0, .owner_generator = 1, .owner_cstack = 3,
     .co_filename = 112, .co_name = 120, .co_firstlineno = 68,
     .co_code = 200, .co_firsttraceable = 184,
     .str_length = 16, .str_state = 32, .str_ascii_size = 40, .str_compact_size = 56,
     .str_ready_bit = -1},
};

/* The row for CPython 3.<minor>, or NULL. */
static inline const pmt_pylayout *
pmt_pylayout_for(unsigned major, unsigned minor)
{
    if (major != 3) {
        return NULL;
    }
    for (unsigned i = 0; i < sizeof(pmt_pylayouts) / sizeof(pmt_pylayouts[0]); i++) {
        if (pmt_pylayouts[i].minor == minor) {
            return &pmt_pylayouts[i];
        }
    }
    return NULL;
}

#endif
