"""The conditional generator, label-conditioned encoder and sampler of ARAL (Mottaghi & Yeung,
arXiv:1912.09720; layout of the authors' cifar_model.py, samottaghi/adversarial-representation-active-learning,
itself from the bad-GAN code of Dai et al.).

At 32x32 the layers are the authors' (`Generator(large=False)`, `Encoder(output_params=True)`,
`Sampler`), built in their order with their initialisation, so that `torch.manual_seed` gives the
same weights as their classes:
- generator G(z, y): [z (100, uniform), one-hot y] -> linear (no bias) -> 512 x 4 x 4, batch norm,
  ReLU; two 5x5 stride-2 transposed convolutions (256, 128; batch norm, ReLU); a weight-normalised
  5x5 stride-2 transposed convolution to the image channels and tanh;
- encoder E(x): the image plus one constant "label" plane -> three 5x5 stride-2 convolutions (128,
  256, 512; batch norm, ReLU) -> a weight-normalised linear layer to (mu, log sigma) of 100 each;
- sampler S(mu): 100 -> 512 -> 512 -> 512 -> 512 -> 1, ReLUs, sigmoid (PyTorch's default init).
Weight normalisation is theirs: w * g / sqrt(sum w^2 + 1e-6) over all but the output dimension,
w ~ N(0, 0.05), zero bias, g = 1 (trainable in these two layers); their data-dependent init mode is
never switched on by ARAL's trainer, so it is left out.
Other image sizes keep the rule that gives this layout (ours): log2(S) - 2 up-samplings from 4x4
and as many down-samplings to 4x4, channels width x 2^i; a size that is not a power of two (or is
below 8) is zero-padded to one and the output cropped back, as in al_bench.models.vae.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from al_bench.models.vae import padded_size


def _wn_scale(out_features: int, trainable: bool) -> torch.Tensor:
    return nn.Parameter(torch.ones(out_features)) if trainable else torch.ones(out_features)


class WNLinear(nn.Linear):
    """Weight-normalised linear layer (the authors' WN_Linear)."""

    def __init__(self, in_features: int, out_features: int, train_scale: bool = True):
        super().__init__(in_features, out_features)
        if train_scale:
            self.weight_scale = _wn_scale(out_features, True)
        else:
            self.register_buffer("weight_scale", _wn_scale(out_features, False))
        self.weight.data.normal_(0, 0.05)
        self.bias.data.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = torch.sqrt(self.weight.pow(2).sum(1, keepdim=True) + 1e-6)
        return nn.functional.linear(x, self.weight * (self.weight_scale[:, None] / norm), self.bias)


class WNConvTranspose2d(nn.ConvTranspose2d):
    """Weight-normalised transposed convolution (the authors' WN_ConvTranspose2d); weight (in, out, kh, kw)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, padding: int, output_padding: int,
                 train_scale: bool = True):
        super().__init__(cin, cout, kernel, stride, padding, output_padding)
        if train_scale:
            self.weight_scale = _wn_scale(cout, True)
        else:
            self.register_buffer("weight_scale", _wn_scale(cout, False))
        self.weight.data.normal_(std=0.05)
        self.bias.data.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = torch.sqrt(self.weight.pow(2).sum(dim=(0, 2, 3), keepdim=True) + 1e-6)
        w = self.weight * (self.weight_scale[None, :, None, None] / norm)
        return nn.functional.conv_transpose2d(x, w, self.bias, self.stride, self.padding, self.output_padding)


def _stages(image_size: int) -> tuple[int, int]:
    """(working size, number of 2x resamplings between it and 4x4)."""
    size = max(8, padded_size(image_size))
    return size, int(math.log2(size)) - 2


class ConditionalGenerator(nn.Module):
    """(noise (N, noise_size), class labels (N,) or a (N, K) label vector) -> images in [-1, 1]."""

    def __init__(self, image_size: int = 32, out_channels: int = 3, noise_size: int = 100, num_classes: int = 10,
                 width: int = 128):
        super().__init__()
        self.image_size, self.num_classes = int(image_size), num_classes
        self.size, ups = _stages(image_size)
        c = width * 2 ** (ups - 1)
        layers: list[nn.Module] = [nn.Linear(noise_size + num_classes, c * 16, bias=False), nn.BatchNorm1d(c * 16),
                                   nn.ReLU(), nn.Unflatten(1, (c, 4, 4))]
        for _ in range(ups - 1):
            layers += [nn.ConvTranspose2d(c, c // 2, 5, 2, 2, 1, bias=False), nn.BatchNorm2d(c // 2), nn.ReLU()]
            c //= 2
        layers += [WNConvTranspose2d(c, out_channels, 5, 2, 2, 1), nn.Tanh()]
        self.core_net = nn.Sequential(*layers)

    def forward(self, noise: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        if label.dim() == 1:
            label = nn.functional.one_hot(label.long(), self.num_classes)
        out = self.core_net(torch.cat([noise, label.reshape(-1, self.num_classes).to(noise.dtype)], 1))
        if self.size == self.image_size:
            return out
        lo = (self.size - self.image_size) // 2
        return out[:, :, lo:lo + self.image_size, lo:lo + self.image_size]


class LabelEncoder(nn.Module):
    """(images, label plane value per image or None = 0) -> (mu, log sigma), each (N, noise_size)."""

    def __init__(self, image_size: int = 32, in_channels: int = 3, noise_size: int = 100, width: int = 128):
        super().__init__()
        self.image_size = int(image_size)
        self.size, downs = _stages(image_size)
        layers: list[nn.Module] = []
        cin = in_channels + 1
        for i in range(downs):
            cout = width * 2 ** i
            layers += [nn.Conv2d(cin, cout, 5, 2, 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]
            cin = cout
        layers += [nn.Flatten(), WNLinear(cin * 16, 2 * noise_size)]
        self.core_net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, plane: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        extra = self.size - self.image_size
        if extra:
            x = nn.functional.pad(x, (extra // 2, extra - extra // 2, extra // 2, extra - extra // 2))
        value = torch.zeros(len(x), device=x.device, dtype=x.dtype) if plane is None else plane.to(x.dtype)
        x = torch.cat([x, value[:, None, None, None].expand(-1, 1, self.size, self.size)], 1)
        return self.core_net(x).chunk(2, 1)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The scoring pass (the authors' `eval2`: the pool's integer labels give a zero plane)."""
        return self(x)


class Sampler(nn.Module):
    """mu -> probability that the image is labeled, (N,)."""

    def __init__(self, noise_size: int = 100, hidden: int = 512, depth: int = 4):
        super().__init__()
        layers: list[nn.Module] = []
        width = noise_size
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.ReLU(True)]
            width = hidden
        self.core_net = nn.Sequential(*layers, nn.Linear(width, 1), nn.Sigmoid())

    def forward(self, mu: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        return self.core_net(mu).squeeze(1)
