"""Datasets that work offline: small ones shipped inside scikit-learn, generated ones, user files.

Everything here is NumPy: a peer or the simulator turns arrays into tensors itself. Features
are standardised with the training split's mean and deviation; labels are 0..C-1.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import importlib.util
import math
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from gossipfl.errors import ConfigError

__all__ = ["DATASETS", "FILE_FORMATS", "Dataset", "check_dataset", "load_dataset", "mnist1d", "synthetic"]

# Features, labels and the CNN's image shape (None: not image-like).
Raw = tuple[np.ndarray, np.ndarray, tuple[int, ...] | None]


@dataclasses.dataclass(frozen=True)
class Dataset:
    name: str
    x_train: np.ndarray  # float32 (n, d)
    y_train: np.ndarray  # int64 (n,)
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    image_shape: tuple[int, ...] | None = None  # (channels, *spatial) for the CNN

    @property
    def num_features(self) -> int:
        return int(self.x_train.shape[1])


def _sklearn_data_file(name: str) -> Path:
    # Reading scikit-learn's bundled CSVs directly skips importing scikit-learn itself,
    # which costs about a second of start-up for a few kilobytes of data.
    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        raise ValueError("the built-in datasets need scikit-learn installed")
    return Path(spec.origin).parent / "datasets" / "data" / name


def _read_sklearn_csv(name: str) -> tuple[np.ndarray, np.ndarray]:
    path = _sklearn_data_file(name)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as handle:
        rows = list(csv.reader(handle))
    if name != "digits.csv.gz":  # iris and breast cancer start with a "count,features,..." line
        rows = rows[1:]
    table = np.array(rows, dtype=np.float64)
    return table[:, :-1], table[:, -1].astype(np.int64)


def mnist1d(n: int = 5000, seed: int = 0, length: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """MNIST-1D-style signals: ten 1-D digit templates, randomly padded, shifted, scaled,
    sheared and noised, then resampled to ``length`` points. Hard for linear models,
    easy for small CNNs and MLPs, and generated in milliseconds."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 1.0, 12)
    templates = np.stack(
        [
            np.sin(np.pi * t) * 2 - 1,  # 0: one hump
            np.where(t > 0.5, 1.0, -1.0),  # 1: step up
            np.cos(2 * np.pi * t),  # 2: valley
            np.sin(2 * np.pi * t),  # 3: up then down
            1 - 2 * t,  # 4: ramp down
            2 * t - 1,  # 5: ramp up
            np.sin(3 * np.pi * t),  # 6: three lobes
            np.abs(np.sin(2 * np.pi * t)) * 2 - 1,  # 7: two humps
            np.where((t > 0.3) & (t < 0.7), 1.0, -1.0),  # 8: plateau
            np.sign(np.sin(4 * np.pi * t + 0.1)),  # 9: square wave
        ]
    )
    y = rng.integers(0, 10, size=n)
    base = templates[y]
    scale = rng.uniform(0.7, 1.3, size=(n, 1))
    pad_left = rng.integers(0, 12, size=n)
    canvas_len = 36
    canvas = np.zeros((n, canvas_len))
    for offset in range(12):  # place each template at its own random offset
        rows = pad_left == offset
        canvas[rows, offset : offset + 12] = base[rows] * scale[rows]
    shear = rng.uniform(-0.75, 0.75, size=(n, 1)) * np.linspace(-1, 1, canvas_len)
    smooth_noise = np.cumsum(rng.normal(0, 0.1, size=(n, canvas_len)), axis=1)
    signal = canvas + shear + smooth_noise + rng.normal(0, 0.25, size=(n, canvas_len))
    grid = np.linspace(0, canvas_len - 1, length)
    x = np.stack([np.interp(grid, np.arange(canvas_len), row) for row in signal])
    return x, y.astype(np.int64)


