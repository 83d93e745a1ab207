"""What the after-training inspection says, and the sentences that say it (issue 12: why depth hurts plain nets).

As in `text`: findings are pure functions of the per-net tables (`inspection`'s profiles and `tables.table6`) that
return small dataclasses; `say_*` words them and decides nothing; `*_paragraph` puts the two together.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from runformat import PAPER_FAMILY

from . import families
from .families import Family
from .text import Comparison, Trend, comparison, pct, say_comparison, trend

HARMLESS_RISE = 5.0  # points of test error: a deletion below this the net "survives" (our threshold, not Veit et al.'s)
HEADLINE_DEPTHS = (20, 56)  # the paper's Figure 1 pair, preferred when present


def _ratio(value: float) -> str:
    return f"{value:.3g}"


def _nets_in(table: pd.DataFrame, family: str, depth: int, residual: bool, shortcut, init_depth=None):
    """The per-net table's row for one net (None when absent): from scratch, or started from `init_depth`."""
    rows = table[(table["family"] == family) & (table["depth"] == depth) & (table["residual"] == residual)]
    if shortcut is not None and "shortcut" in rows:
        rows = rows[rows["shortcut"].fillna("A") == shortcut]
    init = rows["init_depth"] if "init_depth" in rows else pd.Series(float("nan"), index=rows.index)
    rows = rows[init.isna()] if init_depth is None else rows[init == init_depth]
    return rows.iloc[0] if len(rows) else None


# ---- 1. the constructed deeper net ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Construction:
    """A shallow net, and the deeper one built from it by identity blocks (mean over the shallow net's runs)."""
    shallow: str             # "plain-20"
    deep: str                # "plain-56": the constructed net has the architecture of the scratch net of this name
    shallow_depth: int
    deep_depth: int
    residual: bool
    runs: int
    shallow_test: float      # eval mode, on the test images
    constructed_test: float
    max_logit_diff: float    # the largest over runs
    batches: int             # training batches of the training-mode measurement
    train_shallow: float     # training mode, on those batches
    train_constructed: float
    deviation: float         # mean relative logit deviation in training mode
    shallow_final_train: float | None = None   # the shallow net's final training error (metrics.csv)
    scratch_test: float | None = None          # the deep net trained from scratch, final errors
    scratch_train: float | None = None
    started: str | None = None                 # a run started from it (init.from), and its final errors
    started_test: float | None = None
    started_train: float | None = None

    @property
    def exact(self) -> bool:
        return self.constructed_test == self.shallow_test

    @property
    def missed(self) -> bool | None:
        """The deep net trained from scratch trains worse than the shallow net: SGD did not find the solution that
        the construction shows exists. None without both numbers."""
        if self.scratch_train is None or self.shallow_final_train is None:
            return None
        return self.scratch_train > self.shallow_final_train


@dataclass(frozen=True)
class ConstructionFinding:
    family: Family
    pairs: tuple                 # Construction, plain first, by depths
    headline: Construction | None  # the plain pair to lead with: 20 -> 56 when present, else the widest with a scratch net
    largest_logit_diff: float
    missed: int                  # plain pairs where the deep scratch net trains worse than the shallow net
    compared: int                # plain pairs with both numbers
    plain_deviation: tuple | None  # (min, max) relative training-mode deviation of the plain constructions
    residual_deviation: float | None  # the largest for the residual ones
    residual_headline: Construction | None = None  # the residual pair to set beside it, chosen as the plain one

    @property
    def all_exact(self) -> bool:
        return all(c.exact for c in self.pairs)


