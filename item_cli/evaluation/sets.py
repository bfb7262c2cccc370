"""The named image sets one run evaluates (or audits): repeated `--data [NAME=]PATH`, or a protocol file.

    --data progan=/data/progan --data /data/sd15        two sets, "progan" and "sd15", in that order
    --protocol universalfakedetect --protocol-root DIR  the protocol's test sets, in the paper's order
    --data /data/ufd_test                               one unnamed folder: its generators are the groups

Named sets (a NAME=, more than one --data, or a protocol) are the rows of the results table: every record of a
set gets the set's name as its generator, whatever its folder layout says, so "per generator" means "per set".
A single unnamed --data keeps the generators its layout gives (the per-generator table of one benchmark
folder). `--max-per-class N` keeps a seeded, balanced sample of up to N real and N fake images per set (as
UniversalFakeDetect's `max_sample`; per generator for a single unnamed folder), so that a table compares sets
of equal weight.
"""

from __future__ import annotations

import dataclasses
import logging
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data import FAKE, REAL, Record, Skipped, SourceOptions, load_records, source_kind
from ..protocols import ROLES, load_protocol, parse_data_arguments

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalSet:
    """One set: its name, its folder or manifest, and whether its name replaces the layout's generators."""

    name: str
    path: str
    named: bool = True
    options: SourceOptions | None = None  # a protocol's own data-set options for this set (split, columns, ...)


@dataclass
class LoadedSets:
    """The records of every set, concatenated in set order, with what each set holds."""

    sets: list[EvalSet]
    records: list[Record]
    skipped: list[Skipped]
    counts: dict  # set name -> {"path", "real", "fake", "found_real", "found_fake"}
    protocol: str | None = None

    @property
    def named(self) -> bool:
        """True when the groups of the table are the sets (False: one unnamed folder, grouped by generator)."""
        return any(item.named for item in self.sets)

    def set_of(self, record: Record) -> str:
        """The set a record belongs to (named sets carry it as the generator)."""
        return record.generator if self.named else self.sets[0].name


def add_set_arguments(parser) -> None:
    """`--data` (repeatable), `--protocol`, `--protocol-root`, `--role`, `--until`, `--layout`, `--split`,
    `--generator` and the data-set options."""
    from ..args import add_data_sets

    add_data_sets(parser)
    parser.add_argument("--protocol", default=None, metavar="NAME_OR_FILE",
                        help="a built-in protocol (universalfakedetect, genimage) or a YAML/JSON protocol file, "
                             "instead of --data")
    parser.add_argument("--protocol-root", default=None, metavar="DIR",
                        help="the folder that holds the protocol's sets (with --protocol)")
    parser.add_argument("--role", choices=ROLES, default="test", help="the protocol's sets of this role")
    parser.add_argument("--until", default=None, metavar="YYYY-MM",
                        help="chronological protocols (aigenbench): train role = generators released by this month, "
                             "test role = the next window of generators")


def sets_from_arguments(data: list[str] | None, protocol: str | None, protocol_root: str | None = None,
                        role: str = "test", manifest_dir: str | Path | None = None,
                        until: str | None = None) -> tuple[list[EvalSet], str | None]:
    """(the sets in order, the protocol's name or None) from `--data` values or a protocol.

    Protocol sets made of several folders are written as CSV manifests into `manifest_dir`. `until` (YYYY-MM)
    gives a chronological protocol's roles by release date.
    """
    if bool(data) == bool(protocol):
        raise ValueError(
            "Give the data either as --data [NAME=]PATH (repeatable) or as --protocol NAME_OR_FILE with "
            "--protocol-root DIR, not both and not neither."
        )
    if protocol_root is not None and not protocol:
        raise ValueError("--protocol-root applies to --protocol only; drop it, or name the protocol with --protocol.")
    if until is not None and not protocol:
        raise ValueError("--until applies to a chronological --protocol (e.g. aigenbench) only; drop it, or name one.")
    if data:
        pairs = parse_data_arguments(list(data))
        if len(pairs) == 1 and pairs[0][1] == data[0].strip():  # one bare PATH: grouped by its own generators
            return [EvalSet(pairs[0][0], pairs[0][1], named=False)], None
        return [EvalSet(name, path) for name, path in pairs], None
    loaded = load_protocol(protocol, root=protocol_root, until=until)
    if loaded.root is None and any(item.hub is None for item in loaded.select(role)):
        raise ValueError(
            f"Protocol {loaded.name!r} needs --protocol-root: the folder that holds its sets "
            f"({loaded.root_hint or 'see the protocol file'})."
        )
    pairs = loaded.data_arguments(role, manifest_dir=manifest_dir)
    if not pairs:
        roles = sorted({item.role for item in loaded.sets})
        raise ValueError(f"Protocol {loaded.name!r} has no {role!r} sets; pass --role with one of {roles}.")
    hubs = {item.name: item.hub for item in loaded.select(role) if item.hub is not None}
    return [EvalSet(name, path, options=protocol_source_options(hubs.get(name))) for name, path in pairs], loaded.name


