"""Golden test: temporal / cyclic output discrepancy against the authors' code.

Method: score = ||softmax f(x; w) - softmax f(x; w')||^2 / 2 with w' the EMA of the weights (`tod`) or the
previous cycle's model (`cod`); training adds the unsupervised consistency loss (a second head g and the EMA
teacher, weight 0.02). References: Huang et al., ICCV 2021, arXiv:2107.14153.

Reference code: siyuhuang/TOD at commit 883494ba5a775144bf047d7848cfb69fe8c6bf4d, run outside this
repository (torch 2.14.1, CPU, one thread) by a harness that imported main_TOD.py and called, unchanged,
`train_epoch` (with its globals AUXILIARY="TOD", WEIGHT=0.02, iters=0; it calls `update_ema_variables` with
alpha 0.999) and `get_uncertainty` (SAMPLING="TOD"); `.cuda()` was made a no-op. The authors' ResNet-18
returns (scores, cons_scores, features, stages); the harness gave their functions al-bench's SmallCNN
(3 classes, 3 channels, width 4) wrapped to return (logits, head(embedding), embedding, stages), with:
  - student: SmallCNN from torch.manual_seed(0); head g: nn.Linear(16, 3) from manual_seed(2);
  - EMA: SmallCNN from manual_seed(1) (the authors' EMA is an independently initialised network),
    parameters detached as in their main;
  - optimiser: SGD(lr=0.1, momentum=0.9, weight_decay=5e-4) over student + head (config/cifar10.py);
  - batches: after manual_seed(3): x1, x2, u = randn(4, 3, 8, 8) x 3; labels Y1, Y2 below;
    dataloaders {"train": [(x1, Y1), (x2, Y2)], "extra": [(u, _)]} (their extra loader is re-iterated per
    step, so both steps see u): one call of train_epoch = two steps; the loss of each step was read at
    its .backward();
  - scores: 6 uint8 images randint(0, 256, (6, 8, 8, 3)) after manual_seed(4), normalised with mean
    MEAN and std STD, scored by get_uncertainty with models {"backbone": trained student, "cod": w'} for
    w' = the student before training (COD: the previous cycle's model of a warm-started run) and for
    w' = the EMA after the two steps (TOD against the EMA).
Agreement: bit-identical (max abs difference 0 on both losses and all 12 scores); the tolerances below
(1e-6 on losses, 2e-7 on scores of order 1e-3) leave room for other CPUs' rounding only. Key-term ablations (tried, each fails a test
here): scoring against the model itself gives zero scores; dropping the consistency terms, or the EMA
update, moves the pinned losses and scores.
"""

import copy
from contextlib import nullcontext
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from al_bench.models.small_cnn import SmallCNN
from al_bench.strategies.cod import CyclicOutputDiscrepancy
from al_bench.strategies.tod import output_discrepancy
from al_bench.training import TrainContext, TrainSettings, predict
from al_bench.training.plugin import Step

REFERENCE = "siyuhuang/TOD@883494ba5a775144bf047d7848cfb69fe8c6bf4d"
MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
Y1, Y2 = torch.tensor([0, 1, 2, 0]), torch.tensor([2, 1, 0, 1])
# the authors' code's outputs (harness above)
LOSSES = [1.4906229972839355, 1.2177109718322754]
COD = [0.0025349874049425125, 0.0034829098731279373, 0.0022511170245707035, 0.0006540348986163735,
       0.00282571860589087, 0.003409754019230604]
TOD_EMA = [0.002079152734950185, 0.0016040122136473656, 0.0023727305233478546, 0.0014184212777763605,
           0.002945255022495985, 0.0012907593045383692]


def fixed():
    torch.manual_seed(0)
    net = SmallCNN(num_classes=3, in_channels=3, width=4)
    torch.manual_seed(1)
    ema = SmallCNN(num_classes=3, in_channels=3, width=4)
    torch.manual_seed(2)
    head = nn.Linear(16, 3)
    torch.manual_seed(3)
    x1, x2, u = torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8)
    torch.manual_seed(4)
    imgs = torch.randint(0, 256, (6, 8, 8, 3), dtype=torch.uint8)
    return net, ema, head, [(x1, Y1), (x2, Y2)], u, imgs


def sgd(params):
    return torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=5e-4)


def trained_plugin(**options):
    """A warm-started cycle-1 `cod` plugin (reference = the model entering the cycle) after the two steps."""
    net, ema, head, batches, u, imgs = fixed()
    plugin = CyclicOutputDiscrepancy(**options).train_plugin()
    settings = TrainSettings(batch_size=4, precision="fp32", channels_last=False)
    ctx = TrainContext(SimpleNamespace(train_x=torch.zeros(1)), np.arange(4), settings, 1, torch.Generator(), None)
    plugin.setup(net, ctx, warm_start=True)
    if plugin.ema is not None:
        plugin.ema.load_state_dict(ema.state_dict())
    if plugin.cons_head is not None:
        plugin.cons_head.load_state_dict(head.state_dict())
    optimizers = {"backbone": sgd(net.parameters()),
                  **({"cons_head": sgd(plugin.cons_head.parameters())} if plugin.cons_head is not None else {})}
    net.train()
    for module in plugin.modules().values():
        module.train()
    losses = []
    for x, y in batches:
        step = Step(model=net, forward=net, x=x, y=y, index=torch.arange(4), epoch=0, optimizers=optimizers,
                    scaler=torch.amp.GradScaler("cpu", enabled=False), autocast=nullcontext, unlabeled_x=u)
        target = plugin.update(step)
        plugin.after_step(step)
        losses.append(float(target.mean() + step.logs.get("plugin_loss", 0.0)))
    return plugin, net, losses, imgs


def scores(plugin, net, imgs, reference):
    plugin.reference = reference
    return predict(net, imgs, MEAN, STD, 8, plugin, precision="fp32", channels_last=False)["tod"]


def test_consistency_loss_and_ema_match_the_authors_train_epoch():
    _, _, losses, _ = trained_plugin()
    assert losses == pytest.approx(LOSSES, abs=1e-6), REFERENCE


def test_cod_and_ema_scores_match_the_authors_get_uncertainty():
    plugin, net, _, imgs = trained_plugin()
    assert scores(plugin, net, imgs, "previous_cycle").tolist() == pytest.approx(COD, abs=2e-7), REFERENCE
    assert scores(plugin, net, imgs, "ema").tolist() == pytest.approx(TOD_EMA, abs=2e-7), REFERENCE
    # the picks: the authors' ascending argsort, last k
    assert np.argsort(COD)[::-1][:3].tolist() == [1, 5, 4]


def test_without_the_consistency_loss_training_and_scores_differ():
    # the key term of the semi-supervised part: without it the same steps give other losses and scores
    plugin, net, losses, imgs = trained_plugin(consistency=False)
    assert abs(losses[0] - LOSSES[0]) > 1e-3
    assert (scores(plugin, net, imgs, "previous_cycle") - torch.tensor(COD)).abs().max() > 1e-5


def test_the_score_against_the_model_itself_is_zero_and_not_the_pinned_one():
    plugin, net, _, imgs = trained_plugin()
    plugin.previous = copy.deepcopy(net)
    assert torch.all(scores(plugin, net, imgs, "previous_cycle") == 0)
    logits = torch.tensor([[2.0, 0.0, -1.0]])
    assert float(output_discrepancy(logits, logits)) == 0.0
