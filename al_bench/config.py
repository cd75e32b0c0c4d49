"""The composed config -> typed, validated plain values: the one path from config to objects.

Each group's schema is declared once, where its values are used: the signature of the option's
`_target_` (datasets, models, strategies: `Annotated[int, Ge(1)]`, `Literal[...]`, `bool`...),
`Budget` for the budget and `TrainSettings` for the trainer. `load()` checks every key of the
composed config against them with pydantic in strict mode (no "no" for false, no 1.5 for an
integer, no NaN, no unknown key), runs the checks across groups, and returns a RunConfig of plain
values. Bad input raises ConfigError with one line naming the key, the value and what is accepted.
Below this module and cli.py nothing imports Hydra or OmegaConf.

Options a preset sets for another option of the same group (`experiment=ll4al_reference_impl
strategy=random` gets learning loss's `detach_rule`) do not apply to the chosen option: they are
dropped with a WARNING and recorded in run.json (`derived.ignored_options`). A key the chosen
option does not know is refused when it was given on the command line (`+strategy.detach_epoc=7`)
or when no option of the group knows it (a typo in a preset).
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import typing
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any, Literal

import annotated_types
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError, MissingMandatoryValue
from pydantic import ConfigDict, TypeAdapter, ValidationError

from al_bench import ConfigError
from al_bench.budget import Budget

log = logging.getLogger("al_bench")

GROUPS = ("dataset", "model", "strategy", "budget", "trainer", "logger")
# How a run is observed never changes what it measures: these groups are no knobs (run.json's knobs,
# the resume check, the report's rows), and may change when a run is resumed.
OBSERVER_GROUPS = ("logger",)
BUILD_ARGS = {"model": ("num_classes", "in_channels")}  # given by the loop, not by the config
TOP_LEVEL = {"name": (str, "a non-empty name"), "seed": (int, "an integer >= 0"), "out_root": (str, "a non-empty path")}
STRICT = ConfigDict(strict=True, allow_inf_nan=False, arbitrary_types_allowed=True)


@dataclass(frozen=True)
class Component:
    """One option of a group: its CLI word, what to build and the validated arguments."""

    group: str
    name: str
    target: str
    params: dict

    def build(self, **kwargs):
        """The object; arguments that are `_target_` nodes (e.g. a `_partial_: true` optimizer) are
        built by Hydra's instantiate. The target's own errors (ConfigError) reach the caller as they are."""
        from hydra.utils import instantiate

        params = {k: instantiate(v, _convert_="all") if isinstance(v, dict) and "_target_" in v else v
                  for k, v in self.params.items()}
        return _locate(self.target)(**params, **kwargs)

    @property
    def cls(self):
        return _locate(self.target)


@dataclass(frozen=True)
class RunConfig:
    """Everything one run needs, as plain values."""

    name: str
    seed: int
    out_root: str
    dataset: Component
    model: Component
    strategy: Component
    budget: Budget
    trainer: Any  # al_bench.training.TrainSettings
    record: dict  # the resolved config, as run.json keeps it
    ignored: dict = field(default_factory=dict)  # preset options that did not apply ("strategy.detach_rule": "gt")
    logger: Component | None = None  # al_bench.tracking: builds a RunLogger; None = log nothing

    @property
    def knobs(self) -> dict:
        return flatten({k: v for k, v in self.record.items() if k not in OBSERVER_GROUPS})


def flatten(node: dict, prefix: str = "") -> dict:
    """{"trainer.epochs": 200, ...} for a nested dict."""
    out = {}
    for key, value in node.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def load(cfg: DictConfig, overrides: typing.Iterable[str] = ()) -> RunConfig:
    """The composed config as a RunConfig, or ConfigError. `overrides` are the command line's
    (`hydra.overrides.task`): unknown keys named there are always refused."""
    container = _resolve(cfg)
    unknown = sorted(set(container) - set(TOP_LEVEL) - set(GROUPS))
    if unknown:
        raise ConfigError(f"unknown top-level option {unknown[0]}={container[unknown[0]]!r}; the top level holds "
                          f"{', '.join(sorted(TOP_LEVEL))} and the groups {', '.join(GROUPS)}")
    for key, (kind, accepted) in TOP_LEVEL.items():
        value = container.get(key)
        ok = isinstance(value, kind) and not isinstance(value, bool) and (value >= 0 if kind is int else value.strip())
        if not ok:
            raise ConfigError(f"{key}={value!r} is not accepted: expected {accepted}")
    given = _command_line_keys(overrides)
    ignored: dict = {}
    parts = {g: _component(g, container.get(g), given, ignored) for g in GROUPS}
    parts["logger"].build()  # a tracker's factory checks that its library is installed (ConfigError naming the extra)
    budget = parts["budget"].build()
    trainer = parts["trainer"].build()
    budget.check()
    trainer.check()
    parts["strategy"].cls.check_settings(parts["strategy"].params, trainer)
    for key, value in ignored.items():
        log.warning("%s=%r (set by a preset) does not apply to %s=%s; ignored", key, value, key.split(".")[0],
                    parts[key.split(".")[0]].name)
    return RunConfig(name=container["name"], seed=container["seed"], out_root=container["out_root"],
                     dataset=parts["dataset"], model=parts["model"], strategy=parts["strategy"], budget=budget,
                     trainer=trainer, record=container, ignored=ignored, logger=parts["logger"])


def _resolve(cfg: DictConfig) -> dict:
    if "hydra" in cfg:  # a sweep job's config carries Hydra's own node: not ours to check
        cfg = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    try:
        container = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except MissingMandatoryValue as exc:
        key = getattr(exc, "full_key", None) or "a value"
        raise ConfigError(f"{key} is required here and has no value; give it on the command line ({key}=...)") from None
    except InterpolationResolutionError as exc:
        raise ConfigError(f"cannot resolve {getattr(exc, 'full_key', '')}: {str(exc).splitlines()[0]}") from None
    container.pop("hydra", None)
    return container


def _command_line_keys(overrides: typing.Iterable[str]) -> set[str]:
    keys = set()
    for text in overrides:
        key = str(text).split("=", 1)[0].lstrip("+~")
        keys.add(key)
    return keys


def _component(group: str, node, given: set[str], ignored: dict) -> Component:
    if not isinstance(node, dict) or "_target_" not in node:
        raise ConfigError(f"{group} is not a config group option here (got {node!r}); choose one: {group}=NAME")
    params = dict(node)
    target = params.pop("_target_")
    name = str(params.pop("name", group))
    fields = _schema(target, BUILD_ARGS.get(group, ()))
    for key in sorted(set(params) - set(fields)):
        full = f"{group}.{key}"
        others = _group_keys(group)
        if full in given or any(g.startswith(full + ".") for g in given) or key not in others:
            accepts = f"it accepts: {', '.join(sorted(fields))}" if fields else "it takes no options"
            raise ConfigError(f"unknown option {full}={params[key]!r} for {group}={name}; {accepts}")
        ignored[full] = params.pop(key)
    values = {}
    for key, (annotation, default) in fields.items():
        if key not in params:
            if default is inspect.Parameter.empty:
                raise ConfigError(f"{group}.{key} is required for {group}={name}; give it as {group}.{key}=...")
            continue
        values[key] = _check(f"{group}.{key}", params[key], annotation)
    return Component(group, name, target, values)


def _check(key: str, value, annotation):
    try:
        return TypeAdapter(annotation, config=STRICT).validate_python(value)
    except ValidationError:
        raise ConfigError(f"{key}={_show(value)} is not accepted: expected {describe(annotation)}") from None


def _show(value) -> str:
    return repr(value) if isinstance(value, str) else str(value).replace("True", "true").replace("False", "false") \
        .replace("None", "null")


def _locate(target: str):  # not cached: a test's (or a plugin's) replacement of the target must be seen
    import importlib

    module, _, attr = target.rpartition(".")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"_target_ {target!r} cannot be imported ({exc})") from None


def _schema(target: str, build_args: tuple[str, ...] = ()) -> dict[str, tuple[Any, Any]]:
    """{argument: (annotation, default)} of a `_target_`: a function, a class or a dataclass;
    `build_args` are given when building, not by the config."""
    obj = _locate(target)
    if dataclasses.is_dataclass(obj):
        hints = typing.get_type_hints(obj, include_extras=True)
        out = {}
        for f in dataclasses.fields(obj):
            default = f.default if f.default is not dataclasses.MISSING else (
                f.default_factory() if f.default_factory is not dataclasses.MISSING else inspect.Parameter.empty)
            out[f.name] = (hints.get(f.name, Any), default)
        return out
    fn = obj.__init__ if inspect.isclass(obj) else obj
    hints = typing.get_type_hints(fn, include_extras=True)
    out = {}
    for name, p in inspect.signature(fn).parameters.items():
        if name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or name in build_args:
            continue
        out[name] = (hints.get(name, Any), p.default)
    return out


@cache
def _group_keys(group: str) -> frozenset[str]:
    """Every key that some option of `group` sets in its conf/<group>/*.yaml."""
    keys: set[str] = set()
    folder = resources.files("al_bench.conf") / group
    for item in folder.iterdir():
        if item.name.endswith(".yaml"):
            node = OmegaConf.create(item.read_text())
            keys |= {k for k in node if k not in ("defaults", "name", "_target_")}
    return frozenset(keys)


def describe(annotation) -> str:
    """What a type annotation accepts, in words: "an integer >= 1", "one of fp32, bf16"."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        base, *meta = args
        bounds = [_bound(m) for m in meta]
        bounds = [b for b in bounds if b]
        return describe(base) + (" " + " and ".join(bounds) if bounds else "")
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in args)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        parts = [describe(a) for a in args if a is not type(None)]
        if type(None) in args:
            parts.append("null")
        return " or ".join(parts)
    if origin in (list, tuple):
        return f"a list, each {describe(args[0])}" if origin is list and args else "a list"
    if origin is dict or annotation is dict:
        return "a mapping {key: value, ...}"
    names = {bool: "true or false", int: "an integer", float: "a finite number", str: "a string"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _bound(meta) -> str:
    for cls, sym in ((annotated_types.Ge, ">="), (annotated_types.Gt, ">"), (annotated_types.Le, "<="),
                     (annotated_types.Lt, "<")):
        if isinstance(meta, cls):
            value = next(iter(dataclasses.asdict(meta).values()))
            return f"{sym} {value}"
    return ""

