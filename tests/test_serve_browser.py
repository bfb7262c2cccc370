"""The web app of item_cli/serve.py in a real browser (Debian's chromium driven by playwright), on the tiny
checkpoint: one photo gives a verdict and an explanation picture, a broken file a readable message, several
files a table and a CSV. Skipped only when gradio, playwright or chromium is not installed.

Set ITEM_TEST_ARTIFACTS=/some/folder to keep the screenshots and the measured time to first result."""

import csv
import importlib.util
import io
import os
import shutil
import socket
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before anything imports gradio: no network here

from item_cli import serve  # noqa: E402

# Gradio's own pandas calls warn under pandas 3; nothing this project can change.
pytestmark = pytest.mark.filterwarnings("ignore:.*(no_silent_downcasting|copy keyword is deprecated)")

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
RESULT_TIMEOUT_MS = 90_000  # the first image also warms up the captioner, detector and spaCy on a busy CI core


def test_without_gradio_the_app_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "gradio", None)  # makes `import gradio` raise ImportError
    with pytest.raises(ImportError, match=r'pip install "item-detector\[app\]"'):
        serve.build_app("any-model")


def test_without_a_model_the_command_names_the_option_and_the_variable(monkeypatch):
    monkeypatch.delenv(serve.MODEL_ENV, raising=False)
    with pytest.raises(SystemExit, match=r"--model.*ITEM_MODEL"):
        serve.main([])


def test_the_same_file_runs_as_a_space_app_py_with_the_model_from_the_environment(tmp_path, monkeypatch):
    """A Space holds app.py alone: reading and drawing come from the checkpoint's remote code, not this project."""
    space = tmp_path / "space"
    space.mkdir()
    shutil.copyfile(serve.__file__, space / "app.py")
    for name in ("item_detector", "item_cli"):
        monkeypatch.setitem(sys.modules, name, None)  # `import` of either now raises ImportError
    monkeypatch.setitem(sys.modules, "gradio", None)  # stop before any model is loaded
    monkeypatch.setenv(serve.MODEL_ENV, "user/item-checkpoint")
    spec = importlib.util.spec_from_file_location("space_app", space / "app.py")
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    # Past the "No model" check (the model came from ITEM_MODEL), stopped at the missing Gradio.
    with pytest.raises(SystemExit, match=r'pip install "item-detector\[app\]"'):
        app.main([])


@pytest.mark.parametrize("content, reason", [(b"not an image at all", "not a file of a supported format"), (None, "truncated")])
def test_unreadable_upload_gets_a_readable_reason(tmp_path, sample_photos, content, reason):
    from item_detector.pipeline_item import ItemImageClassificationPipeline

    path = tmp_path / "upload.jpg"
    path.write_bytes(content if content is not None else sample_photos[0].read_bytes()[:2000])  # None: truncated
    with pytest.raises(ValueError, match=rf"upload\.jpg could not be read: .*{reason}") as info:
        serve.load_upload(ItemImageClassificationPipeline, path)
    assert str(tmp_path) not in str(info.value)  # the page names the file, not the server's folders


