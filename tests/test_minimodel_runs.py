"""The MiniModel family through the harness: run.json, the Keras recipe, naming, and sweeps."""
import csv
import json

import pytest

from tests.helpers.harness import cli, run_inprocess

# tests/test_minimodel.py derives these by hand from the layer list
DEFAULT_RESIDUAL_PARAMS = 4_368_714
DEFAULT_PLAIN_PARAMS = 4_325_258


def keras(tiny):
    keep = [o for o in tiny if o != "protocol=smoke" and not o.startswith("protocol.milestones")]
    return keep + ["protocol=keras_quick", "arch=minimodel"]


def test_default_minimodel_reports_its_parameter_count_and_depth(tiny10, tmp_path):
    run_inprocess(keras(tiny10) + ["protocol.iterations=2"], tmp_path / "res")
    info = json.loads((tmp_path / "res" / "run.json").read_text())
    assert info["num_params"] == DEFAULT_RESIDUAL_PARAMS and info["depth"] == 26
    run_inprocess(keras(tiny10) + ["protocol.iterations=2", "residual=false"], tmp_path / "plain")
    assert json.loads((tmp_path / "plain" / "run.json").read_text())["num_params"] == DEFAULT_PLAIN_PARAMS


def test_keras_recipe_trains_with_adam_and_keras_augmentation(tiny, tmp_path):
    status = run_inprocess(keras(tiny) + ["arch.units_per_stage=1", "protocol.iterations=8"], tmp_path)
    assert status == "completed"
    info = json.loads((tmp_path / "run.json").read_text())
    p = info["config"]["protocol"]
    assert (p["optimizer"], p["lr"], p["augment"], p["normalize"]) == ("adam", 0.001, "keras", "keras")
    with open(tmp_path / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["arch"] for r in rows} == {"minimodel"} and {r["depth"] for r in rows} == {"10"}
    assert {r["lr"] for r in rows} == {"0.001"}  # Adam at Keras' default, no milestones
    with open(tmp_path / "layer_stats.csv") as f:
        assert len({r["name"] for r in csv.DictReader(f)}) == 8  # 2 convs x 1 unit x 4 stages


@pytest.mark.slow
def test_minimodel_run_directory_is_named_by_units(tiny, tmp_path):
    r = cli(keras(tiny) + ["arch.units_per_stage=1", "protocol.iterations=2"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    (run,) = (tmp_path / "results" / "keras_quick" / "runs").iterdir()
    assert run.name.startswith("minimodel-units=1-residual=true-seed=0")


@pytest.mark.slow
def test_minimodel_sweep_over_depth_is_refused_and_bad_units_are_one_line(tmp_path):
    r = cli(["-m", "arch=minimodel", "arch.units_per_stage=1,2"], cwd=tmp_path)
    assert r.returncode == 2 and "depth does not apply to arch=minimodel" in r.stderr
    r = cli(["arch=minimodel", "arch.units_per_stage=0"], cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.strip() == ("error: arch.units_per_stage=0 is outside what it can mean: "
                                                      "it must be >= 1")
