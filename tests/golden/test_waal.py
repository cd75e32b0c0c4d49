"""Golden test: WAAL against the authors' code, cjshui/WAAL @ 7104bc0113e7e73218a6d287951642a76d8005df
(query_strategies/wasserstein_adversarial.py), run on CPU (Tensor.cuda patched to the identity):

1. `gradient_penalty(critic, h_s, h_t)` on `penalty_input()` (h_s, h_t (4, 6), the critic
   Linear(6, 5)-ReLU-Linear(5, 1)-Sigmoid built after torch.manual_seed(0)), its torch.rand fed with u: GP.
2. `WAAL(X, Y, idx_lb, fea, clf, dis, handler, None, args).train(alpha=0.5, total_epoch=1)` on `step_input()`:
   10 images (3, 2, 2), labeled {3, 8}, so gamma = |L|/|U| = 2/8 and the redundant trick gives 8 pairs
   (labeled i mod 2 beside unlabeled i), batch 4 (two steps), SGD lr 0.1 momentum 0.3; fea = ReLU(Linear(12, 6))
   and clf = Linear(6, 3) (`Tiny` below, built after torch.manual_seed(1)), dis = the critic above built after
   torch.manual_seed(2) (no dropout); the DataLoader's shuffle off, the four torch.rand draws of the penalty
   fed with U[0..3]; a handler with the authors' pairing (index mod length) on tensors. Pinned: the weights
   after the two steps, the critic step's penalty and loss (-alpha W - 2 alpha GP) and the backbone step's W
   (from the critic's outputs recorded by a forward hook).
3. `WAAL.query(40)` with predict_prob / pred_dis_score returning `query_input()` (softmax of 2 randn (40, 5),
   sigmoid of randn (40,)), selection = 10: the ordered picks, and total_score = 0.5 L2_upper + 0.5 L1_upper
   - 10 D, whose negative is al-bench's score.
Measured: weights within 5e-10, losses within 4e-9, GP exact, scores within 2e-6 (al-bench takes log p from the logits
in float64, the authors log of float32 probabilities); picks identical over all 40 (smallest score gap 0.01).
"""

import contextlib

import numpy as np
import pytest
import torch
from torch import nn

from al_bench.models.base import Backbone
from al_bench.models.critic import Critic
from al_bench.strategies.base import SelectionContext
from al_bench.strategies.waal import WAAL, gradient_penalty
from al_bench.training.plugin import Step

TRAIN_GPS = [0.959975779, 0.959958553, 0.959109128, 0.955067813]
CRITIC_LOSSES = [-1.13375354, -1.12506986]
WD_BACKBONE = [0.347565085, 0.340055585]
LIN_W = [0.174200311, -0.145122066, -0.0780995339, 0.119136803, -0.30878368, 0.207884714,
    -0.0155177321, 0.118533365, 0.0333550908, -0.0419028401, 0.0933995023, 0.0209290124,
    0.0930186883, -0.103576139, -0.00919114146, -0.0171382874, 0.0604160354, -0.019208042,
    0.230650231, 0.104898438, -0.10435044, -0.171439484, -0.0551603138, -0.128126338,
    -0.120355248, 0.0490062051, 0.21665132, 0.123321533, -0.264532, 0.166548446,
    0.0509552993, 0.302228808, 0.179328844, -0.270034552, -0.254993737, -0.155381829,
    0.280487388, -0.0667242855, 0.100466058, -0.151009411, 0.243872076, -0.0858508795,
    0.262613922, -0.0260013752, -0.159548327, 0.141181126, -0.139212668, 0.0922081098,
    -0.0680611506, -0.0521601103, -0.303356022, -0.115718506, 0.148714572, -0.065132454,
    0.302439809, 0.21622166, -0.00626442954, -0.187981188, 0.162806332, 0.0991392359,
    -0.174369037, 0.168723181, 0.150933489, 0.281453788, -0.164907575, -0.0471068621,
    0.00381583115, 0.0298256557, -0.210302085, -0.198456228, 0.141600221, -0.0586988144]
FC_W = [-0.406505376, 0.188382789, -0.294527531, -0.31232655, 0.00326995878, -0.092112802,
    0.291795701, -0.205344528, -0.366610855, 0.305162877, -0.0362860896, 0.204776943,
    0.107645594, -0.320112348, 0.0931805298, 0.0943069085, -0.276038498, -0.146312892]
FC_B = [0.0619919486, 0.0946447551, -0.117965117]
DIS_W0 = [0.0936481357, -0.0971525982, 0.1119534, -0.0208524428, 0.174398646, 0.0971928015,
    -0.0469218902, -0.330053538, 0.0932089686, -0.36144045, 0.0536552593, 0.0271313116,
    -0.0874229521, 0.323344469, 0.0291980077, 0.16641067, 0.170127377, -0.239575252,
    -0.155279756, 0.385469228, -0.397230119, -0.0290730484, -0.0335370302, 0.288579553,
    -0.0384790637, 0.106490992, -0.0199180804, -0.2283528, -0.231142133, -0.197836757]
DIS_W2 = [-0.204998136, 0.196543008, -0.141179726, -0.0460610949, -0.243745998]
DIS_B2 = [-0.119877115]
TOTAL = [-0.777758598, -0.121465683, 10.9490137, 12.6216221, 8.0059967, 7.7336297,
    8.53541946, 2.15126133, 14.7026958, 2.12946415, 2.35918427, 8.05442142,
    7.58846712, 7.39901257, 10.6710758, 6.81924009, 1.20246649, 4.34737635,
    8.3003912, 8.89260674, 14.1805573, 10.0793419, 4.30708361, 12.7106056,
    9.1412878, 5.17300367, 3.01396132, 4.33736563, 4.00963688, 1.61203098,
    9.56002235, 1.92461586, 6.62930679, 7.82126093, 6.77161503, 1.27265358,
    9.09721661, 10.5573425, 0.928534031, 1.01269531]
