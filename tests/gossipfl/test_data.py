from pathlib import Path

import numpy as np
import pytest

from gossipfl.learning.datasets import load_dataset
from gossipfl.learning.partition import hospital_groups, partition


@pytest.mark.parametrize(
    ("name", "features", "classes"),
    [("iris", 4, 3), ("digits", 64, 10), ("breast-cancer", 30, 2), ("mnist1d", 40, 10), ("synthetic", 20, 4)],
)
def test_builtin_datasets_load_offline(name: str, features: int, classes: int) -> None:
    data = load_dataset(name, seed=0)
    assert data.num_features == features and data.num_classes == classes
    assert data.x_train.dtype == np.float32 and np.isfinite(data.x_train).all()
    assert len(data.x_test) == pytest.approx(0.2 * (len(data.x_train) + len(data.x_test)), abs=1)
    np.testing.assert_allclose(data.x_train.mean(axis=0), 0, atol=1e-4)


def test_npz_and_csv_user_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(50, 3)), rng.integers(0, 2, 50)
    np.savez(tmp_path / "d.npz", X=x, y=y)
    assert load_dataset(f"npz:{tmp_path / 'd.npz'}").num_features == 3
    lines = ["a,b,kind"] + [f"{r[0]},{r[1]},{'cat' if k else 'dog'}" for r, k in zip(x, y, strict=True)]
    (tmp_path / "d.csv").write_text("\n".join(lines) + "\n")
    data = load_dataset(f"csv:{tmp_path / 'd.csv'}", label="kind")
    assert (data.num_features, data.num_classes) == (2, 2)


@pytest.mark.parametrize(
    ("filename", "content", "message"),
    [
        ("bad.npz", b"not a zip", "cannot read"),
        ("bad.csv", b"a,b\n1,2\n", "no label column"),
        ("bad2.csv", b"a,label\nx,1\ny,0\n", "must be numbers"),
    ],
)
def test_bad_user_files_are_refused(tmp_path: Path, filename: str, content: bytes, message: str) -> None:
    path = tmp_path / filename
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        load_dataset(f"{filename.split('.')[-1]}:{path}")


def test_npz_without_arrays_and_with_nan(tmp_path: Path) -> None:
    np.savez(tmp_path / "a.npz", features=np.zeros((4, 2)))
    with pytest.raises(ValueError, match="arrays named X and y"):
        load_dataset(f"npz:{tmp_path / 'a.npz'}")
    np.savez(tmp_path / "b.npz", X=np.full((4, 2), np.nan), y=np.array([0, 1, 0, 1]))
    with pytest.raises(ValueError, match="NaN"):
        load_dataset(f"npz:{tmp_path / 'b.npz'}")


@pytest.mark.parametrize("scheme", ["iid", "dirichlet", "shards"])
def test_partitions_cover_every_sample_once_and_are_seeded(scheme: str) -> None:
    labels = np.random.default_rng(1).integers(0, 10, 1000)
    parts = partition(labels, 20, scheme, seed=3, alpha=0.3)
    assert len(parts) == 20 and all(len(p) > 0 for p in parts)
    joined = np.concatenate(parts)
    assert len(joined) == 1000 and len(np.unique(joined)) == 1000
    again = partition(labels, 20, scheme, seed=3, alpha=0.3)
    assert all((a == b).all() for a, b in zip(parts, again, strict=True))


def test_dirichlet_small_alpha_skews_labels() -> None:
    labels = np.repeat(np.arange(10), 100)
    parts = partition(labels, 10, "dirichlet", seed=0, alpha=0.05)
    classes_per_peer = [len(np.unique(labels[p])) for p in parts]
    assert np.mean(classes_per_peer) < 5


def test_by_hospital_is_iid_inside_a_hospital() -> None:
    labels = np.repeat(np.arange(4), 250)
    groups = hospital_groups(12, 3)
    parts = partition(labels, 12, "by-hospital", seed=0, alpha=0.2, groups=groups)
    for h in range(3):
        sizes = [len(parts[i]) for i in np.flatnonzero(groups == h)]
        assert max(sizes) - min(sizes) <= 1
    with pytest.raises(ValueError, match="hospital"):
        partition(labels, 12, "by-hospital", seed=0)
