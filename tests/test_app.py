"""The web app (`facerestore app`): started on 127.0.0.1 in a subprocess, driven through its HTTP API
with gradio_client and through its page in headless Chromium (Debian's package), spoken to over the
DevTools protocol on a pipe (`--remote-debugging-pipe`: JSON messages ending in NUL, no websocket)."""
from __future__ import annotations

import base64
import fcntl
import json
import math
import os
import select
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from conftest import IN_CI, ROOT, shared_path

gr = pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")

import facerestore.app as app_module  # noqa: E402
from facerestore import hub, load  # noqa: E402
from facerestore.app import AppOptions, FaceRestoreApp, ModelCache, friendly, light_from_angles  # noqa: E402
from facerestore.face.align import estimate_affine, invert_affine, template  # noqa: E402
from facerestore.face.detect import load_detector  # noqa: E402
from facerestore.imageio import read_image, write_image  # noqa: E402
from facerestore.shlight import SHLight  # noqa: E402
from facerestore.registry import get_entry  # noqa: E402
from facerestore.restorer import upscale_background  # noqa: E402

DETECTOR = "retinaface-mobile0.25-1mb"
MODEL = "gpen-bfr-256"  # the smallest restore model: untrained here (--no-pretrained)
PHOTO = "data/real/whole/Blake_Lively.jpg"  # 700 x 464, two faces
PORTRAIT = "data/relight/obama.jpg"  # 727 x 909
LOCALHOST = "127.0.0.1,localhost"
SMALL_GPEN = dict(style_dim=64, n_mlp=2, channel_multiplier=1, narrow=0.25)  # small configs for in-process tests


