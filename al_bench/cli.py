"""The `al-bench` command: the only Hydra entry point. Everything below takes plain values.

Errors reach the user as one line on stderr, `al-bench: error: ...`, and `main()` decides the exit
code in one place: 2 for bad input (a config that does not compose or does not validate, an
unknown key, a missing dataset, an unwritable, foreign or corrupt run directory), 1 for a run that
failed (its run directory holds FAILED with the traceback, and al-bench.log and the console have
it too) or a sweep in which a job failed (the other jobs still ran), 130 for Ctrl-C or SIGTERM
(the run stays resumable). With HYDRA_FULL_ERROR=1, errors keep their full stack traces.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import zlib
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from al_bench import ConfigError
from al_bench.io import DiskFull

log = logging.getLogger("al_bench")


def _render(value) -> str:
    """A parsed override value written the same way whichever way it was typed (`False`, `false`)."""
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_render(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_render(v)}" for k, v in value.items()) + "}"
    return str(value)


def knob_dir(overrides, exclude_keys) -> str:
    """The knobs set on the command line, other than `exclude_keys` (dataset, model, strategy,
    seed...), as one directory level with its trailing slash, e.g. `trainer.warm_start=true/`; or
    nothing, so run directories never contain `//`.

    Used in conf/config.yaml as
    `${al_bench.knob_dir:${hydra.overrides.task},${hydra.job.config.override_dirname.exclude_keys}}`.
    An exclude key ending in `.*` excludes every key under it (`logger.*`: a tracker's settings
    never name a directory). Unlike Hydra's override_dirname, values are parsed and written in one
    form: a multirun passes `trainer.warm_start=False` to its jobs for the `false` typed by the
    user, and a single run and a sweep of the same config must land in the same directory.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    exclude = {str(k) for k in exclude_keys}
    prefixes = tuple(k[:-1] for k in exclude if k.endswith(".*"))
    knobs = {}
    for override in OverridesParser.create().parse_overrides([str(o) for o in overrides]):
        key = override.key_or_group
        if key in exclude or key.startswith(("hydra.", "hydra/", *prefixes)):
            continue
        knobs[key] = f"~{key}" if override.is_delete() else f"{key}={_render(override.value())}"
    if not knobs:
        return ""
    level = ",".join(sorted(knobs.values())).replace("/", "_")
    if len(level) > _MAX_LEVEL:  # file systems refuse names over 255 bytes; run.json has every knob
        level = f"{level[:_MAX_LEVEL - 9]}~{zlib.crc32(level.encode()):08x}"
    return level + "/"


_MAX_LEVEL = 200


def nonempty(value, key: str) -> str:
    """`value` as a path part, refusing an empty one before Hydra makes directories from it
    (`out_root=` would otherwise put the run under /<name> at the file-system root)."""
    text = "" if value is None else str(value)
    if not text.strip():
        raise ConfigError(f"{key} is empty; give a directory name ({key}=runs)")
    return text

# Registered at import: Hydra resolves the run directory in every process that runs a job (this
# one, joblib workers, submitit jobs), and all of them import this module to find `run_task`.
OmegaConf.register_new_resolver("al_bench.knob_dir", knob_dir, replace=True)
OmegaConf.register_new_resolver("al_bench.nonempty", nonempty, replace=True)


def run_task(cfg: DictConfig) -> None:
    """One run: the Hydra task function (a plain module-level function, so launchers pickle it by
    reference). Converts the config to typed plain values (al_bench.config) and runs the loop."""
    from al_bench import config, loop, rundir  # heavy imports (torch) after Hydra handled --help and bad overrides

    global _run_dir
    hydra_cfg = HydraConfig.get()
    out_dir = _run_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode.name == "MULTIRUN"
    if "joblib" in str(hydra_cfg.launcher.get("_target_", "")):
        _die_with_parent()
    # hydra.output_subdir is null: Hydra would write .hydra/ before the task starts, even into the
    # directory of another config's run; the loop writes these once the directory is this run's.
    config_files = {
        ".hydra/config.yaml": OmegaConf.to_yaml(cfg),
        ".hydra/hydra.yaml": OmegaConf.to_yaml(HydraConfig.instance().cfg),
        ".hydra/overrides.yaml": OmegaConf.to_yaml(hydra_cfg.overrides.task),
    }
    try:
        run_cfg = config.load(cfg, overrides=list(hydra_cfg.overrides.task))
        loop.run_al(run_cfg, out_dir, config_files=config_files, job_index=hydra_cfg.job.num if multirun else None)
    except ConfigError as exc:
        _close_log_files_under(out_dir)
        rundir.remove_if_unstarted(out_dir, stop_at=_cleanup_limit(cfg.get("out_root")))
        if not multirun:
            raise _JobEnded(exc) from None
        print(f"al-bench: error: {' '.join(str(exc).split())}", file=sys.stderr)  # the sweep goes on
        raise
    except Exception as exc:
        if isinstance(exc, DiskFull):  # not a bug: the traceback would only hide the one fact that matters
            log.error("%s", exc)
        else:
            log.exception("run failed: %s: %s", type(exc).__name__, exc)
        if not multirun:
            raise _JobEnded(exc) from None
        raise
    log.info("run directory: %s", out_dir)


