/* pylayout_check.c: src/preload/pylayout.h against one CPython's own headers.
 *
 * Compiled once per installed CPython (tests/test_malloc_pyversions.py) with
 * -DPy_BUILD_CORE and that version's include directories, it compares every
 * number of the version's row with offsetof()/sizeof()/the enum values the
 * interpreter was built with, prints each difference, and exits 1 if there
 * is one (2 if the table has no row for this version).
 */
#define Py_BUILD_CORE 1
#include <Python.h>
#if PY_VERSION_HEX >= 0x030B0000
#include <internal/pycore_frame.h>
#else
#include <frameobject.h>
#endif
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "pylayout.h"

static int bad;

static void
check(const char *what, long table, long real)
{
    if (table != real) {
        printf("3.%d %s: table says %ld, the headers say %ld\n", PY_MINOR_VERSION, what,
               table, real);
        bad = 1;
    }
}

#define CHECK(field, value) check(#field, (long)L->field, (long)(value))

int
main(void)
{
    const pmt_pylayout *L = pmt_pylayout_for(PY_MAJOR_VERSION, PY_MINOR_VERSION);
    if (L == NULL) {
        printf("no layout row for %s\n", PY_VERSION);
        return 2;
    }
    check("PMT_PYL_OB_TYPE", PMT_PYL_OB_TYPE, offsetof(PyObject, ob_type));
#if PY_VERSION_HEX < 0x030B0000
    CHECK(scheme, PMT_PYL_FRAMEOBJECT);
    CHECK(ts_frame, offsetof(PyThreadState, frame));
    CHECK(f_code, offsetof(PyFrameObject, f_code));
    CHECK(f_back, offsetof(PyFrameObject, f_back));
    CHECK(f_instr, offsetof(PyFrameObject, f_lasti));
    check("sizeof f_lasti", sizeof(int), sizeof(((PyFrameObject *)0)->f_lasti));
#if PY_VERSION_HEX < 0x030A0000
    CHECK(lasti_bytes, 1);      /* f_lasti counts bytes */
#else
    CHECK(lasti_bytes, sizeof(_Py_CODEUNIT));   /* f_lasti counts code units */
#endif
#else
#if PY_VERSION_HEX < 0x030D0000
    CHECK(scheme, PMT_PYL_CFRAME);
    CHECK(ts_frame, offsetof(PyThreadState, cframe));
    CHECK(cframe_current, offsetof(_PyCFrame, current_frame));
    CHECK(f_code, offsetof(_PyInterpreterFrame, f_code));
    CHECK(f_instr, offsetof(_PyInterpreterFrame, prev_instr));
#else
    CHECK(scheme, PMT_PYL_TSTATE);
    CHECK(ts_frame, offsetof(PyThreadState, current_frame));
    CHECK(f_code, offsetof(_PyInterpreterFrame, f_executable));
    CHECK(f_instr, offsetof(_PyInterpreterFrame, instr_ptr));
#endif
    CHECK(f_back, offsetof(_PyInterpreterFrame, previous));
    CHECK(f_owner, offsetof(_PyInterpreterFrame, owner));
    check("sizeof owner", 1, sizeof(((_PyInterpreterFrame *)0)->owner));
    CHECK(owner_generator, FRAME_OWNED_BY_GENERATOR);
#if PY_VERSION_HEX >= 0x030C0000
    CHECK(owner_cstack, FRAME_OWNED_BY_CSTACK);
#else
    CHECK(owner_cstack, 0xff);
    CHECK(f_is_entry, offsetof(_PyInterpreterFrame, is_entry));
#endif
    CHECK(co_code, offsetof(PyCodeObject, co_code_adaptive));
    CHECK(co_firsttraceable, offsetof(PyCodeObject, _co_firsttraceable));
    check("sizeof _Py_CODEUNIT", 2, sizeof(_Py_CODEUNIT));
#endif
    CHECK(co_filename, offsetof(PyCodeObject, co_filename));
    CHECK(co_name, offsetof(PyCodeObject, co_name));
    CHECK(co_firstlineno, offsetof(PyCodeObject, co_firstlineno));
    CHECK(str_length, offsetof(PyASCIIObject, length));
    CHECK(str_state, offsetof(PyASCIIObject, state));
    CHECK(str_ascii_size, sizeof(PyASCIIObject));
    CHECK(str_compact_size, sizeof(PyCompactUnicodeObject));

    /* The state bits, as this compiler lays out the headers' bit field. */
    PyASCIIObject o;
    uint32_t word;
    memset(&o, 0, sizeof(o));
    o.state.kind = PyUnicode_4BYTE_KIND;
    memcpy(&word, (char *)&o + L->str_state, 4);
    check("str kind bits", PMT_PYL_STR_KIND(word), PyUnicode_4BYTE_KIND);
    memset(&o, 0, sizeof(o));
    o.state.compact = 1;
    memcpy(&word, (char *)&o + L->str_state, 4);
    check("str compact bit", word, 1u << 5);
    memset(&o, 0, sizeof(o));
    o.state.ascii = 1;
    memcpy(&word, (char *)&o + L->str_state, 4);
    check("str ascii bit", word, 1u << 6);
#if PY_VERSION_HEX < 0x030C0000
    memset(&o, 0, sizeof(o));
    o.state.ready = 1;
    memcpy(&word, (char *)&o + L->str_state, 4);
    check("str ready bit", word, 1u << L->str_ready_bit);
    check("str_ready_bit >= 0", L->str_ready_bit >= 0, 1);
#else
    CHECK(str_ready_bit, -1);
#endif
    if (!bad) {
        printf("3.%d: every field matches\n", PY_MINOR_VERSION);
    }
    return bad;
}
