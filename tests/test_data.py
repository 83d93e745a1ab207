import os
import tarfile

import pytest
import torch

from experiments.config import DataConfig, Source
from experiments.data.datasets import DataError, balanced_subset, load
from experiments.errors import UserError
from tests.helpers.harness import CLASSES, make_image_folder, run_inprocess, sigterm_as_epoch_ends, tiny_overrides


def cfg(root, data_dir, **kw) -> DataConfig:
    return DataConfig(source=Source.imagefolder, root=str(root), dir=str(data_dir), **kw)


def make_tar(folder, path):
    with tarfile.open(path, "w:gz") as tar:
        tar.add(folder, arcname="cifar-like")  # with a top-level folder, as archives usually have
    return path


def test_folder_and_tarball_decode_to_the_same_tensors(image_folder, tmp_path):
    a = load(cfg(image_folder, tmp_path / "d1"))
    b = load(cfg(make_tar(image_folder, tmp_path / "x.tar.gz"), tmp_path / "d2"))
    assert a.classes == b.classes == sorted(CLASSES)
    assert a.train.x.dtype == torch.uint8 and a.train.x.shape == (16 * 4, 3, 32, 32)
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)
    assert a.train.y.bincount().tolist() == [16] * 4
    assert "image folder" in a.description


def test_decoded_cache_is_reused_and_never_stale(tmp_path, monkeypatch):
    src = make_image_folder(tmp_path / "src", 4, 2)
    first = load(cfg(src, tmp_path / "data"))
    caches = list((tmp_path / "data").rglob("*.pt"))
    assert len(caches) == 1
    import experiments.data.datasets as d
    monkeypatch.setattr(d, "decode", lambda *a: pytest.fail("decoded again despite a valid cache"))
    assert torch.equal(load(cfg(src, tmp_path / "data")).train.x, first.train.x)
    monkeypatch.undo()
    # change one image: the cache key changes, so the new pixels are served
    from PIL import Image
    img = src / "train" / "bus" / "0000.png"
    Image.new("RGB", (32, 32), (1, 2, 3)).save(img)
    os.utime(img, ns=(1, 1))
    changed = load(cfg(src, tmp_path / "data"))
    assert not torch.equal(changed.train.x, first.train.x)
    assert len(list((tmp_path / "data").rglob("*.pt"))) == 2


def test_damaged_cache_is_rebuilt(tmp_path):
    src = make_image_folder(tmp_path / "src", 2, 1)
    good = load(cfg(src, tmp_path / "data")).train.x
    cache = next((tmp_path / "data").rglob("*.pt"))
    cache.write_bytes(cache.read_bytes()[:100])
    assert torch.equal(load(cfg(src, tmp_path / "data")).train.x, good)


def test_read_only_source_gets_nothing_written_beside_it(tmp_path):
    src = make_image_folder(tmp_path / "ro", 2, 1)
    before = sorted(p for p in tmp_path.rglob("*"))
    os.chmod(src, 0o555)
    try:
        load(cfg(src, tmp_path / "data"))
    finally:
        os.chmod(src, 0o755)
    after = sorted(p for p in tmp_path.rglob("*") if "data" not in p.relative_to(tmp_path).parts)
    assert after == before


