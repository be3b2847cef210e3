"""cMemLeak: objects holding memory from each allocator, leaked on purpose by tests."""
import gc
import sys

import pytest

from pymemtrace import cMemLeak

CLASSES = [cMemLeak.CMalloc, cMemLeak.PyRawMalloc, cMemLeak.PyMalloc]


@pytest.mark.parametrize("cls", CLASSES)
def test_buffer_size_and_refcounts(cls):
    obj = cls(4096)
    assert obj.size == 4096 and obj.buffer_address == obj.buffer != 0
    assert type(obj).__module__ == "cMemLeak" and type(obj).__qualname__ == cls.__name__
    base = obj.refcnt()
    assert obj.inc_refcnt(2) == base + 2
    assert obj.inc_refcnt(-2) == base
    with pytest.raises(ValueError, match="would free"):
        obj.inc_refcnt(-base)
    with pytest.raises(ValueError, match="size must be >= 0"):
        cls(-1)
    with pytest.raises(TypeError):
        cls("big")


def test_a_leaked_object_is_never_freed():
    obj = cMemLeak.PyMalloc(64)
    obj.inc_refcnt(1)
    ref = id(obj)
    del obj
    gc.collect()
    # Still alive: its reference count as sys.getrefcount() would give it.
    assert cMemLeak.py_refcnt_of_address(ref) == 2


@pytest.mark.parametrize("value", [123456, "", b"", [], {}])
def test_refcount_functions_agree_with_sys_getrefcount(value):
    assert cMemLeak.py_refcnt_of_object(value) == sys.getrefcount(value)
    assert cMemLeak.py_refcnt_of_address(id(value)) == sys.getrefcount(value)


def test_incref_decref_and_bytes():
    x = object()
    before = sys.getrefcount(x)
    cMemLeak.py_incref(x)
    assert sys.getrefcount(x) == before + 1
    cMemLeak.py_decref(x)
    assert sys.getrefcount(x) == before
    assert len(cMemLeak.py_bytes_of_size(100)) == 100
    with pytest.raises(ValueError):
        cMemLeak.py_refcnt_of_address(0)
