"""The notebooks' coding exercises: every checker passes on the teacher's solution (taken from
the notebooks themselves), and fails, with its plain-words message, on the student edition's
stub and on a typical wrong answer."""
import ast
import re
from pathlib import Path

import nbformat
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from mlkit import exercises
from mlkit.tools.student import student_notebook, write_student_edition

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
CHECK = re.compile(r"exercises\.(check_\w+)\((\w+)\)")


def exercise_cells(nb):
    """(function name, checker name, solution cell index) for each exercise of a notebook."""
    found = []
    for i, cell in enumerate(nb.cells[:-1]):
        if cell.cell_type == "code" and "### BEGIN SOLUTION" in cell.source:
            nxt = nb.cells[i + 1]
            match = CHECK.search(nxt.source) if nxt.cell_type == "code" else None
            assert match, f"the exercise in cell {i} is not followed by a checker cell"
            found.append((match.group(2), match.group(1), i))
    return found


def definitions(nb):
    """A namespace with the notebook's imports (first cell) and every cell that only defines
    functions, run in order: the solutions and the helpers they use, nothing heavy."""
    namespace = {}
    for i, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
        source = "\n".join(line for line in cell.source.splitlines()
                           if not line.lstrip().startswith("%"))
        tree = ast.parse(source)
        only_defs = all(isinstance(n, (ast.FunctionDef, ast.Import, ast.ImportFrom))
                        for n in tree.body)
        if i == 0 or only_defs:
            exec(compile(tree, f"cell {i}", "exec"), namespace)
    return namespace


def all_notebooks():
    return sorted(NOTEBOOKS.glob("*.ipynb"))


def all_exercises():
    out = []
    for path in all_notebooks():
        nb = nbformat.read(path, as_version=4)
        out += [(path.name, fn, check) for fn, check, _ in exercise_cells(nb)]
    return out


EXERCISES = all_exercises()


def test_at_least_twelve_checked_exercises_across_the_notebooks():
    assert len(EXERCISES) >= 12, EXERCISES
    assert len({check for _, _, check in EXERCISES}) >= 12
    assert {name[:2] for name, _, _ in EXERCISES} >= {"02", "03", "05", "06", "07"}


@pytest.mark.parametrize("notebook, function, checker", EXERCISES,
                         ids=[f"{n[:2]}-{f}" for n, f, _ in EXERCISES])
def test_the_teachers_solution_passes_and_the_students_stub_fails(notebook, function, checker,
                                                                    capsys):
    nb = nbformat.read(NOTEBOOKS / notebook, as_version=4)
    check = getattr(exercises, checker)
    check(definitions(nb)[function])
    assert capsys.readouterr().out.startswith("Correct")
    stub = definitions(student_notebook(nb))[function]
    with pytest.raises(exercises.NotYet, match="NotImplementedError"):
        check(stub)


def mse(p, t):
    return ((p - t) ** 2).mean()


def step(model, params, x, y, lr, loss=mse, graph=True, detach_grad=False, sign=-1):
    g = torch.autograd.grad(loss(functional_call(model, params, (x,)), y), list(params.values()),
                            create_graph=graph)
    return {n: p + sign * lr * (d.detach() if detach_grad else d)
            for (n, p), d in zip(params.items(), g)}


def in_place_meta_loss(model, batch, lr):
    losses = []
    for i in range(batch.tasks):
        g = torch.autograd.grad(mse(model(batch.x_support[i]), batch.y_support[i]),
                                list(model.parameters()))
        with torch.no_grad():
            for p, d in zip(model.parameters(), g):
                p.data -= lr * d
        losses.append(mse(model(batch.x_query[i]), batch.y_query[i]))
    return torch.stack(losses).mean()


def sorted_episode(images, ways, shots, queries, generator):
    classes = torch.randperm(images.shape[0], generator=generator)[:ways].sort().values
    xs, ys, xq, yq = [], [], [], []
    for label, c in enumerate(classes):
        pick = torch.randperm(images.shape[1], generator=generator)[:shots + queries]
        xs.append(images[c, pick[:shots]])
        xq.append(images[c, pick[shots:]])
        ys += [label] * shots
        yq += [label] * queries
    return torch.cat(xs).unsqueeze(1), torch.tensor(ys), torch.cat(xq).unsqueeze(1), torch.tensor(yq)


def meta_loss_with(inner, reduce):
    def meta_loss(model, batch, lr):
        theta = dict(model.named_parameters())
        return reduce(torch.stack([mse(functional_call(model, inner(model, theta, batch, i, lr),
                                                       (batch.x_query[i],)), batch.y_query[i])
                                   for i in range(batch.tasks)]))
    return meta_loss


