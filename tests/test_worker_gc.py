"""A web worker collects garbage between requests (mindo.worker_gc), never during a read.

Each case runs in a fresh interpreter: the collector's settings belong to the whole process.
"""

from __future__ import annotations

import os

from tests.process_support import run_python

# A "request" that makes cyclic garbage about as a read does (a few thousand containers), then
# what gunicorn's post_request hook does after the answer.
BETWEEN_REQUESTS = """
import gc, weakref
from mindo import gunicorn_conf

class Node:
    pass

def read_request():
    cycles = []
    for _ in range(3000):
        node = Node()
        node.me = node
        cycles.append(node)
    return weakref.ref(cycles[-1])

started = []
gc.callbacks.append(lambda phase, info: phase == "start" and started.append(info["generation"]))
gunicorn_conf.post_worker_init(worker=None)
assert gc.get_freeze_count() > 0, "the loaded modules are frozen"
started.clear()

generations = []
for _ in range(120):
    left = read_request()
    assert started == [], f"a collection ran during the request: {started}"
    assert left() is not None, "a cycle lives until it is collected"
    gunicorn_conf.post_request(worker=None, req=None, environ={}, resp=None)
    assert left() is None, "the request's cycles are gone once its answer is written"
    generations.append(started.pop())
    assert started == []
print(generations.count(0), generations.count(1), generations.count(2))
"""

# A request far larger than a read still gets automatic collections while it runs.
LARGE_REQUEST = """
import gc
from mindo import gunicorn_conf

started = []
gunicorn_conf.post_worker_init(worker=None)
gc.callbacks.append(lambda phase, info: phase == "start" and started.append(info["generation"]))
kept = []
for _ in range(200_000):
    node = {}
    node["me"] = node
    kept.append(node)
print(len(started))
"""


def test_a_read_s_cycles_are_collected_after_its_answer_and_never_during_it() -> None:
    done = run_python(BETWEEN_REQUESTS, env=os.environ)
    young, older, full = (int(count) for count in done.stdout.split())
    # The young generation after every request, the next one after ten of those, the oldest
    # after ten of the next: CPython's own rule, run where no client waits.
    assert (young, older, full) == (109, 10, 1)


def test_a_request_far_larger_than_a_read_is_still_collected_while_it_runs() -> None:
    done = run_python(LARGE_REQUEST, env=os.environ)
    assert int(done.stdout) >= 3
