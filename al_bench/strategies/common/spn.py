"""A generative sum-product network over (CNN features, class) and its class conditional p(y | x),
shared by `spn_entropy` and `spn_var_ratio` (Khosravani & Zilles, "Using Sum-Product Networks to
Assess Uncertainty in Deep Active Learning", TMLR 2024, arXiv:2206.09798).

The SPN is learned with SPFlow (the `spflow` package, an optional extra: `pip install 'al-bench[spn]'`),
the library the SPN literature's LearnSPN comes from; nothing of the network is written here:
- its root is a sum node over the classes seen in the labeled set, with the labeled class
  frequencies as weights (their maximum-likelihood value); its child for class c is the product of
  an indicator leaf on y = c and an SPN over the features learned by SPFlow's LearnSPN
  (`spflow.learn.learn_spn`, Gens & Domingos 2013: RDC independence splits of the features,
  clustering splits of the rows, Gaussian leaves fitted by maximum likelihood) on the class's
  labeled rows. This is the structure of SPFlow 0.0.x's `learn_classifier` (spn/algorithms/
  LearningWrappers.py: a root sum over the label values, weights count / N, LearnSPN per value);
  a class with no labeled row has weight 0, so p(y = c | x) = 0 for it. SPFlow 0.0.x's LearnSPN
  default min_instances_slice was 200, 1.1's is 100 (used here; a named option);
- p(y | x) = p(x, y) / sum_y' p(x, y'), computed by SPFlow's `utils.inference.log_posterior` from the
  class SPNs' log-likelihoods and the log weights (tests/golden/test_spn.py checks it against the
  whole joint SPN's conditional by marginalising y, and against a brute-force evaluation).

Dimensionality (our choice, not the paper's: its text was not at hand): LearnSPN's RDC test compares
every pair of features, O(d^2) per split, so the embedding is first projected on its `pca_dims`
leading principal directions, fitted on the labeled rows (d = 10: ~1.3 s of CPU for L = 1,000
labeled rows of D = 512, 10 classes, scripts/bench_select.py's embeddings; RDC cost grows as d^2).
`pca_dims: null` keeps the raw embedding.
Row clusters come from al_bench's seeded k-means (2 clusters, k-means++), not SPFlow's default
(fast_pytorch_kmeans, which prints every call); the RDC's random projections draw from torch's
generator, seeded here from the selection's generator: the SPN is a function of (seed, cycle).
The SPN is learned and evaluated on one torch thread (restored after): LearnSPN's ops are tiny and
threads only add overhead.
"""

from __future__ import annotations

import numpy as np
import torch

from al_bench import ConfigError
from al_bench.strategies.common.blocks import single_thread
from al_bench.strategies.common.clustering import kmeans

BLOCK = 4096  # candidate rows per SPN evaluation: bounds the per-node activations held at once


def require_spflow() -> None:
    """Refuse (ConfigError) when the optional SPN library is missing."""
    try:  # the modules used below: their import (~1-5 s) falls in the config's instantiation, not selection
        import spflow.learn  # noqa: F401
        import spflow.utils.inference  # noqa: F401
    except ImportError as e:
        raise ConfigError("strategies spn_entropy / spn_var_ratio need the SPN library SPFlow: "
                          "pip install 'al-bench[spn]' (or pip install 'spflow>=1.1,<1.2')") from e


