"""Read finished (or half-finished) runs and turn them into the paper's figures and Table 6.

The files are the interface: this package reads each run's `metrics.csv` and `run.json` and never
imports `experiments/`, so results from another machine or another version can be analysed too. What
the files hold is declared once, in `runformat`, which both sides import.
`python -m analysis.report --runs DIR --out DIR` writes everything; the modules are:
inputs (the reading rules for files from elsewhere), outputs (every file written whole, all at once),
load (files -> one tidy frame), families (a family's label and title, from run.json), tables (Table 6
+ peers.csv, the paper's and reproductions' numbers), figures (Fig. 1, Fig. 6, error vs depth), text
(the prose's shared vocabulary: comparisons, trends) with the findings and their sentences by concern in
degradation_text (the verdict, Fig. 1, Fig. 6, error vs depth), paper_text (Table 6 against the paper), probes_text
and imported_text, provenance (protocol, data, machines),
probes_figures (Fig. 7 layer responses, gradient norms), inspection and inspection_text (why depth hurts plain
nets, from the files the after-training inspection (experiments/science/measures.py) writes: the constructed deeper
net, runs started from it, block ratios, the lesion study), reference (which reference runs to draw dotted beneath
the user's, and each net against them), published (a public reproduction's curves converted into a reference set),
render (markdown / HTML), report (the CLI).
"""
