"""Check the command line against the schema before Hydra starts, so a typo costs one line, not a traceback.

Hydra would report the same problems, over several lines and only once it runs the job; here a sweep's
every value is checked up front, so `depth=20,21` fails before the first cell trains.
"""
from __future__ import annotations

import difflib
import importlib.util
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from experiments.config import to_dict
from experiments.harness.compose import CONF_DIR


def _values(override) -> list:
    """Every value of a sweep (`depth=20,56`, `range(20,57,12)`) as strings, or the one value."""
    if override.is_sweep_override():
        return list(override.sweep_string_iterator())
    return [override.get_value_element_as_str()]


def cells(args: list) -> list:
    """The override lists of every cell the command line describes (Hydra flags and hydra.* dropped)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides([a for a in args if not a.startswith("-")])
    choices = []
    for o in parsed:
        if o.key_or_group.startswith("hydra"):
            continue
        prefix = {None: "", "ADD": "+", "FORCE_ADD": "++", "DEL": "~"}.get(getattr(o.type, "name", None), "")
        if o.is_delete():
            choices.append([o.input_line])
        else:
            choices.append([f"{prefix}{o.key_or_group}={v}" for v in _values(o)])
    return [list(c) for c in itertools.product(*choices)] if choices else [[]]


def one_line(e: Exception, overrides: list) -> str:
    """Hydra/OmegaConf's multi-line composition errors, said in one line with the key and a way out."""
    from hydra.errors import MissingConfigException
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

    cause = e.__cause__ or e
    if isinstance(e, MissingConfigException):
        group, _, name = (e.missing_cfg_file or "").rpartition("/")
        return f"no {group or 'config'} named '{name}'" + (
            f": choose one of {', '.join(e.options)}" if e.options else "")
    if isinstance(cause, (ConfigKeyError, ConfigAttributeError)) and "not in" in str(cause):
        key = getattr(cause, "full_key", None) or str(cause).split("'")[1]
        near = difflib.get_close_matches(key, known_keys(), n=1)
        hint = f" (did you mean '{near[0]}'?)" if near else "; `python -m experiments.run --cfg job` lists the keys"
        return f"unknown key '{key}'{hint}"
    if isinstance(cause, ValidationError):
        key = getattr(cause, "full_key", "")
        first = str(cause).splitlines()[0]
        given = next((o for o in overrides if o.lstrip("+").split("=")[0] == key), key)
        return f"{given}: {first}"
    return " ".join(str(e).split())


def known_keys() -> list:
    from dataclasses import fields, is_dataclass

    from experiments.config import Config
    from experiments.nets import families

    def walk(cls, prefix):
        for f in fields(cls):
            t = f.default_factory if is_dataclass(f.default_factory) else None
            yield prefix + f.name
            if t is not None:
                yield from walk(t, prefix + f.name + ".")
            elif callable(f.default_factory) and isinstance(f.default_factory(), dict):  # a dict node: `init.from`
                yield from (f"{prefix}{f.name}.{k}" for k in f.default_factory())
    family_keys = [f"arch.{f.name}" for fam in families.all_families() for f in fields(fam.config)]
    return list(dict.fromkeys([*walk(Config, ""), *family_keys]))


def sweep_defaults(args: list, conf_dir: Path = CONF_DIR) -> list:
    """The config's grid (hydra.sweeper.params) for the keys the command line leaves out."""
    from omegaconf import OmegaConf
    params = OmegaConf.load(conf_dir / "config.yaml").hydra.sweeper.params
    given = {a.lstrip("+~").split("=")[0] for a in args if "=" in a}
    return [f"{k}={v}" for k, v in params.items() if k not in given]


def too_long_for_cpu(configs: list, args: list = (), multirun: bool = True) -> Optional[str]:
    """A sweep, or a single run, that would keep a CPU busy for more than two hours must be asked for explicitly
    (`force=true`); the refusal names the CPU-sized command that works here (`cpu_sized`)."""
    import torch

    from experiments.harness.progress import fmt_duration
    from experiments.harness.sweep import CPU_LIMIT_S, cell_cost

    on_cpu = [c for c in configs if c.device.value == "cpu" or (c.device.value == "auto" and not torch.cuda.is_available())]
    if not on_cpu or any(c.force for c in configs):
        return None
    est = sum(map(cell_cost, on_cpu))
    if est <= CPU_LIMIT_S:
        return None
    what = f"this sweep would take about {fmt_duration(est)} on this CPU ({len(on_cpu)} runs, no GPU found)" if multirun \
        else f"this run would take about {fmt_duration(est)} on this CPU (no GPU found)"
    return (f"{what}: run `{cpu_sized(on_cpu, list(args), multirun)}` for the CPU-sized version, or add "
            f"{'FORCE=1 (force=true)' if multirun else 'force=true'} to start it anyway")


