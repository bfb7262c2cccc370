"""A newcomer's first hour (issue 17): without the optional extras every command gives a result or one `error:`
line; options are checked before any frozen network runs; a mistyped --model is named at once; a missing path is
one skipped record; long steps report progress into a log file; stderr holds only our own lines."""

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from helpers import NetworkCalls, make_cnndetection, write_images

from item_cli.cli import main
from item_cli.console import Progress

REPO = Path(__file__).resolve().parent.parent
# Python's startup imports sitecustomize from the path: this one makes the named top-level modules unimportable,
# as on a machine where the extra that installs them is missing.
BLOCKER = textwrap.dedent("""
    import os, sys

    class HideExtras:
        hidden = set(os.environ.get("ITEM_TEST_HIDE", "").split(","))

        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in self.hidden:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, HideExtras())
""")


# Several `item` commands in one fresh process (each start costs seconds), each section marked on both streams.
DRIVER = """
import json, sys
from item_cli.cli import main
for name, arguments in json.loads(sys.argv[1]):
    for stream in (sys.stdout, sys.stderr):
        print(f"=== {name}", file=stream, flush=True)
    try:
        code = main(arguments)
    except SystemExit as exit:
        code = exit.code or 0
    print(f"=== exit {code}", file=sys.stderr, flush=True)
"""


def run_commands(commands: dict, cwd: Path, hide=(), env=None) -> dict:
    """{name: (exit code, stdout, stderr)} of `item` commands run in one fresh process, its stderr into a file (not
    a terminal), with the modules `hide` unimportable."""
    site = cwd / "site-hide"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(BLOCKER)
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
                   "ITEM_TEST_HIDE": ",".join(hide), "HF_HUB_OFFLINE": "1", **(env or {})}
    environment.pop("TRANSFORMERS_VERBOSITY", None)
    with open(cwd / "stderr.txt", "w+b") as stderr:
        done = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(list(commands.items()))], cwd=cwd,
                              stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL, env=environment,
                              timeout=600)
        stderr.seek(0)
        err = stderr.read().decode()
    assert "Traceback" not in err, err
    outs = dict(re.findall(r"=== (\S+)\n(.*?)(?==== |\Z)", done.stdout.decode(), re.S))
    sections = re.findall(r"=== (\S+)\n(.*?)=== exit (\d+)\n", err, re.S)
    assert [name for name, _, _ in sections] == list(commands), err
    return {name: (int(code), outs.get(name, ""), text) for name, text, code in sections}


@pytest.fixture(scope="module")
def first_hour(checkpoint, tmp_path_factory):
    """A newcomer's commands, without matplotlib and Gradio, stderr in a file, progress lines every update."""
    root = tmp_path_factory.mktemp("first-hour")
    data = make_cnndetection(root / "cnn", generators=("progan",), per_class=2)
    write_images(root / "images", 3, np.random.default_rng(1))
    with pytest.MonkeyPatch.context() as patch:  # filled here: the tiny captioner is slow and says nothing
        NetworkCalls(patch, caption="a dog on a road")
        assert main(["cache", "--model", str(checkpoint), "--data", str(data), "--cache-dir", str(root / "cache"),
                     "--features"]) == 0
    commands = {
        "help": ["demo", "--help"],
        "serve": ["serve", "--model", "no-such-folder/"],
        "evaluate": ["evaluate", "--model", str(checkpoint), "--data", str(data), "--output", "out",
                     "--cache-dir", "cache", "--gallery-size", "0"],
        "detect": ["detect", "images", "missing.jpg", "--model", str(checkpoint), "--json", "--batch-size", "2",
                   "--device", "cpu", "--overlay", "pictures"],
    }
    return root, run_commands(commands, root, hide=("matplotlib", "gradio"), env={"ITEM_PROGRESS_INTERVAL": "0"})


