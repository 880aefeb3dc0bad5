"""The command line: ``python -m mlkit train | evaluate | bench | table | make-glyphs |
doctor | student-edition``.

A thin layer over the same functions the notebooks use (the bodies are in
``commands.py``). Every error a user can cause ends as one line on stderr and exit
code 2, never a traceback.
"""
from __future__ import annotations

import argparse
import sys

from ..checks import check_float, check_int

TASKS = ("sinusoid", "glyphs")
ALGOS = ("maml", "fomaml", "reptile", "anil", "metasgd", "pretrain", "protonet")


class UsageError(Exception):
    """A bad command line: reported in one line, exit code 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse prints usage + message; we want one line
        raise UsageError(message)


def number(name, kind, low, low_inclusive=True):
    """An argparse type: ``kind`` (int or float) >= low (> low when not low_inclusive)."""
    def parse(text):
        try:
            value = kind(text)
            if kind is int:
                return check_int(name, value, low=low)
            return check_float(name, value, low=low, low_inclusive=low_inclusive)
        except ValueError:
            what = "an integer" if kind is int else "a finite number"
            raise argparse.ArgumentTypeError(
                f"{name} must be {what} {'>=' if low_inclusive else '>'} {low:g}, got "
                f"{text!r}") from None
    return parse


def build_parser() -> Parser:
    p = Parser(prog="python -m mlkit", description="Meta-learning teaching kit: train, "
               "evaluate and benchmark the MAML family and ProtoNets.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    count = lambda name, low=1: number(name, int, low)
    rate = lambda name: number(name, float, 0, low_inclusive=False)

    t = sub.add_parser("train", help="meta-train a model and save a checkpoint")
    t.add_argument("--task", choices=TASKS, default=None, help="default sinusoid")
    t.add_argument("--algo", choices=ALGOS, default=None, help="default maml")
    t.add_argument("--iterations", type=count("--iterations"), default=None,
                   help="outer steps in all (default: 70000 for sinusoid, see data/README.md)")
    t.add_argument("--out", default=None, help="checkpoint file to write (default: --resume's)")
    t.add_argument("--resume", default=None, metavar="PATH",
                   help="continue the run saved in PATH, with its settings, up to --iterations")
    t.add_argument("--shots", type=count("--shots"), default=None,
                   help="support examples per task (per class for glyphs)")
    t.add_argument("--queries", type=count("--queries"), default=None,
                   help="query examples per task (per class for glyphs)")
    t.add_argument("--ways", type=count("--ways", 2), default=None, help="glyphs only")
    t.add_argument("--network", choices=("pool", "strided"), default=None,
                   help="glyphs only: Conv-4 with max-pooling (ProtoNets' default) or stride-2 "
                        "convolutions (MAML's default)")
    t.add_argument("--inner-steps", type=count("--inner-steps", 0), default=None)
    t.add_argument("--inner-lr", type=rate("--inner-lr"), default=None)
    t.add_argument("--multi-step-loss", action="store_true", default=None,
                   help="average the query loss after every inner step (MAML++)")
    t.add_argument("--no-adapt-batch-norm", dest="adapt_batch_norm", action="store_false",
                   default=None, help="glyphs only: the inner loop leaves batch norm's scale "
                   "and shift alone, as Finn et al.'s Omniglot code")
    t.add_argument("--outer-lr", type=rate("--outer-lr"), default=None, help="default 0.001")
    t.add_argument("--lr-drops", type=count("--lr-drops"), nargs="*", default=None,
                   help="iterations at which the outer lr halves (with --resume: the run's "
                        "own, then any at iterations not yet run)")
    t.add_argument("--meta-batch", type=count("--meta-batch"), default=None)
    t.add_argument("--seed", type=count("--seed", 0), default=None, help="default 0")
    t.add_argument("--device", default="auto", help="auto (GPU if any), cpu or cuda")
    t.add_argument("--threads", type=count("--threads"), default=None,
                   help="torch CPU threads (default: 1 for sinusoid, all for glyphs)")
    t.add_argument("--save-every", type=number("--save-every", float, 1), default=300,
                   help="seconds between saves while training (default 300)")

    e = sub.add_parser("evaluate", help="meta-test a checkpoint on fresh tasks")
    e.add_argument("checkpoint")
    e.add_argument("--task", choices=TASKS, default=None, help="default: the checkpoint's task")
    e.add_argument("--shots", type=count("--shots"), default=None)
    e.add_argument("--ways", type=count("--ways", 2), default=None, help="glyphs only")
    e.add_argument("--steps", type=count("--steps", 0), default=None,
                   help="fine-tuning steps (default: 10 for sinusoid; for glyphs 3, or the "
                        "checkpoint's inner steps if more, as Finn et al. 2017 test Omniglot)")
    e.add_argument("--tasks", type=count("--tasks"), default=None)
    e.add_argument("--queries", type=count("--queries"), default=None)
    e.add_argument("--inner-lr", type=rate("--inner-lr"), default=None)
    e.add_argument("--seed", type=count("--seed", 0), default=12345)
    e.add_argument("--data", default=None, help="glyphs only: an Omniglot folder to test on")
    e.add_argument("--split", default=None,
                   help="evaluation (default: held-out alphabets) or background (the "
                        "alphabets the models trained on); with --data also background_small1 "
                        "or background_small2")
    e.add_argument("--device", default="auto")
    e.add_argument("--json", action="store_true", help="print one JSON object")

    b = sub.add_parser("bench", help="the kit's meta-iteration time against a per-task loop")
    b.add_argument("--rounds", type=count("--rounds"), default=10)
    b.add_argument("--iterations", type=count("--iterations"), default=50,
                   help="sinusoid iterations per round (images: a tenth, at least 1)")
    b.add_argument("--threads", type=count("--threads"), default=1)
    b.add_argument("--only", choices=("sinusoid", "images"), default=None)
    b.add_argument("--device", default="cpu")
    b.add_argument("--json", action="store_true")

    g = sub.add_parser("make-glyphs", help="regenerate the glyph dataset in data/")
    g.add_argument("--size", type=count("--size", 8), default=28)
    g.add_argument("--seed", type=count("--seed", 0), default=0)
    g.add_argument("--out", default=None, help="default: data/glyphs_<size>.npz")

    r = sub.add_parser("table", help="print the README's results table for a task")
    r.add_argument("task", choices=TASKS)
    r.add_argument("--tasks", type=count("--tasks"), default=None,
                   help="tasks (episodes) per number; default 1000 (sinusoid), 600 (glyphs)")

    sub.add_parser("doctor", help="check the installation and the shipped data")

    s = sub.add_parser("student-edition", help="write the notebooks without their solutions")
    s.add_argument("out", help="folder to write the student notebooks to")
    return p


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = build_parser().parse_args(argv)
        from . import commands
        return getattr(commands, args.command.replace("-", "_"))(args, argv)
    except (UsageError, ValueError, OSError) as e:  # CheckpointError is a ValueError
        print(f"mlkit: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mlkit: interrupted", file=sys.stderr)
        return 130
