"""The zoo registry: names, aliases, close-match errors, entry metadata, and model cards in sync."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

import facerestore
from facerestore.registry import aliases, get_entry, list_models

ROOT = Path(__file__).resolve().parents[1]

REQUIRED_NAMES = ["gfpgan-v1", "gfpgan-v1.2", "gfpgan-v1.3", "gfpgan-v1.4", "gpen-bfr-256", "gpen-bfr-512",
                  "gpen-bfr-1024", "gpen-bfr-2048", "dfdnet", "dpr-512", "dpr-1024"]
REQUIRED_ALIASES = {"gfpgan": "gfpgan-v1.4", "gpen": "gpen-bfr-512", "dpr": "dpr-512"}


def test_required_names_and_aliases():
    names = list_models()
    for name in REQUIRED_NAMES:
        assert name in names
    for alias, target in REQUIRED_ALIASES.items():
        assert aliases()[alias] == target
        assert get_entry(alias) is get_entry(target)
    assert get_entry("GFPGAN-v1.4 ") is get_entry("gfpgan-v1.4")  # case and stray spaces forgiven


def test_unknown_name_lists_close_matches():
    with pytest.raises(KeyError) as info:
        facerestore.load("gfpgan-v1.5", pretrained=False)
    message = str(info.value)
    assert "gfpgan-v1.4" in message and "facerestore models" in message


@pytest.mark.parametrize("name", REQUIRED_NAMES)
def test_entry_metadata_is_complete(name):
    e = get_entry(name)
    assert e.files and all(wf.filename and wf.urls for wf in e.files)
    assert all(u.startswith("https://") for wf in e.files for u in wf.urls)
    assert e.license and e.paper and e.source.startswith("https://")
    assert e.task in {"restore", "relight", "colorize", "inpaint", "seg2face", "detect"}
    assert e.face_size in {256, 512, 1024, 2048}
    assert e.color in {"rgb", "bgr", "gray"}
    e.restorer_class()  # importable


def test_gfpgan_entries_match_the_official_configs():
    assert get_entry("gfpgan-v1").arch_config["channel_multiplier"] == 1
    for version in ("1.2", "1.3", "1.4"):
        e = get_entry(f"gfpgan-v{version}")
        assert e.arch_config["channel_multiplier"] == 2
        assert e.files[0].state_dict_key == "params_ema"
    assert get_entry("gfpgan-v1").arch is not get_entry("gfpgan-v1.4").arch


def card_path(name: str) -> Path:
    return ROOT / "models" / f"{name}.md"


@pytest.mark.parametrize("name", list_models())
def test_every_entry_has_a_model_card(name):
    card = card_path(name)
    assert card.is_file(), f"models/{name}.md is missing"
    text = card.read_text()
    assert text.splitlines()[0].strip() == f"# {name}"
    e = get_entry(name)
    for wf in e.files:
        assert wf.filename in text, f"card of {name} does not name {wf.filename}"
    assert re.search(r"licen[cs]e", text, re.I)
    for alias, target in aliases().items():
        if target == name:
            assert alias in text, f"card of {name} does not mention its alias {alias}"


def test_every_card_belongs_to_an_entry():
    names = set(list_models())
    for card in (ROOT / "models").glob("*.md"):
        if card.name.lower() != "readme.md":
            assert card.stem in names, f"models/{card.name} has no zoo entry"


def test_readme_zoo_table_lists_every_entry():
    readme = (ROOT / "README.md").read_text()
    for name in list_models():
        assert f"`{name}`" in readme, f"README's model zoo table lacks {name}"
