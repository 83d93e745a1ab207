"""Run directories named by an older rule, renamed to the current one: `python -m experiments.rename RUNS_DIR`.

Until 2026-12-04 a run's name left every `protocol.*` override out and spelled `data.root` as a hash of the path as
typed (`-data=imagefolder-root=95ac4241`), so a checkout that names the same archive by another path never found its
runs again. The current rule (rundir.run_name) spells each key that changes the numbers and the data by their
content's fingerprint (`-root=45b041e8`). A run named by the old rule would be trained again from scratch under the
new name; this renames it instead, from what its run.json recorded (its overrides and resolved config), and records
the fingerprint of its data (computed from `data.root`, which must still hold them) as run.json's
`data_fingerprint`, so that a rerun of the same command finds it finished (or resumes it). A run started from
another (`init.from`) follows its source: its config's path is rewritten to the source's new name. Nothing is
renamed onto a directory that exists; `--dry-run` prints what would be done.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from experiments.errors import UserError
from experiments.harness.rundir import RunDir, RunError
from runformat import RUN_JSON


def runs_in(runs_dir: Path) -> list:
    """The run directories under `runs_dir`, sources before the runs started from them (`init.from`)."""
    dirs = sorted(d for d in runs_dir.iterdir() if d.is_dir() and (d / RUN_JSON).exists())
    return sorted(dirs, key=lambda d: bool(_init_from(RunDir(d).read_info() or {})))


def _init_from(info: dict):
    config = info.get("config") if isinstance(info.get("config"), dict) else {}
    return (config.get("init") or {}).get("from") if isinstance(config.get("init"), dict) else None


def renamed(d: Path, moved: dict) -> tuple:
    """(the current rule's name of the run in `d`, its run.json as it must then be). `moved`: {old name: new name} of
    the runs renamed so far, whose runs started from them (`init.from`) follow them. RunError naming the run if it
    cannot be named (its data are gone, its run.json has no config)."""
    from omegaconf import OmegaConf

    from experiments.config import DataConfig, Source
    from experiments.data.datasets import data_fingerprint
    from experiments.harness.compose import name_of

    info = RunDir(d).read_info() or {}
    config, overrides = info.get("config"), info.get("overrides")
    if not isinstance(config, dict) or not isinstance(overrides, list):
        raise RunError(f"{d}: its run.json has no config and overrides to name it by: rename it by hand")
    source = _init_from(info)
    if source and Path(source).name in moved:  # the source's new path, as a user would now type it
        config["init"]["from"] = str(Path(source).with_name(moved[Path(source).name]))
        if isinstance(info.get("init"), dict):
            info["init"].update(source=config["init"]["from"], run=moved[Path(source).name])
    data = config.get("data") if isinstance(config.get("data"), dict) else {}
    try:
        info["data_fingerprint"] = info.get("data_fingerprint") or data_fingerprint(
            DataConfig(source=Source(data.get("source", "cifar10")), root=data.get("root")))
    except (UserError, ValueError) as e:
        raise RunError(f"{d}: {e} (its data are needed to name it by their content)") from e
    name = name_of(OmegaConf.create(config), [str(o) for o in overrides])
    if name != d.name:
        info.setdefault("renamed_from", d.name)
        info["run_dir"] = str(Path(info.get("run_dir") or d).with_name(name))
    return name, info


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.rename", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, help="a directory of run directories (results/quick/runs)")
    parser.add_argument("--dry-run", action="store_true", help="print what would be renamed, change nothing")
    args = parser.parse_args(argv)
    moved, count = {}, 0
    try:
        for d in runs_in(args.runs):
            if args.dry_run and Path(_init_from(RunDir(d).read_info() or {}) or "").name in moved:
                print(f"{d.name} -> (named after its init.from source, once that is renamed)")
                continue
            name, info = renamed(d, moved)
            if name == d.name:
                continue
            if (args.runs / name).exists():
                raise RunError(f"{args.runs / name} exists already: move one of the two aside, then rename again")
            print(f"{d.name} -> {name}")
            count += 1
            if not args.dry_run:
                RunDir(d).write_info(info)
                d.rename(args.runs / name)
            moved[d.name] = name
    except (UserError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{count} run(s) {'to rename' if args.dry_run else 'renamed'}; the others are named by the current rule")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
