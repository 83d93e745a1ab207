"""CIFAR-10 fetches itself by default, is checked against its checksums, and a failed download (no network, a
corrupt archive) ends in one line with both ways out and leaves nothing half-written in data.dir.

No network here: the "server" is an HTTP server on 127.0.0.1 serving a small archive in CIFAR-10's own format,
with torchvision's URL and checksums patched to match it, so the real download, checksum and extraction code
runs."""
from __future__ import annotations

import functools
import hashlib
import http.server
import io
import pickle
import sys
import tarfile
import threading

import numpy as np
import pytest
from torchvision.datasets import CIFAR10

from experiments.config import DataConfig
from experiments.data import datasets as data_mod
from experiments.data.datasets import DataError

BATCHES = [f"data_batch_{i}" for i in range(1, 6)]


def md5(raw: bytes) -> str:
    return hashlib.md5(raw).hexdigest()


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path, monkeypatch):
    """A CIFAR-10-format archive of 5 x 4 training and 4 test images served over HTTP on 127.0.0.1;
    torchvision's URL and checksums point at it."""
    rng = np.random.default_rng(0)
    files = {}
    for name in [*BATCHES, "test_batch"]:
        files[name] = pickle.dumps({"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8),
                                    "labels": [0, 1, 2, 3]})
    files["batches.meta"] = pickle.dumps({"label_names": ["airplane", "automobile", "bird", "cat"]})
    archive = tmp_path / "server" / CIFAR10.filename
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        for name, raw in files.items():
            info = tarfile.TarInfo(f"{CIFAR10.base_folder}/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(archive.parent)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    monkeypatch.setattr(CIFAR10, "url", f"http://127.0.0.1:{httpd.server_address[1]}/{CIFAR10.filename}")
    monkeypatch.setattr(CIFAR10, "tgz_md5", md5(archive.read_bytes()))
    monkeypatch.setattr(CIFAR10, "train_list", [[n, md5(files[n])] for n in BATCHES])
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", md5(files["test_batch"])]])
    monkeypatch.setattr(CIFAR10, "meta", {"filename": "batches.meta", "key": "label_names",
                                          "md5": md5(files["batches.meta"])})
    yield archive
    httpd.shutdown()
    httpd.server_close()


def test_download_is_on_by_default_checked_and_lands_whole(server, tmp_path):
    assert DataConfig().download is True
    ds = data_mod.load(DataConfig(dir=str(tmp_path / "data")))
    assert (len(ds.train), len(ds.test)) == (20, 4) and ds.classes == ["airplane", "automobile", "bird", "cat"]
    # only the extracted, checked folder: no archive, no temporary folder
    assert [p.name for p in (tmp_path / "data").iterdir()] == [CIFAR10.base_folder]
    assert data_mod.load(DataConfig(dir=str(tmp_path / "data"))).train.x.equal(ds.train.x)  # no second download


def test_no_network_is_one_line_with_both_ways_out_and_nothing_written(server, tmp_path, monkeypatch):
    monkeypatch.setattr(CIFAR10, "url", "http://127.0.0.1:9/cifar-10-python.tar.gz")  # nothing listens there
    with pytest.raises(DataError) as e:
        data_mod.load(DataConfig(dir=str(tmp_path / "data")))
    message = str(e.value)
    assert "\n" not in message and "could not download CIFAR-10" in message
    assert "connect to the network" in message and "data=imagefolder data.root=PATH" in message
    assert list((tmp_path / "data").iterdir()) == []


def test_a_corrupt_archive_is_never_used_and_nothing_stays(server, tmp_path):
    server.write_bytes(server.read_bytes()[:-100])  # cut short in transit: its checksum no longer matches
    with pytest.raises(DataError, match="failed torchvision's checksum"):
        data_mod.load(DataConfig(dir=str(tmp_path / "data")))
    assert list((tmp_path / "data").iterdir()) == []


def test_a_damaged_copy_in_data_dir_is_replaced_by_a_checked_one(server, tmp_path):
    folder = tmp_path / "data" / CIFAR10.base_folder
    folder.mkdir(parents=True)
    (folder / "data_batch_1").write_bytes(b"damaged")
    assert len(data_mod.load(DataConfig(dir=str(tmp_path / "data"))).train) == 20
    assert [p.name for p in (tmp_path / "data").iterdir()] == [CIFAR10.base_folder]


def test_offline_from_the_command_line_is_one_line_exit_2_before_any_run(server, tmp_path, monkeypatch, capsys):
    from experiments import run
    monkeypatch.setattr(CIFAR10, "url", "http://127.0.0.1:9/cifar-10-python.tar.gz")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["run", "-m", "depth=20,56", "protocol=smoke", "device=cpu"])
    with pytest.raises(SystemExit) as exit_:
        run.cli()
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1 and "could not download CIFAR-10" in err[0]
    assert not (tmp_path / "results").exists() and list((tmp_path / "data").iterdir()) == []
