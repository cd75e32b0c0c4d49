"""`logger=mlflow`: an MLflow run per al-bench run (`pip install "al-bench[mlflow]"`: mlflow-skinny
and the SQLite store's sqlalchemy + alembic).

Local by default: `tracking_uri: null` is MLflow's own default, $MLFLOW_TRACKING_URI when set,
else the SQLite file `./mlflow.db` (browse with `mlflow ui --backend-store-uri sqlite:///mlflow.db`;
MLflow 3 refuses its older `./mlruns` file store unless MLFLOW_ALLOW_FILE_STORE=true). Give
`logger.tracking_uri=http://...` to log to a server. The MLflow experiment is `logger.experiment`
or the config's `name`; the MLflow run is named after the run directory (also tag
`al_bench.run_dir`). Parameters: the flattened config; metrics: `epoch/train_loss`, `epoch/lr`,
... at step cycle x epochs + epoch and `cycle/test_acc`, `cycle/n_labeled`, ... at step cycle.
Uses `MlflowClient`, not MLflow's global active run, so several runs in one process never mix.
"""

from __future__ import annotations

import time
from pathlib import Path

from al_bench.tracking import RunLogger, epoch_step, flat_config, require, scalars

MAX_PARAM_CHARS = 6000  # MLflow refuses longer parameter values


class MlflowLogger(RunLogger):
    """Parameters and metrics into one MLflow run."""

    def __init__(self, tracking_uri: str | None, experiment: str | None):
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.client = None
        self._epochs = 1

    def open(self, run_dir: Path, experiment: str, epochs_per_cycle: int) -> None:
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=self.tracking_uri)
        name = self.experiment or experiment
        found = self.client.get_experiment_by_name(name)
        experiment_id = found.experiment_id if found is not None else self.client.create_experiment(name)
        self._epochs = epochs_per_cycle
        self.run_id = self.client.create_run(experiment_id, run_name=str(run_dir),
                                             tags={"al_bench.run_dir": str(Path(run_dir).resolve())}).info.run_id

    def log_config(self, config: dict) -> None:
        from mlflow.entities import Param

        params = [Param(k[:250], v[:MAX_PARAM_CHARS]) for k, v in flat_config(config).items()]
        for start in range(0, len(params), 100):  # MLflow takes at most 100 parameters per batch
            self.client.log_batch(self.run_id, params=params[start:start + 100])

    def _metrics(self, values: dict, step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, step) for k, v in values.items()]
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics)

    def log_epoch(self, cycle: int, epoch: int, values: dict) -> None:
        self._metrics(scalars(values, "epoch/"), epoch_step(cycle, epoch, self._epochs))

    def log_cycle(self, cycle: int, values: dict) -> None:
        self._metrics({k: v for k, v in scalars(values, "cycle/").items() if k != "cycle/cycle"}, cycle)

    def close(self) -> None:
        if self.client is not None:
            self.client.set_terminated(self.run_id)
            self.client = None


def make(tracking_uri: str | None = None, experiment: str | None = None) -> MlflowLogger:
    """`logger=mlflow`: one MLflow run per run directory (MLflow's default store unless a URI is given)."""
    require("mlflow", "mlflow", "mlflow")
    return MlflowLogger(tracking_uri, experiment)
