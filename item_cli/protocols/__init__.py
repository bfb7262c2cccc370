"""The field's standard evaluation and training protocols, as data files, and a loader for them.

A protocol is an ordered list of named image sets under one root folder. Built-in protocols (YAML files next
to this module; `list_protocols()`): `universalfakedetect`, `genimage`, `cnndetection_progan4`. A user's
protocol is a YAML or JSON file with the same fields:

    name: my_benchmark                 # required
    description: what it measures      # required
    role: test                         # default role of every set: test, train or val (default test)
    layout: the folders each set expects (free text)
    root_hint: what the root folder is (free text)
    reference: citation or URL (free text)
    root: /data/my_benchmark           # optional; relative to the file; the `root` argument wins
    sets:                              # required, in reporting order
      - name: progan                   # required; unique per role; also the set's generator name
        path: test/progan              # a folder with its own label folders (0_real/1_fake or ai/nature),
                                       # or a CSV manifest (path[,label][,generator])
      - name: guided                   # reals and fakes kept in folders of their own:
        fake: diffusion_datasets/guided/1_fake     # every image under it is fake (a path or a list)
        real: diffusion_datasets/imagenet/0_real   # every image under it is real (a path or a list)
      - name: progan4
        role: train
        paths: [progan_train/car, progan_train/cat]  # several folders with label folders, one set
        note: free text

A set may instead name a Hub data set (`source: hf:ORG/NAME`, `split`, `label_column`, `label_map`, ...), and a
protocol may order its sets in time (`released: YYYY-MM`, `chronological: {window: 4}`; `until=`): `sources.py`.

A set given by one `path` is passed to the data loader as it is. A set made of several folders (`paths`,
`real` / `fake`) becomes a CSV manifest (`path,label,generator`, absolute paths, generator = the set name)
written by `Protocol.data_arguments(manifest_dir=...)`, which is how the data loader reads any pairing of
folders.

`parse_data_arguments(["progan=/data/progan", "/data/sd15"])` reads repeated `--data NAME=PATH` options
into the same (name, path) pairs.
"""

from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

import yaml

from .sources import HUB_KEYS, check_month, chronological_roles, hub_options

ROLES = ("test", "train", "val")
# The label folders of the two folder layouts (CNNDetection, GenImage); 0 = real, 1 = fake.
LABEL_FOLDERS = {"0_real": 0, "1_fake": 1, "nature": 0, "ai": 1}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
PROTOCOL_KEYS = {"name", "description", "role", "layout", "root_hint", "reference", "root", "sets", "chronological"}
SET_KEYS = {"name", "role", "path", "paths", "real", "fake", "note", "released", *HUB_KEYS}
DEFAULT_WINDOW = 4  # AI-GenBench's sliding window: 4 generators


@dataclass(frozen=True)
class ProtocolSet:
    """One named image set. sources: (path, label) pairs; label None means the path labels its images
    itself (label folders, or a manifest), 0 / 1 means every image under the folder is real / fake."""

    name: str
    role: str
    sources: tuple[tuple[Path, int | None], ...]
    note: str = ""
    released: str = ""  # "YYYY-MM": the generator's release month (chronological protocols)
    hub: dict | None = None  # a Hub data set: {"source": "hf:ORG/NAME", "split", "label_column", ...}

    @property
    def path(self) -> Path | str | None:
        """The folder, manifest or data-set source (`hf:ORG/NAME`) to pass as `--data` directly; None when a
        manifest must be written."""
        if self.hub is not None:
            return self.hub["source"]
        if len(self.sources) == 1 and self.sources[0][1] is None:
            return self.sources[0][0]
        return None


