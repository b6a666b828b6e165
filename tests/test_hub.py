"""Weights hub: downloads from a local HTTP server (success, cache hit, corrupt, truncated, server
down), explicit files / folders / URLs, and the errors a user sees."""
from __future__ import annotations

import hashlib
import http.server
import io
import socket
import threading
from pathlib import Path

import pytest
import torch

import facerestore
from facerestore import hub
from facerestore.registry import WeightFile, ZooEntry


def tiny_net(channels: int = 3) -> torch.nn.Module:
    torch.manual_seed(1)
    return torch.nn.Sequential(torch.nn.Conv2d(3, channels, 3, padding=1), torch.nn.Conv2d(channels, 3, 1))


def checkpoint_bytes(key: str | None = "params_ema", channels: int = 3) -> bytes:
    state = tiny_net(channels).state_dict()
    buf = io.BytesIO()
    torch.save({key: state} if key else state, buf)
    return buf.getvalue()


class Server:
    """A tiny HTTP server on 127.0.0.1 serving byte strings; `lie_length` announces more bytes than sent."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.lie_length: set[str] = set()
        self.requests: list[str] = []
        self.ranges: list[str | None] = []  # the Range header of each request
        self.content_type: dict[str, str] = {}
        self.drop_first: set[str] = set()  # paths whose first response stops half-way (connection dropped)
        self.honour_range = False
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests.append(self.path)
                outer.ranges.append(self.headers.get("Range"))
                body = outer.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                if self.path in outer.drop_first:
                    outer.drop_first.discard(self.path)
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)  # the connection drops mid-file
                    self.close_connection = True
                    return
                requested = self.headers.get("Range", "")
                if outer.honour_range and requested.startswith("bytes="):
                    start = int(requested[len("bytes="):].split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                    self.send_header("Content-Length", str(len(body) - start))
                    self.end_headers()
                    self.wfile.write(body[start:])
                    return
                self.send_response(200)
                length = len(body) + (1000 if self.path in outer.lie_length else 0)
                self.send_header("Content-Length", str(length))
                self.send_header("Content-Type", outer.content_type.get(self.path, "application/octet-stream"))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


def entry_for(url: str, sha256: str | None = None, size: int | None = None, name: str = "tiny") -> ZooEntry:
    return ZooEntry(
        name=name, arch=tiny_net, arch_config={}, task="restore",
        files=(WeightFile("tiny.pth", (url,), sha256=sha256, size=size, state_dict_key="params_ema"),),
        face_size=16,
    )


def leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def test_download_then_cache_hit(server):
    body = checkpoint_bytes()
    server.files["/tiny.pth"] = body
    entry = entry_for(server.url("/tiny.pth"), hashlib.sha256(body).hexdigest(), len(body))
    restorer = facerestore.load(entry, device="cpu", progress=False)
    expected = tiny_net().state_dict()
    for k, v in restorer.net.state_dict().items():
        assert torch.equal(v, expected[k])
    assert hub.cached_path(entry.files[0]).read_bytes() == body
    assert hub.cached_path(entry.files[0]).parent == hub.home_dir() / "weights"
    assert hub.is_cached(entry)
    server.close()  # a cache hit must not need the network
    facerestore.load(entry, device="cpu", progress=False)
    assert server.requests == ["/tiny.pth"]


def test_cache_lives_in_facerestore_home(monkeypatch, tmp_path):
    monkeypatch.setenv("FACERESTORE_HOME", str(tmp_path / "home"))
    assert hub.weights_dir() == tmp_path / "home" / "weights"
    monkeypatch.delenv("FACERESTORE_HOME")
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert hub.home_dir() == Path.home() / ".cache" / "facerestore"


def test_corrupt_file_is_reported_and_not_cached(server):
    server.files["/tiny.pth"] = b"this is not a checkpoint" * 100
    entry = entry_for(server.url("/tiny.pth"))
    with pytest.raises(hub.WeightsError, match="not a valid checkpoint"):
        facerestore.load(entry, device="cpu", progress=False)
    assert leftovers(hub.weights_dir()) == []


def test_checkpoint_of_other_architecture_is_rejected(server):
    server.files["/tiny.pth"] = checkpoint_bytes(channels=5)  # loads, but not strictly into tiny_net()
    entry = entry_for(server.url("/tiny.pth"))
    with pytest.raises(hub.WeightsError, match="does not fit this architecture"):
        facerestore.load(entry, device="cpu", progress=False)
    assert leftovers(hub.weights_dir()) == []


def test_truncated_download_is_detected(server):
    server.files["/tiny.pth"] = checkpoint_bytes()
    server.lie_length.add("/tiny.pth")
    entry = entry_for(server.url("/tiny.pth"))
    with pytest.raises(hub.WeightsError) as info:
        facerestore.load(entry, device="cpu", progress=False)
    assert "tiny.pth" in str(info.value) and "resume" in str(info.value)
    # only the partial file is kept, for the next attempt to resume; nothing enters the cache
    assert leftovers(hub.weights_dir()) == [hub.partial_path(hub.cached_path(entry.files[0]))]


def test_size_and_sha256_mismatch(server):
    body = checkpoint_bytes()
    server.files["/tiny.pth"] = body
    with pytest.raises(hub.WeightsError, match="size is"):
        facerestore.load(entry_for(server.url("/tiny.pth"), size=len(body) + 1), device="cpu", progress=False)
    with pytest.raises(hub.WeightsError, match="sha256"):
        facerestore.load(entry_for(server.url("/tiny.pth"), sha256="0" * 64), device="cpu", progress=False)
    assert leftovers(hub.weights_dir()) == []


def test_server_down_names_url_and_manual_path():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/tiny.pth"
    entry = entry_for(url)
    with pytest.raises(hub.WeightsError) as info:
        facerestore.load(entry, device="cpu", progress=False)
    message = str(info.value)
    assert url in message
    assert str(hub.cached_path(entry.files[0])) in message
    assert "weights=" in message


def test_explicit_file_folder_and_url(server, tmp_path):
    body = checkpoint_bytes()
    (tmp_path / "tiny.pth").write_bytes(body)
    entry = entry_for("http://127.0.0.1:9/never-used.pth")
    expected = tiny_net().state_dict()
    for weights in (tmp_path / "tiny.pth", tmp_path, str(tmp_path / "tiny.pth")):
        net = facerestore.load(entry, weights=weights, device="cpu").net
        assert all(torch.equal(v, expected[k]) for k, v in net.state_dict().items())
    server.files["/custom_name.pth"] = body
    net = facerestore.load(entry, weights=server.url("/custom_name.pth"), device="cpu", progress=False).net
    assert all(torch.equal(v, expected[k]) for k, v in net.state_dict().items())
    assert leftovers(hub.weights_dir()) == [hub.url_cache_path(server.url("/custom_name.pth"), "tiny.pth")]
    assert hub.url_cache_path(server.url("/custom_name.pth"), "x").name == "custom_name.pth"
    with pytest.raises(hub.WeightsError, match="does not exist"):
        facerestore.load(entry, weights=tmp_path / "missing.pth", device="cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(hub.WeightsError, match="lacks tiny.pth"):
        facerestore.load(entry, weights=tmp_path / "empty", device="cpu")


def test_bare_state_dict_and_fallback_keys(tmp_path):
    state = tiny_net().state_dict()
    for payload in (state, {"params": state}, {"params_ema": state, "params": {}}, {"net_ema": state, "iter": 3}):
        torch.save(payload, tmp_path / "ck.pth")
        got = hub.extract_state_dict(hub.read_checkpoint(tmp_path / "ck.pth"), "params_ema")
        assert set(got) == set(state)
    (tmp_path / "bad.pth").write_bytes(b"garbage")
    with pytest.raises(hub.WeightsError, match="not a readable PyTorch checkpoint"):
        hub.read_checkpoint(tmp_path / "bad.pth")


def test_pretrained_false_reads_nothing(server):
    entry = entry_for(server.url("/tiny.pth"))
    restorer = facerestore.load(entry, pretrained=False, device="cpu")
    assert isinstance(restorer.net, torch.nn.Module)
    assert server.requests == []
    assert leftovers(hub.weights_dir()) == []


def test_a_web_page_is_not_taken_for_weights(server):
    server.files["/tiny.pth"] = b"<html><body>Sign in to download</body></html>"
    server.content_type["/tiny.pth"] = "text/html"
    with pytest.raises(hub.WeightsError, match="web page"):
        facerestore.load(entry_for(server.url("/tiny.pth")), device="cpu", progress=False)
    assert leftovers(hub.weights_dir()) == []


def test_interrupted_download_resumes_with_range(server):
    body = checkpoint_bytes(channels=64)  # large enough to be cut in the middle of its data
    server.files["/tiny.pth"] = body
    server.drop_first.add("/tiny.pth")
    server.honour_range = True
    wf = WeightFile("tiny.pth", (server.url("/tiny.pth"),), sha256=hashlib.sha256(body).hexdigest(), size=len(body))
    dest = hub.weights_dir() / "tiny.pth"
    with pytest.raises(hub.WeightsError, match="resume"):
        hub.download(wf.url, dest, wf=wf, progress=False)
    part = hub.partial_path(dest)
    assert part.read_bytes() == body[: len(body) // 2] and not dest.exists()
    assert hub.download(wf.url, dest, wf=wf, progress=False) == dest
    assert server.ranges == [None, f"bytes={len(body) // 2}-"]  # the second request asked for the rest only
    assert dest.read_bytes() == body and not part.exists()


def test_a_server_without_range_support_restarts_cleanly(server):
    body = checkpoint_bytes()
    server.files["/tiny.pth"] = body
    dest = hub.weights_dir() / "tiny.pth"
    dest.parent.mkdir(parents=True)
    hub.partial_path(dest).write_bytes(b"stale bytes of an older attempt")
    hub.download(server.url("/tiny.pth"), dest, progress=False)  # the server answers 200: start over
    assert server.ranges == ["bytes=31-"]
    assert dest.read_bytes() == body and leftovers(hub.weights_dir()) == [dest]


@pytest.mark.parametrize("tail", ["..%2F..%2Fevil", "", "x?x=../a", "..", "%2e%2e", "a%5C..%5C..%5Cb", ".hidden"])
def test_url_file_names_stay_inside_the_cache(tail):
    url = f"http://example.com/models/{tail}"
    path = hub.url_cache_path(url, "fallback.pth")
    folder = hub.weights_dir() / "url"
    assert path.resolve().parent.parent == folder.resolve()
    assert path.parent.name == hashlib.sha256(url.encode()).hexdigest()[:16]
    assert "/" not in path.name and "\\" not in path.name and not path.name.startswith(".")


def test_two_urls_never_share_a_cache_entry(server):
    server.files["/a/model.pth"] = checkpoint_bytes()
    server.files["/b/model.pth"] = checkpoint_bytes(key=None)
    entry = entry_for("http://127.0.0.1:9/never-used.pth")
    for path in ("/a/model.pth", "/b/model.pth"):
        facerestore.load(entry, weights=server.url(path), device="cpu", progress=False)
    cached = leftovers(hub.weights_dir())
    assert len(cached) == 2 and {p.name for p in cached} == {"model.pth"}
    assert sorted(p.read_bytes() for p in cached) == sorted(server.files.values())


def _create_marker(path: str) -> None:  # never reached: what a malicious checkpoint would run
    Path(path).write_text("code ran")


class CodeOnLoad:
    """Pickles to a call of open(marker, "w"): unpickling it creates the marker file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "marker"
    torch.save({"params_ema": tiny_net().state_dict(), "extra": CodeOnLoad(marker)}, tmp_path / "evil.pth")
    with pytest.raises(hub.WeightsError, match="refused") as info:
        hub.read_checkpoint(tmp_path / "evil.pth")
    assert "evil.pth" in str(info.value) and not marker.exists()
    entry = entry_for("http://127.0.0.1:9/never-used.pth")
    with pytest.raises(hub.WeightsError, match="refused"):
        facerestore.load(entry, weights=tmp_path / "evil.pth", device="cpu")
    assert not marker.exists()
    torch.load(tmp_path / "evil.pth", weights_only=False)  # the payload is live: a plain load runs it
    assert marker.exists()


def test_a_truncated_checkpoint_names_itself_and_what_to_do(tmp_path):
    body = checkpoint_bytes()
    (tmp_path / "cut.pth").write_bytes(body[: len(body) // 2])
    with pytest.raises(hub.WeightsError) as info:
        hub.read_checkpoint(tmp_path / "cut.pth")
    message = str(info.value)
    assert "cut.pth" in message and "truncated or corrupt" in message and "download it again" in message
    with pytest.raises(hub.WeightsError, match="does not exist"):
        hub.read_checkpoint(tmp_path / "missing.pth")
