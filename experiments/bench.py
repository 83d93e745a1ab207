"""`python -m experiments.bench`, as the Makefile, scripts/ and the README write it: the tool is experiments/tools/bench.py."""
import runpy

if __name__ == "__main__":
    runpy.run_module("experiments.tools.bench", run_name="__main__", alter_sys=True)
