"""DACS's density pass in its default blocks (about 2M similarities, whatever N) gives the densities
and picks of one block holding every row, and of tiny blocks."""

import numpy as np
import torch

from al_bench.strategies import dacs


def test_default_blocks_equal_one_block_and_tiny_blocks(monkeypatch):
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(300, 8, generator=g, dtype=torch.float64), dim=1)
    is_labeled = np.zeros(300, dtype=bool)
    is_labeled[::10] = True
    q = torch.as_tensor(~is_labeled)
    one = dacs.knn_density(x, q, 10, chunk=300)
    monkeypatch.setattr(dacs, "BLOCK_ELEMS", 3 * 300)  # the default rule, three rows per block here
    assert torch.allclose(dacs.knn_density(x, q, 10), one, rtol=0, atol=1e-12)
    assert dacs.dacs_select(x, is_labeled, 24).tolist() == dacs.dacs_select(x, is_labeled, 24, chunk=300).tolist()
