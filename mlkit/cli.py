"""The command line: ``python -m mlkit train | evaluate | bench | make-glyphs``.

A thin layer over the same functions the notebooks use. Every error a user can
cause ends as one line on stderr and exit code 2, never a traceback.
"""
from __future__ import annotations

import argparse
import sys

from . import checkpoints
from .checks import check_int

TASKS = ("sinusoid", "glyphs")
ALGOS = ("maml", "fomaml", "reptile", "anil", "metasgd", "pretrain", "protonet")


class UsageError(Exception):
    """A bad command line: reported in one line, exit code 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse prints usage + message; we want one line
        raise UsageError(message)


def _int_at_least(low):
    def make(name):
        def parse(text):
            try:
                return check_int(name, int(text), low=low)
            except ValueError:
                raise argparse.ArgumentTypeError(
                    f"{name} must be an integer >= {low}, got {text!r}") from None
        return parse
    return make


_positive_int, _nonneg_int = _int_at_least(1), _int_at_least(0)


def _positive_float(name):
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, got {text!r}") from None
        if not (value > 0 and value != float("inf")):
            raise argparse.ArgumentTypeError(f"{name} must be a finite number > 0, got {text}")
        return value
    return parse


def build_parser() -> Parser:
    p = Parser(prog="python -m mlkit", description="Meta-learning teaching kit: train, "
               "evaluate and benchmark the MAML family and ProtoNets.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)

    t = sub.add_parser("train", help="meta-train a model and save a checkpoint")
    t.add_argument("--task", choices=TASKS, default="sinusoid")
    t.add_argument("--algo", choices=ALGOS, default="maml")
    t.add_argument("--iterations", type=_positive_int("--iterations"), default=None,
                   help="outer steps (default: 70000 for sinusoid, see README for glyphs)")
    t.add_argument("--out", required=True, help="checkpoint file to write")
    t.add_argument("--shots", type=_positive_int("--shots"), default=None,
                   help="support examples per task (per class for glyphs); default 10 / 1")
    t.add_argument("--queries", type=_positive_int("--queries"), default=None)
    t.add_argument("--ways", type=_positive_int("--ways"), default=5, help="glyphs only")
    t.add_argument("--inner-steps", type=_nonneg_int("--inner-steps"), default=None)
    t.add_argument("--inner-lr", type=_positive_float("--inner-lr"), default=None)
    t.add_argument("--multi-step-loss", action="store_true",
                   help="average the query loss after every inner step (MAML++)")
    t.add_argument("--outer-lr", type=_positive_float("--outer-lr"), default=1e-3)
    t.add_argument("--meta-batch", type=_positive_int("--meta-batch"), default=None)
    t.add_argument("--seed", type=_nonneg_int("--seed"), default=0)
    t.add_argument("--device", default="auto", help="auto (GPU if any), cpu or cuda")
    t.add_argument("--threads", type=_positive_int("--threads"), default=None,
                   help="torch CPU threads (default: 1 for sinusoid, all for glyphs)")

    e = sub.add_parser("evaluate", help="meta-test a checkpoint on fresh tasks")
    e.add_argument("checkpoint")
    e.add_argument("--task", choices=TASKS, default=None, help="default: the checkpoint's task")
    e.add_argument("--shots", type=_positive_int("--shots"), default=None)
    e.add_argument("--ways", type=_positive_int("--ways"), default=None, help="glyphs only")
    e.add_argument("--steps", type=_nonneg_int("--steps"), default=None)
    e.add_argument("--tasks", type=_positive_int("--tasks"), default=None)
    e.add_argument("--queries", type=_positive_int("--queries"), default=None)
    e.add_argument("--inner-lr", type=_positive_float("--inner-lr"), default=None)
    e.add_argument("--seed", type=_nonneg_int("--seed"), default=12345)
    e.add_argument("--data", default=None, help="glyphs only: an Omniglot folder to test on")
    e.add_argument("--device", default="auto")
    e.add_argument("--json", action="store_true", help="print one JSON object")

    b = sub.add_parser("bench", help="batched vs per-task-loop meta-iteration time")
    b.add_argument("--rounds", type=_positive_int("--rounds"), default=10)
    b.add_argument("--iterations", type=_positive_int("--iterations"), default=50)
    b.add_argument("--threads", type=_positive_int("--threads"), default=1)
    b.add_argument("--device", default="cpu")
    b.add_argument("--json", action="store_true")

    g = sub.add_parser("make-glyphs", help="regenerate the glyph dataset in data/")
    g.add_argument("--size", type=_positive_int("--size"), default=28)
    g.add_argument("--seed", type=_nonneg_int("--seed"), default=0)
    g.add_argument("--out", default=None, help="default: data/glyphs_<size>.npz")

    r = sub.add_parser("table", help="print the README's results table for a task")
    r.add_argument("task", choices=TASKS)
    r.add_argument("--tasks", type=_positive_int("--tasks"), default=None,
                   help="tasks (episodes) per number; default 1000 (sinusoid), 600 (glyphs)")

    sub.add_parser("doctor", help="check the installation and the shipped data")
    return p


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = build_parser().parse_args(argv)
        from . import commands
        return getattr(commands, args.command.replace("-", "_"))(args, argv)
    except UsageError as e:
        print(f"mlkit: error: {e}", file=sys.stderr)
        return 2
    except (ValueError, OSError, checkpoints.CheckpointError) as e:
        print(f"mlkit: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mlkit: interrupted", file=sys.stderr)
        return 130
