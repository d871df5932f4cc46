"""A transparency-log witness for the gateway's audit log: its own process, key and storage.

``gateway audit witness`` polls the gateway's latest checkpoint
(``GET {gateway}/v1/audit/checkpoints?limit=1``), checks the log's signature with
the pinned log key, asks for an RFC 9162 consistency proof from the last
checkpoint it accepted (``GET /v1/audit/consistency``), and cosigns
(c2sp.org/tlog-cosignature, timestamped Ed25519) only what extends it. A rollback
or a fork is recorded and refused for good (see ``gateway.core.witness``).

It serves:

- ``GET /checkpoint``: the latest cosigned checkpoint, a C2SP note (text/plain):
  the log's signature line, then this witness's cosignature line; 404 before the first;
- ``GET /status``: JSON with its vkey, the pinned log vkey, what it accepted, any refusal.

State is one JSON file in ``--state`` (``witness-state.json``), replaced atomically
(write, fsync, rename), so a crash never leaves half a state. It is signed with the
witness's own key: an edited state is refused. A witness whose state is missing
or unreadable refuses to start unless told ``init`` (its first start): one that
silently started afresh would cosign a fork of what it cosigned before. The log
key is pinned on first contact when ``--log-key`` is not given (trust on first
use: give it explicitly in production).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from adapters.stores._durable_file import write_json_durably
from gateway.core.ports import NoteSigner
from gateway.core.signed_note import (
    COSIGNATURE_TYPE,
    Note,
    Verifier,
    cosign,
    ed25519_ok,
    parse_note,
    parse_vkey,
    vkey,
)  # fmt: skip
from gateway.core.witness import Seen, Verdict, judge, needs_proof

__all__ = ["StateError", "StateFile", "Witness", "WitnessState", "witness_app"]

log = logging.getLogger("passerelle.witness")
STATE_NAME = "witness-state.json"
_STATE_CONTEXT = b"passerelle witness state v1\n"  # what the witness key signs: never a note or a cosignature


class StateError(ValueError):
    """The witness's state is missing, unreadable or not signed by its key: it must not start on its own."""


@dataclass
class WitnessState:
    log_vkey: str = ""                 # the pinned log key
    seen: dict[str, Any] | None = None  # the last accepted checkpoint (Seen, root in base64)
    cosigned: str = ""                 # the note served at /checkpoint
    refusal: dict[str, Any] | None = None  # set once on a rollback or fork; never cleared automatically
    last_error: str = ""               # the latest non-final problem (unreachable, bad signature)
    refused_attempts: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)  # the last accepted sizes (bounded)
    initialised_at: int = 0            # when this witness was started afresh (--init), POSIX seconds


def _state_bytes(state: dict[str, Any]) -> bytes:
    return _STATE_CONTEXT + json.dumps(state, sort_keys=True, separators=(",", ":")).encode()


class StateFile:
    """The witness's state as one JSON file signed by the witness's key, replaced atomically."""

    def __init__(self, folder: Path, signer: NoteSigner) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / STATE_NAME
        self._signer = signer

    def load(self) -> WitnessState | None:
        """``None`` when there is no state; ``StateError`` when it is unreadable or not signed by this key."""
        if not self.path.exists():
            return None
        try:
            doc = json.loads(self.path.read_text())
            state, signature = doc["state"], base64.b64decode(doc["signature"], validate=True)
            ok = ed25519_ok(self._signer.public_key, _state_bytes(state), signature)
            loaded = WitnessState(**state)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise StateError(f"the witness state {self.path} is unreadable: {exc}") from None
        if not ok:
            raise StateError(f"the witness state {self.path} is not signed by this witness's key: it was edited")
        return loaded

    def save(self, state: WitnessState) -> None:
        body = asdict(state)
        signature = base64.b64encode(self._signer.sign(_state_bytes(body))).decode()
        write_json_durably(self.path, {"state": body, "signature": signature})


def _seen_of(state: WitnessState) -> Seen | None:
    s = state.seen
    return None if s is None else Seen(s["origin"], s["tree_size"], base64.b64decode(s["root_hash"]), s["note"])


