"""`item serve --model DIR [--host 127.0.0.1] [--port 7860]`: a web page to check images (needs the [app] extra).

The page itself lives in `item_cli/serve.py`, which also runs as a Hugging Face Space's app.py.
"""

from ..serve import build_parser, run  # noqa: F401  (the command's interface)
