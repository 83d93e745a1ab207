"""`python -m experiments.inspect_bench` as documented (Makefile, scripts/, README): experiments/tools/inspect_bench.py."""
import runpy

if __name__ == "__main__":
    runpy.run_module("experiments.tools.inspect_bench", run_name="__main__", alter_sys=True)
