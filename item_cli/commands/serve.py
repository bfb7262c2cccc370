"""`item serve --model M [--host 127.0.0.1] [--port 7860]`: a web page to check images (needs the [app] extra).

The page itself lives in item_cli/serve.py, which also runs as a Hugging Face Space's app.py (and therefore
imports nothing else of item_cli); this command gives it the options and messages every command has.
"""

from ..args import command_parser
from ..model_source import check_model_source
from ..serve import INSTALL_HINT, MODEL_ENV
from ..serve import build_parser as page_parser
from ..serve import run as serve_page


def build_parser(prog):
    parser = command_parser(prog, __doc__)
    # The page's own options (defined where a Space's app.py finds them); argparse lists them only in `_actions`.
    for action in page_parser(prog)._actions:  # noqa: SLF001
        if action.dest == "help":
            continue
        parser.add_argument(*action.option_strings, default=action.default, type=action.type, metavar=action.metavar,
                            help=action.help)
    return parser


def run(args) -> int:
    # Checked before any model is loaded: one line, no traceback.
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise ValueError(INSTALL_HINT) from None
    if not args.model:
        raise ValueError(f"no model: pass --model CHECKPOINT or set {MODEL_ENV}=CHECKPOINT.")
    check_model_source(args.model)
    return serve_page(args)
