"""One network's training: the step and the loop that returns its metrics (`train`), the foreach SGD (`optim`),
the fast paths (the CUDA-graph step in `fastpath`, the variants chosen in the first minute in `variants`), what
`speed.*=auto` means on a device (`device`), and the per-layer probes (`probes`). Imports nets/, data/ and
experiments.config: part of the ML core, no Hydra, nothing of the harness."""
