"""Time that provenance adds per image: metadata only, a C2PA-signed file, the watermark decode (512 and 1024 px).

    python benchmarks/provenance_time.py     # prints one line per case (median of repeated reads)

Needs the [provenance] extra for the C2PA and watermark rows; the C2PA file is signed here by a throwaway test chain
(the same helpers as tests/test_provenance.py).
"""

import io
import statistics
import sys
import time
from pathlib import Path

from PIL import Image, PngImagePlugin

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from test_provenance import A1111, chain, encoded, photo, sign  # noqa: E402

from item_detector.provenance_item import read_provenance  # noqa: E402


def median_ms(function, repeats: int = 9) -> float:
    function()  # the first call loads the libraries
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def main() -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", A1111)
    buffer = io.BytesIO()
    Image.fromarray(photo((512, 512))).save(buffer, "PNG", pnginfo=info)
    png = buffer.getvalue()
    test_chain = chain.__wrapped__(_Factory())  # the fixture's function itself: a throwaway ES256 chain
    signed_jpeg = sign(test_chain, encoded(photo((96, 64)), quality=90), "image/jpeg")
    rows = [("metadata only, 512 px PNG with A1111 parameters", lambda: read_provenance(png, watermark=False))]
    rows.append(("C2PA-signed JPEG (96 x 64), metadata + C2PA validation", lambda: read_provenance(signed_jpeg, watermark=False)))
    for side in (512, 1024):
        jpeg = encoded(photo((side, side)), quality=90)
        rows.append((f"{side} x {side} JPEG, everything (decode + metadata + watermark)", lambda data=jpeg: read_provenance(data)))
    for name, function in rows:
        print(f"{median_ms(function):9.2f} ms  {name}")


class _Factory:
    """The minimum of pytest's tmp_path_factory the signing fixture uses."""

    def mktemp(self, name):
        import tempfile

        return Path(tempfile.mkdtemp(prefix=name))


if __name__ == "__main__":
    main()
