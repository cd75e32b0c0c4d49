"""DACS has no public code by its authors (Kim & Shin, KDD 2022, arXiv:2206.04838), so nothing is
pinned against it here; this checks that chunking the density and k-center passes changes nothing."""

import numpy as np
import torch

from al_bench.strategies.dacs import dacs_select, knn_density


def test_one_chunk_and_many_give_the_same_picks():
    torch.manual_seed(4)
    x = torch.nn.functional.normalize(torch.randn(300, 8).double() * torch.linspace(0.5, 2.0, 8), dim=1)
    is_labeled = np.arange(300) < 30
    one = dacs_select(x, is_labeled, 24, knn=10, num_groups=5, temperature=0.1, chunk=4096)
    many = dacs_select(x, is_labeled, 24, knn=10, num_groups=5, temperature=0.1, chunk=7)
    assert one.tolist() == many.tolist()
    assert len(set(one.tolist())) == 24 and not is_labeled[one].any()
    q = torch.as_tensor(~is_labeled)
    assert torch.allclose(knn_density(x, q, 10, chunk=4096), knn_density(x, q, 10, chunk=7), rtol=0, atol=1e-12)
