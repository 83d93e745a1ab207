"""Training side of the harness: models, data, the training loop and the Hydra entry point.

He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition", CVPR 2016, Sec. 4.2.

Each subpackage imports only from those above it in this list (the exact table: tests/test_layout.py); `runformat` (the run
files' format, standard library only) any may import, `analysis` none:

    config.py, errors.py   the schema and UserError: nothing of the project, no Hydra
    nets/                  the network families and their table
    data/                  data sets, the device-resident training stream
    training/              the training step, its fast paths, the probes
    science/               the measures of why depth hurts plain nets
    harness/               Hydra composition, run directories, the cell lifecycle, the runner, the precheck
    launchers/             the concurrent and the grouped (SLURM, multi-GPU) launchers
    tools/                 benchmarks and speed experiments
    run.py, inspect.py, pretrained.py, rename.py
                           the command lines (`python -m experiments.run`, ...); bench.py, steptime.py and
                           inspect_bench.py are shims that run their tools/ module, as the Makefile calls them

The ML core (config, nets, data, training, science) imports no Hydra and nothing of the harness.
"""
