"""A web page for checking images with an ITEM checkpoint (Gradio), locally or as a Hugging Face Space.

    python -m item_cli.serve --model item-clip-l14            # http://127.0.0.1:7860
    ITEM_MODEL=user/item-clip-l14 python app.py               # a Space: this file as app.py

"One image": drop, paste or click to upload an image; the page shows the verdict (label at the checkpoint's
decision threshold, or UNSURE inside its unsure band; fake probability, threshold), the explanation picture of `draw_explanation` (boxes
coloured by image-text similarity, least aligned object emphasised) and a table of the grounded objects.
A "Provenance" panel beside the verdict says what the file itself claims: Content Credentials (C2PA) and whether
their signature holds, generator metadata (XMP source type, Stable Diffusion front-end parameters), and known
invisible watermarks; it never changes the verdict. "Several images": drop many files; one table row per image, and the table as a CSV download.
A file that is not a readable image gives a message in the page, never a stack trace.

Gradio is optional: `pip install "item-detector[app]"`. Analytics are switched off (no network is assumed).
Reading and drawing come from the checkpoint's own remote code (`pipe.read_image`, `pipe.draw_explanation`), so
in a Space this file needs only gradio and transformers: set the Space variable `ITEM_MODEL` to the checkpoint's
Hub id.
"""

import argparse
import csv
import os
import tempfile
from pathlib import Path


MODEL_ENV = "ITEM_MODEL"
INSTALL_HINT = 'The ITEM web app needs Gradio: pip install "item-detector[app]"'
DISPLAY_MAX_SIZE = 1280  # longer side of the picture sent to the browser: a 6000-px photo is shrunk, then drawn on
BATCH_SIZE = 8
OBJECT_COLUMNS = ["noun", "similarity", "box (x0, y0, x1, y1)", "detector score"]
BATCH_COLUMNS = ["file", "verdict", "p(fake)", "threshold", "least aligned object", "similarity", "error", "caption"]


