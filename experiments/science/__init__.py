"""Why depth hurts plain nets, measured on a trained model (`measures`): the constructed deeper net, how close
each block is to the identity, the lesion study. Pure torch on a model and its data; imports nets/, data/,
training/ and experiments.config: part of the ML core, no Hydra, nothing of the harness (which runs the measures
on run directories: experiments.harness.inspection)."""
