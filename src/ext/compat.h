/* compat.h: every CPython-version difference the bindings in src/ext see, and
 * nothing else.  Engines and bindings include this instead of testing
 * PY_VERSION_HEX themselves; a version outside the supported range stops the
 * build here with one line naming the supported versions.
 *
 * Supported: CPython 3.9 to 3.13 (see pyproject.toml's requires-python).
 * Prefer public and PyUnstable_ APIs; a private function is used only for
 * the versions listed next to it.  Each section below belongs to one module. */
#ifndef PMT_COMPAT_H
#define PMT_COMPAT_H

#ifndef Py_PYTHON_H
#error "compat.h: include Python.h first"
#endif

#if PY_VERSION_HEX < 0x03090000 || PY_VERSION_HEX >= 0x030E0000
#error "pymemtrace supports CPython 3.9 to 3.13"
#endif

/* ---- general ------------------------------------------------------------- */

#if PY_VERSION_HEX < 0x030A0000
static inline PyObject *
pmt_compat_new_ref(PyObject *o)
{
    Py_INCREF(o);
    return o;
}
#define Py_NewRef(o) pmt_compat_new_ref((PyObject *)(o))
#endif

/* Py_IsFinalizing is public from 3.13; _Py_IsFinalizing before. */
#if PY_VERSION_HEX >= 0x030D0000
#define PMT_IS_FINALIZING() Py_IsFinalizing()
#else
#define PMT_IS_FINALIZING() _Py_IsFinalizing()
#endif

/* ---- cPyMemTrace --------------------------------------------------------- */

/* ---- process ------------------------------------------------------------- */

/* ---- mallocstats --------------------------------------------------------- */

/* ---- malloccap ----------------------------------------------------------- */

#endif /* PMT_COMPAT_H */
