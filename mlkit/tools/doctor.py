"""``python -m mlkit doctor``: check the installation and the shipped data.

One line per check, ``OK`` or ``PROBLEM``, and for each problem the command that
fixes it. The usual cause of "Error displaying widget: model not found" in
JupyterLab is an ipywidgets that does not match jupyterlab_widgets (the
JupyterLab side of the widgets); ``pip install -r requirements.txt`` fixes it.
Exit code 0 when every check is OK, else 1.
"""
from __future__ import annotations

import importlib.metadata
import json
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..data import DATA_DIR

NOTEBOOKS = DATA_DIR.parent / "notebooks"
REINSTALL = "pip install -r requirements.txt"
# ipywidgets major version -> the jupyterlab_widgets major version it talks to
WIDGETS_PAIRS = {7: 1, 8: 3}
SHIPPED = [f"sinusoid_{a}" for a in ("maml_paper", "maml", "fomaml", "reptile", "anil", "metasgd",
                                     "pretrain")] + ["glyphs_protonet", "glyphs_maml_5way",
                                                     "glyphs_maml_20way"]


@dataclass
class Check:
    ok: bool
    text: str
    fix: str = ""

    def line(self) -> str:
        if self.ok:
            return f"OK       {self.text}"
        return f"PROBLEM  {self.text}; fix: {self.fix}"


def installed_version(package):
    """The installed version of ``package`` (a string), or None when it is not installed."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _major(version) -> int:
    return int(version.split(".")[0])


def check_python() -> Check:
    v = sys.version.split()[0]
    ok = sys.version_info >= (3, 10)
    return Check(ok, f"Python {v} ({sys.executable})" + ("" if ok else " is older than 3.10"),
                 "install Python 3.10 or newer and create the environment again")


def check_torch() -> Check:
    v = installed_version("torch")
    if v is None:
        return Check(False, "torch is not installed", REINSTALL)
    import torch
    where = f"GPU: {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "CPU only"
    ok = _major(v) >= 2
    return Check(ok, f"torch {v} ({where})" + ("" if ok else "; mlkit needs torch >= 2 (torch.func)"),
                 REINSTALL)


def check_widgets() -> Check:
    """ipywidgets (the kernel side) and jupyterlab_widgets (the JupyterLab side) must match."""
    ipw, jlw = installed_version("ipywidgets"), installed_version("jupyterlab_widgets")
    if ipw is None or jlw is None:
        missing = " and ".join(n for n, v in (("ipywidgets", ipw), ("jupyterlab_widgets", jlw))
                               if v is None)
        return Check(False, f"{missing} not installed: sliders will not show", REINSTALL)
    text = f"ipywidgets {ipw} with jupyterlab_widgets {jlw}"
    want = WIDGETS_PAIRS.get(_major(ipw))
    if want != _major(jlw):
        return Check(False, f"{text} do not match (ipywidgets {_major(ipw)}.x needs "
                     f"jupyterlab_widgets {want}.x); widgets fail with 'Error displaying widget: "
                     f"model not found'", REINSTALL)
    return Check(True, text + " match")


def check_jupyterlab() -> Check:
    v = installed_version("jupyterlab")
    if v is None:
        return Check(False, "jupyterlab is not installed", REINSTALL)
    ok = _major(v) >= 4
    return Check(ok, f"jupyterlab {v}" + ("" if ok else " is too old for ipywidgets 8 (needs >= 4)"),
                 REINSTALL)


def labextension_dirs() -> list:
    """The folders JupyterLab looks in for prebuilt extensions."""
    try:
        from jupyter_core.paths import jupyter_path
        return [Path(p) for p in jupyter_path("labextensions")]
    except ImportError:
        return [Path(sys.prefix) / "share" / "jupyter" / "labextensions"]


def check_labextension(dirs=None) -> Check:
    for d in dirs if dirs is not None else labextension_dirs():
        package = Path(d) / "@jupyter-widgets" / "jupyterlab-manager" / "package.json"
        if package.is_file():
            version = json.loads(package.read_text()).get("version", "?")
            return Check(True, f"JupyterLab widgets extension {version} in {package.parent}")
    return Check(False, "JupyterLab widgets extension (@jupyter-widgets/jupyterlab-manager) not "
                 "found where JupyterLab looks; widgets will show 'model not found'", REINSTALL)


def rebuild_command(path: Path, data_dir: Path) -> str:
    """The command that remakes a shipped checkpoint, as data/README.md lists it."""
    readme = data_dir / "README.md"
    if readme.is_file():
        for command in re.findall(r"python -m mlkit train[^`|\n]*", readme.read_text()):
            if command.strip().endswith(f"/{path.name}"):
                return command.strip()
    return f"the command for {path.name} in data/README.md"


def check_checkpoints(data_dir) -> list:
    from ..checkpoints import CheckpointError, load_checkpoint
    folder = Path(data_dir) / "checkpoints"
    paths = sorted(set(folder.glob("*.pt")) | {folder / f"{n}.pt" for n in SHIPPED})
    checks = []
    for path in paths:
        fix = rebuild_command(path, Path(data_dir))
        if not path.is_file():
            checks.append(Check(False, f"checkpoint {path} is missing", fix))
            continue
        try:
            _, meta = load_checkpoint(path)
        except Exception as e:  # a CheckpointError already names the file and what is wrong
            text = str(e).split("; rebuild")[0] if isinstance(e, CheckpointError) else \
                f"checkpoint {path} cannot be loaded ({type(e).__name__}: {e})"
            checks.append(Check(False, text, fix))
            continue
        done, target = meta.get("iterations"), meta.get("target_iterations", meta.get("iterations"))
        if done is not None and target is not None and done < target:
            checks.append(Check(False, f"checkpoint {path.name} stopped after {done} of {target} "
                                f"iterations", f"python -m mlkit train --resume {path}"))
            continue
        checks.append(Check(True, f"checkpoint {path.name}: {meta.get('algo')}, {done} iterations "
                            f"(rebuild: {meta.get('command')})"))
    return checks


def check_glyphs(data_dir) -> Check:
    path = Path(data_dir) / "glyphs_28.npz"
    rebuild = "python -m mlkit make-glyphs" + ("" if Path(data_dir) == DATA_DIR else f" --out {path}")
    try:
        from ..data import load_glyphs
    except ImportError as e:
        return Check(False, f"mlkit.data cannot be imported ({e}): the kit is incomplete",
                     f"reinstall mlkit: {REINSTALL}")
    try:
        glyphs = load_glyphs("all", path=path)
    except (ValueError, OSError) as e:
        return Check(False, str(e).split("; rebuild")[0], rebuild)
    return Check(True, f"glyph dataset {path.name}: {glyphs} (rebuild: {rebuild})")


def kernel_python():
    """(argv[0] of the python3 kernel, where it is defined), as Jupyter would launch it."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
    try:
        spec = KernelSpecManager().get_kernel_spec("python3")
    except NoSuchKernel:
        return None, None
    exe = spec.argv[0]
    # Jupyter runs a kernel named plain "python" with its own interpreter (jupyter_client does this)
    if exe in ("python", "python3", f"python{sys.version_info[0]}.{sys.version_info[1]}"):
        exe = sys.executable
    return exe, spec.resource_dir