def all_face_parser(path: Path) -> Path:
    """ParseNet weights that label every pixel skin: the GPEN paste mask is then the whole crop square
    (less GPEN's blurred border), whatever the untrained restore network outputs. An untrained parser
    would make the pasted area random (it can mask out a whole face)."""
    from facexlib.parsing.parsenet import ParseNet

    state = ParseNet(in_size=512, out_size=512, parsing_ch=19).state_dict()
    state["out_mask_conv.conv2d.weight"].zero_()
    state["out_mask_conv.conv2d.bias"].zero_()
    state["out_mask_conv.conv2d.bias"][1] = 1.0  # label 1: skin
    torch.save(state, path)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`facerestore app` on a free port; always stopped at the end (terminate, then kill)."""
    detector_weights = shared_path("weights/retinaface/mobilenet0.25_Final.pth")
    dpr_weights = shared_path("weights/dpr/trained_model_03.t7")
    home = tmp_path_factory.mktemp("app")
    parser_weights = all_face_parser(home / "parsenet_all_face.pth")
    port = free_port()
    env = {**os.environ, "FACERESTORE_HOME": str(home / "home"), "GRADIO_TEMP_DIR": str(home / "gradio"),
           "NO_PROXY": LOCALHOST, "no_proxy": LOCALHOST}
    cmd = [sys.executable, "-m", "facerestore", "app", "--port", str(port), "--no-pretrained", "--model", MODEL,
           "--device", "cpu", "--detector", DETECTOR, "--detector-weights", str(detector_weights),
           "--relight-weights", str(dpr_weights), "--parser-weights", str(parser_weights)]
    log_path = home / "server.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NO_PROXY", LOCALHOST)  # the client must reach the server directly
        mp.setenv("no_proxy", LOCALHOST)
        try:
            deadline = time.monotonic() + 120  # importing torch + gradio on a busy 2-core machine
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"the app exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
                try:
                    with urllib.request.urlopen(url, timeout=5) as response:
                        if response.status == 200:
                            break
                except (urllib.error.URLError, OSError):
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"the app did not answer within 120 s:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.5)
            yield SimpleNamespace(url=url, client=gradio_client.Client(url, verbose=False), log=log_path,
                                  detector_weights=detector_weights, dpr_weights=dpr_weights)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# -- the HTTP API (gradio_client) ---------------------------------------------------------------------
def test_api_names_and_parameters(server):
    info = server.client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert set(info) == {"/restore", "/relight"}  # the page's own events are private
    assert [p["parameter_name"] for p in info["/restore"]["parameters"]] == ["image", "model", "fidelity", "upscale"]
    assert [p["parameter_name"] for p in info["/relight"]["parameters"]] == ["image", "azimuth", "elevation"]


def test_restore_api(server):
    photo = shared_path(PHOTO)
    out_path = server.client.predict(gradio_client.handle_file(str(photo)), MODEL, 0.0, 2, api_name="/restore")
    img, out = read_image(photo), read_image(out_path)
    assert Path(out_path).suffix == ".png" and out.shape == (2 * img.shape[0], 2 * img.shape[1], 3)
    # Outside the pasted face squares the photo is the plain Lanczos upscale, pixel for pixel; inside,
    # the (untrained) network's output was pasted, so the faces differ a lot from the upscaled input.
    background = upscale_background(img, 2)
    size = get_entry(MODEL).face_size
    dets = load_detector(DETECTOR, weights=server.detector_weights, device="cpu").detect(img)
    assert len(dets.boxes) == 2
    pasted = np.zeros(out.shape[:2], np.uint8)
    for landmarks, (x1, y1, x2, y2) in zip(dets.landmarks, dets.boxes * 2):
        to_crop = estimate_affine(landmarks, template(get_entry(MODEL).template, size))  # input px -> crop px
        to_crop[:, :2] /= 2  # output px -> crop px (the output is the input at 2x)
        pasted |= cv2.warpAffine(np.ones((size, size), np.uint8), invert_affine(to_crop),
                                 (out.shape[1], out.shape[0]), flags=cv2.INTER_NEAREST)
        face = np.s_[int(y1):int(y2), int(x1):int(x2)]
        changed = np.abs(out[face].astype(int) - background[face]).max(axis=-1) > 8
        assert changed.mean() > 0.8  # 0.94 to 1.0 over untrained GPEN inits (seeds 0-7)
    outside = cv2.dilate(pasted, np.ones((9, 9), np.uint8)) == 0  # a few pixels of slack for interpolation
    assert 0.2 < outside.mean() < 0.95 and np.array_equal(out[outside], background[outside])


def test_relight_api_matches_python_api(server):
    portrait = shared_path(PORTRAIT)
    out_path = server.client.predict(gradio_client.handle_file(str(portrait)), 30, 20, api_name="/relight")
    relit = read_image(out_path)
    # documented convention: azimuth 30 degrees toward the image right, elevation 20 degrees up
    az, el = math.radians(30), math.radians(20)
    light = SHLight.from_direction((math.cos(el) * math.sin(az), math.sin(el), math.cos(el) * math.cos(az)))
    expected = load("dpr-512", weights=server.dpr_weights, device="cpu").relight(read_image(portrait), light)
    assert relit.shape == expected.shape == read_image(portrait).shape
    # same pipeline in another process: float summation order may differ, so 1 grey level of slack
    assert np.abs(relit.astype(int) - expected).max() <= 1
    assert np.abs(relit.astype(int) - read_image(portrait)).mean() > 2  # the light did change the image


def test_api_errors_are_messages(server, tmp_path):
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("not an image")
    blank = write_image(tmp_path / "blank.png", np.full((200, 300, 3), 128, np.uint8))
    photo = gradio_client.handle_file(str(shared_path(PHOTO)))
    cases = [
        ((gradio_client.handle_file(str(not_an_image)), MODEL, 0.0, 1), "Not a usable image: notes.png"),
        ((gradio_client.handle_file(str(blank)), MODEL, 0.0, 1), "No face found"),
        ((photo, "gpen-bfr-25", 0.0, 1), "Did you mean: gpen-bfr-256"),
        ((photo, "dpr-512", 0.0, 1), "not a restore model"),
        ((photo, MODEL, 1.5, 1), "fidelity must be in [0, 1]"),
    ]
    for args, message in cases:
        with pytest.raises(gradio_client.exceptions.AppError, match=None) as info:
            server.client.predict(*args, api_name="/restore")
        assert message in str(info.value)
    assert "Traceback" not in server.log.read_text()  # users' errors are not logged as crashes


# -- in-process: missing weights, the cache, the light convention, the CLI without gradio -------------
def test_missing_weights_message_says_where_to_put_the_file(monkeypatch):
    def offline(url, *args, **kwargs):
        raise hub.WeightsError(f"could not download {url}: offline")

    monkeypatch.setattr(hub, "download", offline)
    app = FaceRestoreApp(AppOptions(pretrained=True, device="cpu", detector=DETECTOR))
    try:
        with pytest.raises(gr.Error) as info:
            friendly(app.api_restore)(str(shared_path(PHOTO)), MODEL, 0.0, 1)
    finally:
        app.close()
    weights_file = get_entry(MODEL).files[0]
    assert "Weights not available" in info.value.message
    assert str(hub.cached_path(weights_file)) in info.value.message  # where to place it
    assert weights_file.url in info.value.message  # where to get it


def test_restore_tab_compares_models_side_by_side(monkeypatch, tmp_path):
    """The Restore tab's handler: every photo through every model; an unreadable photo is reported,
    not fatal. Small configs of the real GPEN architectures (untrained)."""
    real_load = app_module.load
    monkeypatch.setattr(app_module, "load", lambda name, **kwargs: real_load(name, **kwargs, **SMALL_GPEN))
    app = FaceRestoreApp(AppOptions(pretrained=False, device="cpu", detector=DETECTOR,
                                    detector_weights=str(shared_path("weights/retinaface/mobilenet0.25_Final.pth"))))
    face = write_image(tmp_path / "Adele_crop.png",  # one face, at 256 px to keep the test quick
                       cv2.resize(read_image(shared_path("data/real/cropped/Adele_crop.png")), (256, 256),
                                  interpolation=cv2.INTER_AREA))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    models = ["gpen-bfr-256", "gpen-bfr-512", "gpen-bfr-256"]  # a repeated model runs once
    try:
        with pytest.warns(UserWarning, match="broken: Not a usable image: broken.jpg"):  # gr.Warning outside a request
            slider, comparison, faces, downloads, status, pairs = app.ui_restore(
                [str(face), str(broken)], models, 0.0, False, 1.5, "none", "model default", "fp32")
        assert [Path(p).name for p in downloads] == ["Adele_crop_gpen-bfr-256.png", "Adele_crop_gpen-bfr-512.png"]
        assert slider == pairs[0] and [after for _, after in pairs] == downloads
        for before, after in pairs:  # the slider's halves have the same size: the output's, 1.5x the input
            assert read_image(before).shape == read_image(after).shape == (384, 384, 3)
        assert [read_image(path).shape for path, _ in faces] == [(256, 512, 3), (512, 1024, 3)]  # input | restored
        assert "| Adele_crop | gpen-bfr-256 | 1 | 384x384 |" in status and "| Adele_crop | gpen-bfr-512 | 1 |" in status
        assert comparison.columns == 2 and app.cache.keys()[-1][1] == "gpen-bfr-512"
        with pytest.raises(ValueError, match="Upload one or more photos"):
            app.ui_restore([], models, 0.0, False, 1, "none", "model default", "fp32")
        with pytest.raises(ValueError, match="Nothing was restored"):
            app.ui_restore([str(broken)], models, 0.0, False, 1, "none", "model default", "fp32")
    finally:
        app.close()


def test_model_options_are_shown_and_passed(monkeypatch, tmp_path):
    """Background upsampler, paste mode, the model's default fidelity and video are in the page and
    reach load() / restore() / restore_video() (load replaced by a recording stand-in)."""
    calls = []

    def restore(img, *, upscale=1, fidelity=None, paste=None):
        calls.append(dict(upscale=upscale, fidelity=fidelity, paste=paste))
        return np.zeros((2, 2, 3), np.uint8)

    def restore_video(src, dst, *, upscale=1, fidelity=None):
        calls.append(dict(src=src, dst=dst, upscale=upscale, fidelity=fidelity))
        Path(dst).write_bytes(b"video")

    def recording_load(name, *, upsampler=None, upsampler_weights=None, parser_weights=None, **kwargs):
        calls.append(dict(name=name, upsampler=upsampler, upsampler_weights=upsampler_weights, **kwargs))
        return SimpleNamespace(entry=get_entry(name), restore=restore, restore_video=restore_video)

    monkeypatch.setattr(app_module, "load", recording_load)
    options = AppOptions(pretrained=False, device="cpu", upsampler_weights=str(tmp_path / "x2.pth"))
    demo = app_module.build_app(options)
    try:
        shown = {c["props"].get("elem_id"): c["props"].get("visible") for c in demo.config["components"]}
        assert shown["restore-upsampler"] is True and shown["restore-paste"] is not False and "video-button" in shown
        app = demo.facerestore
        restorer, _ = app.restorer(MODEL, upsampler="realesrgan-x2plus")
        assert calls[-1]["upsampler"] == "realesrgan-x2plus" and calls[-1]["upsampler_weights"] == options.upsampler_weights
        app.run_restore(restorer, np.zeros((2, 2, 3), np.uint8), None, 2, paste="box")
        assert calls[-1] == dict(upscale=2.0, fidelity=None, paste="box")  # None: the model's own default
        out, _ = app.ui_video(str(tmp_path / "clip.mp4"), MODEL, 0.5, 2)
        assert calls[-1] == dict(src=str(tmp_path / "clip.mp4"), dst=Path(out), upscale=2.0, fidelity=0.5)
    finally:
        demo.facerestore.close()


def test_model_cache_is_bounded_lru():
    cache, built = ModelCache(2), []

    def builder(key):
        return lambda: built.append(key) or f"model {key}"

    for key in ["a", "b", "a", "c"]:  # "a" was used after "b", so "b" is evicted for "c"
        cache.get(key, builder(key))
    assert built == ["a", "b", "c"] and cache.keys() == ["a", "c"]
    assert cache.get("a", builder("a")) == ("model a", 0.0) and built == ["a", "b", "c"]
    with pytest.raises(ValueError):
        ModelCache(0)


@pytest.mark.parametrize("azimuth, elevation, direction", [
    (0, 0, (0, 0, 1)), (90, 0, (1, 0, 0)), (-90, 0, (-1, 0, 0)), (0, 90, (0, 1, 0)), (180, 0, (0, 0, -1)),
])
def test_light_from_angles(azimuth, elevation, direction):
    np.testing.assert_allclose(light_from_angles(azimuth, elevation).direction, direction, atol=1e-12)


def test_cli_checks_its_options_before_starting(capsys, tmp_path):
    from facerestore.cli import main

    assert main(["app", "-m", "dpr"]) == 1
    assert "dpr is a relight model, not a restore model" in capsys.readouterr().err
    assert main(["app", "-m", "gfpgn"]) == 1
    assert "Did you mean" in capsys.readouterr().err
    assert main(["app", "--relight-weights", str(tmp_path / "missing.t7")]) == 1
    err = capsys.readouterr().err
    assert "--relight-weights" in err and "does not exist" in err


def test_cli_without_gradio_says_what_to_install(monkeypatch, capsys):
    from facerestore.cli import main

    monkeypatch.delitem(sys.modules, "facerestore.app", raising=False)
    monkeypatch.setitem(sys.modules, "gradio", None)  # `import gradio` now fails as if not installed
    assert main(["app"]) == 1
    assert 'pip install "facerestore[app]"' in capsys.readouterr().err


# -- the page in headless Chromium ----------------------------------------------------------------------
class Chromium:
    """Headless Chromium driven over the DevTools protocol on fds 3 (commands) and 4 (replies)."""

    def __init__(self, executable: str, profile: Path, width: int = 1280, height: int = 1500) -> None:
        to_browser, self._write = os.pipe()
        self._read, from_browser = os.pipe()

        def child_fds() -> None:  # move the pipe ends to 3 and 4 (via high fds: they may be 3 or 4 already)
            commands, replies = fcntl.fcntl(to_browser, fcntl.F_DUPFD, 10), fcntl.fcntl(from_browser, fcntl.F_DUPFD, 10)
            os.dup2(commands, 3)
            os.dup2(replies, 4)

        args = [executable, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--hide-scrollbars", "--remote-debugging-pipe", f"--user-data-dir={profile}",
                f"--window-size={width},{height}", "about:blank"]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, preexec_fn=child_fds, close_fds=False)
        os.close(to_browser)
        os.close(from_browser)
        self._buffer, self._id, self._session = b"", 0, None

    def send(self, method: str, params: dict | None = None, timeout: float = 30) -> dict:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params or {}}
        if self._session and not method.startswith("Target."):
            message["sessionId"] = self._session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") == self._id:  # events (no id) are not needed here
                    if "error" in reply:
                        raise RuntimeError(f"{method}: {reply['error']}")
                    return reply["result"]
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no reply to {method} within {timeout} s")
            if select.select([self._read], [], [], left)[0]:
                chunk = os.read(self._read, 1 << 20)
                if not chunk:
                    raise RuntimeError("the browser exited")
                self._buffer += chunk

    def open(self, url: str) -> None:
        target = self.send("Target.createTarget", {"url": url})["targetId"]
        self._session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]

    def eval(self, expression: str):
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.eval(expression)
            if value:
                return value
            time.sleep(0.25)
        raise AssertionError(f"{what}: not within {timeout} s; page text:\n{self.eval('document.body.innerText')[:3000]}")

    def upload(self, selector: str, path: Path) -> None:
        self.send("DOM.getDocument")
        node = self.send("Runtime.evaluate", {"expression": f"document.querySelector({json.dumps(selector)})"})["result"]
        assert node.get("objectId"), f"no element {selector}"
        self.send("DOM.setFileInputFiles", {"files": [str(path)], "objectId": node["objectId"]})

    def screenshot(self, path: Path) -> Path:
        path.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", {"format": "png"})["data"]))
        return path

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        os.close(self._write)
        os.close(self._read)


def loaded_images(selector: str) -> str:
    """JS: the natural widths of the images under `selector` once all have loaded, else null."""
    return (f"(() => {{ const imgs = [...document.querySelectorAll({json.dumps(selector + ' img')})];"
            " return imgs.length && imgs.every(i => i.complete && i.naturalWidth > 0)"
            " ? imgs.map(i => i.naturalWidth) : null; })()")


def all_present(ids: list[str]) -> str:
    """JS: true once every element id is in the page."""
    return f"{json.dumps(ids)}.every(id => document.getElementById(id))"


@pytest.fixture
def browser(tmp_path):
    executable = shutil.which("chromium")
    if executable is None:
        message = "chromium is not installed (apt-get install -y chromium)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    chromium = Chromium(executable, tmp_path / "profile")
    yield chromium
    chromium.close()


def test_page_in_browser(server, browser, tmp_path):
    browser.open(server.url)
    controls = ["restore-input", "restore-models", "restore-model-card", "restore-fidelity", "restore-upscale",
                "restore-precision", "restore-button", "restore-slider", "restore-results", "restore-faces",
                "restore-download", "restore-status"]
    browser.wait_for(all_present(controls), 60, "the Restore tab's controls did not render")
    text = browser.eval("document.body.innerText")
    for words in ["Restore", "Relight", MODEL, "License", "no commercial use", "Fidelity", "Upscale", "Precision"]:
        assert words in text, words

    # restore round trip: upload, click, the before/after slider shows both images at 2x
    photo = shared_path(PHOTO)
    browser.upload("#restore-input input[type=file]", photo)
    browser.wait_for(f"document.querySelector('#restore-input').innerText.includes('{photo.name}')", 30, "upload")
    browser.eval("document.querySelector('#restore-button').click()")
    widths = browser.wait_for(loaded_images("#restore-slider"), 90, "the restored image")
    assert widths == [2 * 700, 2 * 700]
    assert browser.wait_for(loaded_images("#restore-faces"), 30, "the face gallery") == [2 * 256, 2 * 256]
    status = browser.eval("document.querySelector('#restore-status').innerText")
    assert photo.stem in status and MODEL in status
    shots = [browser.screenshot(tmp_path / "restore.png")]
    assert cv2.imread(str(shots[0])).shape[1] == 1280

    # Relight tab: the light controls and the sphere preview render; an error is a message in the page;
    # a relight round trip shows the relit portrait at the input's size
    browser.eval("[...document.querySelectorAll('button[role=tab]')].find(b => b.innerText.trim() == 'Relight').click()")
    controls = ["relight-input", "relight-model", "relight-source", "relight-azimuth", "relight-elevation",
                "relight-preset", "relight-button", "relight-output"]
    browser.wait_for(all_present(controls), 30, "the Relight tab's controls did not render")
    assert browser.wait_for(loaded_images("#relight-sphere"), 30, "the lit-sphere preview") == [256]
    browser.eval("document.querySelector('#relight-button').click()")
    browser.wait_for("document.body.innerText.includes('Upload a portrait first')", 30, "no error message")
    browser.upload("#relight-input input[type=file]", shared_path(PORTRAIT))
    browser.wait_for(loaded_images("#relight-input"), 30, "the uploaded portrait")
    browser.eval("document.querySelector('#relight-button').click()")
    assert browser.wait_for(loaded_images("#relight-output"), 60, "the relit portrait") == [727]
    browser.eval("document.querySelectorAll('.toast-close').forEach(b => b.click())")  # clear the error message
    browser.wait_for("!document.querySelector('.toast-close')", 10, "the error message did not close")
    shots.append(browser.screenshot(tmp_path / "relight.png"))
    if os.environ.get("FACERESTORE_APP_SCREENSHOTS"):  # keep them (the README's docs/app*.png come from here)
        for shot in shots:
            shutil.copy(shot, Path(os.environ["FACERESTORE_APP_SCREENSHOTS"]) / shot.name)