# ------------------------------------------------------------------------------------- point 2: no extras
def test_evaluate_without_matplotlib_writes_every_number_and_says_how_to_get_plots(first_hour):
    root, runs = first_hour
    code, out, err = runs["evaluate"]
    assert code == 0, err
    assert err.strip().splitlines()[0] == ('matplotlib is not installed: no PNG plots this time '
                                          '(pip install "item-detector[eval]" adds them)')
    results = json.loads((root / "out" / "metrics.json").read_text())
    assert results["images"] == 4 and "per_generator.png" not in results["files"]
    assert not list((root / "out").glob("*.png"))
    assert "<h2>Plots</h2>" not in (root / "out" / "report.html").read_text()  # point 10: no empty heading
    assert "| progan |" in out


def test_serve_without_gradio_is_one_error_line_before_any_work(first_hour):
    code, _, err = first_hour[1]["serve"]
    assert code == 2 and err.strip().splitlines() == [
        'error: The ITEM web app needs Gradio: pip install "item-detector[app]"'], err


# ------------------------------------------------------------------------------------- point 9: quiet stderr
def test_help_prints_nothing_on_stderr(first_hour):
    code, out, err = first_hour[1]["help"]
    assert code == 0 and "--spacy-model" in out and err == "", err  # no torchvision fallbacks, no library warnings


# ------------------------------------------------------------------------------------- point 3: checked first
@pytest.fixture
def forbidden(monkeypatch):
    """Any frozen network call fails the test."""
    return NetworkCalls(monkeypatch, forbid=True)


def one_class(root: Path) -> Path:
    write_images(root / "progan" / "0_real", 3, np.random.default_rng(0))
    return root


