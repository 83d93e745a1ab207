"""`python -m experiments.steptime` as documented (Makefile, scripts/, README): runs experiments/tools/steptime.py."""
import runpy

if __name__ == "__main__":
    runpy.run_module("experiments.tools.steptime", run_name="__main__", alter_sys=True)
