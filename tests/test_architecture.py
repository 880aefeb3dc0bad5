"""The shape of the package, read from its source with ``ast`` (nothing is imported).

* no import cycle among mlkit modules, and every import points to the module's own layer
  or a lower one (LAYERS below);
* no private torch module or attribute (``torch._C``, ``torch.utils._pytree`` ...);
* no code that branches on a learner's name (``learner.name == "maml"``);
* the inner SGD update (``theta - lr * grad``) is written in a few known files only;
* the core a learner reads stays short.

Imports are counted wherever they are written: at module level and inside functions.
"""
from __future__ import annotations

import ast
import fnmatch
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "mlkit"

# The layers of mlkit, bottom to top: a module imports only from its own layer or lower
# ones. README's "The library" section writes the same layers; change both together.
# A new module must be placed here deliberately (an unlisted module fails the test).
# Names are paths inside mlkit/ without ".py", dotted ("tools.cli"); "tools.*" is every
# module of mlkit/tools/ (its __init__ included); "__init__" is mlkit/__init__.py.
LAYERS = [
    {"checks", "runtime"},
    {"tasks", "data", "episodes"},
    {"models"},
    {"learner", "fast_maml", "maml", "protonet", "algorithms", "toy"},
    {"train", "evaluate", "checkpoints"},
    {"plots", "widgets", "image_widgets", "exercises"},
    {"tools.*", "__init__", "__main__"},
]
MAX_LAYERS = 7

# The files a learner reads (the order of mlkit/__init__.py's docstring) and their budget.
CORE = ["tasks", "episodes", "models", "learner", "maml", "protonet", "algorithms", "train",
        "evaluate"]
CORE_MAX_LINES = 1300

# Where the inner SGD step theta - lr * grad may be written: the kit's one inner step,
# the two-weight toy (written out on purpose) and the per-task loop the benchmark races.
SGD_ALLOWED = {"maml", "toy", "tools.bench"}
MAX_SGD_FILES = 3


# ------------------------------------------------------------------ reading the package
def module_name(path: Path, root: Path = PACKAGE) -> str:
    """mlkit/tools/cli.py -> "tools.cli"; mlkit/__init__.py -> "__init__"."""
    return ".".join(path.relative_to(root).with_suffix("").parts)


def package_of(module: str) -> list:
    """The package a module sits in, as parts below mlkit: "tools.cli" -> ["tools"]."""
    return module.split(".")[:-1]


def resolve(parts: list, root: Path = PACKAGE):
    """Module name of mlkit.<parts> ("" parts: mlkit itself), or None if no such file."""
    if not parts:
        return "__init__"
    if root.joinpath(*parts[:-1], parts[-1] + ".py").is_file():
        return ".".join(parts)
    if root.joinpath(*parts, "__init__.py").is_file():
        return ".".join(parts + ["__init__"])
    return None


