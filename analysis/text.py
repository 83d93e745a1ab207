"""Sentences generated from the numbers, so the report says what the data says (even if that is
the opposite of the paper). Every function takes the per-net table from `tables.table6`, except the
probe paragraphs at the end, which take the per-net tables of `probes_figures`.
"""
from __future__ import annotations

import pandas as pd

from runformat import PAPER_FAMILY

from . import families
from .tables import comparable_with_paper, load_peers

EXPECTED_DEPTHS = (20, 32, 44, 56)  # Fig. 6 left panel and Table 6's first rows
PAPER_ITERATIONS = 64_000


def pct(value) -> str:
    return f"{value:.2f}%"


def _nets(table: pd.DataFrame, residual: bool, family: str = PAPER_FAMILY) -> pd.DataFrame:
    rows = table[(table["family"] == family) & (table["residual"] == residual)]
    if family == PAPER_FAMILY:
        rows = rows[rows.apply(comparable_with_paper, axis=1)] if len(rows) else rows
    return rows.sort_values("depth")


def _ends(rows: pd.DataFrame):
    """Shallowest and deepest net to compare, preferring the paper's 20 and 56 when present."""
    if len(rows) < 2:
        return None
    usual = rows[rows["depth"].isin(EXPECTED_DEPTHS)]
    pick = usual if len(usual) >= 2 else rows
    return pick.iloc[0], pick.iloc[-1]


def compare(deep, shallow, column: str, what: str) -> tuple[int, str]:
    """-> (sign of deep - shallow, 'plain-56 ends with higher training error than plain-20: a vs b')."""
    a, b = float(deep[f"{column}_mean"]), float(shallow[f"{column}_mean"])
    sign = int(a > b) - int(a < b)
    word = {1: "higher", -1: "lower", 0: "the same"}[sign]
    text = (f"{deep['net']} ends with {word} {what} {'than' if sign else 'as'} "
            f"{shallow['net']}: {pct(a)} vs {pct(b)}")
    spread = max(deep[f"{column}_std"], shallow[f"{column}_std"])
    if sign and not pd.isna(spread) and abs(a - b) <= spread:
        text += " (a difference within the seed-to-seed std)"
    return sign, text


def _caveats(rows: pd.DataFrame) -> str:
    notes = []
    if rows["from_unfinished"].any():
        notes.append("some of these numbers come from unfinished runs")
    last = rows["final_iteration"].max()
    if not pd.isna(last) and last < 0.9 * PAPER_ITERATIONS:
        notes.append(f"runs stop at {int(last):,} iterations where the paper trains for "
                     f"{PAPER_ITERATIONS:,}, so this is provisional")
    return (" Caveat: " + "; ".join(notes) + ".") if notes else ""


def family_verdict(table: pd.DataFrame, family: str) -> str:
    """The same question for another family: does its plain net degrade with depth, and its residual one?"""
    name = families.in_frame(table, family).title
    plain, res = _ends(_nets(table, False, family)), _ends(_nets(table, True, family))
    if plain is None:
        return f"**{name}: cannot judge**: it needs plain nets at two depths."
    sign, plain_text = compare(plain[1], plain[0], "train_err", "training error")
    clauses = [plain_text]
    if res is not None:
        clauses.append(compare(res[1], res[0], "train_err", "training error")[1])
    head = "the deeper plain net trains worse (degradation)" if sign > 0 else "no degradation of the plain nets"
    return f"**{name}: {head}.** " + "; ".join(clauses) + "." + _caveats(pd.concat([_nets(table, False, family),
                                                                                    _nets(table, True, family)]))


