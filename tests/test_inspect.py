"""The after-training inspection (experiments.inspect) and init.from (experiments.harness.init_from): each measure against a
direct computation on nets with hand-set weights, then end to end on tiny runs."""
from __future__ import annotations

import csv
import json
import signal

import pytest
import torch
import torch.nn.functional as F

from experiments import inspect as inspection
from experiments.config import Augment, Config, InspectConfig, ProtocolConfig
from experiments.data.datasets import Dataset
from experiments.data.loader import TrainStream, pixel_mean
from experiments.harness import precheck
from experiments.harness.rundir import run_name
from experiments.nets.families import NotSupported
from experiments.nets.minimodel import MiniModel, MiniModelArch
from experiments.nets.resnet_cifar import CifarResNet
from experiments.science import measures
from runformat import BLOCK_RATIOS, CONSTRUCTED, LESION
from tests.helpers.harness import metrics_rows, numbers, run_inprocess, sigterm_as_epoch_ends
from tests.helpers.nets import hand_set, images


def logits(model, x):
    with torch.no_grad():
        return model.eval()(x)


def zero_pad(h, planes):
    """Option A by hand: every other pixel, zero channels after the identity ones."""
    h = h[:, :, ::2, ::2]
    return torch.cat([h, h.new_zeros(h.shape[0], planes - h.shape[1], *h.shape[2:])], 1)


# ---- the seam: every family that offers block_parts is a chain stem -> blocks -> head -----------------------------

@pytest.mark.parametrize("model", [CifarResNet(8, False), CifarResNet(14, True), CifarResNet(14, True, "B"),
                                   MiniModel(1, True), MiniModel(1, False)], ids=lambda m: type(m).__name__)
def test_forward_is_the_stem_then_the_blocks_then_the_head(model):
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        h = model.eval().forward_stem(x)
        for part in model.block_parts():
            h = part.block(h)
        assert torch.equal(model.forward_head(h), model(x))


# ---- 1. the constructed deeper net --------------------------------------------------------------------------------

@pytest.mark.parametrize("residual, shortcut", [(False, "A"), (True, "A"), (True, "B")])
@pytest.mark.parametrize("depth", [14, 20])
def test_the_constructed_deeper_net_computes_the_shallow_nets_function_in_eval_mode(residual, shortcut, depth):
    shallow, x = hand_set(residual, 8, shortcut), pixel_mean(images().x)(images().x)
    deep = shallow.deepened(depth, {1: (torch.rand(16), torch.rand(16) + 0.5)})  # any statistics: exact in eval
    assert deep.depth == depth and len(deep.stages[0]) == (depth - 2) // 6
    expected = logits(shallow, x)
    assert logits(deep, x) == pytest.approx(expected, abs=1e-5 * expected.abs().max().item())
    assert expected.std() > 0.1  # hand-set weights give logits that differ between images
    for old, new in zip(shallow.stages, deep.stages):  # the trained block first (stages 2, 3: the downsampling one)
        assert all(torch.equal(a, b) for a, b in zip(old[0].state_dict().values(), new[0].state_dict().values()))
    added = deep.stages[1][1]
    if residual:
        assert added.bn2.weight.abs().sum() == 0 and added.bn2.bias.abs().sum() == 0
    else:
        assert torch.equal(added.conv1.weight[:, :, 1, 1], torch.eye(32))  # the identity kernel


def stream(split, batch_size):
    return TrainStream(split, pixel_mean(split.x), batch_size, Augment.none, seed=0)


@pytest.mark.parametrize("residual", [False, True])
def test_in_training_mode_the_construction_is_exact_on_the_batch_its_bn_statistics_come_from(residual):
    split = images(16)
    whole = stream(split, 16)  # one batch: the statistics the identity blocks get are that batch's own
    shallow = hand_set(residual)
    deep = shallow.deepened(20, measures.stage_stats(shallow, whole, batches=1))
    x = whole.batch(0, 0)[0]
    with torch.no_grad():
        expected = shallow.train()(x)
        assert deep.train()(x) == pytest.approx(expected, abs=1e-4 * expected.abs().max().item())


