"""The networks: the family table (`families`: what the harness may ask of any family, the `ProbedModel` seam) and
the families that come with it, the paper's CIFAR ResNets and plain nets (`resnet_cifar`) and the Keras
tutorial's MiniModel (`minimodel`), with the fused BN-ReLU regions (`fused`). Imports only experiments.config and
experiments.errors (and torch): part of the ML core, no Hydra."""
