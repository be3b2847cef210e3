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

/* The C profile / trace function of a thread state and its object.  These
 * PyThreadState fields (Include/cpython/pystate.h) have the same names and
 * meaning in 3.9 to 3.13; there is no public getter for the C function. */
#define PMT_CPMT_TS_FUNC(ts, prof) ((prof) ? (ts)->c_profilefunc : (ts)->c_tracefunc)
#define PMT_CPMT_TS_OBJ(ts, prof) ((prof) ? (ts)->c_profileobj : (ts)->c_traceobj)

/* Make func/obj the calling thread's profile (prof != 0) or trace function.
 * Returns 0, or -1 with an exception set (an audit hook refused
 * sys.setprofile / sys.settrace). */
static inline int
pmt_cpmt_set_hook(int prof, Py_tracefunc func, PyObject *obj)
{
    PyThreadState *ts = PyThreadState_Get();
#if PY_VERSION_HEX < 0x030D0000
    /* 3.9 to 3.12: the thread-state setters are exported and raise. */
    return prof ? _PyEval_SetProfile(ts, func, obj) : _PyEval_SetTrace(ts, func, obj);
#else
    /* 3.13: only the public setters, which report a refusal as unraisable;
     * whether the thread took the function tells. */
    if (prof) {
        PyEval_SetProfile(func, obj);
    }
    else {
        PyEval_SetTrace(func, obj);
    }
    if (PMT_CPMT_TS_FUNC(ts, prof) != func || PMT_CPMT_TS_OBJ(ts, prof) != obj) {
        PyErr_Format(PyExc_RuntimeError, "cPyMemTrace: sys.%s was refused (an audit hook?)",
                     prof ? "setprofile" : "settrace");
        return -1;
    }
    return 0;
#endif
}

/* sys.monitoring (PEP 669) is in 3.12+, and there Profile / Trace attach
 * through it by default (src/ext/cpymemtrace/monitor.c; cheaper than the
 * profile / trace function, which CPython builds on it: README
 * "cPyMemTrace").  The legacy trace function of 3.12.1 and 3.13 reports
 * RAISE and STOP_ITERATION as exception events.  An offset or line passed to
 * a callback is an int, compact in practice (PyUnstable_Long_*: 3.12+). */
#define PMT_CPMT_HAVE_MONITORING (PY_VERSION_HEX >= 0x030C0000)
#if PMT_CPMT_HAVE_MONITORING
static inline int
pmt_cpmt_small_int(PyObject *o)
{
    if (PyUnstable_Long_IsCompact((PyLongObject *)o)) {
        return (int)PyUnstable_Long_CompactValue((PyLongObject *)o);
    }
    long v = PyLong_AsLong(o);
    if (v == -1 && PyErr_Occurred()) {
        PyErr_Clear();
    }
    return (int)v;
}
#endif

/* 3.12+: PyFrame_GetLineNumber decodes the code's line table at every call
 * during profile events (~340 instructions per event, measured with
 * callgrind): an event that may never be written keeps the frame's
 * instruction offset, and its line is computed (PyCode_Addr2Line) only if a
 * row needs it.  Before 3.12 the line is at hand and taken at once. */
#if PY_VERSION_HEX >= 0x030C0000
#define PMT_CPMT_DEFER_LINE 1
#else
#define PMT_CPMT_DEFER_LINE 0
#define pmt_cpmt_frame_lasti(f) ((void)(f), -1)
#endif

/* 3.11 to 3.13: the leading fields of the frame object
 * (Include/internal/pycore_frame.h); f_frame is the version's interpreter
 * frame (PMT_IFRAME).  pmt_cpmt_frame_direct: they are read directly. */
