"""The package as a user installs it (issue 34): a wheel built from the checkout's tracked files, installed into a
fresh venv outside the checkout (torch and Hydra reused from this interpreter's site-packages: no download), runs
`--cfg job` from another directory, with conf/ found inside the installed package."""
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.helpers.harness import ROOT


@pytest.mark.slow
def test_the_wheel_installed_elsewhere_composes_the_config_from_its_own_conf(tmp_path):
    src = tmp_path / "src"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        if (ROOT / name).is_file() and not name.startswith("results/"):
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PIP_NO_INDEX": "1", "PIP_NO_INPUT": "1"}
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
                    "-w", str(wheels), str(src)], cwd=tmp_path, env=env, check=True, timeout=300)
    (wheel,) = wheels.glob("degradation-*.whl")

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    # torch, Hydra, pip from this interpreter's site-packages, but not the checkout (tests/ run it from ROOT)
    shared = [p for p in sys.path if p.endswith("site-packages") and not Path(p).resolve().is_relative_to(ROOT)]
    shared.append(sysconfig.get_paths()["purelib"])
    (site,) = venv.glob("lib/python3*/site-packages")
    (site / "shared.pth").write_text("\n".join(dict.fromkeys(shared)) + "\n")
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "-q",
                    str(wheel)], cwd=tmp_path, env=env, check=True, timeout=300)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run([str(python), "-c", "import experiments.run as r, experiments.harness.compose as c; "
                            "print(r.__file__); print(c.CONF_DIR)"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, check=True)
    module, conf = where.stdout.split("\n")[:2]
    assert Path(module).is_relative_to(site) and Path(conf) == site / "experiments" / "conf", where.stdout
    assert (Path(conf) / "protocol" / "paper.yaml").is_file()
    for command in ([str(python), "-m", "experiments.run"], [str(venv / "bin" / "degradation-run")]):
        r = subprocess.run([*command, "--cfg", "job", "depth=32", "protocol=quick"], cwd=elsewhere, env=env,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert "depth: 32" in r.stdout and "name: quick" in r.stdout
    assert not list(elsewhere.iterdir())  # --cfg job writes nothing
