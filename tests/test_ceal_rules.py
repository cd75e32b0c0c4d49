"""CEAL (arXiv:1701.03551) on hand-made inputs: the threshold schedule, which rows get pseudo-labels, the
three uncertainty criteria, and a run whose pseudo-labels must never reach the labeled set."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import SMOKE, run_al

from al_bench.strategies.base import SelectionContext
from al_bench.strategies.ceal import CEAL, threshold
from al_bench.training.plugin import TrainContext


def test_threshold_schedules():
    # paper: delta_t = delta_0 - dr t; DeepAL+: delta_t = delta_{t-1} - dr t = delta_0 - dr t (t + 1) / 2
    assert threshold(0.005, 0.00033, 0) == 0.005
    assert threshold(0.005, 0.00033, 3) == pytest.approx(0.005 - 0.00099, abs=1e-15)
    assert threshold(0.005, 0.00033, 3, "cumulative") == pytest.approx(0.005 - 0.00198, abs=1e-15)


# rows 0..3 labeled; 4: sure of class 0; 5: a tie between two classes; 6: entropy 0.0043003 (class 1);
# 7: sure of class 2
PROBS = torch.tensor([[1.0, 0.0, 0.0]] * 4 + [[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.0005, 0.9995, 0.0],
                                                [0.0, 0.0, 1.0]], dtype=torch.float64)


def context(labeled, cycle):
    pool = SimpleNamespace(train_x=torch.zeros(8, 1), train_y=torch.tensor([0, 1, 2, 0, 1, 1, 0, 2]), n_train=8)
    return TrainContext(pool=pool, labeled=np.asarray(labeled), settings=None, cycle=cycle, generator=None,
                        predict=lambda rows: {"probs": PROBS[torch.as_tensor(rows)]})


def test_pseudo_labels_are_the_confident_unlabeled_rows_with_their_predicted_class():
    h6 = -(0.0005 * math.log(0.0005) + 0.9995 * math.log(0.9995))
    assert h6 == pytest.approx(0.0043003, abs=1e-7)
    plugin = CEAL().plugin  # paper values: delta_t = 0.005 - 0.00033 t
    plugin.remember(np.arange(4, 8), PROBS[4:])
    labeled = [0, 1, 2, 3]
    # t = 1, 2: 0.00467, 0.00434 > H(row 6); t = 3: 0.00401 < H(row 6)
    for t, want in ((1, [4, 6, 7]), (2, [4, 6, 7]), (3, [4, 7])):
        idx, labels = plugin.training_set(context(labeled, t))
        assert idx.tolist() == labeled + want
        assert labels.tolist() == [0, 1, 2, 0] + [{4: 0, 6: 1, 7: 2}[i] for i in want]  # true, then predicted
    assert plugin.last["ceal_pseudo"] == 2 and plugin.last["ceal_pseudo_acc"] == 0.5  # row 4 is truly class 1
    # a row labeled since the predictions were made is not pseudo-labelled
    idx, _ = plugin.training_set(context(labeled + [7], 1))
    assert idx.tolist() == labeled + [7, 4, 6]
    # cycle 0 trains on the labeled set
    assert plugin.training_set(context(labeled, 0)) is None


def test_without_predictions_of_the_previous_model():
    plugin = CEAL().plugin
    plugin.warm_start = True  # the model at the start of training is the one that selected: predict now
    assert plugin.training_set(context([0, 1, 2, 3], 1))[0].tolist() == [0, 1, 2, 3, 4, 6, 7]
    plugin = CEAL().plugin
    plugin.warm_start = False  # a fresh model: no pseudo-labels rather than a random network's guesses
    assert plugin.training_set(context([0, 1, 2, 3], 1)) is None


def test_the_three_criteria():
    # a: a tie of two classes (margin 0, entropy ln 2, 1 - max 0.5); b: flatter (1.089 nats, 1 - max 0.6)
    probs = torch.tensor([[0.5, 0.5, 0.0], [0.4, 0.3, 0.3], [0.9, 0.05, 0.05]], dtype=torch.float64)
    ctx = SelectionContext(model=None, pool=None, labeled=np.zeros(0, dtype=np.int64),
                           rng=np.random.default_rng(0), device=torch.device("cpu"),
                           predictor=lambda idx, mc_samples=0: {"probs": probs[torch.as_tensor(idx)]})
    cands = np.array([0, 1, 2])
    assert CEAL().select(ctx, cands, 3).tolist() == [1, 0, 2]
    assert CEAL(criterion="least_confidence").select(ctx, cands, 3).tolist() == [1, 0, 2]
    assert CEAL(criterion="margin").select(ctx, cands, 3).tolist() == [0, 1, 2]


def test_pseudo_labels_never_reach_the_labeled_files(tmp_path):
    # delta above ln 4 nats: every image still unlabeled in cycle 1 (512 - 100) is pseudo-labelled
    metrics = run_al(SMOKE + ["strategy=ceal", "strategy.delta=1.4"], tmp_path)
    assert [m["n_labeled"] for m in metrics] == [50, 100]
    assert metrics[1]["ceal_pseudo"] == 412 and "ceal_pseudo" not in metrics[0]
    first, second = (np.load(tmp_path / "labeled" / f"cycle_0{c}.npy") for c in (0, 1))
    assert len(first) == 50 and len(second) == 100 and len(np.unique(second)) == 100
    assert np.array_equal(second[:50], first)
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [m["n_labeled"] for m in lines] == [50, 100]