#if PY_VERSION_HEX >= 0x030B0000
struct pmt_frame_head {
    PyObject_HEAD
    PyFrameObject *f_back;
    void *f_frame;
    PyObject *f_trace;
    int f_lineno;
};
#define PMT_FRAME_LINENO(f) (((const struct pmt_frame_head *)(f))->f_lineno)
#define PMT_IFRAME(f, T) ((const struct T *)((const struct pmt_frame_head *)(f))->f_frame)
#if defined(__GNUC__) && defined(__ELF__)
extern int pmt_cpmt_frame_direct __attribute__((visibility("hidden")));
#else
extern int pmt_cpmt_frame_direct;
#endif
#endif

/* The code object (borrowed: the frame holds it) and the line of a frame,
 * for the legacy hook's callback at every event.  On 3.11 PyFrame_GetCode
 * and PyFrame_GetLineNumber are two calls and a reference to give back, ~20
 * of a quiet event's ~160 instructions over a no-op profile function
 * (callgrind, churn), so the leading fields of 3.11's frame object and
 * interpreter frame (Include/internal/pycore_frame.h, the same from 3.11.0
 * to 3.11.7) are read directly, once pmt_cpmt_frame_check() has found them
 * where the functions find them on a live frame (cPyMemTrace's init); if it
 * did not, the functions are used.  The line is f_lineno, which 3.11's
 * call_trace sets before every profile / trace event (0: not set, ask). */
#if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030C0000
#define PMT_CPMT_FRAME311 1
struct pmt_iframe311 {
    PyObject *f_func, *f_globals, *f_builtins, *f_locals;
    PyCodeObject *f_code;
    PyFrameObject *frame_obj;
};
/* when pmt_cpmt_frame_direct is known set */
#define pmt_cpmt_direct_code(f) (PMT_IFRAME(f, pmt_iframe311)->f_code)

static inline int
pmt_cpmt_frame_check(void)
{
    PyFrameObject *f = PyEval_GetFrame();       /* borrowed */
    if (f == NULL) {
        return 0;
    }
    const struct pmt_iframe311 *i = PMT_IFRAME(f, pmt_iframe311);
    PyCodeObject *code = PyFrame_GetCode(f);
    int ok = i != NULL && i->frame_obj == f && i->f_code == code
             && (PMT_FRAME_LINENO(f) == 0 || PMT_FRAME_LINENO(f) == PyFrame_GetLineNumber(f));
    Py_DECREF(code);
    return ok;
}

static inline int
pmt_cpmt_frame_line(PyFrameObject *f)
{
    int line = pmt_cpmt_frame_direct ? PMT_FRAME_LINENO(f) : 0;
    return line != 0 ? line : PyFrame_GetLineNumber(f);
}
#else
#define PMT_CPMT_FRAME311 0
#define pmt_cpmt_frame_line(f) PyFrame_GetLineNumber(f)
#endif

/* 3.12 and 3.13: the legacy hook's code object, instruction offset and set
 * line of a frame.  PyFrame_GetLineNumber returns f_lineno when it is not 0
 * (the legacy trace function's LINE events set it to the event's line for
 * the callback, Python/legacy_tracing.c; a debugger's jump may too) and else
 * decodes the line table at PyCode_Addr2Line(code, PyFrame_GetLasti(f))
 * (PyUnstable_InterpreterFrame_GetLine: a negative offset gives
 * co_firstlineno either way), ~340 instructions a row.  So a row's line is
 * f_lineno when set, else the callback's (code, offset) memo.  The leading
 * fields of the frame object (f_lineno after f_trace, as on 3.11) and of the
 * interpreter frame (Include/internal/pycore_frame.h: the code object first,
 * 3.12's f_code and 3.13's f_executable; frame_obj; then 3.12's prev_instr,
 * 3.13's instr_ptr, the offset being its distance from co_code_adaptive) are
 * read directly once pmt_cpmt_frame_check() found them where the public
 * getters do on a live frame (cPyMemTrace's init); else the getters are
 * used and f_lineno is not known (pmt_cpmt_frame_lineno: -1). */
