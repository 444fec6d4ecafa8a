"""The ``hyojunka`` command: run the service, its halves, and the operator's chores."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import signal
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from temporalio.client import Client

from readmodel import tables as t
from readmodel.db import engine_for, make_engine, upgrade_schema
from runtime.logs import configure_logging
from runtime.settings import Settings, get_settings
from workflows.roles import ROLES, Scope, scope_of

if TYPE_CHECKING:
    from api.commands import Context

log = structlog.get_logger("hyojunka")

DEMO_LG_CODE = "131016"  # 千代田区
DEMO_VENDOR = ("demo-vendor", "デモベンダ株式会社")


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _freeze_startup_objects() -> None:
    """Leave what the process built to start (modules, the app, its routes, the worker) out
    of the garbage collector's full collections, which walked all of it: a large report
    answered in 80 ms took 200 ms whenever one ran."""
    gc.collect()
    gc.freeze()


async def _serve_api(settings: Settings, client: Client, engine: Engine) -> None:
    """Serve until SIGINT or SIGTERM, then return normally so the caller can stop the rest."""
    import uvicorn

    from api.main import create_app

    class _Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            # We own the signals: uvicorn would re-raise them after serving, which would
            # cut short the orderly stop of the worker and the Temporal dev server.
            yield

    app = create_app(settings, client=client, engine=engine)
    config = uvicorn.Config(
        app,
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=3,
        # Vendor tools keep connections open between reports; closing them after 5 s idle
        # races their next request on the same connection.
        timeout_keep_alive=75,
    )
    server = _Server(config)
    loop = asyncio.get_running_loop()
    _freeze_startup_objects()

    def _stop() -> None:
        if server.should_exit:
            server.force_exit = True
        server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, _stop)
    try:
        await server.serve()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _until_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def _first_start_tokens(engine: Engine) -> list[tuple[str, str, str]] | None:
    """On an empty database: an admin token and one demo token per role, shown once."""
    from api import commands
    from api.schemas import TokenCreate, VendorCreate

    with Session(engine) as session:
        if session.exec(select(t.ApiToken)).first() is not None:
            return None
        if session.get(t.Vendor, DEMO_VENDOR[0]) is None:
            demo = VendorCreate(id=DEMO_VENDOR[0], name=DEMO_VENDOR[1])
            commands.register_vendor(session, commands.OPERATOR, demo)
        made: list[tuple[str, str, str]] = []
        for role in ROLES:
            kw = DEMO_SCOPE[scope_of(role)]
            body = TokenCreate.model_validate({"role": role, "name": f"demo-{role}", **kw})
            secret = commands.issue_token(session, commands.OPERATOR, body).token
            scope = next(iter(kw.values()), "all")
            made.append((role, scope, secret))
        return made


# The demo body's, prefecture's and vendor's scope, by the scope each role has.
DEMO_SCOPE: dict[Scope, dict[str, str]] = {
    Scope.ALL: {},
    Scope.PREFECTURE: {"prefecture": DEMO_LG_CODE[:2]},
    Scope.LG_CODE: {"lg_code": DEMO_LG_CODE},
    Scope.VENDOR: {"vendor_id": DEMO_VENDOR[0]},
}

DEMO_PEOPLE: dict[str, str] = {
    "admin": "運用 管理者",
    "observer": "総務 省子",
    "prefecture": "東京 都子",
    "pm": "千代田 担当",
    "approver": "千代田 承認",
    "vendor": "デモ ベンダ",
}


def _first_start_people(engine: Engine, settings: Settings) -> list[tuple[str, str, str]] | None:
    """On a database with no people: one demo person per role (the demo body's, prefecture's
    and vendor's), each with a sign-in link valid as an invitation's (7 days)."""
    from api import people
    from api.commands import OPERATOR
    from api.schemas import PersonCreate

    with Session(engine) as session:
        if session.exec(select(t.Person)).first() is not None:
            return None
        made: list[tuple[str, str, str]] = []
        base = settings.public_url.rstrip("/")
        for role in ROLES:
            body = PersonCreate.model_validate(
                {
                    "name": DEMO_PEOPLE.get(role, role),
                    "email": f"{role}@demo.hyojunka.example",
                    "role": role,
                    **DEMO_SCOPE[scope_of(role)],
                }
            )
            person = people.add_person(session, OPERATOR, body)
            secret = people.issue_link(session, person, people.INVITATION, settings)
            made.append((role, person.email, f"{base}/login/link/{secret}"))
        return made


async def cmd_up(settings: Settings, workers: int | None = None) -> int:
    """Run everything locally; ``workers`` worker processes (default: the setting)."""
    from cli.devserver import dev_server_command
    from cli.supervisor import (
        AlreadyRunning,
        Child,
        Supervisor,
        data_folder_lock,
        http_ready,
        hyojunka_command,
        planned_ports,
        port_in_use,
        shared_ports,
        stop_leftovers,
        temporal_ready,
        worker_children,
    )

    workers = workers or settings.workers
    data = settings.data_dir
    try:
        lock = data_folder_lock(data)
        lock.__enter__()
    except AlreadyRunning as exc:
        sys.stderr.write(f"hyojunka: {exc}\n")
        return 1
    try:
        stop_leftovers(data)
        ports = planned_ports(settings, workers)
        for clash in shared_ports(ports):
            sys.stderr.write(f"hyojunka: {clash}; choose other ports\n")
            return 1
        for host, port, what in ports:
            if port_in_use(host, port):
                sys.stderr.write(
                    f"hyojunka: {host}:{port} (for {what}) is held by a process this "
                    "hyojunka up did not start; stop it or choose another port\n"
                )
                return 1
        t_host, _, t_port = settings.temporal_address.rpartition(":")
        upgrade_schema(settings.resolved_database_url)
        engine = make_engine(settings.resolved_database_url)
        tokens = _first_start_tokens(engine)
        demo_people = _first_start_people(engine, settings)
        engine.dispose()
        api_url = f"http://{settings.api_host}:{settings.api_port}"
        children = [
            Child(
                "temporal",
                dev_server_command(settings),
                data / "temporal.log",
                ready=temporal_ready(t_host or "127.0.0.1", int(t_port)),
            ),
            *worker_children(settings, workers),
            Child("api", hyojunka_command("api"), ready=http_ready(f"{api_url}/healthz")),
        ]
        _out(f"hyojunka API     {api_url}/  (docs: /docs)")
        _out(f"Temporal Web UI  http://127.0.0.1:{settings.temporal_ui_port}/")
        _out(f"data             {data.resolve()}")
        _out(f"workers          {workers}")
        if tokens:
            _out("\nTokens (shown once; only their hashes are stored):")
            for role, scope, secret in tokens:
                _out(f"  {role:<10} {scope:<12} {secret}")
        if demo_people:
            _out("\nDemo people: open a link to sign in as that person (valid 7 days, once;")
            _out("afterwards ask /login for a new link by e-mail):")
            for role, email, link in demo_people:
                _out(f"  {role:<10} {email:<34} {link}")
        if not settings.smtp_url.get_secret_value():
            mail = settings.mail_dir or settings.data_dir / "mail"
            _out(f"\nMail is not sent (no HYOJUNKA_SMTP_URL): every message is in {mail.resolve()}")
        _out("\nCtrl-C stops everything; `hyojunka up` again resumes every project.\n")
        await Supervisor(settings, children).run()
        return 0
    finally:
        lock.__exit__(None, None, None)


async def cmd_worker(settings: Settings) -> None:
    from runtime.temporal import connect_patiently, worker_runtime
    from worker.runner import build_worker, ensure_schedules

    engine = engine_for(settings)
    client = await connect_patiently(settings, runtime=worker_runtime(settings))
    await ensure_schedules(client, settings.task_queue)
    async with build_worker(client, engine, settings) as worker:
        _freeze_startup_objects()
        run = asyncio.create_task(worker.run())
        stop = asyncio.create_task(_until_signal())
        await asyncio.wait([run, stop], return_when=asyncio.FIRST_COMPLETED)
        if not run.done():
            await worker.shutdown()
        with contextlib.suppress(Exception):
            await run
    engine.dispose()


async def cmd_api(settings: Settings) -> None:
    from runtime.temporal import connect_lazily

    engine = engine_for(settings)
    # Lazily: the API starts, and says it is not ready, while Temporal is down.
    client = await connect_lazily(settings)
    await _serve_api(settings, client, engine)
    engine.dispose()


async def rebuild_read_model(client: Client, engine: Engine, task_queue: str) -> int:
    """Rewrite every project's rows from its workflow: state by query, events from its journal.

    Only this deployment's projects (its task queue): a query needs a worker to answer it."""
    from activities.projection import take_turns, write_projection
    from activities.reconcile import workflow_truth

    count = 0
    query = f"WorkflowType = 'MigrationWorkflow' AND TaskQueue = '{task_queue}'"
    async for wf in client.list_workflows(query):
        write = await workflow_truth(client, wf.id)
        with Session(engine) as session:
            take_turns(session)
            write_projection(session, write)
            session.commit()
        count += 1
    return count


async def cmd_rebuild(settings: Settings) -> None:
    from runtime.temporal import connect

    engine = make_engine(settings.resolved_database_url)
    client = await connect(settings)
    n = await rebuild_read_model(client, engine, settings.task_queue)
    engine.dispose()
    _out(f"rebuilt {n} projects")


async def cmd_temporal_setup(settings: Settings) -> None:
    from runtime.temporal import connect, register_search_attributes

    await register_search_attributes(await connect(settings))
    _out("search attributes registered")


def _as_operator(settings: Settings, command: Callable[[Session], str]) -> int:
    """Run one administration command of the API's command layer as the operator: its
    answer on stdout, or its refusal on stderr with exit status 2."""
    from pydantic import ValidationError

    from api.errors import HTTPProblem

    upgrade_schema(settings.resolved_database_url)
    engine = make_engine(settings.resolved_database_url)
    try:
        with Session(engine) as session:
            _out(command(session))
    except ValidationError as exc:
        error = exc.errors()[0]
        sys.stderr.write(f"hyojunka: {error['loc'][0]}: {error['msg']}\n")
        return 2
    except HTTPProblem as p:
        sys.stderr.write(f"hyojunka: {p.detail}\n")
        return 2
    finally:
        engine.dispose()
    return 0


def cmd_token_create(settings: Settings, args: argparse.Namespace) -> int:
    from api import commands
    from api.schemas import TokenCreate

    scope = {"lg_code": args.lg_code, "prefecture": args.prefecture, "vendor_id": args.vendor}
    return _as_operator(
        settings,
        lambda session: (
            commands.issue_token(
                session, commands.OPERATOR, TokenCreate(role=args.role, name=args.name, **scope)
            ).token
        ),
    )


def cmd_token_list(settings: Settings, args: argparse.Namespace) -> int:
    from api import queries
    from api.commands import OPERATOR

    def listing(session: Session) -> str:
        page = queries.tokens(session, OPERATOR, 500, 0, revoked=args.revoked)
        lines = [
            f"{x.id}\t{x.role}\t{x.name}\t{x.lg_code or x.prefecture or x.vendor_id or '-'}"
            f"\texpires {x.expires_on or '-'}\tlast used {_when(x.last_used_at)}"
            f"\t{'revoked ' + _when(x.revoked_at) if x.revoked_at else 'valid'}"
            for x in page.items
        ]
        return "\n".join(["id\trole\tname\tscope\texpiry\tlast use\tstate", *lines])

    return _as_operator(settings, listing)


def cmd_token_revoke(settings: Settings, args: argparse.Namespace) -> int:
    from api import commands

    return _as_operator(
        settings,
        lambda session: f"revoked {commands.revoke_token(session, commands.OPERATOR, args.id).id}",
    )


def cmd_person_add(settings: Settings, args: argparse.Namespace) -> int:
    """A person made by the operator (the first admin, scripts), mailed an invitation; the
    sign-in link is printed too."""
    from api import people
    from api.commands import OPERATOR
    from api.schemas import PersonCreate

    made: list[tuple[Any, str]] = []

    def add(session: Session) -> str:
        body = PersonCreate.model_validate(
            {
                "name": args.name,
                "email": args.email,
                "role": args.role,
                **{
                    k: v
                    for k, v in (
                        ("lg_code", args.lg_code),
                        ("prefecture", args.prefecture),
                        ("vendor_id", args.vendor),
                    )
                    if v
                },
            }
        )
        person = people.add_person(session, OPERATOR, body)
        secret = people.issue_link(session, person, people.INVITATION, settings)
        made.append((person, secret))
        link = f"{settings.public_url.rstrip('/')}/login/link/{secret}"
        return f"{person.id}\t{person.role}\t{person.email}\nsign-in link (7 days, once): {link}"

    status = _as_operator(settings, add)
    if status == 0 and made:
        person, secret = made[0]
        if not asyncio.run(people.send_link(settings, person, secret, people.INVITATION)):
            sys.stderr.write("hyojunka: the invitation mail could not be sent\n")
    return status


def cmd_person_list(settings: Settings, args: argparse.Namespace) -> int:
    from api import people
    from api.commands import OPERATOR

    def listing(session: Session) -> str:
        page = people.list_people(session, OPERATOR, 500, 0, role=args.role, q=args.q)
        lines = [
            f"{x.id}\t{x.role}\t{x.name}\t{x.email}"
            f"\t{x.lg_code or x.prefecture or x.vendor_id or '-'}\t{x.notify}"
            f"\t{'active' if x.active else 'inactive'}\tlast sign-in {_when(x.last_sign_in)}"
            for x in page.items
        ]
        return "\n".join(["id\trole\tname\te-mail\tscope\tnotify\tstate\tlast sign-in", *lines])

    return _as_operator(settings, listing)


def cmd_person_remove(settings: Settings, args: argparse.Namespace) -> int:
    from api import people
    from api.commands import OPERATOR

    return _as_operator(
        settings,
        lambda session: f"deactivated {people.remove_person(session, OPERATOR, args.id).email}",
    )


def _when(at: Any) -> str:
    from workflows.calendar import JST

    return at.astimezone(JST).strftime("%Y-%m-%d %H:%M JST") if at else "-"


def cmd_vendor_create(settings: Settings, args: argparse.Namespace) -> int:
    from api import commands
    from api.schemas import VendorCreate

    return _as_operator(
        settings,
        lambda session: (
            commands.register_vendor(
                session, commands.OPERATOR, VendorCreate(id=args.id, name=args.name)
            ).id
        ),
    )


def cmd_template_add(settings: Settings, args: argparse.Namespace) -> int:
    """Store a procedure template from its JSON file: {"id", "version", "name", "tasks"}."""
    import json

    from api import commands
    from api.schemas import TemplateIn

    try:
        data = json.loads(Path(args.file).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"hyojunka: {args.file}: {exc}\n")
        return 2

    def store(session: Session) -> str:
        stored = commands.store_template(session, commands.OPERATOR, TemplateIn(**data))
        return f"{stored.id}@{stored.version}"

    return _as_operator(settings, store)


class _RolloutBar:
    """A progress bar on stderr for a rollout: projects handled, of all it has found."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.progress = Progress(
            TextColumn("rollout"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[counts]}"),
            console=Console(stderr=True),
        )
        self.task = self.progress.add_task("rollout", total=None, counts="")
        self.progress.start()

    def __enter__(self) -> _RolloutBar:
        return self

    def __exit__(self, *_: object) -> None:
        self.progress.stop()

    def __call__(self, r: Any) -> None:
        counts = f"moved {r.moved}  skipped {r.skipped}  refused {len(r.refused)}"
        handled = r.moved + r.skipped + len(r.refused)
        self.progress.update(self.task, total=r.total, completed=handled, counts=counts)


async def roll_out(
    settings: Settings, template_id: str, body: Any, every: float = 0.5
) -> tuple[Any, float]:
    """Start a rollout as the operator through the API's command and follow it in the read
    model with a progress bar until it completes; the rollout and the seconds it took."""
    import time

    from api import rollouts
    from api.commands import OPERATOR
    from workflows.rollout import RolloutStatus

    async with _service(settings) as ctx:
        t0 = time.perf_counter()
        r = await rollouts.start(ctx, OPERATOR, template_id, body)
        sys.stderr.write(
            f"rollout {r.id} started: it goes on if this command stops "
            f"(GET /api/v1/rollouts/{r.id} follows it)\n"
        )
        with _RolloutBar() as bar:
            bar(r)
            while r.status != RolloutStatus.COMPLETED:
                await asyncio.sleep(every)
                r = await ctx.db.run(rollouts.rollout, OPERATOR, r.id)
                bar(r)
        return r, time.perf_counter() - t0


def cmd_template_rollout(settings: Settings, args: argparse.Namespace) -> int:
    """Move every running project on one version of a template to a newer one."""
    from pydantic import ValidationError

    from api.errors import HTTPProblem
    from api.schemas import RolloutCreate

    try:
        body = RolloutCreate.model_validate(
            {
                "from": args.from_version,
                "to": args.to_version,
                "reason": args.reason,
                "prefecture": args.prefecture,
                "lg_code": args.lg_code,
            }
        )
    except ValidationError as exc:
        error = exc.errors()[0]
        sys.stderr.write(f"hyojunka: {error['loc'][0]}: {error['msg']}\n")
        return 2
    upgrade_schema(settings.resolved_database_url)
    try:
        r, seconds = asyncio.run(roll_out(settings, args.id, body))
    except HTTPProblem as p:
        sys.stderr.write(f"hyojunka: {p.detail}\n")
        return 2
    _out(
        f"rollout {r.id}: {r.template}@{r.from_} -> {r.template}@{r.to}: moved {r.moved}, "
        f"skipped {r.skipped}, refused {len(r.refused)} (of {r.total}) in {seconds:.1f} s"
    )
    for x in r.refused:
        _out(f"  {x.project_id}: {x.reason}")
    return 1 if r.refused else 0


class _ImportBar:
    """A progress bar on stderr for an import: rows with an outcome, of all rows."""

    def __init__(self, label: str) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn(label),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[counts]}"),
            console=Console(stderr=True),
        )
        self.task = self.progress.add_task(label, total=None, counts="")

    def __enter__(self) -> _ImportBar:
        return self

    def __exit__(self, *_: object) -> None:
        self.progress.stop()

    def __call__(self, tally: Any) -> None:
        # Shown from the first outcome on: a file refused as a whole shows no bar at all.
        self.progress.start()
        counts = f"created {tally.created}  existing {tally.existing}  refused {tally.refused}"
        self.progress.update(self.task, total=tally.total, completed=tally.done, counts=counts)


@contextlib.asynccontextmanager
async def _service(settings: Settings) -> AsyncIterator[Context]:
    """What a command of the API's command layer needs to reach the running service: the
    read model and a Temporal client (the worker of ``hyojunka up`` does the work)."""
    import uuid

    from api.commands import Context
    from readmodel.db import ReadModel
    from runtime.temporal import connect

    engine = engine_for(settings)
    try:
        client = await connect(settings)
        yield Context(ReadModel(engine), client, settings, request_id=f"cli-{uuid.uuid4().hex}")
    finally:
        engine.dispose()


def _import_report(result: Any, seconds: float) -> int:
    """The per-row outcome: counts on stdout, each refused row with its line and reasons."""
    rows = result.created + result.existing + len(result.refused)
    rate = result.created / seconds if seconds else 0.0
    _out(
        f"created {result.created}, existing {result.existing}, refused {len(result.refused)}"
        f" (of {rows} rows) in {seconds:.1f} s ({rate:.1f} created/s)"
    )
    for r in result.refused:
        _out(f"  line {r.line}: {'; '.join(r.errors)}")
    return 1 if result.refused else 0


async def import_file(settings: Settings, data: bytes, label: str = "import") -> tuple[Any, float]:
    """Import ``data`` as the operator through the API's import path, with a progress bar;
    the result and the seconds it took."""
    import time

    from api.commands import OPERATOR
    from api.imports import import_projects

    async with _service(settings) as ctx:
        t0 = time.perf_counter()
        with _ImportBar(label) as bar:
            result = await import_projects(ctx, OPERATOR, data, on_progress=bar)
        return result, time.perf_counter() - t0


def cmd_import(settings: Settings, args: argparse.Namespace) -> int:
    from api.errors import HTTPProblem

    try:
        with open(args.file, "rb") as f:
            data = f.read()
    except OSError as exc:
        sys.stderr.write(f"hyojunka: {exc}\n")
        return 2
    upgrade_schema(settings.resolved_database_url)
    try:
        result, seconds = asyncio.run(import_file(settings, data))
    except HTTPProblem as p:
        sys.stderr.write(f"hyojunka: {p.detail}\n")
        return 2
    return _import_report(result, seconds)


async def _seed(settings: Settings, data: bytes, projects: list[Any]) -> tuple[Any, float, int]:
    from cli.seed import declare_extended_tracks

    result, seconds = await import_file(settings, data, "seed")
    async with _service(settings) as ctx:
        declared = await declare_extended_tracks(ctx, projects)
    return result, seconds, declared


def cmd_seed(settings: Settings, args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from cli.seed import register_vendors, seed_csv, seed_projects
    from workflows.calendar import jst_today

    lg_codes = None if args.whole_country else set(args.lg_code or [DEMO_LG_CODE])
    today = jst_today(datetime.now(UTC))
    projects = seed_projects(args.random_seed, today, args.scale, args.limit, lg_codes)
    data = seed_csv(projects)
    if args.csv:
        with open(args.csv, "wb") as f:
            f.write(data)
    upgrade_schema(settings.resolved_database_url)
    engine = make_engine(settings.resolved_database_url)
    try:
        with Session(engine) as session:
            register_vendors(session, projects)  # those the data set uses
    finally:
        engine.dispose()
    result, seconds, declared = asyncio.run(_seed(settings, data, projects))
    status = _import_report(result, seconds)
    _out(f"extended track declared for {declared} projects")
    return status


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hyojunka", description="自治体システム標準化の移行管理")
    sub = p.add_subparsers(dest="command", required=True)

    def group(name: str, help_: str) -> Any:
        """A command with commands of its own (``hyojunka NAME ...``)."""
        return sub.add_parser(name, help=help_).add_subparsers(
            dest=f"{name}_command", required=True
        )

    up = sub.add_parser("up", help="run everything locally: Temporal dev server, workers, API")
    up.add_argument(
        "--workers",
        type=_positive,
        help="worker processes to run (default: HYOJUNKA_WORKERS, else 1 on a machine of "
        "two cores or fewer, cores - 1 up to 4 otherwise)",
    )
    sub.add_parser("worker", help="run the worker against HYOJUNKA_TEMPORAL_ADDRESS")
    sub.add_parser("api", help="run the API against HYOJUNKA_TEMPORAL_ADDRESS")
    db = group("db", "read-model schema")
    db.add_parser("upgrade", help="create or upgrade the schema (Alembic)")
    tp = group("temporal", "Temporal chores")
    tp.add_parser("setup", help="register the custom search attributes")
    rm = group("readmodel", "read model chores")
    rm.add_parser("rebuild", help="rebuild the read model from the workflows (worker must run)")
    tok = group("token", "API tokens")
    tc = tok.add_parser("create", help="create a token and print its secret once")
    tc.add_argument(
        "--role",
        required=True,
        choices=[role.value for role in ROLES],
    )
    tc.add_argument("--lg-code")
    tc.add_argument("--prefecture")
    tc.add_argument("--vendor")
    tc.add_argument("--name", required=True)
    tc.add_argument("--expires-on", type=date.fromisoformat, help="last valid day, YYYY-MM-DD")
    tl = tok.add_parser("list", help="list tokens (never their secrets)")
    tl.add_argument("--revoked", action=argparse.BooleanOptionalAction, default=None)
    tr = tok.add_parser("revoke", help="revoke a token at once")
    tr.add_argument("id", type=int)
    per = group("person", "people: accounts that sign in to the pages")
    pa = per.add_parser("add", help="add a person and mail them an invitation (link printed)")
    pa.add_argument("--name", required=True)
    pa.add_argument("--email", required=True)
    pa.add_argument("--role", required=True, choices=[role.value for role in ROLES])
    pa.add_argument("--lg-code")
    pa.add_argument("--prefecture")
    pa.add_argument("--vendor")
    pl = per.add_parser("list", help="list people")
    pl.add_argument("--role")
    pl.add_argument("--q", help="part of a name or e-mail")
    pr = per.add_parser("remove", help="deactivate a person (never deleted) at once")
    pr.add_argument("id", type=int)
    imp = sub.add_parser(
        "import",
        help="import projects from a CSV file (as POST /api/v1/imports); the service must run",
    )
    imp.add_argument(
        "file",
        help="UTF-8 CSV: lg_code,business,target_go_live,vendor_id,"
        "switching_vendor and one column per task key",
    )
    sd = sub.add_parser(
        "seed", help="generate and import a realistic data set (the demo body by default)"
    )
    sd.add_argument(
        "--whole-country",
        action="store_true",
        help="every local body of the national list and its businesses (about 34,900 projects)",
    )
    sd.add_argument("--lg-code", action="append", help="a body to seed (repeatable)")
    sd.add_argument("--scale", type=float, default=1.0, help="the fraction to seed, 0-1")
    sd.add_argument("--limit", type=int, help="at most this many projects")
    sd.add_argument("--random-seed", type=int, default=2026, help="the same seed, the same data")
    sd.add_argument("--csv", help="also write the generated file here")
    tpl = group("template", "procedure templates")
    ta = tpl.add_parser("add", help="store a template version from a JSON file")
    ta.add_argument("file", help='{"id", "version", "name", "tasks": [...]}')
    tro = tpl.add_parser(
        "rollout",
        help="move every running project on one version to a newer one (the service must run)",
    )
    tro.add_argument("id", help="the template, e.g. mic-handbook")
    tro.add_argument("--from", dest="from_version", required=True, help="the version they are on")
    tro.add_argument("--to", dest="to_version", required=True, help="the newer version")
    tro.add_argument("--reason", required=True, help="recorded in each project's audit trail")
    tro.add_argument("--prefecture", help="only this prefecture's bodies (2 digits)")
    tro.add_argument("--lg-code", help="only this body")
    ven = group("vendor", "vendors")
    vc = ven.add_parser("create", help="register a vendor")
    vc.add_argument("--id", required=True)
    vc.add_argument("--name", required=True)
    return p


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number")
    return number


def _serve_on_uvloop(main: Coroutine[Any, Any, None]) -> None:
    """Run a long-lived service on uvloop: the same asyncio API, its loop in C. Under 50
    concurrent milestone writers, the pure-Python loop's own frames held the GIL in 8 % of
    the API's samples and 16 % of the worker's (py-spy); on uvloop, 2 % and 10 %."""
    try:
        import uvloop
    except ImportError:  # Windows: no uvloop, the standard loop
        asyncio.run(main)
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = get_settings()
    configure_logging(settings.log_json)
    cmd = args.command
    try:
        if cmd == "up":
            return asyncio.run(cmd_up(settings, args.workers))
        elif cmd == "worker":
            _serve_on_uvloop(cmd_worker(settings))
        elif cmd == "api":
            _serve_on_uvloop(cmd_api(settings))
        elif cmd == "db":
            upgrade_schema(settings.resolved_database_url)
            _out("schema is up to date")
        elif cmd == "temporal":
            asyncio.run(cmd_temporal_setup(settings))
        elif cmd == "readmodel":
            asyncio.run(cmd_rebuild(settings))
        elif cmd == "token":
            token_commands = {
                "create": cmd_token_create,
                "list": cmd_token_list,
                "revoke": cmd_token_revoke,
            }
            return token_commands[args.token_command](settings, args)
        elif cmd == "person":
            person_commands = {
                "add": cmd_person_add,
                "list": cmd_person_list,
                "remove": cmd_person_remove,
            }
            return person_commands[args.person_command](settings, args)
        elif cmd == "vendor":
            return cmd_vendor_create(settings, args)
        elif cmd == "template":
            template_commands = {"add": cmd_template_add, "rollout": cmd_template_rollout}
            return template_commands[args.template_command](settings, args)
        elif cmd == "import":
            return cmd_import(settings, args)
        elif cmd == "seed":
            return cmd_seed(settings, args)
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
