"""Provenance beside the verdict: C2PA Content Credentials signed here by a test chain, generator metadata, the
SDXL invisible watermark, damaged manifests, and the same answers through `item detect`, handler.py and the web
page's functions; without the [provenance] extra every command still answers and says how to get it."""

import base64
import datetime
import io
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from item_detector.provenance_item import INSTALL_HINT, apply_policy, read_provenance, summary_lines

REPO = Path(__file__).resolve().parent.parent
AI = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
SDXL_BITS = [int(bit) for bit in bin(0b101100111110110010010000011110111011000110011110)[2:]]
A1111 = ("a red fox in the snow, best quality\nNegative prompt: blurry, lowres\nSteps: 20, Sampler: Euler a, "
         "CFG scale: 7, Seed: 42, Size: 512x512, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Version: v1.10.1")


def photo(size=(512, 512), seed=0) -> np.ndarray:
    """A smooth, photo-like RGB array (colour waves and mild noise)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size[1], 0:size[0]] / max(size)
    waves = np.stack([120 + 80 * np.sin(6 * x + 1), 110 + 70 * np.cos(5 * y), 100 + 60 * np.sin(4 * (x + y))], -1)
    return np.clip(waves + rng.normal(0, 12, waves.shape), 0, 255).astype(np.uint8)


def encoded(array, fmt="JPEG", **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, fmt, **options)
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------- C2PA
def _certificate(subject, issuer, public_key, signing_key, ca: bool):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    usage = dict(digital_signature=not ca, content_commitment=False, key_encipherment=False, data_encipherment=False,
                 key_agreement=False, key_cert_sign=ca, crl_sign=ca, encipher_only=False, decipher_only=False)
    name = lambda cn: x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),  # noqa: E731
                                 x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ITEM tests")])
    builder = (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(name(issuer)).public_key(public_key)
               .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
               .not_valid_after(now + datetime.timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(**usage), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False))
    if not ca:  # C2PA wants an end-entity certificate with a signing EKU (email protection is on its list)
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False) \
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signing_key.public_key()), critical=False)
    return builder.sign(signing_key, hashes.SHA256())


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """A test chain (ES256 root CA -> signer): (signer's PEM chain, its private key PEM, path of the root's PEM)."""
    pytest.importorskip("c2pa", reason=f"C2PA needs the extra: {INSTALL_HINT}")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    root_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    root = _certificate("ITEM test root", "ITEM test root", root_key.public_key(), root_key, ca=True)
    leaf = _certificate("ITEM test signer", "ITEM test root", key.public_key(), root_key, ca=False)
    pem = lambda cert: cert.public_bytes(serialization.Encoding.PEM)  # noqa: E731
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    anchors = tmp_path_factory.mktemp("trust") / "root.pem"
    anchors.write_bytes(pem(root))
    return pem(leaf) + pem(root), private, anchors


def sign(chain, data: bytes, mime: str) -> bytes:
    """`data` signed with Content Credentials whose c2pa.actions say trainedAlgorithmicMedia."""
    import c2pa

    manifest = {"claim_generator_info": [{"name": "item-test-generator", "version": "1.0"}], "title": "made",
                "assertions": [{"label": "c2pa.actions", "data": {"actions": [
                    {"action": "c2pa.created", "digitalSourceType": AI, "softwareAgent": {"name": "TestDiffusion"}}]}}]}
    settings = c2pa.Settings.from_dict({"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}})
    builder = c2pa.Builder(manifest, context=c2pa.Context(settings=settings))
    signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo("es256", chain[0], chain[1], None))
    out = io.BytesIO()
    builder.sign(signer, mime, io.BytesIO(data), out)
    return out.getvalue()


@pytest.fixture(scope="module")
def signed(chain):
    """A JPEG signed by the test chain, and the path of the chain's root (PEM)."""
    return sign(chain, encoded(photo((96, 64)), quality=90), "image/jpeg"), chain[2]