@dataclass(frozen=True)
class Protocol:
    """A loaded protocol; `sets` keeps the file's order. `root` is None for a built-in loaded without one
    (its paths are then relative and unchecked)."""

    name: str
    description: str
    sets: tuple[ProtocolSet, ...]
    root: Path | None
    source: str
    layout: str = ""
    root_hint: str = ""
    reference: str = ""

    def select(self, role: str = "test") -> list[ProtocolSet]:
        """The sets of one role, in order."""
        _check_role(role, f"Protocol {self.name!r}")
        return [s for s in self.sets if s.role == role]

    def data_arguments(
        self, role: str = "test", manifest_dir: str | os.PathLike | None = None
    ) -> list[tuple[str, str]]:
        """(set name, folder or manifest path) per set of `role`, in order, as `--data NAME=PATH` would give.

        Sets made of several folders are written as CSV manifests into `manifest_dir` (created if needed),
        one `<protocol>-<role>-<set>.csv` each; ValueError if such a set exists and no folder is given.
        """
        if self.root is None and any(item.hub is None for item in self.select(role)):
            raise ValueError(
                f"Protocol {self.name!r} was loaded without a root folder; pass root= (the folder that holds"
                f" its data: {self.root_hint or 'see the protocol file'})."
            )
        pairs = []
        for item in self.select(role):
            if item.path is not None:
                pairs.append((item.name, str(item.path)))
                continue
            if manifest_dir is None:
                raise ValueError(
                    f"Set {item.name!r} of protocol {self.name!r} combines several folders and needs a CSV manifest;"
                    " pass manifest_dir= (a writable folder, e.g. the cache folder)."
                )
            target = Path(manifest_dir) / f"{_file_safe(self.name)}-{role}-{_file_safe(item.name)}.csv"
            pairs.append((item.name, str(write_manifest(item, target))))
        return pairs


def _file_safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def _names(keys) -> str:
    return ", ".join(sorted(map(str, keys)))


def _check_role(role, where: str) -> str:
    if role not in ROLES:
        raise ValueError(f"{where}: role {role!r} is not one of {', '.join(ROLES)}; use one of them.")
    return role


def _images_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _label_from_folders(path: Path, folder: Path) -> int | None:
    """The label of the nearest label folder (0_real, 1_fake, nature, ai) between `folder` and `path`."""
    for part in reversed(path.relative_to(folder).parts[:-1]):
        if part in LABEL_FOLDERS:
            return LABEL_FOLDERS[part]
    return None


def write_manifest(item: ProtocolSet, target: str | os.PathLike) -> Path:
    """Write set `item` as a CSV manifest `path,label,generator` (absolute paths, generator = set name).

    Images under a self-labelled folder take the label of their label folder; images outside any label
    folder there are left out (as the folder layouts do). Raises ValueError when a source is a manifest
    (combine manifests yourself) or when the set holds no image.
    """
    rows = []
    for source, label in item.sources:
        if source.is_file():
            raise ValueError(
                f"Set {item.name!r}: {str(source)!r} is a file; sets of several sources take folders only."
                " Give a manifest as the set's single `path` instead."
            )
        for image in _images_under(source):
            image_label = label if label is not None else _label_from_folders(image, source)
            if image_label is not None:
                rows.append((str(image.resolve()), image_label, item.name))
    if not rows:
        folders = ", ".join(str(s) for s, _ in item.sources)
        raise ValueError(f"Set {item.name!r} holds no labelled image under {folders}; check the folders.")
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(("path", "label", "generator"))
        writer.writerows(rows)
    return target


def list_protocols() -> list[str]:
    """Names of the built-in protocols."""
    return sorted(p.name[: -len(".yaml")] for p in resources.files(__name__).iterdir() if p.name.endswith(".yaml"))


def _read_file(text: str, where: str, is_json: bool) -> dict:
    try:
        content = json.loads(text) if is_json else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise ValueError(f"Protocol file {where} is not valid {'JSON' if is_json else 'YAML'}: {error}") from None
    if not isinstance(content, dict):
        raise ValueError(
            f"Protocol file {where} must hold a mapping with name, description and sets; got {type(content).__name__}."
        )
    return content


def _open_protocol(name_or_path: str) -> tuple[dict, str, Path | None]:
    """(content, where, folder of a user's file or None for a built-in)."""
    if not isinstance(name_or_path, (str, os.PathLike)) or not str(name_or_path).strip():
        raise TypeError(
            f"Protocol {name_or_path!r}: pass a built-in name ({', '.join(list_protocols())}) or a file path."
        )
    path = Path(name_or_path).expanduser()
    if path.is_file():
        text = path.read_text(encoding="utf-8")
        return _read_file(text, str(path), path.suffix.lower() == ".json"), str(path), path.resolve().parent
    builtin = str(name_or_path).strip().lower().replace("-", "_")
    if builtin in list_protocols():
        resource = resources.files(__name__).joinpath(f"{builtin}.yaml")
        return _read_file(resource.read_text(encoding="utf-8"), str(resource), False), str(resource), None
    raise ValueError(
        f"Unknown protocol {str(name_or_path)!r}: it is neither a built-in protocol ({', '.join(list_protocols())})"
        " nor an existing YAML/JSON file. Check the name or the path."
    )


