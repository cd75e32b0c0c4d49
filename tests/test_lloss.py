"""Learning loss (Yoo & Kweon 2019): answers computed by hand."""

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import load_cfg, make_cfg

from al_bench.models.resnet import ResNet18
from al_bench.models.small_cnn import SmallCNN
from al_bench.strategies.base import SelectionContext
from al_bench.strategies.lloss import LearningLoss, make_pairs, ranking_accuracy, ranking_loss
from al_bench.training import TrainSettings, lr_at_epoch


def test_ranking_loss_of_a_hand_computed_batch():
    pred = torch.tensor([0.5, 0.2, 0.1, 0.9])
    true = torch.tensor([2.0, 1.0, 3.0, 0.0])
    # halves: pairs (0,2), (1,3).
    # (0,2): l0 < l2 -> A = -1 -> max(0, +(0.5 - 0.1) + 1) = 1.4
    # (1,3): l1 > l3 -> A = +1 -> max(0, -(0.2 - 0.9) + 1) = 1.7
    assert ranking_loss(pred, true, margin=1.0, pairing="halves").item() == pytest.approx((1.4 + 1.7) / 2)
    # mirror: pairs (0,3), (1,2).
    # (0,3): l0 > l3 -> A = +1 -> max(0, -(0.5 - 0.9) + 1) = 1.4
    # (1,2): l1 < l2 -> A = -1 -> max(0, (0.2 - 0.1) + 1) = 1.1
    assert ranking_loss(pred, true, margin=1.0, pairing="mirror").item() == pytest.approx((1.4 + 1.1) / 2)
    # margin 0 and a perfectly ordered, well separated prediction: no loss
    assert ranking_loss(true * 10, true, margin=0.0).item() == 0.0


def test_ranking_loss_counts_ties_as_minus_one_and_treats_true_loss_as_constant():
    pred = torch.tensor([0.3, 0.0], requires_grad=True)
    true = torch.tensor([1.0, 1.0], requires_grad=True)
    loss = ranking_loss(pred, true, margin=1.0)
    # tie -> A = -1 -> max(0, (0.3 - 0.0) + 1) = 1.3
    assert loss.item() == pytest.approx(1.3)
    loss.backward()
    assert true.grad is None and pred.grad.tolist() == [1.0, -1.0]


def test_odd_batch_behaviour_is_defined():
    assert [t.tolist() for t in make_pairs(5, "halves", "drop_last")] == [[0, 1], [2, 3]]  # sample 4 left out
    assert [t.tolist() for t in make_pairs(5, "mirror", "drop_last")] == [[0, 1], [4, 3]]  # middle sample 2 left out
    with pytest.raises(ValueError, match="odd batch"):
        make_pairs(5, "mirror", "error")
    pred, true = torch.tensor([0.0, 0.0, 0.0, 0.0, 50.0]), torch.tensor([1.0, 2.0, 3.0, 4.0, 0.0])
    # the last sample (a huge wrong prediction) is ignored: pairs (0,2), (1,3), both A = -1 -> 1 each
    assert ranking_loss(pred, true, 1.0, "halves", "drop_last").item() == pytest.approx(1.0)


def test_ranking_accuracy_counts_ordered_pairs():
    true = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert ranking_accuracy(true.clone(), true) == 1.0
    assert ranking_accuracy(-true, true) == 0.0
    # one of the six pairs, (1, 2), is swapped
    assert ranking_accuracy(torch.tensor([1.0, 3.0, 2.0, 4.0]), true) == pytest.approx(5 / 6)
    # tied scores count one half; pairs with tied true losses are left out
    assert ranking_accuracy(torch.tensor([0.0, 0.0]), torch.tensor([1.0, 2.0])) == 0.5
    assert ranking_accuracy(torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 1.0, 2.0])) == 1.0
    assert np.isnan(ranking_accuracy(torch.tensor([3.0, 1.0]), torch.tensor([2.0, 2.0])))  # no pair counts


