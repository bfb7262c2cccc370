"""How an ablation is written: ablation.md (a long table and the distance x fusion grid), ablation.csv, ablation.json.

Numbers are validation metrics in %, "mean ± std" over seeds (the sample standard deviation; no "±" for one
seed). Rows follow the paper's figure: distance type, then fusion, then head size.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from .report import json_ready

METRICS = (("acc", "val ACC"), ("ap", "val AP"), ("roc_auc", "val AUC"))


def spread(row: dict, key: str) -> str:
    """"93.1 ± 0.4" in % (mean ± std over seeds), "93.1" for one seed, "-" when undefined."""
    mean, std = row[f"{key}_mean"], row[f"{key}_std"]
    if math.isnan(mean):
        return "-"
    return f"{100 * mean:.1f}" if math.isnan(std) else f"{100 * mean:.1f} ± {100 * std:.1f}"


def _best(variants: list[dict], key: str) -> str | None:
    finite = [row for row in variants if not math.isnan(row[f"{key}_mean"])]
    return max(finite, key=lambda row: row[f"{key}_mean"])["variant"] if finite else None


def markdown_ablation(results: dict) -> str:
    """The long table (every variant; the best AP in bold, the checkpoint's own configuration marked), then one
    distance x fusion grid of val AP per head size."""
    variants, best = results["variants"], _best(results["variants"], "ap")
    seeds = ", ".join(map(str, results["seeds"]))
    schedule = results["schedule"]
    lines = [
        "# ITEM head ablation", "",
        f"{results['train_images']} training and {results['val_images']} validation images ({results['validation']}); "
        f"seeds {seeds}; {schedule['epochs']} epochs, learning rate {schedule['learning_rate']:g}, batch "
        f"{schedule['batch_size']}; ACC at threshold {schedule['threshold']:g}. Numbers in % (mean ± std over seeds). "
        f"{len(variants) * len(results['seeds'])} heads trained in {results['seconds']:.1f} s on cached features.",
        "", "| distance | fusion | hidden | " + " | ".join(title for _, title in METRICS) + " | best epoch | s / head |",
        "|---|---|---:|" + "---:|" * (len(METRICS) + 2),
    ]
    for row in variants:
        cells = [spread(row, key) for key, _ in METRICS]
        if row["variant"] == best:
            cells[1] = f"**{cells[1]}**"
        own = " (checkpoint)" if row["variant"] == results["checkpoint_variant"] else ""
        lines.append(f"| {row['distance_type']} | {row['fusion']}{own} | {row['head_hidden_size']} | "
                     + " | ".join(cells) + f" | {row['epoch_mean']:.1f} | {row['seconds_mean']:.2f} |")
    for size in sorted({row["head_hidden_size"] for row in variants}):
        mine = [row for row in variants if row["head_hidden_size"] == size]
        fusions = list(dict.fromkeys(row["fusion"] for row in mine))
        lines += ["", f"## val AP (%), hidden size {size}: distance x fusion", "",
                  "| distance | " + " | ".join(fusions) + " |", "|---|" + "---:|" * len(fusions)]
        for distance in dict.fromkeys(row["distance_type"] for row in mine):
            cells = {row["fusion"]: spread(row, "ap") for row in mine if row["distance_type"] == distance}
            lines.append(f"| {distance} | " + " | ".join(cells.get(f, "") for f in fusions) + " |")
    return "\n".join(lines) + "\n"


def write_ablation(results: dict, output) -> list[str]:
    """Write ablation.md, ablation.csv (one row per variant) and ablation.json (with every run) into `output`."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    (output / "ablation.md").write_text(markdown_ablation(results))
    columns = ["variant", "distance_type", "fusion", "head_hidden_size", "seeds"] + [
        f"{key}_{part}" for key in ("acc", "ap", "roc_auc", "val_loss", "epoch", "seconds") for part in ("mean", "std")]
    with open(output / "ablation.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in results["variants"]:
            writer.writerow({**{k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()},
                             "seeds": " ".join(map(str, row["seeds"]))})
    files = ["ablation.md", "ablation.csv", "ablation.json"]
    (output / "ablation.json").write_text(json.dumps(json_ready({**results, "files": files}), indent=2) + "\n")
    return files
