"""A small thread-safe least-recently-used cache, and hashable keys for NumPy arrays.

``functools.lru_cache`` needs hashable arguments; the caches of this package are keyed by Q grids and x axes
(arrays), so they hash the array's bytes into a short digest (:func:`array_key`) and keep the values in an
:class:`LRUCache`. Values are computed outside the lock (two threads missing the same key may both compute it;
the later one is kept), so a slow computation never blocks look-ups of other keys.
"""
from __future__ import annotations

import hashlib
import os
import threading
import weakref
from collections import OrderedDict
from typing import Callable, Generic, Hashable, Iterator, TypeVar

import numpy as np

__all__ = ["LRUCache", "array_key"]

V = TypeVar("V")


def array_key(a: np.ndarray, decimals: int | None = None) -> tuple[bytes, tuple[int, ...], str]:
    """A hashable key of an array's values: (16-byte BLAKE2b digest, shape, dtype).

    ``decimals`` rounds the values first, so arrays equal to that many decimals share a key.
    """
    arr = np.ascontiguousarray(a if decimals is None else np.round(a, decimals))
    return hashlib.blake2b(arr.tobytes(), digest_size=16).digest(), tuple(arr.shape), arr.dtype.str


#: Every cache, so that a forked child (the training's batch worker) gets fresh locks: one that another thread held
#: at the fork would stay held in the child for ever.
_CACHES: "weakref.WeakSet[LRUCache]" = weakref.WeakSet()


def _fresh_locks_after_fork() -> None:
    for cache in list(_CACHES):
        cache._lock = threading.Lock()


if hasattr(os, "register_at_fork"):  # (POSIX)
    os.register_at_fork(after_in_child=_fresh_locks_after_fork)


class LRUCache(Generic[V]):
    """At most ``maxsize`` entries; a look-up makes an entry the most recent, an insertion evicts the least recent."""

    def __init__(self, maxsize: int) -> None:
        self._data: OrderedDict[Hashable, V] = OrderedDict()
        self._lock = threading.Lock()
        self._maxsize = 0
        self.resize(maxsize)
        _CACHES.add(self)

    @property
    def maxsize(self) -> int:
        return self._maxsize

    def resize(self, maxsize: int) -> None:
        """Set the number of entries kept (>= 1); the least recent ones beyond it are dropped."""
        if int(maxsize) < 1:
            raise ValueError(f"cache size {maxsize!r}; accepted: an integer >= 1")
        with self._lock:
            self._maxsize = int(maxsize)
            self._evict()

    def get(self, key: Hashable, default: V | None = None) -> V | None:
        with self._lock:
            try:
                self._data.move_to_end(key)
            except KeyError:
                return default
            return self._data[key]

    def put(self, key: Hashable, value: V) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            self._evict()

    def get_or_compute(self, key: Hashable, compute: Callable[[], V]) -> V:
        """The cached value of ``key``, else ``compute()`` (called outside the lock), stored and returned."""
        hit = self.get(key, _MISSING)
        if hit is not _MISSING:
            return hit
        value = compute()
        self.put(key, value)
        return value

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def keys(self) -> list[Hashable]:
        """A snapshot of the keys, least recent first."""
        with self._lock:
            return list(self._data)

    def __iter__(self) -> Iterator[Hashable]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._data

    def __getstate__(self) -> dict:  # picklable (e.g. for DataLoader workers): the lock is not
        with self._lock:
            return {"maxsize": self._maxsize, "data": list(self._data.items())}

    def __setstate__(self, state: dict) -> None:
        self._lock = threading.Lock()
        self._maxsize = int(state["maxsize"])
        self._data = OrderedDict(state["data"])
        _CACHES.add(self)

    def _evict(self) -> None:
        while len(self._data) > self._maxsize:
            self._data.popitem(last=False)


_MISSING = object()