def _text_field(content: dict, key: str, where: str, required: bool = False) -> str:
    value = content.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"Protocol file {where}: `{key}` must be a non-empty text; got {value!r}.")
    return value.strip()


def _paths_field(value, key: str, where: str) -> list[str]:
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values or not all(isinstance(v, str) and v.strip() for v in values):
        raise ValueError(f"{where}: `{key}` must be a path or a non-empty list of paths; got {value!r}.")
    return [v.strip() for v in values]


def _parse_set(entry, index: int, default_role: str, where: str) -> tuple[str, str, list[tuple[str, int | None]], dict]:
    """(name, role, [(relative path, label)], {note, released, hub}) of one `sets` entry."""
    here = f"Protocol file {where}, sets[{index}]"
    if not isinstance(entry, dict):
        raise ValueError(f"{here}: each set must be a mapping like {{name: progan, path: test/progan}}; got {entry!r}.")
    unknown = set(entry) - SET_KEYS
    if unknown:
        raise ValueError(f"{here}: unknown key(s) {_names(unknown)}; allowed: {_names(SET_KEYS)}.")
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip() or "=" in name or "\n" in name:
        raise ValueError(f"{here}: `name` must be a non-empty single-line text without '='; got {name!r}.")
    kinds = [key for key in ("path", "paths", "source") if key in entry]
    kinds += ["real/fake"] if {"real", "fake"} & set(entry) else []
    if len(kinds) != 1:
        raise ValueError(f"{here} ({name}): give exactly one of `path`, `paths`, `real`/`fake` or `source`; got "
                         f"{', '.join(kinds) or 'none'}.")
    extras = {"note": str(entry.get("note") or "").strip(), "hub": None,
              "released": check_month(entry["released"], f"{here} ({name}) released") if "released" in entry else ""}
    stray = [key for key in HUB_KEYS[1:] if key in entry and "source" not in entry]
    if stray:
        raise ValueError(f"{here} ({name}): {', '.join(stray)} belong to a `source: hf:...` set; drop them or add one.")
    if "source" in entry:
        extras["hub"], sources = hub_options(entry, f"{here} ({name})"), []
    elif "path" in entry:
        if not isinstance(entry["path"], str):
            raise ValueError(f"{here} ({name}): `path` is one path; use `paths` for a list. Got {entry['path']!r}.")
        sources = [(p, None) for p in _paths_field(entry["path"], "path", here)]
    elif "paths" in entry:
        sources = [(p, None) for p in _paths_field(entry["paths"], "paths", here)]
    else:
        sources = [(p, label) for key, label in (("real", 0), ("fake", 1)) if key in entry
                   for p in _paths_field(entry[key], key, here)]
    return name.strip(), _check_role(entry.get("role", default_role), f"{here} ({name})"), sources, extras


def _resolve_root(root, content: dict, folder: Path | None, where: str) -> Path | None:
    """The `root` argument, else the file's `root` (relative to the file), else a user file's own folder."""
    if root is not None:
        resolved = Path(root).expanduser().resolve()
        if not resolved.is_dir():
            raise ValueError(
                f"Protocol root {str(root)!r} is not a folder; pass the folder that holds the protocol's sets."
            )
        return resolved
    if content.get("root") is not None:
        written = _text_field(content, "root", where)
        return ((folder or Path.cwd()) / Path(written).expanduser()).resolve()
    return folder


def _check_present(protocol: Protocol, where: str) -> None:
    """Raise one ValueError listing every set whose folder or manifest is missing."""
    missing = []
    for item in protocol.sets:
        absent = [str(source) for source, _ in item.sources if not source.exists()]
        if absent:
            missing.append(f"  - {item.name} ({item.role}): {', '.join(absent)}")
    if missing:
        expected = protocol.root_hint or protocol.layout or "see the protocol file"
        raise ValueError(
            f"Protocol {protocol.name!r}: {len(missing)} of {len(protocol.sets)} sets are missing under root"
            f" {str(protocol.root)!r}:\n"
            + "\n".join(missing)
            + f"\nThe root should be: {expected}\nPass the folder that holds them as the root, or copy {where}, edit"
            " its paths to match your copy and pass the copy."
        )


