"""Nothing lost when a run is stopped: `item train` resumes exactly, a checkpoint folder is replaced only by a
complete one, and the command line keeps its results on stdout and its user errors on one line."""

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import fixed_captions
import torch
from safetensors.torch import load_file

from item_cli.cli import main
from item_cli.resume import COMPLETE_MARKER, is_complete
from item_cli.training import train, training_arguments

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def cache_dir(checkpoint, labelled_data, tmp_path_factory):
    """A cache filled once (fixed captions), so that every run here trains on the same features."""
    folder = tmp_path_factory.mktemp("resume-cache")
    with fixed_captions("a photo of a dog"):
        assert main(["cache", "--model", str(checkpoint), "--data", str(labelled_data), "--features", "--cache-dir", str(folder)]) == 0
    return folder


def _head(folder: Path) -> dict:
    return {k: v for k, v in load_file(folder / "model.safetensors").items() if k.startswith("head.")}


KILLED_TRAIN = textwrap.dedent(
    r'''
    import os, signal, sys
    from item_cli import resume

    original = resume.CompleteCheckpoints.on_save
    def on_save(self, args, state, control, **kwargs):
        original(self, args, state, control, **kwargs)
        if state.epoch >= 3:  # killed (not a clean exit) right after epoch 3's checkpoint is complete
            os.kill(os.getpid(), signal.SIGKILL)
        return control
    resume.CompleteCheckpoints.on_save = on_save
    from item_cli.cli import main
    sys.exit(main(sys.argv[1:]))
    '''
)


def _train_command(checkpoint, labelled_data, cache_dir, output, *extra):
    options = ["--num_train_epochs", "6", "--per_device_train_batch_size", "4", "--learning_rate", "0.05",
               "--use_cpu", "--disable_tqdm", "true", "--seed", "3", "--val-fraction", "0.25"]
    return ["train", "--model", str(checkpoint), "--data", str(labelled_data), "--cache-dir", str(cache_dir),
            "--output_dir", str(output), *options, *extra]