def test_a_signed_ai_manifest_is_read_valid_untrusted_then_trusted_with_the_chain_as_trust_list(signed):
    data, anchors = signed
    found = read_provenance(data).c2pa
    assert (found.present, found.checked, found.validation_state) == (True, True, "untrusted_signer")
    assert found.signature_valid and not found.signer_trusted and "signingCredential.untrusted" in found.reason
    assert found.signer == "ITEM test signer" and found.claim_generator.startswith("item-test-generator 1.0")
    assert found.digital_source_type == AI and found.ai_generated is True
    assert found.actions == [{"action": "c2pa.created", "digital_source_type": AI, "software_agent": "TestDiffusion"}]
    trusted = read_provenance(data, trust_anchors=anchors).c2pa
    assert (trusted.validation_state, trusted.signer_trusted, trusted.reason) == ("valid", True, None)
    # The policy: only a valid signature from a trusted signer decides; the default only reports.
    verdict = {"is_fake": False, "fake_probability": 0.1}
    assert apply_policy(verdict, read_provenance(data).to_dict(), "signed-ai-decides")["is_fake"] is False
    decided = apply_policy(verdict, read_provenance(data, trust_anchors=anchors).to_dict(), "signed-ai-decides")
    assert decided["is_fake"] is True and "c2pa" in decided["decided_by"]
    assert apply_policy(verdict, read_provenance(data, trust_anchors=anchors).to_dict())["is_fake"] is False


@pytest.mark.parametrize("fmt, mime", [("PNG", "image/png"), ("WEBP", "image/webp")])
def test_signed_png_and_webp_stores_are_found_and_validated(chain, fmt, mime):
    found = read_provenance(sign(chain, encoded(photo((48, 32)), fmt), mime), trust_anchors=chain[2]).c2pa
    assert (found.present, found.validation_state, found.ai_generated) == (True, "valid", True)


def test_pixels_changed_after_signing_and_damaged_manifests_are_reported_not_raised(signed):
    data, _ = signed
    changed = bytearray(data)
    changed[-20] ^= 0xFF  # in the entropy-coded pixels, after the manifest
    found = read_provenance(bytes(changed)).c2pa
    assert found.present and found.validation_state == "invalid" and "assertion.dataHash.mismatch" in found.reason
    assert found.ai_generated is True  # what the manifest claims; its state says the claim does not hold
    start = data.find(b"\xff\xeb")
    length = int.from_bytes(data[start + 2: start + 4], "big")
    flipped = bytearray(data)
    flipped[start + 200] ^= 0xFF
    cut = data[: start + 4 + length // 2] + data[start + 4 + length:]
    for damaged in (bytes(flipped), cut):
        record = read_provenance(damaged).c2pa
        assert record.present and record.validation_state == "unreadable" and record.reason


def test_trust_anchors_that_are_not_certificates_are_named(tmp_path):
    (tmp_path / "anchors.pem").write_text("not a certificate")
    with pytest.raises(ValueError, match="anchors.pem.*no PEM certificate"):
        read_provenance(b"", trust_anchors=tmp_path / "anchors.pem")


# ---------------------------------------------------------------------------------------------- metadata
def png_with(**texts) -> bytes:
    info = PngImagePlugin.PngInfo()
    for key, value in texts.items():
        info.add_text(key, value)
    return encoded(photo((64, 64)), "PNG", pnginfo=info)


def test_front_end_parameters_are_found_with_prompt_and_model():
    a1111 = read_provenance(png_with(parameters=A1111)).metadata
    assert (a1111.front_end, a1111.prompt, a1111.negative_prompt) == ("AUTOMATIC1111", "a red fox in the snow, best quality",
                                                                      "blurry, lowres")
    assert a1111.model == "v1-5-pruned-emaonly" and a1111.settings["Seed"] == "42" and a1111.ai_generated
    graph = {"4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"}},
             "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a lighthouse at dusk", "clip": ["4", 1]}},
             "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "watermark", "clip": ["4", 1]}},
             "3": {"class_type": "KSampler", "inputs": {"positive": ["6", 0], "negative": ["7", 0], "seed": 5}}}
    comfy = read_provenance(png_with(prompt=json.dumps(graph), workflow="{}")).metadata
    assert (comfy.front_end, comfy.prompt, comfy.negative_prompt, comfy.model) == (
        "ComfyUI", "a lighthouse at dusk", "watermark", "sd_xl_base_1.0.safetensors")
    novelai = read_provenance(png_with(Software="NovelAI", Source="NovelAI Diffusion V3",
                                       Comment=json.dumps({"prompt": "1girl, garden", "steps": 28}))).metadata
    assert (novelai.front_end, novelai.prompt, novelai.model) == ("NovelAI", "1girl, garden", "NovelAI Diffusion V3")


