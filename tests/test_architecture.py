"""The shape of the code: no import circles, the manifest at the top level, the contracts in force.

`./run test` runs `lint-imports` (the contracts in pyproject.toml); these tests check what it does not.
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
QT_AND_NAPARI = {"napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6"}


def _cycles(adjacency: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in adjacency[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10_000))
    try:
        for v in sorted(adjacency):
            if v not in index:
                visit(v)
    finally:
        sys.setrecursionlimit(limit)
    return found


def test_no_import_circles() -> None:
    graph = grimp.build_graph("scribble_unet")
    adjacency = {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    assert _cycles(adjacency) == []


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_contracts_forbid_napari_and_qt_in_the_core() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    forbidden = [c for c in config["contracts"] if c["type"] == "forbidden"]
    assert any(QT_AND_NAPARI <= set(c["forbidden_modules"]) for c in forbidden)
    core = {c for contract in forbidden for c in contract["source_modules"]}
    packages = {p.name for p in (ROOT / "src" / "scribble_unet").iterdir()
                if (p / "__init__.py").exists() or p.suffix == ".py"}
    expected = {f"scribble_unet.{Path(p).stem}" for p in packages - {"_napari", "__init__.py", "data"}}
    assert expected <= core, expected - core


def test_manifest_at_top_level_is_the_one_shipped() -> None:
    top = (ROOT / "napari.yaml").read_text()
    shipped = resources.files("scribble_unet._napari").joinpath("napari.yaml").read_text()
    assert shipped == top


MAX_MODULE_LINES = 450


def test_no_source_module_is_longer_than_450_lines() -> None:
    src = ROOT / "src" / "scribble_unet"
    long = {str(p.relative_to(src)): n for p in sorted(src.rglob("*.py"))
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}
    assert long == {}, f"split these modules (over {MAX_MODULE_LINES} lines): {long}"
