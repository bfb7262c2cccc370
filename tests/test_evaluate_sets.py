"""`item evaluate` on named sets and protocols: the paper table keeps the given order, the mean row leaves
one-class sets out of AP and says so, LaTeX is well-formed, --max-per-class is balanced and seeded, and
report.html shows the most confident mistakes as explanation pictures."""

import csv
import json
import re
from html.parser import HTMLParser

import numpy as np
import pytest
from helpers import NetworkCalls, noise_image

from item_cli.cli import main
from item_cli.data import Record
from item_cli.evaluation.sets import EvalSet, balanced_sample, load_sets, sets_from_arguments

ODD_NAME = "x&<y>'.png"  # a file name that must be escaped in HTML
# The protocol's order, deliberately not alphabetical; "jpeg_50%" needs escaping in LaTeX.
ORDER = ["zeta", "jpeg_50%", "onlyfake"]


def _pairs(folder, names, rng):
    """The same image as 0_real/NAME and 1_fake/NAME: a real and a fake with identical scores, so that at any
    threshold exactly one of each pair is a mistake (the gallery is never empty)."""
    for name in names:
        image = noise_image(rng, (36, 32))
        for label in ("0_real", "1_fake"):
            (folder / label).mkdir(parents=True, exist_ok=True)
            image.save(folder / label / name)


@pytest.fixture(scope="module")
def protocol_run(checkpoint, tmp_path_factory):
    """Evaluate a user protocol twice: first without a report (fills the cache, gives the scores), then, with every
    frozen network forbidden, at the median score as threshold and with a gallery of 2 per kind and set."""
    root = tmp_path_factory.mktemp("sets")
    rng = np.random.default_rng(3)
    _pairs(root / "zeta", ["a.png", "b.png"], rng)
    _pairs(root / "fifty", ["a.png", ODD_NAME], rng)
    (root / "fakes").mkdir()
    for i in range(2):
        noise_image(rng, (32, 32), 40).save(root / "fakes" / f"f{i}.png")
    protocol = root / "bench.yaml"
    protocol.write_text(
        "name: bench\ndescription: a test protocol\nsets:\n"
        "  - {name: zeta, path: zeta}\n  - {name: 'jpeg_50%', path: fifty}\n  - {name: onlyfake, fake: fakes}\n"
    )
    common = ["evaluate", "--model", str(checkpoint), "--protocol", str(protocol), "--protocol-root", str(root),
              "--cache-dir", str(root / "cache"), "--batch-size", "8", "--columns", "acc_real", "acc_fake", "acc", "ap"]
    with pytest.MonkeyPatch.context() as patch:
        NetworkCalls(patch, caption="a dog on a sofa")  # the tiny captioner is slow and its words do not matter
        assert main([*common, "--output", str(root / "first"), "--no-report", "--no-plots"]) == 0
        with open(root / "first" / "scores.csv") as handle:
            threshold = float(np.median([float(row["fake_probability"]) for row in csv.DictReader(handle)]))
        NetworkCalls(patch, forbid=True)  # the second run, report and gallery included, reads only the cache
        assert main([*common, "--output", str(root / "out"), "--threshold", repr(threshold), "--gallery-size", "2"]) == 0
    return root / "out", root, threshold


def test_the_table_keeps_the_protocol_order_and_the_mean_leaves_one_class_sets_out_of_ap(protocol_run, capsys):
    out, _, _ = protocol_run
    with open(out / "table.csv") as handle:
        rows = [row for row in csv.DictReader(handle) if row["condition"] == "clean"]
    assert [row["set"] for row in rows] == [*ORDER, "mean", "worst"]
    by_set = {row["set"]: row for row in rows}
    assert by_set["onlyfake"]["one_class"] == "1" and by_set["onlyfake"]["ap"] == "" and by_set["zeta"]["one_class"] == "0"
    results = json.loads((out / "metrics.json").read_text())
    table = results["conditions"]["clean"]["generators"]
    assert list(table) == [*ORDER, "mean"]
    assert table["mean"]["ap"] == pytest.approx((table["zeta"]["ap"] + table["jpeg_50%"]["ap"]) / 2)
    assert table["mean"]["acc"] == pytest.approx(np.mean([table[name]["acc"] for name in ORDER]))  # ACC: every set
    assert table["mean"]["left_out"]["ap"] == ["onlyfake"] and table["mean"]["averaged"]["acc"] == 3
    assert any("'onlyfake'" in w and "left out of the mean AP" in w for w in results["warnings"])
    markdown = (out / "table.md").read_text()
    lines = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert [line.split(" | ")[0][2:] for line in lines[1:5]] == ["zeta", "jpeg_50%", "onlyfake \u2020", "**mean**"]
    assert lines[0] == "| set | real | fake | ACC real | ACC fake | ACC | AP |"  # --columns, in order
    assert "left out of the mean AP" in markdown and "onlyfake (fake images only)" in markdown
    with open(out / "scores.csv") as handle:
        scores = list(csv.DictReader(handle))
    assert {row["set"] for row in scores} == set(ORDER) and all(row["generator"] == row["set"] for row in scores)