def test_jpeg_exif_user_comment_and_xmp_source_type_and_camera_are_read():
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "Canon", "EOS R5"
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\0" + A1111.encode("utf-16-be")  # as AUTOMATIC1111 writes a JPEG
    found = read_provenance(encoded(photo((64, 64)), exif=exif.tobytes())).metadata
    assert (found.front_end, found.camera_make, found.camera_model) == ("AUTOMATIC1111", "Canon", "EOS R5")
    xmp = ('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
           '<rdf:Description xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" '
           f'Iptc4xmpExt:DigitalSourceType="{AI}"/></rdf:RDF></x:xmpmeta>')
    tagged = read_provenance(encoded(photo((64, 64)), xmp=xmp.encode())).metadata
    assert tagged.digital_source_type == AI and tagged.ai_generated is True and tagged.front_end is None


def test_a_plain_photo_claims_nothing_and_pixels_alone_say_they_cannot_tell():
    plain = read_provenance(encoded(photo(), quality=90))
    assert not plain.c2pa.present and plain.metadata.checked and plain.metadata.ai_generated is None
    assert plain.ai_claims() == [] and plain.watermark.matches is None
    assert "absence proves nothing" in summary_lines(plain.to_dict())[0]
    pixels = read_provenance(Image.fromarray(photo()))
    assert pixels.source == "pixels" and not pixels.c2pa.checked and "only decoded pixels" in summary_lines(pixels.to_dict())[0]


# ---------------------------------------------------------------------------------------------- watermark
def sdxl_watermarked(array: np.ndarray) -> np.ndarray:
    """`array` marked as diffusers' StableDiffusionXLWatermarker does: the 48 bits, dwtDct, on BGR."""
    from imwatermark import WatermarkEncoder

    encoder = WatermarkEncoder()
    encoder.set_watermark("bits", SDXL_BITS)
    bgr = array[:, :, ::-1].astype(np.float32)
    return np.clip(np.round(encoder.encode(bgr, "dwtDct")[:, :, ::-1]), 0, 255).astype(np.uint8)


def test_the_sdxl_watermark_is_decoded_and_matched_and_what_jpeg_90_leaves_is_measured():
    pytest.importorskip("imwatermark", reason=f"the watermark check needs the extra: {INSTALL_HINT}")
    marked = sdxl_watermarked(photo())
    found = read_provenance(encoded(marked, "PNG")).watermark
    assert found.matches.startswith("SDXL") and found.level == "very likely" and found.bits_total == 48
    assert found.bits_matched >= 44 and found.payload  # measured: 46 of 48 on this image
    assert read_provenance(encoded(photo(), "PNG")).watermark.level in ("none", "partial")  # unmarked: 30 of 48
    from_pixels = read_provenance(Image.fromarray(marked))  # a decoded image still carries its watermark
    assert from_pixels.watermark.matches.startswith("SDXL") and "only decoded pixels" in summary_lines(from_pixels.to_dict())[0]
    # Measured on this image: JPEG quality 95 keeps it (44 of 48), quality 90 destroys it (27 of 48, chance level).
    assert read_provenance(encoded(marked, quality=95)).watermark.matches is not None
    after_90 = read_provenance(encoded(marked, quality=90)).watermark
    assert after_90.matches is None and after_90.bits_matched <= 33


