"""`python -m experiments.bench` as documented (Makefile, scripts/, README): runs experiments/tools/bench.py."""
import runpy

if __name__ == "__main__":
    runpy.run_module("experiments.tools.bench", run_name="__main__", alter_sys=True)