def synthetic(
    n: int = 2000, features: int = 20, classes: int = 4, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian clusters around random class centres, some classes overlapping."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1.5, size=(classes, features))
    y = rng.integers(0, classes, size=n)
    x = centres[y] + rng.normal(0, 1.0, size=(n, features))
    return x, y.astype(np.int64)


# An archive's arrays are read into memory; one that claims more is refused before reading.
_MAX_NPZ_BYTES = 4 << 30
# zipfile alone raises NotImplementedError (an unsupported compression method) and
# RuntimeError (an encrypted member) besides BadZipFile.
_NPZ_ERRORS = (
    OSError,
    EOFError,
    ValueError,
    RuntimeError,
    OverflowError,
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,
    MemoryError,
)


def _npz_members(path: Path) -> None:
    """Check every member's declared array size against the archive itself, so a small
    file cannot make ``np.load`` allocate gigabytes (a zip or header bomb)."""
    total = 0
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            with archive.open(info) as member:
                version = np.lib.format.read_magic(member)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(member)
                elif version == (2, 0):
                    shape, _, dtype = np.lib.format.read_array_header_2_0(member)
                else:
                    raise ValueError(f"{info.filename}: unsupported .npy version {version}")
            if dtype.hasobject:
                raise ValueError(f"{info.filename}: object arrays are not data")
            declared = math.prod(shape) * dtype.itemsize
            if declared > info.file_size:
                raise ValueError(
                    f"{info.filename}: header claims {declared} bytes, the member holds {info.file_size}"
                )
            total += declared
    if total > _MAX_NPZ_BYTES:
        raise ValueError(f"arrays of {total} bytes exceed the {_MAX_NPZ_BYTES}-byte limit")


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        _npz_members(path)
        # allow_pickle=False: a user file must never run code; np.load then refuses
        # anything that is not a plain array archive with a ValueError.
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: np.asarray(data[name]) for name in data.files}
    except _NPZ_ERRORS as exc:
        raise ConfigError(f"{path}: cannot read as an .npz archive of arrays ({exc})") from exc
    if "X" not in arrays or "y" not in arrays:
        raise ConfigError(f"{path}: needs arrays named X and y, found {sorted(arrays)[:10]}")
    x, y = arrays["X"], arrays["y"]
    if x.ndim < 2 or y.ndim != 1 or len(x) != len(y):
        raise ConfigError(f"{path}: X must be (n, ...) and y (n,), got {x.shape} and {y.shape}")
    if len(x) == 0 or math.prod(x.shape[1:]) == 0:
        raise ConfigError(f"{path}: X of shape {x.shape} has no samples or no features")
    if x.dtype.kind not in "biuf":
        raise ConfigError(f"{path}: X must hold real numbers, not {x.dtype}")
    if y.dtype.kind not in "biuUS":
        raise ConfigError(f"{path}: y must hold integer or text labels, not {y.dtype}")
    return x.reshape(len(x), -1).astype(np.float64), y


def _read_csv(path: Path, label: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            rows = list(reader)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from exc
    except csv.Error as exc:
        raise ConfigError(f"{path}: not CSV ({exc})") from exc
    if header is None or label not in header:
        shown = header[:20] if header else header
        raise ConfigError(f"{path}: no label column {label!r} in header {shown}")
    column = header.index(label)
    rows = [r for r in rows if r]  # csv gives blank lines as empty rows
    for number, row in enumerate(rows, 2):
        if len(row) != len(header):
            raise ConfigError(f"{path}: row {number} has {len(row)} fields, the header {len(header)}")
    try:
        x = np.array([[float(v) for i, v in enumerate(r) if i != column] for r in rows], dtype=np.float64)
    except ValueError as exc:
        raise ConfigError(f"{path}: feature columns must be numbers ({exc})") from exc
    if len(x) == 0 or x.shape[1] == 0:
        raise ConfigError(f"{path}: expected at least one row with a feature besides {label!r}")
    return x, np.array([r[column] for r in rows])


# The built-in datasets: name -> loader(seed). Adding one is one function and one entry.
DATASETS: dict[str, Callable[[int], Raw]] = {
    "iris": lambda seed: (*_read_sklearn_csv("iris.csv"), None),
    "digits": lambda seed: (*_read_sklearn_csv("digits.csv.gz"), (1, 8, 8)),
    "breast-cancer": lambda seed: (*_read_sklearn_csv("breast_cancer.csv"), None),
    "mnist1d": lambda seed: (*mnist1d(seed=seed), (1, 40)),
    "synthetic": lambda seed: (*synthetic(seed=seed), None),
}

# User files, named FORMAT:PATH: format -> reader(path, label column).
FILE_FORMATS: dict[str, Callable[[Path, str], tuple[np.ndarray, np.ndarray]]] = {
    "npz": lambda path, label: _read_npz(path),
    "csv": _read_csv,
}


def check_dataset(name: object, field: str = "dataset") -> str:
    """``name`` if it is a built-in dataset or FORMAT:PATH of a user file; else ConfigError."""
    if isinstance(name, str):
        kind, sep, path = name.partition(":")
        if name in DATASETS or (sep and kind in FILE_FORMATS and path):
            return name
    files = ", ".join(f"{kind}:PATH" for kind in FILE_FORMATS)
    raise ConfigError(f"unknown dataset {name!r}; use one of {', '.join(DATASETS)}, {files}", field)


def _raw(name: str, seed: int, label: str) -> Raw:
    if name in DATASETS:
        return DATASETS[name](seed)
    kind, _, path = name.partition(":")
    x, y = FILE_FORMATS[kind](Path(path), label)
    return x, y, None


def load_dataset(name: str, seed: int = 0, test_fraction: float = 0.2, label: str = "label") -> Dataset:
    """Load ``name`` and split off a seeded, held-out test set."""
    check_dataset(name)
    x, y_raw, image_shape = _raw(name, seed, label)
    if not np.isfinite(x).all():
        raise ConfigError(f"{name}: features contain NaN or infinity")
    classes, y = np.unique(y_raw, return_inverse=True)
    if len(classes) < 2:
        raise ConfigError(f"{name}: needs at least two classes, found {len(classes)}")
    if len(x) < 2:
        raise ConfigError(f"{name}: needs at least two samples, found {len(x)}")
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = max(1, round(len(x) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    mean, std = x[train].mean(axis=0), x[train].std(axis=0)
    std[std == 0] = 1.0
    x = ((x - mean) / std).astype(np.float32)
    return Dataset(
        name=name,
        x_train=x[train],
        y_train=y[train].astype(np.int64),
        x_test=x[test],
        y_test=y[test].astype(np.int64),
        num_classes=len(classes),
        image_shape=image_shape,
    )
