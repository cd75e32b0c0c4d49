"""The `al-bench` command: the only Hydra entry point. Everything below takes plain values."""

from __future__ import annotations

import logging
import sys
import traceback
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from al_bench import ConfigError

log = logging.getLogger("al_bench")


def _fail(out_dir: Path, exc: BaseException) -> None:
    from al_bench.io import atomic_write_text

    try:
        atomic_write_text(out_dir / "FAILED", "".join(traceback.format_exception(exc)))
    except OSError:
        pass


@hydra.main(version_base="1.3", config_path="pkg://al_bench.conf", config_name="config")
def app(cfg: DictConfig) -> None:
    from al_bench import loop  # heavy imports (torch) after Hydra handled --help and bad overrides

    out_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        loop.run_al(cfg, out_dir)
    except ConfigError as exc:
        loop.remove_if_unstarted(out_dir)
        log.error("%s", exc)
        if HydraConfig.get().mode.name == "RUN":
            print(f"al-bench: error: {exc}", file=sys.stderr)
            sys.exit(2)
        raise
    except BaseException as exc:
        log.exception("run failed: %s", out_dir)
        if (out_dir / "run.json").exists():
            _fail(out_dir, exc)
        raise
    log.info("run directory: %s", out_dir)


class ReportAtEnd(Callback):
    """Hydra callback: after a multirun, report the sweep (table printed, files written)."""

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        from al_bench.report.cli import main as report

        sweep_dir = Path(config.hydra.sweep.dir)
        print(f"\nsweep directory: {sweep_dir.resolve()}")
        report([str(sweep_dir)])


def main() -> None:
    # Hydra prints a bad config-override error with a full traceback unless HYDRA_FULL_ERROR is
    # unset; it already prints one line then. We keep Hydra's behaviour for those.
    app()


if __name__ == "__main__":
    main()
