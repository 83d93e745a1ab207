"""Table 6: final errors per net over seeds, next to the paper's and public reproductions' numbers.

Only the paper's family (`resnet_cifar`, option-A ResNets and plain nets) is put next to the
paper; other families get their own table with no paper columns, since their numbers measure a
different model. Plain nets have no paper number: the paper shows them only as curves (Fig. 6).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from runformat import PAPER_FAMILY

from . import outputs
from .load import final_rows
from .provenance import header_line
from .render import to_markdown

PEERS_CSV = Path(__file__).with_name("peers.csv")
PAPER_URL = "https://arxiv.org/abs/1512.03385"
PEER_PREFIX = "peer: "


def load_peers(path=PEERS_CSV) -> pd.DataFrame:
    return pd.read_csv(path, encoding="utf-8")


PAPER_LENGTH = 0.9  # a net whose runs reach this fraction of the paper's iterations is trained to the paper's length


def paper_iterations(peers: pd.DataFrame | None = None) -> int | None:
    """The paper's training length (Table 6's rows in peers.csv)."""
    peers = load_peers() if peers is None else peers
    its = pd.to_numeric(peers.loc[peers["kind"] == "paper_table", "iterations"], errors="coerce").dropna()
    return int(its.max()) if len(its) else None


def paper_length(table: pd.DataFrame, peers: pd.DataFrame | None = None) -> pd.Series:
    """Per row of a per-net table: trained to the paper's length, so that its errors may sit beside the paper's and
    the reproductions' (a 1,000-iteration run's gap to 64,000-iteration numbers says nothing)."""
    its = paper_iterations(peers)
    if its is None or table.empty:
        return pd.Series(False, index=table.index)
    return pd.to_numeric(table["final_iteration"], errors="coerce") >= PAPER_LENGTH * its


# A run's last epoch is one draw of an error that moves from epoch to epoch (at lr 0.1 a ResNet's test error swings by
# several points), so each net carries how far: the scatter of its last epochs at its final lr, about their trend.
SCATTER_EPOCHS = 10     # the last logged epochs at the final lr that measure it
MIN_SCATTER_EPOCHS = 5  # fewer: no scatter (NaN), and nothing is judged by it (a parabola through 4 leaves 1 of freedom)


def epoch_scatter(run: pd.DataFrame, column: str) -> float:
    """One run's epoch-to-epoch scatter of `column` at its end: the sample std of its last SCATTER_EPOCHS logged
    epochs at the last epoch's lr about a least-squares parabola through them (ddof=3, its coefficients). A stage's
    start (an lr drop) is another level, and a curve still falling early in a stage is a trend: neither is scatter."""
    return _scatter(last_stage(run, column), column)  # a run that logs no lr (a published curve) is one stage


def _scatter(tail: pd.DataFrame, column: str) -> float:
    if len(tail) < MIN_SCATTER_EPOCHS:
        return np.nan
    its, values = tail["iteration"].to_numpy(float), pd.to_numeric(tail[column]).to_numpy(float)
    x = (its - its[0]) / ((its[-1] - its[0]) or 1.0)  # scaled to [0, 1]: a well-conditioned fit
    residuals = values - np.polyval(np.polyfit(x, values, 2), x)
    return float(np.sqrt((residuals ** 2).sum() / (len(values) - 3)))


def last_stage(run: pd.DataFrame, column: str) -> pd.DataFrame:
    """A run's last SCATTER_EPOCHS logged epochs at its last epoch's lr, with a value of `column`."""
    rows = run.sort_values("iteration", kind="stable")
    lr = pd.to_numeric(rows["lr"], errors="coerce").to_numpy(float) if "lr" in rows else np.full(len(rows), np.nan)
    same = np.isclose(lr, lr[-1], equal_nan=True) if len(lr) else np.ones(0, bool)
    stage = len(same) if same.all() else int(np.argmin(same[::-1]))  # the trailing epochs at the last lr
    tail = rows.iloc[len(rows) - min(stage, SCATTER_EPOCHS):]
    return tail[pd.to_numeric(tail[column], errors="coerce").notna()]


def net_end(runs: list, column: str) -> tuple[float, tuple]:
    """`runs`: one net's runs (each its epoch rows). -> (the scatter of its final error, the mean of its runs' last
    epochs: that of one run over sqrt(n), from the runs with one, NaN when none has; its last-stage epochs
    ((iteration, value), ...) as the mean over the runs at each iteration they all logged, for the paired reading of
    two nets' order in text.comparison). Each run's last stage is found once for both."""
    tails = [last_stage(run, column) for run in runs]
    known = [s for s in (_scatter(t, column) for t in tails) if not pd.isna(s)]
    scatter = float(np.sqrt(np.mean(np.square(known)) / len(tails))) if known else np.nan
    if not tails or any(t.empty for t in tails):
        return scatter, ()
    common = set.intersection(*(set(t["iteration"].astype(int)) for t in tails))
    values = pd.concat(t[t["iteration"].astype(int).isin(common)] for t in tails)
    means = pd.to_numeric(values[column]).groupby(values["iteration"].astype(int)).mean()
    return scatter, tuple((int(i), float(v)) for i, v in means.sort_index().items())


def summarise(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per net. Completed runs only, unless a net has none (then `from_unfinished`)."""
    columns = ["family", "family_label", "family_title", "net", "residual", "depth", "shortcut", "init_depth", "recipe",
               "n", "n_unfinished",
               "from_unfinished", "seeds", "test_err_mean", "test_err_std", "train_err_mean",
               "train_err_std", "test_err_epoch_std", "train_err_epoch_std", "final_iteration", "params",
               "test_err_tail", "train_err_tail"]
    last = final_rows(frame)
    by_run = dict(tuple(frame.groupby("run", sort=False))) if len(frame) else {}
    rows = []
    for (family, net), group in last.groupby(["family", "net"], sort=False):
        finished = group[group["finished"].astype(bool)]
        used = finished if len(finished) else group
        params = pd.to_numeric(used["num_params"], errors="coerce").dropna()
        seeds = sorted(pd.to_numeric(used["seed"], errors="coerce").dropna().astype(int))
        runs = [by_run[r] for r in used["run"]]
        (test_scatter, test_tail), (train_scatter, train_tail) = net_end(runs, "test_err"), net_end(runs, "train_err")
        rows.append({
            "family": family, "family_label": group["family_label"].iloc[0],
            "family_title": group["family_title"].iloc[0], "net": net,
            "residual": bool(group["residual"].iloc[0]),
            "depth": int(group["depth"].iloc[0]), "shortcut": group["shortcut"].iloc[0],
            "init_depth": group["init_depth"].iloc[0] if "init_depth" in group else np.nan,
            "recipe": group["recipe"].iloc[0] if "recipe" in group else "",
            "n": len(used), "n_unfinished": int((~group["finished"].astype(bool)).sum()),
            "from_unfinished": finished.empty, "seeds": " ".join(map(str, seeds)),
            # sample std (ddof=1): NaN for a single run, not a misleading 0
            "test_err_mean": used["test_err"].mean(), "test_err_std": used["test_err"].std(ddof=1),
            "train_err_mean": used["train_err"].mean(),
            "train_err_std": used["train_err"].std(ddof=1),
            "test_err_epoch_std": test_scatter,
            "train_err_epoch_std": train_scatter,
            "final_iteration": used["iteration"].max(),
            "params": int(params.mode().iloc[0]) if len(params) else np.nan,
            "test_err_tail": test_tail,
            "train_err_tail": train_tail,
        })
    table = pd.DataFrame(rows, columns=columns)
    order = (table["family"] != PAPER_FAMILY, table["family"], table["residual"], table["depth"],
             table["net"])
    return table.iloc[np.lexsort(order[::-1])].reset_index(drop=True) if len(table) else table


