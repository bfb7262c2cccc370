"""Evaluations two labs can compare: `run.json` (what a run used) and `item evaluate --compare A B`.

Every `item evaluate` writes two files:

    run.json       the checkpoint's identity (Hub id, revision and commit, or the sha256 of its weight files;
                   never a path of the machine), each set's fingerprint and counts, the perturbations, the
                   threshold, the seed and sampling, and the versions of the libraries that ran
    run-sets.json  each set's members: its images' content keys (sha256 of the file's bytes, as the cache keys
                   them) in sorted order and their labels as one string of 0 (real) and 1 (fake), so that a
                   comparison can say how many files differ (about 70 bytes per image: 700 kB for 10,000)

A set's fingerprint is the sha256 of its sorted "content key<TAB>label" lines: two runs with the same
fingerprint scored the same image bytes with the same labels, whatever the files were called or where they lay.
Only the images that were scored count (an unreadable file has no content key; its count is in `skipped`).

`compare_runs(a, b)` reads two run.json files (and the run-sets.json beside each) and says whether the runs used
the same images and labels, which sets differ and by how many files (only in A, only in B, relabelled), and
whether the checkpoint, perturbations, threshold and seed agree.
"""

from __future__ import annotations

import hashlib
import json
import os
from importlib import metadata
from pathlib import Path

from ..hashing import file_sha256
from ..public_names import hub_revision

RUN_FILE = "run.json"
MEMBERS_FILE = "run-sets.json"
RUN_FORMAT = 1
LIBRARIES = ("item-detector", "torch", "transformers", "huggingface_hub", "datasets", "accelerate", "safetensors",
             "spacy", "pillow", "numpy", "scikit-learn")


def set_fingerprint(keys, labels) -> dict:
    """{"sha256", "images", "real", "fake"} of a set given its images' content keys and labels (any order)."""
    pairs = sorted(zip(map(str, keys), map(int, labels)))
    digest = hashlib.sha256("".join(f"{key}\t{label}\n" for key, label in pairs).encode("utf-8")).hexdigest()
    fake = sum(label for _, label in pairs)
    return {"sha256": digest, "images": len(pairs), "real": len(pairs) - fake, "fake": fake}



def checkpoint_identity(model_name_or_path: str, revision: str | None) -> dict:
    """The checkpoint without any path of this machine: the sha256 of every weight file (by its name inside the
    checkpoint) of a local folder, or the Hub id, revision and commit (and the weights' sha256 when cached)."""
    location = Path(str(model_name_or_path)).expanduser()
    if location.is_dir():
        weights = {path.relative_to(location).as_posix(): file_sha256(path)
                   for path in sorted(location.rglob("*.safetensors"))}
        return {"source": "local", "weights_sha256": weights}
    identity = {"source": "hub", "hub_id": str(model_name_or_path), "revision": revision or "main",
                "commit": hub_revision(str(model_name_or_path), revision)}  # from the local Hub cache, no network
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(str(model_name_or_path), "model.safetensors", revision=revision)
        if isinstance(cached, str):
            identity["weights_sha256"] = {"model.safetensors": file_sha256(Path(cached))}
    except (ImportError, ValueError, OSError):  # an id the cache cannot look up: the id and revision still say it
        pass
    return identity


def library_versions() -> dict:
    """{distribution: version or None} of the libraries an evaluation runs on."""
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def build_run(checkpoint: dict, set_members: dict, perturbations: list[dict], settings: dict,
              skipped: dict) -> tuple[dict, dict]:
    """(run.json content, run-sets.json content).

    set_members: {set name: (content keys, labels)} in the table's order; perturbations: each condition's
    settings (`Perturbation.settings`); settings: threshold, seed, max_per_class, equalize, fake_only_jpeg,
    protocol; skipped: {set name: number of its files that gave no score} (files not tied to a set under "").
    """
    sets, members = [], {}
    for name, (keys, labels) in set_members.items():
        pairs = sorted(zip(map(str, keys), map(int, labels)))
        sets.append({"name": name, **set_fingerprint(keys, labels), "skipped": int(skipped.get(name, 0))})
        members[name] = {"keys": [key for key, _ in pairs], "labels": "".join(str(label) for _, label in pairs)}
    run = {"format": RUN_FORMAT, "checkpoint": checkpoint, "sets": sets, "perturbations": perturbations,
           **settings, "libraries": library_versions(), "members_file": MEMBERS_FILE}
    return run, {"format": RUN_FORMAT, "sets": members}