def test_compare_finds_no_difference_in_eval_mode_and_batch_noise_only_in_plain_nets_training_mode():
    split = images(16)
    halves = stream(split, 8)  # statistics averaged over two batches: neither batch's own
    rows, scale = {}, {}
    for residual in (False, True):
        shallow = hand_set(residual)
        deep = shallow.deepened(14, measures.stage_stats(shallow, halves, batches=2))
        before = {k: v.clone() for k, v in shallow.state_dict().items()}
        rows[residual] = measures.compare(shallow, deep, split, pixel_mean(split.x), 5, halves, batches=2)
        assert all(torch.equal(before[k], v) for k, v in shallow.state_dict().items())  # running stats untouched
        scale[residual] = logits(shallow, pixel_mean(split.x)(split.x)).abs().max().item()
    for residual, row in rows.items():
        assert row["test_err_deep"] == row["test_err_shallow"] and row["max_logit_diff"] < 1e-5 * scale[residual]
        assert row["test_loss_deep"] == pytest.approx(row["test_loss_shallow"], rel=1e-5)
        assert row["batches"] == 2
    assert rows[True]["train_deviation"] < 1e-6  # F(x) = 0 whatever BN normalises by
    assert rows[False]["train_deviation"] > 1e-3  # a plain identity block is the identity up to batch noise


def test_minimodel_says_it_cannot_be_deepened():
    with pytest.raises(NotSupported, match="no identity unit"):
        MiniModel(1, False).deepened(20)


# ---- 3. branch ratios and 4. lesions ------------------------------------------------------------------------------

def direct_blocks(model, x):
    """Each block's input, F(x), skip(x) and output, written out as in CifarResNet.forward (option A)."""
    out = []
    h = F.relu(model.bn1(model.conv1(x)))
    for stage in model.stages:
        for block in stage:
            f = block.bn2(block.conv2(F.relu(block.bn1(block.conv1(h)))))
            s = h if block.conv1.stride[0] == 1 else zero_pad(h, block.conv1.out_channels)
            y = F.relu(f + s) if model.residual else F.relu(f)
            out.append((h, f, s, y))
            h = y
    return out


@pytest.mark.parametrize("residual", [False, True])
def test_branch_ratios_equal_a_direct_computation(residual):
    model, split = hand_set(residual, 14), images()
    norm = pixel_mean(split.x)
    walked = measures.walk_blocks(model, split, norm, batch_size=5)  # three batches: the norms add up across them
    with torch.no_grad():
        direct = direct_blocks(model.eval(), norm(split.x))
    assert [r["skip"] for r in walked["ratios"]] == ["identity", "identity", "zero-pad", "identity", "zero-pad",
                                                     "identity"]
    assert [r["change_ratio"] for r in walked["ratios"]] == pytest.approx(
        [((y - s).norm() / s.norm()).item() for _, _, s, y in direct], rel=1e-5)
    branch = [r["branch_ratio"] for r in walked["ratios"]]
    if residual:
        assert branch == pytest.approx([(f.norm() / s.norm()).item() for _, f, s, _ in direct], rel=1e-5)
    else:
        assert branch == [None] * 6  # a plain block has no branch


def error_and_loss(out, y):
    return (100.0 * (out.argmax(1) != y).float().mean().item(), F.cross_entropy(out, y).item())