def test_corrupt_archive_names_the_file_and_the_fix(image_folder, tmp_path):
    tgz = make_tar(image_folder, tmp_path / "c.tar.gz")
    tgz.write_bytes(tgz.read_bytes()[: tgz.stat().st_size // 2])
    with pytest.raises(DataError, match="truncated or corrupt.*copy it again"):
        load(cfg(tgz, tmp_path / "data"))


def test_missing_root_and_wrong_sizes_are_reported(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load(cfg(tmp_path / "nope", tmp_path / "data"))
    from PIL import Image
    for split in ("train", "test"):
        (tmp_path / "big" / split / "a").mkdir(parents=True)
        Image.new("RGB", (64, 64)).save(tmp_path / "big" / split / "a" / "x.png")
    with pytest.raises(DataError, match="64x64, expected 32x32"):
        load(cfg(tmp_path / "big", tmp_path / "data"))


def test_cifar10_missing_without_download_names_the_directory_and_both_ways_out(tmp_path):
    c = DataConfig(source=Source.cifar10, dir=str(tmp_path / "cifar"), download=False)
    with pytest.raises(DataError) as e:
        load(c)
    msg = str(e.value)
    assert str(tmp_path / "cifar") in msg and "data.download=true" in msg and "data=imagefolder" in msg


def test_balanced_subset_is_fixed_balanced_and_not_the_first_n():
    y = torch.arange(10).repeat_interleave(100)  # sorted by class, as an image folder is
    idx = balanced_subset(y, 50, seed=0)
    assert torch.equal(idx, balanced_subset(y, 50, seed=0))
    assert y[idx].bincount().tolist() == [5] * 10
    assert not torch.equal(idx, balanced_subset(y, 50, seed=1))
    assert idx.unique().numel() == 50


def test_validation_split_is_disjoint_seeded_and_subsets_apply(image_folder, tmp_path):
    ds = load(cfg(image_folder, tmp_path / "d", val_size=8, train_size=24, test_size=12))
    assert len(ds.val) == 8 and len(ds.train) == 24 and len(ds.test) == 12
    assert ds.val.y.bincount().tolist() == [2] * 4 and ds.test.y.bincount().tolist() == [3] * 4
    everything = load(cfg(image_folder, tmp_path / "d")).train.x.flatten(1)
    # no validation image is also a training image
    val_rows = {bytes(r.numpy()) for r in ds.val.x.flatten(1)}
    assert not val_rows & {bytes(r.numpy()) for r in ds.train.x.flatten(1)}
    assert val_rows <= {bytes(r.numpy()) for r in everything}
    with pytest.raises(DataError, match="train_size"):
        load(cfg(image_folder, tmp_path / "d", train_size=10_000))


# ---- the classes come from the data: the head is sized by them --------------------------------------------------------

def folder_of(classes: int, root):
    return make_image_folder(root, per_class_train=4, per_class_test=1, classes=[f"c{i:02d}" for i in range(classes)])


@pytest.mark.parametrize("arch", [["depth=8"], ["arch=minimodel", "arch.units_per_stage=1"]], ids=["paper", "minimodel"])
@pytest.mark.parametrize("classes", [2, 12])
def test_any_count_of_classes_trains_with_a_head_of_that_size(arch, classes, tmp_path):
    """An image folder of 11 or 12 classes once failed mid-run (IndexError: Target 10 is out of bounds), and one of
    fewer than 10 trained a 10-way head."""
    import json
    out = tmp_path / "run"
    overrides = tiny_overrides(folder_of(classes, tmp_path / "f"), tmp_path / "data") + arch + ["protocol.batch_size=8"]
    assert run_inprocess(overrides, out) == "completed"
    assert json.loads((out / "run.json").read_text())["num_classes"] == classes
    weights = torch.load(out / "checkpoint.pt")["trainer"]["model"]
    head = [v for v in weights.values() if v.ndim == 2][-1]  # the last linear layer, whatever the family calls it
    assert head.shape[0] == classes


def test_one_class_is_refused_in_one_line(tmp_path):
    with pytest.raises(DataError, match="has 1 class folder under train/ .c00.: a classifier needs at least 2"):
        load(cfg(folder_of(1, tmp_path / "f"), tmp_path / "data"))


def test_a_checkpoint_whose_head_does_not_fit_the_data_is_one_line(tmp_path, monkeypatch):
    """A run from before data fingerprints (its data checked by path only) whose folder now holds 12 classes."""
    import json
    import shutil
    folder, out = folder_of(4, tmp_path / "f"), tmp_path / "run"
    overrides = tiny_overrides(folder, tmp_path / "data") + ["depth=8"]
    sigterm_as_epoch_ends(monkeypatch, 1)
    with pytest.raises(SystemExit):
        run_inprocess(overrides, out)
    monkeypatch.undo()
    info = json.loads((out / "run.json").read_text())
    info.pop("data_fingerprint", None)  # as such a run has it: not at all
    (out / "run.json").write_text(json.dumps(info))
    ckpt = torch.load(out / "checkpoint.pt")
    torch.save({k: v for k, v in ckpt.items() if k != "data_fingerprint"}, out / "checkpoint.pt")
    shutil.rmtree(folder)
    folder_of(12, folder)
    with pytest.raises(UserError, match=r"is a net with a 4-class head, and the data \(data.root=.*\) have 12 classes"):
        run_inprocess(overrides, out)