def verdict(table: pd.DataFrame) -> str:
    plain, res = _nets(table, False), _nets(table, True)
    pair = _ends(plain)
    if pair is None:
        have = ", ".join(plain["net"]) or "none"
        return ("**Verdict: cannot judge the degradation problem yet**: it needs plain nets at two "
                f"depths (plain nets with results: {have}).")
    shallow, deep = pair
    train_sign, train_text = compare(deep, shallow, "train_err", "training error")
    test_sign, test_text = compare(deep, shallow, "test_err", "test error")
    clauses, res_ok = [train_text, test_text], None
    res_pair = _ends(res)
    if res_pair is not None:
        sign, text = compare(res_pair[1], res_pair[0], "test_err", "test error")
        clauses.append(text)
        res_ok = sign < 0
    same = res[res["depth"] == deep["depth"]]
    if len(same):
        sign, text = compare(same.iloc[0], deep, "train_err", "training error")
        clauses.append(text)
        res_ok = (res_ok is not False) and sign < 0
    if train_sign > 0 and test_sign > 0 and res_ok is not False:
        head = "degradation problem reproduced" + ("" if res_ok else " for plain nets (no ResNets to compare)")
    elif train_sign > 0 and test_sign > 0:
        head = "partly reproduced: plain nets degrade with depth, but the ResNets do not behave as in the paper"
    elif train_sign > 0:
        head = "partly reproduced: the deeper plain net trains worse, but does not test worse"
    else:
        head = "not reproduced: the deeper plain net does not have higher training error"
    used = pd.concat([plain, res])
    return f"**Verdict: {head}.** " + "; ".join(clauses) + "." + _caveats(used)


def fig1_paragraph(table: pd.DataFrame, frame: pd.DataFrame) -> str:
    pair = _ends(_nets(table, False))
    shallow, deep = pair
    parts = [compare(deep, shallow, c, w)[1] for c, w in
             [("train_err", "training error"), ("test_err", "test error")]]
    above = _fraction_above(frame, deep["net"], shallow["net"], "train_err")
    text = "At the last epoch, " + "; ".join(parts) + "."
    if above is not None:
        text += (f" Over training, {deep['net']}'s training error is above {shallow['net']}'s at "
                 f"{above:.0%} of the logged epochs.")
    return text + (" In the paper's Figure 1 the 56-layer plain net has higher training and test "
                   "error than the 20-layer one throughout training.")


def _fraction_above(frame: pd.DataFrame, deep: str, shallow: str, column: str):
    rows = frame[frame["finished"].astype(bool)] if frame["finished"].any() else frame
    wide = rows[rows["net"].isin([deep, shallow])].pivot_table(
        index="iteration", columns="net", values=column, aggfunc="mean").dropna()
    if wide.empty or deep not in wide or shallow not in wide:
        return None
    return float((wide[deep] > wide[shallow]).mean())


def _trend(rows: pd.DataFrame, column: str) -> str:
    values = list(rows[f"{column}_mean"])
    steps = [b - a for a, b in zip(values, values[1:])]
    listed = ", ".join(f"{r['net']} {pct(r[f'{column}_mean'])}" for _, r in rows.iterrows())
    if not steps:
        return listed
    if all(s > 0 for s in steps):
        how = "rises with every step in depth"
    elif all(s < 0 for s in steps):
        how = "falls with every step in depth"
    else:
        how = "is not monotonic in depth"
    return f"{listed}: it {how}"


def fig6_paragraph(table: pd.DataFrame, family: str = PAPER_FAMILY) -> str:
    parts = []
    for residual in (False, True):
        rows = _nets(table, residual, family)
        if len(rows):
            parts.append(f"{families.in_frame(table, family).plural(residual)}, final test error: "
                         f"{_trend(rows, 'test_err')}; final training error: "
                         f"{_trend(rows, 'train_err')}.")
    text = " ".join(p[0].upper() + p[1:] for p in parts)
    if family == PAPER_FAMILY:
        text += (" In the paper (Fig. 6) plain nets get worse with depth (test error read off as "
                 "about 9-9.5% for plain-20 to 13-13.5% for plain-56), ResNets better "
                 "(Table 6: 8.75% for ResNet-20 to 6.97% for ResNet-56).")
    return text


