"""The `item` command line: build, detect, train, evaluate, calibrate, audit, ablate, cache, benchmark, serve, demo.

Each sub-command lives in `item_cli/commands/<name>.py` with `build_parser(prog) -> ArgumentParser` and
`run(args) -> int`; this file wires them together and imports a command's module only when it runs (the CLI
starts fast). What every command shares is here:

- results go to stdout, everything else (logs, progress) to stderr (`item_cli.console`); the libraries'
  warnings and progress bars only with --verbose;
- a user error (a bad value, a missing file) ends in one `error: ...` line and exit code 2, not a traceback
  (set ITEM_DEBUG=1 to see the traceback);
- Ctrl-C ends with exit code 130 and keeps what was finished (caches, complete checkpoints).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys

from . import console

COMMANDS = {
    "build": "assemble a checkpoint folder from a backbone, a captioner and a detector",
    "detect": "score images or folders: label, fake probability, caption, objects",
    "train": "train the head with Trainer on a data folder or CSV manifest",
    "evaluate": "per-generator accuracy / AP / AUC, robustness, plots",
    "calibrate": "choose the decision threshold on validation data",
    "audit": "shortcut audit: can file metadata alone (format, JPEG quality, size, EXIF) tell real from fake?",
    "ablate": "train the head for every distance x fusion (x sizes, seeds) from one cache: an ablation table",
    "cache": "fill the frozen-work cache ahead of time; --info and --prune to look after it",
    "benchmark": "time every stage on real-size architectures",
    "serve": "a web page to check images, with the explanation picture (needs the [app] extra)",
    "demo": "offline smoke run: tiny random checkpoint + detect on sample photos",
}


def top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="item", description="ITEM: detect AI-generated images by image-text misalignment.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        commands.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        parser = top_parser()
        if argv and argv[0] not in ("-h", "--help"):
            parser.error(f"unknown command {argv[0]!r}; choose one of {', '.join(COMMANDS)}")
        parser.print_help()
        return 0 if argv else 2
    name = argv[0]
    verbose = "--verbose" in argv
    console.quiet_libraries(verbose)  # before the command's imports: some libraries warn as they load
    with console.quiet_warnings(verbose):
        module = importlib.import_module(f"item_cli.commands.{name}")
        args = module.build_parser(f"item {name}").parse_args(argv[1:])
    console.configure_logging(verbose=getattr(args, "verbose", False))
    console.set_results_stream(sys.stdout)
    try:
        # library prints (Trainer's logs) never mix with results
        with contextlib.redirect_stdout(sys.stderr), console.quiet_warnings(verbose):
            return module.run(args) or 0
    except BrokenPipeError:  # `item detect ... | head`: the reader left; nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (ValueError, OSError) as error:
        if os.environ.get("ITEM_DEBUG"):
            raise
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        print(f"error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished work is kept (cached rows, complete checkpoints); run again to go on", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
