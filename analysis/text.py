"""The shared vocabulary of the report's prose: numbers as text, one net against another, a trend over depth,
and the nets a finding may compare.

The report's findings live in modules by concern, each with the same two layers: findings are pure functions of the
per-net tables that return small dataclasses (which nets were compared, which way it went, whether it is within the
seed-to-seed or the epoch-to-epoch spread), and wording functions (`say_*`) turn a finding into sentences and
decide nothing. The `*_paragraph` and `verdict` functions the report calls are the two put together. Imports go one
way, from this module outwards: degradation_text (the verdict, Figures 1 and 6, error against depth) and paper_text
(Table 6 and the paper's numbers, from peers.csv, never typed into a sentence), probes_text (Figure 7, gradient
norms), imported_text (imported weights), inspection_text (why depth hurts plain nets).
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np
import pandas as pd

from runformat import PAPER_FAMILY

from .load import from_scratch
from .tables import SCATTER_EPOCHS, comparable_with_paper

EXPECTED_DEPTHS = (20, 32, 44, 56)  # Fig. 6 left panel and Table 6's first rows
WHAT = {"train_err": "training error", "test_err": "test error"}


def pct(value) -> str:
    return f"{value:.2f}%"


def times(ratio: float) -> str:
    """0.82x, 1,343x, 0.001x: enough digits to read an order of magnitude."""
    if pd.isna(ratio):
        return "n/a"
    if ratio >= 10:
        return f"{ratio:,.0f}x"
    return f"{ratio:.2f}x" if ratio >= 0.1 else f"{ratio:.2g}x"


def capital(text: str) -> str:
    return text[0].upper() + text[1:]


# ---- selecting nets from the per-net table --------------------------------------------------------

def nets(table: pd.DataFrame, residual: bool, family: str = PAPER_FAMILY) -> pd.DataFrame:
    rows = table[(table["family"] == family) & (table["residual"] == residual) & from_scratch(table)]
    if family == PAPER_FAMILY:
        rows = rows[rows.apply(comparable_with_paper, axis=1)] if len(rows) else rows
    return rows.sort_values("depth")


def ends(rows: pd.DataFrame):
    """Shallowest and deepest net to compare, preferring the paper's 20 and 56 when present."""
    if len(rows) < 2:
        return None
    usual = rows[rows["depth"].isin(EXPECTED_DEPTHS)]
    pick = usual if len(usual) >= 2 else rows
    return pick.iloc[0], pick.iloc[-1]


# ---- one net against another ----------------------------------------------------------------------

# An order between two nets' last epochs is read only beyond this many times the scatter of their difference (the
# two nets' epoch-to-epoch scatters, tables.epoch_scatter, added in quadrature): within it, one more or one fewer epoch
# could turn it round (about 95% of a normal scatter lies within two of its stds).
SPREAD_STDS = 2.0
# ... unless the order held at every one of the last SCATTER_EPOCHS epochs both nets logged at their last lr: a
# curve with one wild epoch (plain-56's 54.97% three epochs before the end of the H200 sweep so far) has a wide
# spread, but ten epochs in a row of one order are not one more or one fewer epoch's chance (1 in 2^9 if each epoch
# were a coin)


@dataclass(frozen=True)
class Comparison:
    """`net` against `other` on one final error (mean over runs)."""
    net: str
    other: str
    column: str        # "train_err" / "test_err"
    value: float
    other_value: float
    sign: int          # of value - other_value: 1 higher, -1 lower, 0 the same
    within_std: bool   # a difference no larger than the larger of the two seed-to-seed stds
    spread: float = float("nan")  # ± points the difference moves by from epoch to epoch (SPREAD_STDS of its scatter);
                                  # NaN where a net has too few epochs at its last lr to say
    within_spread: bool = False   # a difference within that spread, and not the same order at each epoch: no order yet
    held: int = 0                 # beyond the spread's rule: the order held at each of this many last epochs (0: not used)

    @property
    def settled(self) -> int:
        """The sign a finding counts: 0 for a difference within the epoch-to-epoch spread, which says neither way."""
        return 0 if self.within_spread else self.sign