def test_a_killed_run_resumes_to_the_uninterrupted_result(checkpoint, labelled_data, cache_dir, tmp_path, capsys):
    assert main(_train_command(checkpoint, labelled_data, cache_dir, tmp_path / "straight")) == 0
    straight = json.loads(capsys.readouterr().out)

    killed = subprocess.run([sys.executable, "-c", KILLED_TRAIN, *_train_command(checkpoint, labelled_data, cache_dir, tmp_path / "resumed")],
                            env=ENV, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    work = tmp_path / "resumed" / "trainer-checkpoints"
    assert not (tmp_path / "resumed" / "model.safetensors").exists()  # nothing final was written
    # A newer checkpoint cut short while being written (as Ctrl-C during Trainer's save leaves it): never resumed from.
    newest = max(work.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    cut = work / "checkpoint-999"
    cut.mkdir()
    (cut / "model.safetensors").write_bytes((newest / "model.safetensors").read_bytes()[:100])
    assert is_complete(newest) and not is_complete(cut)

    assert main(_train_command(checkpoint, labelled_data, cache_dir, tmp_path / "resumed", "--resume_from_checkpoint", "true")) == 0
    resumed = json.loads(capsys.readouterr().out)
    for name, tensor in _head(tmp_path / "straight").items():  # the same head as without the interruption
        torch.testing.assert_close(_head(tmp_path / "resumed")[name], tensor, atol=1e-6, rtol=0)
    assert resumed["results"] == straight["results"]


def test_resume_without_a_complete_checkpoint_is_refused(checkpoint, labelled_data, cache_dir, tmp_path, capsys):
    work = tmp_path / "out" / "trainer-checkpoints" / "checkpoint-4"
    work.mkdir(parents=True)
    (work / "modeling_item.py").write_text("# all that a Ctrl-C during the save left")
    code = main(_train_command(checkpoint, labelled_data, cache_dir, tmp_path / "out", "--resume_from_checkpoint", "true"))
    err = capsys.readouterr().err
    assert code == 2 and "no complete checkpoint to resume from" in err and "Traceback" not in err


KILLED_SAVE = textwrap.dedent(
    r'''
    import os, signal, sys
    from item_cli import checkpoint

    original = checkpoint.write_model_card
    def write_model_card(folder, *args, **kwargs):  # config.json and the weights are written by now
        os.kill(os.getpid(), signal.SIGKILL)
    checkpoint.write_model_card = write_model_card
    from item_cli.cli import main
    sys.exit(main(sys.argv[1:]))
    '''
)


def test_a_run_killed_while_saving_leaves_the_old_checkpoint_whole(checkpoint, labelled_data, cache_dir, tmp_path, capsys):
    output = tmp_path / "model"
    assert main(_train_command(checkpoint, labelled_data, cache_dir, output)) == 0
    before = {path.relative_to(output): path.read_bytes() for path in output.rglob("*") if path.is_file()}
    killed = subprocess.run([sys.executable, "-c", KILLED_SAVE, *_train_command(checkpoint, labelled_data, cache_dir, output,
                                                                                  "--learning_rate", "0.5")],
                            env=ENV, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    after = {path.relative_to(output): path.read_bytes() for path in output.rglob("*") if path.is_file()}
    after = {name: data for name, data in after.items() if name.parts[0] != "trainer-checkpoints"}
    assert after == before  # byte for byte: the good checkpoint was not touched
    # The next run clears what the killed one left beside it.
    assert main(_train_command(checkpoint, labelled_data, cache_dir, output)) == 0
    assert not list(tmp_path.glob(".model.partial-*"))


def test_a_folder_that_is_not_a_checkpoint_is_never_replaced(checkpoint, labelled_data, cache_dir, tmp_path, capsys):
    precious = tmp_path / "thesis"
    precious.mkdir()
    (precious / "chapter1.tex").write_text("...")
    assert main(_train_command(checkpoint, labelled_data, cache_dir, precious)) == 2
    assert "is not an ITEM checkpoint" in capsys.readouterr().err
    assert (precious / "chapter1.tex").read_text() == "..."


def test_train_prints_only_its_result_on_stdout(checkpoint, labelled_data, cache_dir, tmp_path):
    """`item train ... | jq` works: Trainer's log lines go to stderr."""
    command = [sys.executable, "-m", "item_cli.cli", *_train_command(checkpoint, labelled_data, cache_dir, tmp_path / "out")]
    command[command.index("6")] = "2"  # two epochs are enough here
    run = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout)  # the whole of stdout is one JSON document
    assert result["output_dir"] == str((tmp_path / "out").absolute()) and result["train_images"] > 0
    assert "'loss'" in run.stderr or '"loss"' in run.stderr  # Trainer's logs are there, not lost


def test_a_user_error_is_one_line_not_a_traceback(tiny_parts, tmp_path):
    from transformers import ViTConfig, ViTModel

    vit = tmp_path / "vit"
    ViTModel(ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=37,
                       image_size=32, patch_size=8)).save_pretrained(vit)
    run = subprocess.run([sys.executable, "-m", "item_cli.cli", "build", "--backbone", str(vit), "--captioner",
                          tiny_parts["captioner"], "--detector", tiny_parts["detectors"]["owlv2"], "--output", str(tmp_path / "o")],
                         env=ENV, capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "'vit'" in errors[0] and "clip" in errors[0]
    assert not (tmp_path / "o").exists()


def test_the_complete_marker_lists_every_file_of_the_checkpoint(checkpoint, labelled_data, cache_dir, tmp_path):
    args = training_arguments(tmp_path / "out", num_train_epochs=1, per_device_train_batch_size=4, use_cpu=True, disable_tqdm=True)
    train(checkpoint, labelled_data, args, cache_dir=cache_dir, val_fraction=0.25, keep_checkpoints=True)
    [folder] = (tmp_path / "out" / "trainer-checkpoints").glob("checkpoint-*")
    listed = set(json.loads((folder / COMPLETE_MARKER).read_text()))
    assert {"model.safetensors", "optimizer.pt", "scheduler.pt", "trainer_state.json"} <= listed
    assert listed == {p.name for p in folder.iterdir()} - {COMPLETE_MARKER}
