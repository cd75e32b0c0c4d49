"""The beta-VAE and the latent discriminator of VAAL (Sinha, Ebrahimi & Darrell, ICCV 2019,
arXiv:1904.00370; layout of the authors' model.py, sinhasam/vaal), with TA-VAAL's rank input
(Kim et al., arXiv:2002.04709; cubeyoung/TA-VAAL models/query_models.py) as `cond_dim`.

For a 32x32 image the layers are the authors': an encoder of four 4x4 stride-2 convolutions
(128, 256, 512, 1024 channels, batch norm, ReLU) down to 2x2, linear heads to mu and log-variance
(z_dim 32), a decoder from a linear layer to 1024 x 4 x 4 through three 4x4 stride-2 transposed
convolutions (512, 256, 128) and a 1x1 transposed convolution to the image channels; the
discriminator is z -> 512 -> 512 -> 1 with ReLUs and a sigmoid. Other sizes keep the rule that
produces this layout (ours): log2(S) - 1 encoder convolutions down to 2x2 (channels width x 2^i)
and log2(S) - 2 decoder up-samplings from 4x4, so an 8x8 image has a 128, 256 encoder and one
up-sampling from 256 x 4 x 4. A size that is not a power of two is zero-padded (in normalised
space) to the next one and the reconstruction cropped back, so the loss sees only real pixels.
Initialisation follows the authors' `kaiming_init`: He-normal convolution and linear weights
inside the encoder, decoder and discriminator, zero biases, batch-norm weight 1; the mu and
log-variance heads and the transposed convolutions keep PyTorch's defaults (the authors' loop
skips them).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def _he_init(seq: nn.Sequential) -> None:
    for m in seq:
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.kaiming_normal_(m.weight)
            if m.bias is not None:
                m.bias.data.zero_()
        elif isinstance(m, nn.BatchNorm2d):
            m.weight.data.fill_(1)
            m.bias.data.zero_()


def padded_size(image_size: int) -> int:
    """The power of two (at least 4) the VAE works at."""
    return max(4, 2 ** math.ceil(math.log2(image_size)))


class VAE(nn.Module):
    """x (N, C, S, S) -> (reconstruction, mu, logvar); with `cond_dim` > 0 the decoder also gets a
    condition (TA-VAAL's sigmoid of the predicted loss) appended to the sampled latent."""

    def __init__(self, image_size: int = 32, in_channels: int = 3, z_dim: int = 32, width: int = 128,
                 cond_dim: int = 0):
        super().__init__()
        self.image_size, self.size = int(image_size), padded_size(image_size)
        self.z_dim, self.cond_dim = z_dim, cond_dim
        downs = int(math.log2(self.size)) - 1  # to 2x2
        enc, cin = [], in_channels
        for i in range(downs):
            cout = width * 2 ** i
            enc += [nn.Conv2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True)]
            cin = cout
        self.encoder = nn.Sequential(*enc, nn.Flatten())
        self.fc_mu = nn.Linear(cin * 4, z_dim)
        self.fc_logvar = nn.Linear(cin * 4, z_dim)
        ups = downs - 1  # from 4x4
        self.start = width * 2 ** ups
        dec: list[nn.Module] = [nn.Linear(z_dim + cond_dim, self.start * 16), nn.Unflatten(1, (self.start, 4, 4))]
        c = self.start
        for _ in range(ups):
            dec += [nn.ConvTranspose2d(c, c // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(c // 2), nn.ReLU(True)]
            c //= 2
        dec.append(nn.ConvTranspose2d(c, in_channels, 1))
        self.decoder = nn.Sequential(*dec)
        _he_init(self.encoder)
        _he_init(self.decoder)

    def _pad(self) -> tuple[int, int]:
        extra = self.size - self.image_size
        return extra // 2, extra - extra // 2

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lo, hi = self._pad()
        if lo or hi:
            x = nn.functional.pad(x, (lo, hi, lo, hi))
        h = self.encoder(x)
        return self.fc_mu(h), self.fc_logvar(h)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None,
                generator: torch.Generator | None = None):
        mu, logvar = self.encode(x)
        # the authors' reparameterisation, eps * std + mu; eps from `generator` (None: the global one)
        eps = torch.randn(mu.shape, device=mu.device, dtype=mu.dtype, generator=generator)
        z = eps * (0.5 * logvar).exp() + mu
        if self.cond_dim:
            z = torch.cat([z, cond.reshape(-1, self.cond_dim).to(z.dtype)], 1)
        recon = self.decoder(z)
        lo, _ = self._pad()
        if self.size != self.image_size:
            recon = recon[:, :, lo:lo + self.image_size, lo:lo + self.image_size]
        return recon, mu, logvar


class LatentDiscriminator(nn.Module):
    """(mu [, condition]) -> probability that the image is labeled, (N,)."""

    def __init__(self, z_dim: int = 32, cond_dim: int = 0, hidden: int = 512):
        super().__init__()
        self.cond_dim = cond_dim
        self.net = nn.Sequential(nn.Linear(z_dim + cond_dim, hidden), nn.ReLU(True), nn.Linear(hidden, hidden),
                                 nn.ReLU(True), nn.Linear(hidden, 1), nn.Sigmoid())
        _he_init(self.net)

    def forward(self, mu: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        if self.cond_dim:
            mu = torch.cat([mu, cond.reshape(-1, self.cond_dim).to(mu.dtype)], 1)
        return self.net(mu).squeeze(1)


def vae_loss(x, recon, mu, logvar, beta: float, kld: str = "sum") -> torch.Tensor:
    """Pixel MSE (mean) + beta x KL(q(z|x) || N(0, I)), the KL summed over the batch and latent
    dimensions (VAAL's solver) or averaged over them (TA-VAAL's `vae_loss`)."""
    terms = 1 + logvar - mu.pow(2) - logvar.exp()
    kl = -0.5 * (terms.sum() if kld == "sum" else terms.mean())
    return nn.functional.mse_loss(recon, x) + beta * kl
