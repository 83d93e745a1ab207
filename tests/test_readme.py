"""The README's commands as written (issue 32): the short ones run (`python -m experiments.run ... --cfg job`,
`make help`), every `make` target it names exists, and every `python -m MODULE` of the README and docs/ resolves."""
import importlib.util
import re
import shlex
import subprocess
import sys

import pytest

from tests.helpers.harness import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def command_lines(text: str) -> list:
    """The lines of the ```bash blocks, without their comments."""
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    return [line.split("  #")[0].strip() for block in blocks for line in block.splitlines() if line.strip()]


README = command_lines((ROOT / "README.md").read_text(encoding="utf-8"))


def test_the_readme_has_the_commands_this_file_runs():
    assert "python -m experiments.run --cfg job" in README
    assert any(line.startswith("make sweep") for line in README)


@pytest.mark.parametrize("line", [line for line in README if line.endswith("--cfg job")])
def test_a_short_command_of_the_readme_runs_as_written(line, tmp_path):
    words = shlex.split(line)
    assert words[0] == "python"  # the README's `python` is .venv/bin/python
    r = subprocess.run([sys.executable, *words[1:]], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert re.search(r"^depth: \d+$", r.stdout, flags=re.M)


def test_make_help_runs_and_lists_every_target_the_readme_names():
    r = subprocess.run(["make", "--no-print-directory", "help"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    listed = set(re.findall(r"^  make (\S+)", r.stdout, flags=re.M))
    named = {shlex.split(line)[1] for line in README if line.startswith("make ") and len(line.split()) > 1}
    assert named and named <= listed, f"the README names make targets that do not exist: {named - listed}"


def test_every_python_module_the_readme_and_docs_run_exists():
    modules = {m for page in PAGES for m in re.findall(r"python3? -m ((?:experiments|analysis)[\w.]*)",
                                                       page.read_text(encoding="utf-8"))}
    assert "experiments.run" in modules and "experiments.bench" in modules
    missing = sorted(m for m in modules if importlib.util.find_spec(m) is None)
    assert not missing, f"python -m of modules that do not exist: {missing}"
