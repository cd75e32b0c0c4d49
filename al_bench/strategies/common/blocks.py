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

import torch


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