def _pairwise_ranking_accuracy(score, true):
    """The definition, pair by pair: O(n^2), the reference for the sorting count."""
    agree = total = 0.0
    for i in range(len(true)):
        for j in range(i + 1, len(true)):
            if true[i] == true[j]:
                continue
            total += 1
            same = (score[i] - score[j]) * (true[i] - true[j])
            agree += 1.0 if same > 0 else 0.5 if score[i] == score[j] else 0.0
    return agree / total if total else float("nan")


@pytest.mark.parametrize("levels", [None, 3, 7])  # continuous values, or few distinct values: many ties
@pytest.mark.parametrize("n", [2, 3, 17, 64, 150])
def test_ranking_accuracy_equals_the_pairwise_count(n, levels):
    g = torch.Generator().manual_seed(n * 10 + (levels or 0))
    s, t = torch.randn(n, generator=g), torch.randn(n, generator=g)
    if levels:
        s, t = torch.randint(levels, (n,), generator=g).double(), torch.randint(levels, (n,), generator=g).double()
    expected = _pairwise_ranking_accuracy(s.tolist(), t.tolist())
    assert ranking_accuracy(s, t) == pytest.approx(expected, abs=1e-12, nan_ok=True)


def test_ranking_accuracy_is_exact_on_200k_samples():
    """At n = 200,000 (2e10 pairs; the pairwise count would take minutes) the sorting count stays
    exact: scores = true losses with the order of the top half's pairs reversed in known blocks."""
    n = 200_000
    true = torch.arange(n, dtype=torch.float64)
    score = true.clone()
    score[: n // 2] = score[: n // 2].flip(0)  # the first half reversed: all its C(n/2, 2) pairs discordant
    half = n // 2
    expected = 1.0 - (half * (half - 1) / 2) / (n * (n - 1) / 2)
    assert ranking_accuracy(score, true) == pytest.approx(expected, abs=1e-12)


def setup_plugin(strategy, model, epochs=200):
    """The strategy's training plugin, set up for one cycle of `epochs` epochs."""
    plugin = strategy.train_plugin()
    ctx = SimpleNamespace(settings=TrainSettings(epochs=epochs), device=torch.device("cpu"))
    plugin.setup(model, ctx, warm_start=False)
    return plugin


def _grads_after_lpl_loss(rule, epoch, epochs=200, **knobs):
    torch.manual_seed(0)
    model = SmallCNN(num_classes=3, in_channels=3, width=8)
    plugin = setup_plugin(LearningLoss(detach_rule=rule, feature_dim=8, **knobs), model, epochs)
    out = model(torch.randn(8, 3, 8, 8))
    target = torch.nn.functional.cross_entropy(out.logits, torch.arange(8) % 3, reduction="none")
    plugin.loss(out, target, SimpleNamespace(epoch=epoch)).backward()  # the loss-prediction loss alone
    backbone = sum(p.grad.abs().sum().item() for p in model.parameters() if p.grad is not None)
    module = sum(p.grad.abs().sum().item() for p in plugin.module.parameters() if p.grad is not None)
    return backbone, module


def test_lpl_gradient_reaches_the_backbone_before_the_detach_epoch_and_is_zero_after():
    before, module_before = _grads_after_lpl_loss("ge", 119)  # detach_at 0.6 of 200 epochs: epoch 120
    after, module_after = _grads_after_lpl_loss("ge", 120)
    assert before > 0 and module_before > 0
    assert after == 0.0 and module_after > 0  # the module keeps learning from detached features
    # the public code's rule `epoch > 120`: epoch 120 is still joint, 121 is not
    assert _grads_after_lpl_loss("gt", 120)[0] > 0
    assert _grads_after_lpl_loss("gt", 121)[0] == 0.0
    # an explicit detach_epoch names the epoch whatever the schedule
    assert _grads_after_lpl_loss("ge", 6, detach_epoch=7)[0] > 0
    assert _grads_after_lpl_loss("ge", 7, detach_epoch=7)[0] == 0.0


@pytest.mark.parametrize("epochs, joint", [(200, 120), (30, 18), (20, 12), (12, 7), (15, 9)])
def test_the_detach_point_is_a_fraction_of_training(epochs, joint):
    """trainer=cpu (30 epochs), the quickstart (20) and the CPU preset (12) detach at the paper's
    point of training, 120/200, instead of never."""
    assert _grads_after_lpl_loss("ge", joint - 1, epochs)[0] > 0
    assert _grads_after_lpl_loss("ge", joint, epochs)[0] == 0.0
    plugin = LearningLoss().train_plugin()
    assert plugin.describe(TrainSettings(epochs=epochs, milestones=[]))["lloss_joint_epochs"] == joint


def test_a_detach_epoch_past_training_is_refused():
    from al_bench import ConfigError

    with pytest.raises(ConfigError, match="strategy.detach_epoch=40 lies past trainer.epochs=30"):
        load_cfg(["trainer=cpu", "strategy=lloss", "strategy.detach_epoch=40"])
    assert load_cfg(["trainer=cpu", "strategy=lloss"]).strategy.params["detach_at"] == 0.6


def test_ranking_loss_of_a_single_sample_is_zero_not_nan():
    pred = torch.tensor([0.7], requires_grad=True)
    loss = ranking_loss(pred, torch.tensor([1.0]))
    assert loss.item() == 0.0
    loss.backward()
    assert pred.grad.tolist() == [0.0]


def test_scheduler_settings_give_160_40_and_159_41_epochs():
    paper = [lr_at_epoch(e, 0.1, [160], 0.1, "epoch_end") for e in range(200)]
    public = [lr_at_epoch(e, 0.1, [160], 0.1, "epoch_start") for e in range(200)]
    assert paper == [0.1] * 160 + [pytest.approx(0.01)] * 40
    assert public == [0.1] * 159 + [pytest.approx(0.01)] * 41


def test_scheduler_matches_torch_multisteplr_stepped_after_each_epoch():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[3, 5], gamma=0.1)
    seen = []
    for _ in range(7):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx([lr_at_epoch(e, 0.1, [3, 5], 0.1, "epoch_end") for e in range(7)])