def degradation_paragraph(table: pd.DataFrame, family: str = PAPER_FAMILY) -> str:
    plain, res = _nets(table, False, family), _nets(table, True, family)
    parts = []
    for rows, residual in [(plain, False), (res, True)]:
        pair = _ends(rows)
        if pair is not None:
            a, b = pair
            delta = b["train_err_mean"] - a["train_err_mean"]
            parts.append(f"{families.in_frame(table, family).plural(residual)}: final training error goes from "
                         f"{pct(a['train_err_mean'])} at depth {a['depth']} to "
                         f"{pct(b['train_err_mean'])} at depth {b['depth']} ({delta:+.2f} points)")
    both = sorted(set(plain["depth"]) & set(res["depth"]))
    if both:
        d = both[-1]
        p, r = plain[plain["depth"] == d].iloc[0], res[res["depth"] == d].iloc[0]
        gap = p["test_err_mean"] - r["test_err_mean"]
        parts.append(f"at depth {d} the residual net's final test error is {abs(gap):.2f} points "
                     f"{'below' if gap > 0 else 'above'} the plain net's "
                     f"({pct(r['test_err_mean'])} vs {pct(p['test_err_mean'])})")
    if not parts:
        return "Too few nets to compare across depth."
    text = "; ".join(parts) + "."
    return text[0].upper() + text[1:]


def table_paragraph(table: pd.DataFrame) -> str:
    ours = table[table.apply(comparable_with_paper, axis=1)] if len(table) else table
    if ours.empty:
        return "No net of the paper's family: nothing to compare with Table 6."
    res = ours[ours["residual"] & ours["paper_test_err"].notna()]
    parts = []
    if len(res):
        parts.append("Against the paper's Table 6: " + ", ".join(
            f"{r['net']} {pct(r['test_err_mean'])} vs {pct(r['paper_test_err'])} "
            f"({r['test_err_mean'] - r['paper_test_err']:+.2f})" for _, r in res.iterrows()) + ".")
        peers = load_peers()
        deepest = res.iloc[-1]["net"]
        theirs = peers[(peers["kind"] == "reproduction") & (peers["net"] == deepest)]["test_err"]
        if len(theirs):
            parts.append(f"Public reproductions report {pct(theirs.min())} to {pct(theirs.max())} "
                         f"for {deepest}.")
    known = ours[ours["params"].notna() & ours["paper_params"].notna()]
    wrong = known[known["params"] != known["paper_params"]]
    if len(known) and wrong.empty:
        parts.append(f"Parameter counts equal the paper's architecture for all {len(known)} nets.")
    elif len(wrong):
        parts.append("Parameter counts differ from the paper's architecture for: " + ", ".join(
            f"{r['net']} ({int(r['params']):,} vs {int(r['paper_params']):,})"
            for _, r in wrong.iterrows()) + ".")
    if (~ours["residual"]).any():
        parts.append("Plain nets have no paper number: the paper shows them only as curves.")
    return " ".join(parts)


def missing_cells(table: pd.DataFrame, depths=EXPECTED_DEPTHS) -> list[str]:
    have = set(_nets(table, False)["depth"]), set(_nets(table, True)["depth"])
    return ([families.PAPER.net(d, False) for d in depths if d not in have[0]]
            + [families.PAPER.net(d, True) for d in depths if d not in have[1]])


# ---- probes: Figure 7 and gradient norms (tables from probes_figures) ----------------------------

VANISHING_RATIO = 0.01  # first layers' gradient two orders of magnitude below the last layers'


def times(ratio: float) -> str:
    """0.82x, 1,343x, 0.001x: enough digits to read an order of magnitude."""
    if pd.isna(ratio):
        return "n/a"
    if ratio >= 10:
        return f"{ratio:,.0f}x"
    return f"{ratio:.2f}x" if ratio >= 0.1 else f"{ratio:.2g}x"


def _epochs_text(first: int, last: int) -> str:
    return f"epoch {first}" if first == last else f"epochs {first}-{last}"


