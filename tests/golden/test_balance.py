"""BALanCe (sequential) against its authors' code, and on hand-made hypotheses whose answer is known.

Reference: zhangrenyuuchicago/BALanCe@92757e924ca8c64a0a6f95dec1762def4fdad692,
Greedy/BALanCe_RepeatedMNIST/mc_eced_gpu.py `delta_batch_mc_eced(model, pool, hamming_pool, device="cpu",
B=1, sampling_index=1, sample_num=K, M=10000, hamming_dis_threshold=tau, class_num=C)`: its returned
`acq_sample` (the first greedy step, i.e. the per-point score) is pinned below; eced.py `delta_eced` gives
the same scores x K (checked, 9e-8). The files ran unmodified; a stand-in for their DataLoader module
(which needs torchvision and image files) fed row indices to a stand-in model returning log(probs): the
first pass over the pool and over the hamming set gave the g half probs[:, :K], the second the g' half
probs[:, K:]; the hamming set was the same 30 rows (al-bench measures the distances on the candidates).
Their code casts to float32, hence the 1e-6 tolerance.

Input: torch.manual_seed(seed); base = 3 randn(N, 1, C); scale = linspace(0.2, 3.0, K).repeat(2);
probs = softmax(base + scale[None, :, None] * randn(N, 2K, C), dim=2) (float32, CPU), N = 30, K = 10, C = 4.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from al_bench.strategies.balance import Balance, annealed_tau, balance_scores, pair_split

# (seed, tau) -> the reference's split_k (hamming distance >= tau) and scores
CASES = [
    ((0, 0.2), [0, 0, 1, 1, 1, 1, 1, 1, 1, 1],
     [0.327514112, 0.557128906, 0.567540228, 0.504086316, 0.451773167, 0.220182866, 0.385212272, 0.598447442,
      0.55118221, 0.64654386, 0.320006371, 0.145826384, 0.517372489, 0.444518864, 0.0428045616, 0.0196305625,
      0.570925832, 0.00480548246, 0.592168927, 0.441132635, 0.50448662, 0.482381046, 0.0414040461, 0.523885608,
      0.16330342, 0.300109565, 0.221837714, 0.470831454, 0.353433281, 0.637337804]),
    ((1, 0.3), [0, 0, 0, 1, 0, 1, 1, 1, 1, 1],
     [0.357489169, 0.300540388, 0.192621902, 0.165708363, 0.294006616, 0.453562558, 0.059861403, 0.5272457,
      0.0171326343, 0.50180006, 0.51952064, 0.29426986, 0.205252856, 0.301701188, 0.340997845, 0.00216129306,
      0.441242605, 0.0612021089, 0.4260692, 0.269147098, 0.428016573, 0.415562719, 0.394088984, 0.0109398318,
      0.440932453, 0.377429247, 0.320580304, 0.19471021, 0.000412117311, 0.429715693]),
]
N, K, C = 30, 10, 4


def make_input(seed, n=N, k=K, c=C):
    torch.manual_seed(seed)
    base = 3 * torch.randn(n, 1, c)
    scale = torch.linspace(0.2, 3.0, k).repeat(2)
    return torch.softmax(base + scale[None, :, None] * torch.randn(n, 2 * k, c), dim=2)


@pytest.mark.parametrize("case,split,scores", CASES)
def test_balance_equals_the_authors_code(case, split, scores):
    seed, tau = case
    probs = make_input(seed)
    got_split = pair_split(probs, tau)
    assert got_split.int().tolist() == split
    got = balance_scores(probs, got_split).numpy()
    np.testing.assert_allclose(got, scores, rtol=0, atol=1e-6)
    assert np.argsort(-got, kind="stable").tolist() == np.argsort(-np.asarray(scores), kind="stable").tolist()


def one_hot_ish(label, c=3, sure=0.98):
    row = torch.full((c,), (1 - sure) / (c - 1), dtype=torch.float64)
    row[label] = sure
    return row


def hand_made():
    """K = 2 pairs, C = 3, 12 candidates: (w_0, w_1 | w'_0, w'_1) = columns (0, 1 | 2, 3).
    Row 0 (X): pair 0 agrees, pair 1 contradicts itself with confidence (cut ~ 1 if pair 1 counted).
    Rows 1-5 (Y): pair 0 disagrees mildly (0.6 / 0.4 vs 0.4 / 0.6: cut 1/3), pair 1 agrees.
    Rows 6-11: every hypothesis says class 2. (A label also cuts a pair when it rules out both members,
    so X still scores through pair 0 for its label 1, below the Y.)
    Pair 0 disagrees on 5/12 rows, pair 1 on 1/12: with tau = 0.2 pair 1 is one equivalence class."""
    rows = [torch.stack([one_hot_ish(0), one_hot_ish(0), one_hot_ish(0), one_hot_ish(1)])]
    mild = [torch.tensor([0.6, 0.4, 0.0]), torch.tensor([0.4, 0.6, 0.0])]
    for _ in range(5):
        rows.append(torch.stack([mild[0].double(), one_hot_ish(2), mild[1].double(), one_hot_ish(2)]))
    for _ in range(6):
        rows.append(torch.stack([one_hot_ish(2)] * 4))
    return torch.stack(rows)


def test_class_splitting_points_rank_above_a_disagreement_inside_a_class():
    """With tau = 0.2, pair 1 (disagreeing on 1/12 < tau) is one class: X's contradiction inside it cuts
    nothing and the five Y (cutting the split pair 0) come first; with tau = 0 (no classes) X wins."""
    probs = hand_made()
    split = pair_split(probs, 0.2)
    assert split.tolist() == [1.0, 0.0]
    scores = balance_scores(probs, split)
    assert sorted(torch.argsort(scores, descending=True)[:5].tolist()) == [1, 2, 3, 4, 5]
    assert scores[0] < scores[1:6].min() and scores[6:].max() < scores[0]
    everything = balance_scores(probs, pair_split(probs, 0.0))  # no equivalence classes
    assert int(torch.argmax(everything)) == 0


def test_all_hypotheses_agreeing_score_zero():
    """All 2K hypotheses equal (soft, not one-hot): every pair is one class at any tau > 0, so nothing
    is cut; at tau = 0 the pairs count and the aleatoric spread alone gives positive scores."""
    probs = make_input(3)[:, :1].expand(N, 2 * K, C).contiguous()
    split = pair_split(probs, 1e-9)
    assert split.sum() == 0
    assert torch.equal(balance_scores(probs, split), torch.zeros(N, dtype=torch.float64))
    assert (balance_scores(probs, pair_split(probs, 0.0)) > 0).all()


def test_pair_split_is_the_share_of_differing_labels():
    """split_k = [share of rows whose arg-max labels of w_k and w'_k differ >= tau], per pair (k, K + k)."""
    probs = hand_made()
    assert pair_split(probs, 5 / 12).tolist() == [1.0, 0.0]
    assert pair_split(probs, 5 / 12 + 1e-9).tolist() == [0.0, 0.0]
    assert pair_split(probs, 1 / 12).tolist() == [1.0, 1.0]


def test_tau_is_annealed_from_the_accuracy():
    """tau = anneal_ratio (1 - accuracy of the model without dropout on the labeled set); a fixed tau wins."""
    labeled = np.array([0, 1, 2, 3])
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.6, 0.4]], dtype=torch.float64)
    pool = SimpleNamespace(train_y=torch.tensor([0, 1, 1, 0]))
    ctx = SimpleNamespace(labeled=labeled, pool=pool, predict=lambda idx: {"probs": probs[idx]})
    assert Balance().threshold(ctx) == pytest.approx(0.25 * (1 - 0.75))
    assert Balance(anneal_ratio=0.5).threshold(ctx) == pytest.approx(annealed_tau(0.75, 0.5)) == 0.125
    assert Balance(tau=0.05).threshold(ctx) == 0.05
    test_probs = torch.tensor([[0.9, 0.1], [0.2, 0.8]], dtype=torch.float64)  # one of two right
    ctx.pool = SimpleNamespace(train_y=pool.train_y, test_x=torch.zeros(2, 1), test_y=torch.tensor([0, 0]))
    ctx.predict_images = lambda images: {"probs": test_probs}
    assert Balance(accuracy="test").threshold(ctx) == pytest.approx(0.25 * 0.5)


def test_shared_masks_equal_the_common_mc_dropout_pass():
    """The one-product pass over a linear head gives the probabilities of S head passes (same masks)."""
    from al_bench.strategies.common.mc_dropout import consistent_mc_probs, per_mask_probs

    torch.manual_seed(0)
    emb = torch.randn(50, 16)
    model = SimpleNamespace(dropout=0.3, fc=torch.nn.Linear(16, 5))
    ctx = SimpleNamespace(model=model, predict=lambda idx: {"embedding": emb[idx]})
    idx = np.arange(50)
    masks = (torch.rand((8, 16), generator=torch.Generator().manual_seed(3)) >= 0.3).float() / 0.7
    want = per_mask_probs(model.fc, emb, masks)  # the same draws consistent_mc_probs makes
    got = consistent_mc_probs(ctx, idx, 8, "balance", torch.Generator().manual_seed(3), chunk=7)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


def test_balance_refuses_a_model_without_dropout():
    from al_bench import ConfigError

    with pytest.raises(ConfigError, match="dropout"):
        Balance().check(SimpleNamespace(dropout=0.0))
