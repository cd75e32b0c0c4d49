"""Every option of every config group composes, and instantiates into the right object."""

from pathlib import Path

import pytest
import torch
from conftest import load_cfg, make_cfg
from hydra.utils import get_method

from al_bench import ConfigError
from al_bench.models.base import Backbone, ModelOutput
from al_bench.strategies.base import Strategy

CONF = Path(__file__).resolve().parents[1] / "conf"


def options(group):
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def test_config_groups_have_the_issue_options():
    assert {"cifar10", "cifar100", "svhn", "mnist", "fashion_mnist", "imagefolder", "digits", "synthetic"} <= set(options("dataset"))
    assert {"resnet18", "vgg16", "small_cnn"} <= set(options("model"))
    assert {"random", "entropy", "least_confidence", "margin", "coreset"} <= set(options("strategy"))
    assert {"paper"} <= set(options("budget")) and {"paper", "cpu"} <= set(options("trainer"))
    assert "quickstart" in options("experiment")


def test_default_is_the_paper_setup_on_cifar10_with_random():
    cfg = make_cfg()
    assert cfg.dataset.name == "cifar10" and cfg.model.name == "resnet18" and cfg.strategy.name == "random"
    assert (cfg.budget.initial, cfg.budget.step, cfg.budget.cycles, cfg.budget.subset) == (1000, 1000, 10, 10000)
    t = cfg.trainer
    assert (t.epochs, t.batch_size, t.lr, t.momentum, t.weight_decay, list(t.milestones), t.gamma) == \
        (200, 128, 0.1, 0.9, 5e-4, [160], 0.1)


@pytest.mark.parametrize("option", options("strategy"))
def test_every_strategy_instantiates(option):
    cfg = make_cfg([f"strategy={option}"])
    assert cfg.strategy.name == option  # CLI word == yaml name == module name
    assert cfg.strategy._target_.split(".")[-2] == option
    assert isinstance(load_cfg([f"strategy={option}"]).strategy.build(), Strategy)


@pytest.mark.parametrize("option", options("model"))
def test_every_model_instantiates_and_returns_stages(option):
    channels = 1 if option == "small_cnn" else 3
    model = load_cfg([f"model={option}"]).model.build(num_classes=7, in_channels=channels)
    assert isinstance(model, Backbone)
    out = model(torch.zeros(2, channels, 32, 32))
    assert isinstance(out, ModelOutput) and out.logits.shape == (2, 7)
    assert [s.shape[1] for s in out.stages] == list(model.stage_channels) and len(out.stages) == 4
    assert out.embedding.shape == (2, model.embed_dim)


def test_resnet18_stage_shapes_are_the_paper_ones():
    model = load_cfg().model.build(num_classes=10, in_channels=3)
    out = model(torch.zeros(1, 3, 32, 32))
    assert [tuple(s.shape[1:]) for s in out.stages] == [(64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4)]


@pytest.mark.parametrize("option", options("dataset"))
def test_every_dataset_composes_to_a_loader(option, tmp_path):
    overrides = [f"dataset={option}"]
    if option == "imagefolder":
        overrides.append(f"dataset.root={tmp_path}")
    cfg = make_cfg(overrides)
    assert cfg.dataset.name == option
    assert callable(get_method(cfg.dataset._target_))


@pytest.mark.parametrize("option", ["cifar10", "cifar100", "svhn", "mnist", "fashion_mnist"])
def test_torchvision_dataset_missing_offline_gives_one_clear_line(option, tmp_path):
    cfg = load_cfg([f"dataset={option}", f"dataset.root={tmp_path / 'nowhere'}", "dataset.download=false"])
    with pytest.raises(ConfigError) as err:
        cfg.dataset.build()
    assert "dataset.root" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("option", options("budget") + options("trainer"))
def test_budget_and_trainer_presets_compose(option):
    group = "budget" if (CONF / "budget" / f"{option}.yaml").exists() else "trainer"
    cfg = make_cfg([f"{group}={option}"])
    assert cfg[group].name == option


@pytest.mark.parametrize("option", options("experiment"))
def test_every_experiment_composes(option):
    cfg = make_cfg([f"experiment={option}"])
    if option != "mc_dropout":  # mc_dropout modifies another setup; the others name their output tree
        assert cfg.name == option
    else:
        assert cfg.model.dropout > 0


def test_preset_knobs_of_another_strategy_do_not_apply_and_are_recorded(caplog):
    assert make_cfg(["experiment=ll4al_reference_impl", "strategy=random"]).strategy.detach_rule == "gt"  # merged
    cfg = load_cfg(["experiment=ll4al_reference_impl", "strategy=random"])
    assert type(cfg.strategy.build()).__name__ == "Random"  # ...and left out when building random
    assert cfg.ignored == {"strategy.detach_rule": "gt", "strategy.pairing": "mirror", "strategy.odd_batch": "error"}
    assert "does not apply to strategy=random" in caplog.text
    assert load_cfg(["experiment=ll4al_reference_impl"]).ignored == {}


def test_mc_dropout_strategy_without_dropout_is_refused_before_training(tmp_path):
    from conftest import SMOKE, run_al

    with pytest.raises(ConfigError, match="model.dropout"):
        run_al((SMOKE + ["strategy=bald"]), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_only_cli_and_config_import_hydra_or_omegaconf():
    """Hydra stays in cli.py and config.py: everything below takes plain values."""
    import re

    package = Path(__file__).resolve().parents[1] / "al_bench"
    pattern = re.compile(r"^\s*(import|from)\s+(hydra|omegaconf)\b", re.M)
    offenders = sorted(str(p.relative_to(package)) for p in package.rglob("*.py")
                       if p.name not in ("cli.py", "config.py") and pattern.search(p.read_text()))
    assert offenders == []
