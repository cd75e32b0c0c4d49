"""Any `ROOT/train/<class>/*` + `ROOT/test/<class>/*` image tree, decoded once into a cache."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Literal

import numpy as np
from tqdm import tqdm

from al_bench import ConfigError
from al_bench.data.pool import Pool, make_pool
from al_bench.io import atomic_save_npz
from al_bench.schema import PositiveInt

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".ppm", ".tif", ".tiff"}


def default_cache_dir() -> Path:
    return Path(os.environ.get("AL_BENCH_CACHE", "~/.cache/al_bench")).expanduser() / "imagefolder"


def _list_split(split_dir: Path) -> tuple[list[str], list[tuple[Path, str]]]:
    classes = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
    files = [
        (f, c)
        for c in classes
        for f in sorted((split_dir / c).iterdir())
        if f.suffix.lower() in IMAGE_SUFFIXES
    ]
    return classes, files


def _decode(files: list[tuple[Path, str]], class_index: dict[str, int], image_size, channels, desc):
    from PIL import Image

    mode = {1: "L", 3: "RGB"}[channels]
    images, labels = [], []
    for path, cls in tqdm(files, desc=desc, unit="img", disable=None, mininterval=2):
        try:
            with Image.open(path) as im:
                im = im.convert(mode)  # decodes the whole file: a truncated one fails here
                if image_size is not None and im.size != (image_size, image_size):
                    im = im.resize((image_size, image_size), Image.BILINEAR)
                images.append(np.asarray(im, dtype=np.uint8))
        except (OSError, SyntaxError, ValueError) as exc:  # PIL's errors for empty, corrupt, truncated files
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise ConfigError(f"cannot decode image {path} ({reason}); remove or replace the file and rerun") from None
        labels.append(class_index[cls])
    shapes = {a.shape for a in images}
    if len(shapes) > 1:
        raise ConfigError(
            f"images of different sizes {sorted(shapes)[:3]} in {desc}; set dataset.image_size=N to resize"
        )
    return np.stack(images), np.asarray(labels, dtype=np.int64)


def imagefolder(
    root: str,
    image_size: PositiveInt | None = None,  # pixels; None keeps the files' size (all must agree)
    channels: Literal[1, 3] = 3,  # 3 = RGB, 1 = grayscale
    cache_dir: str | None = None,
    name: str = "imagefolder",
    allow_empty_classes: bool = False,
) -> Pool:
    """Decode every image under root/train and root/test once; later runs load the cache (.npz),
    keyed by the absolute root, the file list with sizes and mtimes, and the decoding options.
    A file that does not decode is named with the fix; a class folder without training images is
    an error unless `allow_empty_classes` (the class then still has its output in the model)."""
    root_path = Path(root).expanduser().resolve()
    if not root_path.is_dir():
        raise ConfigError(f"dataset.root={root} does not exist")
    for split in ("train", "test"):
        if not (root_path / split).is_dir():
            raise ConfigError(
                f"dataset.root={root} has no {split}/ folder; an image folder needs "
                f"ROOT/train/<class>/* and ROOT/test/<class>/*"
            )
    classes, train_files = _list_split(root_path / "train")
    test_classes, test_files = _list_split(root_path / "test")
    empty = sorted(set(classes) - {c for _, c in train_files})
    if empty and not allow_empty_classes:
        raise ConfigError(f"dataset.root={root}: class folder train/{empty[0]} holds no images ({len(empty)} empty); "
                          f"add images, remove the folder, or set dataset.allow_empty_classes=true")
    if empty:
        log.warning("image folder %s: classes without training images: %s", root_path, ", ".join(empty))
    if not classes or not train_files or not test_files:
        raise ConfigError(f"dataset.root={root}: train/ or test/ holds no class folders with images")
    unknown = sorted(set(test_classes) - set(classes))
    if unknown:
        raise ConfigError(f"dataset.root={root}: test/ has classes missing from train/: {unknown[:5]}")

    key = hashlib.sha256()
    key.update(f"{root_path}|{image_size}|{channels}".encode())
    for path, _ in train_files + test_files:
        st = path.stat()
        key.update(f"{path.relative_to(root_path)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    cache_file = cache / f"{root_path.name}-{key.hexdigest()[:16]}.npz"

    if cache_file.exists():
        with np.load(cache_file) as z:
            arrays = {k: z[k] for k in z.files}
        log.info("image folder %s: loaded decoded cache %s", root_path, cache_file)
    else:
        index = {c: i for i, c in enumerate(classes)}
        train_x, train_y = _decode(train_files, index, image_size, channels, f"decode {root_path.name}/train")
        test_x, test_y = _decode(test_files, index, image_size, channels, f"decode {root_path.name}/test")
        arrays = dict(train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y)
        try:
            atomic_save_npz(cache_file, **arrays)
            log.info("image folder %s: decoded %d images into %s", root_path, len(train_y) + len(test_y), cache_file)
        except OSError as exc:  # a read-only home must not stop the run
            log.warning("image folder cache not written (%s); decoding again next time", exc)
    return make_pool(name, arrays["train_x"], arrays["train_y"], arrays["test_x"], arrays["test_y"],
                     classes, len(classes))