_watching = False


def _die_with_parent(poll_s: float = 1.0) -> None:
    """In a joblib worker of a local parallel sweep: end this process when the al-bench process that
    started the sweep is gone (killed, Ctrl-C), instead of training on as an orphan that holds its
    run's lock. The run stays resumable: every file is written atomically."""
    import threading
    import time

    global _watching
    if _watching:  # workers are reused between jobs
        return
    _watching = True
    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(poll_s)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="al-bench-parent-watch", daemon=True).start()


def _close_log_files_under(folder: Path) -> None:
    """Detach the log files Hydra opened in a refused run's folder (al-bench.log), so that the folder
    can be removed and later log lines of this process do not try to reopen a file there."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        name = getattr(handler, "baseFilename", None)
        if name is not None and Path(name).is_relative_to(folder.absolute()):
            root.removeHandler(handler)
            handler.close()


def _cleanup_limit(out_root) -> Path | None:
    """How far up a refused run's empty directories are removed: out_root itself too (Hydra made
    it for this run), unless it is the working directory or one of its parents."""
    if not out_root:
        return None
    root = Path(str(out_root)).absolute()
    cwd = Path.cwd().absolute()
    return root if root == cwd or root in cwd.parents else root.parent


class _JobEnded(BaseException):
    """An exception carried past Hydra (whose job runner prints a line of its own for a job's
    Exception, and whose callbacks only warn about one) to main(), which turns it into one line and
    an exit code."""

    def __init__(self, exc: Exception):
        super().__init__(str(exc))
        self.exc = exc


app = hydra.main(version_base="1.3", config_path="pkg://al_bench.conf", config_name="config")(run_task)

_sweep_dir: Path | None = None  # set once a multirun has started (in this process)
_run_dir: Path | None = None  # the run directory of the last job started in this process


def _report(sweep_dir: Path) -> None:
    """Print the report of a sweep and write its files; a reporter problem never fails the sweep."""
    print(f"\nsweep directory: {sweep_dir.resolve()}")
    try:
        from al_bench.report.cli import main as report

        report([str(sweep_dir)])
    except Exception as exc:  # noqa: BLE001  the runs are done and safe; say how to report them
        log.warning("could not report the sweep (%s); run: al-bench-report %s", _one_line(exc), sweep_dir)


class ReportAtEnd(Callback):
    """Hydra callback: before a multirun, check every job's config (bad input anywhere in the sweep
    stops it before anything is written); after it, report the sweep (table printed, files written)."""

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        global _sweep_dir
        try:
            _check_sweep(config)
        except Exception as exc:  # Hydra turns a callback's Exception into a warning and goes on
            raise _JobEnded(exc) from None
        _sweep_dir = Path(str(config.hydra.sweep.dir))

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        _report(Path(str(config.hydra.sweep.dir)))


def _check_sweep(config: DictConfig) -> None:
    """Compose and validate the config of every job of a basic sweep, as the sweeper will, before
    it creates the sweep directory: `-m strategy=random,nope` or `seed=0,1.5` runs nothing."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from al_bench import config as config_mod

    if not str(config.hydra.sweeper.get("_target_", "")).endswith("BasicSweeper"):
        return  # another sweeper chooses its own jobs
    loader = GlobalHydra.instance().config_loader()
    params = [f"{k}={v}" for k, v in (config.hydra.sweeper.get("params") or {}).items()]
    arguments = params + list(config.hydra.overrides.task)
    overrides = OverridesParser.create(config_loader=loader).parse_overrides(arguments)
    for batch in BasicSweeper.split_arguments(overrides, None):
        for job in batch:
            job_cfg = loader.load_sweep_config(config, list(job))
            config_mod.load(job_cfg, overrides=list(job))


def _one_line(exc: BaseException) -> str:
    """An exception as one readable line."""
    if isinstance(exc, MissingConfigException) and exc.options:
        # "In 'config': Could not find 'dataset/nope'" + a list of options and search paths
        first = str(exc).strip().splitlines()[0].replace("In 'config': ", "")
        return f"{first}; available options: {', '.join(exc.options)}"
    if isinstance(exc, OverrideParseException):
        lines = [ln.strip() for ln in exc.message.splitlines() if ln.strip() and not ln.startswith("See https")]
        return f"cannot parse the override {exc.override!r}: {lines[-1] if lines else exc.message} (quote values " \
               f"holding '=', brackets or spaces: key='value')"
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    text = lines[0].rstrip(".") if lines else type(exc).__name__
    cause = exc.__cause__
    if isinstance(exc, HydraException) and isinstance(cause, OmegaConfBaseException) and str(cause).strip():
        text += f": {str(cause).strip().splitlines()[0]}"  # the lines after the first are full_key etc.
    if len(lines) > 1:
        text += f" ({'; '.join(lines[1:])})"
    if not isinstance(exc, (HydraException, OmegaConfBaseException, ConfigError)):
        text = f"{type(exc).__name__}: {text}"
    return text


