"""Text tables for papers and issues: Markdown and LaTeX (booktabs) from header + string cells."""

from __future__ import annotations


def _tex_escape(s: str) -> str:
    s = s.replace("\\", r"\textbackslash{}")
    for ch in "&%$#_{}":
        s = s.replace(ch, "\\" + ch)
    return s.replace("±", r"$\pm$").replace("–", "--").replace("~", r"\textasciitilde{}")


def render_rows(head: list[str], body: list[list[str]], fmt: str) -> str:
    """`fmt` is "md" or "tex"; the first column is left-aligned, the rest right-aligned in LaTeX."""
    if fmt == "md":
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in body]
        return "\n".join(lines) + "\n"
    if fmt == "tex":
        lines = [r"\begin{tabular}{l" + "r" * (len(head) - 1) + "}", r"\toprule",
                 " & ".join(_tex_escape(h) for h in head) + r" \\", r"\midrule"]
        lines += [" & ".join(_tex_escape(c) for c in row) + r" \\" for row in body]
        lines += [r"\bottomrule", r"\end{tabular}"]
        return "\n".join(lines) + "\n"
    raise ValueError(f"unknown table format {fmt!r}; choose md, csv or tex")
