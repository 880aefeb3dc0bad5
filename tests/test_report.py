from mlkit.report import _cell, paper_comparison, sinusoid_table


def test_cells():
    assert _cell({"mean": 0.5812, "ci95": 0.0421}) == "0.58 ± 0.04"
    assert "diverges" in _cell({"mean": 3e20, "ci95": 1e21})


def test_tables_from_shipped_checkpoints():
    table = sinusoid_table(shots=(5,), steps=(1,), tasks=20, algos=("maml", "pretrain"))
    lines = table.splitlines()
    assert lines[0].startswith("| checkpoint") and len([l for l in lines if l.startswith("| `")]) == 2
    assert "70,000" in table and "20 fresh tasks" in table
    comparison = paper_comparison(tasks=20)
    assert "0.67 / 0.38 / 0.35" in comparison and "2.41 / 2.23 / 2.19" in comparison
