"""One registry per list of names: config checks, CLI choices and help all read it."""

import argparse

import pytest

from gossipfl.checks import integer
from gossipfl.cli import build_parser
from gossipfl.config import MODES, DataConfig, TrainConfig
from gossipfl.errors import ConfigError
from gossipfl.learning.datasets import DATASETS, FILE_FORMATS, check_dataset
from gossipfl.learning.models import MODELS
from gossipfl.learning.partition import PARTITIONS
from gossipfl.threads import PEER_THREADS, available_cores, threads_for
from sim.config import BASELINES, DATASET_DEFAULTS, ENGINES, INITS, MIXINGS


def _option(command: str, flag: str) -> argparse.Action:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return next(a for a in sub.choices[command]._actions if flag in a.option_strings)


def test_cli_choices_and_help_come_from_the_registries() -> None:
    assert tuple(_option("sim", "--model").choices or ()) == tuple(MODELS)
    assert tuple(_option("topology", "--partition").choices or ()) == tuple(PARTITIONS)
    assert tuple(_option("topology", "--mode").choices or ()) == MODES
    assert tuple(_option("sim", "--engine").choices or ()) == tuple(ENGINES)
    assert tuple(_option("sim", "--init").choices or ()) == tuple(INITS)
    assert tuple(_option("sim", "--mixing").choices or ()) == MIXINGS
    dataset_help = _option("sim", "--dataset").help or ""
    assert all(name in dataset_help for name in DATASETS) and "npz:PATH" in dataset_help
    baseline_help = _option("sim", "--baseline").help or ""
    assert all(name in baseline_help for name in BASELINES)


def test_every_registered_name_is_accepted_and_nothing_else() -> None:
    for model in MODELS:
        assert TrainConfig(model=model).model == model
    for scheme in PARTITIONS:
        assert DataConfig(partition=scheme, parts=2, hospitals=1).partition == scheme
    for dataset in DATASETS:
        assert check_dataset(dataset) == dataset
    for kind in FILE_FORMATS:
        assert check_dataset(f"{kind}:data.{kind}") == f"{kind}:data.{kind}"
        with pytest.raises(ConfigError, match="unknown dataset"):
            check_dataset(f"{kind}:")
    assert set(DATASET_DEFAULTS) == set(DATASETS)  # every built-in dataset has sim defaults


def test_thread_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert threads_for(0, PEER_THREADS) == 1
    assert threads_for(3, PEER_THREADS) == 3
    assert threads_for(0, available_cores()) == available_cores() >= 1
    with pytest.raises(ConfigError) as info:
        threads_for(-1, 1)
    assert info.value.field == "threads"
    with pytest.raises(ConfigError, match=r"expected an integer, got 1\.5"):
        integer("threads", 1.5, 0)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the environment's choice counts as automatic
    assert threads_for(0, PEER_THREADS) == 3
    assert threads_for(2, PEER_THREADS) == 2
