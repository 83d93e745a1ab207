"""Figure 7 (layer responses) and gradient norms, from the probe tables of probes_figures."""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import pandas as pd

from . import families
from .families import Family
from .text import Trend, epochs_text, times, trend

VANISHING_RATIO = 0.01  # first layers' gradient two orders of magnitude below the last layers'


@dataclass(frozen=True)
class NetResponse:
    net: str
    depth: int
    residual: bool
    median: float      # median over layers of the response std at the last epoch
    unfinished: bool


@dataclass(frozen=True)
class ResponsePair:
    """A plain and a residual net of one depth."""
    depth: int
    residual_net: str
    plain_net: str
    residual_median: float
    plain_median: float
    smaller_layers: int | None  # layers where the residual net responds less (None: layer counts differ)
    layers: int | None

    @property
    def smaller(self) -> bool:
        return self.residual_median < self.plain_median


class Agreement(str, Enum):
    agrees = "agrees"
    disagrees = "disagrees"
    partly = "partly"
    cannot_compare = "cannot_compare"  # no depth with both a plain and a residual net


@dataclass(frozen=True)
class ResponseFinding:
    """Fig. 7: "ResNets have generally smaller responses than their plain counterparts" and "the deeper
    ResNet has smaller magnitudes of responses"; do our nets?"""
    family: Family
    epochs: tuple          # (first, last) of the last epochs the runs reached
    nets: tuple            # NetResponse, plain nets first, by depth
    pairs: tuple           # ResponsePair at each depth with both
    residual_trend: Trend | None   # the ResNets' medians over depth
    deepest_smaller: bool | None   # the deepest ResNet's median below the shallowest's
    agreement: Agreement

    @property
    def smaller_at(self) -> int:
        return sum(p.smaller for p in self.pairs)


def find_responses(profile: pd.DataFrame) -> ResponseFinding | None:
    """`profile`: probes_figures.final_profile (std per net and layer at the last epoch)."""
    if profile.empty:
        return None
    fam = families.in_frame(profile, profile["family"].iloc[0])
    nets = profile.groupby("net").agg(depth=("depth", "first"), residual=("residual", "first"),
                                      median=("value", "median"), unfinished=("unfinished", "any"))
    nets = nets.sort_values(["residual", "depth"])
    epochs = profile["epoch"].astype(int)
    plain, res = nets[~nets["residual"]], nets[nets["residual"]]
    pairs = []
    for d in sorted(set(plain["depth"]) & set(res["depth"])):
        p_net, r_net = plain.index[plain["depth"] == d][0], res.index[res["depth"] == d][0]
        p_val = profile.loc[profile["net"] == p_net].sort_values("layer")["value"].to_numpy()
        r_val = profile.loc[profile["net"] == r_net].sort_values("layer")["value"].to_numpy()
        same = len(p_val) == len(r_val)
        pairs.append(ResponsePair(int(d), r_net, p_net, float(res.loc[r_net, "median"]),
                                  float(plain.loc[p_net, "median"]),
                                  int((r_val < p_val).sum()) if same else None, len(r_val) if same else None))
    res_trend = trend(res.index, res["median"]) if len(res) >= 2 else None
    deepest_smaller = res_trend.values[-1] < res_trend.values[0] if res_trend else None
    smaller = sum(p.smaller for p in pairs)
    all_smaller = None if not pairs else True if smaller == len(pairs) else False if smaller == 0 else None
    if not pairs:
        agreement = Agreement.cannot_compare
    elif all_smaller is True and deepest_smaller is not False:
        agreement = Agreement.agrees
    elif all_smaller is False and deepest_smaller is not True:
        agreement = Agreement.disagrees
    else:
        agreement = Agreement.partly
    found = tuple(NetResponse(net, int(r["depth"]), bool(r["residual"]), float(r["median"]), bool(r["unfinished"]))
                  for net, r in nets.iterrows())
    return ResponseFinding(fam, (int(epochs.min()), int(epochs.max())), found, tuple(pairs), res_trend,
                           deepest_smaller, agreement)


def _responses_head(f: ResponseFinding) -> str:
    res_name, plain_name = f.family.plural(True), f.family.plural(False)
    if f.agreement is Agreement.cannot_compare:
        return f"{plain_name} and {res_name} cannot be compared (no depth with both)"
    if f.agreement is Agreement.agrees:
        return "as in the paper"
    if f.agreement is Agreement.disagrees:
        return "not as in the paper"
    if f.smaller_at == len(f.pairs):
        why = (f"{res_name} respond less than {plain_name}, but the deepest of them does not respond less "
               "than the shallowest")
    elif f.smaller_at:
        why = f"{res_name} respond less than {plain_name} at only some depths"
    else:
        why = f"{res_name} do not respond less than {plain_name}"
    return f"partly as in the paper ({why})"


