"""A small program for `pymemtrace malloc`: who allocated what, and what leaked.

    pymemtrace malloc -o ex_malloc.cap -- python examples/ex_malloc.py
    pymemtrace malloc report ex_malloc.cap
"""
import ctypes
import threading

libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]


def load_table(rows: int) -> list:
    """Python objects: the list's storage is one malloc, the ints live in pymalloc arenas."""
    return [i * 3 for i in range(rows)]


def read_blob(size: int) -> bytes:
    """One big malloc (a bytes object's buffer), freed by the caller."""
    return bytes(size)


def c_buffer_cache(n: int) -> None:
    """A C library that keeps one buffer too many: a deliberate leak."""
    kept = [libc.malloc(64 * 1024) for _ in range(n)]
    for p in kept[:-1]:
        libc.free(p)


def worker() -> None:
    data = bytearray(2 * 1024 * 1024)
    data[0] = 1


def main() -> None:
    table = load_table(200_000)
    for _ in range(3):
        blob = read_blob(4 * 1024 * 1024)
        del blob
    c_buffer_cache(5)
    t = threading.Thread(target=worker)
    t.start()
    t.join()
    print(f"done: {len(table)} rows")


if __name__ == "__main__":
    main()