WRONG = [  # (checker, a typical wrong answer, what the message must say)
    ("check_episode", sorted_episode, "same order of classes in every episode"),
    ("check_inner_step", lambda m, p, x, y, lr: step(m, p, x, y, lr, graph=False),
     "create_graph=True"),
    ("check_inner_step", lambda m, p, x, y, lr: step(m, p, x, y, lr, sign=+1), "uphill"),
    ("check_inner_step", lambda m, p, x, y, lr: step(m, p, x, y, lr,
                                                     loss=lambda a, b: mse(a, b) / len(b)),
     "divide the mean loss again"),
    ("check_meta_loss", in_place_meta_loss, "changed the model's own weights"),
    ("check_meta_loss", meta_loss_with(lambda m, t, b, i, lr: step(
        m, t, b.x_support[i], b.y_support[i], lr), lambda v: v.sum()), "too large"),
    ("check_meta_loss", meta_loss_with(lambda m, t, b, i, lr: t, lambda v: v.mean()),
     "unadapted weights"),
    ("check_adapt", lambda m, p, x, y, lr, s: [p := step(m, p, x, y, lr)
                                               for _ in range(max(s - 1, 0))] and p or p,
     "took"),
    ("check_first_order_step", lambda m, p, x, y, lr: step(m, p, x, y, lr), "still second order"),
    ("check_first_order_step", lambda m, p, x, y, lr: {
        n: v.detach() for n, v in step(m, p, x, y, lr, graph=False).items()}, "detached the weights"),
    ("check_mean_ci95", lambda v: (v.mean().item(), 1.96 * v.std(unbiased=False).item()
                                   / len(v) ** 0.5), "divides by n"),
    ("check_mean_ci95", lambda v: (v.mean().item(), 1.96 * v.std().item()), "sqrt(n)"),
    ("check_mean_ci95", lambda v: (v.mean().item(), v.std().item() / len(v) ** 0.5), "68%"),
    ("check_prototypes", lambda z, y, w: z.view(z.shape[0], w, -1, z.shape[-1]).mean(2),
     "labels are not sorted"),
    ("check_prototypes", lambda z, y, w: torch.stack([torch.stack([z[t][y[t] == c].mean(1)
                                                                   for c in range(w)])
                                                      for t in range(z.shape[0])]),
     "feature axis"),
    ("check_protonet_logits", lambda zq, p: torch.cdist(zq, p) ** 2, "minus the distance"),
    ("check_protonet_logits", lambda zq, p: -torch.cdist(zq, p), "squared"),
    ("check_image_inner_step", lambda m, p, x, y, lr: step(m, p, x, y, lr,
                                                           loss=F.cross_entropy, graph=False),
     "not second order"),
    ("check_reptile_update", lambda t, a, e: t - e * (a.mean(0) - t), "towards the adapted"),
    ("check_reptile_update", lambda t, a, e: t + e * (a - t).sum(0), "take their mean"),
    ("check_anil_names", lambda m: [n for n, _ in m.named_parameters()], "ANIL"),
    ("check_anil_names", lambda m: [m.head_names[0]], "weight and a bias"),
    ("check_metasgd_step", lambda p, g, r: {n: p[n] - r[n].detach() * g[n] for n in p},
     "rates get no gradient"),
    ("check_metasgd_step", lambda p, g, r: {n: p[n] - r[n].mean() * g[n] for n in p},
     "one step size for the whole tensor"),
]


@pytest.mark.parametrize("checker, answer, says", WRONG,
                         ids=[f"{c}-{i}" for i, (c, _, _) in enumerate(WRONG)])
def test_a_typical_wrong_answer_gets_its_explanation(checker, answer, says):
    with pytest.raises(exercises.NotYet) as failure:
        getattr(exercises, checker)(answer)
    message = str(failure.value)
    assert message.startswith("Not yet: ") and says in message, message
    assert "Traceback" not in message


def test_an_error_in_the_learners_code_is_reported_in_one_line():
    def broken(model, params, x, y, lr):
        return {n: p @ torch.ones(3, 7) for n, p in params.items()}
    with pytest.raises(exercises.NotYet, match="raised RuntimeError"):
        exercises.check_inner_step(broken)
    lines = exercises.NotYet("Not yet: x")._render_traceback_()
    assert len(lines) == 1  # Jupyter shows the message, not a traceback


def test_the_student_edition_holds_no_solution(tmp_path):
    written = write_student_edition(tmp_path)
    assert {p.name for p in written} == {p.name for p in all_notebooks()}
    stubs = 0
    for path in written:
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            assert "### BEGIN SOLUTION" not in cell.source and "### END SOLUTION" not in cell.source
            if cell.cell_type == "markdown":
                assert "<details>" not in cell.source and "</details>" not in cell.source
            else:
                assert cell.outputs == [] and cell.execution_count is None
                stubs += cell.source.count("raise NotImplementedError(")
        teacher = nbformat.read(NOTEBOOKS / path.name, as_version=4)
        assert len(nb.cells) == len(teacher.cells)  # only solutions and answers go
    assert stubs == len(EXERCISES)


def test_the_student_edition_refuses_to_overwrite_the_teacher_edition():
    with pytest.raises(ValueError, match="another folder"):
        write_student_edition(NOTEBOOKS)
