"""BatchBALD (Kirsch, van Amersfoort & Gal, "BatchBALD: Efficient and Diverse Batch Acquisition for
Deep Bayesian Active Learning", NeurIPS 2019, arXiv:1906.08158).

Greedy maximisation of the joint mutual information I(y_1..y_b; w) = H(y_1..y_b) - sum_i E_w H(y_i|w):
step b adds the candidate n maximising H(y_A, y_n) - E_w H(y_n|w) (the score reported also subtracts
the picks' sum_i E_w H(y_i|w), as the authors' code does). As in the authors' code (BlackHC/batchbald_redux,
batchbald.py `get_batchbald_batch` with joint_entropy.py `DynamicJointEntropy`), the joint entropy of the
picks A with each candidate is exact (all C^|A| label configurations of A, an M x S matrix of
p(y_A | w_s)) while C^|A| <= M = `num_joint_samples`; beyond that it is a Monte-Carlo estimate drawn
afresh at every step: for each of the S weight samples w_j, M // S configurations y^m_A ~ p(y_A | w_j)
(stratified over the weight samples), and H(y_A, y_n) ~ -1/M sum_m sum_y p(y^m_A, y) log p(y^m_A, y) /
p(y^m_A). The draw is the authors' (one multinomial call over the (|A| S, C) rows, M // S draws each),
so with the same generator state the sampled picks equal theirs. Rows are rescaled to a maximum of one
(and the scale added back), so long batches do not underflow.

Choices: the S weight samples are S dropout masks on the head shared by all candidates
(consistent MC dropout, as the joint needs); `mc_samples` S, `num_joint_samples` M. When M < S one
configuration is drawn per weight sample (the authors' code draws none).

Screened steps (`screen`, on; the same picks and scores bit for bit as the whole pass, tested in
tests/test_batchbald_screen.py). With c_m = mean_s configs[m, s], r_m = configs[m] / (S c_m) and
q_m(y) = sum_s r_ms p(y | w_s), a candidate's joint entropy is a part linear in its probabilities plus
sum_m alpha_m phi(q_m) (phi = -q log q concave, alpha_m = weights_m c_m); Jensen over groups of
configurations gives an upper bound at O(G S C) per candidate instead of O(M S C). Three levels of
groups, by the configurations' posterior r_m over the weight samples (the most likely sample, <= S
groups; it and its probability in 16 bins, ~250; the two most likely and 8 bins, ~1,200), each for the
rows the previous level kept; at each level the blocks of the 32 largest bounds are computed exactly and
the rows whose bounded score is below the best computed one drop out; the blocks of the rows left are
computed (margin 1e-8 nats, far above the rounding of either sum). The blocks are the whole pass's (a
row's number depends on its block), so the numbers are equal.

Cost per greedy step: the whole pass is O(N M S C) (+ O(|A| S M) to redraw the configurations),
memory O(N S C + M S + |A| M) plus a block of the (M, N C) joint; k steps in all. With M = 10,000,
S = 20, C = 10 and N = 10k that is 2e10 multiply-adds and 1e9 p log p per step: 8.5 s of one quiet CPU
thread on the 2-core VM (~1-2 ms per candidate; 15-40 s on a loaded one). Screened, measured on the
bench's 10k inputs on one loaded thread (load ~5): the first 4 steps (exact, C^|A| <= 1,000) 0.2 s;
then 64-300 exact rows a step (0.06-0.25 s), the bounds 0.03-0.3 s, the redraw ~0.9 ms per pick; in all
0.7 s at k = 10, 1.8 s at 20, 12 s at 60, 30 s at 100, 55 s at 150, 81 s at 200 (10k, k = 20 back to
back: 290 s for the whole pass, 2.9 s screened, the same picks and scores; 2 threads of the loaded VM
are no faster than one). The redraw, which the authors' batchbald_redux also does at every step
(DynamicJointEntropy.add_variables calls SampledJointEntropy.sample over all picks), is |A| M label
draws (one serial torch.multinomial, ~0.5 ms per pick per step) plus |A| M S gathered additions (shared
among the pool's threads): sum over steps ~0.9 ms x k^2 / 2, ~450 s at k = 1,000 on its own, ~13 min
with the bounds (~0.3 s a step at |A| = 200). So k = 1,000 in 60 s is out of reach with the authors'
draws (the draws decide the picks: keeping the picks' joint across steps would change them); 60 s holds
up to k ~ 150 on one loaded thread. batchbald_redux's own step is the whole pass plus the redraw as an
(|A|, S, S, M/S) gather and |A| S M logarithms (its notebook runs float64, as the golden test; its
default dtype=None would be float32: not offered here).

References: arXiv:1906.08158
"""

