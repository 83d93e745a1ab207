"""Shared fixtures: a tiny synthetic image folder, the real conf/ composed and shrunk, and CLI runners.

Like lightning-hydra-template: tests compose the project's own config with small overrides and write
only under tmp_path.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
CLASSES = ["apple", "bus", "cat", "dog"]


def make_image_folder(root: Path, per_class_train: int = 16, per_class_test: int = 6, seed: int = 0) -> Path:
    """train/<class>/*.png and test/<class>/*.png, 32x32 RGB; each class has its own mean colour so a
    network can learn something in a few steps."""
    from PIL import Image

    g = torch.Generator().manual_seed(seed)
    for split, n in (("train", per_class_train), ("test", per_class_test)):
        for c, name in enumerate(CLASSES):
            d = root / split / name
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                base = torch.tensor([60 + 60 * c, 200 - 40 * c, 40 + 50 * (c % 2)]).view(3, 1, 1)
                img = (base + torch.randint(-40, 40, (3, 32, 32), generator=g)).clamp(0, 255).to(torch.uint8)
                Image.fromarray(img.permute(1, 2, 0).numpy()).save(d / f"{i:04d}.png")
    return root


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("imgs") / "tiny")


@pytest.fixture
def tiny(image_folder, tmp_path) -> list:
    """Overrides that make any run a few seconds on CPU: the smoke protocol on the tiny folder."""
    return ["protocol=smoke", "data=imagefolder", f"data.root={image_folder}", f"data.dir={tmp_path / 'data'}",
            "data.train_size=0", "data.test_size=0", "protocol.batch_size=16", "protocol.iterations=8",
            "protocol.milestones=[4,6]", "device=cpu", "speed.threads=1"]


def compose(overrides: list):
    from hydra import compose as hydra_compose, initialize_config_dir
    from experiments.config import register

    register()
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return hydra_compose("config", overrides=overrides)


def run_inprocess(overrides: list, run_dir: Path) -> str:
    """experiments.run.execute on the composed config: what the CLI does, minus process start-up."""
    from experiments.runner import execute
    return execute(compose(overrides), run_dir, overrides)


def cli(args: list, cwd: Path = ROOT, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "experiments.run", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout, **kw)


def popen(args: list, cwd: Path = ROOT) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "experiments.run", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
