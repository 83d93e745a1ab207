"""Published trained weights as runs (experiments/pretrained.py, issue 33), on small synthetic weights in the source's
layout: the mapping against a direct computation of the source layout's function, bad files and commands refused in
one line with nothing written, and the import end to end (evaluation, Figure 7's file, the inspection)."""
from __future__ import annotations

import csv
import hashlib
import json

import pytest
import torch
import torch.nn.functional as F

from analysis import imported_text, published, report
from experiments import inspect as inspection
from experiments import pretrained
from experiments.harness.checkpoint import load_model
from experiments.nets.resnet_cifar import CifarResNet
from runformat import CHECKPOINT, LAYER_STATS, LESION, METRICS, RUN_JSON, amartyn
from tests.helpers.harness import decoded_images, make_image_folder

CIFAR10 = list(pretrained.CIFAR10_CLASSES)
STEPS = published.EPOCHS * published.ITERS_PER_EPOCH  # their last step: 164 epochs of 391


# ---- the source's layout, as this test understands it from its resnet.py ---------------------------------------

def source_names(depth: int) -> list[str]:
    """The source's module names in its order: convIn, bnIn, stack1.i, stack2a, stack2b.i, stack3a, stack3b.i, fcOut."""
    n = (depth - 2) // 6
    blocks = ([f"stack1.{i}" for i in range(n)] + ["stack2a"] + [f"stack2b.{i}" for i in range(n - 1)]
              + ["stack3a"] + [f"stack3b.{i}" for i in range(n - 1)])
    return blocks


def bn_state(prefix: str, c: int, g: torch.Generator) -> dict:
    return {f"{prefix}.weight": 1 + 0.3 * torch.randn(c, generator=g), f"{prefix}.bias": 0.2 * torch.randn(c, generator=g),
            f"{prefix}.running_mean": 0.3 * torch.randn(c, generator=g),
            f"{prefix}.running_var": 0.5 + torch.rand(c, generator=g),
            f"{prefix}.num_batches_tracked": torch.tensor(STEPS)}


def source_state(depth: int, seed: int = 0) -> dict:
    """A state dict in the source's layout and order, every value random (BN statistics too)."""
    g = torch.Generator().manual_seed(seed)

    def conv(cout, cin):
        return torch.randn(cout, cin, 3, 3, generator=g) * (2 / (9 * cin)) ** 0.5
    state = {"convIn.weight": conv(16, 3), **bn_state("bnIn", 16, g)}
    for name in source_names(depth):
        width = {"1": 16, "2": 32, "3": 64}[name[5]]
        cin = width // 2 if name in ("stack2a", "stack3a") else width
        state[f"{name}.conv1.weight"] = conv(width, cin)
        state.update(bn_state(f"{name}.bn1", width, g))
        state[f"{name}.conv2.weight"] = conv(width, width)
        state.update(bn_state(f"{name}.bn2", width, g))
    state["fcOut.weight"] = torch.randn(10, 64, generator=g) * 0.3
    state["fcOut.bias"] = torch.randn(10, generator=g) * 0.1
    return state


def bn(state, prefix, x):
    return F.batch_norm(x, state[f"{prefix}.running_mean"], state[f"{prefix}.running_var"], state[f"{prefix}.weight"],
                        state[f"{prefix}.bias"], training=False)


def source_forward(state: dict, depth: int, residual: bool, x: torch.Tensor) -> torch.Tensor:
    """The source layout's function, written out from its description: each block conv-BN-ReLU-conv-BN, plus (ResNet)
    its input, subsampled by a stride-2 1x1 average pool with zero channels appended where the block widens, then
    ReLU; global average pool, fcOut, log-softmax."""
    z = F.relu(bn(state, "bnIn", F.conv2d(x, state["convIn.weight"], padding=1)))
    for name in source_names(depth):
        down = name in ("stack2a", "stack3a")
        h = F.relu(bn(state, f"{name}.bn1", F.conv2d(z, state[f"{name}.conv1.weight"], stride=2 if down else 1,
                                                     padding=1)))
        h = bn(state, f"{name}.bn2", F.conv2d(h, state[f"{name}.conv2.weight"], padding=1))
        if residual:
            skip = F.avg_pool2d(z, 1, 2) if down else z
            h = h + (torch.cat([skip, torch.zeros_like(skip)], 1) if down else skip)
        z = F.relu(h)
    return F.log_softmax(F.linear(z.mean((2, 3)), state["fcOut.weight"], state["fcOut.bias"]), 1)