def find_constructions(profile: pd.DataFrame, table: pd.DataFrame) -> ConstructionFinding | None:
    """`profile`: inspection.constructed_profile (one row per shallow net and deeper depth); `table`: the per-net
    table (tables.table6) for the final errors of the shallow, scratch and init.from nets."""
    if profile.empty:
        return None
    family = profile["family"].iloc[0]
    fam = families.in_frame(profile, family)
    pairs = []
    for _, r in profile.iterrows():
        shortcut = r.get("shortcut")
        own = _nets_in(table, family, int(r["depth"]), bool(r["residual"]), shortcut)
        scratch = _nets_in(table, family, int(r["deep_depth"]), bool(r["residual"]), shortcut)
        started = _nets_in(table, family, int(r["deep_depth"]), bool(r["residual"]), shortcut, int(r["depth"]))
        pairs.append(Construction(
            str(r["net"]), fam.net(r["deep_depth"], r["residual"], shortcut), int(r["depth"]), int(r["deep_depth"]),
            bool(r["residual"]), int(r["runs"]),
            float(r["test_err_shallow"]), float(r["test_err_deep"]), float(r["max_logit_diff"]), int(r["batches"]),
            float(r["train_err_shallow"]), float(r["train_err_deep"]), float(r["train_deviation"]),
            float(own["train_err_mean"]) if own is not None else None,
            float(scratch["test_err_mean"]) if scratch is not None else None,
            float(scratch["train_err_mean"]) if scratch is not None else None,
            str(started["net"]) if started is not None else None,
            float(started["test_err_mean"]) if started is not None else None,
            float(started["train_err_mean"]) if started is not None else None))
    pairs.sort(key=lambda c: (c.residual, c.shallow_depth, c.deep_depth))
    plain = [c for c in pairs if not c.residual]
    compared = [c for c in plain if c.missed is not None]
    res = [c.deviation for c in pairs if c.residual]
    return ConstructionFinding(fam, tuple(pairs), _headline(plain), max(c.max_logit_diff for c in pairs),
                               sum(bool(c.missed) for c in compared), len(compared),
                               (min(c.deviation for c in plain), max(c.deviation for c in plain)) if plain else None,
                               max(res) if res else None,
                               _headline([c for c in pairs if c.residual and c.scratch_test is not None]))


def _headline(pairs: list) -> Construction | None:
    """20 -> 56 when present among the pairs with a scratch net to compare, else the widest of those, else the last."""
    compared = [c for c in pairs if c.missed is not None]
    usual = [c for c in compared if (c.shallow_depth, c.deep_depth) == HEADLINE_DEPTHS]
    widest = sorted(compared, key=lambda c: c.deep_depth - c.shallow_depth)
    return (usual or widest[-1:] or pairs[-1:] or [None])[0]


def say_constructions(f: ConstructionFinding | None) -> str:
    if f is None:
        return "No run has a constructed deeper net (`constructed.csv`) to describe."
    out = []
    h = f.headline
    if h is not None:
        head = ("a solution at least as good exists, and SGD did not find it" if h.missed
                else "a solution at least as good exists, and SGD found one as good" if h.missed is False
                else "a solution at least as good exists")
        out.append(f"**{h.shallow} → {h.deep}: {head}.** The constructed {h.deep} ({h.shallow}'s blocks first in "
                   f"each stage, identity blocks after them) has test error {pct(h.constructed_test)}, {h.shallow}'s "
                   f"is {pct(h.shallow_test)} (largest logit difference {h.max_logit_diff:.1e}), so its training "
                   f"error is {h.shallow}'s too.")
        if h.scratch_train is not None and h.shallow_final_train is not None:
            word = "higher" if h.missed else "no higher"
            # the two nets' final errors are in the table above (and the verdict): not said again
            out.append(f"Trained from scratch, {h.deep} ends with {word} training error than {h.shallow} (the table "
                       "above).")
        else:
            out.append(f"No {h.deep} trained from scratch here to compare with.")
    r = f.residual_headline
    if r is not None:
        word = {True: "lower", False: "no lower"}[r.scratch_test < r.constructed_test]
        out.append(f"{r.shallow} → {r.deep}: the constructed {r.deep} has {r.shallow}'s test error, "
                   f"{pct(r.constructed_test)}; trained from scratch, {r.deep} ends {word}: {pct(r.scratch_test)}"
                   + (f" (training error {pct(r.scratch_train)} vs {pct(r.shallow_final_train)})"
                      if r.shallow_final_train is not None else "") + ".")
    exact = sum(c.exact for c in f.pairs)
    out.append(f"{exact} of {len(f.pairs)} constructions have exactly their shallow net's test error (eval mode; "
               f"largest logit difference over all {f.largest_logit_diff:.1e}).")
    if f.compared > 1:
        out.append(f"In {f.missed} of {f.compared} pairs with a deeper {f.family.series(False)} net trained from "
                   "scratch, that net trains worse than the shallow one it could have copied.")
    if f.plain_deviation is not None:
        b = f.pairs[0].batches
        lo, hi = f.plain_deviation
        span = pct(100 * lo) if lo == hi else f"{pct(100 * lo)} to {pct(100 * hi)}"
        text = (f"In training mode BN normalises by each batch's own statistics, so a plain identity block passes its "
                f"input only up to batch noise: on {b} training batches the constructed {f.family.plural(False)}' "
                f"logits deviate from their shallow nets' by {span} (relative)")
        if h is not None and not h.residual:
            text += (f"; {h.deep}'s training-mode error there is {pct(h.train_constructed)} against {h.shallow}'s "
                     f"{pct(h.train_shallow)}")
        out.append(text + ".")
    if f.residual_deviation is not None:
        out.append(f"For the {f.family.plural(True)} the deviation is at most {f.residual_deviation:.1e}: with the "
                   "last BN's weight and bias at 0, F(x) = 0 in both modes.")
    if f.family.paper:
        out.append('He et al. (§1): "There exists a solution by construction to the deeper model: the added layers '
                   'are identity mapping, and the other layers are copied from the learned shallower model."')
    return " ".join(out)


