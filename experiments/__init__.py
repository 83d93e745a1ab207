"""Training side of the harness: models, data, the training loop and the Hydra entry point.

He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition", CVPR 2016, Sec. 4.2.

Each subpackage imports only those above it in this list (tests/test_layout.py keeps it so); `runformat` (the run
files' format, standard library only) any may import, `analysis` none:

    config.py, errors.py   the schema and UserError: nothing of the project, no Hydra
    nets/                  the network families and their table
    data/                  data sets, the device-resident training stream
    training/              the training step, its fast paths, the probes
    science/               the measures of why depth hurts plain nets
    harness/               Hydra composition, run directories, the cell lifecycle, the runner, the precheck
    launchers/             the concurrent and the grouped (SLURM, multi-GPU) launchers
    tools/                 benchmarks and speed experiments
    run.py, inspect.py, pretrained.py, rename.py, and bench.py, steptime.py, inspect_bench.py (shims into
    tools/)                the command lines (`python -m experiments.X`)

The ML core (config, nets, data, training, science) imports no Hydra and nothing of the harness.
"""
