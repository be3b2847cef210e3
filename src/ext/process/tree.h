/* tree.h: the pymemtrace._process.Tree type (tree.c), added to the module by
 * module.c. */
#ifndef PMT_PROCESS_TREE_H
#define PMT_PROCESS_TREE_H

/* Ready the Tree type and add it to module m; 0, or -1 with an exception. */
int pmt_tree_type_add(PyObject *m);

#endif
