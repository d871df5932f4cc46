"""Agency names and legal texts in the reader's language, from the configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import ConfigError, ConsumerSection, load_config
from gateway.demo.setup import ensure_demo


def test_a_consumer_name_may_be_one_name_or_one_per_language() -> None:
    one = ConsumerSection(id="a", name="CEDIES", issuer="i", client_id="a")
    three = ConsumerSection(id="b", name={"fr": "Portail", "de": "Portal", "en": "Portal (en)"}, issuer="i",
                            client_id="b")  # fmt: skip
    assert (one.names, one.display_name) == ({"fr": "CEDIES", "de": "CEDIES", "en": "CEDIES"}, "CEDIES")
    assert (three.names["en"], three.display_name) == ("Portal (en)", "Portail")


def test_the_demo_names_an_agency_and_a_legal_text_per_language(tmp_path: Path) -> None:
    config = load_config(ensure_demo(tmp_path))
    procurement = next(c for c in config.consumers if c.id == "procurement")
    assert procurement.names["de"] == "Portal für öffentliche Aufträge"
    mandate = next(m for m in config.mandates if m.id == "cedies-person-student-aid")
    assert set(mandate.legal_reference_title) == {"fr", "de", "en"}


@pytest.mark.parametrize(("old", "new", "key", "words"), [
    ('name = "Portail des marchés publics"', 'name = { fr = "Portail", de = "Portal" }', "consumers[1].name",
     "missing ['en']"),
    ('legal_reference = "Loi du 8 avril 2018 sur les marchés publics, art. 30"',
     'legal_reference = "Loi du 8 avril 2018"\nlegal_reference_title = { lb = "Gesetz" }',
     "mandates[2].legal_reference_title", "not ['lb']"),
])  # fmt: skip
def test_a_language_outside_fr_de_en_or_a_missing_one_is_one_line(tmp_path: Path, old: str, new: str, key: str,
                                                                    words: str) -> None:  # fmt: skip
    path = ensure_demo(tmp_path)
    text = path.read_text()
    if old.startswith("name ="):   # the demo names the procurement agency per language already
        text = text.replace('name = { fr = "Portail des marchés publics", de = "Portal für öffentliche Aufträge", '
                            'en = "Public procurement portal" }', old)  # fmt: skip
    assert old in text
    path.write_text(text.replace(old, new))
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    [line] = str(refused.value).splitlines()
    assert line.startswith(f"{path}: {key}") and words in line, line
