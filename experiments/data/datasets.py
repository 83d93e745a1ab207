"""CIFAR-10 as uint8 tensors: torchvision's files or an image folder (plain or .tar.gz), subsets, splits.

Everything here returns whole splits; `experiments.data.loader` moves them to the device and draws batches.
"""
from __future__ import annotations

import hashlib
import io
import os
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from experiments.config import DataConfig, Source
from experiments.errors import UserError


class DataError(UserError):
    """A problem with the user's data: the message names it and says how to fix it."""


@dataclass
class Split:
    x: torch.Tensor  # [N, 3, 32, 32] uint8
    y: torch.Tensor  # [N] int64

    def __len__(self) -> int:
        return len(self.y)

    def to(self, device) -> "Split":
        return Split(self.x.to(device), self.y.to(device))


@dataclass
class Dataset:
    train: Split
    test: Split
    val: Optional[Split]
    classes: list
    description: str  # what the images are, for run.json and the report


def load(cfg: DataConfig) -> Dataset:
    if cfg.source == Source.cifar10:
        train, test, classes, desc = load_cifar10(Path(cfg.dir), cfg.download)
    else:
        if not cfg.root:
            raise DataError("data=imagefolder needs data.root=PATH (a folder with train/ and test/, or a .tar.gz)")
        train, test, classes, desc = load_imagefolder(Path(cfg.root), Path(cfg.dir))
    return select(train, test, classes, desc, cfg)


def select(train: Split, test: Split, classes, desc: str, cfg: DataConfig) -> Dataset:
    """Validation split first (from the full training set), then the fixed subsets; all seeded by subset_seed."""
    for name, n, pool in (("val_size", cfg.val_size, len(train)), ("train_size", cfg.train_size, len(train)),
                          ("test_size", cfg.test_size, len(test))):
        if n < 0 or n > pool:
            raise DataError(f"data.{name}={n} is outside 0..{pool} (the number of images available)")
    if cfg.val_size + cfg.train_size > len(train):
        raise DataError(f"data.val_size + data.train_size = {cfg.val_size + cfg.train_size} exceeds the "
                        f"{len(train)} training images")
    val = None
    if cfg.val_size:
        val_idx = balanced_subset(train.y, cfg.val_size, cfg.subset_seed)
        keep = torch.ones(len(train), dtype=torch.bool)
        keep[val_idx] = False
        val, train = take(train, val_idx), take(train, keep.nonzero().squeeze(1))
    if cfg.train_size:
        train = take(train, balanced_subset(train.y, cfg.train_size, cfg.subset_seed + 1))
    if cfg.test_size:
        test = take(test, balanced_subset(test.y, cfg.test_size, cfg.subset_seed + 2))
    return Dataset(train, test, val, list(classes), desc)


def take(split: Split, idx: torch.Tensor) -> Split:
    return Split(split.x[idx], split.y[idx])


