"""The ``gateway`` command."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated

import typer

from gateway.config import Config, ConfigError, load_config
from gateway.entrypoints._cli_common import demo_folder as _demo_folder
from gateway.entrypoints._cli_common import refuse as _refuse
from gateway.entrypoints._cli_common import require_demo_set_up as _require_demo_set_up
from gateway.entrypoints.cli_audit import audit_app
from gateway.entrypoints.cli_consent import app as consent_app
from gateway.entrypoints.cli_report import report
from gateway.entrypoints.cli_security import security_app

app = typer.Typer(help="Passerelle: once-only data-exchange gateway.", no_args_is_help=True, add_completion=False,
                  rich_markup_mode=None)   # plain help: option texts hold [sections] that markup would eat
demo_app = typer.Typer(help="The demo data set.", no_args_is_help=True)
app.add_typer(demo_app, name="demo")
app.add_typer(audit_app, name="audit")
app.add_typer(consent_app, name="consent")
app.command("report")(report)   # one command, no subcommands
app.add_typer(security_app, name="security")

DataDir = Annotated[Path, typer.Option("--data-dir", help="Folder for demo keys, config and stores.")]
DemoConfig = Annotated[Path | None, typer.Option(
    "--config", help="The demo set-up's configuration file; its folder is the data folder (instead of --data-dir).")]
DEFAULT_DATA_DIR = Path(".gateway-demo")
DEMO_SEED = 20260101


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"passerelle {version('passerelle')}")
        except PackageNotFoundError:   # a source tree that was never installed
            typer.echo("passerelle (not installed)")
        raise typer.Exit()


@app.callback()
def _main(
    show_version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_version,
                                               help="Print the version and exit.")] = False,
) -> None:
    """Passerelle: once-only data-exchange gateway."""


def _run(coro: object) -> None:
    try:
        import uvloop

        uvloop.run(coro)  # type: ignore[arg-type]
    except ImportError:
        asyncio.run(coro)  # type: ignore[arg-type]


def _load(path: Path) -> Config:
    """The validated configuration, every file it names readable; else one line per problem and exit code 2."""
    from gateway.config_files import file_problems

    try:
        config = load_config(path)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    problems = file_problems(config)
    for problem in problems:
        typer.echo(f"{path}: {problem}", err=True)
    if problems:
        raise typer.Exit(2)
    return config


@contextlib.contextmanager
def _demo_registries(persons: int, changes: Path) -> Iterator[tuple[int, int]]:
    """Run the demo registries in their own process (the population register's change log in
    ``changes``); yield (grpc port, tax REST port)."""
    cmd = [sys.executable, "-m", "gateway.demo.registries", "--seed", str(DEMO_SEED), "--persons", str(persons),
           "--grpc-port", "0", "--tax-port", "0", "--changes", str(changes)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("READY"):
            raise SystemExit(f"demo registries failed to start: {line!r}")  # on stderr, exit code 1
        ports = dict(part.split("=") for part in line.split()[1:])
        yield int(ports["grpc"]), int(ports["tax"])
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()


def _ports(conf: Config) -> list[tuple[str, str, int]]:
    g = conf.gateway
    ports = [("REST", g.rest_host, g.rest_port), ("gRPC", g.grpc_host, g.grpc_port)]
    return ports + ([("gRPC+TLS", g.grpc_host, g.tls.port)] if g.tls is not None else [])


@contextlib.contextmanager
def _single_instance(conf: Config, hint: str) -> Iterator[None]:
    """This gateway alone on its data folder and ports, or one line naming the other process and exit code 2."""
    from gateway.entrypoints.single_instance import InstanceConflict, check_ports_free, data_folder, hold_data_folder

    folder = data_folder(conf)
    try:
        with hold_data_folder(folder, hint) if folder is not None else contextlib.nullcontext():
            check_ports_free(_ports(conf))
            yield
    except InstanceConflict as exc:
        raise _refuse(str(exc)) from None


def _ports_free_before_demo_set_up(data_dir: Path, updates: Mapping[str, object], hint: str) -> None:
    """A demo gateway that cannot get its ports stops before it writes a demo set-up into its folder."""
    from gateway.config import ConfigError, GatewaySection
    from gateway.demo.setup import CONFIG_NAME
    from gateway.entrypoints.single_instance import InstanceConflict, check_ports_free

    section = GatewaySection()
    if (data_dir / CONFIG_NAME).is_file():
        try:
            section = load_config(data_dir / CONFIG_NAME).gateway
        except ConfigError:
            return   # reported, key by key, once the set-up is loaded
    g = section.model_copy(update=updates)
    try:
        check_ports_free([("REST", g.rest_host, g.rest_port), ("gRPC", g.grpc_host, g.grpc_port)])
    except InstanceConflict as exc:
        raise _refuse(str(exc)) from None


def _run_or_explain(conf: Config, workers: int) -> None:
    """Run; whatever stops the gateway from starting is one line and exit code 2, never a traceback.

    The configuration's files and stores were checked before (``gateway.config_files``); what is left
    (a port taken meanwhile, a store failing as it opens) arrives here as ``StartupError``.
    """
    from gateway.config_files import StartupError
    from gateway.entrypoints.workers import run_gateway

    try:
        run_gateway(conf, workers)
    except StartupError as exc:
        raise _refuse(str(exc)) from None


@app.command()
def serve(
    demo: Annotated[bool, typer.Option("--demo", help="Demo keys, config, data and registries.")] = False,
    config: Annotated[Path | None, typer.Option("--config", help="Configuration file (TOML).")] = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    rest_port: Annotated[int | None, typer.Option("--rest-port", help="REST port (0: any free one). "
                                                  "Default: [gateway] rest_port, 8080.")] = None,
    grpc_port: Annotated[int | None, typer.Option("--grpc-port", help="gRPC port (0: any free one). "
                                                  "Default: [gateway] grpc_port, 50051.")] = None,
    persons: Annotated[int, typer.Option("--persons", help="Demo data set size.")] = 10_000,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Gateway processes sharing the ports.")] = 1,
) -> None:
    """Run the gateway (REST on 127.0.0.1:8080, gRPC on 127.0.0.1:50051 by default)."""
    from gateway.bootstrap import resolve_demo_addresses
    from gateway.demo.setup import ensure_demo
    from observability.logs import configure_logging, log_level

    if not demo and config is None:
        raise typer.BadParameter("give --config FILE, or --demo")
    for option, port in (("--rest-port", rest_port), ("--grpc-port", grpc_port)):
        if port is not None and not 0 <= port <= 65535:
            raise _refuse(f"{option}: {port} is not a TCP port (0 to 65535; 0: any free one)")
    try:
        level = log_level(os.environ.get("PASSERELLE_LOG_LEVEL", "INFO"))
    except ValueError as exc:
        raise _refuse(str(exc)) from None
    configure_logging(level)
    logging.getLogger("passerelle.lifecycle").setLevel(logging.INFO)   # start, ready, stop: always written
    updates = {k: v for k, v in {"rest_port": rest_port, "grpc_port": grpc_port}.items() if v is not None}
    updates |= {"demo": True} if demo else {}   # demo-only routes (citizen sign-in on /me/)
    hint = "--config with another data folder" if config is not None else "--data-dir"
    if config is None:
        _ports_free_before_demo_set_up(data_dir, updates, hint)
    path = config or ensure_demo(data_dir)
    conf = _load(path)
    conf = conf.model_copy(update={"gateway": conf.gateway.model_copy(update=updates)})
    with _single_instance(conf, hint):
        if not demo:
            _run_or_explain(conf, workers)
            return
        from gateway.demo.changes import CHANGES_FILE

        with _demo_registries(persons, path.parent / CHANGES_FILE) as (g, t):
            logging.getLogger("passerelle.lifecycle.demo").info(
                f"demo registries: gRPC 127.0.0.1:{g}, tax REST http://127.0.0.1:{t}",
                extra={"fields": {"grpc_port": g, "tax_port": t}},
            )
            _run_or_explain(resolve_demo_addresses(conf, g, t), workers)


@app.command()
def token(
    consumer: Annotated[str | None, typer.Option("--consumer", help="Agency token, e.g. cedies.")] = None,
    citizen: Annotated[str | None, typer.Option("--citizen", help="Citizen token for this national id.")] = None,
    admin: Annotated[bool, typer.Option("--admin", help="Administrator token.")] = False,
    ops: Annotated[bool, typer.Option("--ops", help="Operations token.")] = False,
    ttl: Annotated[int, typer.Option("--ttl", help="Lifetime in seconds (1 to 86400; the gateway accepts "
                                     "at most [gateway] token_max_lifetime_s, 900 by default).")] = 900,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    config: DemoConfig = None,
) -> None:
    """Print a demo token from the demo identity providers (of gateway serve --demo on --data-dir)."""
    from gateway.demo.setup import demo_token

    data_dir = _demo_folder(config, data_dir)
    _require_demo_set_up(data_dir)
    chosen = [name for name, given in (("--consumer", consumer), ("--citizen", citizen), ("--admin", admin),
                                       ("--ops", ops)) if given]  # fmt: skip
    if len(chosen) > 1:
        raise _refuse(f"{' and '.join(chosen)}: a token is for one caller; give only one of them")
    if not 1 <= ttl <= 86_400:
        raise _refuse(f"--ttl: {ttl} is not a lifetime in seconds (1 to 86400)")
    if consumer:
        tok = demo_token(data_dir, issuer_id="demo-agencies", subject=consumer, scope="exchange", ttl_s=ttl)
    elif citizen:
        tok = demo_token(data_dir, issuer_id="demo-citizens", subject=citizen, scope="citizen", ttl_s=ttl)
    elif admin or ops:
        tok = demo_token(data_dir, issuer_id="demo-staff", subject="admin" if admin else "ops",
                         scope="admin" if admin else "ops", ttl_s=ttl)
    else:
        raise typer.BadParameter("give --consumer NAME, --citizen NATIONAL_ID, --admin or --ops")
    typer.echo(tok)


@demo_app.command("people")
def demo_people(
    count: Annotated[int, typer.Option("--count", help="How many households and companies to list.")] = 5,
    persons: Annotated[int, typer.Option("--persons", help="The demo data set size the gateway was started "
                                         "with (gateway serve --demo --persons N).")] = 10_000,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    config: DemoConfig = None,
) -> None:
    """List demo persons (with their households) and companies to use in first calls.

    The data set comes from a fixed seed and --persons; --data-dir and --config are accepted like
    in every other subcommand.
    """
    from rich.console import Console
    from rich.table import Table

    from gateway.demo.data import generate

    data = generate(DEMO_SEED, persons)
    people = Table(title="Demo persons (population register)")
    for col in ("national id", "name", "born", "commune", "household"):
        people.add_column(col)
    for household in data.households[:count]:
        for m in household.members:
            p = data.person(m)
            assert p is not None  # a household lists registered persons only
            people.add_row(p.national_id, f"{p.given_names} {p.family_name}", p.birth_date.isoformat(),
                           p.address.commune, household.household_id)
    companies = Table(title="Demo companies (trade register)")
    for col in ("RCS number", "name", "legal form", "status"):
        companies.add_column(col)
    for c in data.companies[:count]:
        companies.add_row(c.rcs_number, c.name, str(c.legal_form), str(c.status))
    console = Console()
    console.print(people)
    console.print(companies)


@demo_app.command("change")
def demo_change(
    national_id: Annotated[str, typer.Argument(metavar="NATIONAL_ID",
                                               help="The person's national id (gateway demo people lists some).")],
    address: Annotated[str, typer.Option("--address",
                                         help='The new address: "12 rue de la Gare, L-1234 Luxembourg".')],
    commune: Annotated[str, typer.Option("--commune", help="The commune, when not the locality.")] = "",
    effective: Annotated[str, typer.Option("--effective",
                                           help="When it takes effect (YYYY-MM-DD; default today).")] = "",
    persons: Annotated[int, typer.Option("--persons", help="The demo data set size the gateway was started "
                                         "with (gateway serve --demo --persons N).")] = 10_000,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    config: DemoConfig = None,
) -> None:
    """DEMO ONLY: record a change of address in the demo population register; it streams it to the
    gateway (WatchChanges), which notifies the agencies that follow the person."""
    import datetime as dt

    from gateway.core.identifiers import national_id_problem
    from gateway.demo.changes import CHANGES_FILE, ChangeLog, parse_address
    from gateway.demo.data import generate

    data_dir = _demo_folder(config, data_dir)
    _require_demo_set_up(data_dir)
    if national_id_problem(national_id) is not None:
        raise _refuse("NATIONAL_ID: not a national id (13 digits with a possible birth date)")
    try:
        new_address = parse_address(address, commune)
        when = dt.date.fromisoformat(effective) if effective else dt.date.today()
    except ValueError as exc:
        raise _refuse(f"--address/--effective: {exc}") from None
    if generate(DEMO_SEED, persons).person(national_id) is None:
        raise _refuse(f"NATIONAL_ID: no such person in the demo data set of {persons} persons")
    log = ChangeLog(data_dir / CHANGES_FILE)
    try:
        change = log.record(national_id, new_address, when)
    finally:
        log.close()
    typer.echo(f"recorded change {change.event_id} (sequence {change.sequence}): ADDRESS, effective {when}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