def fig7_paragraph(profile: pd.DataFrame) -> str:
    """`profile`: probes_figures.final_profile (std per net and layer at the last epoch)."""
    if profile.empty:
        return "No layer responses to describe."
    family = profile["family"].iloc[0]
    fam = families.in_frame(profile, family)
    nets = profile.groupby("net").agg(depth=("depth", "first"), residual=("residual", "first"),
                                      median=("value", "median"), unfinished=("unfinished", "any"))
    nets = nets.sort_values(["residual", "depth"])
    epochs = profile["epoch"].astype(int)
    listing = ", ".join(f"{net} {r['median']:.2f}" + (" (unfinished)" if r["unfinished"] else "")
                        for net, r in nets.iterrows())
    out = [f"At the last epoch ({_epochs_text(epochs.min(), epochs.max())}), median std of the 3x3 "
           f"layer responses: {listing}."]
    plain, res = nets[~nets["residual"]], nets[nets["residual"]]
    common = sorted(set(plain["depth"]) & set(res["depth"]))
    smaller = []
    for d in common:
        p_net, r_net = plain.index[plain["depth"] == d][0], res.index[res["depth"] == d][0]
        p_med, r_med = plain.loc[p_net, "median"], res.loc[r_net, "median"]
        p_val = profile.loc[profile["net"] == p_net].sort_values("layer")["value"].to_numpy()
        r_val = profile.loc[profile["net"] == r_net].sort_values("layer")["value"].to_numpy()
        layers = ""
        if len(p_val) == len(r_val):
            layers = f", smaller at {int((r_val < p_val).sum())} of {len(r_val)} layers"
        smaller.append((r_med < p_med, f"{r_net} {r_med:.2f} vs {p_net} {p_med:.2f}{layers}"))
    res_name, plain_name = fam.plural(True), fam.plural(False)
    if smaller:
        n = sum(s for s, _ in smaller)
        out.append(f"{res_name}' median response is smaller than the {plain_name}' at {n} of "
                   f"{len(smaller)} depth(s) with both: " + "; ".join(t for _, t in smaller) + ".")
    deeper = None
    if len(res) >= 2:
        medians = list(res["median"])
        deeper = medians[-1] < medians[0]
        steps = [b - a for a, b in zip(medians, medians[1:])]
        how = ("falls with every step in depth" if all(s < 0 for s in steps) else
               "rises with every step in depth" if all(s > 0 for s in steps) else "is not monotonic in depth")
        out.append(f"Among {res_name}, the median {how} ({res.index[0]} {medians[0]:.2f}, "
                   f"{res.index[-1]} {medians[-1]:.2f}).")
    if not smaller:
        head = f"{plain_name} and {res_name} cannot be compared (no depth with both)"
    else:
        n = sum(s for s, _ in smaller)
        all_smaller = True if n == len(smaller) else False if n == 0 else None
        if all_smaller is True and deeper is not False:
            head = "as in the paper"
        elif all_smaller is False and deeper is not True:
            head = "not as in the paper"
        else:
            head = "partly as in the paper (" + (
                f"{res_name} respond less than {plain_name}, but the deepest of them does not "
                "respond less than the shallowest" if all_smaller else
                f"{res_name} respond less than {plain_name} at only some depths" if all_smaller is None
                else f"{res_name} do not respond less than {plain_name}") + ")"
    text = f"**Layer responses: {head}.** " + " ".join(out)
    if family == PAPER_FAMILY:
        text += (' The paper (Fig. 7) finds that "ResNets have generally smaller responses than '
                 'their plain counterparts" and that "the deeper ResNet has smaller magnitudes of '
                 'responses" (ResNet-20, 56 and 110).')
    return text


