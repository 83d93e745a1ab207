"""`python -m experiments.steptime`, as the Makefile, scripts/ and the README write it: the tool is experiments/tools/steptime.py."""
import runpy

if __name__ == "__main__":
    runpy.run_module("experiments.tools.steptime", run_name="__main__", alter_sys=True)
