"""History of learning: tell labeled from unlabeled images by how the model's predictions on them
evolved during training, and label the unlabeled images a random forest is surest are unlabeled.

The idea was put forward as a follow-up to learning loss (Yoo & Kweon, CVPR 2019, arXiv:1905.03677):
the images the network trains on leave a trace in its learning history (their predictions settle
early and confidently); an unlabeled image whose history looks least like that is one the model has
not learned. There is no paper with code for it (searched: GitHub code and strings for training-
history / random-forest labeled-vs-unlabeled acquisition); every choice is OUR READING, a config option:

- Moments: after the epochs given by `epochs` (1-based), else every `every` epochs and after the
  last one (so a schedule shorter than `every` still has a record), the plugin's `after_epoch`
  runs the model in eval mode (the trainer's `TrainContext.predict`: no random draw, so training
  is unchanged) over the labeled images and the recorded unlabeled ones.
- Layers (`layers`): `probs` (the softmax predictions, C values; default), `logits` (C values),
  `embedding` (mean and std of the penultimate features, 2 values), `stageK` (mean and std of
  stage K's activations, 1-based, 2 values). A record concatenates them; the history concatenates
  the records in epoch order.
- Which unlabeled images: the selection's candidate subset is drawn by the loop after training and
  is not visible to a plugin, so the plugin records a fixed random subsample of the unlabeled pool
  (`max_unlabeled` images, drawn once per cycle from the run's seeded generator; null = all of it),
  and the selection ranks the candidates that were recorded. Both draws are uniform, so the
  recorded candidates are a uniform sample of the candidates; if fewer than k were recorded, the
  rest is drawn at random from the unrecorded candidates (a WARNING says so). Default 10,000 =
  learning loss's candidate subset: the recording then costs about (labeled + 10,000) / 3 training
  images' worth per record.
- The forest (scikit-learn RandomForestClassifier, seeded from the selection's generator;
  n_estimators, max_depth, min_samples_leaf, max_features, max_samples as config, sklearn's
  defaults except min_samples_leaf = 5 and max_samples = 0.2) is fit on all recorded rows,
  unlabeled = 1. Each tree bootstraps 20% of the rows (sklearn: 100%) to keep the selection near
  10 s: 11,000 rows x 400 history features (40 records of 10 classes) took about 8 s of one CPU
  thread at 0.2, several times that with full bootstraps. With fully grown trees
  (min_samples_leaf = 1) a row's out-of-bag estimate is close to the label of its nearest recorded
  neighbour, so unlabeled rows that happen to sit among unlabeled ones tie at 1 with the truly
  different ones; leaves of 5 rows smooth that (tests/golden/test_history.py's planted case).
  Its P(unlabeled) for the same unlabeled rows it was fit on would be memorised (every in-bag tree
  votes "unlabeled"), so `proba: oob` (default) uses the out-of-bag estimate (each row scored only
  by the trees that did not see it), `crossfit` the prediction of forests fit on the other `folds`
  folds; `insample` is the idea's literal reading (fit, then predict the same rows), a named option.
- Selection: the k recorded candidates with the HIGHEST P(unlabeled), ties in random order.

References: arXiv:1905.03677 (learning loss, whose follow-up names the idea). No public code.
"""

from __future__ import annotations

import logging
import re
import warnings
from typing import Annotated, Literal

import numpy as np
import torch
from annotated_types import Ge, Gt, Le
from torch import nn

from al_bench import ConfigError
from al_bench.schema import PositiveInt
from al_bench.strategies.base import Strategy, top_k
from al_bench.training.plugin import TrainContext, TrainingPlugin

log = logging.getLogger(__name__)

_STAGE = re.compile(r"stage([1-9][0-9]*)")
_LAYERS = ("probs", "logits", "embedding")


def mean_std(t: torch.Tensor) -> torch.Tensor:
    """(N, ...) -> (N, 2): each row's mean and standard deviation."""
    flat = t.float().flatten(1)
    return torch.stack([flat.mean(1), flat.std(1, unbiased=False)], 1)


