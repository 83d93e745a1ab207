"""Hydra launchers for a sweep (hydra_plugins/ registers them): every cell in one process on one GPU
(`concurrent`), and groups of cells per SLURM job or per GPU (`grouped`, docs/cluster.md). They hand jobs to the
harness's runner; may import the harness and what it may; no tool, no command line."""
