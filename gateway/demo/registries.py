"""The demo registries, served over real sockets from a generated data set.

* population and business registers: one grpc.aio server speaking the
  ``registry.population.v1`` and ``registry.business.v1`` contracts, with the
  standard gRPC health service; the population register streams its changes
  (``WatchChanges``) from a change log (``gateway.demo.changes``) that
  ``gateway demo change`` appends to, and answers with the changed addresses;
* tax administration: a legacy-style REST/JSON API with French field names,
  deliberately unlike the ``registry.tax.v1`` contract, so that the gateway's
  adapter has a real translation to do::

      GET /api/v2/attestations-revenu?matricule=<13 digits>&annee=<year>
      200 {"attestation": {"contribuable": {"matricule": "..."}, "exercice": 2024,
           "revenuImposable": {"montant": "45231.50", "devise": "EUR"},
           "classeImpot": "1a", "dateEmission": "2025-03-14"}}
      404 {"erreur": {"code": "CONTRIBUABLE_INCONNU", "message": "..."}}
      400 {"erreur": {"code": "REQUETE_INVALIDE", "message": "..."}}
      GET /api/v2/sante -> {"statut": "ok"}

Every registry takes a mutable ``Faults`` that tests change at run time.
Run them all in their own process with
``python -m gateway.demo.registries --seed S --persons N --grpc-port P --tax-port Q [--changes FILE]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import random
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import grpc
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from google.rpc import status_pb2
from google.type import date_pb2, money_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from gateway._pb.passerelle.options.v1 import options_pb2
from gateway._pb.registry.business.v1 import business_pb2, business_pb2_grpc
from gateway._pb.registry.population.v1 import population_pb2, population_pb2_grpc
from gateway.core.identifiers import fiscal_year_problem, national_id_problem, rcs_number_problem
from gateway.demo._model import Address
from gateway.demo.changes import ChangeLog, RecordedChange
from gateway.demo.data import (
    CivilStatus,
    Company,
    CompanyStatus,
    DemoData,
    LegalForm,
    Person,
    Relationship,
    Sex,
    generate,
)
from observability.frontdoor import FASTAPI_TELEMETRY_OFF, AsgiTelemetry, GrpcServerTelemetry
from observability.tracing import configure_tracing

__all__ = [
    "Faults",
    "TaxRegistryHandle",
    "create_tax_app",
    "main",
    "run_demo_registries",
    "start_grpc_registry",
    "start_tax_registry",
    "to_company_message",
    "to_person_message",
]

_SEX = {Sex.FEMALE: population_pb2.SEX_FEMALE, Sex.MALE: population_pb2.SEX_MALE}
_CIVIL_STATUS = {
    CivilStatus.SINGLE: population_pb2.CIVIL_STATUS_SINGLE,
    CivilStatus.MARRIED: population_pb2.CIVIL_STATUS_MARRIED,
    CivilStatus.PARTNERED: population_pb2.CIVIL_STATUS_PARTNERED,
    CivilStatus.DIVORCED: population_pb2.CIVIL_STATUS_DIVORCED,
    CivilStatus.WIDOWED: population_pb2.CIVIL_STATUS_WIDOWED,
}
_RELATIONSHIP = {
    Relationship.SPOUSE: population_pb2.RELATIONSHIP_SPOUSE,
    Relationship.PARTNER: population_pb2.RELATIONSHIP_PARTNER,
    Relationship.CHILD: population_pb2.RELATIONSHIP_CHILD,
    Relationship.PARENT: population_pb2.RELATIONSHIP_PARENT,
    Relationship.OTHER: population_pb2.RELATIONSHIP_OTHER,
}
_LEGAL_FORM = {
    LegalForm.SA: business_pb2.LEGAL_FORM_SA,
    LegalForm.SARL: business_pb2.LEGAL_FORM_SARL,
    LegalForm.SARLS: business_pb2.LEGAL_FORM_SARLS,
    LegalForm.SCS: business_pb2.LEGAL_FORM_SCS,
    LegalForm.SCSP: business_pb2.LEGAL_FORM_SCSP,
    LegalForm.SCA: business_pb2.LEGAL_FORM_SCA,
    LegalForm.SE: business_pb2.LEGAL_FORM_SE,
    LegalForm.SNC: business_pb2.LEGAL_FORM_SNC,
    LegalForm.SC: business_pb2.LEGAL_FORM_SC,
}
_COMPANY_STATUS = {
    CompanyStatus.ACTIVE: business_pb2.COMPANY_STATUS_ACTIVE,
    CompanyStatus.IN_LIQUIDATION: business_pb2.COMPANY_STATUS_IN_LIQUIDATION,
    CompanyStatus.STRUCK_OFF: business_pb2.COMPANY_STATUS_STRUCK_OFF,
}
_GRPC_SERVICES = ("registry.population.v1.PopulationRegistry", "registry.business.v1.BusinessRegistry")
_GRPC_METHODS = frozenset({"/registry.population.v1.PopulationRegistry/GetPerson",
                           "/registry.population.v1.PopulationRegistry/GetPersons",
                           "/registry.population.v1.PopulationRegistry/WatchChanges",
                           "/registry.business.v1.BusinessRegistry/GetCompany"})
_GARBAGE = b"\x1f\x8b<attestation><contribuable>\x00\xff tronqu"


@dataclass(slots=True)
class Faults:
    """Failures a registry injects, read on every request so that tests can change them live.

    ``delay_s`` is waited before answering; ``fail_rate`` (0..1) is the share of
    requests answered UNAVAILABLE (gRPC) or 503 (REST); ``garbage`` makes the REST
    registry answer 200 with a body that is not JSON (the gRPC registries ignore it).
    """

    delay_s: float = 0.0
    fail_rate: float = 0.0
    garbage: bool = False

    async def wait(self) -> None:
        if self.delay_s > 0:
            await asyncio.sleep(self.delay_s)

    def should_fail(self) -> bool:
        return self.fail_rate > 0 and random.random() < self.fail_rate


# --- contract messages ------------------------------------------------------------------------


def _date(value: dt.date) -> date_pb2.Date:
    return date_pb2.Date(year=value.year, month=value.month, day=value.day)


def _euros(cents: int) -> money_pb2.Money:
    return money_pb2.Money(currency_code="EUR", units=cents // 100, nanos=(cents % 100) * 10_000_000)


def to_person_message(person: Person, data: DemoData, address: Address | None = None) -> population_pb2.Person:
    """The ``registry.population.v1.Person`` for a person, with their household members (and ``address``
    instead of the data set's, after a recorded change)."""
    address = address or person.address
    return population_pb2.Person(
        national_id=person.national_id,
        given_names=person.given_names,
        family_name=person.family_name,
        birth_date=_date(person.birth_date),
        birth_place=person.birth_place,
        sex=_SEX[person.sex],
        nationalities=person.nationalities,
        address=population_pb2.Address(
            house_number=address.house_number,
            street=address.street,
            postcode=address.postcode,
            locality=address.locality,
            commune=address.commune,
            country=address.country,
        ),
        civil_status=_CIVIL_STATUS[person.civil_status],
        household_members=[
            population_pb2.HouseholdMember(
                national_id=member.national_id,
                given_names=member.given_names,
                family_name=member.family_name,
                relationship=_RELATIONSHIP[relationship],
                birth_date=_date(member.birth_date),
            )
            for member, relationship in data.household_members(person.national_id)
        ],
    )


def to_company_message(company: Company) -> business_pb2.Company:
    """The ``registry.business.v1.Company`` for a company."""
    office = company.registered_office
    return business_pb2.Company(
        rcs_number=company.rcs_number,
        name=company.name,
        legal_form=_LEGAL_FORM[company.legal_form],
        registered_office=business_pb2.RegisteredOffice(
            house_number=office.house_number,
            street=office.street,
            postcode=office.postcode,
            locality=office.locality,
            country=office.country,
        ),
        status=_COMPANY_STATUS[company.status],
        managers=[
            business_pb2.Manager(
                national_id=m.national_id,
                given_names=m.given_names,
                family_name=m.family_name,
                role=m.role,
                appointed_on=_date(m.appointed_on),
            )
            for m in company.managers
        ],
        nace_codes=company.nace_codes,
        share_capital=_euros(company.share_capital_cents),
        registered_on=_date(company.registered_on),
    )


# --- gRPC registries --------------------------------------------------------------------------


async def _abort(context: grpc.aio.ServicerContext[Any, Any], code: grpc.StatusCode, message: str) -> NoReturn:
    await context.abort(code, message)
    raise AssertionError("unreachable: context.abort raises")


async def _grpc_faults(faults: Faults, context: grpc.aio.ServicerContext[Any, Any]) -> None:
    await faults.wait()
    if faults.should_fail():
        await _abort(context, grpc.StatusCode.UNAVAILABLE, "registry temporarily unavailable")


class _PopulationRegistry(population_pb2_grpc.PopulationRegistryServicer):
    #: How often the change log is looked at: by GetPerson (addresses) and by each WatchChanges stream.
    _REFRESH_S = 0.5
    _POLL_S = 0.1

    def __init__(self, data: DemoData, faults: Faults, changes: ChangeLog) -> None:
        self._data, self._faults, self._changes = data, faults, changes
        self._addresses: dict[str, Address] = {}
        self._seen, self._refreshed = 0, 0.0

    async def _address(self, national_id: str) -> Address | None:
        """The address after the changes recorded so far (the log is read at most every _REFRESH_S)."""
        if time.monotonic() - self._refreshed > self._REFRESH_S:
            self._refreshed = time.monotonic()
            for c in await self._changes.after(self._seen):
                self._addresses[c.national_id], self._seen = c.address, c.sequence
        return self._addresses.get(national_id)

    def _event(self, c: RecordedChange) -> population_pb2.PersonChangeEvent:
        person = self._data.person(c.national_id)
        change = population_pb2.PersonChanged(
            national_id=c.national_id, effective_date=_date(c.effective_date),
            changed=[options_pb2.DataCategory.Name(options_pb2.DataCategory.Value("DATA_CATEGORY_" + name))
                     for name in c.changed],
        )  # fmt: skip
        if person is not None:
            change.person.CopyFrom(to_person_message(person, self._data, c.address))
        return population_pb2.PersonChangeEvent(sequence=c.sequence, event_id=c.event_id, change=change)

    async def WatchChanges(
        self, request: population_pb2.WatchChangesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[population_pb2.PersonChangeEvent]:
        """Every change after ``after_sequence``, then each new one as it is recorded (polled)."""
        after = request.after_sequence
        while True:
            batch = await self._changes.after(after)
            for c in batch:
                yield self._event(c)
                after = c.sequence
            if not batch:
                await asyncio.sleep(self._POLL_S)

    async def GetPerson(
        self, request: population_pb2.GetPersonRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> population_pb2.Person:
        await _grpc_faults(self._faults, context)
        problem = national_id_problem(request.national_id)
        if problem is not None:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"national_id {problem}")
        person = self._data.person(request.national_id)
        if person is None:
            await _abort(context, grpc.StatusCode.NOT_FOUND, "no person with this national id")
        return to_person_message(person, self._data, await self._address(request.national_id))

    async def GetPersons(
        self, request: population_pb2.GetPersonsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> population_pb2.GetPersonsResponse:
        """The batch method: one result per request, each what GetPerson would have answered."""
        await _grpc_faults(self._faults, context)
        return population_pb2.GetPersonsResponse(results=[self._result(r.national_id) for r in request.requests])

    def _result(self, national_id: str) -> population_pb2.PersonResult:
        problem = national_id_problem(national_id)
        if problem is not None:
            error = status_pb2.Status(code=grpc.StatusCode.INVALID_ARGUMENT.value[0], message=f"national_id {problem}")
            return population_pb2.PersonResult(error=error)
        person = self._data.person(national_id)
        if person is None:
            error = status_pb2.Status(code=grpc.StatusCode.NOT_FOUND.value[0], message="no person with this id")
            return population_pb2.PersonResult(error=error)
        return population_pb2.PersonResult(person=to_person_message(person, self._data))


class _BusinessRegistry(business_pb2_grpc.BusinessRegistryServicer):
    def __init__(self, data: DemoData, faults: Faults) -> None:
        self._data, self._faults = data, faults

    async def GetCompany(
        self, request: business_pb2.GetCompanyRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> business_pb2.Company:
        await _grpc_faults(self._faults, context)
        problem = rcs_number_problem(request.rcs_number)
        if problem is not None:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"rcs_number {problem}")
        company = self._data.company(request.rcs_number)
        if company is None:
            await _abort(context, grpc.StatusCode.NOT_FOUND, "no company with this RCS number")
        return to_company_message(company)


async def start_grpc_registry(
    data: DemoData, *, host: str = "127.0.0.1", port: int = 0, faults: Faults | None = None,
    changes: ChangeLog | None = None,
) -> tuple[grpc.aio.Server, int]:
    """Start the population and business registries (and gRPC health) on one port.

    ``changes`` is the population register's change log (an empty one in memory by default).
    Returns the started server and its bound port; the caller stops the server.
    """
    faults = Faults() if faults is None else faults
    changes = ChangeLog() if changes is None else changes
    # A server span per call, child of the gateway's client span (W3C traceparent in the metadata).
    server = grpc.aio.server(interceptors=[GrpcServerTelemetry(lambda: _GRPC_METHODS)])
    population_pb2_grpc.add_PopulationRegistryServicer_to_server(_PopulationRegistry(data, faults, changes), server)  # type: ignore[no-untyped-call]  # grpcio-tools writes no .pyi for *_pb2_grpc
    business_pb2_grpc.add_BusinessRegistryServicer_to_server(_BusinessRegistry(data, faults), server)  # type: ignore[no-untyped-call]  # grpcio-tools writes no .pyi for *_pb2_grpc
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot bind the demo gRPC registry to {host}:{port}")
    for service in ("", *_GRPC_SERVICES):
        await health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    await server.start()
    return server, bound


# --- tax administration (REST, its own dialect) -----------------------------------------------


def _erreur(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"erreur": {"code": code, "message": message}}, status_code=status)


def _fault_response(faults: Faults) -> Response | None:
    if faults.should_fail():
        return _erreur(503, "SERVICE_INDISPONIBLE", "Service momentanément indisponible")
    if faults.garbage:
        return Response(_GARBAGE, status_code=200, media_type="application/json")
    return None


def _attestation(data: DemoData, matricule: str, annee: str, today: dt.date) -> JSONResponse:
    if national_id_problem(matricule) is not None:
        return _erreur(400, "REQUETE_INVALIDE", "Le paramètre 'matricule' est invalide")
    year = int(annee) if annee.isascii() and annee.isdigit() else -1
    if fiscal_year_problem(year, today=today) is not None:
        return _erreur(400, "REQUETE_INVALIDE", "Le paramètre 'annee' est invalide")
    record = data.income(matricule, year)
    if record is None:
        return _erreur(404, "CONTRIBUABLE_INCONNU", "Aucune attestation pour ce contribuable et cet exercice")
    return JSONResponse(
        {
            "attestation": {
                "contribuable": {"matricule": record.national_id},
                "exercice": record.fiscal_year,
                "revenuImposable": {"montant": record.amount_text, "devise": "EUR"},
                "classeImpot": record.tax_class.value,
                "dateEmission": record.issued_on.isoformat(),
            }
        }
    )


def create_tax_app(
    data: DemoData, faults: Faults, *, today: Callable[[], dt.date] = dt.date.today
) -> FastAPI:
    """The tax administration's REST application; ``today`` bounds the accepted fiscal years."""
    app = FastAPI(
        title="ACD - attestations de revenu (démo)", docs_url=None, redoc_url=None, openapi_url=None,
        telemetry=FASTAPI_TELEMETRY_OFF,
    )

    @app.get("/api/v2/attestations-revenu")
    async def attestation(request: Request) -> Response:
        await faults.wait()
        failure = _fault_response(faults)
        if failure is not None:
            return failure
        params = request.query_params
        return _attestation(data, params.get("matricule", ""), params.get("annee", ""), today())

    @app.get("/api/v2/sante")
    async def sante() -> dict[str, str]:
        return {"statut": "ok"}

    app.add_middleware(AsgiTelemetry, untraced=("/api/v2/sante",))  # server spans from traceparent
    return app


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the program that embeds it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class TaxRegistryHandle:
    """A running tax registry; ``stop()`` shuts it down and waits for it."""

    def __init__(self, server: uvicorn.Server, task: asyncio.Task[None]) -> None:
        self._server, self._task = server, task

    async def stop(self) -> None:
        self._server.should_exit = True
        await self._task


def _listening_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


async def start_tax_registry(
    data: DemoData, *, host: str = "127.0.0.1", port: int = 0, faults: Faults | None = None
) -> tuple[TaxRegistryHandle, int]:
    """Start the tax registry inside the running loop; return its handle and bound port."""
    app = create_tax_app(data, Faults() if faults is None else faults)
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="off", ws="none", timeout_graceful_shutdown=2
    )
    server = _EmbeddedServer(config)
    sock = _listening_socket(host, port)
    bound = sock.getsockname()[1]
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            sock.close()
            await task  # raises the start-up error, if any
            raise OSError(f"the demo tax registry did not start on {host}:{port}")
        await asyncio.sleep(0.005)
    return TaxRegistryHandle(server, task), bound


# --- running them all -------------------------------------------------------------------------


async def run_demo_registries(
    data: DemoData,
    *,
    grpc_port: int,
    tax_port: int,
    host: str = "127.0.0.1",
    faults: Faults | None = None,
    on_ready: Callable[[int, int], None] | None = None,
    changes: ChangeLog | None = None,
) -> None:
    """Serve all demo registries until cancelled; ``on_ready(grpc_port, tax_port)`` once listening."""
    grpc_server, bound_grpc = await start_grpc_registry(data, host=host, port=grpc_port, faults=faults,
                                                        changes=changes)
    try:
        tax, bound_tax = await start_tax_registry(data, host=host, port=tax_port, faults=faults)
        try:
            if on_ready is not None:
                on_ready(bound_grpc, bound_tax)
            await asyncio.get_running_loop().create_future()  # until cancelled
        finally:
            await tax.stop()
    finally:
        await grpc_server.stop(grace=1)


async def _serve_until_signalled(data: DemoData, args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    def ready(grpc_port: int, tax_port: int) -> None:
        print(f"READY grpc={grpc_port} tax={tax_port}", flush=True)

    serving = asyncio.create_task(
        run_demo_registries(
            data,
            grpc_port=args.grpc_port,
            tax_port=args.tax_port,
            host=args.host,
            on_ready=ready,
            changes=ChangeLog(Path(args.changes)) if args.changes else None,
        )
    )
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait((serving, stopping), return_when=asyncio.FIRST_COMPLETED)
    serving.cancel()
    stopping.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await serving  # re-raises a start-up failure


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m gateway.demo.registries", description="Run the demo registries."
    )
    parser.add_argument("--seed", type=int, default=20260101)
    parser.add_argument("--persons", type=int, default=10_000)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--grpc-port", type=int, default=0)
    parser.add_argument("--tax-port", type=int, default=0)
    parser.add_argument("--changes", default="", help="the population register's change log (SQLite file)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Generate the data set and serve the demo registries until SIGTERM or SIGINT."""
    args = _parse(argv)
    from observability.logs import configure_logging, log_level

    # JSON lines like the gateway's (the exporters' errors included); an unknown level was refused by `serve`.
    try:
        configure_logging(log_level(os.environ.get("PASSERELLE_LOG_LEVEL", "INFO")))
    except ValueError:
        configure_logging("INFO")
    configure_tracing(os.environ, service_name="passerelle-demo-registries")  # OTEL_*, PASSERELLE_TRACES_FILE
    data = generate(args.seed, args.persons)
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(_serve_until_signalled(data, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
