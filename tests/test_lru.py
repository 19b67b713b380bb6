"""The shared LRU cache and array keys (qdots_bluesky/lru.py)."""
from __future__ import annotations

import os
import pickle
import signal
import threading

import numpy as np
import pytest

from qdots_bluesky.lru import LRUCache, array_key


def test_least_recently_used_entry_is_evicted_first():
    c = LRUCache(2)
    c.put("a", 1)
    c.put("b", 2)
    assert c.get("a") == 1  # "a" is now the most recent
    c.put("c", 3)
    assert "b" not in c and c.keys() == ["a", "c"]
    c.resize(1)
    assert c.keys() == ["c"] and c.maxsize == 1
    with pytest.raises(ValueError, match=">= 1"):
        c.resize(0)


def test_get_or_compute_calls_once_per_key_and_survives_pickling():
    calls = []
    c = LRUCache(4)
    for _ in range(3):
        assert c.get_or_compute("k", lambda: calls.append(1) or 42) == 42
    assert len(calls) == 1
    d = pickle.loads(pickle.dumps(c))
    assert d.get("k") == 42 and d.maxsize == 4
    d.put("x", 1)  # a working lock after unpickling


def test_array_keys_hash_values_shape_and_rounding():
    q = np.linspace(1.0, 15.0, 101)
    assert array_key(q) == array_key(q.copy())
    assert array_key(q) != array_key(q + 1e-12)
    assert array_key(q, decimals=9) == array_key(q + 1e-12, decimals=9)
    assert array_key(q[:100]) != array_key(q)
    assert array_key(q[::2]) == array_key(np.ascontiguousarray(q[::2]))  # views key by their values


def test_concurrent_use_keeps_the_size_bound():
    c = LRUCache(8)

    def work(offset):
        for i in range(500):
            c.get_or_compute((offset, i % 20), lambda: i)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(c) == 8


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX fork")
def test_a_forked_child_is_not_locked_out_by_a_parent_thread():
    # another thread holds the cache's lock at the fork (a predictor's look-up): the child's cache still works
    c = LRUCache(4)
    c.put("a", 1)
    held, release = threading.Event(), threading.Event()

    def hold():
        with c._lock:
            held.set()
            release.wait()

    t = threading.Thread(target=hold, daemon=True)
    t.start()
    held.wait()
    try:
        pid = os.fork()
        if pid == 0:  # the child: a look-up that would wait for ever on the inherited lock (the alarm ends it then)
            code = 1
            try:
                signal.alarm(10)
                code = 0 if c.get("a") == 1 else 1
            finally:
                os._exit(code)
    finally:
        release.set()
    t.join()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_restored_caches_get_fresh_locks_after_a_fork_too():
    import qdots_bluesky.lru as lru

    restored = pickle.loads(pickle.dumps(LRUCache(2)))
    assert restored in lru._CACHES