def mapped_net(depth: int, residual: bool, state: dict) -> CifarResNet:
    model = CifarResNet(depth, residual, "A")
    model.load_state_dict(pretrained.mapped(state, model.state_dict(), "the file", "the net"))
    return model.eval()


@pytest.mark.parametrize("residual", [False, True], ids=["plain", "resnet"])
@pytest.mark.parametrize("depth", [8, 20])
def test_a_converted_net_computes_the_source_layouts_function(depth, residual):
    state = source_state(depth)
    x = torch.randn(6, 3, 32, 32)
    with torch.no_grad():
        ours = F.log_softmax(mapped_net(depth, residual, state)(x), 1)
    expected = source_forward(state, depth, residual, x)
    assert ours == pytest.approx(expected, abs=1e-4)
    assert (ours.argmax(1) == expected.argmax(1)).all()


@pytest.mark.parametrize("change, expected", [
    (lambda s: s.update({"stack1.0.conv2.weight": torch.zeros(16, 8, 3, 3)}),
     "tensor 13 `stack1.0.conv2.weight` (16, 8, 3, 3) does not fit the net's `stages.0.0.conv2.weight` (16, 16, 3, 3)"),
    (lambda s: s.pop("fcOut.bias"), "115 tensors where the net has 116 (the net's `fc.bias` has no counterpart)"),
    (lambda s: s.pop("stack2a.bn1.running_var"),
     "`stack2a.bn1.num_batches_tracked` () does not fit the net's `stages.1.0.bn1.running_var` (32,)"),
    (lambda s: s.update({"extra.weight": torch.zeros(1)}), "117 tensors where the net has 116 (`extra.weight` is extra)"),
])
def test_a_file_that_does_not_fit_is_refused_at_the_first_tensor_that_does_not(change, expected):
    state = source_state(20)
    change(state)
    with pytest.raises(pretrained.PretrainedError) as e:
        pretrained.mapped(state, CifarResNet(20, False).state_dict(), "the file", "the net")
    assert expected in str(e.value) and "\n" not in str(e.value)


def test_the_epoch_a_file_holds_is_read_from_its_bn_step_counts():
    assert pretrained.saved_epoch(source_state(8))[0] == 164
    state = {**source_state(8), "bnIn.num_batches_tracked": torch.tensor(391 * 139)}
    assert pretrained.saved_epoch(state)[0] is None  # the layers disagree: no claim


# ---- the import, end to end ------------------------------------------------------------------------------------

def fake_clone(root, stems=("plainnet20", "resnet20"), states=None):
    """A clone's pretrained/<stem>.pt (random weights in the source's layout), its curves and LICENSE."""
    (root / "pretrained").mkdir(parents=True)
    (root / "results").mkdir()
    for k, stem in enumerate(stems):
        depth = published.NETS[stem][0]
        torch.save((states or {}).get(stem) or source_state(depth, seed=k), root / "pretrained" / f"{stem}.pt")
        rows = [f"{e},0.5,0.1,0.2" for e in range(published.EPOCHS - 1)] + [f"{published.EPOCHS - 1},0.01,0.0042,0.0969"]
        (root / "results" / f"{stem}.csv").write_text("\n".join([amartyn.HEADER, *rows]) + "\n")
    (root / "LICENSE").write_text("BSD 3-Clause License\n")
    return root


@pytest.fixture(scope="module")
def cifar_like(tmp_path_factory):
    """CIFAR-10's class names, 16 training images each (more than one batch of 128, for the inspection's training
    batches) and 3 test images."""
    return make_image_folder(tmp_path_factory.mktemp("cifar") / "folder", per_class_train=16, per_class_test=3,
                             classes=CIFAR10)


def overrides(folder, tmp_path, *extra):
    return ["data=imagefolder", f"data.root={folder}", f"data.dir={tmp_path / 'data'}", "device=cpu",
            "speed.threads=1", *extra]


def by_hand_error(state, depth, residual, folder, tmp_path) -> float:
    """The source layout's test error on the folder's test images, normalised as the source trained: (x/255 - mean) /
    std per channel, computed here without the harness's normaliser."""
    from experiments.data.datasets import load_imagefolder
    _, test, _, _ = load_imagefolder(folder, tmp_path / "data")
    m, s = (torch.tensor(v).view(1, 3, 1, 1) for v in (pretrained.MEAN, pretrained.STD))
    with torch.no_grad():
        out = source_forward(state, depth, residual, (test.x.float() / 255 - m) / s)
    return 100.0 * (out.argmax(1) != test.y).float().mean().item()


