"""The device-side augmentation draws from torchvision's RandomCrop(32, padding=4) +
RandomHorizontalFlip distribution, view for view, and Normalize equals ToTensor + Normalize."""

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.stats import chisquare
from torchvision.transforms import functional as TF

from al_bench.data.augment import Normalize, crop_flip, random_crop_flip

PAD = 4
SIZE = 32


def coded_image() -> torch.Tensor:
    """A 32x32x3 uint8 image whose pixels are all distinct and non-zero: R = row + 1, G = col + 1,
    B = 200; so every crop offset and flip gives a different view."""
    r = torch.arange(1, SIZE + 1, dtype=torch.uint8)
    img = torch.empty(SIZE, SIZE, 3, dtype=torch.uint8)
    img[..., 0] = r[:, None]
    img[..., 1] = r[None, :]
    img[..., 2] = 200
    return img


def torchvision_view(img: torch.Tensor, dy: int, dx: int, flipped: bool) -> torch.Tensor:
    """torchvision's RandomCrop(32, padding=4) + RandomHorizontalFlip at fixed offsets, on the
    PIL image (as a reference pipeline applies them), back to uint8 HWC."""
    pil = Image.fromarray(img.numpy())
    out = TF.crop(TF.pad(pil, PAD, fill=0), dy, dx, SIZE, SIZE)
    if flipped:
        out = TF.hflip(out)
    return torch.from_numpy(np.asarray(out).copy())


def all_views(img: torch.Tensor) -> torch.Tensor:
    """(162, 32, 32, 3): view v = (dy * 9 + dx) * 2 + flipped."""
    n = 2 * PAD + 1
    return torch.stack([torchvision_view(img, dy, dx, f) for dy in range(n) for dx in range(n) for f in (False, True)])


def test_one_view_equals_torchvision_functional_crop_and_flip():
    img = coded_image()
    x = img[None].repeat(4, 1, 1, 1)
    dy, dx = torch.tensor([0, 3, 8, 5]), torch.tensor([8, 0, 2, 4])
    flipped = torch.tensor([False, True, True, False])
    out = crop_flip(x, dy, dx, flipped, PAD)
    for i in range(4):
        want = torchvision_view(img, int(dy[i]), int(dx[i]), bool(flipped[i]))
        assert torch.equal(out[i], want), i
    # the corner of offset (0, 8) is padding: zeros in the first 4 rows, last 4 columns of view 0
    assert out[0, :PAD].eq(0).all() and out[0, :, -PAD:].eq(0).all() and out[0, PAD:, :-PAD].ne(0).all()


def test_every_view_is_reachable_and_about_uniform():
    img = coded_image()
    index = {v.numpy().tobytes(): i for i, v in enumerate(all_views(img))}
    assert len(index) == 162  # the coding makes all views distinct
    copies = 162 * 100
    gen = torch.Generator().manual_seed(1234)
    out = random_crop_flip(img[None].expand(copies, -1, -1, -1), PAD, True, gen)
    # identify each output exactly: its index among torchvision's 162 views
    found = [index.get(v.numpy().tobytes(), -1) for v in out]
    assert min(found) >= 0, "an augmented image is none of torchvision's views"
    counts = np.bincount(found, minlength=162)
    assert (counts > 0).all()
    assert chisquare(counts).pvalue > 1e-3  # fixed seed: deterministic; 100 expected per view


def test_flip_off_and_no_padding():
    img = coded_image()
    gen = torch.Generator().manual_seed(0)
    out = random_crop_flip(img[None].expand(64, -1, -1, -1), PAD, False, gen)
    for v in out:  # never flipped: G (column code) increases left to right where not padding
        g = v[..., 1].int()
        nz = g != 0
        assert (g[:, 1:] - g[:, :-1])[nz[:, 1:] & nz[:, :-1]].eq(1).all()
    same = random_crop_flip(img[None], 0, False, gen)
    assert torch.equal(same[0], img)


def test_offsets_and_flips_are_independent_per_image():
    gen = torch.Generator().manual_seed(7)
    img = coded_image()
    out = random_crop_flip(img[None].expand(2000, -1, -1, -1), PAD, True, gen)
    # the view's top-left pixel says its offset when not padding: rows from R, cols from G
    flipped = out[:, PAD + 4, PAD + 4, 1].int() > out[:, PAD + 4, PAD + 5, 1].int()
    dy = out[:, PAD + 4, PAD + 4, 0].int() - 1 - 4  # R = source row + 1; source row = dy + 8 - PAD
    assert dy.min() == 0 and dy.max() == 2 * PAD
    assert 0.45 < flipped.float().mean() < 0.55
    # flips and row offsets uncorrelated
    assert abs(np.corrcoef(flipped.numpy(), dy.numpy())[0, 1]) < 0.08


def test_normalize_equals_to_tensor_and_normalize():
    from torchvision import transforms as T

    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (3, 8, 8, 3), dtype=torch.uint8, generator=gen)
    mean, std = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)
    ref = torch.stack([T.Normalize(mean, std)(T.ToTensor()(Image.fromarray(im.numpy()))) for im in x])
    for channels_last in (True, False):
        out = Normalize(mean, std, "cpu", channels_last=channels_last)(x)
        assert out.shape == (3, 3, 8, 8) and out.dtype == torch.float32
        assert torch.allclose(out, ref, atol=1e-5)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        assert out.is_contiguous(memory_format=fmt)


@pytest.mark.parametrize("channels", [1, 3])
def test_crop_flip_keeps_shape_dtype_and_channels(channels):
    x = torch.randint(0, 256, (5, 8, 8, channels), dtype=torch.uint8)
    out = random_crop_flip(x, 2, True, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == torch.uint8