#if PY_VERSION_HEX >= 0x030C0000
#define PMT_CPMT_FRAME312 1
struct pmt_iframe312 {
    PyObject *f_executable;
    void *previous;
    PyObject *f_funcobj, *f_globals, *f_builtins, *f_locals;
    PyFrameObject *frame_obj;
    const char *instr;
};

static inline int
pmt_cpmt_frame_lasti_of(const struct pmt_iframe312 *i)
{
    const PyCodeObject *code = (const PyCodeObject *)i->f_executable;
    Py_ssize_t b = i->instr - code->co_code_adaptive;
    return b < 0 ? -1 : (int)b;
}
/* when pmt_cpmt_frame_direct is known set */
#define pmt_cpmt_direct_code(f) ((PyCodeObject *)PMT_IFRAME(f, pmt_iframe312)->f_executable)
#define pmt_cpmt_direct_lasti(f) pmt_cpmt_frame_lasti_of(PMT_IFRAME(f, pmt_iframe312))

static inline int
pmt_cpmt_frame_check(void)
{
    PyFrameObject *f = PyEval_GetFrame();       /* borrowed */
    if (f == NULL) {
        return 0;
    }
    const struct pmt_iframe312 *i = PMT_IFRAME(f, pmt_iframe312);
    PyCodeObject *code = PyFrame_GetCode(f);
    PyObject *globals = PyFrame_GetGlobals(f), *builtins = PyFrame_GetBuiltins(f);
    int ok = i != NULL && i->frame_obj == f && i->f_executable == (PyObject *)code
             && i->f_globals == globals && i->f_builtins == builtins
             && pmt_cpmt_frame_lasti_of(i) == PyFrame_GetLasti(f)
             && (PMT_FRAME_LINENO(f) == 0 || PMT_FRAME_LINENO(f) == PyFrame_GetLineNumber(f));
    Py_DECREF(code);
    Py_DECREF(globals);
    Py_DECREF(builtins);
    return ok;
}

static inline int
pmt_cpmt_frame_lasti(PyFrameObject *f)
{
    return pmt_cpmt_frame_direct ? pmt_cpmt_direct_lasti(f) : PyFrame_GetLasti(f);
}

/* f_lineno (0: not set), or -1: not known (ask PyFrame_GetLineNumber). */
static inline int
pmt_cpmt_frame_lineno(PyFrameObject *f)
{
    return pmt_cpmt_frame_direct ? PMT_FRAME_LINENO(f) : -1;
}
#else
#define PMT_CPMT_FRAME312 0
#endif

#if !PMT_CPMT_FRAME311 && !PMT_CPMT_FRAME312
#define pmt_cpmt_frame_check() 0
#endif

/* The code object of a frame (borrowed: the frame holds it). */
static inline PyCodeObject *
pmt_cpmt_frame_code(PyFrameObject *f)
{
#if PMT_CPMT_FRAME311 || PMT_CPMT_FRAME312
    if (pmt_cpmt_frame_direct) {
        return pmt_cpmt_direct_code(f);
    }
#endif
    PyCodeObject *code = PyFrame_GetCode(f);
    Py_DECREF(code);    /* the frame holds another */
    return code;
}

/* The name of the interpreter's allocators as PYTHONMALLOC spells it
 * ("pymalloc", "malloc", "pymalloc_debug", ...), or NULL if hooks that are
 * not the interpreter's own are installed (tracemalloc, a profiler) or the
 * debug hooks are (3.13: the caller then looks at PYTHONMALLOC, -X dev and
 * Py_DEBUG). */
