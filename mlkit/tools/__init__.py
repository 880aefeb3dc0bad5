"""Tools around the kit, which a learner need not read: the command line, the doctor,
benchmarks and comparisons, the results tables, the glyph generator and the student
edition. ``python -m mlkit ...`` enters here (``cli.py``)."""