class Witness:
    """One witness for one log. ``poll_once`` does one round; the state file is the only memory."""

    def __init__(
        self, gateway_url: str, signer: NoteSigner, store: StateFile, *, log_vkey: str = "", init: bool = False
    ) -> None:  # fmt: skip
        """``init``: this is the witness's first start (no state yet). Raises ``StateError``, ``ValueError``."""
        self.gateway_url = gateway_url.rstrip("/")
        self.signer = signer
        self.store = store
        self.state = self._initial_state(store, init)
        if log_vkey:
            pinned = parse_vkey(log_vkey)
            if self.state.log_vkey and parse_vkey(self.state.log_vkey) != pinned:
                raise ValueError("--log-key differs from the log key this witness pinned before: refusing to start")
            self.state.log_vkey = vkey(pinned.name, pinned.public_key)
            store.save(self.state)

    @staticmethod
    def _initial_state(store: StateFile, init: bool) -> WitnessState:
        state = store.load()
        if state is not None and init:
            raise StateError(f"--init, but {store.path} already holds this witness's state: refusing to forget "
                             "what it cosigned")  # fmt: skip
        if state is None:
            if not init:
                raise StateError(f"no witness state in {store.path} although the witness's key exists: a witness "
                                 "that forgot what it cosigned would cosign a fork. Restore the state, or give "
                                 "--init if this really is its first start")  # fmt: skip
            state = WitnessState(initialised_at=int(time.time()))
            store.save(state)
            log.warning("witness initialised with an empty state", extra={"fields": {"state": str(store.path)}})
        return state

    @property
    def vkey(self) -> str:
        return vkey(self.signer.name, self.signer.public_key, COSIGNATURE_TYPE)

    async def poll_once(self, client: httpx.AsyncClient) -> str:
        """Fetch, judge, cosign or refuse; return a one-line outcome."""
        try:
            answer = await client.get(f"{self.gateway_url}/v1/audit/checkpoints", params={"limit": 1})
            answer.raise_for_status()
            body = answer.json()
        except (httpx.HTTPError, ValueError) as exc:
            return self._problem(f"gateway unreachable: {exc}")
        if not self.state.log_vkey:
            self.state.log_vkey = body.get("vkey", "")
            log.warning("log key pinned on first use", extra={"fields": {"vkey": self.state.log_vkey}})
        note_text = (body.get("latest") or {}).get("note", "")
        if not note_text:
            return "no checkpoint yet"
        return await self._judge(client, note_text)

    async def _judge(self, client: httpx.AsyncClient, note_text: str) -> str:
        if self.state.refusal is not None:
            self.state.refused_attempts += 1
            self.store.save(self.state)
            log.error("WITNESS REFUSES: it saw evidence against this log before", extra={"fields": self.state.refusal})
            return f"refusing (since {self.state.refusal['verdict']}): {self.state.refusal['detail']}"
        seen = _seen_of(self.state)
        proof: list[bytes] = []
        wanted = needs_proof(seen, note_text)
        if wanted is not None:
            try:
                answer = await client.get(f"{self.gateway_url}/v1/audit/consistency",
                                          params={"from": wanted[0], "to": wanted[1]})  # fmt: skip
                answer.raise_for_status()
                proof = [base64.b64decode(h) for h in answer.json().get("hashes", [])]
            except (httpx.HTTPError, ValueError) as exc:
                log.warning("no consistency proof", extra={"fields": {"error": str(exc)[:200]}})
        decision = judge(seen, note_text, self._log_key(), proof)
        if decision.refuses_for_good:
            self.state.refusal = {"verdict": decision.verdict.value, "detail": decision.detail,
                                  "at": int(time.time()), "note": note_text}  # fmt: skip
            self.store.save(self.state)
            log.error("WITNESS REFUSES to cosign", extra={"fields": self.state.refusal})
            return f"REFUSED {decision.verdict}: {decision.detail}"
        if decision.verdict is not Verdict.COSIGN or decision.accepted is None:
            return self._problem(f"{decision.verdict}: {decision.detail}")
        return self._cosign(decision.accepted)

    def _log_key(self) -> Verifier:
        return parse_vkey(self.state.log_vkey)

    def _cosign(self, accepted: Seen) -> str:
        note = parse_note(accepted.note)
        cos = cosign(note.text, int(time.time()), self.signer.name, self.signer.public_key, self.signer.sign)
        own = tuple(s for s in note.signatures if s.name == accepted.origin)
        self.state.cosigned = Note(note.text, (*own, cos.note_signature())).format()
        self.state.seen = {"origin": accepted.origin, "tree_size": accepted.tree_size,
                           "root_hash": base64.b64encode(accepted.root_hash).decode(), "note": accepted.note}
        self.state.history = [*self.state.history, {"tree_size": accepted.tree_size, "at": cos.timestamp}][-100:]
        self.state.last_error = ""
        self.store.save(self.state)
        return f"cosigned tree size {accepted.tree_size}"

    def _problem(self, text: str) -> str:
        self.state.last_error = text
        self.store.save(self.state)
        log.warning("witness: not cosigned", extra={"fields": {"problem": text[:300]}})
        return text

    async def run(self, every_s: float) -> None:
        async with httpx.AsyncClient(timeout=10.0) as client:
            while True:
                outcome = await self.poll_once(client)
                log.info("witness poll", extra={"fields": {"outcome": outcome}})
                await asyncio.sleep(every_s)


def witness_app(witness: Witness) -> FastAPI:
    app = FastAPI(title="Passerelle audit-log witness", docs_url=None, redoc_url=None)

    @app.get("/checkpoint")
    async def checkpoint() -> Response:
        if not witness.state.cosigned:
            return PlainTextResponse("nothing cosigned yet\n", status_code=404)
        return PlainTextResponse(witness.state.cosigned, media_type="text/plain; charset=utf-8")

    @app.get("/status")
    async def status() -> Response:
        s = witness.state
        seen = None if s.seen is None else {k: v for k, v in s.seen.items() if k != "note"}
        return JSONResponse({"name": witness.signer.name, "vkey": witness.vkey, "log_vkey": s.log_vkey,
                             "accepted": seen, "refusal": s.refusal, "refused_attempts": s.refused_attempts,
                             "last_error": s.last_error, "initialised_at": s.initialised_at})  # fmt: skip

    return app