from __future__ import annotations

import numpy as np
import torch

from al_bench import ConfigError
from al_bench.strategies.base import SelectionContext, Strategy
from al_bench.strategies.common.blocks import BlockPool, run_blocks
from al_bench.strategies.common.mc_dropout import (
    check_mc_samples,
    consistent_mc_probs,
    require_dropout,
    torch_generator,
)
from al_bench.strategies.common.uncertainty import entropy


def joint_entropy(configs: torch.Tensor, weights: torch.Tensor, probs: torch.Tensor,
                  chunk_elems: int = 1 << 18, pool: BlockPool | None = None,
                  blocks: list[int] | None = None) -> torch.Tensor:
    """H(y_A, y_n) for every candidate n: -sum_{m,y} weights_m p(y^m_A, y_n = y) log p(y^m_A, y_n = y),
    with configs (M, S) = p(y^m_A | w_s) and probs (N, S, C) = p(y_n | w_s).

    Per block of candidates: one (M, S) x (S, b C) product gives the joint probabilities (the 1/S folded
    into configs), p log p in place (xlogy: 0 at p = 0), the sum over y, then the weighted sum over the M
    configurations as one (M,) x (M, b) product; blocks of `chunk_elems` joint probabilities stay in cache
    and are shared among the pool's threads. `blocks` (indices of blocks of block_size(M, C, chunk_elems)
    candidates) computes only those (the others NaN): the same numbers as in the whole pass."""
    n, s, c = probs.shape
    m = configs.shape[0]
    scaled = configs / s
    flat = probs.permute(1, 0, 2).reshape(s, n * c)  # (S, N C)
    out = torch.empty(n, dtype=torch.float64, device=probs.device)
    step = block_size(m, c, chunk_elems)
    if blocks is not None:
        out.fill_(float("nan"))

    def work(starts: list[int]) -> None:
        for start in starts:
            pj = scaled @ flat[:, start * c:(start + step) * c]  # (M, b C)
            torch.special.xlogy(pj, pj, out=pj)
            out[start:start + step] = -(weights @ pj.view(m, -1, c).sum(2))

    starts = list(range(0, n, step)) if blocks is None else [b * step for b in blocks]
    run_blocks(pool, work, starts)
    return out


