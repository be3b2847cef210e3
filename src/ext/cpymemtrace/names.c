/* names.c: the File and Function of a cPyMemTrace row, and which C methods
 * are a static type's (named by their PyMethodDef, never held).  Called
 * where a row is written (callback.c), never on the quiet path of an event. */
#include "cpmt.h"
#include "event.h"

#include <string.h>

/* The File and Function of a row.  The file and function names of the last
 * code object asked for are kept (with a reference to it, so they stay
 * valid): consecutive rows are mostly of one code object. */
void
cpmt_names_of(CpmtTracer *self, PyCodeObject *code, int what, PyObject *cfunc, pmt_cpmt_row *row,
         Drops *d)
{
    row->file = NULL;
    row->file_len = 0;
    row->function = NULL;
    row->function_len = 0;
    if (code != NULL) {
        if (code != self->nm_code) {
            Py_INCREF(code);
            drop_later(d, (PyObject *)self->nm_code);
            self->nm_code = code;
            self->nm_file = cpmt_utf8_of(code->co_filename, &self->nm_file_len);
            self->nm_func = cpmt_utf8_of(code->co_name, &self->nm_func_len);
        }
        row->file = self->nm_file;
        row->file_len = self->nm_file_len;
    }
    if (what == PyTrace_C_CALL || what == PyTrace_C_RETURN || what == PyTrace_C_EXCEPTION) {
        if (cfunc != NULL && CPMT_IS_DEF_KEY(cfunc)) {
            row->function = CPMT_DEF_OF_KEY(cfunc)->ml_name;
        }
        else if (cfunc != NULL && Py_IS_TYPE(cfunc, &PyMethodDescr_Type)) {
            /* sys.monitoring's CALL of list.append etc.: the name the legacy
             * profiler's bound method has (tested first: PyCFunction_Check
             * walks a descriptor type's MRO) */
            row->function = ((PyMethodDescrObject *)cfunc)->d_method->ml_name;
        }
        else if (cfunc != NULL && PyCFunction_Check(cfunc)) {
            row->function = ((PyCFunctionObject *)cfunc)->m_ml->ml_name;
        }
        else if (cfunc != NULL) {
            row->function = Py_TYPE(cfunc)->tp_name;
        }
        if (row->function == self->nm_cname) {
            /* the last C row's name: its owner is still held (fmt_cfunc,
             * keep_names) or it is static, so the same address is the same
             * text */
            row->function_len = self->nm_cname_len;
        }
        else if (row->function) {
            row->function_len = strlen(row->function);
            self->nm_cname = row->function;
            self->nm_cname_len = row->function_len;
        }
    }
    else if (code != NULL) {
        row->function = self->nm_func;
        row->function_len = self->nm_func_len;
    }
}

/* A PyMethodDef found in the tp_methods of a static (not heap) type lives
 * as long as the process: a static type is never freed, nor are its method
 * descriptors, which point into that array (its dict cannot be changed), and
 * the name is read from it whenever a bound method of it is made or shown.
 * Looked for in the MRO of the type of m_self (and of m_self itself when it
 * is a type: class methods); the answer is memoised by address (a static
 * array's address never holds anything else; a "no" only keeps a reference
 * that was not needed).  Any other PyMethodDef (a module function's, a heap
 * type's, one made at run time) has its function held, as any callable. */
#define DEF_MEMO 64     /* a power of 2 */
static struct {
    const PyMethodDef *ml;
    int is_static;
} def_memo[DEF_MEMO];

static int
in_static_methods(const PyMethodDef *ml, PyTypeObject *tp)
{
    PyObject *mro = tp->tp_mro;
    Py_ssize_t n = mro != NULL && PyTuple_Check(mro) ? PyTuple_GET_SIZE(mro) : 0;
    for (Py_ssize_t i = -1; i < n; i++) {
        PyTypeObject *b = i < 0 ? tp : (PyTypeObject *)PyTuple_GET_ITEM(mro, i);
        if (!PyType_Check(b) || (b->tp_flags & Py_TPFLAGS_HEAPTYPE) || b->tp_methods == NULL) {
            continue;
        }
        for (const PyMethodDef *m = b->tp_methods; m->ml_name != NULL; m++) {
            if (m == ml) {
                return 1;
            }
        }
    }
    return 0;
}

int
cpmt_def_is_static(PyCFunctionObject *f)
{
    const PyMethodDef *ml = f->m_ml;
    size_t h = ((uintptr_t)ml >> 5) & (DEF_MEMO - 1);
    if (def_memo[h].ml != ml) {
        PyObject *m_self = f->m_self;
        def_memo[h].ml = ml;
        def_memo[h].is_static = m_self != NULL
            && (in_static_methods(ml, Py_TYPE(m_self))
                || (PyType_Check(m_self) && in_static_methods(ml, (PyTypeObject *)m_self)));
    }
    return def_memo[h].is_static;
}

/* The same for a method descriptor (sys.monitoring's CALL of list.append):
 * its PyMethodDef in the tp_methods of its type's MRO. */
int
cpmt_descr_is_static(PyMethodDescrObject *f)
{
    const PyMethodDef *ml = f->d_method;
    size_t h = ((uintptr_t)ml >> 5) & (DEF_MEMO - 1);
    if (def_memo[h].ml != ml) {
        def_memo[h].ml = ml;
        def_memo[h].is_static = in_static_methods(ml, PyDescr_TYPE(f));
    }
    return def_memo[h].is_static;
}