def protocol_source_options(hub: dict | None) -> SourceOptions | None:
    """The data-set options a protocol file gives a Hub set (`source`, `split`, `image_column`, ...), or None."""
    if hub is None:
        return None
    label_map = hub.get("label_map")
    return SourceOptions(
        config=hub.get("data_config"), split=hub.get("split"), revision=hub.get("data_revision"),
        image_column=hub.get("image_column"), label_column=hub.get("label_column"),
        label_map=None if label_map is None else ",".join(f"{value}={label}" for value, label in label_map.items()),
        generator_column=hub.get("generator_column"),
    )


def _set_options(item: EvalSet, given: SourceOptions | None) -> SourceOptions | None:
    """A set's data-set options: the protocol's own, where the command line gives none (`--data-revision` pins a
    protocol's Hub set, say)."""
    if item.options is None:
        return given
    if given is None:
        return item.options
    overrides = {name: value for name, value in dataclasses.asdict(given).items() if value is not None}
    return dataclasses.replace(item.options, **overrides)


def balanced_sample(records: list[Record], max_per_class: int, seed: int, name: str) -> list[Record]:
    """Up to `max_per_class` real and as many fake records, drawn without replacement, in their original order.

    The draw depends on `seed` and the set's `name` only (not on the other sets or their order).
    """
    if isinstance(max_per_class, bool) or not isinstance(max_per_class, int) or max_per_class < 1:
        raise ValueError(f"max_per_class={max_per_class!r}; pass a positive number of images per class, e.g. 1000.")
    rng = np.random.default_rng([int(seed), zlib.crc32(name.encode("utf-8"))])
    keep = []
    for label in (REAL, FAKE):
        members = [i for i, record in enumerate(records) if record.label == label]
        if len(members) > max_per_class:
            members = rng.choice(members, size=max_per_class, replace=False).tolist()
        keep += members
    return [records[i] for i in sorted(keep)]


def load_sets(sets: list[EvalSet], layout: str = "auto", split: str | None = None, generator: str | None = None,
              max_per_class: int | None = None, seed: int = 0, protocol: str | None = None,
              options: SourceOptions | None = None) -> LoadedSets:
    """Read every set's records (named sets relabelled with the set's name as generator), optionally sampled.
    `options` say how to read the sets that are data sets (`item_cli.data.sources`)."""
    if not sets:
        raise ValueError("No data sets given; pass --data [NAME=]PATH or --protocol.")
    if generator is not None and any(item.named for item in sets):
        raise ValueError(
            f"--generator {generator!r} applies to a single unnamed --data only; named sets already use their name "
            "as the generator. Drop --generator, or name the set: --data NAME=PATH."
        )
    records, skipped, counts = [], [], {}
    # Folders beside data sets ignore the data-set options (a folder alone refuses them: they would mean nothing).
    mixed = any(source_kind(item.path) is not None for item in sets)
    for item in sets:
        given = _set_options(item, options if not mixed or source_kind(item.path) is not None else None)
        set_split = split if split is not None or given is None else given.split  # a protocol's own split
        found, dropped = load_records(item.path, layout=layout, split=set_split, generator=generator, options=given)
        if item.named:
            found = [dataclasses.replace(record, generator=item.name) for record in found]
        found_real, found_fake = _count(found)
        if max_per_class is not None:  # per group of the table: the set, or each generator of an unnamed folder
            groups = {}
            for record in found:
                groups.setdefault(record.generator, []).append(record)
            kept = {id(r) for name, group in groups.items() for r in balanced_sample(group, max_per_class, seed, name)}
            found = [record for record in found if id(record) in kept]
        real, fake = _count(found)
        counts[item.name] = {"path": str(item.path), "real": real, "fake": fake, "found_real": found_real,
                             "found_fake": found_fake}
        records += found
        skipped += dropped
    return LoadedSets(list(sets), records, skipped, counts, protocol)


def _count(records: list[Record]) -> tuple[int, int]:
    return sum(r.label == REAL for r in records), sum(r.label == FAKE for r in records)