def forest_proba(features: np.ndarray, unlabeled: np.ndarray, proba: str, seed: int, folds: int = 5,
                 **forest) -> np.ndarray:
    """P(unlabeled) for every row of `features` from a random forest telling `unlabeled` (bool) rows
    from the others: out-of-bag ("oob"), cross-fitted over `folds` stratified folds ("crossfit"), or
    from the forest fit on the same rows ("insample"). `forest`: RandomForestClassifier arguments."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import StratifiedKFold

    y = unlabeled.astype(np.int64)
    if y.min() == y.max():
        raise ValueError("the forest needs labeled and unlabeled rows")

    def make(s):
        return RandomForestClassifier(random_state=s, oob_score=proba == "oob", bootstrap=True, **forest)

    if proba == "crossfit":
        out = np.empty(len(y))
        splits = StratifiedKFold(folds, shuffle=True, random_state=seed).split(features, y)
        for i, (train, test) in enumerate(splits):
            out[test] = make(seed + i + 1).fit(features[train], y[train]).predict_proba(features[test])[:, 1]
        return out
    rf = make(seed).fit(features, y)
    if proba == "insample":
        return rf.predict_proba(features)[:, 1]
    with warnings.catch_warnings():  # a row no tree left out gets NaN: the prior below, never seen with 100 trees
        warnings.simplefilter("ignore")
        out = rf.oob_decision_function_[:, 1]
    return np.where(np.isfinite(out), out, y.mean())


class HistoryPlugin(TrainingPlugin):
    """Records the chosen layers' outputs on the labeled and recorded unlabeled rows at the chosen epochs."""

    def __init__(self, every: int, epochs: list[int] | None, layers: list[str], max_unlabeled: int | None):
        self.every, self.epochs, self.layers, self.max_unlabeled = every, epochs, list(layers), max_unlabeled
        self.stages = sorted({int(m.group(1)) for m in map(_STAGE.fullmatch, self.layers) if m})
        self.rows = np.zeros(0, dtype=np.int64)  # labeled rows first, then the recorded unlabeled ones
        self.n_labeled = 0
        self.records: list[np.ndarray] = []
        self.recorded_epochs: list[int] = []
        self.last_epoch = 0

    def setup(self, model: nn.Module, ctx: TrainContext, warm_start: bool) -> None:
        n_stages = len(model.stage_channels)
        if self.stages and self.stages[-1] > n_stages:
            raise ConfigError(f"strategy.layers names stage{self.stages[-1]} but the model has {n_stages} stages "
                              f"(stage1..stage{n_stages})")
        unlabeled = ctx.unlabeled
        if self.max_unlabeled is not None and len(unlabeled) > self.max_unlabeled:
            # drawn from the loop's seeded global generator (seeded per run and cycle before setup)
            rng = np.random.default_rng(int(torch.randint(2 ** 62, ())))
            unlabeled = np.sort(rng.choice(unlabeled, size=self.max_unlabeled, replace=False))
        self.rows = np.concatenate([np.asarray(ctx.labeled, dtype=np.int64), unlabeled.astype(np.int64)])
        self.n_labeled = len(ctx.labeled)
        self.records, self.recorded_epochs = [], []
        self.last_epoch = ctx.settings.epochs

    def records_at(self, epoch: int) -> bool:
        """Whether the 1-based `epoch` is a moment of the history."""
        if self.epochs is not None:
            return epoch in self.epochs
        return epoch % self.every == 0 or epoch == self.last_epoch

    def features(self, preds: dict[str, torch.Tensor]) -> np.ndarray:
        parts = []
        for layer in self.layers:
            if layer in ("probs", "logits"):
                parts.append(preds[layer].float())
            elif layer == "embedding":
                parts.append(mean_std(preds["embedding"]))
            else:
                parts.append(preds[f"history_{layer}"].float())
        return torch.cat(parts, 1).cpu().numpy().astype(np.float32)

    def after_epoch(self, epoch: int, ctx: TrainContext) -> None:
        if self.records_at(epoch + 1):
            self.records.append(self.features(ctx.predict(self.rows)))
            self.recorded_epochs.append(epoch + 1)

    def outputs(self, out, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {f"history_stage{k}": mean_std(out.stages[k - 1]) for k in self.stages}

    def history(self) -> np.ndarray:
        """(recorded rows, records x features per record), in the order of `rows`."""
        if not self.records:
            raise RuntimeError("history: no epoch was recorded in this cycle's training (strategy.epochs?)")
        return np.concatenate(self.records, 1)

    def describe(self, settings) -> dict:
        if self.epochs is not None:
            moments = sorted(set(self.epochs))
        else:
            moments = sorted({e for e in range(self.every, settings.epochs + 1, self.every)} | {settings.epochs})
        return {"history_epochs": moments, "history_layers": self.layers,
                "history_max_unlabeled": self.max_unlabeled}


class History(Strategy):
    """Select the k recorded candidates a random forest on their learning history rates most
    likely unlabeled (out-of-bag P(unlabeled) by default).

    References: the learning-loss follow-up idea; Yoo & Kweon, "Learning Loss for Active Learning",
    CVPR 2019, arXiv:1905.03677. No public code: the choices are ours (module docstring).
    """

    def __init__(self, every: PositiveInt = 5, epochs: list[PositiveInt] | None = None,
                 layers: list[str] = ("probs",), max_unlabeled: PositiveInt | None = 10000,
                 proba: Literal["oob", "crossfit", "insample"] = "oob", folds: Annotated[int, Ge(2)] = 5,
                 n_estimators: PositiveInt = 100, max_depth: PositiveInt | None = None,
                 min_samples_leaf: PositiveInt = 5, max_features: Literal["sqrt", "log2"] | None = "sqrt",
                 max_samples: Annotated[float, Gt(0), Le(1)] | None = 0.2, n_jobs: PositiveInt | None = None):
        bad = [name for name in layers if name not in _LAYERS and not _STAGE.fullmatch(name)]
        if bad or not layers:
            raise ConfigError(f"strategy.layers={list(layers)}: each must be one of {', '.join(_LAYERS)} or stageK "
                              f"(K = 1, 2, ...; 1-based), at least one")
        if epochs is not None and not epochs:
            raise ConfigError("strategy.epochs=[] records nothing; give 1-based epochs or null (use `every`)")
        self.plugin = HistoryPlugin(every, epochs, list(layers), max_unlabeled)
        self.proba, self.folds = proba, folds
        self.forest = dict(n_estimators=n_estimators, max_depth=max_depth, min_samples_leaf=min_samples_leaf,
                           max_features=max_features, max_samples=max_samples, n_jobs=n_jobs)

    @classmethod
    def check_settings(cls, params: dict, settings) -> None:
        late = [e for e in params.get("epochs") or () if e > settings.epochs]
        if late:
            raise ConfigError(f"strategy.epochs={params['epochs']}: {late} lie past trainer.epochs={settings.epochs} "
                              f"(1-based epochs at whose end the history is recorded)")

    def train_plugin(self) -> TrainingPlugin:
        return self.plugin

    def select(self, ctx, candidates: np.ndarray, k: int) -> np.ndarray:
        plugin = self.plugin
        labeled = plugin.rows[:plugin.n_labeled]
        if not np.array_equal(np.sort(labeled), np.sort(np.asarray(ctx.labeled))):
            raise RuntimeError("history: the recorded labeled set is not the selection's (was this cycle trained?)")
        unlabeled = np.zeros(len(plugin.rows), dtype=bool)
        unlabeled[plugin.n_labeled:] = True
        p = forest_proba(plugin.history(), unlabeled, self.proba, int(ctx.rng.integers(2 ** 31)), self.folds,
                         **self.forest)
        recorded = plugin.rows[plugin.n_labeled:]  # sorted
        cand = np.asarray(candidates)
        pos = np.minimum(np.searchsorted(recorded, cand), len(recorded) - 1)
        seen = recorded[pos] == cand
        scores = torch.as_tensor(p[plugin.n_labeled:][pos[seen]])
        picks = cand[seen][top_k(scores, min(k, int(seen.sum())), ctx.rng)]
        if len(picks) < k:
            log.warning("history: %d of %d candidates have a recorded history; the other %d picks are drawn at "
                        "random (raise strategy.max_unlabeled)", int(seen.sum()), len(cand), k - len(picks))
            picks = np.concatenate([picks, ctx.rng.choice(cand[~seen], size=k - len(picks), replace=False)])
        return picks