# ---------------------------------------------------------------------------------------------- the commands
@pytest.fixture(scope="module")
def files(tmp_path_factory, request):
    """A1111 parameters in a PNG, a signed JPEG (without the C2PA library: a JPEG with a C2PA store's header), and a
    plain JPEG."""
    from item_cli.testing.hostile_provenance import jumbf_segment

    folder = tmp_path_factory.mktemp("provenance-files")
    (folder / "a1111.png").write_bytes(png_with(parameters=A1111))
    try:
        import c2pa  # noqa: F401

        signed_jpeg = request.getfixturevalue("signed")[0]
    except ImportError:
        plain = encoded(photo((96, 64)), quality=90)
        signed_jpeg = plain[:2] + jumbf_segment(b"\0" * 64) + plain[2:]
    (folder / "signed.jpg").write_bytes(signed_jpeg)
    (folder / "plain.jpg").write_bytes(encoded(photo((96, 64)), quality=90))
    return folder


def test_item_detect_reports_provenance_beside_the_verdict(files, signed, checkpoint, capsys):
    from item_cli.cli import main
    from item_cli.commands.detect import format_result

    code = main(["detect", str(files), "--model", str(checkpoint), "--json", "--device", "cpu", "--decode-workers", "1",
                 "--provenance-policy", "signed-ai-decides", "--c2pa-trust-anchors", str(signed[1])])
    rows = {Path(row["path"]).name: row for row in map(json.loads, capsys.readouterr().out.splitlines())}
    assert code == 0 and set(rows) == {"a1111.png", "signed.jpg", "plain.jpg"}
    assert rows["a1111.png"]["provenance"]["metadata"]["front_end"] == "AUTOMATIC1111"
    assert rows["signed.jpg"]["provenance"]["c2pa"]["validation_state"] == "valid"
    assert rows["signed.jpg"]["is_fake"] is True and "c2pa" in rows["signed.jpg"]["decided_by"]
    assert rows["plain.jpg"]["provenance"]["c2pa"]["present"] is False and "decided_by" not in rows["plain.jpg"]
    text = format_result(files / "signed.jpg", rows["signed.jpg"])
    assert "FAKE" in text and "C2PA signed by ITEM test signer: signature valid, signer trusted" in text
    assert "verdict decided by c2pa" in text
    assert "no credentials, generator metadata or known watermark" in format_result("plain.jpg", rows["plain.jpg"])
    (files.parent / "not-anchors.pem").write_text("no certificate here")
    assert main(["detect", str(files), "--model", str(checkpoint), "--c2pa-trust-anchors",
                 str(files.parent / "not-anchors.pem")]) == 2  # before any model is loaded
    assert "error: C2PA trust anchors" in capsys.readouterr().err


def test_the_pipeline_handler_and_web_page_give_the_same_answers(files, signed, checkpoint):
    from transformers import pipeline

    from item_cli import serve

    pipe = pipeline("image-classification", model=str(checkpoint), trust_remote_code=True, device="cpu")
    from_path_result, from_pixels_result = pipe([str(files / "signed.jpg"), Image.open(files / "signed.jpg")],
                                                explain=True, batch_size=2)
    from_path, from_pixels = from_path_result["provenance"], from_pixels_result["provenance"]
    assert from_path["c2pa"]["validation_state"] == "untrusted_signer" and from_pixels["source"] == "pixels"
    sys.path.insert(0, str(REPO))
    try:
        from handler import EndpointHandler
    finally:
        sys.path.remove(str(REPO))
    handler = EndpointHandler.__new__(EndpointHandler)
    handler.pipeline = pipe
    body = base64.b64encode((files / "a1111.png").read_bytes()).decode()
    answer = handler({"inputs": [body], "parameters": {"explain": True}})[0]
    assert answer["provenance"]["metadata"]["prompt"] == "a red fox in the snow, best quality"
    with pytest.raises(ValueError, match="provenance_policy.*must be one of report, signed-ai-decides"):
        handler({"inputs": body, "parameters": {"explain": True, "provenance_policy": "trust-me"}})
    checker = serve.Checker.__new__(serve.Checker)
    checker.pipeline = pipe
    verdict, picture, _, panel = checker.check_one({"path": str(files / "signed.jpg"), "orig_name": "signed.jpg"}, None)
    assert "### Provenance" in panel and "untrusted signer" in panel and "ITEM test signer" in panel
    assert "absence of these signals proves nothing" in panel.lower() and picture.size[0] > 0
    without = pipe.draw_explanation(Image.open(files / "signed.jpg"), {**from_path_result, "provenance": None})
    with_line = pipe.draw_explanation(Image.open(files / "signed.jpg"), from_path_result)
    assert with_line.info["layout"]["offset"][1] > without.info["layout"]["offset"][1]  # the banner's provenance line