def mlkit_imports(tree: ast.AST, module: str, root: Path = PACKAGE) -> list:
    """(line, target module or None, what was written) for every import of an mlkit module
    anywhere in ``tree``: ``import mlkit.x``, ``from mlkit import x``, ``from .x import y``,
    ``from . import x``, ``from .. import x``, and importlib.import_module("mlkit.x")."""
    found = []

    def add(node, base, names, written):
        # from <base> import <names>: a name that is a module is that module, else the base
        hit = False
        for name in names:
            target = resolve(base + [name], root) if name != "*" else None
            if target is not None:
                found.append((node.lineno, target, written))
                hit = True
        if not hit:
            found.append((node.lineno, resolve(base, root), written))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "mlkit":
                    found.append((node.lineno, resolve(parts[1:], root), f"import {alias.name}"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base, up = package_of(module), node.level - 1
                if up > len(base):
                    found.append((node.lineno, None, "relative import beyond mlkit"))
                    continue
                base = base[:len(base) - up]
            elif node.module and node.module.split(".")[0] == "mlkit":
                base = []
            else:
                continue
            extra = node.module.split(".") if node.module else []
            if not node.level:
                extra = extra[1:]
            written = f"from {'.' * node.level}{node.module or ''} import " + \
                ", ".join(a.name for a in node.names)
            add(node, base + extra, [a.name for a in node.names], written)
        elif isinstance(node, ast.Call) and node.args and \
                isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            func = node.func
            fname = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            text = node.args[0].value
            if fname in ("import_module", "__import__") and text.split(".")[0] == "mlkit":
                found.append((node.lineno, resolve(text.split(".")[1:], root),
                              f"{fname}({text!r})"))
    return found


def read_package(root: Path = PACKAGE) -> dict:
    """module name -> (path, source, ast) for every .py file under ``root``."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        out[module_name(path, root)] = (path, source, ast.parse(source, filename=str(path)))
    return out


def import_graph(package: dict, root: Path = PACKAGE) -> dict:
    """module -> {imported module: (line, written)} (imports of missing modules left out)."""
    graph = {}
    for module, (_, _, tree) in package.items():
        edges = {}
        for line, target, written in mlkit_imports(tree, module, root):
            if target is not None and target != module:
                edges.setdefault(target, (line, written))
        graph[module] = edges
    return graph


def find_cycle(graph: dict):
    """One import cycle as a list of modules [a, b, ..., a], or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def layer_of(module: str):
    """Index of the layer that lists ``module`` (exact name or a pattern like "tools.*")."""
    hits = [i for i, layer in enumerate(LAYERS)
            if any(fnmatch.fnmatchcase(module, pattern) for pattern in layer)]
    return hits[0] if len(hits) == 1 else None if not hits else ("several", hits)


@pytest.fixture(scope="module")
def package():
    return read_package()


# ------------------------------------------------------------------ imports
def test_the_reader_resolves_every_kind_of_import(tmp_path):
    root = tmp_path / "mlkit"
    for name in ("__init__.py", "a.py", "b.py", "tools/__init__.py", "tools/t.py",
                 "tools/u.py"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("")
    source = "\n".join([
        "import os",                                   # not mlkit
        "from . import a",                             # 2 -> a
        "from .u import thing",                        # 3 -> tools.u
        "from .. import a as aa",                      # 4 -> a (from tools/)
        "from ..b import thing",                       # 5 -> b
        "from . import u",                             # 6 -> tools.u
        "def f():",
        "    from mlkit.tools import t",               # 8 -> tools.t
        "    import mlkit.b",                          # 9 -> b
        "    from mlkit import VERSION",               # 10 -> __init__ (a name, not a module)
        "    import importlib",
        "    importlib.import_module('mlkit.a')",      # 12 -> a
        "    from .missing import x",                  # 13 -> None (no such module)
    ])
    found = mlkit_imports(ast.parse(source), "tools.t", root)
    got = {line: target for line, target, _ in found}
    assert got == {3: "tools.u", 4: "a", 5: "b", 6: "tools.u", 8: "tools.t", 9: "b", 10: "__init__",
                   12: "a", 13: None, 2: "tools.__init__"}
    # "from . import a" inside tools/ means tools.a, which does not exist: the package itself
    (root / "tools" / "a.py").write_text("")
    assert {line: t for line, t, _ in mlkit_imports(ast.parse(source), "tools.t", root)}[2] \
        == "tools.a"
    assert find_cycle({"a": {"b": 0}, "b": {"c": 0}, "c": {"a": 0}, "d": {"a": 0}}) \
        == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b": 0}, "b": {}, "c": {"a": 0, "b": 0}}) is None


def test_every_mlkit_import_names_an_existing_module(package):
    missing = [f"mlkit/{package[m][0].relative_to(PACKAGE)}:{line}: {written}"
               for m, (_, _, tree) in package.items()
               for line, target, written in mlkit_imports(tree, m) if target is None]
    assert not missing, "imports of mlkit modules that do not exist:\n" + "\n".join(missing)


def test_no_import_cycle(package):
    graph = import_graph(package)
    assert graph["tasks"] and graph["__main__"], "the reader found no imports at all"
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(
        f"{a} (line {graph[a][b][0]}: {graph[a][b][1]})" for a, b in zip(cycle, cycle[1:]))


def test_layer_table_is_small_and_unambiguous():
    assert len(LAYERS) <= MAX_LAYERS
    names = [n for layer in LAYERS for n in layer]
    assert len(names) == len(set(names)), "a module is listed in two layers"


def test_every_module_has_a_layer_and_imports_only_downwards(package):
    unplaced = [m for m in package if not isinstance(layer_of(m), int)]
    assert not unplaced, (f"modules not placed in exactly one layer of LAYERS (add each to one "
                          f"layer, here and in README's 'The library'): {unplaced}")
    upward = []
    for module, edges in import_graph(package).items():
        for target, (line, written) in sorted(edges.items()):
            if not isinstance(layer_of(target), int):
                upward.append(f"{module}:{line} imports {target}, which has no layer")
            elif layer_of(target) > layer_of(module):
                upward.append(f"{module} (layer {layer_of(module)}) line {line}: {written!r} "
                              f"imports {target} (layer {layer_of(target)})")
    assert not upward, "imports that point up:\n" + "\n".join(upward)


# ------------------------------------------------------------------ private torch
def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_torch_uses(tree: ast.AST) -> list:
    """(line, what) for private torch modules imported and private attributes of torch
    (or of a name imported from torch) used anywhere in ``tree``."""
    out, torch_names = [], {"torch"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "torch":
                    torch_names.add(alias.asname or "torch")
                    if any(map(is_private, parts)):
                        out.append((node.lineno, f"import {alias.name}"))
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level \
                and node.module.split(".")[0] == "torch":
            for alias in node.names:
                torch_names.add(alias.asname or alias.name)
                if any(map(is_private, node.module.split(".") + [alias.name])):
                    out.append((node.lineno, f"from {node.module} import {alias.name}"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            chain, base = [node.attr], node.value
            while isinstance(base, ast.Attribute):
                chain.append(base.attr)
                base = base.value
            if isinstance(base, ast.Name) and base.id in torch_names and is_private(node.attr):
                out.append((node.lineno, ".".join([base.id] + chain[::-1])))
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "getattr" \
                and len(node.args) >= 2 and isinstance(node.args[0], ast.Name) \
                and node.args[0].id in torch_names and isinstance(node.args[1], ast.Constant) \
                and isinstance(node.args[1].value, str) and is_private(node.args[1].value):
            out.append((node.lineno, f"getattr({node.args[0].id}, {node.args[1].value!r})"))
    return sorted(set(out))


def test_the_private_torch_detector():
    source = "\n".join([
        "import torch",
        "import torch.nn.functional as F",
        "from torch.utils import _pytree",              # 3
        "import torch._dynamo",                         # 4
        "from torch._C import something",               # 5
        "x = torch.utils._python_dispatch.TorchDispatchMode",  # 6
        "y = F._canonical_mask",                        # 7
        "z = getattr(torch, '_C')",                     # 8
        "ok = torch.__version__, torch.nn.functional.relu, obj._private",
        "from torch.func import functional_call",
    ])
    assert [line for line, _ in private_torch_uses(ast.parse(source))] == [3, 4, 5, 6, 7, 8]


def test_no_private_torch_modules_or_attributes(package):
    bad = [f"mlkit/{path.relative_to(PACKAGE)}:{line}: {what}"
           for path, _, tree in package.values() for line, what in private_torch_uses(tree)]
    assert not bad, "private torch used (use public API only):\n" + "\n".join(bad)


# ------------------------------------------------------------------ branching on names
def _is_str(node) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


def _is_str_collection(node, constants: dict) -> bool:
    if isinstance(node, ast.Name) and node.id in constants:
        node = constants[node.id]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return bool(node.elts) and all(map(_is_str, node.elts))
    if isinstance(node, ast.Dict):
        return bool(node.keys) and all(k is not None and _is_str(k) for k in node.keys)
    return _is_str(node)


def _is_name_attribute(node) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "name"


def name_branches(tree: ast.AST) -> list:
    """Lines that compare ``something.name`` with a string literal (== / != / is) or test it
    against literal strings (in / not in, also via a module-level tuple of strings), and
    ``match something.name`` with string cases."""
    constants = {t.id: node.value for node in getattr(tree, "body", [])
                 if isinstance(node, ast.Assign)
                 for t in node.targets if isinstance(t, ast.Name)}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            left = node.left
            for op, right in zip(node.ops, node.comparators):
                if isinstance(op, (ast.In, ast.NotIn)):
                    hit = _is_name_attribute(left) and _is_str_collection(right, constants)
                else:
                    hit = (_is_name_attribute(left) and _is_str(right)) or \
                          (_is_name_attribute(right) and _is_str(left))
                if hit:
                    out.append(node.lineno)
                left = right
        elif isinstance(node, ast.Match) and _is_name_attribute(node.subject):
            if any(isinstance(c.pattern, ast.MatchValue) and _is_str(c.pattern.value)
                   for c in node.cases):
                out.append(node.lineno)
    return sorted(set(out))


def test_the_name_branch_detector():
    source = "\n".join([
        "ALGOS = ('maml', 'fomaml')",
        "if learner.name == 'maml': pass",              # 2
        "if 'protonet' != self.name: pass",             # 3
        "x = a if l.name in ('anil', 'maml') else b",   # 4
        "if learner.name not in ALGOS: pass",           # 5
        "match learner.name:",                          # 6
        "    case 'reptile': pass",
        "if path.name in command.group(): pass",        # a path, compared with computed text
        "if learner.name == other.name: pass",
        "if name == 'maml': pass",
        "names = {cls.name: cls for cls in classes}",
    ])
    assert name_branches(ast.parse(source)) == [2, 3, 4, 5, 6]


def test_no_code_branches_on_a_learners_name(package):
    bad = [f"mlkit/{path.relative_to(PACKAGE)}:{line}: {source.splitlines()[line - 1].strip()}"
           for path, source, tree in package.values() for line in name_branches(tree)]
    assert not bad, ("code that branches on a name (give the learner a flag or a method "
                     "instead):\n" + "\n".join(bad))


# ------------------------------------------------------------------ the inner SGD update
LR_TOKENS = {"lr", "lrs", "alpha", "size", "step", "rate", "rates"}
LR_NAMES = {"inner_lr", "step_size", "learning_rate"}


def _identifier(node):
    """The name a node stands for: x, self.x, self.x(...), x[...], x["key"] -> key."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Call):
        return _identifier(node.func)
    if isinstance(node, ast.Subscript):
        key = node.slice
        if _is_str(key):
            return key.value
        return _identifier(node.value)
    if isinstance(node, ast.UnaryOp):
        return _identifier(node.operand)
    return None


def _lr_name(name) -> bool:
    if not name:
        return False
    name = name.lower()
    return name in LR_NAMES or bool(set(name.split("_")) & LR_TOKENS)


def is_lr_like(node) -> bool:
    """A learning-rate-like name: lr, self.inner_lr, self.step_size(n), lrs[n], s["lr"],
    and a method called on one (rates[n].mean(), lr.item())."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
            is_lr_like(node.func.value):
        return True
    return _lr_name(_identifier(node))


def _is_lr_product(node) -> bool:
    return isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult) and \
        (is_lr_like(node.left) or is_lr_like(node.right))


def sgd_updates(tree: ast.AST) -> list:
    """Lines holding an SGD step: X - lr * G (either factor order, G anything, e.g.
    g.detach()), X -= lr * G, and torch's X.sub_(lr * G) / X.add_(G, alpha=-lr)."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Sub) and \
                _is_lr_product(node.right):
            out.append(node.lineno)
        elif isinstance(node, ast.AugAssign) and isinstance(node.op, ast.Sub) and \
                _is_lr_product(node.value):
            out.append(node.lineno)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                node.func.attr in ("sub", "sub_", "add", "add_"):
            if any(map(_is_lr_product, node.args)) or any(
                    k.arg == "alpha" and is_lr_like(k.value) for k in node.keywords):
                out.append(node.lineno)
    return sorted(set(out))


def test_the_sgd_detector_finds_planted_updates(tmp_path):
    copy = tmp_path / "learner.py"
    original = (PACKAGE / "learner.py").read_text(encoding="utf-8")
    assert sgd_updates(ast.parse(original)) == []
    planted = [
        "def planted(params, grads, inner_lr, lr, self):",
        "    new = {n: p - inner_lr * g.detach() for (n, p), g in zip(params.items(), grads)}",
        "    w = w - g * self.step_size(name)",
        "    w -= lr * g",
        "    w.add_(g, alpha=-lr)",
        "    p.sub_(self.inner_lr * p.grad)",
        "    w = w - rates[n].mean() * grads[n]",
        "    return theta - alpha * (g if create else g.detach())",
        "def innocent(x, y, z, steps, lo, hi):",
        "    return x - y * z, hi - lo, x - steps * 2, x - (y - z), x - y.mean() * z",
    ]
    copy.write_text(original + "\n\n" + "\n".join(planted) + "\n")
    first = copy.read_text().splitlines().index(planted[0]) + 2  # the line after the def
    assert sgd_updates(ast.parse(copy.read_text())) == list(range(first, first + 7))


def test_the_inner_sgd_update_is_written_in_few_files(package):
    found = {m: sgd_updates(tree) for m, (_, _, tree) in package.items()}
    found = {m: lines for m, lines in found.items() if lines}
    where = ", ".join(f"mlkit/{package[m][0].relative_to(PACKAGE)} (lines {lines})"
                      for m, lines in sorted(found.items()))
    assert "maml" in found, f"the detector misses MAML's inner step; found: {where}"
    assert len(found) <= MAX_SGD_FILES and set(found) <= SGD_ALLOWED, \
        f"the inner SGD update is written in: {where}; allowed: {sorted(SGD_ALLOWED)}"


# ------------------------------------------------------------------ size of the core
def test_the_core_a_learner_reads_is_short(package):
    lines = {m: len(package[m][1].splitlines()) for m in CORE}
    total = sum(lines.values())
    assert total <= CORE_MAX_LINES, (f"the core is {total} lines (at most {CORE_MAX_LINES}): "
                                     f"{lines}")
    assert total > 300, f"counted {total} lines: the reader found the wrong files"
