"""fork() and the audit writers: a child forked while another thread appends must never deadlock.

Before ``fork()`` the forking thread takes the shared-writer lock and every writer's lock (so no thread is half-way
through an append); the parent releases them after; the child gets fresh locks, ids and its own open file
description of each log (:meth:`~medinfer.audit.AuditLog.forked`), so that its flock and its parent's exclude each
other.
"""

from __future__ import annotations

import os
import weakref
from typing import Any

WRITERS: weakref.WeakSet[Any] = weakref.WeakSet()  # every AuditLog of this process
_HELD: list[Any] = []  # the writers whose locks the forking thread holds
_SHARED: list[Any] = []  # the class whose shared-writer lock is held


def register(cls: Any) -> None:
    """Install the at-fork handlers for ``cls`` (AuditLog) once."""
    if _SHARED or not hasattr(os, "register_at_fork"):
        return
    _SHARED.append(cls)
    os.register_at_fork(before=_before, after_in_parent=_after_in_parent, after_in_child=_after_in_child)


def _before() -> None:
    """Hold every writer's lock across fork(): no thread is then half-way through an append."""
    _SHARED[0].hold_shared()
    _HELD[:] = sorted(WRITERS, key=id)
    for log in _HELD:
        log.hold()


def _after_in_parent() -> None:
    for log in reversed(_HELD):
        log.release_hold()
    _HELD.clear()
    _SHARED[0].release_shared()


def _after_in_child() -> None:
    _SHARED[0].renew_shared()
    _HELD.clear()
    for log in list(WRITERS):
        log.forked()