def comparable_with_paper(row) -> bool:
    # the paper's Table 6 and Fig. 6 nets are the resnet_cifar family with option-A shortcuts, trained from scratch
    return (row["family"] == PAPER_FAMILY and not str(row["net"]).endswith("(B)")
            and pd.isna(row.get("init_depth", np.nan)) and not variant(row))


def variant(row) -> str:
    """How the net's recipe differs from its family's main one (load.name_nets), "" for the main recipe."""
    value = row.get("recipe")
    return value if isinstance(value, str) else ""


def table6(frame: pd.DataFrame, peers: pd.DataFrame | None = None) -> pd.DataFrame:
    peers = load_peers() if peers is None else peers
    table = summarise(frame)
    comparable = table.apply(comparable_with_paper, axis=1).astype(bool) if len(table) else \
        pd.Series(False, index=table.index)
    # the paper's numbers by net, each table only where the row may sit next to the paper: its parameter counts for
    # the same architecture, its errors only for runs as long as its own
    paper = peers[peers["kind"] == "paper_table"].set_index("net")
    readoff = peers[peers["kind"] == "paper_figure_readoff"].set_index("net")
    table["paper_length"] = paper_length(table, peers) & comparable
    in_table = comparable & table["residual"].astype(bool) & table["net"].isin(paper.index)
    in_figure = comparable & ~table["residual"].astype(bool) & table["net"].isin(readoff.index)
    table["paper_params"] = table["net"].map(paper["params"]).where(in_table).fillna(
        table["net"].map(readoff["params"]).where(in_figure))
    in_table, in_figure = in_table & table["paper_length"], in_figure & table["paper_length"]
    table["paper_test_err"] = table["net"].map(paper["test_err"]).where(in_table)
    low, high = (table["net"].map(readoff[c]) for c in ("test_err_low", "test_err_high"))
    table["paper_fig6_readoff"] = [_readoff_text(lo, hi) if ok else ""
                                   for lo, hi, ok in zip(low, high, in_figure)]
    table["paper_note"] = [_paper_note(row, ok, t, paper)
                           for (_, row), ok, t in zip(table.iterrows(), comparable, in_table)]
    # one column per reproduction, in peers.csv's order
    reproductions = peers[peers["kind"] == "reproduction"]
    sources = list(dict.fromkeys(reproductions["source"]))
    wide = reproductions.pivot_table(index="net", columns="source", values="test_err", aggfunc="first")
    wide = wide.reindex(columns=sources).add_prefix(PEER_PREFIX)
    table = table.join(wide, on="net")
    table.loc[~table["paper_length"], list(wide.columns)] = np.nan
    return table