def constructed_paragraph(profile: pd.DataFrame, table: pd.DataFrame) -> str:
    return say_constructions(find_constructions(profile, table))


# ---- 2. does SGD keep it? ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class InitRun:
    net: str                   # "plain-56 (from plain-20)"
    source: str                # "plain-20"
    scratch: str               # "plain-56"
    runs: int
    start_test: float          # the constructed net before the first step, eval mode, on this run's test images
    source_test: float         # the source net on the same images
    vs_source: Comparison | None   # final training error against the source net's (both from metrics.csv)
    vs_scratch: Comparison | None  # against the scratch net of its depth
    final_test: float

    @property
    def kept(self) -> bool | None:
        """Ends no worse in training error than the net it started from."""
        return None if self.vs_source is None else self.vs_source.sign <= 0


def find_init_runs(starts: pd.DataFrame, table: pd.DataFrame) -> list[InitRun]:
    """`starts`: inspection.scan's one row per init.from run (start_* numbers); `table`: the per-net table."""
    found = []
    if starts.empty:
        return found
    for net, rows in starts.groupby("net", sort=False):
        own = table[table["net"] == net]
        if own.empty:
            continue
        own = own.iloc[0]
        fam = families.in_frame(table, own["family"])
        source = _nets_in(table, own["family"], int(own["init_depth"]), bool(own["residual"]), own.get("shortcut"))
        scratch = _nets_in(table, own["family"], int(own["depth"]), bool(own["residual"]), own.get("shortcut"))
        found.append(InitRun(
            str(net), fam.net(own["init_depth"], own["residual"], own.get("shortcut")),
            fam.net(own["depth"], own["residual"], own.get("shortcut")), len(rows),
            float(rows["start_test_err_deep"].mean()), float(rows["start_test_err_shallow"].mean()),
            comparison(own, source, "train_err") if source is not None else None,
            comparison(own, scratch, "train_err") if scratch is not None else None, float(own["test_err_mean"])))
    return sorted(found, key=lambda r: (r.net.startswith("ResNet"), r.net))


