"""CPython's cycle collector kept off the objects a command holds for its whole run.

The desired state of 10,000 databases is some 240,000 objects the collector tracks and a plan of 20,000
changes adds as many, none of them garbage until the command ends; every full collection walks all of them
again (a quarter of a second at that size on this machine, bench/plan_bench.py), and the allocations that
build them, or the garbage of every request, start one now and then. Reference counting frees everything
here that is not cyclic, so skipping those walks loses nothing
(https://docs.python.org/3/library/gc.html, `gc.freeze`: "ignore them in all the future collections").
"""

from __future__ import annotations

import gc
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def paused() -> Iterator[None]:
    """No cycle collection in the block: for a burst of allocation that builds what lives on (loading, a diff),
    which forms no cycle worth collecting meanwhile. What it built then goes where objects that survive
    collections end up, the oldest generation, without the collections: left young, each of the next
    collections of the young generations would walk all of it first (a fifth of a second after loading
    10,000 documents). Freezing moves every tracked object aside and unfreezing moves them all to the oldest
    generation; inside `sparing_what_lives` they are only set aside, with what it holds."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        spared = gc.get_freeze_count() > 0
        gc.freeze()
        if not spared:
            gc.unfreeze()
        if enabled:
            gc.enable()


@contextmanager
def sparing_what_lives() -> Iterator[None]:
    """Collections in the block walk only what it makes: everything alive when it starts (the desired state,
    the plan) is set aside (`gc.freeze`) and handed back to the collector at its end (`gc.unfreeze`), when
    cyclic garbage set aside with it is collected as usual. Blocks that overlap (watch's threads) cost no
    correctness: the first to end hands everything back, which only lets collections walk it again."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
