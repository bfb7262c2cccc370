"""The results table as a paper prints it: one row per set (in the given order), a mean row, numbers in %.

    table.md    Markdown, one table per condition (clean first)
    table.tex   LaTeX (booktabs), one `table` environment per condition; needs \\usepackage{booktabs}
    table.csv   the same cells, one row per (condition, set), for a spreadsheet

Columns are metric keys of `detection_metrics` (default ACC and AP; `all` for every one). Under the mean row a
"worst" row gives each column's worst set (the lowest accuracy, as DDA reports its minimum accuracy beside the
mean; the highest ECE / NLL / Brier / EER). A set with one class only has no AP, AUC, oracle ACC, balanced ACC,
EER or Pd@FAR: its cell shows "-", the set is marked with a dagger, and a note under the table says it is left
out of those means (see `metrics.mean_row` for the rule). NLL and Brier are printed as numbers (3 decimals),
every other metric in %.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from .abstention import BAND_COLUMNS
from .metrics import METRIC_COLUMNS, TWO_CLASS_METRICS, one_class, worst_row
from .report import MEAN, PLAIN_METRICS, TITLES, format_metric

TABLE_COLUMNS = METRIC_COLUMNS + BAND_COLUMNS  # the band's columns exist when the checkpoint has an unsure band
ALL_COLUMNS = "all"
DEFAULT_COLUMNS = ("acc", "ap")
WORST = "worst"
DAGGER = "\u2020"
# LaTeX's special characters, each with what typesets it literally.
_LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
          "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def check_columns(columns) -> tuple[str, ...]:
    """The table's metric columns, validated; ValueError naming a bad one and the choices."""
    columns = tuple(columns or DEFAULT_COLUMNS)
    if ALL_COLUMNS in columns:
        columns = METRIC_COLUMNS if columns == (ALL_COLUMNS,) else columns
    bad = [c for c in columns if c not in TABLE_COLUMNS]
    if bad:
        raise ValueError(f"--columns {' '.join(bad)}: unknown; choose from {' '.join(TABLE_COLUMNS)}, or all alone "
                         "(default acc ap).")
    if len(set(columns)) != len(columns):
        raise ValueError(f"--columns {' '.join(columns)}: a column is named twice; name each once.")
    return columns


