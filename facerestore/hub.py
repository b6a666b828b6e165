"""Weights on disk: the cache, downloads and reading checkpoint files.

Lookup order for an entry's file: an explicit `weights=` (file, folder or URL) > the cache >
download into the cache. Downloads go to `<file>.part` beside the target, are verified (size,
sha256 when known, and a caller-supplied check such as strict loading) and only then renamed into
place, so the cache never holds a truncated or corrupt file; an interrupted download is resumed
from its `.part` with an HTTP Range request. Files given by URL are cached under
`weights/url/<sha256(url)[:16]>/<name>`. Checkpoints are read weights-only: a file that would run
code when unpickled is refused without running it.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from tqdm.auto import tqdm

from .registry import WeightFile, ZooEntry

CHUNK = 1 << 20


class WeightsError(RuntimeError):
    """A weights file is missing, cannot be downloaded, or is corrupt. The message says what to do."""


def home_dir() -> Path:
    """Root of facerestore's cache: `$FACERESTORE_HOME`, else `~/.cache/facerestore`."""
    env = os.environ.get("FACERESTORE_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "facerestore"


def weights_dir() -> Path:
    return home_dir() / "weights"


def cached_path(wf: WeightFile) -> Path:
    return weights_dir() / wf.filename


def is_cached(entry: ZooEntry) -> bool:
    return all(cached_path(wf).is_file() for wf in entry.files)


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_file(path: Path, wf: WeightFile) -> None:
    """Check size and sha256 where the registry knows them."""
    size = path.stat().st_size
    if wf.size is not None and size != wf.size:
        raise WeightsError(f"{wf.filename}: size is {size} bytes, expected {wf.size} (truncated or wrong file)")
    if wf.sha256 is not None:
        digest = sha256_of(path)
        if digest != wf.sha256:
            raise WeightsError(f"{wf.filename}: sha256 {digest} does not match the expected {wf.sha256}")


def _is_url(s: str) -> bool:
    return s.startswith(("http://", "https://", "file://"))


def url_cache_path(url: str, fallback_name: str) -> Path:
    """Cache path of a file given by URL (`weights=URL`): `weights/url/<sha256(url)[:16]>/<name>`.

    The hash keeps two URLs with the same file name apart; the name is the last path segment of the
    URL (percent-decoded, query ignored) reduced to safe characters, or `fallback_name` when that
    leaves nothing usable, so no URL can place a file outside the cache folder."""
    segment = urllib.parse.unquote(urllib.parse.urlsplit(url).path).replace("\\", "/").rsplit("/", 1)[-1]
    name = re.sub(r"[^A-Za-z0-9._+-]", "_", segment).lstrip(".")[:120]
    if not name.strip("._-"):
        name = fallback_name
    folder = weights_dir() / "url" / hashlib.sha256(url.encode()).hexdigest()[:16]
    dest = folder / name
    if dest.resolve().parent != folder.resolve():  # defence in depth; the sanitising above rules it out
        raise WeightsError(f"refusing the file name {segment!r} of {url}")
    return dest


def partial_path(dest: Path) -> Path:
    """Where an unfinished download of `dest` is kept between attempts (resumed with HTTP Range)."""
    return dest.with_name(dest.name + ".part")


def _content_range_start(value: str | None) -> int | None:
    """The first byte of a `Content-Range: bytes START-END/TOTAL` header."""
    match = re.match(r"\s*bytes\s+(\d+)-", value or "")
    return int(match.group(1)) if match else None


def download(
    url: str,
    dest: Path,
    wf: WeightFile | None = None,
    verify: Callable[[Path], None] | None = None,
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Download `url` to `dest`: into `<dest>.part`, verify, then rename into place.

    An interrupted download (dropped connection, timeout, Ctrl-C) keeps `<dest>.part`; the next call
    resumes it with an HTTP Range request (a server answering 200 instead of 206 restarts it cleanly).
    A complete file that fails verification (size, sha256, `verify`) is deleted: retrying would not help.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = partial_path(dest)
    expected_size = wf.size if wf is not None else None
    offset = part.stat().st_size if part.is_file() else 0
    if expected_size is not None and offset > expected_size:  # not a prefix of this file
        part.unlink()
        offset = 0
    total: int | None = expected_size
    try:
        if expected_size is None or offset < expected_size:
            total = _fetch_into(url, part, offset, progress, timeout, dest.name)
    except WeightsError:
        raise
    except (urllib.error.URLError, OSError, TimeoutError, http.client.HTTPException) as exc:
        kept = part.stat().st_size if part.is_file() else 0
        hint = f"; {kept} bytes are kept in {part} and the next attempt resumes from there" if kept else ""
        raise WeightsError(f"could not download {url}: {exc}{hint}") from exc
    got = part.stat().st_size
    if total is not None and got < total:
        raise WeightsError(f"download of {url} stopped after {got} of {total} bytes; run again to resume "
                           f"(the partial file is kept at {part})")
    try:
        if wf is not None:
            verify_file(part, wf)
        if verify is not None:
            try:
                verify(part)
            except Exception as exc:  # a file that does not load is as bad as a truncated one
                raise WeightsError(f"{url} was downloaded but is not a valid checkpoint: {exc}") from exc
    except Exception:
        part.unlink(missing_ok=True)  # complete but wrong: start afresh next time
        raise
    os.replace(part, dest)
    return dest


def _fetch_into(url: str, part: Path, offset: int, progress: bool, timeout: float, label: str) -> int | None:
    """Append the bytes of `url` from `offset` to `part` (restarting it when the server sends the
    whole file); the file's total size when the server says it."""
    headers = {"User-Agent": "facerestore"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # the partial file does not fit this server's file: start over
            part.unlink(missing_ok=True)
            return _fetch_into(url, part, 0, progress, timeout, label)
        raise
    with response:
        if response.headers.get_content_type() == "text/html":
            # a landing/login page (e.g. a Google Drive folder), never a weights file
            raise WeightsError(f"{url} returned a web page, not the file")
        length = response.headers.get("Content-Length")
        length = int(length) if length and length.isdigit() else None
        resumed = offset and response.status == 206 and _content_range_start(
            response.headers.get("Content-Range")) == offset
        if not resumed:
            offset = 0  # 200: the server sends the whole file
        total = offset + length if length is not None else None
        with open(part, "ab" if resumed else "wb") as out, \
                tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                     desc=f"Downloading {label}", disable=not progress) as bar:
            for chunk in iter(lambda: response.read(CHUNK), b""):
                out.write(chunk)
                bar.update(len(chunk))
    return total


def _manual_hint(entry: ZooEntry, wf: WeightFile) -> str:
    return (
        f"Download it by hand from {wf.url or '(see the model card models/' + entry.name + '.md)'} and put it at "
        f"{cached_path(wf)} (or pass load({entry.name!r}, weights='/path/to/{wf.filename}' or a folder holding it))."
    )


def resolve(
    entry: ZooEntry,
    weights: str | os.PathLike | None = None,
    download_missing: bool = True,
    verify: Callable[[Path], None] | None = None,
    progress: bool = True,
) -> dict[str, Path]:
    """Local paths of all files of `entry`, keyed by file name, fetching what is missing.

    weights: None (cache, then download), a file (single-file entries), a folder holding the
    entry's files under their official names, or a URL (single-file entries).
    verify: extra check run on a freshly downloaded file of role "weights" before it enters the cache.
    """
    if not entry.files:
        return {}
    if weights is not None:
        text = os.fspath(weights)
        if _is_url(text):
            if len(entry.files) != 1:
                raise WeightsError(f"{entry.name} has {len(entry.files)} files; pass a folder, not one URL")
            wf = entry.files[0]
            dest = url_cache_path(text, wf.filename)
            if not dest.is_file():
                download(text, dest, verify=verify, progress=progress)
            return {wf.filename: dest}
        path = Path(text).expanduser()
        if path.is_dir():
            found, missing = {}, []
            for wf in entry.files:
                hits = [path / wf.filename] + sorted(path.rglob(wf.filename))
                hit = next((h for h in hits if h.is_file()), None)
                (found.__setitem__(wf.filename, hit) if hit else missing.append(wf.filename))
            if missing:
                raise WeightsError(f"{path} lacks {', '.join(missing)} needed by {entry.name}")
            return found
        if path.is_file():
            if len(entry.files) > 1:
                primary = [wf for wf in entry.files if wf.role == "weights"]
                if len(primary) != 1:
                    raise WeightsError(f"{entry.name} has several files; pass the folder that holds them")
                rest = resolve(entry, None, download_missing, verify, progress) if download_missing else {}
                return {**rest, primary[0].filename: path}
            return {entry.files[0].filename: path}
        raise WeightsError(f"weights file or folder {path} does not exist")

    paths = {}
    for wf in entry.files:
        dest = cached_path(wf)
        if not dest.is_file():
            if not download_missing:
                raise WeightsError(f"{entry.name}: {wf.filename} is not in the cache. " + _manual_hint(entry, wf))
            errors = []
            for url in wf.urls:
                try:
                    download(url, dest, wf=wf, verify=verify if wf.role == "weights" else None, progress=progress)
                    break
                except WeightsError as exc:
                    errors.append(str(exc))
            else:
                raise WeightsError(
                    f"{entry.name}: could not fetch {wf.filename} ({'; '.join(errors) or 'no download URL known'}). "
                    + _manual_hint(entry, wf)
                )
        paths[wf.filename] = dest
    return paths


def torch_hub_dir() -> Path:
    """Where torchvision keeps downloaded weights (`$TORCH_HOME/hub/checkpoints`)."""
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "torch")
    return Path(torch_home) / "hub" / "checkpoints"


def fetch_file(filename: str, url: str, weights: str | os.PathLike | None = None,
               allow_download: bool = True) -> Path:
    """Local path of a helper network's file (VGG, ArcFace, Inception, ...), outside the zoo.

    Order: `weights` (an explicit file), `$FACERESTORE_HOME/weights/<filename>`, torchvision's
    cache, then an atomic download into `$FACERESTORE_HOME/weights`. The WeightsError otherwise
    names the file, its URL and where to put it.
    """
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsError(f"weights file {path} does not exist")
        return path
    if Path(filename).name != filename or filename in ("", ".", ".."):
        raise ValueError(f"fetch_file needs a plain file name, got {filename!r}")
    for path in (weights_dir() / filename, torch_hub_dir() / filename):
        if path.is_file():
            return path
    target = weights_dir() / filename
    reason = "downloads are disabled"
    if allow_download:
        try:
            return download(url, target)
        except WeightsError as exc:
            reason = str(exc)
    raise WeightsError(
        f"{filename} is needed and could not be found or downloaded ({reason}). Download it from {url} "
        f"and put it at {target} (the folder is $FACERESTORE_HOME/weights), or pass its path explicitly"
    )


def read_checkpoint(path: str | os.PathLike) -> Any:
    """Load a checkpoint file safely.

    `weights_only=True` refuses arbitrary pickled code, so a downloaded file cannot run anything:
    such a file raises WeightsError without any of its code having run. It still reads legacy
    (pre-1.6, non-zip) torch files such as DPR's `.t7` releases, whose contents are plain tensors
    in an OrderedDict. A truncated or corrupt file raises WeightsError naming it and what to do.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"checkpoint {path} does not exist")
    try:
        return torch.load(os.fspath(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        message = str(exc)
        unpickler = re.search(r"WeightsUnpickler error:\s*(.+)", message)
        text = f"{exc.__class__.__name__}: " + (unpickler.group(1).strip() if unpickler else
                                                 (message.strip().splitlines() or [""])[0])
        if re.search(r"Unsupported global|allowed global", message):  # it names code to call on load
            raise WeightsError(
                f"{path} was refused: loading it would call code stored in the file ({text[:300]}). "
                "facerestore only reads weights-only checkpoints (tensors and plain containers); use a "
                "file from the official source, or re-save a trusted one as a plain state dict"
            ) from exc
        size = path.stat().st_size
        raise WeightsError(
            f"{path} is not a readable PyTorch checkpoint ({size} bytes; truncated or corrupt? {text}). "
            "Delete it and download it again, or pass a good copy with weights=..."
        ) from exc


def extract_state_dict(checkpoint: Any, key: str | None = None) -> Mapping[str, torch.Tensor]:
    """The state dict inside a checkpoint: `key` if given and present (GFPGAN: `params_ema`, falling
    back to `params` as the official loader does), a facerestore training checkpoint's EMA weights,
    or the checkpoint itself when it already is a state dict."""
    if not isinstance(checkpoint, Mapping):
        raise WeightsError(f"expected a state dict or a dict of state dicts, got {type(checkpoint).__name__}")
    candidates = [key] if key else []
    if key == "params_ema":
        candidates.append("params")
    candidates += ["net_ema", "params_ema", "params", "state_dict", "g_ema"]
    for k in candidates:
        if k in checkpoint and isinstance(checkpoint[k], Mapping):
            return checkpoint[k]
    if all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        return checkpoint
    raise WeightsError(f"no state dict found under {candidates} (keys: {list(checkpoint)[:8]})")


def network_state_dict(checkpoint: Any, wf: WeightFile | None = None) -> dict[str, torch.Tensor]:
    """The network's state dict inside a checkpoint, cleaned up as the official loader does: the
    wrapper key (`wf.state_dict_key`, e.g. `params_ema`, or `state_dict` of a training checkpoint),
    only the keys under `wf.network_prefix` (e.g. `vqvae.`, stripped; other keys such as loss or
    discriminator weights are not part of the network), and prefixes such as `module.` stripped."""
    state = extract_state_dict(checkpoint, wf.state_dict_key if wf is not None else None)
    if wf is not None and wf.network_prefix:
        prefix = wf.network_prefix
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if not state:
            raise WeightsError(f"no key starts with {prefix!r}: this is not a {wf.filename} checkpoint")
    for prefix in wf.strip_prefixes if wf is not None else ():
        state = {k.removeprefix(prefix): v for k, v in state.items()}
    return dict(state)


def load_weights(net: torch.nn.Module, path: str | os.PathLike, key: str | WeightFile | None = None,
                 model_name: str | None = None) -> None:
    """Strictly load a checkpoint file into `net`; a mismatch names the missing/unexpected keys.

    key: the WeightFile describing the file's layout (see `network_state_dict`), or just the key
    holding the state dict inside the file."""
    wf = key if isinstance(key, WeightFile) else WeightFile(Path(path).name, (), state_dict_key=key)
    state = network_state_dict(read_checkpoint(path), wf)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        what = f"is not a {model_name} checkpoint: it " if model_name else ""
        raise WeightsError(f"{path} {what}does not fit this architecture: {str(exc)[:2000]}") from exc


def clear_cache(name_or_entry: ZooEntry | None = None) -> None:
    """Remove cached weights of one entry (or the whole weights cache)."""
    if name_or_entry is None:
        shutil.rmtree(weights_dir(), ignore_errors=True)
        return
    for wf in name_or_entry.files:
        cached_path(wf).unlink(missing_ok=True)
