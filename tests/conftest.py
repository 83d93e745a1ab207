"""Fixtures: a tiny synthetic image folder and the overrides that make any run a few seconds on CPU
(the helpers themselves live in tests/helpers/)."""
from __future__ import annotations

from pathlib import Path

import pytest

from analysis import outputs
from analysis import reference as analysis_reference
from tests.helpers.harness import LONG, TEN, cli, make_image_folder, numbers, tiny_overrides


@pytest.fixture(autouse=True)
def no_committed_reference(monkeypatch):
    """`--reference auto` looks in the checkout's results/reference/: point it at nothing, so that reference runs
    published later cannot change what any report test draws (tests that want one make their own)."""
    monkeypatch.setattr(analysis_reference, "ROOT", Path(__file__).parent / "no-reference-here")


@pytest.fixture
def quick_figures(monkeypatch):
    """A report's figures drawn whole but saved as small PNGs (under their own names, .svg too): for tests of what can
    break in drawing them (a title, a limit) or of how files are written, not of how the figures look."""
    monkeypatch.setattr(outputs, "save_figure", lambda fig, path, **kw: outputs._atomic(
        path, lambda f: fig.savefig(f, format="png", dpi=15)))


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("imgs") / "tiny")


@pytest.fixture(scope="session")
def image_folder10(tmp_path_factory) -> Path:
    """Ten classes, as CIFAR-10 has: the nets' heads and parameter counts are the paper's."""
    return make_image_folder(tmp_path_factory.mktemp("imgs10") / "ten", per_class_train=2, per_class_test=1, classes=TEN)


@pytest.fixture
def tiny10(image_folder10, tmp_path) -> list:
    return tiny_overrides(image_folder10, tmp_path / "data")


@pytest.fixture
def tiny(image_folder, tmp_path) -> list:
    """Overrides that make any run a few seconds on CPU: the smoke protocol on the tiny folder."""
    return tiny_overrides(image_folder, tmp_path / "data")


@pytest.fixture(scope="session")
def reference(image_folder, tmp_path_factory) -> list:
    """An uninterrupted LONG run's metrics (timings left out): what every interrupted-and-resumed run must equal."""
    out = tmp_path_factory.mktemp("ref")
    r = cli(tiny_overrides(image_folder, out / "data") + LONG + [f"hydra.run.dir={out / 'run'}"], timeout=300)
    assert r.returncode == 0, r.stderr
    return numbers(out / "run")