def test_without_the_extra_detect_answers_and_says_how_to_get_provenance(files, checkpoint, tmp_path, monkeypatch, capsys):
    from item_cli.cli import main

    blocked = tmp_path / "blocked"  # the decoding workers import these from here first, and fail
    for module in ("c2pa", "imwatermark"):
        (blocked / module).mkdir(parents=True)
        (blocked / module / "__init__.py").write_text("raise ModuleNotFoundError('blocked by the test')\n")
        monkeypatch.setitem(sys.modules, module, None)  # and this process cannot import them either
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(blocked), os.environ.get("PYTHONPATH", "")]))
    code = main(["detect", str(files), "--model", str(checkpoint), "--json", "--device", "cpu", "--decode-workers", "1"])
    captured = capsys.readouterr()
    rows = {Path(row["path"]).name: row for row in map(json.loads, captured.out.splitlines())}
    assert code == 0 and len(rows) == 3 and all("fake_probability" in row for row in rows.values())
    signed_record = rows["signed.jpg"]["provenance"]["c2pa"]
    assert signed_record["present"] and not signed_record["checked"] and INSTALL_HINT in signed_record["note"]
    assert INSTALL_HINT in rows["plain.jpg"]["provenance"]["watermark"]["note"]
    assert rows["a1111.png"]["provenance"]["metadata"]["front_end"] == "AUTOMATIC1111"  # Pillow alone
    hints = [line for line in captured.err.splitlines() if INSTALL_HINT in line]
    assert hints == [f"provenance: C2PA and watermark checks are off ({INSTALL_HINT})"]


# ---------------------------------------------------------------------------------------------- audit and hostile files
def test_the_audit_flags_provenance_in_the_fakes_and_equalize_strips_it(tmp_path):
    from item_cli.audit import audit, audit_equalized
    from item_cli.data.perturb import Perturbation

    xmp = (f'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:Description Iptc4xmpExt:DigitalSourceType="{AI}"/></x:xmpmeta>')
    records = []
    for index in range(16):
        fake = index % 2 == 1
        path = tmp_path / f"{index}.jpg"
        path.write_bytes(encoded(photo((48, 40), seed=index), quality=90, **({"xmp": xmp.encode()} if fake else {})))
        records.append({"path": str(path), "label": int(fake), "generator": "sd"})
    report = audit(records, folds=2, log=False)
    assert report.shortcuts[0]["feature"] == "provenance metadata" and report.shortcuts[0]["auc"] > 0.9
    assert "provenance metadata" in " ".join(report.warnings)
    assert report.per_class["fake"]["provenance_share"] == 1.0 and report.per_class["real"]["provenance_share"] == 0.0
    equalized = audit_equalized(records, Perturbation("equalize", 95), folds=2, log=False)
    assert equalized.per_class["fake"]["provenance_share"] == 0.0  # the re-encode writes no XMP, C2PA or text
    assert not any(file.provenance for file in equalized.files)


