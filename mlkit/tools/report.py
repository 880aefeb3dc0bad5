"""The README's results tables, computed from the shipped checkpoints.

``python -m mlkit table sinusoid`` and ``... table glyphs`` print them in markdown; every
number comes from ``meta_test`` on fresh tasks, with its 95% confidence interval, and
the protocol under each table is written from the checkpoints and settings used.
"""
from __future__ import annotations

from ..checkpoints import load_shipped
from ..episodes import evaluation_family
from ..evaluate import image_test_steps, meta_test
from ..runtime import keep_freed_memory, torch_threads
from ..tasks import SinusoidFamily

SINUSOID_ROWS = {  # checkpoint -> what it is
    "sinusoid_maml_paper": "MAML as in the paper: 1 inner step",
    "sinusoid_maml": "MAML, 2 inner steps + multi-step loss",
    "sinusoid_fomaml": "first-order MAML, 2 steps + multi-step loss",
    "sinusoid_reptile": "Reptile, 5 inner steps",
    "sinusoid_anil": "ANIL, 2 steps + multi-step loss",
    "sinusoid_metasgd": "Meta-SGD, 2 steps + multi-step loss",
    "sinusoid_pretrain": "pretrained on all tasks (no inner loop)",
}
# Finn et al. 2017 give the sinusoid numbers only as curves (figure 3, "K = 5" panel of
# MSE against gradient steps, and the project page); the values below were noted from that
# figure (after 1 / 5 / 10 steps), so they carry the reading error of a plot.
PAPER_5_SHOT = {"sinusoid_maml_paper": (0.67, 0.38, 0.35), "sinusoid_pretrain": (2.41, 2.23, 2.19)}
PUBLISHED_OMNIGLOT = {  # accuracy % (5w1s, 5w5s, 20w1s, 20w5s) reported on real Omniglot
    "MAML (Finn et al. 2017, table 1)": (98.7, 99.9, 95.8, 98.9),
    "ProtoNets (Snell et al. 2017, table 1)": (98.8, 99.7, 96.0, 98.9),
}


def cell(v: dict, scale: float = 1.0, digits: int = 2) -> str:
    """mean +- CI; with the median and the share of diverged tasks where any diverged."""
    text = f"{scale * v['mean']:.{digits}f} ± {scale * v['ci95']:.{digits}f}"
    if v.get("diverged"):
        text += f" (median {scale * v['median']:.{digits}f}; {100 * v['diverged']:.1f}% diverge)"
    return text


def sinusoid_tables(shots=(5, 10, 20), steps=(1, 10), tasks=1000, seed=12345) -> str:
    """The sinusoid table (each shipped checkpoint, K in ``shots``, MSE after ``steps``) and
    the comparison with the MAML paper, with their protocols."""
    header = ["checkpoint", "iterations"] + [f"K={k}, {s} step{'s' * (s > 1)}"
                                             for k in shots for s in steps]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lrs, results = set(), {}
    with torch_threads(1):
        for name, what in SINUSOID_ROWS.items():
            learner, meta = load_shipped(name)
            lrs.add("learned per-weight rates" if learner.learned_inner_lr else
                    f"{learner.inner_lr:g}")
            cells = [f"{what} (`{name}`)", f"{meta['iterations']:,}"]
            for k in shots:
                r = results[name, k] = meta_test(learner, SinusoidFamily(), k, max(steps),
                                                 tasks, seed=seed)
                cells += [cell(r["mse"][str(s)]) for s in steps]
            rows.append("| " + " | ".join(cells) + " |")
    p = meta_test(learner, SinusoidFamily(), 1, 0, 1)["protocol"]  # the family's ranges
    protocol = (f"MSE on {SinusoidFamily.test_queries} held-out points per task, mean over {tasks:,} fresh tasks "
                f"(seed {seed}) ± 95% CI; fine-tuning: SGD on the K support points with each "
                f"checkpoint's own inner lr ({', '.join(sorted(lrs))}); tasks A ~ "
                f"U{p['amplitude']}, phase ~ U[{p['phase'][0]:g}, {p['phase'][1]:.4g}], x ~ "
                f"U{p['x_range']}. {p['diverged'][0].upper() + p['diverged'][1:]}.")
    paper = ["| | paper (figure 3): 1 / 5 / 10 steps | this kit: 1 / 5 / 10 steps (± 95% CI) |",
             "|---|---|---|"]
    for name, numbers in PAPER_5_SHOT.items():
        learner, _ = load_shipped(name)
        r = results.get((name, 5)) if max(steps) >= 10 else None
        r = r or meta_test(learner, SinusoidFamily(), 5, 10, tasks, seed=seed)
        ours = " / ".join(cell(r["mse"][s]) for s in ("1", "5", "10"))
        paper.append(f"| {SINUSOID_ROWS[name]} (`{name}`) | {' / '.join(map(str, numbers))} | "
                     f"{ours} |")
    return "\n".join(rows) + "\n\n" + protocol + "\n\n" + "\n".join(paper)


GLYPH_ROWS = {  # label -> checkpoint for 5 ways, for 20 ways
    "ProtoNets": ("glyphs_protonet", "glyphs_protonet"),
    "MAML": ("glyphs_maml_5way", "glyphs_maml_20way"),
}


def glyphs_table(tasks=600, seed=12345, progress=True) -> str:
    """Accuracy % of the shipped glyph checkpoints on the held-out alphabets; MAML fine-tunes
    as Finn et al. test Omniglot (``image_test_steps``) with its training inner lr."""
    settings = [(5, 1), (5, 5), (20, 1), (20, 5)]
    keep_freed_memory()
    header = ["model", "checkpoints"] + [f"{w}-way {k}-shot" for w, k in settings]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    family = {w: evaluation_family(w) for w in (5, 20)}
    for label, names in GLYPH_ROWS.items():
        cells = [label, " / ".join(f"`{n}`" for n in dict.fromkeys(names))]
        tested = {}  # ways -> "S steps of lr A" for learners that adapt
        for w, k in settings:
            learner, _ = load_shipped(names[w == 20])
            steps = image_test_steps(learner)
            if steps:
                tested[w] = f"{steps} steps of lr {learner.inner_lr:g}"
            r = meta_test(learner, family[w], k, steps, tasks, seed=seed, progress=progress)
            cells.append(cell(r["accuracy"][str(r["protocol"]["steps"])], 100, 1))
        if len(set(tested.values())) == 1:
            cells[0] += ", " + tested[5]
        elif tested:
            cells[0] += "; " + "; ".join(f"{w}-way: {t}" for w, t in tested.items())
        rows.append("| " + " | ".join(cells) + " |")
    for label, numbers in PUBLISHED_OMNIGLOT.items():
        rows.append(f"| {label}: real Omniglot, a different data set and split | published | "
                    + " | ".join(f"{x:.1f}" for x in numbers) + " |")
    p = r["protocol"]
    note = (f"Accuracy % on the {p['classes']} characters of the {p['alphabets']} held-out glyph "
            f"alphabets (evaluation split), mean over {tasks} episodes (seed {seed}) ± 95% CI, "
            f"{p['queries']} query images per class; MAML fine-tunes with SGD on the support set "
            f"as the paper tests (3 steps, or as many as it trained with if more) with its "
            f"training inner lr, ProtoNets classify by the nearest class prototype.")
    return "\n".join(rows) + "\n\n" + note