def say_responses(f: ResponseFinding | None) -> str:
    if f is None:
        return "No layer responses to describe."
    res_name, plain_name = f.family.plural(True), f.family.plural(False)
    listing = ", ".join(f"{n.net} {n.median:.2f}" + (" (unfinished)" if n.unfinished else "") for n in f.nets)
    out = [f"At the last epoch ({epochs_text(*f.epochs)}), median std of the 3x3 layer responses: {listing}."]
    if f.pairs:
        pairs = "; ".join(f"{p.residual_net} {p.residual_median:.2f} vs {p.plain_net} {p.plain_median:.2f}"
                          + (f", smaller at {p.smaller_layers} of {p.layers} layers" if p.layers is not None else "")
                          for p in f.pairs)
        out.append(f"{res_name}' median response is smaller than the {plain_name}' at {f.smaller_at} of "
                   f"{len(f.pairs)} depth(s) with both: {pairs}.")
    if f.residual_trend is not None:
        t = f.residual_trend
        out.append(f"Among {res_name}, the median {t.direction.value} ({t.nets[0]} {t.values[0]:.2f}, "
                   f"{t.nets[-1]} {t.values[-1]:.2f}).")
    text = f"**Layer responses: {_responses_head(f)}.** " + " ".join(out)
    if f.family.paper:
        text += (' The paper (Fig. 7) finds that "ResNets have generally smaller responses than '
                 'their plain counterparts" and that "the deeper ResNet has smaller magnitudes of '
                 'responses" (ResNet-20, 56 and 110).')
    return text


def fig7_paragraph(profile: pd.DataFrame) -> str:
    return say_responses(find_responses(profile))


# ---- probes: gradient norms -----------------------------------------------------------------------

@dataclass(frozen=True)
class RatioAt:
    epoch: int
    ratio: float  # mean gradient norm of the first `edge` layers over that of the last `edge`


@dataclass(frozen=True)
class NetRatios:
    net: str
    edge: int
    early: RatioAt  # at each run's first logged epoch
    late: RatioAt   # at its last


def _net_ratios(r) -> NetRatios:
    return NetRatios(str(r["net"]), int(r["edge"]), RatioAt(int(r["early_epoch"]), float(r["early_ratio"])),
                     RatioAt(int(r["late_epoch"]), float(r["late_ratio"])))


@dataclass(frozen=True)
class GradientFinding:
    """Does the plain net's gradient vanish toward its first layers (§4.1 says it does not, with BN)?"""
    family: Family
    judged: NetRatios | None      # plain-56 in the paper's family, else the deepest plain net; None: none
    ends: tuple = ()              # its RatioAt early and late (one when a single epoch was logged)
    vanishing: tuple = ()         # epochs where its ratio is below VANISHING_RATIO
    opposite: RatioAt | None = None  # the first end where its first layers get 1/VANISHING_RATIO times more
    paper_case_missing: bool = False  # the paper's family without plain-56 gradient norms
    twin: NetRatios | None = None     # the residual net of the same depth
    others: tuple = ()                # every other net's NetRatios
    inputs: NetRatios | None = None   # the judged net's ratio at block inputs
    unfinished: bool = False          # some nets have only unfinished runs

    @property
    def all_vanishing(self) -> bool:
        return bool(self.vanishing) and len(self.vanishing) == len(self.ends)


