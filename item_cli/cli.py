"""The `item` command line: build, detect, train, evaluate, benchmark, demo.

Each sub-command lives in its own module with `add_arguments(parser)` and `run(args) -> int`; this file
only wires them together, and imports a module when its command runs (the CLI starts fast).
"""

import argparse
import importlib
import sys

COMMANDS = {
    "build": ("item_cli.commands.build", "assemble a checkpoint folder from a backbone, a captioner and a detector"),
    "detect": ("item_cli.commands.detect", "score images or folders: label, fake probability, caption, objects"),
    "train": ("item_cli.commands.train", "train the head with Trainer on a data folder or CSV manifest"),
    "evaluate": ("item_cli.commands.evaluate", "per-generator accuracy / AP / AUC, robustness, plots"),
    "calibrate": ("item_cli.commands.calibrate", "choose the decision threshold on validation data"),
    "cache": ("item_cli.commands.cache", "fill the caption/box and feature caches ahead of time (shards under accelerate launch)"),
    "benchmark": ("item_cli.commands.benchmark", "time every stage on real-size architectures"),
    "demo": ("item_cli.commands.demo", "offline smoke run: tiny random checkpoint + detect on sample photos"),
}


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    parser = argparse.ArgumentParser(prog="item", description="ITEM: detect AI-generated images by image-text misalignment.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    modules = {}
    requested = next((arg for arg in sys.argv[1:] if not arg.startswith("-")), None)
    for name, (module_name, help_text) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        if name == requested:  # only the command that runs is imported
            try:
                modules[name] = importlib.import_module(module_name)
            except ModuleNotFoundError as error:
                if error.name != module_name:
                    raise
                continue
            modules[name].add_arguments(sub)
    return parser, modules


def main(argv: list[str] | None = None) -> int:
    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    parser, modules = build_parser()
    args = parser.parse_args()
    if args.command not in modules:
        parser.error(f"the {args.command!r} command is not available in this installation")
    return modules[args.command].run(args) or 0


if __name__ == "__main__":
    sys.exit(main())