def gradients_paragraph(ratios: pd.DataFrame, input_ratios: pd.DataFrame | None = None) -> str:
    """`ratios`: probes_figures.gradient_ratios (first/last layers' weight-gradient norm per net);
    `input_ratios`: the same for the gradients at block inputs."""
    if ratios.empty:
        return "No weight-gradient norms to compare."
    family = ratios["family"].iloc[0]
    plain, res = ratios[~ratios["residual"]], ratios[ratios["residual"]]
    if plain.empty:
        return ("**Gradients: cannot judge vanishing in plain nets**: no plain net has gradient "
                "norms. " + _ratio_listing(ratios) + ".")
    usual = plain[plain["depth"] == 56] if family == PAPER_FAMILY else plain.iloc[0:0]
    p = (usual if len(usual) else plain).iloc[-1]  # plain-56 as in the paper, else the deepest
    ends = [("early", int(p["early_epoch"]), p["early_ratio"]),
            ("late", int(p["late_epoch"]), p["late_ratio"])]
    if ends[0][1] == ends[1][1]:
        ends = ends[1:]  # a single logged epoch
    vanishing = [e for _, e, r in ends if r < VANISHING_RATIO]
    if not vanishing:
        head = f"no vanishing gradients in {p['net']}"
    elif len(vanishing) == len(ends):
        head = f"vanishing gradients in {p['net']}"
    else:
        head = f"vanishing gradients in {p['net']} at epoch {vanishing[0]} only"
    k = int(p["edge"])
    at = " and ".join(f"{times(r)} at epoch {e}" for _, e, r in ends)
    out = [f"**Gradients: {head}.** Mean weight-gradient norm of its first {k} 3x3 layers over that "
           f"of its last {k}: {at} (vanishing would be below {times(VANISHING_RATIO)}, two orders "
           "of magnitude)."]
    if family == PAPER_FAMILY and usual.empty:
        out.append(f"(plain-56, the paper's case, has no gradient norms: {p['net']} is the deepest "
                   "plain net with them.)")
    larger = [(e, r) for _, e, r in ends if r > 1 / VANISHING_RATIO]
    if larger:
        out.append(f"At epoch {larger[0][0]} its first layers get {times(larger[0][1])} the gradient "
                   "norm of its last: the opposite of vanishing.")
    twin = res[res["depth"] == p["depth"]]
    if len(twin):
        r = twin.iloc[0]
        out.append(f"{r['net']}: {times(r['early_ratio'])} at epoch {int(r['early_epoch'])} and "
                   f"{times(r['late_ratio'])} at epoch {int(r['late_epoch'])}"
                   + (f"; {p['net']}'s ratio at the last epoch is {times(p['late_ratio'] / r['late_ratio'])} "
                      f"{r['net']}'s." if r["late_ratio"] > 0 else "."))
    others = ratios[~ratios["net"].isin([p["net"], *twin["net"]])]
    if len(others):
        out.append("Other nets (first/last, first and last epoch): " + _ratio_listing(others) + ".")
    if input_ratios is not None and len(input_ratios):
        q = input_ratios[input_ratios["net"] == p["net"]]
        if len(q):
            q = q.iloc[0]
            out.append(f"Gradient norm at the inputs of {p['net']}'s first {int(q['edge'])} blocks over "
                       f"that at its last {int(q['edge'])}: {times(q['early_ratio'])} at epoch "
                       f"{int(q['early_epoch'])}, {times(q['late_ratio'])} at epoch {int(q['late_epoch'])}.")
    if family == PAPER_FAMILY:
        out.append("Norms are of whole tensors: a last-stage 3x3 weight has 16 times as many entries as "
                   "a first-stage one (64x64 vs 16x16 filters), so equal per-entry gradients would "
                   "already read about 0.25x.")
        claim = ('with BN "the backward propagated gradients exhibit healthy norms", so the '
                 'degradation "is unlikely to be caused by vanishing gradients"')
        if vanishing:
            out.append(f"This disagrees with the paper (§4.1): {claim}.")
        elif larger:
            out.append(f"No vanishing, as in the paper (§4.1: {claim}); but at epoch {larger[0][0]} "
                       f"{p['net']}'s norms are far from even across depth, the other way.")
        else:
            out.append(f"This agrees with the paper (§4.1): {claim}.")
    if ratios["unfinished"].any():
        out.append("Caveat: some nets have only unfinished runs; their last epoch is the last logged.")
    return " ".join(out)


def _ratio_listing(ratios: pd.DataFrame) -> str:
    return "; ".join(f"{r['net']} {times(r['early_ratio'])} at epoch {int(r['early_epoch'])}, "
                     f"{times(r['late_ratio'])} at epoch {int(r['late_epoch'])}"
                     for _, r in ratios.iterrows())