@pytest.fixture(scope="module")
def imported(cifar_like, tmp_path_factory):
    """Two nets imported once for the tests below: -> (clone, the set, the data folder's cache dir)."""
    tmp = tmp_path_factory.mktemp("imported")
    clone, out = fake_clone(tmp / "clone"), tmp / "set"
    assert pretrained.main(["--from", str(clone), "--out", str(out), "--nets", "plainnet20,resnet20",
                            *overrides(cifar_like, tmp, "inspect.deeper=[26]", "inspect.train_batches=1")]) == 0
    return clone, out, tmp


def test_the_import_writes_completed_runs_evaluated_as_the_source_layout_computes(imported, cifar_like):
    clone, out, tmp = imported
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["plainnet20", "resnet20"]
    assert (out / "LICENSE").read_text() == "BSD 3-Clause License\n" and "plainnet20" in (out / "README.md").read_text()
    for k, (stem, residual) in enumerate([("plainnet20", False), ("resnet20", True)]):
        run = out / "runs" / stem
        rows = list(csv.DictReader((run / METRICS.file).open()))
        assert len(rows) == 1 and (rows[0]["epoch"], rows[0]["iteration"]) == ("164", str(STEPS))
        assert float(rows[0]["test_err"]) == pytest.approx(by_hand_error(source_state(20, k), 20, residual,
                                                                         cifar_like, tmp))
        info = json.loads((run / RUN_JSON).read_text())
        assert info["status"] == "completed" and info["train_err_measure"] == "eval_after_epoch"
        meta = info["imported"]
        assert meta["sha256"] == hashlib.sha256((clone / "pretrained" / f"{stem}.pt").read_bytes()).hexdigest()
        assert (meta["file"], meta["epoch"], meta["license"]) == (f"pretrained/{stem}.pt", 164, "BSD-3-Clause")
        assert (meta["source_train_err"], meta["source_test_err"]) == (0.42, 9.69)  # their row at epoch 164
        assert meta["normalize"] == {"kind": "fixed", "mean": list(pretrained.MEAN), "std": list(pretrained.STD)}
        protocol = info["config"]["protocol"]
        assert (protocol["normalize"], protocol["normalize_mean"], protocol["iterations"]) == (
            "fixed", list(pretrained.MEAN), STEPS)
        checkpoint = torch.load(run / CHECKPOINT, weights_only=True)
        assert checkpoint["config"]["protocol"]["normalize_std"] == list(pretrained.STD)
        # Figure 7's file: one row per 3x3 layer, at their epoch
        stats = list(csv.DictReader((run / LAYER_STATS.file).open()))
        assert len(stats) == 19 and {r["epoch"] for r in stats} == {"164"}
        # the inspection: done, and its intact net is the evaluated one
        assert info["inspection"]["status"] == "done" and "constructed.csv" in info["inspection"]["files"]
        lesion = list(csv.DictReader((run / LESION.file).open()))
        assert {float(r["intact_test_err"]) for r in lesion} == {float(rows[0]["test_err"])}


def test_experiments_inspect_redoes_the_inspection_from_the_checkpoint_alone(imported):
    run = imported[1] / "runs" / "plainnet20"
    written = (run / "constructed.csv").read_text()
    (run / "constructed.csv").unlink()
    assert inspection.main([str(run)]) == 0
    assert (run / "constructed.csv").read_text() == written  # the same weights, normalisation and data again
    constructed = list(csv.DictReader((run / "constructed.csv").open()))
    assert float(constructed[0]["test_err_deep"]) == float(constructed[0]["test_err_shallow"])


def test_load_model_gives_an_imported_net_with_its_fixed_normalisation(imported, cifar_like):
    """Issue 34: checkpoints stand alone, the imported ones too: their `fixed` normalisation is kept with the weights."""
    run = imported[1] / "runs" / "resnet20"
    model, transform = load_model(run)
    assert transform.shift.flatten().tolist() == pytest.approx(list(pretrained.MEAN))
    x, y = decoded_images(cifar_like, "test")
    with torch.no_grad():
        wrong = (model(transform(x)).argmax(1) != y).float().mean().item()
    assert 100 * wrong == pytest.approx(float(next(csv.DictReader((run / METRICS.file).open()))["test_err"]))