def find_gradients(ratios: pd.DataFrame, input_ratios: pd.DataFrame | None = None) -> GradientFinding | None:
    """`ratios`: probes_figures.gradient_ratios (first/last layers' weight-gradient norm per net);
    `input_ratios`: the same for the gradients at block inputs."""
    if ratios.empty:
        return None
    fam = families.in_frame(ratios, ratios["family"].iloc[0])
    plain, res = ratios[~ratios["residual"]], ratios[ratios["residual"]]
    if plain.empty:
        return GradientFinding(fam, None, others=tuple(map(_net_ratios, (r for _, r in ratios.iterrows()))))
    usual = plain[plain["depth"] == 56] if fam.paper else plain.iloc[0:0]
    p = (usual if len(usual) else plain).iloc[-1]  # plain-56 as in the paper, else the deepest
    judged = _net_ratios(p)
    ends = (judged.early, judged.late) if judged.early.epoch != judged.late.epoch else (judged.late,)
    vanishing = tuple(e.epoch for e in ends if e.ratio < VANISHING_RATIO)
    opposite = next((e for e in ends if e.ratio > 1 / VANISHING_RATIO), None)
    twin = res[res["depth"] == p["depth"]]
    others = ratios[~ratios["net"].isin([p["net"], *twin["net"]])]
    inputs = None
    if input_ratios is not None and len(input_ratios):
        q = input_ratios[input_ratios["net"] == p["net"]]
        inputs = _net_ratios(q.iloc[0]) if len(q) else None
    return GradientFinding(fam, judged, ends, vanishing, opposite, fam.paper and usual.empty,
                           _net_ratios(twin.iloc[0]) if len(twin) else None,
                           tuple(_net_ratios(r) for _, r in others.iterrows()), inputs,
                           bool(ratios["unfinished"].any()))


def _ratio_listing(nets) -> str:
    return "; ".join(f"{n.net} {times(n.early.ratio)} at epoch {n.early.epoch}, "
                     f"{times(n.late.ratio)} at epoch {n.late.epoch}" for n in nets)


def say_gradients(f: GradientFinding | None) -> str:
    if f is None:
        return "No weight-gradient norms to compare."
    if f.judged is None:
        return ("**Gradients: cannot judge vanishing in plain nets**: no plain net has gradient "
                "norms. " + _ratio_listing(f.others) + ".")
    p = f.judged
    if not f.vanishing:
        head = f"no vanishing gradients in {p.net}"
    elif f.all_vanishing:
        head = f"vanishing gradients in {p.net}"
    else:
        head = f"vanishing gradients in {p.net} at epoch {f.vanishing[0]} only"
    at = " and ".join(f"{times(e.ratio)} at epoch {e.epoch}" for e in f.ends)
    out = [f"**Gradients: {head}.** Mean weight-gradient norm of its first {p.edge} 3x3 layers over that "
           f"of its last {p.edge}: {at} (vanishing would be below {times(VANISHING_RATIO)}, two orders "
           "of magnitude)."]
    if f.paper_case_missing:
        out.append(f"(plain-56, the paper's case, has no gradient norms: {p.net} is the deepest "
                   "plain net with them.)")
    if f.opposite is not None:
        out.append(f"At epoch {f.opposite.epoch} its first layers get {times(f.opposite.ratio)} the gradient "
                   "norm of its last: the opposite of vanishing.")
    if f.twin is not None:
        r = f.twin
        out.append(f"{r.net}: {times(r.early.ratio)} at epoch {r.early.epoch} and "
                   f"{times(r.late.ratio)} at epoch {r.late.epoch}"
                   + (f"; {p.net}'s ratio at the last epoch is {times(p.late.ratio / r.late.ratio)} "
                      f"{r.net}'s." if r.late.ratio > 0 else "."))
    if f.others:
        out.append("Other nets (first/last, first and last epoch): " + _ratio_listing(f.others) + ".")
    if f.inputs is not None:
        q = f.inputs
        out.append(f"Gradient norm at the inputs of {p.net}'s first {q.edge} blocks over that at its last "
                   f"{q.edge}: {times(q.early.ratio)} at epoch {q.early.epoch}, {times(q.late.ratio)} at "
                   f"epoch {q.late.epoch}.")
    if f.family.paper:
        out.append("Norms are of whole tensors: a last-stage 3x3 weight has 16 times as many entries as "
                   "a first-stage one (64x64 vs 16x16 filters), so equal per-entry gradients would "
                   "already read about 0.25x.")
        claim = ('with BN "the backward propagated gradients exhibit healthy norms", so the '
                 'degradation "is unlikely to be caused by vanishing gradients"')
        if f.vanishing:
            out.append(f"This disagrees with the paper (§4.1): {claim}.")
        elif f.opposite is not None:
            out.append(f"No vanishing, as in the paper (§4.1: {claim}); but at epoch {f.opposite.epoch} "
                       f"{p.net}'s norms are far from even across depth, the other way.")
        else:
            out.append(f"This agrees with the paper (§4.1): {claim}.")
    if f.unfinished:
        out.append("Caveat: some nets have only unfinished runs; their last epoch is the last logged.")
    return " ".join(out)


def gradients_paragraph(ratios: pd.DataFrame, input_ratios: pd.DataFrame | None = None) -> str:
    return say_gradients(find_gradients(ratios, input_ratios))