def _braces_balance(text: str) -> bool:
    depth = 0
    for char in re.sub(r"\\[{}%&_#$]", "", text):  # escaped characters are text, not structure
        depth += {"{": 1, "}": -1}.get(char, 0)
        if depth < 0:
            return False
    return depth == 0


def test_latex_is_well_formed(protocol_run):
    out, _, _ = protocol_run
    tex = (out / "table.tex").read_text()
    assert _braces_balance(tex)
    assert tex.count("\\begin{tabular}{lrrrr}") == tex.count("\\end{tabular}") == 1  # label column + 4 metrics
    assert tex.count("\\begin{table}") == tex.count("\\end{table}") == 1
    assert tex.index("\\toprule") < tex.index("\\midrule") < tex.index("\\bottomrule")
    body = tex[tex.index("\\begin{tabular}"):tex.index("\\end{tabular}")]
    rows = [line for line in body.splitlines() if line.endswith("\\\\")]
    assert len(rows) == 1 + len(ORDER) + 2 and all(row.count("&") == 4 for row in rows)  # header, sets, mean, worst
    assert rows[2].startswith("jpeg\\_50\\% & ") and rows[3].startswith("onlyfake$^\\dagger$ & ") and "--" in rows[3]
    for line in tex.splitlines():  # a bare % would comment out the rest of the line
        assert line.startswith("%") or not re.search(r"(?<!\\)%", line), line
    assert re.search(r"Mean & (\d+\.\d|--) & (\d+\.\d|--) & \d+\.\d & \d+\.\d \\\\", tex)


class _Checker(HTMLParser):
    """Collects images, links and figure captions, and checks that every element is closed in order."""

    VOID = frozenset({"meta", "img", "br", "link", "hr", "input"})

    def __init__(self):
        super().__init__()
        self.stack, self.errors, self.images, self.urls, self.captions, self._caption = [], [], [], [], [], None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.urls += [attrs[k] for k in ("src", "href") if k in attrs]
        if tag == "img":
            self.images.append(attrs)
        if tag == "figcaption":
            self._caption = []
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if tag == "figcaption":
            self.captions.append("".join(self._caption))
            self._caption = None
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(f"unexpected </{tag}>")

    def handle_data(self, data):
        if self._caption is not None:
            self._caption.append(data)


def test_the_html_report_shows_the_confident_mistakes(protocol_run):
    out, root, threshold = protocol_run
    page = (out / "report.html").read_text()
    checker = _Checker()
    checker.feed(page)
    checker.close()
    assert checker.errors == [] and checker.stack == [] and page.startswith("<!DOCTYPE html>")
    assert "<script" not in page and "http:" not in page and "https:" not in page  # nothing fetched, no JavaScript
    assert all(url.startswith(("gallery/", "data:image/png;base64,")) for url in checker.urls)  # no external URL
    assert sum(url.startswith("data:image/png") for url in checker.urls) == 2  # per-set and reliability plots, embedded
    # The expected mistakes, recomputed from scores.csv: per set, the 2 reals scored highest at or above the
    # threshold and the 2 fakes scored lowest below it.
    with open(out / "scores.csv") as handle:
        clean = [row for row in csv.DictReader(handle) if row["condition"] == "clean"]
    expected = []
    for name in ORDER:
        mine = [row for row in clean if row["set"] == name]
        positives = sorted((r for r in mine if r["label"] == "real" and float(r["fake_probability"]) >= threshold),
                           key=lambda r: -float(r["fake_probability"]))[:2]
        negatives = sorted((r for r in mine if r["label"] == "fake" and float(r["fake_probability"]) < threshold),
                           key=lambda r: float(r["fake_probability"]))[:2]
        expected += [(r["path"], r["label"]) for r in positives + negatives]
    shown = [(caption.split("label: ")[0], caption.split("label: ")[1].split(",")[0]) for caption in checker.captions]
    assert len(expected) >= 4 and sorted(shown) == sorted(expected)  # one mistake per real/fake pair at least
    pictures = [image["src"] for image in checker.images if image["src"].startswith("gallery/")]
    assert len(pictures) == len(expected) and all((out / src).is_file() for src in pictures)
    a_pictures = {src for src in pictures if src.startswith("gallery/a-")}
    assert len(a_pictures) == 2  # zeta/.../a.png and fifty/.../a.png: two sets, two files
    assert any(ODD_NAME in caption for caption in checker.captions)  # shown as written ...
    assert "x&amp;&lt;y&gt;&#x27;.png" in page and ODD_NAME not in page  # ... because it is escaped
    assert re.search(r"p\(fake\) = 0\.\d{4}", page)


