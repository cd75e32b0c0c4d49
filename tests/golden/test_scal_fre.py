"""Golden tests: SCAL's FRE query on features with a known principal subspace.

Method: a PCA is fitted on the labeled set's features; the candidates with the highest feature
reconstruction error (distance to that subspace) are selected.
References: Krishnan et al., arXiv:2109.06873 (no public code found: searched GitHub through the
code/docs/pages indexes for "featuresim", "SCAL", the title and the authors' names); FRE as in Ndiour,
Ahuja & Tickoo, arXiv:2012.04250. The right answers below follow from the construction: labeled and
"on" candidates lie exactly in a 2-d affine subspace of R^6, planted candidates lie off it at known
distances. Ablation that fails here: scoring by the distance to the labeled mean instead of to the
subspace (the far on-subspace candidates win): test_fre_ranks_off_subspace_points_by_their_distance.
The SupCon training loss is pinned in test_scal_featsim.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from al_bench.strategies.base import SelectionContext
from al_bench.strategies.common.supcon import pca_basis, reconstruction_error
from al_bench.strategies.scal_fre import ScalFre


def subspace_data():
    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.standard_normal((6, 2)))[0].T  # 2 orthonormal rows in R^6
    normal = np.linalg.qr(np.concatenate([basis.T, rng.standard_normal((6, 1))], axis=1))[0][:, 2]  # unit, _|_ basis
    centre = rng.standard_normal(6)
    labeled = centre + rng.standard_normal((30, 2)) @ basis
    on = centre + 8.0 * rng.standard_normal((20, 2)) @ basis  # on the subspace, mostly far from the labeled mean
    off = centre + rng.standard_normal((3, 2)) @ basis + np.array([[3.0], [1.0], [2.0]]) * normal
    return np.concatenate([labeled, on, off]), np.arange(30), np.arange(30, 53)


def ctx_with(features, labeled, seed=0):
    f = torch.as_tensor(features, dtype=torch.float32)
    return SelectionContext(model=None, pool=None, labeled=np.asarray(labeled), rng=np.random.default_rng(seed),
                            device=torch.device("cpu"), predictor=lambda idx, mc_samples=0: {"embedding": f[idx]})


def test_fre_is_the_distance_to_the_subspace():
    feats, labeled, candidates = subspace_data()
    x = torch.as_tensor(feats, dtype=torch.float64)
    mean, comps = pca_basis(x[labeled], None, 0.95)
    assert comps.shape == (2, 6)  # the labeled features span exactly 2 directions
    err = reconstruction_error(x[candidates], mean, comps)
    assert err[:20].abs().max() < 1e-9
    assert err[20:].tolist() == pytest.approx([3.0, 1.0, 2.0], rel=1e-9)


def test_fre_ranks_off_subspace_points_by_their_distance():
    feats, labeled, candidates = subspace_data()
    assert ScalFre().select(ctx_with(feats, labeled), candidates, 3).tolist() == [50, 52, 51]
    # the on-subspace candidates are farther from the labeled mean than the off ones: a distance-to-mean
    # score would pick them
    x = torch.as_tensor(feats, dtype=torch.float64)
    to_mean = (x[candidates] - x[labeled].mean(0)).norm(dim=1)
    assert to_mean[:20].max() > to_mean[20:].max()


def test_fewer_components_make_the_dropped_direction_count():
    # with q = 1 the second labeled direction is no longer reconstructed: points spread along it score high
    feats, labeled, candidates = subspace_data()
    x = torch.as_tensor(feats, dtype=torch.float64)
    mean, comps = pca_basis(x[labeled], 1, 0.95)
    assert comps.shape == (1, 6)
    assert reconstruction_error(x[candidates][:20], mean, comps).max() > 3.0
    mean_all, comps_all = pca_basis(x[labeled], None, 0.999999)
    assert comps_all.shape[0] == 2  # rank 2: more variance than the subspace holds adds nothing