def _import_gradio():
    """Gradio, imported on use (an optional dependency) with analytics off: these machines have no internet."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    try:
        import gradio
    except ImportError as error:
        raise ImportError(INSTALL_HINT) from error
    return gradio


def load_upload(pipeline, path: str | os.PathLike, name: str | None = None):
    """An uploaded file as the pipeline reads it; `ValueError` with a readable reason otherwise."""
    name = name or Path(path).name
    try:
        return pipeline.read_image(path)
    except (ValueError, TypeError) as error:
        reason = str(error).replace(repr(os.fspath(path)), "it")
        raise ValueError(f"{name} could not be read: {reason}") from None


def verdict_markdown(result: dict) -> str:
    """The verdict as Markdown: label at the threshold, fake probability, least aligned object."""
    label = "FAKE (AI-generated)" if result["is_fake"] else "REAL (photo)"
    band = result.get("unsure_band")
    if result.get("verdict") == "unsure":
        label = "UNSURE (too close to call)"
    lines = [f"## {label}",
             f"p(fake) = **{result['fake_probability']:.2f}**, threshold {result['threshold']:.2f}"
             + (f", unsure between {band[0]:.2f} and {band[1]:.2f}" if band else ""),
             f"Caption: *{result['caption']}*"]
    if result["objects"]:
        worst = min(result["objects"], key=lambda item: item["similarity"])
        lines.append(f"Least aligned object: **{worst['noun']}** (similarity {worst['similarity']:.2f})")
    return "\n\n".join(lines)


def provenance_markdown(provenance: dict | None) -> str:
    """The "Provenance" panel: what each signal found, and what the signals do not mean."""
    if not provenance:
        return ""
    c2pa, metadata, mark = provenance["c2pa"], provenance["metadata"], provenance["watermark"]
    rows = []
    if c2pa.get("present") and c2pa.get("checked"):
        state = str(c2pa.get("validation_state")).replace("_", " ")
        rows.append(f"**Content Credentials (C2PA):** {state}" + (f" ({c2pa['reason']})" if c2pa.get("reason") else ""))
        rows.append(f"signed by {c2pa.get('signer') or 'unknown'}, claim generator {c2pa.get('claim_generator') or 'unknown'}; "
                    f"digital source type: {_last(c2pa.get('digital_source_type'))}")
    else:
        rows.append(f"**Content Credentials (C2PA):** {c2pa.get('note') or ('present' if c2pa.get('present') else 'none')}")
    if metadata.get("front_end") or metadata.get("digital_source_type") or metadata.get("software"):
        words = [f"{metadata['front_end']} generation parameters" if metadata.get("front_end") else None,
                 f"prompt: *{metadata['prompt'][:200]}*" if metadata.get("prompt") else None,
                 f"model: {metadata['model']}" if metadata.get("model") else None,
                 f"source type: {_last(metadata['digital_source_type'])}" if metadata.get("digital_source_type") else None,
                 f"software: {metadata['software']}" if metadata.get("software") else None]
        rows.append("**Metadata:** " + "; ".join(word for word in words if word))
    else:
        rows.append(f"**Metadata:** {metadata.get('note') or 'no generator fields'}")
    if mark.get("checked") and mark.get("bits_total"):
        rows.append(f"**Watermark:** {mark.get('matches') or 'no known watermark'} ({mark['level']}, "
                    f"{mark['bits_matched']}/{mark['bits_total']} bits)")
    else:
        rows.append(f"**Watermark:** {mark.get('note') or 'not checked'}")
    rows.append("*Absence of these signals proves nothing (most sites strip them); metadata can be forged; a valid "
                "signature says who signed, not that the picture is true. The verdict above comes from ITEM alone.*")
    return "### Provenance\n\n" + "\n\n".join(rows)


def _last(uri) -> str:
    return str(uri).rsplit("/", 1)[-1] if uri else "not stated"


def error_markdown(message: str) -> str:
    return f"### Could not check this file\n\n{message}"


def object_rows(result: dict) -> list[list]:
    """One table row per grounded object, least aligned first (the pipeline's order)."""
    return [[item["noun"], round(item["similarity"], 3), ", ".join(f"{v:.0f}" for v in item["box"]),
             round(item.get("box_score", float("nan")), 3)] for item in result["objects"]]


class Checker:
    """The loaded pipeline and the page's two actions; the methods return values for the page's components."""

    def __init__(self, model: str, device: str | None = None):
        from transformers import pipeline
        from transformers.utils import is_torch_cuda_available

        device = device or ("cuda" if is_torch_cuda_available() else "cpu")
        self.pipeline = pipeline("image-classification", model=model, trust_remote_code=True, device=device)

    def check_one(self, upload, gradio):
        """Image payload (not preprocessed, so a broken file reaches us) -> verdict, picture, objects table."""
        if not upload:
            return "", None, [], ""
        path = upload.get("path") if isinstance(upload, dict) else getattr(upload, "path", None)
        name = (upload.get("orig_name") if isinstance(upload, dict) else None) or (Path(path).name if path else "image")
        try:
            if not path:
                raise ValueError("The upload did not reach the server; try again.")
            image = load_upload(self.pipeline, path, name)
            if hasattr(self.pipeline, "read_provenance"):
                result = self.pipeline(image, explain=True, provenance=False)
                # From the uploaded file itself: the decoded image has lost its credentials and metadata.
                result["provenance"] = self.pipeline.read_provenance(path, pixels=image).to_dict()
            else:  # a checkpoint whose remote code predates provenance
                result = self.pipeline(image, explain=True)
        except ValueError as error:
            gradio.Warning(str(error))
            return error_markdown(str(error)), None, [], ""
        except Exception as error:  # a model failure must not reach the page as a stack trace
            gradio.Warning(f"{name}: the model failed ({type(error).__name__}: {error}).")
            return error_markdown(f"{name}: the model failed ({type(error).__name__}: {error})."), None, [], ""
        picture = self.pipeline.draw_explanation(image, result, max_size=DISPLAY_MAX_SIZE)
        return verdict_markdown(result), picture, object_rows(result), provenance_markdown(result.get("provenance"))

    def check_many(self, paths, gradio):
        """Uploaded files -> one table row per file (errors included) and the table as a CSV file."""
        if not paths:
            return [], None
        rows, images, readable = [], [], []
        for path in paths:
            path = getattr(path, "name", path)  # a tempfile wrapper in older Gradio, a str path in newer
            try:
                images.append(load_upload(self.pipeline, path))
                readable.append(len(rows))
                rows.append([Path(path).name] + [""] * (len(BATCH_COLUMNS) - 1))
            except ValueError as error:
                rows.append([Path(path).name, "not checked", "", "", "", "", str(error), ""])
        if len(readable) < len(rows):
            gradio.Warning(f"{len(rows) - len(readable)} of {len(rows)} files could not be read; see the error column.")
        for row_index, result in zip(readable, self._score(images)):
            rows[row_index] = self._batch_row(rows[row_index][0], result)
        csv_path = Path(tempfile.mkdtemp(prefix="item-")) / "item-results.csv"
        with open(csv_path, "w", newline="", encoding="utf-8") as handle:
            csv.writer(handle).writerows([BATCH_COLUMNS, *rows])
        return rows, str(csv_path)

    def _score(self, images: list) -> list:
        """Explanations for `images`, batched; an image that fails is retried alone so the rest still count."""
        if not images:
            return []
        try:
            return list(self.pipeline(images, explain=True, batch_size=BATCH_SIZE))
        except Exception:
            results = []
            for image in images:
                try:
                    results.append(self.pipeline(image, explain=True))
                except Exception as error:
                    results.append(f"the model failed ({type(error).__name__}: {error})")
            return results

    @staticmethod
    def _batch_row(name: str, result) -> list:
        if isinstance(result, str):
            return [name, "not checked", "", "", "", "", result, ""]
        worst = min(result["objects"], key=lambda item: item["similarity"]) if result["objects"] else None
        verdict = "UNSURE" if result.get("verdict") == "unsure" else "FAKE" if result["is_fake"] else "REAL"
        return [name, verdict, round(result["fake_probability"], 4),
                round(result["threshold"], 4), worst["noun"] if worst else "",
                round(worst["similarity"], 4) if worst else "", "", result["caption"]]


def checkpoint_title(model: str) -> str:
    """What the page calls the checkpoint: its Hub id, or its folder's name (never the server's path)."""
    folder = Path(model).expanduser()
    return folder.resolve().name if folder.is_dir() or folder.is_absolute() else model


def build_app(model: str, device: str | None = None):
    """A `gradio.Blocks` page for the ITEM checkpoint `model` (Hub id or folder), on `device` (default: cuda
    when available)."""
    gradio = _import_gradio()
    checker = Checker(model, device)
    with gradio.Blocks(title="ITEM: is this image AI-generated?", analytics_enabled=False) as app:
        gradio.Markdown(f"# Is this image AI-generated?\nITEM checkpoint `{checkpoint_title(model)}`. Boxes show the objects the caption"
                        " names, coloured by how well each matches its word relative to the image's other objects;"
                        " the verdict comes from the trained head.")
        with gradio.Tab("One image"):
            with gradio.Row():
                upload = gradio.Image(label="Image: drop, paste or click", type="filepath", image_mode=None,
                                      sources=["upload", "clipboard"], elem_id="upload")
                with gradio.Column():
                    verdict = gradio.Markdown(elem_id="verdict")
                    # No label badge: it would sit on the picture's verdict banner.
                    picture = gradio.Image(label="Explanation", show_label=False, type="pil", format="png",
                                           interactive=False, buttons=["download", "fullscreen"], elem_id="explanation")
                    provenance = gradio.Markdown(elem_id="provenance")
            objects = gradio.Dataframe(headers=OBJECT_COLUMNS, label="Objects, least aligned first",
                                       interactive=False, elem_id="objects")
            # preprocess=False: Gradio would open the file itself and fail with its own error on a broken one.
            # `upload` (drop, click or paste), not `change`: change fires again when the page itself updates.
            upload.upload(lambda payload: checker.check_one(payload, gradio), inputs=upload,
                          outputs=[verdict, picture, objects, provenance], preprocess=False)
            upload.clear(lambda: ("", None, [], ""), outputs=[verdict, picture, objects, provenance])
        with gradio.Tab("Several images"):
            files = gradio.File(label="Images", file_count="multiple", file_types=["image"], elem_id="files")
            table = gradio.Dataframe(headers=BATCH_COLUMNS, label="One row per image", interactive=False,
                                     elem_id="batch-table")
            download = gradio.File(label="Download the table (CSV)", interactive=False, elem_id="csv")
            files.upload(lambda paths: checker.check_many(paths, gradio), inputs=files, outputs=[table, download])
            files.clear(lambda: ([], None), outputs=[table, download])
    return app


def build_parser(prog: str = "item serve") -> argparse.ArgumentParser:
    """The options of `item serve` (also of `python -m item_cli.serve` and of a Space's app.py)."""
    parser = argparse.ArgumentParser(prog=prog, description="A web page that checks images with an ITEM checkpoint.",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model", default=os.environ.get(MODEL_ENV), metavar="M",
                        help=f"ITEM checkpoint: a local folder or a Hub id (ORG/NAME); a Space sets ${MODEL_ENV}")
    # A Space sets GRADIO_SERVER_NAME=0.0.0.0 and GRADIO_SERVER_PORT; honour them when no option is given.
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                        help="address to listen on (127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)),
                        help="port to listen on")
    parser.add_argument("--device", default=None, metavar="D",
                        help="torch device: cpu, cuda, cuda:1 ... (default: a GPU when there is one)")
    return parser


def run(args: argparse.Namespace) -> int:
    """Build the page and serve it until interrupted; a missing model or Gradio ends with a one-line message."""
    if not args.model:
        raise SystemExit(f"error: no model: pass --model CHECKPOINT or set {MODEL_ENV}=CHECKPOINT.")
    try:
        app = build_app(args.model, args.device)
    except ImportError as error:
        raise SystemExit(f"error: {error}") from None
    # quiet: Gradio's own start-up lines end with a hint about share=True, a public link this page never makes
    app.launch(server_name=args.host, server_port=args.port, show_error=True, quiet=True, prevent_thread_lock=True)
    print(f"ITEM web page on {app.local_url} (Ctrl-C stops it)", flush=True)
    app.block_thread()
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m item_cli.serve [--model M] [--host H] [--port P] [--device D]`, or a Space's `python app.py`."""
    return run(build_parser("python -m item_cli.serve").parse_args(argv))


if __name__ == "__main__":
    main()