def _readoff_text(low, high) -> str:
    return f"≈{low:g}" if low == high else f"≈{low:g}–{high:g}"


def _paper_note(row, ok: bool, in_table: bool, paper: pd.DataFrame) -> str:
    if row["family"] != PAPER_FAMILY:
        return "different family: not comparable with the paper"
    if not pd.isna(row.get("init_depth", np.nan)):
        return "started from a trained shallower net (init.from), not from scratch"
    if variant(row):
        return f"another recipe than the other runs ({variant(row)})"
    if not ok:
        return "option B: the paper's Table 6 nets use option A"
    if not row["residual"]:
        return "curve only (the paper gives plain nets only in Fig. 6)"
    if not in_table:
        return "not in the paper's Table 6"
    note = paper.at[row["net"], "note"]
    return "Table 6" + (f"; {note}" if isinstance(note, str) and "best of" in note else "")


def fmt_stat(mean, std, n) -> str:
    if pd.isna(mean):
        return "–"
    spread = "" if pd.isna(std) else f" ± {std:.2f}"
    return f"{mean:.2f}{spread} (n={int(n)})"


def table6_blocks(table: pd.DataFrame, frame: pd.DataFrame, peers: pd.DataFrame | None = None,
                  level: int = 1) -> list:
    peers = load_peers() if peers is None else peers
    paper_nets = len(table) and table.apply(comparable_with_paper, axis=1).any()
    # "Table 6" only over the paper's nets; another family's runs get a table of their own name
    title = ("Table 6: CIFAR-10 error (%) at the end of training" if paper_nets
             else "Final error (%) at the end of training")
    blocks = [("h", level, title),
              ("p", header_line(frame) + " Errors are those of each run's last epoch: "
               "mean ± sample std (ddof=1) over runs, n = number of runs.")]
    ours = table[table.apply(comparable_with_paper, axis=1)] if len(table) else table
    others = table.drop(ours.index)
    if len(ours):
        blocks += _paper_family_blocks(ours, peers)
    if len(others) and not len(ours) and others["family"].nunique() == 1:
        # one other family alone: its table, and why no paper number stands beside it said once, not per row
        fam = others["family_title"].iloc[0]
        blocks += [("p", f"{fam}: not the paper's nets, so no paper or reproduction number stands beside them."),
                   ("table", ["net", "test err. (%)", "train err. (%)", "params"],
                    [[_net_cell(r), fmt_stat(r["test_err_mean"], r["test_err_std"], r["n"]),
                      fmt_stat(r["train_err_mean"], r["train_err_std"], r["n"]), _fmt_params(r["params"])]
                     for _, r in others.iterrows()])]
    elif len(others):
        blocks += [("h", level + 1, "Other nets: not comparable with the paper's Table 6"),
                   ("p", "These are not the paper's nets (another model family or another "
                    "shortcut option), so no paper or reproduction number is put next to them."),
                   ("table", ["net", "family", "test err. (%)", "train err. (%)", "params",
                              "why not compared"],
                    [[_net_cell(r), r["family_title"],
                      fmt_stat(r["test_err_mean"], r["test_err_std"], r["n"]),
                      fmt_stat(r["train_err_mean"], r["train_err_std"], r["n"]),
                      _fmt_params(r["params"]), r["paper_note"]]
                     for _, r in others.iterrows()])]
    if len(table) and table["from_unfinished"].any():
        blocks.append(("p", "† no completed run of this net: statistics over unfinished runs."))
    return blocks