def comparison(net, other, column: str) -> Comparison:
    """`net`, `other`: rows of the per-net table."""
    a, b = float(net[f"{column}_mean"]), float(other[f"{column}_mean"])
    sign = int(a > b) - int(a < b)
    spread = max(net[f"{column}_std"], other[f"{column}_std"])
    scatter = [float(row.get(f"{column}_epoch_std", float("nan"))) for row in (net, other)]
    epochs = SPREAD_STDS * float(np.hypot(*scatter))  # NaN when either net has none
    within = bool(sign and not pd.isna(epochs) and abs(a - b) <= epochs)
    held = held_order(net.get(f"{column}_tail", ()), other.get(f"{column}_tail", ()), sign) if within else 0
    return Comparison(str(net["net"]), str(other["net"]), column, a, b, sign,
                      bool(sign and not pd.isna(spread) and abs(a - b) <= spread), epochs, within and not held, held)


def held_order(tail, other_tail, sign: int) -> int:
    """SCATTER_EPOCHS when the two nets' last-stage epochs (tables.net_end) share that many iterations and at each
    the difference has `sign`; else 0."""
    if not isinstance(tail, tuple) or not isinstance(other_tail, tuple):
        return 0
    theirs = dict(other_tail)
    shared = [(v, theirs[i]) for i, v in tail if i in theirs][-SCATTER_EPOCHS:]
    same = len(shared) == SCATTER_EPOCHS and all((a > b) - (a < b) == sign for a, b in shared)
    return SCATTER_EPOCHS if same else 0


def say_pair(c: Comparison) -> str:
    """'ResNet-56 vs ResNet-20 (test error)'."""
    return f"{c.net} vs {c.other} ({WHAT[c.column]})"


def say_comparison(c: Comparison) -> str:
    """'plain-56 ends with higher training error than plain-20: 3.17% vs 1.00%'; 'ResNet-56 vs ResNet-20, test
    error: 19.77% vs 16.24%, no difference yet (within the epoch-to-epoch spread, ±3.69 points)'."""
    if c.within_spread:
        text = (f"{c.net} vs {c.other}, {WHAT[c.column]}: {pct(c.value)} vs {pct(c.other_value)}, no difference yet "
                f"(within the epoch-to-epoch spread, ±{c.spread:.2f} points)")
    else:
        word = {1: "higher", -1: "lower", 0: "the same"}[c.sign]
        text = (f"{c.net} ends with {word} {WHAT[c.column]} {'than' if c.sign else 'as'} {c.other}: "
                f"{pct(c.value)} vs {pct(c.other_value)}")
        if c.held:
            text += (f" ({word} at each of the last {c.held} epochs, though single epochs scatter by "
                     f"±{c.spread:.2f} points)")
    return text + (" (a difference within the seed-to-seed std)" if c.within_std else "")


# ---- Figure 6: trends over depth ------------------------------------------------------------------

class Direction(str, Enum):
    rises = "rises with every step in depth"
    falls = "falls with every step in depth"
    mixed = "is not monotonic in depth"


@dataclass(frozen=True)
class Trend:
    nets: tuple       # in order of depth
    values: tuple
    direction: Direction | None  # None: a single net


def trend(nets, values) -> Trend:
    values = tuple(float(v) for v in values)
    steps = [b - a for a, b in zip(values, values[1:])]
    direction = (None if not steps else Direction.rises if all(s > 0 for s in steps)
                 else Direction.falls if all(s < 0 for s in steps) else Direction.mixed)
    return Trend(tuple(nets), values, direction)


def say_trend(t: Trend) -> str:
    listed = ", ".join(f"{net} {pct(v)}" for net, v in zip(t.nets, t.values))
    return listed if t.direction is None else f"{listed}: it {t.direction.value}"


def epochs_text(first: int, last: int) -> str:
    return f"epoch {first}" if first == last else f"epochs {first}-{last}"
