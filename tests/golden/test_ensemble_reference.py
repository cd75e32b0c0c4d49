"""Hand-checked values for the deep-ensemble scores (Beluch et al., CVPR 2018).

There is no authors' code to run: the paper's CVF open-access page lists pdf, supplement and bibtex but
no code, and a search of public GitHub repositories by the first author's name and by the title found
none. So the three scores are pinned on four candidates whose M = 3 member distributions over C = 3
classes are chosen so that the right answer is known by hand, in nats:
  c0  three identical members (0.6, 0.3, 0.1): entropy H(0.6, 0.3, 0.1) = 0.897946, BALD 0, votes 0;
  c1  three confident members that contradict each other: entropy = BALD = log 3 = 1.098612, votes 2/3;
  c2  (0.7, 0.2, 0.1), (0.2, 0.7, 0.1), (0.7, 0.2, 0.1): mean (8/15, 11/30, 1/10), entropy 0.933394,
      BALD 0.933394 - H(0.7, 0.2, 0.1) = 0.131575, votes 1 - 2/3 = 1/3;
  c3  three similar, flat members around (0.4, 0.35, 0.25): entropy 1.080528, BALD 0.000715, votes 0.
Entropy ranks c1, c3, c2, c0 (c3's members agree on a flat prediction); BALD ranks c1, c2, c3, c0 (it
discounts what every member is unsure about): the picks of the two differ at k = 2.
Key-term ablation (tried): members replaced by copies of member 0 make BALD and the votes zero for every
candidate, and the entropy of member 0 alone instead of the members' mean moves the entropy values; both fail
the pinned values below.
"""

import math

import numpy as np
import pytest
import torch

from al_bench.strategies.base import SelectionContext
from al_bench.strategies.ensemble_bald import EnsembleBald
from al_bench.strategies.ensemble_entropy import EnsembleEntropy, ensemble_entropy
from al_bench.strategies.ensemble_var_ratio import EnsembleVarRatio

MEMBER_PROBS = torch.tensor([
    [[0.6, 0.3, 0.1], [0.6, 0.3, 0.1], [0.6, 0.3, 0.1]],
    [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
    [[0.7, 0.2, 0.1], [0.2, 0.7, 0.1], [0.7, 0.2, 0.1]],
    [[0.40, 0.35, 0.25], [0.42, 0.33, 0.25], [0.38, 0.37, 0.25]],
], dtype=torch.float64)
ENTROPY = [0.8979457248567798, math.log(3), 0.9333939009080586, 1.080527626604172]
BALD = [0.0, math.log(3), 0.1315753483647214, 0.0007146323345348371]
VOTES = [0.0, 2 / 3, 1 / 3, 0.0]


def ctx_for(member_probs, seed=0):
    def predictor(indices, mc_samples=0):
        return {"member_probs": member_probs[torch.as_tensor(np.asarray(indices))]}

    return SelectionContext(model=None, pool=None, labeled=np.array([], dtype=np.int64),
                            rng=np.random.default_rng(seed), device=torch.device("cpu"), predictor=predictor)


@pytest.mark.parametrize("cls, want", [(EnsembleEntropy, ENTROPY), (EnsembleBald, BALD), (EnsembleVarRatio, VOTES)])
def test_scores_equal_the_hand_computed_values(cls, want):
    got = cls(members=3).score({"member_probs": MEMBER_PROBS})
    assert got.tolist() == pytest.approx(want, abs=1e-12)


def test_picks_follow_the_hand_computed_order():
    cands = np.arange(4)
    assert EnsembleEntropy(members=3).select(ctx_for(MEMBER_PROBS), cands, 4).tolist() == [1, 3, 2, 0]
    assert EnsembleBald(members=3).select(ctx_for(MEMBER_PROBS), cands, 4).tolist() == [1, 2, 3, 0]
    assert EnsembleVarRatio(members=3).select(ctx_for(MEMBER_PROBS), cands, 2).tolist() == [1, 2]
    # c0 and c3 tie on the votes: the selection's seeded generator orders them, each way for some seed
    orders = {tuple(EnsembleVarRatio(members=3).select(ctx_for(MEMBER_PROBS, s), cands, 4)) for s in range(20)}
    assert orders == {(1, 2, 0, 3), (1, 2, 3, 0)}


def test_an_ensemble_of_identical_members_has_no_disagreement():
    identical = MEMBER_PROBS[:, :1].expand(-1, 3, -1)
    assert torch.all(EnsembleBald(members=3).score({"member_probs": identical}).abs() < 1e-12)
    assert torch.all(EnsembleVarRatio(members=3).score({"member_probs": identical}) == 0)
    # the entropy of identical members is member 0's own entropy, not the ensemble's
    assert ensemble_entropy(identical).tolist() != pytest.approx(ENTROPY, abs=1e-3)