def test_lesions_equal_a_direct_computation_and_the_intact_net_equals_evaluate():
    from experiments.training.train import evaluate
    model, split = hand_set(False, 14), images()
    norm = pixel_mean(split.x)
    walked = measures.walk_blocks(model, split, norm, batch_size=5)
    x = norm(split.x)
    model.eval()  # as the study runs it: BN with its running statistics
    with torch.no_grad():
        for k, row in enumerate(walked["lesions"]):
            h = model.forward_stem(x)
            for j, block in enumerate(b for stage in model.stages for b in stage):
                same = block.conv1.stride[0] == 1
                h = (h if same else zero_pad(h, block.conv1.out_channels)) if j == k else block(h)
            err, loss = error_and_loss(model.forward_head(h), split.y)
            assert (row["block"], row["test_err"]) == (k + 1, pytest.approx(err))
            assert row["test_loss"] == pytest.approx(loss, rel=1e-5)
    loss, err = evaluate(model, split, norm, batch_size=5)
    assert walked["intact"] == (pytest.approx(loss, rel=1e-6), pytest.approx(err))
    assert all(r["intact_test_err"] == pytest.approx(err) for r in walked["lesions"])


@pytest.mark.parametrize("block", [1, 3])  # an identity-skip block, and a downsampling one (option A)
def test_deleting_a_block_whose_branch_is_zero_changes_nothing(block):
    model, split = hand_set(True, 14), images()
    target = [b for stage in model.stages for b in stage][block - 1]
    with torch.no_grad():
        target.bn2.weight.zero_()
        target.bn2.bias.zero_()  # F(x) = 0: the block is its skip (its input is non-negative: after a ReLU)
    walked = measures.walk_blocks(model, split, pixel_mean(split.x), batch_size=5)
    rows = {r["block"]: r for r in walked["lesions"]}
    assert rows[block]["test_err"] == rows[block]["intact_test_err"]
    assert rows[block]["test_loss"] == pytest.approx(rows[block]["intact_test_loss"], rel=1e-6)
    assert rows[block]["test_loss"] != rows[block % 6 + 1]["test_loss"]  # while deleting another block shows
    ratios = {r["block"]: r for r in walked["ratios"]}
    assert ratios[block]["branch_ratio"] == 0 and ratios[block]["change_ratio"] == 0


@pytest.mark.parametrize("residual", [False, True])
def test_minimodel_gets_ratios_and_lesions_where_a_unit_has_a_skip_and_no_constructed_net(residual):
    split = images(16)
    cfg = Config(arch=MiniModelArch(units_per_stage=1), residual=residual, depth=8,
                 protocol=ProtocolConfig(batch_size=8, eval_batch_size=8), inspect=InspectConfig(deeper=[20]))
    ds = Dataset(split, images(8, seed=1), None, list(range(10)), "random images")
    from experiments.nets import families
    found = measures.inspect_net(MiniModel(1, residual), cfg, ds, families.get("minimodel"))
    tables, notes = found.tables, found.notes
    # residual: every unit (the pooling ones: their projection shortcut); plain: only the unit that does not pool
    assert [r["skip"] for r in tables[LESION.file]] == (["identity"] + ["projection"] * 3 if residual else ["identity"])
    assert len(tables[BLOCK_RATIOS.file]) == len(tables[LESION.file])
    assert CONSTRUCTED.file not in tables and len(notes) == 1 and set(found.seconds) == {"blocks"}
    assert notes[0].startswith("constructed: not supported for MiniModel: MiniModel is sized by arch.units_per_stage")


# ---- end to end on tiny runs --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def source(image_folder, tmp_path_factory):
    """A completed plain depth-8 run (tiny), to start deeper runs from. Evaluated in fp32 as the inspection's constructed
    net is (speed.bf16=off, whatever `auto` means), so their numbers can be compared exactly."""
    from tests.helpers.harness import tiny_overrides
    out = tmp_path_factory.mktemp("source")
    run_dir = out / "depth=8-residual=false-seed=0"
    tiny = tiny_overrides(image_folder, out / "data")
    ov = tiny + ["depth=8", "residual=false", "inspect.deeper=[14]", "speed.bf16=off"]
    assert run_inprocess(ov, run_dir) == "completed"
    return run_dir


