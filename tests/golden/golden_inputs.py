"""The fixed inputs several golden tests share (rebuilt from seeded torch generators, no file), and
selection contexts that serve them."""

from types import SimpleNamespace

import numpy as np
import torch

from al_bench.strategies.base import SelectionContext

N, S, C = 200, 16, 10  # candidates, MC-dropout samples, classes


def mc_input():
    """(N, S, C) MC-dropout class probabilities, from flat to confident rows."""
    g = torch.Generator().manual_seed(1703)
    centre = 3.0 * torch.randn(N, 1, C, generator=g, dtype=torch.float64)
    spread = 10.0 ** (2.5 * torch.rand(N, 1, 1, generator=g, dtype=torch.float64) - 2.0)  # 0.01 .. 3
    noise = torch.randn(N, S, C, generator=g, dtype=torch.float64)
    return torch.softmax(centre + spread * noise, dim=2)


def mc_context(mc):
    def predictor(indices, mc_samples=0):
        idx = torch.as_tensor(np.asarray(indices))
        return {"probs": mc[idx].mean(1), "mc_probs": mc[idx]}
    return SelectionContext(model=SimpleNamespace(dropout=0.5), pool=None, labeled=np.zeros(0, dtype=np.int64),
                            rng=np.random.default_rng(0), device=torch.device("cpu"), predictor=predictor)


def probs_input():
    g = torch.Generator().manual_seed(2009)
    return torch.softmax(2.0 * torch.randn(N, C, generator=g, dtype=torch.float64), dim=1)


def probs_context(probs):
    def predictor(indices, mc_samples=0):
        return {"probs": probs[torch.as_tensor(np.asarray(indices))]}
    return SelectionContext(model=SimpleNamespace(dropout=0.0), pool=None, labeled=np.zeros(0, dtype=np.int64),
                            rng=np.random.default_rng(0), device=torch.device("cpu"), predictor=predictor)