def write_run(output: Path, run: dict, members: dict) -> list[str]:
    """Write run.json and run-sets.json into `output` (each under a temporary name, then renamed)."""
    for name, content in ((MEMBERS_FILE, members), (RUN_FILE, run)):
        temporary = output / f".{name}.partial"
        temporary.write_text(json.dumps(content, indent=None if name == MEMBERS_FILE else 2) + "\n", encoding="utf-8")
        os.replace(temporary, output / name)
    return [RUN_FILE, MEMBERS_FILE]


def _read(path) -> tuple[dict, dict | None, str]:
    """(run.json content, its members or None, how to name it)."""
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / RUN_FILE
    try:
        run = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"--compare {str(path)!r}: no such file; pass the run.json an `item evaluate` wrote "
                         "(or its output folder).") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"--compare {str(path)!r} is not valid JSON ({error}); pass a run.json.") from None
    if not isinstance(run, dict) or run.get("format") != RUN_FORMAT or not isinstance(run.get("sets"), list):
        raise ValueError(f"--compare {str(path)!r} is not a run.json of format {RUN_FORMAT} (written by item evaluate).")
    members_path = path.parent / str(run.get("members_file") or MEMBERS_FILE)
    members = json.loads(members_path.read_text(encoding="utf-8"))["sets"] if members_path.is_file() else None
    return run, members, str(path)


def _set_difference(a: dict | None, b: dict | None) -> dict | None:
    """{"only_a", "only_b", "relabelled"} counts of files between two sets' members; None without members."""
    if a is None or b is None:
        return None
    labels_a, labels_b = dict(zip(a["keys"], a["labels"])), dict(zip(b["keys"], b["labels"]))
    common = labels_a.keys() & labels_b.keys()
    return {"only_a": len(labels_a.keys() - common), "only_b": len(labels_b.keys() - common),
            "relabelled": sum(labels_a[key] != labels_b[key] for key in common)}


def compare_runs(path_a, path_b) -> dict:
    """Compare two evaluation runs: {"same_data", "sets": [...], "only_in_a", "only_in_b", "settings": {...}}."""
    run_a, members_a, name_a = _read(path_a)
    run_b, members_b, name_b = _read(path_b)
    sets_a, sets_b = {s["name"]: s for s in run_a["sets"]}, {s["name"]: s for s in run_b["sets"]}
    rows = []
    for name in [n for n in sets_a if n in sets_b]:
        same = sets_a[name]["sha256"] == sets_b[name]["sha256"]
        difference = None if same else _set_difference((members_a or {}).get(name), (members_b or {}).get(name))
        rows.append({"set": name, "same": same, "images_a": sets_a[name]["images"], "images_b": sets_b[name]["images"],
                     "difference": difference})
    only_a, only_b = [n for n in sets_a if n not in sets_b], [n for n in sets_b if n not in sets_a]
    settings = {key: {"a": run_a.get(key), "b": run_b.get(key), "same": run_a.get(key) == run_b.get(key)}
                for key in ("checkpoint", "perturbations", "threshold", "seed", "max_per_class", "equalize",
                            "fake_only_jpeg", "protocol")}
    return {"a": name_a, "b": name_b, "same_data": all(r["same"] for r in rows) and not only_a and not only_b,
            "sets": rows, "only_in_a": only_a, "only_in_b": only_b, "settings": settings}


def describe_comparison(result: dict) -> str:
    """The comparison in words, one line per finding."""
    lines = [f"A: {result['a']}", f"B: {result['b']}"]
    lines.append("same images and labels in every set" if result["same_data"]
                 else "the runs did NOT use the same images and labels")
    for row in result["sets"]:
        if row["same"]:
            lines.append(f"  {row['set']}: same ({row['images_a']} images)")
            continue
        change = row["difference"]
        detail = ("file lists not available (run-sets.json missing)" if change is None else
                  f"{change['only_a']} only in A, {change['only_b']} only in B, {change['relabelled']} relabelled")
        lines.append(f"  {row['set']}: differs ({row['images_a']} vs {row['images_b']} images; {detail})")
    lines += [f"  {name}: only in A" for name in result["only_in_a"]]
    lines += [f"  {name}: only in B" for name in result["only_in_b"]]
    for key, value in result["settings"].items():
        if not value["same"]:
            lines.append(f"{key} differs: A {json.dumps(value['a'])}, B {json.dumps(value['b'])}")
    return "\n".join(lines)
