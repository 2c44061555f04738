"""Reading rationales: faithfulness and explanations, the rationale figures and verdicts, run
comparisons and tables."""
