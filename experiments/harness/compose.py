"""From conf/ to the typed Config, and the run directory's name: the one home of Hydra's side of the schema.

experiments/config.py is the schema alone (no Hydra, nothing of the project); here it meets Hydra: `register`
puts it, and each family's ArchConfig, in Hydra's ConfigStore; `compose` composes conf/ as the app would;
`typed` merges a composed or saved config onto the schema (run.py's jobs, the inspection, init.from); `name_of`
names a run directory (the app's resolver and the precheck).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from omegaconf import DictConfig, OmegaConf

from experiments.config import Config, DataConfig, Source
from experiments.data.datasets import data_fingerprint
from experiments.harness.rundir import override_key, run_name
from experiments.nets import families

# conf/ at the top of a checkout; an installed wheel carries it inside the package, as experiments/conf/
# (pyproject's package-dir), and finds it there from any directory.
_PACKAGE = Path(__file__).resolve().parents[1]
CONF_DIR = _PACKAGE / "conf" if (_PACKAGE / "conf" / "config.yaml").is_file() else _PACKAGE.parent / "conf"


def register() -> None:
    """Put the schema, and each family's ArchConfig, where conf/ refers to them (Hydra's ConfigStore)."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    # The group YAMLs merge into the typed nodes of `Config`, so they are checked against it too.
    cs.store(name="schema", node=Config)
    for family in families.all_families():
        # conf/arch/<name>.yaml starts from `/family_schema/<name>@_here_`: the family's knobs, typed
        cs.store(group="family_schema", name=family.name, node=family.config)


def compose(overrides: list, conf_dir: Path = CONF_DIR, return_hydra_config: bool = False):
    """The config (a DictConfig) that `python -m experiments.run OVERRIDES` would run, without running it
    (with `return_hydra_config`, its `hydra` node too: the launcher's settings)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    register()
    with initialize_config_dir(str(conf_dir), version_base="1.3"):
        return hydra_compose("config", overrides=list(overrides), return_hydra_config=return_hydra_config)


def typed(node) -> Config:
    """A composed DictConfig (its `hydra` node left out) or run.json's / a checkpoint's saved dict as the typed
    Config, with the family's own ArchConfig subclass in `arch` (missing keys: the schema's defaults). A launcher's
    sweep config has lost its schema types: merged onto the schema again, every value is checked and Enums come back
    as Enums."""
    if OmegaConf.is_config(node):
        node = OmegaConf.masked_copy(node, [k for k in node if k != "hydra"])
    arch = OmegaConf.select(OmegaConf.create(node), "arch.name", default=None) or "resnet_cifar"
    schema = OmegaConf.structured(Config(arch=families.get(arch).config()))
    return OmegaConf.to_object(OmegaConf.merge(schema, node))


def name_of(cfg: DictConfig, overrides: list, conf_dir: Optional[Path] = None) -> str:
    """The run directory name of the composed `cfg` (rundir.run_name): each overridden key whose resolved value is
    not what its groups give it anyway (`protocol=quick protocol.lr=0.1` is `protocol=quick`), the data by their
    fingerprint. The precheck names every cell with it before Hydra starts (`conf_dir`: its conf/)."""
    def value(key, node=cfg):
        v = OmegaConf.select(node, key, default=None)
        return OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v
    groups = [o for o in overrides if "." not in override_key(o) and isinstance(value(override_key(o)), dict)]
    defaults = _default_choices(conf_dir)
    # a group's choice is a change unless it is the default one; a key, unless its groups give it that value anyway
    changed = [o for o in groups if o.partition("=")[2] != defaults.get(override_key(o))]
    keys = [o for o in overrides if o not in groups]
    if keys:
        base = _baseline(groups, conf_dir)
        changed += [o for o in keys if value(override_key(o)) != value(override_key(o), base)]
    family = families.get(cfg.arch.name)
    source = value("data.source")  # an Enum, or its value where a launcher's config lost the schema's types
    data = DataConfig(source=Source(getattr(source, "value", source)), root=value("data.root"))
    return run_name(family.name_head(cfg.arch, cfg.depth), cfg.residual, cfg.seed, changed, family.size_keys,
                    value, data_fingerprint(data))


_BASES: dict = {}  # (conf dir, groups) -> the config those group choices give: composed once per process (0.13 s)


def _baseline(groups: list, conf_dir: Optional[Path]) -> DictConfig:
    """The config of the group choices alone, from `conf_dir` (None: conf/, the app's). Inside the Hydra app
    (the run name's resolver) it is composed by the app's own Hydra, unless the precheck composed it already."""
    from hydra.core.global_hydra import GlobalHydra
    key = (str(conf_dir or CONF_DIR), tuple(sorted(groups)))
    if key not in _BASES:
        if conf_dir is None and GlobalHydra.instance().is_initialized():
            from hydra import compose as hydra_compose
            _BASES[key] = hydra_compose("config", overrides=list(groups))
        else:
            _BASES[key] = compose(list(groups), Path(conf_dir or CONF_DIR))
    return _BASES[key]


def _default_choices(conf_dir: Optional[Path]) -> dict:
    """{group: its default choice} from config.yaml's defaults list (`data: cifar10`)."""
    entries = OmegaConf.load(Path(conf_dir or CONF_DIR) / "config.yaml").get("defaults", [])
    return {k: str(v) for e in entries if OmegaConf.is_dict(e) for k, v in e.items() if "/" not in k and " " not in k}
