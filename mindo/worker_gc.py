"""Python's cyclic garbage collector in a web worker: between requests, not during them.

CPython collects when allocations outnumber deallocations by a threshold, so a collection starts
in the middle of whatever request crosses it. In a worker that has loaded Django, DRF and the
project (about 100,000 objects that live as long as the process), a young collection costs a
fraction of a millisecond, an older one a few milliseconds and a full one tens of milliseconds on
a busy machine, and one read in twenty paid for an older one (README, Speed).

So gunicorn's hooks (mindo.gunicorn_conf) do the collector's work where no client waits for it:
1. Once the application is loaded, `gc.freeze()` moves everything alive into a generation that is
   never scanned again: those objects live as long as the worker anyway.
2. Automatic collection waits for a threshold that no read reaches (a single request that makes
   far more container objects, a send of 100,000 recipients, is still collected while it runs);
   after each answer has been written, the generations are collected by CPython's own rule (the
   young one after every request, an older one after ten collections of the younger), so no
   cycle outlives its request by much.

The trade-off: the collection runs after the answer, so a request that arrives at that moment
on the same worker waits for it (a young collection: well under a millisecond).
"""

from __future__ import annotations

import gc

# A request allocating more container objects than this (net of those freed) is collected
# while it runs, as CPython would: reads stay far below it, 100,000-recipient sends do not.
IN_REQUEST_THRESHOLD = 50_000
# How many collections of a generation before the next one is collected too (CPython's default
# is 10 for both): the older generations are small once the loaded application is frozen.
OLDER_EVERY = 10


def worker_gc_start() -> None:
    """After the application is loaded in a worker: freeze what is alive, and from now on collect
    between requests (`worker_gc_after_request`)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(IN_REQUEST_THRESHOLD, OLDER_EVERY, OLDER_EVERY)


def worker_gc_after_request() -> int:
    """Collect what the request left behind: the young generation, and the older ones when their
    turn has come. Returns the generation collected."""
    _, younger_collections, older_collections = gc.get_count()
    if older_collections >= OLDER_EVERY:
        generation = 2
    elif younger_collections >= OLDER_EVERY:
        generation = 1
    else:
        generation = 0
    gc.collect(generation)
    return generation