def _paper_family_blocks(ours: pd.DataFrame, peers: pd.DataFrame) -> list:
    if not ours["paper_length"].any():  # a short run: its errors beside the paper's would be a gap that says nothing
        its, last = paper_iterations(peers), ours["final_iteration"].max()
        rows = [[_net_cell(r), fmt_stat(r["test_err_mean"], r["test_err_std"], r["n"]),
                 fmt_stat(r["train_err_mean"], r["train_err_std"], r["n"]), _params_cell(r)] for _, r in ours.iterrows()]
        return [("table", ["net", "test err. (%)", "train err. (%)", "params"], rows),
                ("p", f"No paper or reproduction numbers beside these: those are for {its:,} iterations, these runs "
                 f"stop at {int(last):,}. ✓: parameter count equals the paper's net (exact count of the option-A "
                 "architecture; plain nets have the same).")]
    peer_columns = [c for c in ours.columns if c.startswith(PEER_PREFIX) and ours[c].notna().any()]
    header = ["net", "test err. (%)", "train err. (%)", "params", "paper Table 6 [1]"]
    header += [f"{short_source(c[len(PEER_PREFIX):])} [{i + 3}]" for i, c in enumerate(peer_columns)]
    by_source = peers.set_index(["source", "net"])  # each reproduction's numbers, looked up per cell
    rows = []
    for _, r in ours.iterrows():
        if r["residual"]:
            paper = "–" if pd.isna(r["paper_test_err"]) else f"{r['paper_test_err']:.2f}"
            if "best of" in r["paper_note"]:
                paper += " (best of 5)"
        else:
            paper = "curve only [2]" + (f"; {r['paper_fig6_readoff']}" if r["paper_fig6_readoff"] else "")
        cells = [_net_cell(r),
                 fmt_stat(r["test_err_mean"], r["test_err_std"], r["n"]),
                 fmt_stat(r["train_err_mean"], r["train_err_std"], r["n"]), _params_cell(r), paper]
        cells += [_peer_cell(by_source, c[len(PEER_PREFIX):], r["net"]) for c in peer_columns]
        rows.append(cells)
    paper_rows = peers[peers["kind"] == "paper_table"]
    notes = [f"[1] He, Zhang, Ren, Sun, \"Deep Residual Learning for Image Recognition\", CVPR 2016, "
             f"Table 6 ({PAPER_URL}): test error of one run per net (ResNet-110: best of 5, mean "
             f"6.61 ± 0.16); recipe: {paper_rows['recipe'].iloc[0]}. ✓: parameter count equals the "
             "paper's net (exact count of the option-A architecture; plain nets have the same).",
             "[2] The paper gives plain nets only as training curves (Figure 6), no numbers. "
             "≈ values are approximate read-offs of that figure by reproductions, not paper numbers."]
    first = peers.drop_duplicates("source").set_index("source")  # a source's recipe and address
    for i, column in enumerate(peer_columns):
        source = column[len(PEER_PREFIX):]
        info = first.loc[source]
        notes.append(f"[{i + 3}] {source}: {info['recipe']} ({info['url_or_repo']}).")
    notes.append("Our errors are the last epoch's; reproductions that picked the best epoch on "
                 "the test set report optimistic numbers.")
    return [("table", header, rows), ("ul", notes)]


def short_source(source: str) -> str:
    """`a-martyn/resnet (final epoch)` -> `a-martyn (final epoch)`: the repository owner names it."""
    owner = source.split("/")[0]
    return owner + (" " + source[source.index("("):] if "(" in source else "")


def _peer_cell(by_source: pd.DataFrame, source: str, net: str) -> str:
    """`by_source`: peers indexed by (source, net)."""
    if (source, net) not in by_source.index or pd.isna(by_source.at[(source, net), "test_err"]):
        return "–"
    row = by_source.loc[(source, net)]
    text = f"{row['test_err']:.2f}"
    if not pd.isna(row["test_err_std"]):
        text += f" ± {row['test_err_std']:.2f}"
    if not pd.isna(row["train_err"]):
        text += f" (train {row['train_err']:.2f})"
    return text


def _params_cell(r) -> str:
    params = _fmt_params(r["params"])
    if r["params"] == r["paper_params"]:
        return params + " ✓"
    if not pd.isna(r["paper_params"]) and not pd.isna(r["params"]):
        return params + f" (paper {int(r['paper_params']):,})"
    return params


def _fmt_params(value) -> str:
    return "?" if pd.isna(value) else f"{int(value):,}"


def _net_cell(row) -> str:
    if row["from_unfinished"]:
        return row["net"] + " †"
    if row["n_unfinished"]:
        return f"{row['net']} (+{row['n_unfinished']} unfinished run(s) left out)"
    return row["net"]


def write_table6(table: pd.DataFrame, frame: pd.DataFrame, out_dir) -> list[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(exist_ok=True)  # as figures.save
    csv_path, md_path = out_dir / "table6.csv", out_dir / "table6.md"
    tails = [c for c in table.columns if c.endswith("_tail")]  # the paired reading's curves: not a table's cells
    return [outputs.write_csv(table.drop(columns=tails), csv_path, float_format="%.4f"),
            outputs.write_text(md_path, to_markdown(table6_blocks(table, frame)))]
