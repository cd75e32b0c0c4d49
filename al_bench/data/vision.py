"""The torchvision datasets (CIFAR-10/100, SVHN, MNIST, Fashion-MNIST) as Pools.

torchvision's own download path stays: with `download: true` a missing dataset is fetched into
`root`. Where that is impossible (no internet), the error says how to use an offline copy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from al_bench import ConfigError
from al_bench.data.pool import Pool, make_pool


def _open(cls, name: str, root: str, download: bool, **split_kwargs):
    root_path = Path(root).expanduser()
    if not download and not root_path.is_dir():
        raise ConfigError(
            f"dataset.root={root} does not exist; point dataset.root at a copy of {name}, set "
            f"dataset.download=true, or use an image folder copy with dataset=imagefolder dataset.root=DIR"
        )
    try:
        return cls(root=str(root_path), download=download, **split_kwargs)
    except Exception as exc:  # torchvision raises RuntimeError, URLError, OSError... for a missing copy
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(
            f"{name} is not under dataset.root={root_path} and could not be downloaded ({reason}); "
            f"point dataset.root at a folder holding torchvision's copy of {name}, or use an image "
            f"folder copy with dataset=imagefolder dataset.root=DIR (DIR/train/<class>/*.png|jpg and "
            f"DIR/test/<class>/*)"
        ) from None


def _cifar(cls, name: str, root: str, download: bool) -> Pool:
    train = _open(cls, name, root, download, train=True)
    test = _open(cls, name, root, download, train=False)
    return make_pool(name, train.data, train.targets, test.data, test.targets, train.classes)


def cifar10(root: str = "data", download: bool = True) -> Pool:
    """CIFAR-10: 50,000 training and 10,000 test images of 32x32x3, 10 classes."""
    from torchvision.datasets import CIFAR10

    return _cifar(CIFAR10, "cifar10", root, download)


def cifar100(root: str = "data", download: bool = True) -> Pool:
    """CIFAR-100: 50,000 training and 10,000 test images of 32x32x3, 100 classes."""
    from torchvision.datasets import CIFAR100

    return _cifar(CIFAR100, "cifar100", root, download)


def svhn(root: str = "data", download: bool = True) -> Pool:
    """SVHN (train 73,257 / test 26,032 of 32x32x3, 10 classes); the `extra` split is not used."""
    from torchvision.datasets import SVHN

    train = _open(SVHN, "svhn", root, download, split="train")
    test = _open(SVHN, "svhn", root, download, split="test")
    to_nhwc = lambda d: np.transpose(d.data, (0, 2, 3, 1))  # noqa: E731  torchvision keeps NCHW
    return make_pool("svhn", to_nhwc(train), train.labels, to_nhwc(test), test.labels,
                     [str(i) for i in range(10)], 10)


def _mnist_like(cls, name: str, root: str, download: bool) -> Pool:
    train = _open(cls, name, root, download, train=True)
    test = _open(cls, name, root, download, train=False)
    return make_pool(name, train.data.numpy(), train.targets.numpy(), test.data.numpy(),
                     test.targets.numpy(), train.classes, 10)


def mnist(root: str = "data", download: bool = True) -> Pool:
    """MNIST: 60,000 training and 10,000 test images of 28x28x1, 10 classes."""
    from torchvision.datasets import MNIST

    return _mnist_like(MNIST, "mnist", root, download)


def fashion_mnist(root: str = "data", download: bool = True) -> Pool:
    """Fashion-MNIST: 60,000 training and 10,000 test images of 28x28x1, 10 classes."""
    from torchvision.datasets import FashionMNIST

    return _mnist_like(FashionMNIST, "fashion_mnist", root, download)