GP = 0.8994961380958557
PICKS = [0, 1, 38, 39, 16, 35, 29, 31, 9, 7, 10, 26, 28, 22, 27, 17, 25, 32, 34, 15,
         13, 12, 5, 33, 4, 11, 18, 6, 19, 36, 24, 30, 21, 37, 14, 2, 3, 23, 20, 8]


class Tiny(Backbone):
    stage_channels, embed_dim = (6,), 6

    def __init__(self):
        super().__init__(0.0)
        torch.manual_seed(1)
        self.lin, self.fc = nn.Linear(12, 6), nn.Linear(6, 3)

    def features(self, x):
        z = torch.relu(self.lin(x.flatten(1)))
        return [z], z


def critic(seed):
    torch.manual_seed(seed)
    return Critic(6, [5], dropout=0.0)


def penalty_input():
    g = torch.Generator().manual_seed(5)
    h_s = torch.randn(4, 6, generator=g)
    return h_s, torch.randn(4, 6, generator=g) + 1.0, torch.rand(4, 1, generator=g)


def step_input():
    g = torch.Generator().manual_seed(7)
    x = torch.randn(10, 3, 2, 2, generator=g)
    y = torch.tensor([0, 2, 1, 1, 0, 2, 1, 0, 2, 1])
    return x, y, torch.rand(4, 4, 1, generator=g)


def query_input(n=40, c=5):
    g = torch.Generator().manual_seed(11)
    logits = 2.0 * torch.randn(n, c, generator=g)
    return logits, torch.sigmoid(torch.randn(n, generator=g))


def train_two_steps(alpha=0.5, **options):
    """The authors' two steps through WAAL's plugin: the pairs of the redundant trick, their u draws."""
    x, y, u = step_input()
    model, strategy = Tiny(), WAAL(alpha=alpha, critic_hidden=[5], critic_dropout=0.0, **options)
    plugin = strategy.plugin
    plugin.critic, plugin.gamma_ratio = critic(2), 2 / 8
    draws = iter([u[1], u[3]])  # u[0], u[2]: the authors' penalty in the backbone's loss, without gradient
    plugin.interpolation = lambda n, device: next(draws)
    sgd = dict(lr=0.1, momentum=0.3)
    opts = {"backbone": torch.optim.SGD(model.parameters(), **sgd),
            "critic": torch.optim.SGD(plugin.critic.parameters(), **sgd)}
    labeled, unlabeled = np.array([3, 8]), np.array([0, 1, 2, 4, 5, 6, 7, 9])
    rows = np.resize(labeled, 8)  # what plugin.training_set gives: row i is labeled[i mod |L|]
    logs = []
    for b in (slice(0, 4), slice(4, 8)):
        step = Step(model=model, forward=model, x=x[rows[b]], y=y[rows[b]], index=torch.as_tensor(rows[b]), epoch=0,
                    optimizers=opts, scaler=torch.amp.GradScaler("cpu", enabled=False),
                    autocast=contextlib.nullcontext, unlabeled_x=x[unlabeled[b]])
        plugin.update(step)
        logs.append({k: float(v) for k, v in step.logs.items()})
    return model, plugin.critic, logs


def test_gradient_penalty_equals_the_authors():
    h_s, h_t, u = penalty_input()
    assert float(gradient_penalty(critic(0), h_s, h_t, u).detach()) == pytest.approx(GP, abs=1e-7)


def test_two_training_steps_equal_the_authors():
    model, crit, logs = train_two_steps()
    assert model.lin.weight.flatten().tolist() == pytest.approx(LIN_W, abs=1e-7)
    assert model.fc.weight.flatten().tolist() == pytest.approx(FC_W, abs=1e-7)
    assert model.fc.bias.tolist() == pytest.approx(FC_B, abs=1e-7)
    assert crit.net[0].weight.flatten().tolist() == pytest.approx(DIS_W0, abs=1e-7)
    assert crit.net[2].weight.flatten().tolist() == pytest.approx(DIS_W2, abs=1e-7)
    assert crit.net[2].bias.tolist() == pytest.approx(DIS_B2, abs=1e-7)
    assert [s["waal_gp"] for s in logs] == pytest.approx(TRAIN_GPS[1::2], abs=1e-6)
    assert [s["waal_critic_loss"] for s in logs] == pytest.approx(CRITIC_LOSSES, abs=1e-6)
    assert [s["waal_wd"] for s in logs] == pytest.approx(WD_BACKBONE, abs=1e-6)


def test_the_penalty_sign_option_changes_only_the_critic():
    model, crit, _ = train_two_steps(penalty_sign="wgan_gp")
    assert model.fc.weight.flatten().tolist() == pytest.approx(FC_W, abs=1e-7)  # its first step is the same
    assert crit.net[2].weight.flatten().tolist() != pytest.approx(DIS_W2, abs=1e-4)


def context(logits, critic_scores):
    def predictor(indices, mc_samples=0):
        idx = torch.as_tensor(np.asarray(indices))
        return {"logits": logits[idx], "probs": torch.softmax(logits[idx], 1), "critic": critic_scores[idx]}
    return SelectionContext(model=None, pool=None, labeled=np.zeros(0, dtype=np.int64),
                            rng=np.random.default_rng(0), device=torch.device("cpu"), predictor=predictor)


def test_scores_and_picks_equal_the_authors_query():
    logits, d = query_input()
    scores = WAAL().score({"logits": logits, "critic": d})
    assert (-scores).tolist() == pytest.approx(TOTAL, abs=2e-5)
    assert WAAL().select(context(logits, d), np.arange(40), 40).tolist() == PICKS