@pytest.mark.parametrize("extra, message", [
    (["--calibrate", "fpr"], "--calibrate fpr needs --target-fpr"),
    (["--target-fpr", "0.05"], "--target-fpr 0.05 applies to --calibrate fpr only"),
    (["--blur-prob", "0.5"], "needs --train-on images"),
    (["--one-class"], "holds one class only (3 real, 0 fake)"),
])
def test_train_refuses_bad_options_before_any_network_runs(checkpoint, labelled_data, tmp_path, capsys, forbidden,
                                                             extra, message):
    data = one_class(tmp_path / "one") if extra == ["--one-class"] else labelled_data
    extra = [] if extra == ["--one-class"] else extra
    code = main(["train", "--model", str(checkpoint), "--data", str(data), "--output", str(tmp_path / "out"),
                 "--cache-dir", str(tmp_path / "cache"), "--use-cpu", *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("error:") == 1, err
    assert forbidden.total() == 0 and not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


def test_calibrate_refuses_one_class_before_scoring(checkpoint, tmp_path, capsys, forbidden):
    code = main(["calibrate", "--model", str(checkpoint), "--data", str(one_class(tmp_path / "one")),
                 "--output", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache")])
    assert code == 2 and "holds one class only" in capsys.readouterr().err
    assert forbidden.total() == 0 and not (tmp_path / "out").exists()


def test_a_failed_training_run_leaves_nothing_behind(tmp_path):
    from item_cli.train_checks import WORK_FOLDER, removed_on_failure

    output = tmp_path / "out"
    with pytest.raises(ValueError), removed_on_failure(output):
        (output / WORK_FOLDER / "checkpoint-10").mkdir(parents=True)
        (output / WORK_FOLDER / "checkpoint-10" / "training_args.bin").write_bytes(b"pickle")
        raise ValueError("calibration failed")
    assert not output.exists()
    (output / WORK_FOLDER / "checkpoint-5").mkdir(parents=True)  # a resumed run's earlier checkpoints stay
    with pytest.raises(ValueError), removed_on_failure(output):
        raise ValueError("failed again")
    assert (output / WORK_FOLDER / "checkpoint-5").is_dir()


# ------------------------------------------------------------------------------------- point 4: --model
@pytest.mark.parametrize("command", ["detect", "evaluate", "train", "cache", "ablate"])
def test_a_mistyped_model_folder_is_named_at_once(command, tmp_path, capsys, labelled_data):
    arguments = {"detect": [str(labelled_data)], "train": ["--data", str(labelled_data), "--output", str(tmp_path / "o")]}
    code = main([command, "--model", "./item-bsae", *arguments.get(command, ["--data", str(labelled_data)])])
    assert code == 2 and capsys.readouterr().err.strip() == "error: no such checkpoint folder: ./item-bsae"


def test_offline_a_hub_id_fails_at_once(tmp_path, capsys, monkeypatch, labelled_data):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    code = main(["detect", str(labelled_data), "--model", "someone/item-not-cached"])
    err = capsys.readouterr().err
    assert code == 2 and "this machine is offline (HF_HUB_OFFLINE=1)" in err and err.count("\n") == 1


# ------------------------------------------------------------------------- points 5, 8, 9, 10: one detect run
def test_detect_skips_a_missing_path_reports_progress_in_a_log_and_says_nothing_else(first_hour):
    root, runs = first_hour
    code, out, err = runs["detect"]
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert {"path": "missing.jpg", "error": "no such file or folder"} in records  # point 5: one skipped record
    assert sum("fake_probability" in record for record in records) == 3 and len(records) == 4
    ours = [r"Scoring: [0-9]+ / 3 images \([0-9]+%\), [0-9.e+-]+ images/s(, about [0-9.]+ (s|min|h) left)?",
            r"3 images scored, 1 file skipped", r"explanation pictures of the scored images in pictures/"]
    lines = err.strip().splitlines()
    assert all(any(re.fullmatch(pattern, line) for pattern in ours) for line in lines), err  # point 9: no chatter
    assert sum(line.startswith("Scoring: ") for line in lines) >= 2  # point 8: progress though stderr is a file
    assert "explanation pictures of the scored images in pictures/" in lines  # point 10
    assert len(list((root / "pictures").glob("*.png"))) == 3


def test_progress_lines_when_stderr_is_a_file(capsys):
    progress = Progress(3, "Computing captions, boxes and features", interval_s=0)
    for _ in range(3):
        progress.update(1)
    progress.close()
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("Computing captions, boxes and features: 1 / 3 images (33%), ")
    assert "left" in lines[0] and lines[-1].startswith("Computing captions, boxes and features: 3 / 3 images (100%)")


def test_filling_the_cache_reports_progress_into_a_log(checkpoint, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ITEM_PROGRESS_INTERVAL", "0")
    data = make_cnndetection(tmp_path / "cnn", generators=("progan",), per_class=2)
    NetworkCalls(monkeypatch, caption="a dog on a road")
    code = main(["cache", "--model", str(checkpoint), "--data", str(data), "--cache-dir", str(tmp_path / "cache"),
                 "--batch-size", "2"])
    captured = capsys.readouterr()
    assert code == 0 and "4 images cached" in captured.out
    assert "Computing captions, boxes and features: 2 / 4 images (50%)" in captured.err
    assert "Computing captions, boxes and features: 4 / 4 images (100%)" in captured.err


# ------------------------------------------------------------------------------------- point 10: plots
def test_no_robustness_placeholder_and_a_legend_above_the_bars(tmp_path):
    from item_cli.evaluation.report import plot_robustness

    conditions = {"clean": {"perturbation": None, "generators": {}}}
    assert plot_robustness(conditions, tmp_path / "robustness.png") is False
    assert not (tmp_path / "robustness.png").exists()


def test_per_generator_legend_leaves_the_bars_free(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from item_cli.evaluation import report

    kept = {}
    monkeypatch.setattr(plt, "close", lambda figure: kept.setdefault("figure", figure))
    table = {name: {"acc_real": 0.9, "acc_fake": 0.95, "acc": 0.92, "ap": 0.99} for name in ("a", "b", "mean")}
    report.plot_per_generator(table, tmp_path / "per_generator.png", "title")
    figure = kept["figure"]
    axes = figure.axes[0]
    renderer = figure.canvas.get_renderer()
    legend, plot_area = axes.get_legend().get_window_extent(renderer), axes.get_window_extent(renderer)
    assert legend.y0 >= plot_area.y1 - 1  # above the plot area, not over the bars
