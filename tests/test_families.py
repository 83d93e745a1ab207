"""A third family, defined here, runs through the whole harness: one model (this file) plus one YAML (written
into a copy of conf/), and no edit to probes, precheck, the runner or analysis/."""
from __future__ import annotations

import csv
import json
import shutil
from dataclasses import dataclass

import pytest
import torch.nn as nn
import torch.nn.functional as F

from analysis import report
from experiments.config import ArchConfig, ranged
from experiments.harness import precheck
from experiments.harness.compose import compose
from experiments.harness.runner import job_from, run_jobs
from experiments.nets import families
from experiments.nets.families import Family, ProbedModel, ProbePoint
from tests.helpers.harness import ROOT


class TinyNet(nn.Module, ProbedModel):
    """conv-BN stem, `blocks` conv-BN-ReLU blocks (each with an identity shortcut if residual), pool, fc."""

    def __init__(self, width: int, blocks: int, residual: bool, classes: int):
        super().__init__()
        self.residual = residual
        self.stem, self.bn = nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width)
        self.convs = nn.ModuleList(nn.Conv2d(width, width, 3, padding=1, bias=False) for _ in range(blocks))
        self.bns = nn.ModuleList(nn.BatchNorm2d(width) for _ in range(blocks))
        self.units = nn.ModuleList(_Unit(c, b, residual) for c, b in zip(self.convs, self.bns))
        self.fc = nn.Linear(width, classes)

    def forward(self, x):
        x = F.relu(self.bn(self.stem(x)))
        for unit in self.units:
            x = unit(x)
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))

    def response_points(self):
        return [ProbePoint("stem", 0, self.bn)] + [ProbePoint(f"unit{i}", 1, u.bn) for i, u in enumerate(self.units)]

    def conv_weights(self):
        return [ProbePoint("stem", 0, self.stem.weight)] + [ProbePoint(f"unit{i}", 1, u.conv.weight)
                                                             for i, u in enumerate(self.units)]

    def blocks(self):
        return [ProbePoint(f"unit{i}", 1, u) for i, u in enumerate(self.units)]


class _Unit(nn.Module):
    def __init__(self, conv, bn, residual):
        super().__init__()
        self.conv, self.bn, self.residual = conv, bn, residual

    def forward(self, x):
        out = self.bn(self.conv(x))
        return F.relu(out + x if self.residual else out)


@dataclass
class TinyArch(ArchConfig):
    name: str = "tinynet"
    width: int = ranged(8, 1)
    blocks: int = ranged(2, 1)


TINY = Family(name="tinynet", label="TinyNet", title="TinyNet (a family defined in a test)", config=TinyArch,
              depth=lambda arch, depth: arch.blocks + 2,  # stem + blocks + fc
              build=lambda arch, depth, residual, shortcut, classes: TinyNet(arch.width, arch.blocks, residual, classes),
              name_head=lambda arch, depth: f"tinynet-blocks={arch.blocks}", size_keys=("blocks",),
              sized_by_depth=False)
YAML = "defaults:\n  - /family_schema/tinynet@_here_\n  - _self_\nname: tinynet\nwidth: 8\nblocks: 2\n"


@pytest.fixture
def conf(tmp_path, monkeypatch):
    """conf/ plus conf/arch/tinynet.yaml, with the family registered for this test only."""
    monkeypatch.setitem(families._FAMILIES, TINY.name, TINY)
    conf = tmp_path / "conf"
    shutil.copytree(ROOT / "conf", conf)
    (conf / "arch" / "tinynet.yaml").write_text(YAML)
    return conf


@pytest.mark.slow
def test_a_third_family_trains_is_probed_named_and_reported_with_no_other_edit(conf, tiny, tmp_path):
    overrides = [*tiny, "arch=tinynet", "arch.blocks=3", "residual=false"]
    assert precheck.check(overrides, conf_dir=conf) is None
    runs = tmp_path / "runs"
    for residual in ("false", "true"):
        for blocks in (1, 3):
            ov = [*tiny, "arch=tinynet", f"arch.blocks={blocks}", f"residual={residual}"]
            (result,) = run_jobs([job_from(compose(ov, conf), runs / f"b{blocks}-{residual}", ov)])
            assert result.status == "completed"
    info = json.loads((runs / "b3-false" / "run.json").read_text())
    assert info["family"] == {"name": "tinynet", "label": "TinyNet", "title": "TinyNet (a family defined in a test)"}
    assert info["depth"] == 5 and info["config"]["arch"] == {"name": "tinynet", "width": 8, "blocks": 3}
    with open(runs / "b3-false" / "layer_stats.csv") as f:
        assert [r["name"] for r in csv.DictReader(f) if r["epoch"] == "1"] == ["stem", "unit0", "unit1", "unit2"]
    # its model offers none of the after-training inspection's measures: the run says so and has no file of them
    assert info["inspection"]["status"] == "not supported" and info["inspection"]["files"] == []

    out = tmp_path / "out"
    assert report.main(["--runs", str(runs), "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    assert "TinyNet (a family defined in a test)" in md and "TinyNet-plain-5" in md and "TinyNet-res-3" in md
    assert (out / "tinynet_fig6.png").exists()


def test_a_third_familys_own_keys_are_checked_in_one_line(conf):
    assert precheck.check(["arch=tinynet", "arch.blocks=0"], conf_dir=conf) == (
        "arch.blocks=0 is outside what it can mean: it must be >= 1")
    assert "arch.widht" in precheck.check(["arch=tinynet", "arch.widht=3"], conf_dir=conf)
    assert precheck.check(["-m", "arch=tinynet", "depth=20,56"], conf_dir=conf).startswith(
        "depth does not apply to arch=tinynet")
    assert precheck.check(["arch=resnet"], conf_dir=conf) == (
        "no arch named 'resnet': choose one of minimodel, resnet_cifar, tinynet")