def test_selection_takes_the_highest_predicted_losses():
    pred_loss = torch.tensor([0.3, 2.0, -1.0, 0.9, 1.5])

    def predictor(indices, mc_samples=0):
        return {"pred_loss": pred_loss[torch.as_tensor(indices)]}

    ctx = SelectionContext(model=None, pool=None, labeled=np.array([]), rng=np.random.default_rng(0),
                           device=torch.device("cpu"), predictor=predictor)
    assert LearningLoss().select(ctx, np.arange(5), 2).tolist() == [1, 4]
    assert LearningLoss().select(ctx, np.array([0, 2, 3]), 1).tolist() == [3]


def test_module_takes_channels_from_the_model_and_any_input_size():
    model = ResNet18(num_classes=10, width=8)
    plugin = setup_plugin(LearningLoss(), model)
    for size in (32, 48):
        out = model(torch.randn(4, 3, size, size))
        assert plugin.outputs(out)["pred_loss"].shape == (4,)
    assert [fc.in_features for fc in plugin.module.branches] == [8, 16, 32, 64]


def test_paper_preset_equals_the_papers_numbers():
    cfg = make_cfg(["experiment=ll4al_cifar10"])
    assert (cfg.dataset.name, cfg.model.name, cfg.strategy.name) == ("cifar10", "resnet18", "lloss")
    assert cfg.model.width == 64
    assert (cfg.budget.initial, cfg.budget.step, cfg.budget.cycles, cfg.budget.subset) == (1000, 1000, 10, 10000)
    t = cfg.trainer
    assert t.epochs == 200 and t.batch_size == 128 and t.lr == 0.1 and t.momentum == 0.9
    assert t.weight_decay == 5e-4 and list(t.milestones) == [160] and t.gamma == 0.1
    assert t.sched_step == "epoch_end" and t.warm_start is False
    assert t.augment and t.crop_padding == 4 and t.flip
    s = cfg.strategy
    assert s.margin == 1.0 and s.weight == 1.0 and s.detach_at * t.epochs == 120 and s.detach_rule == "ge"
    assert s.detach_epoch is None
    assert s.feature_dim == 128 and s.optimizer is None and s.scheduler is True


