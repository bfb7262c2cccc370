"""One vocabulary for every `item` command (issue 17): an option that several commands take has one spelling, one
help text and one default everywhere; every option has help; every --help shows defaults and dashed names."""

import argparse
import importlib

import pytest

from item_cli.args import SHARED, HelpFormatter
from item_cli.cli import COMMANDS

# Options whose help may differ by command, and why.
OWN_HELP = {
    "--output": "what is written there differs by command",
    "--data": "one set (train, calibrate, cache, ablate) or repeatable named sets (evaluate, audit): checked below",
}
# (command, option): a different default or help, and why.
EXCEPTIONS = {
    ("ablate", "--threshold"): "the heads are new: no checkpoint threshold applies, 0.5 unless given",
    ("serve", "--model"): "defaults to $ITEM_MODEL (a Space sets it)",
}
# Spellings the vocabulary replaced: no command shows them in --help.
RETIRED = ("--output_dir", "--output-dir", "--cache_dir", "--cache-batch-size", "--cache_batch_size",
           "--num_train_epochs", "--num-train-epochs", "--learning_rate", "--per-device-train-batch-size")


def parsers():
    for name in COMMANDS:
        module = importlib.import_module(f"item_cli.commands.{name}")
        yield name, module.build_parser(f"item {name}")


@pytest.fixture(scope="module")
def every_parser():
    return dict(parsers())


def shown_options(parser):
    """(flags, action) of every option --help shows."""
    return [(action.option_strings, action) for action in parser._actions
            if action.option_strings and action.help != argparse.SUPPRESS and action.dest != "help"]


def test_shared_options_are_spelled_helped_and_defaulted_alike(every_parser):
    seen = {}
    for command, parser in every_parser.items():
        for flags, action in shown_options(parser):
            for flag in flags:
                if flag in OWN_HELP or (command, flag) in EXCEPTIONS:
                    continue
                key = (flag, type(action).__name__)
                entry = (action.help, repr(action.default))
                seen.setdefault(key, {}).setdefault(entry, []).append(command)
    differing = {key: value for key, value in seen.items() if len(value) > 1}
    assert not differing, f"options that differ between commands: {differing}"
    for flag, option in SHARED.items():  # the commands that take a shared option take it as args.py defines it
        for (seen_flag, _), variants in seen.items():
            if seen_flag == flag:
                (help_text, default), = variants
                assert help_text == option.help and default == repr(option.default), (flag, variants)


def test_data_is_one_option_of_two_kinds(every_parser):
    helps = {}
    for command, parser in every_parser.items():
        for flags, action in shown_options(parser):
            if "--data" in flags:
                helps.setdefault(type(action).__name__, set()).add(action.help)
    assert all(len(texts) == 1 for texts in helps.values()), helps
    assert set(helps) == {"_StoreAction", "_AppendAction"}


def test_every_option_has_help_and_dashes(every_parser):
    for command, parser in every_parser.items():
        for flags, action in shown_options(parser):
            assert action.help and action.help.strip(), f"item {command} {flags}: no help"
            assert all("_" not in flag for flag in flags), f"item {command} shows {flags}"
            assert not set(flags) & set(RETIRED), f"item {command} shows {flags}"
        assert isinstance(parser.formatter_class, type) and issubclass(parser.formatter_class, HelpFormatter) or \
            command == "serve"


def test_help_shows_defaults_and_no_backticks(every_parser):
    for command, parser in every_parser.items():
        assert "`" not in parser.format_help(), command
    for command in ("detect", "evaluate", "ablate", "cache", "train"):
        assert "(default: 2)" in every_parser[command].format_help()  # --batch-size, the frozen networks' batch
    assert "--head-batch-size N   images per batch of the head's training (default: 256)" in \
        every_parser["ablate"].format_help()


@pytest.mark.parametrize("command", ["train", "calibrate", "evaluate", "ablate", "cache"])
def test_cache_dir_and_batch_size_everywhere(every_parser, command):
    flags = {flag for option_strings, _ in shown_options(every_parser[command]) for flag in option_strings}
    assert {"--cache-dir", "--batch-size", "--verbose"} <= flags


def test_every_command_that_writes_files_takes_output(every_parser):
    for command in ("build", "train", "calibrate", "evaluate", "audit", "ablate", "benchmark", "demo"):
        flags = {flag for option_strings, _ in shown_options(every_parser[command]) for flag in option_strings}
        assert "--output" in flags, command


def test_train_takes_the_vocabulary_and_trainers_names(every_parser):
    parser = every_parser["train"]
    common = ["--model", "m", "--data", "d"]
    new = parser.parse_args(common + ["--output", "o", "--epochs", "3", "--learning-rate", "0.01", "--batch-size", "4",
                                      "--head-batch-size", "32", "--cache-dir", "c"])
    old = parser.parse_args(common + ["--output_dir", "o", "--num_train_epochs", "3", "--learning_rate", "0.01",
                                      "--batch-size", "4", "--per_device_train_batch_size", "32", "--cache_dir", "c"])
    for args in (new, old):
        assert (args.output_dir, args.num_train_epochs, args.learning_rate, args.batch_size,
                args.per_device_train_batch_size, args.cache_dir) == ("o", 3, 0.01, 4, 32, "c")
    defaults = parser.parse_args(common)
    assert (defaults.num_train_epochs, defaults.learning_rate, defaults.per_device_train_batch_size) == (10, 1e-3, 256)


def test_ablate_separates_the_two_batches(every_parser):
    args = every_parser["ablate"].parse_args(["--model", "m", "--data", "d", "--batch-size", "4", "--head-batch-size", "8"])
    assert (args.batch_size, args.head_batch_size) == (4, 8)
    with pytest.raises(SystemExit):
        every_parser["ablate"].parse_args(["--model", "m", "--data", "d", "--cache-batch-size", "4"])
