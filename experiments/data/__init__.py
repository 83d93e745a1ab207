"""The data: CIFAR-10 and image folders loaded as uint8 tensors with their fingerprint (`datasets`), the
per-process cache of a data set on its device (`cache`), and the device-resident training stream that rebuilds any
batch of any epoch from (seed, epoch), with its augmentations and normalisation (`loader`, `keras_augment`).
Imports only experiments.config and experiments.errors: part of the ML core, no Hydra."""