def test_sets_from_arguments_and_bad_combinations(tmp_path, capsys):
    (tmp_path / "d").mkdir()
    assert sets_from_arguments([str(tmp_path / "d")], None) == ([EvalSet("d", str(tmp_path / "d"), named=False)], None)
    named, _ = sets_from_arguments([f"b={tmp_path}/d", f"{tmp_path}/d"], None)
    assert [(s.name, s.named) for s in named] == [("b", True), ("d", True)]
    with pytest.raises(ValueError, match="not both and not neither"):
        sets_from_arguments([str(tmp_path)], "genimage")
    with pytest.raises(ValueError, match="not both and not neither"):
        sets_from_arguments(None, None)
    with pytest.raises(ValueError, match="needs --protocol-root"):
        sets_from_arguments(None, "universalfakedetect")
    with pytest.raises(ValueError, match="--protocol-root applies to --protocol only"):
        sets_from_arguments([str(tmp_path)], None, protocol_root=str(tmp_path))
    code = main(["evaluate", "--model", str(tmp_path), "--data", f"mean={tmp_path}/d", "--output", str(tmp_path / "o")])
    assert code == 2 and "the name of the mean row" in capsys.readouterr().err  # one line, no traceback


def test_max_per_class_is_balanced_and_seeded(tmp_path):
    records = [Record(f"{i}.png", int(i % 3 == 0), "g") for i in range(30)]  # 10 fake, 20 real
    first = balanced_sample(records, 6, seed=1, name="g")
    assert sum(r.label == 1 for r in first) == 6 and sum(r.label == 0 for r in first) == 6
    assert first == balanced_sample(records, 6, seed=1, name="g")  # the same draw again
    assert first != balanced_sample(records, 6, seed=2, name="g")  # another seed, another draw
    assert [r.path for r in first] == sorted((r.path for r in first), key=lambda p: int(p[:-4]))  # data order kept
    few = balanced_sample(records, 15, seed=0, name="g")
    assert sum(r.label == 1 for r in few) == 10 and sum(r.label == 0 for r in few) == 15  # all 10 fakes, 15 reals
    for folder, reals, fakes in (("one", 7, 3), ("two", 2, 9)):
        for label, count in (("0_real", reals), ("1_fake", fakes)):
            (tmp_path / folder / label).mkdir(parents=True)
            for i in range(count):
                noise_image(np.random.default_rng(i), (8, 8)).save(tmp_path / folder / label / f"{i}.png")
    sets = [EvalSet("one", str(tmp_path / "one")), EvalSet("two", str(tmp_path / "two"))]
    loaded = load_sets(sets, max_per_class=3, seed=5)
    assert loaded.counts["one"] | {"path": ""} == {"path": "", "real": 3, "fake": 3, "found_real": 7, "found_fake": 3}
    assert (loaded.counts["two"]["real"], loaded.counts["two"]["fake"]) == (2, 3)
    assert {r.generator for r in loaded.records} == {"one", "two"}  # named sets are their own generators
    alone = load_sets([EvalSet("two", str(tmp_path / "two"))], max_per_class=3, seed=5)
    assert [r.path for r in alone.records] == [r.path for r in loaded.records if r.generator == "two"]  # order-free
    with pytest.raises(ValueError, match="max_per_class=0"):
        balanced_sample(records, 0, 0, "g")
    with pytest.raises(ValueError, match="--generator 'x' applies to a single unnamed --data"):
        load_sets(sets, generator="x")


def test_equalize_runs_before_every_condition_with_its_own_cache_rows(protocol_run, checkpoint, capsys):
    out, root, _ = protocol_run
    data = ["--data", f"zeta={root / 'zeta'}", "--data", f"fifty={root / 'fifty'}"]
    common = ["evaluate", "--model", str(checkpoint), *data, "--cache-dir", str(root / "cache"), "--no-report",
              "--no-plots", "--equalize", "jpeg:95"]
    with pytest.MonkeyPatch.context() as patch:
        calls = NetworkCalls(patch, caption="a dog on a sofa")
        assert main([*common, "--output", str(root / "eq1")]) == 0
        assert calls["features"] == 4  # 4 distinct images (real and fake copies share their rows), new rows
        calls.reset()
        assert main([*common, "--jpeg-quality", "50", "--output", str(root / "eq2")]) == 0
        assert calls["features"] == 4  # equalized clean rows reused; equalize+jpeg_q50 computed once
    results = json.loads((root / "eq2" / "metrics.json").read_text())
    assert results["equalize"] == "equalize_jpeg95" and list(results["conditions"]) == ["clean", "jpeg_q50"]
    with open(root / "eq1" / "scores.csv") as handle:
        equalized = {row["path"]: float(row["fake_probability"]) for row in csv.DictReader(handle)}
    with open(out / "scores.csv") as handle:
        plain = {row["path"]: float(row["fake_probability"]) for row in csv.DictReader(handle)
                 if row["condition"] == "clean" and row["set"] != "onlyfake"}
    assert equalized.keys() == plain.keys() and any(abs(equalized[p] - plain[p]) > 1e-6 for p in plain)
    assert "equalized equalize_jpeg95" in (root / "eq2" / "table.md").read_text()
