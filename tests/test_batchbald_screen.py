"""BatchBALD's screened steps (the joint entropy computed only for the blocks of candidates whose Jensen
upper bound can reach the best score) against the whole pass at every step: the same picks and the
same scores bit for bit (the computed blocks are the whole pass's blocks), and the bound is a bound."""

from __future__ import annotations

import pytest
import torch

import al_bench.strategies.batchbald as bb
from al_bench.strategies.batchbald import batchbald_batch, entropy_bound, joint_entropy


def make_input(n, s, c, seed, sharp=2.0):
    torch.manual_seed(seed)
    base = torch.randn(n, 1, c)
    return torch.softmax(sharp * (base + 0.7 * torch.randn(n, s, c)).double(), dim=2)


# (N, S, C, seed, k, M, chunk_elems): exact steps with >= 256 configurations, then sampled ones
CASES = [
    (300, 8, 4, 0, 9, 512, 1 << 12),  # 4^4 = 256 exact configurations at the 5th pick, sampled from the 6th
    (257, 6, 3, 1, 10, 600, 1 << 13),  # blocks of 4 candidates, N not a multiple of the block
    (200, 10, 5, 2, 7, 1000, 1),  # one candidate per block
]


@pytest.mark.parametrize("probe", [1, 32])
@pytest.mark.parametrize("case", CASES)
def test_screened_steps_equal_the_whole_pass(case, probe):
    n, s, c, seed, k, m, elems = case
    probs = make_input(n, s, c, seed)
    want, want_scores = batchbald_batch(probs, k, m, torch.Generator().manual_seed(seed), elems, screen=False)
    computed = []
    whole = bb.joint_entropy

    def counting(configs, weights, p, chunk_elems=1 << 18, pool=None, blocks=None):
        got = whole(configs, weights, p, chunk_elems, pool, blocks)
        computed.append(int((~torch.isnan(got)).sum()))
        return got

    bb.joint_entropy = counting
    try:
        got, got_scores = batchbald_batch(probs, k, m, torch.Generator().manual_seed(seed), elems, screen=True,
                                          probe=probe)
    finally:
        bb.joint_entropy = whole
    assert got.tolist() == want.tolist()
    assert got_scores.tolist() == want_scores.tolist()  # bit for bit
    screened = [x for x in computed if x < n]
    assert screened and sum(screened) < 0.5 * n * len(screened)  # the screen skipped most rows


@pytest.mark.parametrize("sampled", [False, True])
def test_entropy_bound_is_above_the_joint_entropy(sampled):
    probs = make_input(120, 6, 4, 3)
    probs[5, :, 2] = 0.0  # a label no weight sample gives
    probs[7] *= 1.001  # rows that do not sum to 1 exactly
    torch.manual_seed(4)
    configs = torch.rand(300, 6).double() ** 3
    configs[10] = 0.0  # an impossible configuration
    weights = 6 / (300 * configs.sum(dim=1).clamp_min(1e-300)) if sampled else torch.rand(300).double()
    h = joint_entropy(configs, weights, probs)
    rows = torch.arange(120)
    top2 = configs.topk(2, dim=1).indices
    for groups in (torch.zeros(300, dtype=torch.long), top2[:, 0], top2[:, 0] * 6 + top2[:, 1],
                   torch.arange(300)):
        ub = entropy_bound(configs, weights, probs, groups, rows)
        assert (ub >= h - 1e-12).all()
    # one group per configuration: Jensen is an equality
    torch.testing.assert_close(entropy_bound(configs, weights, probs, torch.arange(300), rows), h,
                               rtol=1e-12, atol=1e-12)


def test_sampled_configurations_do_not_depend_on_the_pool():
    """The picks' log-probabilities summed in row blocks among 2 threads: the same configurations, bit for bit."""
    from al_bench.strategies.batchbald import sample_configs
    from al_bench.strategies.common.blocks import BlockPool

    probs = make_input(50, 5, 4, 6)
    picks = [3, 17, 8, 40, 22, 9]
    want = sample_configs(probs, picks, 1001, torch.Generator().manual_seed(1))
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with BlockPool() as pool:
            assert pool.workers == 2
            got = sample_configs(probs, picks, 1001, torch.Generator().manual_seed(1), pool)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