def percent(value) -> str:
    """A fraction as a percentage with one decimal; "" for a missing (NaN or None) value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{100 * value:.1f}"


def latex_escape(text: str) -> str:
    """`text` typeset literally in LaTeX (set names hold underscores, a user's may hold % or &)."""
    return "".join(_LATEX.get(char, char) for char in str(text))


def _groups(condition: dict) -> dict:
    return {name: row for name, row in condition["generators"].items() if name != MEAN}


def _worst(condition: dict) -> dict | None:
    """The worst row of a condition's sets (None with fewer than two sets, where it repeats the one set)."""
    groups = _groups(condition)
    return worst_row(groups) if len(groups) > 1 else None


def _units(columns: tuple[str, ...]) -> str:
    plain = [TITLES[c] for c in columns if c in ("nll", "brier")]
    return "Numbers in %" + (f" ({' and '.join(plain)}: as numbers)" if plain else "")


def table_note(condition: dict, columns: tuple[str, ...], dagger: str = DAGGER) -> str:
    """The note under a table: what the mean row averages, and which one-class sets it leaves out."""
    groups = _groups(condition)
    lonely = [name for name, row in groups.items() if one_class(row)]
    worst = (" Worst: each column's worst set (lowest accuracy, AP, AUC, Pd; highest ECE, NLL, Brier, EER)."
             if len(groups) > 1 else "")
    text = f"{_units(columns)}.{worst} Mean: the mean over the {len(groups)} sets"
    if not lonely:
        return text + "."
    dropped = [TITLES[c] for c in columns if c in TWO_CLASS_METRICS] or ["AP", "AUC"]
    kinds = ", ".join(f"{name} ({'fake' if groups[name]['n_real'] == 0 else 'real'} images only)" for name in lonely)
    return (f"{text}; {dagger} one class only: {kinds}, so no {' / '.join(dropped)}; left out of the mean "
            f"{' and '.join(dropped)}, taken over the {len(groups) - len(lonely)} sets with both classes (the mean ACC "
            "covers every set).")


def _cells(row: dict, columns: tuple[str, ...], missing: str) -> list[str]:
    return [format_metric(c, row.get(c)) or missing for c in columns]  # the worst row has no band columns


def markdown_table(conditions: dict, columns: tuple[str, ...], threshold: float, title: str) -> str:
    """One Markdown table per condition: set, image counts, the metric columns; the mean row in bold."""
    lines = [f"# {title}", ""]
    for name, condition in conditions.items():
        lines += [f"## {name}", "", "| set | real | fake | " + " | ".join(TITLES[c] for c in columns) + " |",
                  "|---|---:|---:|" + "---:|" * len(columns)]
        for group, row in _groups(condition).items():
            mark = f" {DAGGER}" if one_class(row) else ""
            lines.append(f"| {_md(group)}{mark} | {row['n_real']} | {row['n_fake']} | "
                         + " | ".join(_cells(row, columns, "-")) + " |")
        mean = condition["generators"][MEAN]
        lines.append(f"| **mean** | {mean['n_real']} | {mean['n_fake']} | "
                     + " | ".join(f"**{c}**" for c in _cells(mean, columns, "-")) + " |")
        worst = _worst(condition)
        if worst is not None:
            lines.append(f"| *{WORST}* | | | " + " | ".join(_cells(worst, columns, "-")) + " |")
        lines += ["", f"{table_note(condition, columns)} Threshold {threshold:.4g}.", ""]
    return "\n".join(lines)


def _md(text: str) -> str:
    return str(text).replace("|", "\\|")


def latex_table(conditions: dict, columns: tuple[str, ...], threshold: float, title: str) -> str:
    """One booktabs `table` per condition, rows in set order, a rule above the mean row, numbers in %."""
    parts = [f"% {latex_escape(title)}. Needs \\usepackage{{booktabs}} in the preamble.", ""]
    for name, condition in conditions.items():
        header = " & ".join(["Set", *[latex_escape(TITLES[c]) + ("" if c in PLAIN_METRICS else " (\\%)") for c in columns]])
        body = []
        for group, row in _groups(condition).items():
            mark = "$^\\dagger$" if one_class(row) else ""
            body.append(" & ".join([latex_escape(group) + mark, *_cells(row, columns, "--")]) + " \\\\")
        mean = _cells(condition["generators"][MEAN], columns, "--")
        worst = _worst(condition)
        worst_line = [] if worst is None else [" & ".join([f"\\emph{{{WORST}}}", *_cells(worst, columns, "--")]) + " \\\\"]
        note = latex_escape(table_note(condition, columns, dagger="@DAGGER@")).replace("@DAGGER@", "$^\\dagger$")
        parts += [
            "\\begin{table}[t]", "\\centering",
            f"\\caption{{{latex_escape(title)}: {latex_escape(name)} (threshold {threshold:.4g}).}}",
            f"\\label{{tab:item-{_label(name)}}}",
            "\\begin{tabular}{l" + "r" * len(columns) + "}", "\\toprule", header + " \\\\", "\\midrule", *body,
            "\\midrule", " & ".join(["Mean", *mean]) + " \\\\", *worst_line, "\\bottomrule", "\\end{tabular}",
            "\\par\\smallskip", f"{{\\footnotesize {note}}}", "\\end{table}", "",
        ]
    return "\n".join(parts)


def _label(name: str) -> str:
    """A LaTeX label key: letters, digits, dashes only."""
    return "".join(c if c.isalnum() else "-" for c in name).strip("-") or "table"


def write_table_csv(conditions: dict, columns: tuple[str, ...], path: Path) -> None:
    """One row per (condition, set), a mean row and (with several sets) a worst row per condition; metric cells
    in % with one decimal (NLL and Brier as numbers)."""
    fields = ["condition", "set", "n_real", "n_fake", "one_class", *columns]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for name, condition in conditions.items():
            for group, row in condition["generators"].items():
                writer.writerow({"condition": name, "set": group, "n_real": row["n_real"], "n_fake": row["n_fake"],
                                 "one_class": "" if group == MEAN else int(one_class(row)),
                                 **{c: format_metric(c, row[c]) for c in columns}})
            worst = _worst(condition)
            if worst is not None:
                writer.writerow({"condition": name, "set": WORST, "n_real": "", "n_fake": "", "one_class": "",
                                 **{c: format_metric(c, worst[c]) for c in columns}})


def write_tables(conditions: dict, columns: tuple[str, ...], threshold: float, title: str, output: Path) -> list[str]:
    """Write table.md, table.tex and table.csv into `output`; returns their names."""
    (output / "table.md").write_text(markdown_table(conditions, columns, threshold, title))
    (output / "table.tex").write_text(latex_table(conditions, columns, threshold, title))
    write_table_csv(conditions, columns, output / "table.csv")
    return ["table.md", "table.tex", "table.csv"]
