"""`report.html`: an evaluation on one page, for a browser, with no JavaScript and nothing fetched from the network.

The results table per condition (as in table.md), the per-group metrics of every condition, the PNG plots
(embedded as data URIs, so the page shows them wherever it is copied) and the gallery of the most confident
mistakes per group (pictures linked relatively from gallery/). Every text that comes from the data (set
names, file paths, captions) is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from urllib.parse import quote

from .gallery import GALLERY_FOLDER, KINDS, Mistake
from .metrics import METRIC_COLUMNS, one_class, worst_row
from .report import MEAN, TITLES, format_metric
from .tables import DAGGER, table_note

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; max-width: 80rem; }
table { border-collapse: collapse; margin: 0.5rem 0 0.25rem; }
th, td { border-bottom: 1px solid #ccc; padding: 0.2rem 0.6rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
tr.mean td { font-weight: bold; border-top: 2px solid #444; }
p.note { font-size: 0.9rem; color: #555; max-width: 60rem; }
.gallery { display: flex; flex-wrap: wrap; gap: 1rem; }
figure { margin: 0; width: 256px; }
figure img { width: 256px; height: auto; border: 1px solid #ccc; }
figcaption { font-size: 0.8rem; word-break: break-all; }
img.plot { max-width: 100%; }
table.settings td { text-align: left; vertical-align: top; }
"""


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _cell(value, key: str = "acc") -> str:
    return format_metric(key, value) or "-"


def _results_table(condition: dict, columns: tuple[str, ...], threshold: float) -> list[str]:
    lines = ["<table>", "<thead><tr><th>set</th><th>real</th><th>fake</th>"
             + "".join(f"<th>{_e(TITLES[c])}</th>" for c in columns) + "</tr></thead>", "<tbody>"]
    for group, row in condition["generators"].items():
        if group == MEAN:
            continue
        mark = f" {DAGGER}" if one_class(row) else ""
        lines.append(f"<tr><td>{_e(group)}{mark}</td><td>{row['n_real']}</td><td>{row['n_fake']}</td>"
                     + "".join(f"<td>{_cell(row[c], c)}</td>" for c in columns) + "</tr>")
    mean = condition["generators"][MEAN]
    lines.append(f"<tr class=\"mean\"><td>mean</td><td>{mean['n_real']}</td><td>{mean['n_fake']}</td>"
                 + "".join(f"<td>{_cell(mean[c], c)}</td>" for c in columns) + "</tr>")
    groups = {name: row for name, row in condition["generators"].items() if name != MEAN}
    if len(groups) > 1:
        worst = worst_row(groups)
        lines.append("<tr><td><em>worst</em></td><td></td><td></td>"
                     + "".join(f"<td>{_cell(worst[c], c)}</td>" for c in columns) + "</tr>")
    lines += ["</tbody>", "</table>",
              f"<p class=\"note\">{_e(table_note(condition, columns))} Threshold {threshold:.4g}.</p>"]
    return lines


def _plot(path: Path, title: str) -> list[str]:
    if not path.is_file():
        return []
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return [f"<h3>{_e(title)}</h3>", f"<img class=\"plot\" alt=\"{_e(title)}\" src=\"data:image/png;base64,{data}\">"]


def _figure(mistake: Mistake) -> list[str]:
    caption = (f"{_e(mistake.path)}<br>label: {_e(mistake.label)}, p(fake) = {mistake.fake_probability:.4f}"
               f"<br>caption: {_e(mistake.caption)}")
    if mistake.file is None:
        return [f"<figure><figcaption>{caption}<br>not drawn: {_e(mistake.error or 'unknown reason')}</figcaption></figure>"]
    source = f"{GALLERY_FOLDER}/{quote(mistake.file)}"
    return [f"<figure><a href=\"{_e(source)}\"><img src=\"{_e(source)}\" alt=\"{_e(Path(mistake.path).name)}\"></a>",
            f"<figcaption>{caption}</figcaption></figure>"]


def _gallery(mistakes: list[Mistake], groups: list[str], size: int, threshold: float) -> list[str]:
    lines = ["<h2>Most confident mistakes</h2>",
             f"<p class=\"note\">Per set, up to {size} false positives (real images with the highest fake "
             f"probability at or above the threshold {threshold:.4g}) and false negatives (fake images with the lowest "
             "below it), clean condition. Each picture is the checkpoint's explanation: the caption, and each "
             "grounded object's box coloured by how well it matches its word.</p>"]
    for group in groups:
        lines.append(f"<h3>{_e(group)}</h3>")
        for kind in KINDS:
            mine = [m for m in mistakes if m.group == group and m.kind == kind]
            lines.append(f"<h4>{_e(kind)} ({len(mine)})</h4>")
            if not mine:
                lines.append(f"<p class=\"note\">No {_e(kind)} at this threshold.</p>")
                continue
            lines.append("<div class=\"gallery\">")
            for mistake in mine:
                lines += _figure(mistake)
            lines.append("</div>")
    return lines


def _metrics_table(condition: dict) -> list[str]:
    lines = ["<table>", "<thead><tr><th>set</th><th>real</th><th>fake</th>"
             + "".join(f"<th>{_e(TITLES[c])}</th>" for c in METRIC_COLUMNS) + "<th>oracle threshold</th></tr></thead>",
             "<tbody>"]
    for group, row in condition["generators"].items():
        css = " class=\"mean\"" if group == MEAN else ""
        oracle = row["oracle_threshold"]
        lines.append(f"<tr{css}><td>{_e(group)}</td><td>{row['n_real']}</td><td>{row['n_fake']}</td>"
                     + "".join(f"<td>{_cell(row[c], c)}</td>" for c in METRIC_COLUMNS)
                     + f"<td>{'-' if math.isnan(oracle) else f'{oracle:.4g}'}</td></tr>")
    return lines + ["</tbody>", "</table>"]


PLOT_TITLES = {"per_generator.png": "Per set (clean)", "reliability.png": "Reliability diagram (clean)",
               "robustness.png": "Robustness"}


def render_report(title: str, settings: dict, conditions: dict, columns: tuple[str, ...], threshold: float,
                  plots: list[Path], mistakes: list[Mistake] | None, gallery_size: int) -> str:
    """The whole page. `settings`: {label: value} shown at the top; `plots`: the PNG files this run drew (none: no
    Plots section); `mistakes`: None when there is no gallery."""
    body = [f"<h1>{_e(title)}</h1>", "<table class=\"settings\">"]
    body += [f"<tr><td>{_e(key)}</td><td>{_e(value)}</td></tr>" for key, value in settings.items()]
    body += ["</table>"]
    for name, condition in conditions.items():
        body += [f"<h2>Results: {_e(name)}</h2>", *_results_table(condition, columns, threshold)]
    pictures = [line for path in plots for line in _plot(path, PLOT_TITLES.get(path.name, path.stem))]
    if pictures:
        body += ["<h2>Plots</h2>", *pictures]
    if mistakes is not None:
        groups = [g for g in conditions[next(iter(conditions))]["generators"] if g != MEAN]
        body += _gallery(mistakes, groups, gallery_size, threshold)
    body.append("<h2>All metrics</h2>")
    for name, condition in conditions.items():
        body += [f"<h3>{_e(name)}</h3>", *_metrics_table(condition)]
    return "\n".join(["<!DOCTYPE html>", "<html lang=\"en\">", "<head>", "<meta charset=\"utf-8\">",
                      f"<title>{_e(title)}</title>", f"<style>{STYLE}</style>", "</head>", "<body>", *body,
                      "</body>", "</html>", ""])