def _failure(exc: BaseException, multirun: bool) -> tuple[int, str, bool]:
    """Exit code and one-line message for an exception that left Hydra, and whether jobs ran."""
    cause = _config_error_in(exc)
    if cause is not None and not (multirun and _raised_by_a_job(exc)):
        return 2, _one_line(cause), False  # e.g. raised by a resolver while Hydra composed the config
    if isinstance(exc, (HydraException, OmegaConfBaseException)):
        return 2, _one_line(exc), False  # the config did not compose: nothing ran
    sweep_started = multirun and _sweep_dir is not None and _sweep_dir.is_dir()
    if isinstance(exc, OSError) and exc.filename is not None and not sweep_started:
        return 2, f"cannot create or write {exc.filename}: {exc.strerror} (check out_root / hydra.run.dir)", False
    if multirun and _raised_by_a_job(exc):
        where = f" under {_sweep_dir}" if _sweep_dir is not None else ""
        return 1, (f"a job of the sweep failed ({_one_line(exc)}); the other jobs ran; failed runs hold "
                   f"FAILED with the traceback{where}"), True
    if multirun:  # e.g. the launcher refused its settings, or no SLURM here
        return 1, f"the sweep could not run: {_one_line(exc)}", False
    if isinstance(exc, ConfigError):
        return 2, _one_line(exc), False
    if isinstance(exc, DiskFull):
        return 1, str(exc), False
    failed = _run_dir / "FAILED" if _run_dir is not None and (_run_dir / "FAILED").exists() else None
    return 1, f"{_one_line(exc)} (traceback in {failed or 'the log above'})", False


def _config_error_in(exc: BaseException) -> ConfigError | None:
    """The ConfigError that `exc` is or was raised from, if any."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, ConfigError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _raised_by_a_job(exc: BaseException) -> bool:
    """Whether Hydra's sweeper re-raised a job's exception (from JobReturn.return_value), rather
    than the launcher or the sweeper failing on their own."""
    tb = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_name == "return_value" and tb.tb_frame.f_globals.get("__name__") == "hydra.core.utils":
            return True
        tb = tb.tb_next
    return False


def _is_multirun(argv: list[str]) -> bool:
    from hydra._internal.utils import get_args_parser

    args, _ = get_args_parser().parse_known_args(argv)
    return bool(args.multirun) or any(a.replace(" ", "") == "hydra.mode=MULTIRUN" for a in args.overrides)


def main(argv: list[str] | None = None) -> int:
    """Console entry point; returns the exit code (0 done, 1 a run or job failed, 2 bad input,
    130 interrupted). With `argv`, parse it instead of sys.argv (tests call this in-process)."""
    global _sweep_dir, _run_dir
    _sweep_dir = _run_dir = None
    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    user_setting = os.environ.get("HYDRA_FULL_ERROR")
    # Hydra re-raises instead of printing its several-line report (or a stack trace); we print one line.
    os.environ["HYDRA_FULL_ERROR"] = "1"
    previous = signal.signal(signal.SIGTERM, _terminate) if _main_thread() else None
    # A log handler that cannot write (a full disk) must not print a traceback per log line: the
    # write that matters raises DiskFull and ends the run with one line.
    logging.raiseExceptions = False
    try:
        try:
            app()
        except _JobEnded as ended:
            raise ended.exc from None
    except SystemExit as exit_:  # Hydra's argument parser: --help, a usage error (its message is printed)
        return exit_.code if isinstance(exit_.code, int) else 2
    except KeyboardInterrupt:
        where = f" ({_run_dir})" if _run_dir is not None else ""
        print(f"al-bench: interrupted; finished cycles are kept: rerun the same command to resume{where}",
              file=sys.stderr)
        return 130
    except Exception as exc:
        if user_setting == "1":
            raise
        code, message, jobs_ran = _failure(exc, _is_multirun(sys.argv[1:]))
        if jobs_ran and _sweep_dir is not None:
            _report(_sweep_dir)  # the table of the runs that finished
        print(f"al-bench: error: {' '.join(message.split())}", file=sys.stderr)
        return code
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if user_setting is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = user_setting
    return 0


def _terminate(signum, frame):
    """SIGTERM (a cluster's pre-emption, `kill`) ends the run like Ctrl-C: resumable, one line."""
    raise KeyboardInterrupt


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


if __name__ == "__main__":
    # `python -m al_bench.cli`: run the importable module, not this __main__ copy, so that launchers
    # pickle run_task by reference and the callback and main() share one module state.
    from al_bench.cli import main as _main

    sys.exit(_main())
