"""A workaround for a cost of CPython 3.11's `sqlite3` module, with the versions it is for.

**Every NULL parameter pays for a failed attribute lookup on a type.** `sqlite3` binds a parameter
directly only when it is exactly `int`, `float`, `str` or `bytearray`; anything else, `None`
included, goes through its adapter protocol (PEP 246): the adapter registry, then
`PrepareProtocol.__adapt__`, then the value's `__conform__`, and only then binds the value itself.
On CPython 3.11 a missing attribute of a *type* is found missing by raising an `AttributeError` with
a formatted message and clearing it, so each NULL costs about 3,300 instructions. An enriched row
binds about 8 NULLs (the columns of the other event types of its table): measured with callgrind on
the SQL sink over the bench backlog, 156,000 adapter calls for 20,000 rows, 6.8% of every
instruction the sink spent writing them. CPython 3.12 looks such attributes up without raising.

`install` registers an adapter for `NoneType`, which answers at the protocol's first step, a
dictionary lookup: it returns None, which `sqlite3` binds as NULL, exactly as before. The registry
belongs to the `sqlite3` module (one per process), and the adapter changes no value, so installing
it again, or for another connection, changes nothing. `NEEDED_ON` gates it to the versions measured.
"""

from __future__ import annotations

import sqlite3
import sys

NEEDED_ON = ((3, 11),)
"""The CPython versions (major, minor) measured to pay the cost above."""


_NO_VALUES: dict[object, None] = {}
_null = _NO_VALUES.get
"""The adapter: returns None for None (a C-level call; a Python function costs ~300 instructions more)."""


def needed(version: tuple[int, ...] = tuple(sys.version_info[:2])) -> bool:
    """Whether this Python pays the cost (see the module doc)."""
    return tuple(version[:2]) in NEEDED_ON


def install() -> bool:
    """Register the NULL adapter when `needed()`; returns whether it is registered."""
    if not needed():
        return False
    sqlite3.register_adapter(type(None), _null)
    return True