def balanced_subset(y: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """n indices, as equal a share per class as possible, drawn at random (never "the first n": an image
    folder is sorted by class). The same (y, n, seed) always gives the same subset."""
    g = torch.Generator().manual_seed(seed)
    classes = torch.unique(y)
    share = [n // len(classes) + (i < n % len(classes)) for i in range(len(classes))]
    picked = []
    for c, k in zip(classes.tolist(), share):
        members = (y == c).nonzero().squeeze(1)
        if k > len(members):
            raise DataError(f"a class-balanced subset of {n} needs {k} images of class {c}, which has {len(members)}")
        picked.append(members[torch.randperm(len(members), generator=g)[:k]])
    return torch.cat(picked).sort().values


# --- torchvision's CIFAR-10 -------------------------------------------------------------------------

def cifar10_missing_message(data_dir: Path) -> str:
    return (f"CIFAR-10 not found (or failed its checksum) in {data_dir}: set data.download=true to fetch it "
            f"into {data_dir} (needs network), or use data=imagefolder data.root=PATH with a copy of CIFAR-10 in "
            f"train/<class>/ and test/<class>/ folders")


def cifar10_present(data_dir: Path) -> bool:
    """torchvision's CIFAR-10 files are in `data_dir` and pass torchvision's per-file checksums."""
    from torchvision.datasets import CIFAR10
    try:
        CIFAR10(str(data_dir), train=True, download=False)
        return True
    except RuntimeError:
        return False


def download_cifar10(data_dir: Path) -> None:
    """Fetch torchvision's CIFAR-10 archive, check it and every extracted file against torchvision's checksums,
    and move the extracted folder into `data_dir` in one rename. Everything is done in a temporary folder
    beside it, removed whatever happens, so `data_dir` never holds a partial download or a half-extracted set."""
    import shutil
    import urllib.error

    from torchvision.datasets import CIFAR10
    from torchvision.datasets.utils import download_url, extract_archive

    way_out = ("connect to the network and rerun, or use data=imagefolder data.root=PATH with a copy of CIFAR-10 "
               "in train/<class>/ and test/<class>/ folders")
    data_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(data_dir)
    tmp = data_dir / f".cifar10-download.tmp{os.getpid()}"
    try:
        print(f"downloading CIFAR-10 (about 170 MB) into {data_dir} ...", flush=True)
        download_url(CIFAR10.url, str(tmp), CIFAR10.filename, CIFAR10.tgz_md5)  # md5 checked, or RuntimeError
        extract_archive(str(tmp / CIFAR10.filename), str(tmp))
        if not cifar10_present(tmp):
            raise RuntimeError("an extracted file failed its checksum")
        target = data_dir / CIFAR10.base_folder
        if target.exists():  # a damaged copy (it failed the checks that sent us here): out of the way first
            os.replace(target, tmp / "damaged")
        os.replace(tmp / CIFAR10.base_folder, target)
    except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
        reason = getattr(e, "reason", e)
        raise DataError(f"could not download CIFAR-10 into {data_dir} (no network? {reason}): {way_out}") from e
    except (RuntimeError, tarfile.TarError, EOFError, zlib.error) as e:
        raise DataError(f"the CIFAR-10 download failed torchvision's checksum ({e}); nothing was kept in "
                        f"{data_dir}: rerun to download again, or {way_out.split(', or ')[1]}") from e
    except OSError as e:  # a full disk, a read-only data.dir
        raise DataError(f"could not write CIFAR-10 into {data_dir} ({e.strerror or e}): free space or choose "
                        f"another data.dir") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_cifar10(data_dir: Path, download: bool):
    import torchvision  # slow to import; only this source needs it

    if not cifar10_present(data_dir):
        if not download:
            raise DataError(cifar10_missing_message(data_dir))
        download_cifar10(data_dir)
    splits = [torchvision.datasets.CIFAR10(str(data_dir), train=t, download=False) for t in (True, False)]
    train, test = (Split(torch.from_numpy(s.data).permute(0, 3, 1, 2).contiguous(), torch.tensor(s.targets))
                   for s in splits)
    return train, test, splits[0].classes, f"torchvision CIFAR-10 (original files) in {data_dir}"


# --- image folders ----------------------------------------------------------------------------------

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".webp")


def load_imagefolder(root: Path, data_dir: Path):
    """Decode once into `data_dir/imagefolder/<name>-<fingerprint>.pt`, then load that in seconds."""
    if not root.exists():
        raise DataError(f"data.root={root} does not exist: point it at a folder with train/<class>/ and "
                        f"test/<class>/ images, or at a .tar.gz of such a folder")
    cache = data_dir / "imagefolder" / f"{root.name.split('.')[0]}-{fingerprint(root)[:16]}.pt"
    desc = f"image folder {root} (decoded images; for CIFAR-10 copies re-encoded as JPEG, not the original files)"
    if cache.exists():
        try:
            blob = torch.load(cache, weights_only=True)
            return Split(blob["train_x"], blob["train_y"]), Split(blob["test_x"], blob["test_y"]), blob["classes"], desc
        except Exception:  # a half-written or damaged cache is rebuilt, never trusted
            cache.unlink(missing_ok=True)
    files = read_tar(root) if root.is_file() else read_folder(root)
    train, test, classes = decode(files, root)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(cache.parent)
        tmp = cache.with_suffix(f".tmp{os.getpid()}")
        torch.save({"train_x": train.x, "train_y": train.y, "test_x": test.x, "test_y": test.y, "classes": classes}, tmp)
        os.replace(tmp, cache)  # atomic: a reader sees the whole cache or none
    except OSError as e:
        print(f"warning: could not write the decoded-image cache {cache} ({e}); decoding again next time")
    return train, test, classes, desc


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temporaries(folder: Path) -> list:
    """Half-written caches and downloads (`*.tmp<pid>`, up to ~185 MB each) whose writer is dead: a SIGKILL
    during the write leaves them. The folder is shared by every run, so a live writer's file is left alone."""
    import shutil
    removed = []
    for p in folder.glob("*.tmp*"):
        pid = p.suffix[len(".tmp"):]
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
            removed.append(p.name)
    return removed


# sha256 of the files already hashed in this process, by what their stat says: the run name, the precheck and the
# run itself each ask for the data's fingerprint, and a folder of 60,000 images costs seconds to read
_HASHED: dict = {}


def _file_sha256(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _HASHED:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _HASHED[key] = h.hexdigest()
    return _HASHED[key]


def fingerprint(root: Path) -> str:
    """The data by its content, whatever path names it: the sha256 of an archive's bytes, or of a folder's
    (relative path, size, sha256) lines, one per regular file, sorted (a FIFO or device in it is never read).
    The same archive under three paths has one fingerprint; an archive replaced at the same path has another."""
    if root.is_file():
        return _file_sha256(root)
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():  # follows links to files (a folder of links is its targets' content); skips FIFOs, devices
            h.update(f"{p.relative_to(root).as_posix()}\0{p.stat().st_size}\0{_file_sha256(p)}\n".encode())
    return h.hexdigest()


CIFAR10_FINGERPRINT = "torchvision-cifar10"  # its files pass torchvision's per-file checksums, or are not used


def data_fingerprint(cfg: DataConfig) -> str:
    """What run.json records as `data_fingerprint`: the image folder's `fingerprint`, or torchvision's CIFAR-10."""
    if cfg.source == Source.cifar10:
        return CIFAR10_FINGERPRINT
    root = Path(cfg.root or "")
    if not cfg.root or not root.exists():
        raise DataError(f"data.root={cfg.root} does not exist: point it at a folder with train/<class>/ and "
                        f"test/<class>/ images, or at a .tar.gz of such a folder")
    try:
        return fingerprint(root)
    except OSError as e:
        raise DataError(f"cannot read data.root={cfg.root} ({e.strerror or e}): fix its permissions, or copy it "
                        f"again") from e


def split_path(parts) -> Optional[tuple]:
    """('..', 'train', 'cat', '0001.jpg') -> ('train', 'cat'); None for anything else."""
    for i in range(len(parts) - 2):
        if parts[i] in ("train", "test") and i + 3 == len(parts):
            return parts[i], parts[i + 1]
    return None


def looks_like_archive(path: Path) -> bool:
    """gzip, bzip2 or xz magic bytes, or a plain tar's `ustar` header: a file that is none of these was never an
    archive (a damaged copy of one still starts like one)."""
    with open(path, "rb") as f:
        head = f.read(512)
    return head[:2] == b"\x1f\x8b" or head[:3] == b"BZh" or head[:6] == b"\xfd7zXZ\x00" or head[257:262] == b"ustar"


def read_tar(path: Path):
    if not looks_like_archive(path):
        raise DataError(f"data.root={path} is a file but not a .tar.gz (or .tar) archive: point data.root at a folder "
                        f"with train/<class>/ and test/<class>/ images, or at a .tar.gz of such a folder")
    try:
        with tarfile.open(path, "r:*") as tar:
            for m in tar:
                where = split_path(Path(m.name).parts) if m.isfile() else None
                if where and m.name.lower().endswith(IMAGE_EXTENSIONS):
                    yield where, m.name, tar.extractfile(m).read()
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise DataError(f"cannot read {path}: the archive is truncated or corrupt ({e}); copy it again") from e


def read_folder(root: Path):
    for p in sorted(root.rglob("*")):
        where = split_path(p.relative_to(root).parts)
        if where and p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file():  # never a FIFO: reading one waits forever
            yield where, str(p), p.read_bytes()


def decode(files, root: Path):
    from PIL import Image

    images = {"train": [], "test": []}
    for (split, cls), name, raw in files:
        try:
            img = Image.open(io.BytesIO(raw)).convert("RGB")
        except Exception as e:
            raise DataError(f"cannot decode image {name} in {root} ({e}): remove or replace the file") from e
        if img.size != (32, 32):
            raise DataError(f"image {name} is {img.size[0]}x{img.size[1]}, expected 32x32 (CIFAR-sized images)")
        images[split].append((cls, name, torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)))
    if not images["train"] or not images["test"]:
        raise DataError(f"{root} has no images under train/<class>/ and test/<class>/ "
                        f"(found {len(images['train'])} training and {len(images['test'])} test images)")
    classes = sorted({c for c, _, _ in images["train"]})
    if len(classes) < 2:  # the net's head is sized by the classes found (run.json's num_classes)
        raise DataError(f"{root} has {len(classes)} class folder under train/ ({', '.join(classes)}): a classifier "
                        f"needs at least 2 (train/<class>/ per class)")
    unknown = {c for c, _, _ in images["test"]} - set(classes)
    if unknown:
        raise DataError(f"test/ has classes that train/ lacks: {sorted(unknown)}")
    ids = {c: i for i, c in enumerate(classes)}

    def stack(items):
        items.sort(key=lambda t: (ids[t[0]], t[1]))  # class order, then file name: stable across archives
        x = torch.stack([px for _, _, px in items]).view(-1, 32, 32, 3).permute(0, 3, 1, 2).contiguous()
        return Split(x, torch.tensor([ids[c] for c, _, _ in items]))

    return stack(images["train"]), stack(images["test"]), classes
