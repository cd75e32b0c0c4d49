"""On a CUDA device (skipped where there is none): a run trains and selects there with the fast
defaults recorded, an interrupted run resumes to the uninterrupted result, a model's predictions
there equal its CPU predictions up to TF32/bf16 rounding, and gradnorm's two engines agree.

The rest of the suite also runs on the GPU when there is one (trainer.device=auto in the smoke
preset); scripts/gpu_checks.sh runs the whole suite there."""

import json

import numpy as np
import pytest
import torch
from conftest import SMOKE, run_al, run_interrupted_and_resumed

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

CUDA = SMOKE + ["trainer.device=cuda"]


def test_a_run_trains_and_selects_on_the_gpu_with_the_fast_defaults(tmp_path):
    metrics = run_al(CUDA + ["strategy=lloss", "budget.cycles=2"], tmp_path)
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["device"].startswith("cuda")
    want = "fp32" if torch.cuda.get_device_capability()[0] >= 8 else "fp16"
    assert record["derived"]["precision"] == want and record["derived"]["channels_last"] is True
    assert [m["cycle"] for m in metrics] == [0, 1]
    assert all(0.0 <= m["accuracy"] <= 1.0 for m in metrics)
    assert metrics[1]["n_labeled"] > metrics[0]["n_labeled"]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("warm", [False, True])
def test_an_interrupted_run_resumes_to_the_uninterrupted_result_on_the_gpu(precision, warm, tmp_path, monkeypatch):
    """The promise of the run directory on a GPU too. cuDNN may pick non-deterministic kernels, so
    this checks that the resumed run reproduces the uninterrupted one on the same device."""
    args = CUDA + ["strategy=entropy", "budget.cycles=3", f"trainer.precision={precision}",
                   f"trainer.warm_start={str(warm).lower()}"]
    whole, resumed = run_interrupted_and_resumed(args, tmp_path, monkeypatch)
    assert resumed == whole


def test_predictions_on_the_gpu_equal_those_on_the_cpu():
    from al_bench.models.resnet import ResNet18

    torch.manual_seed(0)
    model = ResNet18(10, width=16).eval()
    x = torch.rand(64, 3, 32, 32)
    with torch.no_grad():
        cpu = model(x).logits.softmax(1)
        gpu = model.cuda()(x.cuda()).logits.softmax(1).cpu()
    # fp32 on both; cuDNN may use TF32 for convolutions: about 1e-3 relative on logits
    assert torch.allclose(gpu, cpu, atol=2e-3)
    assert (gpu.argmax(1) == cpu.argmax(1)).float().mean() > 0.95


def test_gradnorm_engines_agree_on_the_gpu():
    from al_bench.models.resnet import ResNet18
    from al_bench.strategies.gradnorm import full_gradnorm

    torch.manual_seed(0)
    model = ResNet18(10, width=8).cuda().eval()
    x = torch.rand(12, 3, 32, 32, device="cuda")
    a = full_gradnorm(model, x, engine="vmap")
    b = full_gradnorm(model, x, engine="loop")
    assert torch.allclose(a, b, rtol=1e-3, atol=1e-5)
    assert np.argsort(a.cpu().numpy()).tolist() == np.argsort(b.cpu().numpy()).tolist()
