"""``python -m mlkit ...``: see ``mlkit/cli.py``."""
import sys

from .cli import main

sys.exit(main())
