"""Protocol files: the built-ins load in the papers' order, user files work, bad input gets a clear error."""

import csv
import json

import pytest

from item_cli.protocols import list_protocols, load_protocol, parse_data_arguments

UFD_ORDER = [
    "progan", "cyclegan", "biggan", "stylegan", "gaugan", "stargan", "deepfake", "seeingdark", "san", "crn", "imle",
    "guided", "ldm_200", "ldm_200_cfg", "ldm_100", "glide_100_27", "glide_50_27", "glide_100_10", "dalle",
]


def _touch_image(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not decoded here")  # the manifest lists files by name; nothing opens them
    return path


def _make_folders(root, protocol):
    for item in protocol.sets:
        for source, _ in item.sources:
            (root / source).mkdir(parents=True, exist_ok=True)


def test_builtin_protocols_keep_the_papers_order():
    assert list_protocols() == ["aigenbench", "chameleon", "cnndetection_progan4", "communityforensics_eval", "genimage",
                                "synthbuster", "synthwildx", "universalfakedetect", "wildrf"]
    ufd = load_protocol("universalfakedetect")
    assert [s.name for s in ufd.select("test")] == UFD_ORDER and ufd.root is None
    guided = ufd.sets[UFD_ORDER.index("guided")]
    assert {(str(p), label) for p, label in guided.sources} == {
        ("diffusion_datasets/guided/1_fake", 1), ("diffusion_datasets/imagenet/0_real", 0)
    }
    assert all(("laion/0_real", 0) in {(str(p)[-12:], label) for p, label in s.sources} for s in ufd.sets[12:])
    assert str(ufd.sets[0].path) == "datasets/test/progan"
    genimage = load_protocol("GenImage")  # names are case- and dash-insensitive
    test_sets = ["midjourney", "sd14", "sd15", "adm", "glide", "wukong", "vqdm", "biggan"]
    assert [s.name for s in genimage.select("test")] == test_sets
    assert all(str(s.path).endswith("/val") for s in genimage.select("test"))
    assert [s.name for s in genimage.select("train")] == ["sd14"]
    progan4 = load_protocol("cnndetection-progan4")
    assert progan4.select("test") == [] and [s.role for s in progan4.sets] == ["train", "val"]
    assert [p.name for p, _ in progan4.select("train")[0].sources] == ["car", "cat", "chair", "horse"]


def test_a_root_resolves_every_set_and_all_missing_ones_are_reported_at_once(tmp_path):
    _make_folders(tmp_path, load_protocol("universalfakedetect"))
    ufd = load_protocol("universalfakedetect", root=tmp_path)
    assert ufd.sets[0].path == tmp_path / "datasets/test/progan"
    (tmp_path / "datasets/test/san").rmdir()
    (tmp_path / "diffusion_datasets/dalle/1_fake").rmdir()
    with pytest.raises(ValueError, match="2 of 19 sets are missing") as error:
        load_protocol("universalfakedetect", root=tmp_path)
    message = str(error.value)
    assert "san (test)" in message and "dalle (test)" in message and "progan (test)" not in message
    with pytest.raises(ValueError, match="not a folder"):
        load_protocol("universalfakedetect", root=tmp_path / "nowhere")


def test_a_user_protocol_becomes_data_arguments_with_manifests(tmp_path):
    data = tmp_path / "data"
    _touch_image(data / "gan/0_real/a.png")
    _touch_image(data / "gan/1_fake/b.png")
    _touch_image(data / "diff/fakes/c.png")
    _touch_image(data / "diff/fakes/notes.txt")
    _touch_image(data / "reals/d.jpg")
    _touch_image(data / "cats/0_real/e.jpg")
    _touch_image(data / "dogs/1_fake/f.jpg")
    (tmp_path / "bench.yaml").write_text(
        "name: bench\ndescription: a test bench\nroot: data\nsets:\n"
        "  - {name: gan, path: gan}\n"
        "  - {name: diff, fake: diff/fakes, real: reals}\n"
        "  - {name: pets, paths: [cats, dogs]}\n"
    )
    protocol = load_protocol(tmp_path / "bench.yaml")
    pairs = protocol.data_arguments(manifest_dir=tmp_path / "manifests")
    assert [name for name, _ in pairs] == ["gan", "diff", "pets"]
    assert pairs[0][1] == str((data / "gan").resolve())
    with open(pairs[1][1], newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted((r["path"].rsplit("/", 1)[-1], r["label"], r["generator"]) for r in rows) == [
        ("c.png", "1", "diff"), ("d.jpg", "0", "diff")
    ]
    with open(pairs[2][1], newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted((r["path"].rsplit("/", 1)[-1], r["label"]) for r in rows) == [("e.jpg", "0"), ("f.jpg", "1")]
    with pytest.raises(ValueError, match="manifest_dir"):
        protocol.data_arguments()
    with pytest.raises(ValueError, match="without a root"):
        load_protocol("universalfakedetect").data_arguments()


def test_json_protocols_and_the_default_root(tmp_path):
    (tmp_path / "progan").mkdir()
    spec = {"name": "mine", "description": "one set", "sets": [{"name": "progan", "path": "progan"}]}
    (tmp_path / "mine.json").write_text(json.dumps(spec))
    protocol = load_protocol(str(tmp_path / "mine.json"))  # no root: the file's folder
    assert protocol.data_arguments() == [("progan", str((tmp_path / "progan").resolve()))]


@pytest.mark.parametrize(
    "text, match",
    [
        ("name: x\ndescription: y\nsets: [\n", "not valid YAML"),
        ("- just a list\n", "must hold a mapping"),
        ("name: x\ndescription: y\n", "`sets` must be a non-empty list"),
        ("name: x\nsets: [{name: a, path: a}]\n", "`description`"),
        ("name: x\ndescription: y\nsetz: []\n", "unknown key.*setz"),
        ("name: x\ndescription: y\nsets: [{name: a, paht: a}]\n", r"sets\[0\]: unknown key.*paht"),
        ("name: x\ndescription: y\nsets: [{name: a, path: a, fake: b}]\n", "exactly one of"),
        ("name: x\ndescription: y\nsets: [{name: a, path: [a, b]}]\n", "use `paths`"),
        ("name: x\ndescription: y\nsets: [{name: a, path: a}, {name: a, path: b}]\n", "appears twice"),
        ("name: x\ndescription: y\nsets: [{name: a, path: a, role: testing}]\n", "role 'testing'"),
        ("name: x\ndescription: y\nsets: [{path: a}]\n", "`name` must be"),
    ],
)
def test_malformed_protocol_files_are_refused_clearly(tmp_path, text, match):
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(ValueError, match=match):
        load_protocol(tmp_path / "bad.yaml", check=False)


def test_unknown_protocol_names_the_choices():
    with pytest.raises(ValueError, match="universalfakedetect"):
        load_protocol("imagenet-fakes")


def test_data_arguments_are_named_and_unique():
    assert parse_data_arguments(["progan=/d/progan", "/d/sd15/", "lists/laion.csv", "weird=x=y"]) == [
        ("progan", "/d/progan"), ("sd15", "/d/sd15/"), ("laion", "lists/laion.csv"), ("weird", "x=y")
    ]
    assert parse_data_arguments(["/d/a=b/c"]) == [("c", "/d/a=b/c")]  # '=' inside a path, not a name
    with pytest.raises(ValueError, match="'progan' is given twice.*NAME=PATH"):
        parse_data_arguments(["/a/progan", "/b/progan"])
    with pytest.raises(ValueError, match="name before '=' is empty"):
        parse_data_arguments(["=/d/x"])
    with pytest.raises(ValueError, match="no path after '='"):
        parse_data_arguments(["x="])
    with pytest.raises(TypeError, match="list of strings"):
        parse_data_arguments("/d/x")
