"""A throw-away SoftHSM2 token for the PKCS#11 tests (Debian package ``softhsm2``).

The token lives in a temporary folder with its own ``softhsm2.conf`` (``SOFTHSM2_CONF``), is
initialised with ``softhsm2-util --init-token --free`` and gets both signing keys through
python-pkcs11. Without SoftHSM2 the tests are skipped with the reason; with ``CI=true`` they fail
instead, so CI cannot go green without them (the same rule as the PostgreSQL marker).

SoftHSM2 reads its configuration once per process (at ``C_Initialize``), so a test process uses
one token (``softhsm_token``, made once); tests that need fresh keys use fresh labels. Each test
module wraps it in its own fixture: ``require_softhsm(); return softhsm_token()``.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
TOKEN_LABEL = "passerelle-test"
PIN = "4711-test"
SO_PIN = "0815-test-so"
CHECKPOINT_LABEL = "passerelle-checkpoint"
RECEIPT_LABEL = "passerelle-receipt"


@dataclass(frozen=True)
class SoftHsm:
    module: str
    token_label: str
    pin: str
    pin_file: Path
    checkpoint_public: bytes  # raw Ed25519
    receipt_public: bytes  # uncompressed P-256 point (0x04 || x || y)

    def settings(self) -> object:
        from adapters.keys.pkcs11 import TokenSettings

        return TokenSettings(self.module, self.token_label, self.pin)


def softhsm_missing() -> str:
    """Why SoftHSM2 cannot be used here, or "" when it can."""
    if shutil.which("softhsm2-util") is None or not Path(MODULE).exists():
        return f"SoftHSM2 is not installed (softhsm2-util, {MODULE}): apt-get install softhsm2"
    return ""


def require_softhsm() -> None:
    reason = softhsm_missing()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and SoftHSM2 is required: {reason}")
        pytest.skip(reason)


@functools.cache
def softhsm_token() -> SoftHsm:
    """The process's token, made on first use: the checkpoint (Ed25519) and receipt (P-256) keys are
    generated inside it. Call ``require_softhsm()`` first. Removed when the test process exits."""
    from adapters.keys.pkcs11 import TokenSettings, generate_signing_keys

    folder = Path(tempfile.mkdtemp(prefix="passerelle-softhsm-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    (folder / "tokens").mkdir()
    conf = folder / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {folder / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
    os.environ["SOFTHSM2_CONF"] = str(conf)  # read once per process; inherited by `gateway serve` children
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", TOKEN_LABEL, "--so-pin", SO_PIN,
                    "--pin", PIN], check=True, capture_output=True, timeout=60)  # fmt: skip
    pin_file = folder / "token.pin"
    pin_file.write_text(PIN + "\n")
    pin_file.chmod(0o600)
    checkpoint, receipt = generate_signing_keys(TokenSettings(MODULE, TOKEN_LABEL, PIN), CHECKPOINT_LABEL,
                                                RECEIPT_LABEL)
    return SoftHsm(MODULE, TOKEN_LABEL, PIN, pin_file, checkpoint, receipt)


def keys_section(hsm: SoftHsm) -> str:
    """The ``[gateway.keys]`` table of a configuration that signs with this token."""
    return (f'[gateway.keys]\nmodule = "{hsm.module}"\ntoken_label = "{hsm.token_label}"\n'
            f'pin_file = "{hsm.pin_file}"\ncheckpoint_key_label = "{CHECKPOINT_LABEL}"\n'
            f'receipt_key_label = "{RECEIPT_LABEL}"\n')