def say_init_runs(found: list[InitRun]) -> str:
    if not found:
        return ("No run here started from a constructed net. To make one, start a deeper run from a completed "
                "shallower one: `python -m experiments.run depth=56 residual=false \"init.from='RUN_DIR'\"`.")
    out = []
    for r in found:
        if r.kept is None:
            head = f"no {r.source} run here to compare with"
        elif r.kept:
            head = "SGD kept the solution it started from"
        elif r.vs_scratch is not None and r.vs_scratch.sign >= 0:
            head = f"SGD lost the solution it started from, down to where {r.scratch} from scratch ends"
        else:
            head = "SGD lost part of the solution it started from"
        text = (f"**{r.net}: {head}.** It starts at {pct(r.start_test)} test error, {r.source}'s on the same images "
                f"being {pct(r.source_test)}, and ends at {pct(r.final_test)} after training with its protocol")
        clauses = [say_comparison(c) for c in (r.vs_source, r.vs_scratch) if c is not None]
        out.append(text + ("; " + "; ".join(clauses) if clauses else "") + ".")
    return " ".join(out) + (" Runs started this way are their own nets: never averaged with the scratch runs of "
                            "their depth, and not in the paper's columns of Table 6.")


def init_paragraph(starts: pd.DataFrame, table: pd.DataFrame) -> str:
    return say_init_runs(find_init_runs(starts, table))


# ---- 3. how close to the identity each block is --------------------------------------------------------------------

@dataclass(frozen=True)
class NetRatios:
    net: str
    depth: int
    residual: bool
    change: float             # median over blocks of ||block(x) - skip(x)|| / ||skip(x)||
    branch: float | None      # median over blocks of ||F(x)|| / ||skip(x)|| (residual nets)
    blocks: int


@dataclass(frozen=True)
class RatioFinding:
    family: Family
    nets: tuple               # NetRatios, plain first, by depth
    pairs: tuple              # (depth, plain NetRatios, residual NetRatios) at each depth with both
    branch_trend: Trend | None  # the residual nets' median branch ratio over depth

    @property
    def closer(self) -> int:
        """Depths where the residual net's blocks are closer to the identity than the plain net's."""
        return sum(r.change < p.change for _, p, r in self.pairs)


def find_ratios(profile: pd.DataFrame) -> RatioFinding | None:
    """`profile`: inspection.per_block of block_ratios.csv (one row per net and block)."""
    if profile.empty:
        return None
    fam = families.in_frame(profile, profile["family"].iloc[0])
    nets = []
    for net, g in profile.groupby("net", sort=False):
        res = bool(g["residual"].iloc[0])
        nets.append(NetRatios(str(net), int(g["depth"].iloc[0]), res, float(g["change_ratio"].median()),
                              float(g["branch_ratio"].median()) if res else None, len(g)))
    nets.sort(key=lambda n: (n.residual, n.depth, n.net))
    plain, res = ({n.depth: n for n in nets if n.residual == r} for r in (False, True))
    pairs = tuple((d, plain[d], res[d]) for d in sorted(set(plain) & set(res)))
    resnets = [n for n in nets if n.residual]
    branch = trend([n.net for n in resnets], [n.branch for n in resnets]) if len(resnets) >= 2 else None
    return RatioFinding(fam, tuple(nets), pairs, branch)


def say_ratios(f: RatioFinding | None) -> str:
    if f is None:
        return "No block ratios (`block_ratios.csv`) to describe."
    res_name, plain_name = f.family.plural(True), f.family.plural(False)
    listing = ", ".join(f"{n.net} {_ratio(n.change)}" for n in f.nets)
    out = [f"Median over blocks of ||block(x) − x|| / ||x|| on the test images: {listing}."]
    if f.pairs:
        head = ("as expected" if f.closer == len(f.pairs) else "not as expected" if not f.closer else "partly")
        out.insert(0, f"**Blocks against the identity: {head}.**")
        out.append(f"{res_name}' blocks are closer to the identity than the {plain_name}' at {f.closer} of "
                   f"{len(f.pairs)} depth(s) with both.")
    branches = [n for n in f.nets if n.branch is not None]
    if branches:
        out.append("Median ||F(x)|| / ||x||, the residual branch against its input: "
                   + ", ".join(f"{n.net} {_ratio(n.branch)}" for n in branches)
                   + (f": it {f.branch_trend.direction.value}" if f.branch_trend and f.branch_trend.direction else "")
                   + ".")
    out.append("x is a block's input, or for a block that downsamples, option A's zero-padded subsampled input (what "
               "the block is compared with and what deleting it leaves).")
    if f.family.paper:
        out.append("He et al. (§4.2, Fig. 7) expect the residual functions to be \"generally closer to zero than the "
                   "non-residual functions\", and smaller in deeper ResNets.")
    return " ".join(out)


