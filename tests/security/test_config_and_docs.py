"""Security configuration is validated with errors naming the key; the error-code table cannot drift."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.bootstrap_security import admission_for, sender_modes_for
from gateway.config import ConfigError, load_config
from gateway.core.errors import REASONS, Reason
from gateway.core.reason_table import reason_table_markdown
from gateway.demo.setup import ensure_demo

ROOT = Path(__file__).resolve().parents[2]


def test_docs_errors_md_is_the_generated_reason_table() -> None:
    """Regenerate with: gateway security errors-doc > docs/errors.md"""
    assert (ROOT / "docs" / "errors.md").read_text() == reason_table_markdown()


def test_every_reason_is_in_the_table() -> None:
    assert set(REASONS) == set(Reason)
    assert all(f"`{r}`" in reason_table_markdown() for r in Reason)


def config_with(tmp_path: Path, old: str, new: str) -> Path:
    path = ensure_demo(tmp_path)
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            'jwks_file = "keys/demo-agencies.jwks.json"',
            'jwks_file = "keys/demo-agencies.jwks.json"\njwks_url = "https://idp.example/jwks"',
            "issuers[0]: Value error, give exactly one of jwks_file or jwks_url",
        ),
        (
            'jwks_file = "keys/demo-agencies.jwks.json"',
            'jwks_url = "http://idp.example/jwks"',
            "issuers[0]: Value error, jwks_url must be https://",
        ),
        (
            'client_id = "cedies"',
            'client_id = "cedies"\nsender_constraint = "sometimes"',
            "consumers[0].sender_constraint",
        ),
        ('client_id = "cedies"', 'client_id = "cedies"\nrate_per_s = -1', "consumers[0].rate_per_s"),
        (
            "[gateway]\n",
            '[revoked]\nconsumers = ["nobody"]\n\n[gateway]\n',
            "revoked.consumers[0]: unknown consumer 'nobody'",
        ),
    ],
)
def test_bad_security_settings_name_the_key(tmp_path: Path, old: str, new: str, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(config_with(tmp_path, old, new))
    assert message in str(exc.value)


def test_per_consumer_settings_override_the_gateway_defaults(tmp_path: Path) -> None:
    path = config_with(
        tmp_path,
        'client_id = "cedies"',
        'client_id = "cedies"\nsender_constraint = "required"\nrate_per_s = 5\nburst = 7',
    )
    config = load_config(path)
    assert sender_modes_for(config)["cedies"] == "required"
    assert sender_modes_for(config)["sandbox"] == config.gateway.sender_constraint
    adm = admission_for(config)
    assert (adm.quota("cedies").rate_per_s, adm.quota("cedies").burst) == (5, 7)
    assert adm.quota("sandbox").rate_per_s == config.gateway.rate_per_s