def pca_projection(x: torch.Tensor, dims: int | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(mean, basis (D, d)) of the rows' `dims` leading principal directions; basis None keeps x."""
    mean = x.mean(0)
    if dims is None or dims >= x.shape[1]:
        return mean, None
    _, vecs = torch.linalg.eigh((x - mean).T @ (x - mean))  # D x D: faster than an SVD of the rows
    return mean, vecs[:, -dims:].flip(1)


def project(x: torch.Tensor, mean: torch.Tensor, basis: torch.Tensor | None) -> torch.Tensor:
    return (x - mean) if basis is None else (x - mean) @ basis




def _two_clusters(rng: np.random.Generator):
    def cluster(data: torch.Tensor) -> torch.Tensor:
        x = data.double()
        if len(x) < 2 or bool((x == x[0]).all()):
            # identical rows: k-means cannot split them, and LearnSPN would recurse on the same rows
            # for ever; any split of identical rows gives the same density
            return torch.arange(len(x), device=data.device) % 2
        return kmeans(x, 2, rng)[1].to(data.device)
    return cluster


def _partition(min_rows: int, threshold: float):
    from spflow.learn.learn_spn import partition_by_rdc

    def partition(data: torch.Tensor) -> torch.Tensor:
        if len(data) < min_rows:
            # a slice under min_instances_slice rows is never clustered again, so LearnSPN ends it in
            # leaves: factorise it fully here (each feature its own part, as Gens & Domingos do for
            # slices too small to split) rather than after SPFlow's RDC test, for two reasons:
            # - SPFlow 1.1.0's Gaussian leaf over F features normalises its MLE weights over all F,
            #   so its bias-corrected variance divides by N - F, not N - 1: negative for N <= F rows
            #   and then floored to a 1e-8 scale (spikes thousands of nats apart between classes);
            #   univariate leaves get N - 1;
            # - SPFlow's RDC fails on a few rows (its search for a valid number of projections
            #   reaches 0 and takes the max of an empty tensor).
            return torch.arange(1, data.shape[1] + 1, dtype=torch.int, device=data.device)
        return partition_by_rdc(data, threshold=threshold)
    return partition


def fit_class_spns(z: torch.Tensor, y: torch.Tensor, num_classes: int, rng: np.random.Generator,
                   min_instances_slice: int = 100, rdc_threshold: float = 0.3) -> tuple[list, torch.Tensor]:
    """One LearnSPN feature SPN per class with labeled rows (None for the others) and the root's log
    weights log p(y) (C,): the labeled class frequencies, -inf for unseen classes."""
    from spflow.learn import learn_spn
    from spflow.meta.data.scope import Scope
    from spflow.modules.leaves import Normal

    z = z.float().cpu()
    y = y.long().cpu()
    counts = torch.bincount(y, minlength=num_classes).double()
    log_prior = torch.log(counts / counts.sum())
    cluster = _two_clusters(rng)
    spns = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(rng.integers(2**31)))  # the RDC's random projections
        for c in range(num_classes):
            rows = z[y == c]
            if len(rows) == 0:
                spns.append(None)
                continue
            spns.append(learn_spn(rows, Normal(scope=Scope(list(range(z.shape[1])))),
                                  min_instances_slice=min_instances_slice, clustering_method=cluster,
                                  partitioning_method=_partition(min_instances_slice, rdc_threshold)))
    return spns, log_prior


def class_log_likelihoods(spns: list, z: torch.Tensor) -> torch.Tensor:
    """log p(x | y = c) (N, C) from each class SPN, 0 where the class has none (its weight is 0)."""
    z = z.float().cpu()
    out = torch.zeros(len(z), len(spns), dtype=torch.float64)
    with torch.no_grad():
        for c, spn in enumerate(spns):
            if spn is None:
                continue
            for s in range(0, len(z), BLOCK):
                out[s:s + BLOCK, c] = spn.log_likelihood(z[s:s + BLOCK]).reshape(-1).double()
    return out


def class_log_posterior(spns: list, log_prior: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """The SPN's conditional log p(y | x) (N, C), by SPFlow's log_posterior."""
    from spflow.utils.inference import log_posterior

    return log_posterior(class_log_likelihoods(spns, z), log_prior.double())


def class_posterior(spns: list, log_prior: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    return class_log_posterior(spns, log_prior, z).exp()


def spn_log_probs(emb_labeled: torch.Tensor, y_labeled: torch.Tensor, emb: torch.Tensor, num_classes: int,
                  rng: np.random.Generator, pca_dims: int | None, min_instances_slice: int,
                  rdc_threshold: float) -> torch.Tensor:
    """log p(y | x) (N, C) of an SPN learned on the labeled (embedding, label) pairs, at the rows of `emb`."""
    with single_thread():
        x_lab = emb_labeled.double().cpu()
        mean, basis = pca_projection(x_lab, pca_dims)
        spns, log_prior = fit_class_spns(project(x_lab, mean, basis), y_labeled, num_classes, rng,
                                         min_instances_slice, rdc_threshold)
        return class_log_posterior(spns, log_prior, project(emb.double().cpu(), mean, basis))


def log_entropy(log_p: torch.Tensor) -> torch.Tensor:
    """log H(p) from log p (N, C): log sum_c p_c (-log p_c), -inf where H = 0; exact where p is one-hot
    in floating point (log-probabilities thousands of nats apart) and H itself would be 0."""
    log_p = log_p.double()
    terms = torch.where(torch.isfinite(log_p) & (log_p < 0), log_p + torch.log(-log_p), -torch.inf)
    return torch.logsumexp(terms, dim=1)


def log_one_minus_max(log_p: torch.Tensor) -> torch.Tensor:
    """log(1 - max_c p_c) from log p (N, C): the log of the mass off the modal class, -inf where none."""
    log_p = log_p.double()
    off = log_p.clone()
    off[torch.arange(len(off)), log_p.argmax(1)] = -torch.inf
    return torch.logsumexp(off, dim=1)