def ratios_paragraph(profile: pd.DataFrame) -> str:
    return say_ratios(find_ratios(profile))


# ---- 4. the lesion study -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class NetLesions:
    net: str
    depth: int
    residual: bool
    intact: float        # test error of the whole net
    median: float        # median over blocks of the test error with that block deleted
    worst: float
    worst_block: str     # its name ("stage2.0")
    harmless: int        # deletions that raise the error by less than HARMLESS_RISE points
    blocks: int

    @property
    def survives(self) -> bool:
        return self.median - self.intact < HARMLESS_RISE


@dataclass(frozen=True)
class LesionFinding:
    family: Family
    nets: tuple          # NetLesions, plain first, by depth
    pairs: tuple         # (depth, plain, residual) at each depth with both

    @property
    def as_veit(self) -> int:
        """Depths where the residual net survives single deletions and the plain net does not."""
        return sum(r.survives and not p.survives for _, p, r in self.pairs)


def find_lesions(profile: pd.DataFrame) -> LesionFinding | None:
    """`profile`: inspection.per_block of lesion.csv (one row per net and deleted block)."""
    if profile.empty:
        return None
    fam = families.in_frame(profile, profile["family"].iloc[0])
    nets = []
    for net, g in profile.groupby("net", sort=False):
        intact = float(g["intact_test_err"].mean())
        worst = g.loc[g["test_err"].idxmax()]
        nets.append(NetLesions(str(net), int(g["depth"].iloc[0]), bool(g["residual"].iloc[0]), intact,
                               float(g["test_err"].median()), float(worst["test_err"]), str(worst["name"]),
                               int((g["test_err"] - intact < HARMLESS_RISE).sum()), len(g)))
    nets.sort(key=lambda n: (n.residual, n.depth, n.net))
    plain, res = ({n.depth: n for n in nets if n.residual == r} for r in (False, True))
    return LesionFinding(fam, tuple(nets), tuple((d, plain[d], res[d]) for d in sorted(set(plain) & set(res))))


def say_lesions(f: LesionFinding | None) -> str:
    if f is None:
        return "No lesion study (`lesion.csv`) to describe."
    out = []
    if f.pairs:
        head = ("as Veit et al. found" if f.as_veit == len(f.pairs) else "not as Veit et al. found" if not f.as_veit
                else "partly as Veit et al. found")
        out.append(f"**Deleting one block at test time: {head}.**")
    for n in f.nets:
        out.append(f"{n.net} (intact {pct(n.intact)}): median {pct(n.median)} with one block deleted "
                   f"({n.median - n.intact:+.2f} points), {n.harmless} of {n.blocks} deletions cost less than "
                   f"{HARMLESS_RISE:g} points, the worst is {n.worst_block} at {pct(n.worst)}.")
    if f.pairs:
        out.append(f"At {f.as_veit} of {len(f.pairs)} depth(s) with both, the {f.family.plural(True)} survive single "
                   f"deletions (median rise under {HARMLESS_RISE:g} points) and the {f.family.plural(False)} do not.")
    out.append("A deleted block is replaced by its skip: the identity, or option A's zero-padded subsampled identity "
               "for a block that downsamples (a plain net's included); an option-B block by its projection.")
    if f.family.paper:
        out.append("Veit et al. (NeurIPS 2016) report that deleting single blocks of a trained ResNet at test time "
                   "barely changes its error (the downsampling ones excepted), while deleting a layer of a plain "
                   "(VGG-style) net drops it to chance.")
    return " ".join(out)


def lesions_paragraph(profile: pd.DataFrame) -> str:
    return say_lesions(find_lesions(profile))


def paper_first(names) -> list:
    return sorted(dict.fromkeys(names), key=lambda f: f != PAPER_FAMILY)

