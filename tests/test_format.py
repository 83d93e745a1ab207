"""The run-file format has one home, `runformat`: no other module declares a table's columns again."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from runformat import TABLES

ROOT = Path(__file__).resolve().parent.parent


def column_lists(source: str) -> list[tuple[int, list[str]]]:
    """(line, strings) of every list or tuple literal whose string elements, three or more, are all
    columns of one runformat table: a copy of (part of) the format that will drift from it."""
    tables = [set(t.columns) for t in TABLES.values()]
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, (ast.List, ast.Tuple)):
            continue
        strings = [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
        if len(strings) >= 3 and any(set(strings) <= columns for columns in tables):
            found.append((node.lineno, strings))
    return found


def test_column_lists_are_found():
    assert column_lists("COLUMNS = ['epoch', 'iteration', 'train_err']") == [
        (1, "epoch iteration train_err".split())]
    assert column_lists("keys = ('kind', 'epoch', 'layer', *more)")  # grad_norms.csv's key
    assert column_lists("x = ['epoch', 'iteration']") == []            # two: a sort key, not a copy
    assert column_lists("x = ['run', 'epoch', 'iteration']") == []     # `run` is no table's column
    assert column_lists("x = ['epoch', 'std', 'norm']") == []          # not all from one table


@pytest.mark.parametrize("folder", [
    "analysis",
    "experiments",
    "hydra_plugins",
    "tests",
])
def test_columns_are_declared_only_in_runformat(folder):
    copies = [f"{path.relative_to(ROOT)}:{line}: {strings}"
              for path in sorted((ROOT / folder).rglob("*.py"))
              for line, strings in column_lists(path.read_text())]
    assert not copies, "column lists outside runformat (use runformat.METRICS/LAYER_STATS/GRAD_NORMS):\n" + \
        "\n".join(copies)
