"""Nearest real images for synthetic queries (ASAL's sample matching, Mayer & Timofte,
arXiv:1808.06671; also how GAAL's synthetic queries get an answer here): exact Euclidean
nearest-neighbour search over the base rows in blocks (no N x N matrix; memory Q x (r + block)),
and a distinct matching of queries to base rows.
"""

from __future__ import annotations

import numpy as np
import torch

from al_bench.strategies.common.clustering import BLOCK, sq_dists


def _keys(d: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """int64 keys ordering (distance, index) lexicographically: the bit pattern of a non-negative
    float32 orders like the float, so it goes in the high 32 bits and the index in the low ones."""
    bits = (d.float() + 0.0).view(torch.int32).long()  # + 0.0 turns -0.0 into +0.0
    return (bits << 32) | index


def nearest(queries: torch.Tensor, base: torch.Tensor, r: int = 1,
            block: int = BLOCK) -> tuple[torch.Tensor, torch.Tensor]:
    """(squared distances, base positions), each (Q, min(r, N)), of the r nearest base rows of
    every query row, nearest first, equal (float32) distances to the lower position, so the answer
    does not depend on `block`, the number of base rows read at a time."""
    r = min(int(r), base.shape[0])
    q, dev = queries.shape[0], queries.device
    best = torch.empty(q, 0, dtype=torch.long, device=dev)
    for s in range(0, base.shape[0], block):
        d = sq_dists(queries, base[s:s + block])
        keys = torch.cat([best, _keys(d, torch.arange(s, s + d.shape[1], device=dev).expand(q, -1))], 1)
        best = torch.topk(keys, min(r, keys.shape[1]), dim=1, largest=False, sorted=True).values
    dist = (best >> 32).int().view(torch.float32)
    return dist.to(queries.dtype), best & 0xFFFFFFFF


def match_distinct(queries: torch.Tensor, base: torch.Tensor, block: int = BLOCK, r: int = 8) -> np.ndarray:
    """For each query row in order, the nearest base row that no earlier query took: positions
    (Q,) in base, all distinct (needs Q <= N). A query whose r nearest are all taken looks
    further (r doubled) until one is free; earlier queries (put the most uncertain first) win."""
    n_q, n = queries.shape[0], base.shape[0]
    if n_q > n:
        raise ValueError(f"cannot match {n_q} queries to {n} distinct rows")
    taken = np.zeros(n, dtype=bool)
    picks = np.full(n_q, -1, dtype=np.int64)
    todo = np.arange(n_q)
    while len(todo):
        _, idx = nearest(queries[torch.as_tensor(todo, device=queries.device)], base, r, block)
        idx = idx.cpu().numpy()
        left = []
        for row, qi in enumerate(todo):
            if left and qi > left[0]:  # an earlier query still waits: keep the order
                left.append(qi)
                continue
            free = idx[row][~taken[idx[row]]]
            if len(free):
                picks[qi] = free[0]
                taken[free[0]] = True
            else:
                left.append(qi)
        todo = np.asarray(left, dtype=np.int64)
        r = min(2 * r, n)
    return picks