def load_protocol(
    name_or_path: str | os.PathLike, root: str | os.PathLike | None = None, check: bool = True,
    until: str | None = None,
) -> Protocol:
    """Load a built-in protocol by name (`universalfakedetect`, ...) or a user's YAML / JSON file.

    Set paths are resolved against `root`; without it, against the file's `root` field, else the user
    file's folder; a built-in loaded without a root keeps relative paths and is not checked. With `check`,
    every set's folder or manifest must exist (all missing ones are reported in one ValueError). With `until`
    ("YYYY-MM", chronological protocols only), the sets released by then get the role train, the next window's
    test, and the others are left out (see `sources.chronological_roles`).
    """
    content, where, folder = _open_protocol(name_or_path)
    unknown = set(content) - PROTOCOL_KEYS
    if unknown:
        raise ValueError(f"Protocol file {where}: unknown key(s) {_names(unknown)}; allowed: {_names(PROTOCOL_KEYS)}.")
    name = _text_field(content, "name", where, required=True)
    default_role = _check_role(content.get("role", "test"), f"Protocol file {where}")
    entries = content.get("sets")
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"Protocol file {where}: `sets` must be a non-empty list of {{name: ..., path: ...}} entries.")
    parsed = [_parse_set(entry, index, default_role, where) for index, entry in enumerate(entries)]
    seen = set()
    for set_name, role, _, _ in parsed:
        if (set_name, role) in seen:
            raise ValueError(f"Protocol file {where}: set {set_name!r} appears twice for role {role!r}; rename one.")
        seen.add((set_name, role))
    root_path = _resolve_root(root, content, folder, where)
    sets = tuple(ProtocolSet(set_name, role, tuple(((root_path or Path()) / p, label) for p, label in sources), **extras)
                 for set_name, role, sources, extras in parsed)
    window = _window(content, where, name) if until is not None or "chronological" in content else None
    if until is not None:
        sets = tuple(replace(item, role=role) for item, role in chronological_roles(list(sets), until, window))
    protocol = Protocol(
        name=name, description=_text_field(content, "description", where, required=True), sets=sets, root=root_path,
        source=where, layout=_text_field(content, "layout", where), root_hint=_text_field(content, "root_hint", where),
        reference=_text_field(content, "reference", where),
    )
    if check and root_path is not None:
        _check_present(protocol, where)
    return protocol


def _window(content: dict, where: str, name: str) -> int:
    """The test window of a chronological protocol (`chronological: {window: N}`); ValueError for another one."""
    setting = content.get("chronological")
    if setting is None:
        raise ValueError(f"--until applies to chronological protocols (e.g. aigenbench); {name!r} is not one.")
    window = setting.get("window", DEFAULT_WINDOW) if isinstance(setting, dict) else None
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"Protocol file {where}: `chronological` must be {{window: N}} with N >= 1; got {setting!r}.")
    return window


def _default_set_name(path: str) -> str:
    """A bare `--data PATH`'s set name: the folder's name, or a manifest's name without its suffix."""
    location = Path(path).expanduser()
    name = location.stem if location.suffix.lower() in (".csv", ".json", ".jsonl") else location.name
    return name or location.resolve().name


def parse_data_arguments(values: list[str]) -> list[tuple[str, str]]:
    """Read repeated `--data NAME=PATH` (or bare `--data PATH`) values into ordered (name, path) pairs.

    A bare PATH is named after its folder (a manifest after its file name without suffix). A path that
    itself contains '=' must be given as NAME=PATH. Duplicate names are refused. Paths are not checked here.
    """
    if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)):
        raise TypeError(f"Pass the --data values as a list of strings; got {type(values).__name__}.")
    pairs, origin = [], {}
    for value in values:
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"--data {value!r}: give a folder or manifest path, optionally named: NAME=PATH.")
        name, separator, path = value.strip().partition("=")
        if separator and not name:
            raise ValueError(f"--data {value!r}: the name before '=' is empty; write NAME=PATH, or the PATH alone.")
        if separator and not any(mark in name for mark in "/\\"):
            if not path.strip():
                raise ValueError(f"--data {value!r}: no path after '='; write NAME=PATH.")
            name, path = name.strip(), path.strip()
        else:
            name, path = _default_set_name(value.strip()), value.strip()
        if not name:
            raise ValueError(f"--data {value!r}: cannot name a set after this path; write NAME=PATH.")
        if name in origin:
            raise ValueError(
                f"--data: the set name {name!r} is given twice ({origin[name]!r} and {value!r});"
                " name them apart with NAME=PATH."
            )
        origin[name] = value
        pairs.append((name, path))
    return pairs