def test_the_report_leads_with_their_section_and_draws_no_curves(imported, tmp_path):
    out = tmp_path / "report"
    assert report.main(["--runs", str(imported[1] / "runs"), "--out", str(out), "--reference", "none"]) == 0
    md = (out / "report.md").read_text()
    assert md.index("## Fully trained nets (published weights)") < md.index("### Figure 7") < md.index(
        "### Why depth hurts plain nets") < md.index("#### Lesion study") < md.index("## Final error against depth")
    assert "**Not trained here: 2 nets trained by a-martyn/resnet (BSD-3-Clause, commit a977915) on the original" in md
    plain20 = float(list(csv.DictReader((imported[1] / "runs" / "plainnet20" / METRICS.file).open()))[0]["test_err"])
    assert f"plain-20 {plain20:.2f}% vs 9.69% ({plain20 - 9.69:+.2f})" in md
    assert (out / "fig7.png").exists() and not (out / "fig6.png").exists() and "gradients" not in md.lower()
    # evaluated on other images than they were trained on: no verdict from this harness's numbers
    assert md.splitlines()[2].startswith("**Verdict: not judged from these evaluations.** The weights were trained on the "
                                         "original CIFAR-10") and "**Verdict: not reproduced" not in md


def snapshot(root):
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()} if root.exists() else {}


@pytest.mark.parametrize("case, expected", [
    ("shape", "tensor 1 `convIn.weight` (16, 1, 3, 3) does not fit ResNet-20's `conv1.weight` (16, 3, 3, 3)"),
    ("missing", "115 tensors where plain-20 has 116"),
    ("fixed", "depth=56: the weights fix arch, depth, residual"),
    ("classes", "the data's classes are apple, bus, cat, dog; these weights classify CIFAR-10's"),
    ("nets", "--nets plainnet21: plainnet21 is not one of"),
])
def test_bad_input_is_one_line_and_exit_2_with_nothing_written(case, expected, cifar_like, image_folder, tmp_path,
                                                                capsys):
    states = {"resnet20": {**source_state(20), "convIn.weight": torch.zeros(16, 1, 3, 3)}} if case == "shape" else {}
    if case == "missing":
        states["plainnet20"] = {k: v for k, v in source_state(20).items() if k != "fcOut.bias"}
    clone, out = fake_clone(tmp_path / "clone", states=states), tmp_path / "set"
    (out / "runs" / "plainnet20").mkdir(parents=True)
    (out / "runs" / "plainnet20" / RUN_JSON).write_text("{}")  # an earlier import: must stay as it was
    before = snapshot(out)
    folder = image_folder if case == "classes" else cifar_like
    args = ["--from", str(clone), "--out", str(out), "--nets", "plainnet21" if case == "nets" else "plainnet20,resnet20",
            *overrides(folder, tmp_path, *(["depth=56"] if case == "fixed" else []))]
    assert pretrained.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err
    assert snapshot(out) == before


def test_on_their_data_a_constructed_net_has_its_shallow_nets_published_errors():
    """The constructed net computes its shallow net's function, so on the source's data its errors are the shallow
    net's as the source published them, set beside the trained deeper net's: the numbers decide the words."""
    import pandas as pd
    rows = pd.DataFrame([{"net": n, "source_train_err": tr, "source_test_err": te} for n, tr, te in (
        ("plain-20", 0.738, 9.69), ("plain-32", 0.794, 10.04), ("plain-56", 3.332, 13.07), ("ResNet-20", 0.4, 8.04),
        ("ResNet-56", 0.038, 7.46))])
    profile = pd.DataFrame([{"family": "resnet_cifar", "net": n, "depth": d, "residual": r, "shortcut": "A",
                             "deep_depth": 56, "max_logit_diff": diff} for n, d, r, diff in (
        ("plain-20", 20, False, 2e-5), ("plain-32", 32, False, 3e-5), ("ResNet-20", 20, True, 0.0))])
    paragraph = imported_text.their_constructions_paragraph(rows, profile)
    assert "(largest logit difference here 3.0e-05)" in paragraph
    assert ("plain-56 built from plain-20, plain-32: training error 0.738%, 0.794% against the trained plain-56's "
            "3.332% (test error 9.69%, 10.04% against 13.07%): all 2 lower: a solution SGD did not find.") in paragraph
    assert ("ResNet-56 built from ResNet-20: training error 0.4% against the trained ResNet-56's 0.038% (test error "
            "8.04% against 7.46%): not lower: SGD found a better one.") in paragraph