# Where this project's machines keep a copy of CIFAR-10 (README, Data), from a checkout's root: what the CPU guard's
# way out uses when CIFAR-10 is not in data.dir (no download is tried before a refusal, and this machine has no
# network to download it).
LOCAL_COPIES = ("../shared/datasets/cifar10-jpeg/cifar10-jpeg.tar.gz",)
# The keys the CPU-sized command sets itself: the protocol and its length, and for a sweep the grid make spells
GUARD_KEYS = ("protocol", "protocol.iterations", "protocol.milestones", "force")
GRID_KEYS = ("depth", "residual", "seed", "arch", "arch.name", "arch.units_per_stage")
DATA_KEYS = ("data", "data.root", "data.download")


def cpu_sized(configs: list, args: list, multirun: bool) -> str:
    """The command that runs the CPU-sized version of `args` here: the family's CPU protocol (and, for a sweep, its
    grid: README's CPU command), every other override kept, and, when CIFAR-10 is not in data.dir, an image-folder
    copy of it instead (the one this machine has, else a PATH to fill in)."""
    import shlex

    from experiments.data.datasets import cifar10_present
    from experiments.nets import families

    family = families.get(configs[0].arch.name)
    drop = GUARD_KEYS + (GRID_KEYS if multirun else ())
    words = [a for a in args if not a.startswith("-") and not a.startswith("hydra")]
    if all(c.data.source.value == "cifar10" for c in configs) and not cifar10_present(Path(configs[0].data.dir)):
        copy = next((p for p in LOCAL_COPIES if Path(p).is_file()), "PATH")
        words = [w for w in words if w.lstrip("+~").split("=")[0] not in DATA_KEYS]
        words += ["data=imagefolder", f"data.root={copy}"]
    kept = [w for w in words if w.lstrip("+~").split("=")[0] not in drop]
    if multirun:
        extra = f" OVERRIDES={shlex.quote(' '.join(kept))}" if kept else ""
        return f"make sweep PROTOCOL={family.cpu_protocol} {family.cpu_grid}{extra}"
    return " ".join(["python -m experiments.run", *map(shlex.quote, kept), f"protocol={family.cpu_protocol}"])


def missing_data(data) -> Optional[str]:
    """The data checks, so a sweep with no data fails once, before its first cell. CIFAR-10 that is missing and
    may be downloaded is fetched here, once for the whole sweep."""
    from experiments.data.datasets import DataError, cifar10_missing_message, cifar10_present, download_cifar10
    if data.source.value == "imagefolder":
        root = Path(data.root)
        return None if root.exists() else (f"data.root={root} does not exist: point it at a folder with "
                                           f"train/<class>/ and test/<class>/ images, or at a .tar.gz of such a folder")
    if cifar10_present(Path(data.dir)):
        return None
    if not data.download:
        return cifar10_missing_message(Path(data.dir))
    try:
        download_cifar10(Path(data.dir))
    except DataError as e:
        return str(e)
    return None