def save_artifact(source: Path) -> None:
    folder = os.environ.get("ITEM_TEST_ARTIFACTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(source, Path(folder) / source.name)


@pytest.fixture(scope="module")
def browser():
    pytest.importorskip("gradio", reason='the web app needs gradio: pip install "item-detector[app]"')
    pytest.importorskip("playwright.sync_api", reason="the browser test needs the playwright package (pip install playwright)")
    executable = shutil.which("chromium")
    if executable is None:
        pytest.skip("the browser test needs Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def app_url(browser, checkpoint):
    """The app on a free local port, in this process (a thread of Gradio's server), for the whole module."""
    app = serve.build_app(str(checkpoint), device="cpu")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, show_error=True)
    yield f"http://127.0.0.1:{port}"
    app.close(verbose=False)


@pytest.fixture
def page(browser, app_url):
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    opened = context.new_page()
    opened.goto(app_url)
    opened.wait_for_selector("#upload", timeout=30_000)
    yield opened
    context.close()


def test_one_photo_gives_a_verdict_and_an_explanation_and_a_broken_file_a_message(page, sample_photos, tmp_path, capsys):
    from playwright.sync_api import expect

    started = time.perf_counter()
    page.locator("#upload input[type=file]").set_input_files(str(sample_photos[0]))
    verdict = page.locator("#verdict h2")
    verdict.wait_for(timeout=RESULT_TIMEOUT_MS)
    seconds = time.perf_counter() - started
    assert verdict.inner_text().split()[0] in ("FAKE", "REAL")
    expect(page.locator("#verdict")).to_contain_text("p(fake) =")
    explanation = page.locator("#explanation img")
    explanation.wait_for(timeout=RESULT_TIMEOUT_MS)
    size = explanation.evaluate("img => img.complete ? [img.naturalWidth, img.naturalHeight] : [0, 0]")
    assert size[0] >= 384 and size[1] > 0, "the explanation picture is shown"
    expect(page.locator("#objects")).to_contain_text("similarity")
    screenshot = tmp_path / "app-one-image.png"
    page.screenshot(path=str(screenshot), full_page=True)
    save_artifact(screenshot)
    timing = tmp_path / "time-to-first-result.txt"
    timing.write_text(f"{seconds:.2f} s from the upload of {sample_photos[0].name} to the verdict visible\n")
    save_artifact(timing)
    with capsys.disabled():  # shown without -s (not under xdist, whose workers keep their output)
        print(f"\n[web app] time to first result: {timing.read_text().strip()}")

    broken = tmp_path / "holiday.jpg"
    broken.write_bytes(b"this is not a JPEG")
    page.locator("#upload input[type=file]").set_input_files(str(broken))
    expect(page.locator("#verdict")).to_contain_text("holiday.jpg could not be read: Cannot read it as an image: not a file of a supported format",
                                                     timeout=RESULT_TIMEOUT_MS)
    assert "Traceback" not in page.content()
    screenshot = tmp_path / "app-broken-file.png"
    page.screenshot(path=str(screenshot), full_page=True)
    save_artifact(screenshot)


def test_several_files_give_one_row_each_and_a_csv(page, app_url, sample_photos, tmp_path):
    from playwright.sync_api import expect

    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n but nothing after the signature")
    page.get_by_role("tab", name="Several images").click()
    page.locator("#files input[type=file]").set_input_files([str(sample_photos[0]), str(broken), str(sample_photos[1])])
    download = page.locator("#csv a").first
    download.wait_for(timeout=RESULT_TIMEOUT_MS)
    table = page.locator("#batch-table")
    for name in (sample_photos[0].name, "broken.png", sample_photos[1].name):
        expect(table).to_contain_text(name)
    expect(table).to_contain_text("could not be read")
    csv_url = urllib.parse.urljoin(app_url + "/", download.get_attribute("href"))
    assert csv_url.startswith(app_url), "the CSV is served by the local app"
    with urllib.request.urlopen(csv_url, timeout=30) as response:
        rows = list(csv.reader(io.StringIO(response.read().decode("utf-8"))))
    assert rows[0] == serve.BATCH_COLUMNS
    by_file = {row[0]: dict(zip(rows[0], row)) for row in rows[1:]}
    assert set(by_file) == {sample_photos[0].name, "broken.png", sample_photos[1].name}
    assert "could not be read" in by_file["broken.png"]["error"]
    for photo in sample_photos[:2]:
        row = by_file[photo.name]
        assert row["verdict"] in ("FAKE", "REAL") and 0.0 <= float(row["p(fake)"]) <= 1.0 and not row["error"]
    screenshot = tmp_path / "app-several-images.png"
    page.screenshot(path=str(screenshot), full_page=True)
    save_artifact(screenshot)
