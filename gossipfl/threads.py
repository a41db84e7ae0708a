"""How many threads torch computes with: one choice per command, made here.

torch sizes its thread pool to every core of the machine. That is right for one process
doing large batched work alone, and badly wrong when processes or peers share the cores:
each pool's threads spin waiting for threads the OS has descheduled to run another's, and
small per-peer steps get many times slower (``scripts/bench_threads.py`` measures it: on a
loaded 2-core machine one peer's 1,000 local steps take several times longer with the
default pool than with one thread). So:

- ``gossipfl peer``: 1 by default. A peer cannot know how many others share its host,
  its steps are small, and one thread loses little even when it is alone.
- ``gossipfl launch`` and ``sim --engine network``: 1, since every peer runs in this one
  process and each trains in its own thread already.
- the vectorized ``sim``: every core this process may use; it is one process doing large
  batched steps.

``--threads N`` (and ``[runtime].threads`` in a peer config) overrides the choice; 0 keeps it.
A positive ``OMP_NUM_THREADS`` in the environment replaces the automatic choice, as it would
torch's own default.
Only the intra-op pool is set: eager training never uses torch's inter-op pool.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from gossipfl import checks

__all__ = ["PEER_THREADS", "available_cores", "threads_for", "using_threads"]

# The automatic choice for processes that run peers.
PEER_THREADS = 1


def available_cores() -> int:
    """The cores this process may run on (its affinity mask, not the whole machine)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity masks on this platform (macOS)
        return os.cpu_count() or 1


def threads_for(requested: object, automatic: int) -> int:
    """``requested`` threads, or where it is 0 ``OMP_NUM_THREADS`` if set, else ``automatic``;
    ConfigError if ``requested`` is negative."""
    count = checks.integer("threads", requested, 0)
    if count:
        return count
    environment = os.environ.get("OMP_NUM_THREADS", "")
    return int(environment) if environment.isdigit() and int(environment) > 0 else automatic


@contextmanager
def using_threads(requested: object, automatic: int) -> Iterator[int]:
    """torch computes with ``threads_for(requested, automatic)`` threads (the count yielded)
    inside the block, and with as many as before after it."""
    import torch

    count = threads_for(requested, automatic)
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield count
    finally:
        torch.set_num_threads(before)
