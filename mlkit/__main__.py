"""``python -m mlkit ...``: see ``mlkit/tools/cli.py``."""
import sys

try:
    from .tools.cli import main
except KeyboardInterrupt:  # Ctrl-C while torch is still importing
    print("mlkit: interrupted", file=sys.stderr)
    sys.exit(130)

sys.exit(main())
