"""The import layers (topologies <- gossipfl core <- sim <- CLI) and a light ``import gossipfl``."""

import pkgutil
import subprocess
import sys
import tomllib
from pathlib import Path

import gossipfl

ROOT = Path(__file__).resolve().parents[1]


def test_the_core_contract_names_every_module_of_gossipfl_but_the_cli() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contracts = config["tool"]["importlinter"]["contracts"]
    core = next(c for c in contracts if "core" in c["name"])
    top = {"gossipfl.cli", "gossipfl.__main__"}  # `python -m gossipfl` is the CLI too
    modules = {f"gossipfl.{m.name}" for m in pkgutil.iter_modules(gossipfl.__path__)} - top
    assert set(core["source_modules"]) == modules


def test_the_layer_contracts_hold() -> None:
    result = subprocess.run(["lint-imports"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-2000:]


def test_import_gossipfl_loads_neither_torch_nor_networkx_nor_scipy() -> None:
    code = (
        "import sys, gossipfl; "
        "heavy = [m for m in ('torch', 'networkx', 'scipy', 'aiohttp') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