def test_reference_impl_preset_sets_the_public_codes_choices():
    cfg = make_cfg(["experiment=ll4al_reference_impl"])
    assert cfg.trainer.warm_start is True and cfg.trainer.sched_step == "epoch_start"
    assert cfg.strategy.detach_rule == "gt" and cfg.strategy.pairing == "mirror" and cfg.strategy.odd_batch == "error"
    assert cfg.trainer.epochs == 200 and cfg.budget.subset == 10000


def test_cpu_preset_keeps_the_fractions_of_training():
    cfg = make_cfg(["experiment=ll4al_cifar10_cpu"])
    epochs = cfg.trainer.epochs
    assert cfg.trainer.milestones[0] == round(epochs * 160 / 200)
    assert round(cfg.strategy.detach_at * epochs) == round(epochs * 120 / 200) == 7
    assert cfg.budget.subset >= cfg.budget.step


def test_lloss_run_records_ranking_accuracies(tmp_path):
    from conftest import SMOKE, read_metrics, run_al

    metrics = run_al(SMOKE + ["strategy=lloss", "strategy.detach_epoch=1"], tmp_path)
    assert len(metrics) == 2 and metrics == read_metrics(tmp_path)
    for m in metrics:
        assert 0.0 <= m["lpl_rank_acc"] <= 1.0 and 0.0 <= m["entropy_rank_acc"] <= 1.0


def test_gt_loss_oracle_takes_the_highest_true_losses():
    from types import SimpleNamespace

    from al_bench.strategies.gt_loss import GroundTruthLoss

    # pool labels all 0; the logits give p(class 0) high for 0 and 3, low for 1, lowest for 4
    logits = torch.tensor([[3.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 0.0], [0.0, 3.0]])

    def predictor(indices, mc_samples=0):
        return {"logits": logits[torch.as_tensor(indices)]}

    pool = SimpleNamespace(train_y=torch.zeros(5, dtype=torch.long))
    ctx = SelectionContext(model=None, pool=pool, labeled=np.array([]), rng=np.random.default_rng(0),
                           device=torch.device("cpu"), predictor=predictor)
    assert GroundTruthLoss().select(ctx, np.arange(5), 2).tolist() == [4, 1]
    assert GroundTruthLoss().select(ctx, np.array([0, 2, 3]), 1).tolist() == [2]


def test_the_paper_preset_trains_in_fp32_and_the_fast_one_says_so():
    paper, fast = load_cfg(["experiment=ll4al_cifar10"]), load_cfg(["experiment=ll4al_cifar10_fast"])
    assert (paper.trainer.precision, paper.trainer.channels_last) == ("fp32", False)
    assert (fast.trainer.precision, fast.trainer.channels_last) == ("auto", "auto")
    same = {k: v for k, v in paper.knobs.items() if k not in ("name", "trainer.precision", "trainer.channels_last")}
    assert same == {k: v for k, v in fast.knobs.items() if k in same}  # the same recipe otherwise
    assert load_cfg(["experiment=ll4al_cifar10_cpu"]).budget.n_labeled(3) == 2000


def test_normalisation_constants_replace_the_training_set_statistics():
    from al_bench import ConfigError
    from al_bench.data.synthetic import synthetic
    from al_bench.loop import _normalised

    ref = load_cfg(["experiment=ll4al_reference_impl"]).trainer
    assert (ref.norm_mean, ref.norm_std) == ([0.4914, 0.4822, 0.4465], [0.2023, 0.1994, 0.2010])
    pool = synthetic(n_train=16, n_test=8)
    assert _normalised(pool, TrainSettings()) is pool  # default: the pool's own statistics
    fixed = _normalised(pool, ref)
    assert fixed.mean == (0.4914, 0.4822, 0.4465) and fixed.std == (0.2023, 0.1994, 0.2010)
    with pytest.raises(ConfigError, match="norm_mean has 3 values but dataset synthetic has 1 channel"):
        _normalised(synthetic(n_train=16, n_test=8, channels=1), ref)
    with pytest.raises(ConfigError, match="must be given together"):
        load_cfg(["trainer.norm_mean=[0.5,0.5,0.5]"])


