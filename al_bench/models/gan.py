"""A DCGAN (Radford, Metz & Chintala, arXiv:1511.06434) for the query-synthesis strategies GAAL
(Zhu & Bento, arXiv:1702.07956) and ASAL (Mayer & Timofte, arXiv:1808.06671), which both train a
DCGAN on the pool's images.

For a 32x32 image the layers are the DCGAN layout at 32x32 px (z_dim 100, width 64): the
generator maps z (N, 100) through a 4x4 transposed convolution to 256 x 4 x 4 and three 4x4
stride-2 transposed convolutions (128, 64, then the image channels) to 32x32, batch norm and ReLU
between, tanh at the end; the discriminator mirrors it: three 4x4 stride-2 convolutions (64, 128,
256 channels; leaky ReLU 0.2, batch norm after all but the first) down to 4x4 and a 4x4
convolution to one logit. Other sizes keep the rule (ours): log2(P) - 2 up-samplings from 4x4 at
P, the next power of two (at least 8), generated images cropped back to the pool's size and pool
images zero-padded (in [-1, 1] space) for the discriminator. Weights are initialised the DCGAN
way: convolutions N(0, 0.02), batch-norm weights N(1, 0.02), biases 0.

Training (`train_gan`): the DCGAN paper's Adam (lr 2e-4, beta1 0.5), the non-saturating
generator loss, one discriminator and one generator step per batch, images scaled to [-1, 1],
z ~ N(0, I).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn


def gan_size(image_size: int) -> int:
    """The power of two (at least 8) the networks work at."""
    return max(8, 2 ** math.ceil(math.log2(image_size)))


def _dcgan_init(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class Generator(nn.Module):
    """z (N, z_dim) -> images (N, C, S, S) in [-1, 1]."""

    def __init__(self, image_size: int = 32, channels: int = 3, z_dim: int = 100, width: int = 64):
        super().__init__()
        self.image_size, self.size, self.z_dim = int(image_size), gan_size(image_size), z_dim
        ups = int(math.log2(self.size)) - 2
        c = width * 2 ** (ups - 1)
        layers: list[nn.Module] = [nn.ConvTranspose2d(z_dim, c, 4, 1, 0, bias=False), nn.BatchNorm2d(c), nn.ReLU(True)]
        for _ in range(ups - 1):
            layers += [nn.ConvTranspose2d(c, c // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(c // 2), nn.ReLU(True)]
            c //= 2
        layers += [nn.ConvTranspose2d(c, channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        _dcgan_init(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.net(z.reshape(z.shape[0], self.z_dim, 1, 1))
        if self.size == self.image_size:
            return x
        lo = (self.size - self.image_size) // 2
        return x[:, :, lo:lo + self.image_size, lo:lo + self.image_size]


class Discriminator(nn.Module):
    """images (N, C, S, S) in [-1, 1] -> logits (N,); `features` is the input of the last layer,
    flattened (width x 2^(stages-1) x 4 x 4: 4096 values at 32x32 px)."""

    def __init__(self, image_size: int = 32, channels: int = 3, width: int = 64):
        super().__init__()
        self.image_size, self.size = int(image_size), gan_size(image_size)
        downs = int(math.log2(self.size)) - 2
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]
        c = width
        for _ in range(downs - 1):
            layers += [nn.Conv2d(c, c * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(c * 2), nn.LeakyReLU(0.2, True)]
            c *= 2
        self.trunk = nn.Sequential(*layers)
        self.head = nn.Conv2d(c, 1, 4, 1, 0, bias=False)
        self.feature_dim = c * 16
        _dcgan_init(self)

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        extra = self.size - self.image_size
        return nn.functional.pad(x, (extra // 2, extra - extra // 2) * 2) if extra else x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(self._pad(x)).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(self._pad(x))).flatten()


def to_gan_space(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, H, W, C) -> float (N, C, H, W) in [-1, 1], the generator's output range."""
    return images.permute(0, 3, 1, 2).float().div(127.5).sub(1.0).contiguous()


def train_gan(gen: Generator, disc: Discriminator, images: torch.Tensor, steps: int, batch_size: int,
              lr: float, beta1: float, generator: torch.Generator) -> dict[str, float]:
    """`steps` DCGAN updates (one discriminator, one generator step each) on batches of the uint8
    images (N, H, W, C) drawn at random with replacement from `generator`; returns the last
    losses. Leaves both networks in eval mode."""
    dev = images.device
    opt_g = torch.optim.Adam(gen.parameters(), lr=lr, betas=(beta1, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=lr, betas=(beta1, 0.999))
    bce: Callable = nn.functional.binary_cross_entropy_with_logits
    gen.train()
    disc.train()
    loss_d = loss_g = torch.zeros(())
    for _ in range(steps):
        real = to_gan_space(images[torch.randint(images.shape[0], (batch_size,), device=dev, generator=generator)])
        z = torch.randn(batch_size, gen.z_dim, device=dev, generator=generator)
        fake = gen(z)
        out_real, out_fake = disc(real), disc(fake.detach())
        loss_d = bce(out_real, torch.ones_like(out_real)) + bce(out_fake, torch.zeros_like(out_fake))
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        out = disc(fake)
        loss_g = bce(out, torch.ones_like(out))  # non-saturating: G wants D to call its images real
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
    gen.eval()
    disc.eval()
    return {"gan_d_loss": float(loss_d.detach()), "gan_g_loss": float(loss_g.detach())}
