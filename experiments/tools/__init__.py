"""Measuring tools outside the training path: the throughput benchmark (`bench`), where a step's time goes
(`steptime`, with the `stacked` speed idea), and what the inspection adds to a run (`inspect_bench`). They may
import the ML core and the harness; nothing imports them but their `python -m experiments.X` shims."""