def test_a_completed_run_is_inspected_and_the_intact_error_is_its_final_test_error(source):
    info = json.loads((source / "run.json").read_text())
    assert info["inspection"]["status"] == "done" and info["inspection"]["notes"] == []
    assert info["inspection"]["files"] == [BLOCK_RATIOS.file, LESION.file, CONSTRUCTED.file]
    final = metrics_rows(source)[-1]
    with open(source / LESION.file) as f:
        lesions = f.read().splitlines()
    assert lesions[0].split(",") == list(LESION.columns) and len(lesions) == 1 + 3  # depth 8: 3 blocks
    assert {line.split(",")[LESION.columns.index("intact_test_err")] for line in lesions[1:]} == {final["test_err"]}
    with open(source / CONSTRUCTED.file) as f:
        (header, row) = f.read().splitlines()
    row = dict(zip(header.split(","), row.split(",")))
    assert row["deep_depth"] == "14" and row["test_err_deep"] == row["test_err_shallow"] == final["test_err"]


def test_lesions_are_computed_in_the_runs_own_precision_so_the_intact_error_is_its_last_test_error(tiny, tmp_path):
    """Under bf16 autocast and channels_last (opt-in on a CPU) the block walk runs under the run's autocast and
    layout: its intact error is exactly the run's last evaluation."""
    assert run_inprocess(tiny + ["depth=8", "speed.bf16=on", "speed.channels_last=on"], tmp_path) == "completed"
    final = metrics_rows(tmp_path)[-1]
    with open(tmp_path / LESION.file) as f:
        rows = list(csv.DictReader(f))
    assert {r["intact_test_err"] for r in rows} == {final["test_err"]}
    assert {r["intact_test_loss"][:8] for r in rows} == {final["test_loss"][:8]}


def test_inspection_switched_off_is_done_later_on_demand(tiny, tmp_path, capsys):
    runs = tmp_path / "runs"
    run = runs / "r"
    assert run_inprocess(tiny + ["depth=8", "inspect.enabled=false", "inspect.deeper=[14,20]"], run) == "completed"
    assert "inspection" not in json.loads((run / "run.json").read_text()) and not (run / LESION.file).exists()
    assert inspection.main(["--missing", str(runs), "--device", "cpu"]) == 0  # a directory of runs, as make plots
    info = json.loads((run / "run.json").read_text())
    assert info["inspection"]["status"] == "done" and (run / LESION.file).exists()
    assert [r.split(",")[0] for r in (run / CONSTRUCTED.file).read_text().splitlines()[1:]] == ["14", "20"]
    assert inspection.main(["--missing", str(runs)]) == 0
    assert "skipped: already inspected" in capsys.readouterr().out
    assert inspection.main([str(tmp_path / "nowhere")]) == 1  # an explicit run that is not one: an error


def test_runs_kept_without_weights_are_one_line_for_make_plots_and_an_error_when_named(tiny, tmp_path, capsys):
    """Committed runs carry no checkpoint.pt: `make plots` (--missing) says so once for all of them, with no
    warning and exit 0; naming such a run explicitly is still an error."""
    runs = tmp_path / "runs"
    for name in ("a", "b"):
        assert run_inprocess(tiny + ["depth=8", "inspect.enabled=false"], runs / name) == "completed"
        (runs / name / "checkpoint.pt").unlink()
    capsys.readouterr()
    assert inspection.main(["--missing", str(runs), "--device", "cpu"]) == 0
    out, err = capsys.readouterr()
    assert "warning" not in err and out.count("not inspectable here") == 1 and "2 run(s) (a, b)" in out
    assert inspection.main([str(runs / "a"), "--device", "cpu"]) == 1
    assert "has no checkpoint.pt" in capsys.readouterr().err


