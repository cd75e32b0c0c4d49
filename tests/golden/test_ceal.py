"""Golden test: CEAL against DeepAL+ (no authors' code of CEAL is public).

Reference: SineZHAN/deepALplus @ 93c2884e40e9a0b55cd2cf9527d3d1ff9d7e0c20, query_strategies/ceal.py
`CEALSampling(dataset, net, args_input(delta=5e-5), {}).query(4, t, option)` for t = 1, 2, 3 in turn (its
threshold decays in place by its hard-coded 0.033e-5 t), option EntropySampling, LeastConfidence and
MarginSampling, each round followed by `update(picks)`; the dataset DeepAL+'s data.Data over 52 rows whose
"images" are their pool indices (so the returned training set names the pseudo-labelled rows), rows 0..5
labeled, the true labels i mod 4; the net returning `probs_input()` (float64) from predict_prob and its
argmax from predict; faiss stubbed (imported, unused).
`probs_input()`: 24 rows softmax(1.5 randn) (uncertain), 20 rows with one logit 13.68 + 0.003 k (entropy
within 2.2e-7 .. -2.3e-6 of 5e-5, every threshold at least 3e-8 from a row's entropy), 8 rows with one logit
18 + k (sure). Pinned: the ordered picks of each criterion, each round's threshold, the pseudo-labelled rows
and their labels. Measured: picks identical in order, pseudo-labelled rows and labels identical, thresholds
within 1e-18.
"""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from al_bench.strategies.base import SelectionContext
from al_bench.strategies.ceal import CEAL
from al_bench.training.plugin import TrainContext

N = 52
PICKS = {  # DeepAL+ option -> al-bench criterion: the picks of rounds 1, 2, 3
    "entropy": [[22, 12, 14, 19], [15, 10, 8, 9], [6, 7, 13, 21]],
    "least_confidence": [[19, 15, 10, 22], [8, 12, 9, 13], [17, 14, 6, 7]],
    "margin": [[15, 19, 10, 17], [8, 12, 11, 13], [9, 22, 6, 14]],
}
DELTAS = [4.967e-05, 4.901e-05, 4.802e-05]
PSEUDO = [list(range(30, 52)), list(range(35, 52)), list(range(42, 52))]  # the same for every criterion
LABELS = [[2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 1, 2, 3, 0, 1, 2, 3, 0],
          [3, 0, 1, 2, 3, 0, 1, 2, 3, 1, 2, 3, 0, 1, 2, 3, 0],
          [2, 3, 1, 2, 3, 0, 1, 2, 3, 0]]


def probs_input():
    g = torch.Generator().manual_seed(3)
    moderate = 1.5 * torch.randn(24, 4, generator=g, dtype=torch.float64)
    near = torch.zeros(20, 4, dtype=torch.float64)
    near[torch.arange(20), torch.arange(20) % 4] = 13.68 + 0.003 * torch.arange(20, dtype=torch.float64)
    sure = torch.zeros(8, 4, dtype=torch.float64)
    sure[torch.arange(8), (torch.arange(8) + 1) % 4] = 18.0 + torch.arange(8, dtype=torch.float64)
    return torch.softmax(torch.cat([moderate, near, sure]), dim=1)


def selection_context(probs, labeled):
    def predictor(indices, mc_samples=0):
        return {"probs": probs[torch.as_tensor(np.asarray(indices))]}
    return SelectionContext(model=None, pool=None, labeled=np.asarray(labeled), rng=np.random.default_rng(0),
                            device=torch.device("cpu"), predictor=predictor)


def train_context(labeled, cycle):
    pool = SimpleNamespace(train_x=torch.zeros(N, 1), train_y=torch.arange(N) % 4, n_train=N)
    return TrainContext(pool=pool, labeled=np.asarray(labeled), settings=None, cycle=cycle, generator=None,
                        predict=None)


def rounds(criterion, **options):
    """Three cycles as the loop runs them: picks, then at the next cycle's start the confident rows that the
    selecting model predicted at its training's end and that are still unlabeled."""
    probs, labeled = probs_input(), list(range(6))
    strategy = CEAL(criterion=criterion, **options)
    out = []
    for t in (1, 2, 3):
        unlabeled = np.setdiff1d(np.arange(N), labeled)
        strategy.plugin.remember(unlabeled, probs[unlabeled])  # what after_epoch keeps at the last epoch
        picks = strategy.select(selection_context(probs, labeled), unlabeled, 4).tolist()
        labeled = labeled + picks
        idx, labels = strategy.plugin.training_set(train_context(labeled, t))
        out.append((picks, idx, labels, strategy.plugin.last["ceal_delta"]))
    return out


@pytest.mark.parametrize("criterion", ["entropy", "least_confidence", "margin"])
def test_picks_and_pseudo_labels_equal_deepalplus(criterion):
    deepal = dict(delta=5e-5, decay_rate=0.033e-5, decay="cumulative")
    labeled = list(range(6))
    for t, (picks, idx, labels, delta) in enumerate(rounds(criterion, **deepal)):
        assert picks == PICKS[criterion][t]
        labeled += picks
        assert delta == pytest.approx(DELTAS[t], abs=1e-18)
        assert idx[:len(labeled)].tolist() == labeled and labels[:len(labeled)].tolist() == [i % 4 for i in labeled]
        assert idx[len(labeled):].tolist() == PSEUDO[t] and labels[len(labeled):].tolist() == LABELS[t]

