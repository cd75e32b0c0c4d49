"""Supervised contrastive training for SCAL (scal_featsim, scal_fre) and the two feature-guided scores.

The supervised contrastive loss (Khosla et al., NeurIPS 2020, "L^sup_out"), as the reference code
computes it (HobbitLong/SupContrast, losses.py `SupConLoss`, contrast_mode "all"; pinned in
tests/golden/test_scal_featsim.py): the V views of a batch, L2-normalised, are all anchors; for anchor i
with positives P(i) (same label, other than i itself) and A(i) = every row but i,
    L_i = -(tau / tau_base) / |P(i)| sum_{p in P(i)} log( exp(z_i.z_p / tau) / sum_{a in A(i)} exp(z_i.z_a / tau) ),
averaged over the anchors (an anchor without positives adds 0 and still counts, as in the code).

The plugin trains the classifier on the trainer's labeled batch (one view) and a second draw of the
trainer's augmentation of the same rows (al_bench.strategies.common.views), both in one forward
pass as the reference code does (`torch.cat([images[0], images[1]])`); the projection head is the
reference's SupConResNet head (mlp: Linear(D, D), ReLU, Linear(D, feat_dim = 128); or linear),
its output L2-normalised. Loss = cross-entropy on view 1 + `supcon_weight` x SupCon.
`detach_classifier: true` stops the cross-entropy's gradient at the embedding, so the encoder
learns from the contrastive loss alone and the linear head from cross-entropy, Khosla's two-stage
recipe (contrastive encoder, then a linear classifier) folded into one training.
"""

from __future__ import annotations

import torch
from torch import nn

from al_bench import ConfigError
from al_bench.strategies.common.clustering import BLOCK
from al_bench.strategies.common.views import view_maker
from al_bench.training.plugin import OptimizerSpec, Step, TrainContext, TrainingPlugin


def supcon_loss(views: list[torch.Tensor], labels: torch.Tensor, temperature: float,
                base_temperature: float | None = None) -> torch.Tensor:
    """The supervised contrastive loss of V views (each (B, d), L2-normalised) of a labeled batch."""
    base = temperature if base_temperature is None else base_temperature
    z = torch.cat(views)
    y = labels.repeat(len(views))
    own = torch.eye(len(z), dtype=torch.bool, device=z.device)
    sim = (z @ z.T / temperature).masked_fill(own, float("-inf"))  # A(i): every row but i
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    positive = (y[:, None] == y[None, :]) & ~own
    mean_log_prob = torch.where(positive, log_prob, 0.0).sum(1) / positive.sum(1).clamp_min(1)
    return -(temperature / base) * mean_log_prob.mean()


def projection_head(in_dim: int, head: str, feat_dim: int) -> nn.Module:
    if head == "linear":
        return nn.Linear(in_dim, feat_dim)
    return nn.Sequential(nn.Linear(in_dim, in_dim), nn.ReLU(inplace=True), nn.Linear(in_dim, feat_dim))


class SupConPlugin(TrainingPlugin):
    """Cross-entropy + supcon_weight x supervised contrastive loss over two views of the labeled batch."""

    def __init__(self, temperature: float, base_temperature: float | None, head: str, feat_dim: int,
                 supcon_weight: float, detach_classifier: bool):
        self.temperature, self.base_temperature = float(temperature), base_temperature
        self.head_kind, self.feat_dim = head, int(feat_dim)
        self.weight, self.detach_classifier = float(supcon_weight), bool(detach_classifier)
        self.head: nn.Module | None = None

    def setup(self, model: nn.Module, ctx: TrainContext, warm_start: bool) -> None:
        if self.head is None or not warm_start:
            self.head = projection_head(model.embed_dim, self.head_kind, self.feat_dim).to(ctx.device)
        self.views = view_maker(ctx)

    def modules(self) -> dict[str, nn.Module]:
        return {"projection_head": self.head} if self.head is not None else {}

    def optimizers(self) -> dict[str, OptimizerSpec]:
        return {"projection_head": OptimizerSpec(self.head.parameters())}  # the backbone's optimiser and schedule

    def update(self, step: Step) -> torch.Tensor:
        n = len(step.x)
        with step.autocast():
            out = step.forward(torch.cat([step.x, self.views(step.index)]))
            emb = out.embedding[:n]
            logits = step.model.classify(emb.detach()) if self.detach_classifier else out.logits[:n]
            target_loss = nn.functional.cross_entropy(logits.float(), step.y, reduction="none")
        with torch.autocast(step.x.device.type, enabled=False):
            z = nn.functional.normalize(self.head(out.embedding.float()), dim=1)
            sc = supcon_loss([z[:n], z[n:]], step.y, self.temperature, self.base_temperature)
        loss = target_loss.mean() + self.weight * sc
        step.apply(loss)
        step.logs["supcon_loss"] = sc.detach()
        return target_loss.detach()


def labeled_and_candidate_features(ctx, candidates) -> tuple[torch.Tensor, torch.Tensor]:
    """The embeddings (float64) of the labeled set and of the candidates, from one prediction pass."""
    if len(ctx.labeled) == 0:
        raise ConfigError("scal_featsim / scal_fre compare candidates with the labeled set, which is empty; "
                          "set budget.initial >= 1")
    rows, is_labeled = ctx.with_labeled(candidates)
    emb = ctx.predict(rows)["embedding"].double()
    mask = torch.as_tensor(is_labeled, device=emb.device)
    return emb[mask], emb[~mask]


def feature_similarity(cand: torch.Tensor, labeled: torch.Tensor, similarity: str = "max",
                       block: int = BLOCK) -> torch.Tensor:
    """Cosine similarity of each candidate to the labeled set: to its most similar labeled row
    ("max") or the mean over the labeled rows ("mean"); blocks of `block` candidates."""
    # float32 products: a 4-byte cosine is ample for a ranking, and twice as fast as float64
    c = nn.functional.normalize(cand, dim=1).float()
    lab = nn.functional.normalize(labeled, dim=1).float()
    if similarity == "mean":
        return c @ lab.mean(0)
    return torch.cat([(c[s:s + block] @ lab.T).amax(1) for s in range(0, len(c), block)])


def pca_basis(x: torch.Tensor, n_components: int | None,
              explained_variance: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean (D,), components (q, D) orthonormal rows) of the PCA of the rows of x: the first
    `n_components`, or the fewest that explain `explained_variance` of the variance. From the D x D
    scatter matrix (O(L D^2 + D^3), cheaper than an SVD of the L x D rows when L > D)."""
    mean = x.mean(0)
    centred = x - mean
    var, vec = torch.linalg.eigh(centred.T @ centred)
    var, vec = var.flip(0).clamp_min(0), vec.flip(1)  # largest first
    rank = min(len(x) - 1, x.shape[1])  # beyond it the eigenvalues are rounding noise
    if n_components is None:
        share = torch.cumsum(var, 0) / var.sum().clamp_min(torch.finfo(var.dtype).tiny)
        n_components = int((share < explained_variance).sum()) + 1
    return mean, vec[:, :max(1, min(n_components, rank))].T


def reconstruction_error(x: torch.Tensor, mean: torch.Tensor, components: torch.Tensor) -> torch.Tensor:
    """||(x - m) - W^T W (x - m)||_2 per row: the distance from x to the PCA subspace through m."""
    centred = x - mean
    return torch.linalg.vector_norm(centred - (centred @ components.T) @ components, dim=1)
