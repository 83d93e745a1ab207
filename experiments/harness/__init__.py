"""The process around the ML core: conf/ composed into the typed Config and runs named (`compose`, the one home
of Hydra's side of the schema), the precheck of a whole sweep before anything runs (`precheck`, `sweep`), run
directories with their atomic writes and lock (`rundir`), a cell's lifecycle from lock to close (`cell`, with
`init_from` and the after-training `inspection`), the runner that trains cells and handles signals (`runner`),
provenance and progress. May import the ML core (nets, data, training, science), config, errors and Hydra; no
launcher, no tool, no command line."""
