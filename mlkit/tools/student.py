"""``python -m mlkit student-edition OUT``: the notebooks without their solutions.

``notebooks/`` is the teacher edition: every coding exercise holds its solution between
nbgrader's markers, ``### BEGIN SOLUTION`` and ``### END SOLUTION``, after a comment
``# TODO: what to write``. The student edition replaces each solution with
``raise NotImplementedError("what to write")``, removes every collapsed ``<details>``
answer from the text, and clears all outputs, so nothing gives an answer away. A
teacher who grades with nbgrader can use the teacher edition as it is.
"""
from __future__ import annotations

import re
from pathlib import Path

import nbformat

from ..data import DATA_DIR

NOTEBOOKS = DATA_DIR.parent / "notebooks"
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
DETAILS = re.compile(r"<details>.*?</details>\s*", re.S)


def strip_solutions(source: str) -> str:
    """Replace every solution region of a code cell with a NotImplementedError stub."""
    lines, out, todo, inside = source.split("\n"), [], "write this part", False
    for line in lines:
        stripped = line.strip()
        if stripped.startswith(BEGIN):
            indent = line[:len(line) - len(line.lstrip())]
            out.append(f"{indent}raise NotImplementedError({todo!r})")
            inside = True
        elif stripped.startswith(END):
            inside = False
        elif not inside:
            if stripped.startswith("# TODO:"):
                todo = stripped[len("# TODO:"):].strip()
            out.append(line)
    if inside:
        raise ValueError(f"a solution starts with {BEGIN!r} but never ends:\n{source}")
    return "\n".join(out)


def student_notebook(nb):
    """A copy of notebook ``nb`` (nbformat) without solutions, answers or outputs."""
    nb = nbformat.from_dict(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.source = strip_solutions(cell.source)
            cell.outputs, cell.execution_count = [], None
        elif cell.cell_type == "markdown":
            cell.source = DETAILS.sub("", cell.source)
    nb.metadata.pop("widgets", None)
    return nb


def write_student_edition(out, source=NOTEBOOKS) -> list:
    """Write the student edition of every notebook in ``source`` to the folder ``out``."""
    out, source = Path(out), Path(source)
    if out.resolve() == source.resolve():
        raise ValueError(f"out must be another folder than the teacher notebooks ({source})")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in sorted(source.glob("*.ipynb")):
        nbformat.write(student_notebook(nbformat.read(path, as_version=4)), out / path.name)
        written.append(out / path.name)
    return written
