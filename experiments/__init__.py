"""Training side of the harness: models, data, the training loop and the Hydra entry point.

He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition", CVPR 2016, Sec. 4.2.
"""
