"""Row blocks shared among torch's threads, for greedy selections (bait, batchbald, batch_balance) whose
every step runs many small operations (about a millisecond each) over blocks of candidates.

Threads inside each such operation meet at a barrier after it; on a busy machine one descheduled thread
stalls the others at every barrier (measured on the shared 2-core VM: 2 threads 2-9x slower than one).
Here the threads take disjoint blocks instead, and inside the pool's `with` every torch operation runs on one
thread (the steps' other small operations too): the same arithmetic as on one thread, so the results do not
depend on the thread count."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import torch


@contextmanager
def single_thread():
    """torch on one thread inside (restored after), for loops of many sub-millisecond operations
    (k-means++ steps, LearnSPN's 20 x 20 RDC matrices): more threads do not speed such operations up
    on a quiet machine, and on a loaded one every parallel region waits for a descheduled thread
    (measured on the 2-core VM: k-means++ seeding 11.3 s on 2 threads against 0.95 s on one; an RDC
    10x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@contextmanager
def one_thread_workers(workers: int):
    """A thread pool of `workers` threads for independent tasks (k-means restarts, DeepFool streams), each
    worker running torch on one thread, and the caller's torch on one thread inside too (restored after):
    the tasks run side by side instead of threading each small operation."""
    with single_thread(), ThreadPoolExecutor(workers, initializer=torch.set_num_threads, initargs=(1,)) as pool:
        yield pool


class BlockPool:
    """One worker per torch thread; `with BlockPool() as pool: ... pool.run(work, starts) ...`. Inside the
    `with`, torch runs each operation on one thread (its thread count is restored on leaving)."""

    def __init__(self):
        self.workers = torch.get_num_threads()
        self.pool = ThreadPoolExecutor(self.workers) if self.workers > 1 else None

    def __enter__(self) -> BlockPool:
        if self.pool is not None:
            torch.set_num_threads(1)
        return self

    def __exit__(self, *exc) -> None:
        if self.pool is not None:
            self.pool.shutdown()
            torch.set_num_threads(self.workers)

    def run(self, work: Callable[[list[int]], None], starts: list[int]) -> None:
        """work(share) for disjoint shares of the block starts, one share per worker."""
        if self.pool is None or len(starts) < 2:
            work(starts)
        else:
            list(self.pool.map(work, [starts[i::self.workers] for i in range(self.workers)]))


def run_blocks(pool: BlockPool | None, work: Callable[[list[int]], None], starts: list[int]) -> None:
    """pool.run(work, starts), or work(starts) here when there is no pool (a direct call)."""
    if pool is None:
        work(starts)
    else:
        pool.run(work, starts)
