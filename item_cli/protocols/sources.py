"""Protocol sets that are not folders, and protocols ordered in time.

Hub data sets. A set may name a data-set source instead of folders (Community Forensics is a Hub data set):

    - name: commfor_eval
      source: hf:OwensLab/CommunityForensics   # a data-set source string, as --data takes it
      split: PublicEval                         # optional: the data set's split
      data_config: default                      # optional: its configuration (--data-config)
      data_revision: main                       # optional: its revision (--data-revision)
      image_column: image_data                  # optional: the column with the image (or its bytes)
      label_column: label                       # the column with the label
      label_map: {0: 0, 1: 1}                   # value in label_column -> 0 (real) / 1 (fake); or "real=0,fake=1"
      generator_column: model_name              # optional: the column naming the generator

`hub_options(entry, where)` checks these fields; the set's `hub` dict carries them to the data-source layer
(the loader of `--data hf:...`), which reads the set; nothing here touches the network.

Chronological protocols (AI-GenBench style). Every set carries `released: YYYY-MM` (its generator's first
public release) and the protocol a `chronological: {window: N}` entry. `chronological_roles(sets, until,
window)` trains on every generator released up to `until` and tests on the next `window` generators released
after it (AI-GenBench slides a window of 4 generators): `--protocol aigenbench --until 2022-12`.
"""

from __future__ import annotations

import re

HUB_PREFIX = "hf:"
HUB_KEYS = ("source", "split", "data_config", "data_revision", "image_column", "label_column", "label_map",
            "generator_column")
_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


def _label_map(value, here: str) -> dict[str, int]:
    """{label value as text: 0 or 1} from a mapping or from "real=0,fake=1"."""
    if isinstance(value, str):
        pairs = [item.partition("=") for item in value.split(",") if item.strip()]
        if not pairs or any(not sep for _, sep, _ in pairs):
            raise ValueError(f"{here}: `label_map` {value!r} must read like real=0,fake=1.")
        value = {key.strip(): target.strip() for key, _, target in pairs}
    if not isinstance(value, dict) or not value:
        raise ValueError(f"{here}: `label_map` must map label values to 0 (real) or 1 (fake); got {value!r}.")
    out = {}
    for key, target in value.items():
        if str(target) not in ("0", "1"):
            raise ValueError(f"{here}: `label_map` sends {key!r} to {target!r}; map every value to 0 (real) or 1 (fake).")
        out[str(key)] = int(target)
    if set(out.values()) != {0, 1}:
        raise ValueError(f"{here}: `label_map` {value!r} names one class only; map values to both 0 (real) and 1 (fake).")
    return out


def hub_options(entry: dict, here: str) -> dict:
    """The checked data-set source fields of a set entry: {"source": "hf:ORG/NAME", "split": ..., ...}."""
    source = entry.get("source")
    if not isinstance(source, str) or not source.startswith(HUB_PREFIX) or source.count("/") != 1 \
            or not all(part.strip() for part in source[len(HUB_PREFIX):].split("/")):
        raise ValueError(f"{here}: `source` must be a Hub data set written hf:ORG/NAME; got {source!r}.")
    if "label_column" not in entry:
        raise ValueError(f"{here}: a `source` set needs `label_column` (and `label_map` unless its labels are 0 / 1).")
    options = {"source": source.strip()}
    for key in HUB_KEYS[1:]:
        if key not in entry:
            continue
        if key == "label_map":
            options[key] = _label_map(entry[key], here)
        elif not isinstance(entry[key], str) or not entry[key].strip():
            raise ValueError(f"{here}: `{key}` must be a non-empty text; got {entry[key]!r}.")
        else:
            options[key] = entry[key].strip()
    return options


def check_month(value, what: str) -> str:
    """`value` as a "YYYY-MM" text; ValueError naming `what` otherwise."""
    text = str(value).strip() if isinstance(value, (str, int)) else ""
    if not _MONTH.match(text):
        raise ValueError(f"{what}: {value!r} is not a month; write YYYY-MM, e.g. 2022-12.")
    return text


def chronological_roles(sets: list, until: str, window: int) -> list[tuple[object, str]]:
    """(set, role) pairs of a chronological protocol: "train" for every set released up to `until` (inclusive),
    "test" for the sets of the next `window` generators released after it, in release order; the rest left out.

    `sets` are objects with `name` and `released` ("YYYY-MM"). ValueError when no set falls on either side.
    """
    until = check_month(until, "--until")
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"window={window!r}; pass a positive number of generators to test on, e.g. 4.")
    undated = [item.name for item in sets if not item.released]
    if undated:
        raise ValueError(f"--until needs every set's release month; {', '.join(undated)} have no `released`.")
    ordered = sorted(sets, key=lambda item: item.released)  # stable: the file's order breaks ties
    train = [item for item in ordered if item.released <= until]
    later = [item for item in ordered if item.released > until]
    if not train:
        raise ValueError(f"--until {until}: no generator is released by then (the first is {ordered[0].released}); "
                         "pick a later month.")
    if not later:
        raise ValueError(f"--until {until}: no generator is released after it (the last is {ordered[-1].released}); "
                         "pick an earlier month.")
    return [(item, "train") for item in train] + [(item, "test") for item in later[:window]]
