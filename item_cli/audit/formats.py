"""The audit's warning about a condition that makes the classes differ in file format by construction.

Some papers evaluate with the fake images alone JPEG-compressed (e.g. at quality 96), to "match" JPEG reals. It
does not remove a format shortcut: it moves it. The fakes all carry one fresh JPEG at one quality (and 4:2:0
chroma subsampling from PIL's encoder), the reals whatever compression their source gave them, so the two
classes still differ in their compression history, and a detector that scores well may be reading that. ITEM
offers it only as the explicit, named `item evaluate --fake-only-jpeg Q`; `--equalize jpeg:Q` re-encodes both
classes alike instead.
"""

from __future__ import annotations


def fake_only_jpeg_warning(quality: int) -> str:
    """The warning a run with `--fake-only-jpeg quality` logs and records in metrics.json."""
    return (f"--fake-only-jpeg {quality}: only the FAKE images were JPEG-compressed (quality {quality}), the real ones "
            "kept their own files. This puts a format difference between the classes (every fake carries one "
            f"fresh JPEG at quality {quality}, each real its source's compression): a detector can score well by "
            "reading the compression instead of the content. Report it as this named condition, never as 'clean'; "
            "--equalize jpeg:Q re-encodes both classes alike.")
