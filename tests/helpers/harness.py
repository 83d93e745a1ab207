"""What the harness tests share: a tiny synthetic image folder, the real conf/ composed and shrunk, runs in
this process or as real processes, and the paper's parameter counts.

Like lightning-hydra-template: tests compose the project's own config with small overrides and write only
under tmp_path.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
CLASSES = ["apple", "bus", "cat", "dog"]  # four classes: the nets' heads have 4 outputs (num_classes)
TEN = [f"class{c}" for c in range(10)]  # CIFAR-10's count, for the paper's exact parameter counts
# Exact parameter counts of the paper's option-A nets (plain twins have the same), from Table 6's architecture.
PARAMS = {20: 269_722, 32: 464_154, 44: 658_586, 56: 853_018, 110: 1_727_962}


def make_image_folder(root: Path, per_class_train: int = 16, per_class_test: int = 6, seed: int = 0,
                      classes: list = CLASSES) -> Path:
    """train/<class>/*.png and test/<class>/*.png, 32x32 RGB; each class has its own mean colour so a
    network can learn something in a few steps."""
    from PIL import Image

    g = torch.Generator().manual_seed(seed)
    for split, n in (("train", per_class_train), ("test", per_class_test)):
        for c, name in enumerate(classes):
            d = root / split / name
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                base = torch.tensor([60 + 60 * c, 200 - 40 * c, 40 + 50 * (c % 2)]).view(3, 1, 1)
                img = (base + torch.randint(-40, 40, (3, 32, 32), generator=g)).clamp(0, 255).to(torch.uint8)
                Image.fromarray(img.permute(1, 2, 0).numpy()).save(d / f"{i:04d}.png")
    return root


def decoded_images(folder: Path, split: str) -> tuple:
    """A split of an image folder decoded with PIL, not with the harness's data code: (uint8 [N, 3, 32, 32], labels in
    the classes' sorted order): what a user of a checkpoint has (experiments.harness.checkpoint.load_model)."""
    import numpy as np
    from PIL import Image
    xs, ys = [], []
    for label, d in enumerate(sorted(p for p in (folder / split).iterdir() if p.is_dir())):
        for f in sorted(d.iterdir()):
            xs.append(torch.from_numpy(np.array(Image.open(f).convert("RGB"))))
            ys.append(label)
    return torch.stack(xs).permute(0, 3, 1, 2), torch.tensor(ys)


def tiny_overrides(image_folder: Path, data_dir: Path, iterations: int = 8) -> list:
    """Any run in a few seconds on CPU: the smoke protocol on the tiny folder (64 images, 4 steps an epoch). The
    after-training inspection constructs no deeper net (a depth-56 one costs as much as the tiny run): the tests
    that want one say so."""
    return ["protocol=smoke", "data=imagefolder", f"data.root={image_folder}", f"data.dir={data_dir}",
            "data.train_size=0", "data.test_size=0", "protocol.batch_size=16", f"protocol.iterations={iterations}",
            f"protocol.milestones=[{iterations // 2},{iterations * 3 // 4}]", "device=cpu", "speed.threads=1",
            "inspect.deeper=[]"]


def compose(overrides: list, conf_dir: Path = ROOT / "conf", return_hydra_config: bool = False):
    from experiments.harness.compose import compose as compose_config
    return compose_config(overrides, conf_dir, return_hydra_config)


def run_inprocess(overrides: list, run_dir: Path):
    """What the CLI does for one run, minus process start-up: returns the run's Status."""
    from experiments.harness.runner import run_overrides
    return run_overrides(overrides, run_dir).status


def sigterm_as_epoch_ends(monkeypatch, epoch: int) -> None:
    """SIGTERM to this process as epoch `epoch` ends (its files handed over): a run in this process then
    checkpoints, says `interrupted` and exits 128 + 15."""
    import signal

    from experiments.harness.cell import Cell
    on_epoch = Cell.on_epoch

    def then_stop(cell, row):
        on_epoch(cell, row)
        if row["epoch"] == epoch:
            os.kill(os.getpid(), signal.SIGTERM)
    monkeypatch.setattr(Cell, "on_epoch", then_stop)


# A run long enough (15 epochs of 8 steps at 16 images) for a signal to land mid-epoch, short enough for a test.
LONG = ["depth=20", "protocol.iterations=120", "protocol.milestones=[60,90]"]


def wait_for_rows(run_dir: Path, n: int, proc, timeout: float = 120) -> None:
    """Until metrics.csv has more than `n` lines (header included) or the process has ended."""
    import time
    end = time.time() + timeout
    while time.time() < end and proc.poll() is None:
        path = run_dir / "metrics.csv"
        if path.exists() and len(path.read_text().splitlines()) > n:
            return
        time.sleep(0.05)


def _env() -> dict:
    # this checkout's code whatever the cwd (an installed copy elsewhere must not be what a test runs)
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": path}


def cli(args: list, cwd: Path = ROOT, timeout: float = 120, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    """`env`: variables set on top of this process's (and of the checkout's PYTHONPATH)."""
    return subprocess.run([sys.executable, "-m", "experiments.run", *args], cwd=cwd, env={**_env(), **(env or {})},
                          capture_output=True, text=True, encoding="utf-8", timeout=timeout, **kw)


def popen(args: list, cwd: Path = ROOT) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "experiments.run", *args], cwd=cwd, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def metrics_rows(run_dir: Path) -> list:
    import csv
    with open(run_dir / "metrics.csv") as f:
        return list(csv.DictReader(f))


def numbers(run_dir: Path) -> list:
    """metrics.csv without its timings: what must be equal between an interrupted-and-resumed run and a whole one."""
    return [{k: v for k, v in r.items() if k != "epoch_time_s"} for r in metrics_rows(run_dir)]


def tables(out: Path) -> dict:
    """{run dir name: {csv name: rows without timings}} for every run under a sweep directory `out`."""
    import csv
    result = {}
    for run in sorted(p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")):
        result[run.name] = {}
        for name in ("metrics.csv", "layer_stats.csv", "grad_norms.csv"):
            with open(run / name) as f:
                result[run.name][name] = [{k: v for k, v in r.items() if k != "epoch_time_s"} for r in csv.DictReader(f)]
    return result
