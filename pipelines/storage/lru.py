"""A least-recently-used memo for per-file facts the loader reads once and reuses every epoch.

``gop.PacketIndexCache`` (where a VP9 file's packets sit) and ``frame_archive.IndexCache`` (where an
archive's JPEGs sit) keep one small entry per file; a dataset larger than ``capacity`` files
re-reads the oldest ones, so memory stays bounded at any dataset size.
"""
from collections import OrderedDict


class LRU:
    """``get(key, make)``: the value remembered for ``key``, or ``make()``'s, remembered for the
    ``capacity`` most recently used keys (0: remember nothing)."""

    def __init__(self, capacity: int = 10000):
        self.capacity, self._items = capacity, OrderedDict()

    def get(self, key, make):
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        found = self._items[key] = make()
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)
        return found