def uncreatable(path: Path) -> Optional[str]:
    """Why `path` cannot be made a directory (its parent is a file, a read-only or virtual file system), or None.
    Tried for real, and what the try made is removed again: Hydra makes the directory before the run starts,
    and would say so in a traceback."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    if not p.is_dir():
        return f"{p} is a file"
    made = []
    try:
        for d in reversed(missing):
            d.mkdir()
            made.append(d)
    except OSError as e:
        return e.strerror or type(e).__name__
    finally:
        for d in reversed(made):
            d.rmdir()
    return None


def run_dir_problem(args: list, multirun: bool) -> Optional[str]:
    """A `hydra.run.dir` (or a sweep's `hydra.sweep.dir`) that cannot be created, said in one line."""
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    given = [a.split("=", 1)[1] for a in args if a.startswith(key + "=")]
    if not given or "${" in given[-1]:
        return None  # the default, under results/ beside the code
    why = uncreatable(Path(given[-1]))
    return f"cannot create the run directory {given[-1]} ({why}): choose another {key}" if why else None


@dataclass
class Plan:
    """What a command line asks for: every cell's config, or the one-line reason it cannot run."""
    problem: Optional[str] = None
    configs: list = field(default_factory=list)
    multirun: bool = False


# Launchers of conf/hydra/launcher/ and hydra-submitit-launcher's, which the `cluster` extra installs; those
# whose jobs run on other machines, whose devices the CPU guard cannot judge from here.
CLUSTER_LAUNCHERS = ("slurm", "gpus", "submitit_slurm", "submitit_local")
REMOTE_LAUNCHERS = ("slurm", "submitit_slurm")


def launcher(args: list) -> Optional[str]:
    """The launcher the command line picks (`hydra/launcher=slurm`), if it picks one."""
    return next((a.split("=", 1)[1] for a in reversed(args) if a.startswith("hydra/launcher=")), None)


def check(args: list, conf_dir: Path = CONF_DIR) -> Optional[str]:
    """None if every cell composes and can run; else the one-line reason."""
    return plan(args, conf_dir).problem


def plan(args: list, conf_dir: Path = CONF_DIR) -> Plan:
    """Compose and check every cell of the command line (a sweep's whole grid) before Hydra starts; the data
    are checked (and CIFAR-10 fetched, when allowed) last, once."""
    if any(a in ("--help", "-h", "--hydra-help", "--info", "-i", "--cfg", "-c", "--shell-completion") or
           a.startswith(("--cfg", "--info")) for a in args):
        return Plan()
    multirun = any(a in ("-m", "--multirun") for a in args)
    configs = []
    problem = _check(args, conf_dir, multirun, configs)
    return Plan(problem, configs if problem is None else [], multirun)


def _check(args: list, conf_dir: Path, multirun: bool, composed: list) -> Optional[str]:
    from omegaconf import OmegaConf

    from experiments.errors import UserError
    from experiments.harness import cell
    from experiments.harness.compose import compose
    from experiments.nets import families

    chosen = launcher(args)
    if chosen in CLUSTER_LAUNCHERS and importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is None:
        return (f"hydra/launcher={chosen} needs hydra-submitit-launcher: pip install -e '.[cluster]' "
                f"(make sweep LAUNCHER={chosen} installs it)")
    try:
        all_cells = cells(args + (sweep_defaults(args, conf_dir) if multirun else []))
    except Exception as e:  # an override Hydra cannot parse at all
        return " ".join(str(e).split())
    named = []  # (overrides, composed DictConfig) of each cell, for its run directory's name
    for overrides in all_cells:
        try:
            dc = compose(overrides, conf_dir)
            cfg = OmegaConf.to_object(dc)
        except Exception as e:
            return one_line(e, overrides)
        try:
            cell.check(cfg)
        except UserError as e:
            return str(e)
        composed.append(cfg)
        named.append((overrides, dc))
    unsized = sorted({c.arch.name for c in composed if not families.get(c.arch.name).sized_by_depth})
    if multirun and unsized and len({c.depth for c in composed}) > 1:
        return (f"depth does not apply to arch={unsized[0]}, whose size is set by its own keys "
                f"(conf/arch/{unsized[0]}.yaml): give one depth (e.g. depth=20) so the default depth grid "
                f"does not repeat each cell")
    problem = too_long_for_cpu(composed, args, multirun) if chosen not in REMOTE_LAUNCHERS else None
    # the directory and the data last: a command that is wrong in itself should say so first; each distinct
    # data set once
    datasets = {json.dumps(to_dict(c.data), sort_keys=True): c.data for c in composed}
    return (problem or run_dir_problem(args, multirun)
            or next(filter(None, (missing_data(d) for d in datasets.values())), None)
            or shared_run_dirs(named, composed, conf_dir))


def shared_run_dirs(named: list, composed: list, conf_dir: Path = CONF_DIR) -> Optional[str]:
    """Every cell's run directory name (what Hydra will resolve), checked: one plain path component, and no two
    cells of different configurations in one directory (they would refuse or, worse, resume each other)."""
    from experiments.errors import UserError
    from experiments.harness.compose import name_of
    from experiments.harness.rundir import config_diff

    seen: dict = {}
    for (overrides, dc), cfg in zip(named, composed):
        try:
            name = name_of(dc, overrides, conf_dir)
        except (ValueError, UserError) as e:
            return str(e)
        if name in seen:
            other_overrides, other = seen[name]
            diff = config_diff(to_dict(other), to_dict(cfg))
            if diff:
                return (f"two cells would share the run directory {name} though they differ in {', '.join(diff)} "
                        f"({' '.join(other_overrides)} / {' '.join(overrides)}): report this as a bug, and give each "
                        f"its own hydra.run.dir meanwhile")
        seen[name] = (overrides, cfg)
    return None