def test_deepalplus_preset_keeps_one_module_across_cycles_with_adam_without_weight_decay():
    from al_bench.training import fit

    cfg = load_cfg(["experiment=ll4al_deepalplus", "dataset=synthetic", "model=small_cnn"])
    t = cfg.trainer
    assert (t.epochs, t.optimizer, t.lr, t.weight_decay, t.milestones) == (50, "adam", 0.001, 0.0, [])
    plugin = cfg.strategy.build().train_plugin()
    assert plugin.joint_epochs(t.epochs) == 19 and plugin.detach_rule == "ge"
    pool = cfg.dataset.build()
    model = cfg.model.build(num_classes=pool.num_classes, in_channels=pool.in_channels)
    ctx = SimpleNamespace(settings=t, device=torch.device("cpu"))
    plugin.setup(model, ctx, warm_start=False)
    first = plugin.module
    plugin.setup(cfg.model.build(num_classes=pool.num_classes, in_channels=pool.in_channels), ctx, warm_start=False)
    assert plugin.module is first  # kept while the backbone is new
    seen = {}
    plugin.after_step = lambda step: seen.update(step.optimizers)
    fit(model, pool, np.arange(8), dataclasses.replace(t, epochs=1, batch_size=8, progress=False), torch.Generator(),
        plugin)
    assert type(seen["backbone"]).__name__ == "Adam" and type(seen["lossnet"]).__name__ == "Adam"
    assert seen["backbone"].param_groups[0]["weight_decay"] == 0.0 and seen["backbone"].param_groups[0]["lr"] == 0.001
    assert seen["lossnet"].param_groups[0]["weight_decay"] == 0.0 and seen["lossnet"].param_groups[0]["lr"] == 0.01
    # the paper's setting builds a new module each cycle
    paper = LearningLoss().train_plugin()
    paper.setup(model, ctx, warm_start=False)
    module = paper.module
    paper.setup(model, ctx, warm_start=False)
    assert paper.module is not module


def test_the_mse_ablation_equals_mse_for_small_errors_and_bounds_the_gradient_beyond():
    from al_bench.strategies.lloss import mse_loss

    true = torch.tensor([1.0, 2.0, 0.5, 4.0])
    pred = torch.tensor([1.5, 1.8, 0.6, 0.0], requires_grad=True)  # errors 0.5, -0.2, 0.1, -4.0
    plain = mse_loss(pred[:3], true[:3])
    assert mse_loss(pred[:3], true[:3], clip=1.0).item() == pytest.approx(plain.item())  # all within delta
    loss = mse_loss(pred, true, clip=1.0)
    assert loss.item() == pytest.approx((0.25 + 0.04 + 0.01 + 2 * (4.0 - 0.5)) / 4)
    loss.backward()
    assert pred.grad.tolist() == pytest.approx([2 * 0.5 / 4, 2 * -0.2 / 4, 2 * 0.1 / 4, -2.0 / 4])


@pytest.mark.parametrize("clip, diverges", [("1.0", False), ("null", True)])
def test_the_mse_ablation_runs_where_lloss_runs(tmp_path, clip, diverges):
    """experiment=quickstart: plain MSE blows up in cycle 0 (the module alone, at lr 0.05); the
    bounded version trains like lloss."""
    from conftest import run_al

    from al_bench.training import TrainingDiverged

    args = ["experiment=quickstart", "strategy=lloss_mse", "budget.cycles=1", f"strategy.mse_clip={clip}",
            "trainer.precision=fp32"]  # the fp32 claim; under bf16 autocast (AMX CPUs) plain MSE need not overflow
    if diverges:
        with pytest.raises(TrainingDiverged, match="plugin_loss is inf"):
            run_al(args, tmp_path)
    else:
        assert run_al(args, tmp_path)[0]["test_acc"] > 0.25
