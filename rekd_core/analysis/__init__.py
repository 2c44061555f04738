"""Reading rationales: their faithfulness (faithfulness.py, faithfulness_report.py), the rationale
figures and the verdicts drawn from them (rationale_metrics.py, verdicts.py, quality.py), single
explanations (explain.py), run comparisons and their tables (compare.py, tables.py)."""
