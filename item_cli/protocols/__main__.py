"""`python -m item_cli.protocols manifest NAME_OR_FILE --protocol-root DIR [--until YYYY-MM] [--role R] --output DIR`.

Writes one CSV manifest (`path,label,generator`, generator = the set's name) with every set of a protocol's role,
for the commands that take one `--data` (`item train`): e.g. the generators of a chronological protocol released
by a month, `aigenbench-until-2022-12-train.csv`. Prints the manifest's path. `python -m item_cli.protocols list`
prints the built-in protocols.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
from pathlib import Path

from . import ROLES, list_protocols, load_protocol, write_manifest


def write_role_manifest(name_or_path: str, root: str, role: str, output: str, until: str | None = None) -> Path:
    """One manifest with every set of `role` (a chronological protocol's roles from `until`); returns its path."""
    protocol = load_protocol(name_or_path, root=root, until=until)
    chosen = protocol.select(role)
    if not chosen:
        raise ValueError(f"Protocol {protocol.name!r} has no {role!r} sets" + (f" with --until {until}." if until else "."))
    hub = [item.name for item in chosen if item.hub is not None]
    if hub:
        raise ValueError(f"Sets {', '.join(hub)} are Hub data sets; pass them as --data hf:... instead of a manifest.")
    rows = []
    with tempfile.TemporaryDirectory(prefix="item-manifest-") as scratch:
        for item in chosen:
            if item.path is not None and Path(item.path).is_file():  # a set given as a manifest: its rows as they are
                raise ValueError(f"Set {item.name!r} is a manifest ({item.path}); combine manifests yourself.")
            with open(write_manifest(item, Path(scratch) / f"{len(rows)}.csv"), newline="", encoding="utf-8") as handle:
                rows += list(csv.reader(handle))[1:]
    target = Path(output) / (f"{protocol.name}-until-{until}-{role}.csv" if until else f"{protocol.name}-{role}.csv")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    with open(partial, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(("path", "label", "generator"))
        writer.writerows(rows)
    os.replace(partial, target)
    return target


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m item_cli.protocols", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="print the built-in protocols")
    manifest = commands.add_parser("manifest", help="write one CSV manifest with every set of a role")
    manifest.add_argument("protocol", metavar="NAME_OR_FILE")
    manifest.add_argument("--protocol-root", required=True, metavar="DIR", help="the folder that holds the sets")
    manifest.add_argument("--role", choices=ROLES, default="train", help="the sets of this role (default train)")
    manifest.add_argument("--until", default=None, metavar="YYYY-MM", help="chronological protocols: roles by date")
    manifest.add_argument("--output", default=".", metavar="DIR", help="folder for the manifest (default .)")
    args = parser.parse_args(argv)
    if args.command == "list":
        print("\n".join(list_protocols()))
        return 0
    try:
        print(write_role_manifest(args.protocol, args.protocol_root, args.role, args.output, args.until))
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