def test_run_name_spells_init_from_readably(source):
    name = run_name("depth=14", False, 0, [f"init.from='{source}'", "inspect.enabled=false"])
    assert name.startswith("depth=14-residual=false-seed=0-init=from-depth8-") and len(name.split("-")[-1]) == 8
    assert name == run_name("depth=14", False, 0, [f"init.from={str(source).replace('=', chr(92) + '=')}"])


def test_init_from_is_checked_in_one_line_before_anything_runs(source, tiny, tmp_path):
    def problem(*extra):
        return precheck.check(tiny + ["depth=14", "residual=false", *extra])
    assert problem(f"init.from='{source}'") is None
    assert problem(f"init.from='{tmp_path}'").endswith("no run there (no run.json): give the directory of a "
                                                       "completed run")
    assert "must be the same family and kind of net" in precheck.check(
        tiny + ["depth=14", "residual=true", f"init.from='{source}'"])
    assert "start a deeper run than that" in precheck.check(tiny + ["depth=8", "residual=false", f"init.from='{source}'"])
    assert problem("+init.form=x") == "init.form: unknown key: init takes only init.from=RUN_DIR (a completed " \
                                      "shallower run)"
    assert problem("init.frm=x") == "unknown key 'init.frm' (did you mean 'init.from'?)"
    assert problem("inspect.deeper=[21]").startswith("inspect.deeper=[21]: depth=21 is not of the form 6n+2")
    # its weights learned on inputs normalised one way: a run that feeds them inputs normalised another is refused
    assert problem(f"init.from='{source}'", "protocol.normalize=fixed", "protocol.normalize_mean=[0.5]",
                   "protocol.normalize_std=[0.25]").endswith(
        "normalises its inputs by pixel_mean, this run by fixed (mean [0.5], std [0.25]): give this run that run's "
        "protocol.normalize (and protocol.normalize_mean, normalize_std)")


def test_init_from_starts_at_the_shallow_nets_error_is_labelled_and_resumes(source, tiny, tmp_path, monkeypatch):
    from analysis.load import scan_runs
    ov = tiny + ["depth=14", "residual=false", f"init.from='{source}'", "inspect.enabled=false"]
    whole = tmp_path / "runs" / "whole"
    assert run_inprocess(ov, whole) == "completed"
    info = json.loads((whole / "run.json").read_text())
    start, final = info["init"]["start"], metrics_rows(source)[-1]
    assert (info["init"]["depth"], info["init"]["run"], start["deep_depth"]) == (8, source.name, 14)
    assert start["test_err_deep"] == start["test_err_shallow"] == float(final["test_err"])  # where the source ended
    assert start["test_loss_deep"] == pytest.approx(start["test_loss_shallow"], rel=1e-5)
    assert start["test_loss_shallow"] == pytest.approx(float(final["test_loss"]), rel=1e-5)
    assert start["max_logit_diff"] < 1e-4
    assert {r["init_depth"] for r in metrics_rows(whole)} == {"8"}
    frame = scan_runs(tmp_path / "runs").frame
    assert set(frame["net"]) == {"plain-14 (from plain-8)"}

    cut = tmp_path / "runs" / "cut"
    sigterm_as_epoch_ends(monkeypatch, 1)
    with pytest.raises(SystemExit) as stopped:
        run_inprocess(ov, cut)
    assert stopped.value.code == 128 + signal.SIGTERM
    assert json.loads((cut / "run.json").read_text())["status"] == "interrupted" and len(metrics_rows(cut)) == 1
    monkeypatch.undo()
    assert run_inprocess(ov, cut) == "completed"  # resumed from its own checkpoint, not constructed again
    assert numbers(cut) == numbers(whole)
    assert json.loads((cut / "run.json").read_text())["init"] == info["init"]

    moved = [o.replace(f"'{source}'", f"'{source}/'") for o in ov]  # another init.from is another run
    with pytest.raises(Exception, match=r"differs in: init.from"):
        run_inprocess(moved, cut)
