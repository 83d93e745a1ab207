"""run.json's `git_commit`: the checkout's HEAD, `+dirty` only when code differs from it, not runs."""
import subprocess

from experiments.harness.provenance import commit_of


def git(repo, *args):
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                          capture_output=True, text=True).stdout.strip()


def test_changed_results_leave_the_commit_clean_and_changed_code_marks_it_dirty(tmp_path):
    repo = tmp_path / "repo"
    (repo / "experiments").mkdir(parents=True)
    (repo / "results" / "quick" / "runs" / "r").mkdir(parents=True)
    (repo / "experiments" / "train.py").write_text("lr = 0.1\n")
    (repo / "results" / "quick" / "runs" / "r" / "metrics.csv").write_text("epoch\n1\n")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "c")
    head = git(repo, "rev-parse", "HEAD")
    here = repo / "experiments"  # asked from a subdirectory, as provenance asks from experiments/
    assert commit_of(here) == head
    (repo / "results" / "quick" / "runs" / "r" / "metrics.csv").unlink()  # a sweep regenerating the runs
    (repo / "scratch.txt").write_text("untracked")
    assert commit_of(here) == head
    (repo / "experiments" / "train.py").write_text("lr = 0.2\n")
    assert commit_of(here) == head + "+dirty"


def test_outside_a_checkout_there_is_no_commit(tmp_path):
    assert commit_of(tmp_path) is None