def test_hostile_provenance_files_are_answered_not_raised(tmp_path):
    from item_cli.testing.hostile import _Writer  # the corpus writer, for this section alone
    from item_cli.testing.hostile_provenance import write_provenance_cases

    writer = _Writer(tmp_path, seed=0)
    write_provenance_cases(writer)
    found = {entry.path.name: read_provenance(entry.path) for entry in writer.manifest.files}
    assert found["c2pa-claims-2GiB.png"].c2pa.validation_state == "unreadable"
    assert "over the limit" in found["c2pa-claims-2GiB.png"].c2pa.reason
    assert found["comfyui-nested-json.png"].metadata.front_end == "ComfyUI"  # too deep to parse: no prompt, no crash
    assert len(found["700KB-parameters.png"].metadata.prompt) <= 4003
    assert found["900KB-settings-line.png"].metadata.front_end == "AUTOMATIC1111"  # read in bounded time
    zero_length = b"\xff\xd8\xff\xeb\x00\x00" + encoded(photo((16, 16)))[2:]  # an APP11 claiming 0 bytes
    assert read_provenance(zero_length).c2pa.present is False
    if found["c2pa-garbage.jpg"].c2pa.checked:
        assert found["c2pa-garbage.jpg"].c2pa.validation_state == "unreadable" and found["c2pa-garbage.jpg"].c2pa.reason
    assert all(summary_lines(record.to_dict()) for record in found.values())


def test_the_web_page_shows_a_provenance_panel_beside_the_verdict(files, signed, checkpoint, tmp_path):
    """In the browser (Debian's chromium, as tests/test_serve_browser.py drives it): upload the signed JPEG."""
    pytest.importorskip("gradio", reason='the web app needs gradio: pip install "item-detector[app]"')
    pytest.importorskip("playwright.sync_api", reason="the browser test needs the playwright package")
    import shutil
    import socket

    from playwright.sync_api import expect, sync_playwright
    from test_serve_browser import CHROMIUM_ARGS, RESULT_TIMEOUT_MS, save_artifact

    from item_cli import serve

    executable = shutil.which("chromium")
    if executable is None:
        pytest.skip("the browser test needs Debian's chromium (apt-get install chromium)")
    app = serve.build_app(str(checkpoint), device="cpu")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}")
            page.wait_for_selector("#upload", timeout=30_000)
            page.locator("#upload input[type=file]").set_input_files(str(files / "signed.jpg"))
            page.locator("#verdict h2").wait_for(timeout=RESULT_TIMEOUT_MS)
            panel = page.locator("#provenance")
            expect(panel).to_contain_text("Provenance", timeout=RESULT_TIMEOUT_MS)
            expect(panel).to_contain_text("untrusted signer")
            expect(panel).to_contain_text("ITEM test signer")
            expect(panel).to_contain_text("trainedAlgorithmicMedia")
            expect(panel).to_contain_text("proves nothing")
            page.screenshot(path=str(tmp_path / "app-provenance.png"), full_page=True)
            save_artifact(tmp_path / "app-provenance.png")  # kept when ITEM_TEST_ARTIFACTS is set
            browser.close()
    finally:
        app.close(verbose=False)


def test_detect_still_scores_with_a_checkpoint_whose_code_predates_provenance():
    from item_cli.commands.detect import detect
    from item_cli.data.decode import Decoded

    class OldPipeline:  # the pipeline of an older checkpoint: no `provenance` option, no `read_provenance`
        def __call__(self, images, explain=False, batch_size=1):
            one = {"is_fake": False, "fake_probability": 0.2, "threshold": 0.5}
            return [dict(one) for _ in images] if isinstance(images, list) else dict(one)

    record = read_provenance(png_with(parameters=A1111)).to_dict()
    decoded = [Decoded(0, "a1111.png", image=Image.new("RGB", (8, 8)), key="k", provenance=record)]
    (path, result, _), = detect(OldPipeline(), decoded)
    assert result["fake_probability"] == 0.2 and result["provenance"]["metadata"]["front_end"] == "AUTOMATIC1111"