#if PY_VERSION_HEX < 0x030D0000
#define pmt_cpmt_allocator_name() _PyMem_GetCurrentAllocatorName()
#else
static inline const char *
pmt_cpmt_allocator_name(void)
{
    /* 3.13 made the name internal.  The interpreter's own non-debug
     * allocators are the only ones with no context in every domain; the raw
     * domain is malloc's then, and the mem and obj domains are too exactly
     * when all three share one function ("malloc"). */
    PyMemAllocatorEx raw, mem, obj;
    PyMem_GetAllocator(PYMEM_DOMAIN_RAW, &raw);
    PyMem_GetAllocator(PYMEM_DOMAIN_MEM, &mem);
    PyMem_GetAllocator(PYMEM_DOMAIN_OBJ, &obj);
    if (raw.ctx != NULL || mem.ctx != NULL || obj.ctx != NULL) {
        return NULL;
    }
    if (mem.malloc == raw.malloc && obj.malloc == raw.malloc) {
        return "malloc";
    }
    /* pymalloc serves both domains with one set of functions, mimalloc not. */
    return mem.malloc == obj.malloc ? "pymalloc" : "mimalloc";
}
#endif

/* ---- process ------------------------------------------------------------- */

/* ---- mallocstats --------------------------------------------------------- */

/* The interpreter's allocator statistics writers (what sys._debugmallocstats()
 * calls).  _PyObject_DebugMallocStats is exported by libpython 3.9 to 3.13 but
 * declared only in internal headers, so it is declared here.
 * _PyObject_DebugTypeStats is exported up to 3.12 only (see below). */
#include <stdio.h>
extern int _PyObject_DebugMallocStats(FILE *out);

/* The free-list writer (the "free PyDictObjects" lines).  3.13 builds it but
 * no longer exports it (it is hidden in libpython), so there it is looked up
 * at run time and, when absent, the snapshot has no free-list section
 * (pmt_debug_type_stats returns 0; the allocator section is unaffected). */
#if PY_VERSION_HEX >= 0x030D0000
#include <dlfcn.h>
static inline int
pmt_debug_type_stats(FILE *out)
{
    static void (*fn)(FILE *);
    static int looked;
    if (!looked) {
        *(void **)&fn = dlsym(RTLD_DEFAULT, "_PyObject_DebugTypeStats");
        looked = 1;
    }
    if (fn == NULL) {
        return 0;
    }
    fn(out);
    return 1;
}
#else
extern void _PyObject_DebugTypeStats(FILE *out);
static inline int
pmt_debug_type_stats(FILE *out)
{
    _PyObject_DebugTypeStats(out);
    return 1;
}
#endif

/* ---- reftrace ----------------------------------------------------------- */

/* The reference tracer hook (PyRefTracer_SetTracer) is in CPython 3.13+;
 * ReferenceTracing refuses free-threaded builds (its tables assume the GIL). */
#ifdef Py_GIL_DISABLED
#define PMT_REFTRACER_FREE_THREADED 1
#else
#define PMT_REFTRACER_FREE_THREADED 0
#endif
#if PY_VERSION_HEX >= 0x030D0000 && !PMT_REFTRACER_FREE_THREADED
#define PMT_HAVE_REFTRACER 1
#else
#define PMT_HAVE_REFTRACER 0
#endif

/* Immortal objects (3.12+): _Py_IsImmortal, an inline of the public headers
 * of 3.12 and 3.13; nothing is immortal before. */
#if PY_VERSION_HEX >= 0x030C0000
#define PMT_IS_IMMORTAL(o) _Py_IsImmortal(o)
#else
#define PMT_IS_IMMORTAL(o) ((void)(o), 0)
#endif

/* ---- malloccap ----------------------------------------------------------- */

/* int from a Python int, -1 with OverflowError when out of range: the
 * public route (_PyLong_AsInt is gone in 3.13; PyLong_AsInt is new there). */
static inline int
pmt_long_as_int(PyObject *o)
{
    int overflow;
    long v = PyLong_AsLongAndOverflow(o, &overflow);
    if (overflow || v > INT_MAX || v < INT_MIN) {
        PyErr_SetString(PyExc_OverflowError, "Python int too large to convert to C int");
        return -1;
    }
    return (int)v;
}

#endif /* PMT_COMPAT_H */