def block_size(m: int, c: int, chunk_elems: int) -> int:
    """Candidates per block of joint_entropy."""
    return max(1, chunk_elems // (m * c))


def group_stats(configs: torch.Tensor, weights: torch.Tensor, groups: torch.Tensor) -> tuple:
    """(rbar (G, S), A (G,), v (S,)) of entropy_bound for groups (M,) of the configurations."""
    s = configs.shape[1]
    total = configs.sum(dim=1)
    keep = total > 0  # impossible configurations add 0 to the entropy
    configs, weights, total, groups = configs[keep], weights[keep], total[keep], groups[keep]
    cm = total / s
    r = configs / total[:, None]
    alpha = weights * cm
    v = (alpha * torch.log(cm)) @ r  # (S,)
    _, inv = torch.unique(groups, return_inverse=True)
    a_g = torch.zeros(int(inv.max()) + 1, dtype=torch.float64, device=configs.device).index_add_(0, inv, alpha)
    rbar = torch.zeros((len(a_g), s), dtype=torch.float64, device=configs.device).index_add_(
        0, inv, alpha[:, None] * r)
    return rbar / a_g.clamp_min(torch.finfo(torch.float64).tiny)[:, None], a_g, v


def entropy_bound(configs: torch.Tensor, weights: torch.Tensor, probs: torch.Tensor, groups: torch.Tensor,
                  rows: torch.Tensor, stats: tuple | None = None) -> torch.Tensor:
    """An upper bound of joint_entropy(configs, weights, probs)[rows], from groups (M,) of configurations
    (stats: their group_stats, when already computed).

    With c_m = 1/S sum_s configs[m, s], r_ms = configs[m, s] / (S c_m) and alpha_m = weights_m c_m, a
    term is -alpha_m [log c_m sum_y q_m(y) + sum_y q_m(y) log q_m(y)] with q_m(y) = sum_s r_ms p(y | w_s):
    the first part is linear in the candidate's probabilities (exact here), the second is concave in q_m,
    so within a group g it is at most A_g phi(sum_{m in g} alpha_m q_m / A_g), A_g = sum_{m in g} alpha_m
    (Jensen; no normalisation of the rows is assumed). Cost O(G S C) per row for G groups."""
    rbar, a_g, v = group_stats(configs, weights, groups) if stats is None else stats
    p = probs[rows]  # (b, S, C)
    b, s, c = p.shape
    q = p.transpose(1, 2).reshape(b * c, s) @ rbar.T  # (b C, G): the groups' mean q(y)
    jensen = -(torch.special.xlogy(q, q) @ a_g).view(b, c).sum(dim=1)
    return jensen - p.sum(dim=2) @ v


def sample_configs(probs: torch.Tensor, picks: list[int], m: int, generator: torch.Generator | None,
                   pool: BlockPool | None = None) -> tuple:
    """Draw max(1, m // S) label configurations of the picks per weight sample w_j, each label from p(y_i | w_j).
    Returns (configs, log_scale): p(y^m_A | w_s) = configs[m, s] exp(log_scale[m]), each row's maximum 1.
    The picks' log-probabilities are summed in pick order, one row block per pool thread (the same sums)."""
    p = probs[picks]  # (A, S, C)
    a, s, c = p.shape
    per = max(1, m // s)
    labels = torch.multinomial(p.reshape(a * s, c), per, replacement=True, generator=generator)
    labels = labels.view(a, s * per)  # row j * per + r: drawn under w_j
    log_p = torch.zeros((s * per, s), dtype=torch.float64, device=probs.device)
    log_t = torch.log(p.transpose(1, 2))  # (A, C, S): a row per label, gathered per configuration
    log_scale = torch.empty(s * per, dtype=torch.float64, device=probs.device)
    configs = torch.empty_like(log_p)
    size = -(-s * per // (pool.workers if pool is not None else 1))

    def work(starts: list[int]) -> None:
        for start in starts:
            rows = slice(start, start + size)
            for i in range(a):
                log_p[rows] += log_t[i].index_select(0, labels[i, rows])  # -inf only where impossible
            log_scale[rows] = log_p[rows].max(dim=1).values
            configs[rows] = torch.exp(log_p[rows] - log_scale[rows, None])

    run_blocks(pool, work, list(range(0, s * per, size)))
    return configs, log_scale


def batchbald_batch(mc_probs: torch.Tensor, k: int, num_joint_samples: int, generator: torch.Generator | None = None,
                    chunk_elems: int = 1 << 18, screen: bool = True, screen_min: int = 256,
                    probe: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Positions of k candidates chosen greedily by BatchBALD from mc_probs (N, S, C), and each pick's
    score I(y_A, y_n; w) (the authors' candidate_scores). screen=True (with at least screen_min
    configurations) computes the joint entropy only for the blocks of candidates whose upper bound can
    reach the best score (the same numbers for those, so the same picks; see _screened_entropy)."""
    probs = mc_probs.double()
    n, s, c = probs.shape
    cond = entropy(probs).mean(dim=1)
    exact = torch.ones((1, s), dtype=torch.float64, device=probs.device)
    available = torch.ones(n, dtype=torch.bool, device=probs.device)
    picks: list[int] = []
    scores: list[float] = []
    with BlockPool() as pool:  # the threads take separate blocks of candidates (see common/blocks.py)
        for _ in range(min(k, n)):
            if c ** len(picks) <= num_joint_samples:
                configs = exact
                weights = torch.ones(exact.shape[0], dtype=torch.float64, device=probs.device)
                shift = None
            else:  # importance weights 1 / (M p(y^m_A)) for configurations drawn from p(y_A)
                configs, log_scale = sample_configs(probs, picks, num_joint_samples, generator, pool)
                weights = s / (configs.shape[0] * configs.sum(dim=1))
                shift = log_scale.mean()
            if screen and configs.shape[0] >= screen_min:
                h = _screened_entropy(configs, weights, probs, available, shift, cond, picks, chunk_elems, pool,
                                      probe)
            else:
                h = joint_entropy(configs, weights, probs, chunk_elems, pool)
            if shift is not None:
                h = h - shift
            score = h - cond - cond[picks].sum()
            score[~available] = -float("inf")
            score[torch.isnan(score)] = -float("inf")
            i = int(torch.argmax(score))
            picks.append(i)
            scores.append(float(score[i]))
            available[i] = False
            if c ** len(picks) <= num_joint_samples:
                exact = (exact[:, None, :] * probs[i].T[None, :, :]).reshape(-1, s)
    return np.asarray(picks, dtype=np.int64), np.asarray(scores)


def _screened_entropy(configs: torch.Tensor, weights: torch.Tensor, probs: torch.Tensor, available: torch.Tensor,
                      shift: torch.Tensor | None, cond: torch.Tensor, picks: list[int], chunk_elems: int,
                      pool: BlockPool, probe: int = 32) -> torch.Tensor:
    """joint_entropy for the blocks of candidates that can hold the step's best score, NaN elsewhere.

    Bounds (entropy_bound) at three levels of grouping of the configurations, by their posterior r_m over
    the weight samples: the most likely sample (<= S groups); it and r's largest value in 16 bins; the two
    most likely samples and that value in 8 bins (each level for the rows the previous one kept). At each
    level the blocks of the `probe` largest bounds are computed, and the rows whose bounded score is below
    the best computed score drop out; then every block with a row still in is computed. The bounded score
    goes through the same floating-point operations as the score (monotone), plus a margin far above the
    rounding of either sum, so a skipped row cannot be the arg-max."""
    n, s, c = probs.shape
    m = configs.shape[0]
    step = block_size(m, c, chunk_elems)
    picked = cond[picks].sum()
    rows = candidates = torch.nonzero(available).flatten()
    top = (configs / configs.sum(dim=1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)).topk(
        min(2, s), dim=1)
    first, top_bin = top.indices[:, 0], top.values[:, 0].clamp(0, 1)
    levels = [first, first * 16 + (top_bin * 16).long().clamp(max=15),
              (first * s + top.indices[:, -1]) * 8 + (top_bin * 8).long().clamp(max=7)]

    def bounded_score(ub: torch.Tensor, sel: torch.Tensor) -> torch.Tensor:
        ub = ub + 1e-8 + 1e-10 * ub.abs()
        if shift is not None:
            ub = ub - shift
        return ub - cond[sel] - picked

    def exact(blocks: torch.Tensor) -> None:
        blocks = torch.unique(blocks)
        todo = blocks[torch.isnan(out[blocks * step])].tolist()  # not computed yet
        if todo:
            got = joint_entropy(configs, weights, probs, chunk_elems, pool, todo)
            done = ~torch.isnan(got)
            out[done] = got[done]

    def best() -> torch.Tensor:
        h = out - shift if shift is not None else out
        score = (h - cond - picked)[candidates]
        return score[~torch.isnan(score)].max()

    def bound(groups: torch.Tensor, sel: torch.Tensor) -> torch.Tensor:
        """entropy_bound of the rows sel, in blocks of 128 rows (a (b C, G) temporary: 12 MB at G = 1,200)
        among the threads."""
        got = torch.empty(len(sel), dtype=torch.float64, device=probs.device)
        stats = group_stats(configs, weights, groups)

        def work(starts: list[int]) -> None:
            for start in starts:
                got[start:start + 128] = entropy_bound(configs, weights, probs, groups, sel[start:start + 128], stats)

        run_blocks(pool, work, list(range(0, len(sel), 128)))
        return bounded_score(got, sel)

    out = torch.full((n,), float("nan"), dtype=torch.float64, device=probs.device)
    for groups in levels:
        if len(rows) <= probe:
            break
        ub = bound(groups, rows)
        exact(rows[torch.argsort(ub, descending=True)[:probe]] // step)
        rows = rows[ub >= best()]
    exact(rows // step)
    return out


def batchbald_select(mc_probs: torch.Tensor, k: int, num_joint_samples: int,
                     generator: torch.Generator | None = None) -> np.ndarray:
    """Positions of k candidates chosen greedily by BatchBALD from mc_probs (N, S, C)."""
    return batchbald_batch(mc_probs, k, num_joint_samples, generator)[0]


class Batchbald(Strategy):
    """Greedy batch of maximal joint mutual information with the model weights."""

    def __init__(self, mc_samples: int = 20, num_joint_samples: int = 10000):  # S, M
        self.mc_samples = check_mc_samples(mc_samples)
        if int(num_joint_samples) < 1:
            raise ConfigError(f"strategy.num_joint_samples must be >= 1, got {num_joint_samples}")
        self.num_joint_samples = int(num_joint_samples)

    def check(self, model) -> None:
        require_dropout(model, "batchbald")

    def select(self, ctx: SelectionContext, candidates: np.ndarray, k: int) -> np.ndarray:
        gen = torch_generator(ctx)
        probs = consistent_mc_probs(ctx, candidates, self.mc_samples, "batchbald", gen)
        return candidates[batchbald_select(probs, k, self.num_joint_samples, gen)]