def check_kernel(python=None) -> Check:
    """The notebooks' kernel (python3) must be able to ``import mlkit``."""
    where = "given"
    if python is None:
        try:
            python, where = kernel_python()
        except ImportError:
            return Check(False, "jupyter_client is not installed: no notebook kernel", REINSTALL)
        if python is None:
            return Check(False, "no Jupyter kernel named python3",
                         f"{sys.executable} -m ipykernel install --user --name python3")
    fix = (f"install the kit into the kernel's Python: {python} -m pip install -e "
           f"{DATA_DIR.parent}, or make this Python the kernel: {sys.executable} -m ipykernel "
           f"install --user --name python3")
    # run where the notebooks run, so that a copy of mlkit in the current folder does not count
    cwd = NOTEBOOKS if NOTEBOOKS.is_dir() else tempfile.gettempdir()
    try:
        run = subprocess.run([python, "-c", "import mlkit, sys; print(sys.executable)"],
                             capture_output=True, text=True, timeout=120, cwd=cwd)
    except (OSError, subprocess.TimeoutExpired) as e:
        return Check(False, f"the python3 kernel ({python}, from {where}) does not run: {e}", fix)
    if run.returncode != 0:
        error = (run.stderr.strip().splitlines() or ["no message"])[-1]
        return Check(False, f"the python3 kernel ({python}) cannot import mlkit: {error}", fix)
    exe = run.stdout.strip()
    same = Path(exe).resolve() == Path(sys.executable).resolve()
    return Check(True, f"the python3 kernel imports mlkit ({exe}"
                 + (", this same Python)" if same else f"; not this Python, {sys.executable})"))


def run_doctor() -> int:
    """Run every check and print one line each; 0 if all are OK, else 1."""
    checks = [check_python(), check_torch(), check_widgets(), check_jupyterlab(),
              check_labextension(), *check_checkpoints(DATA_DIR), check_glyphs(DATA_DIR),
              check_kernel()]
    for c in checks:
        print(c.line())
    problems = sum(not c.ok for c in checks)
    print(f"{problems} problem(s) found." if problems else "Everything looks fine.")
    return 1 if problems else 0
