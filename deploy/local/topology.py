"""`make up` / `make down` / `make status` / `make logs`: the real topology on this machine.

    python -m deploy.local.topology up [--gateway-port 8000] [--free-ports]
    python -m deploy.local.topology down | status | logs [-f] [NAME]
    python -m deploy.local.topology stop NAME | start NAME      (one process, e.g. core-web)

Every service that exists (services/<name>/wsgi.py) runs as two processes: `<name>-web` (gunicorn
on the port of the route table) and `<name>-background` (outbox relay, consumers, periodic jobs);
then the worker(s) and the scheduler when their packages exist, and nginx in front on one port,
configured by gateway.render from the same route table. Each service has its own database:
PostgreSQL when `TASKHUB_UP_POSTGRES_URL` (an admin URL; databases `taskhub_<service>` are
created when missing) or `<SERVICE>_DATABASE_URL` is given, else a SQLite file under run/data.

The processes run under supervisord (deploy/local/supervision.py, its configuration written to
run/supervisord.conf from the plan below): it restarts whatever dies (with a back-off when a process
keeps failing to start), writes each one's output to run/logs/<name>.log, and `down` has it stop
them in order (gateway first) before it exits itself. The worker(s) and the scheduler serve their
/metrics on ports of their own (`make status` lists them; TASKHUB_METRICS_PORT).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import xmlrpc.client as xmlrpc_client
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from shared.config import REPO_ROOT
from shared.routes import SERVICES, route_of

from . import supervision

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
READY_TIMEOUT_S = 90.0
# supervisord stops the programs one priority after another, each within its stopwaitsecs
SHUTDOWN_TIMEOUT_S = 180.0
# /metrics of the processes without a web app: the scheduler on the base port, worker-N on base + N
# (TASKHUB_UP_METRICS_PORT moves them all, e.g. away from a node exporter's 9100)
METRICS_BASE_PORT = 9100


@dataclass
class Proc:
    name: str  # core-web, core-background, worker-1, scheduler, gateway
    kind: str  # web | background | worker | scheduler | gateway
    argv: list[str]
    env: dict[str, str]  # on top of the environment `up` ran in
    ready_url: str | None = None
    pid: int | None = None  # as supervisord last reported it (a restarted process has a new one)


# --------------------------------------------------------------------------------------------
# What exists


def present_services(root: Path = REPO_ROOT, only: str | None = None) -> list[str]:
    """Services with a wsgi.py, in route-table order; `only` ("core,monitoring") narrows them."""
    wanted = {name.strip() for name in only.split(",")} if only else set(SERVICES)
    return [name for name in SERVICES if name in wanted and (root / "services" / name / "wsgi.py").exists()]


def has_worker(root: Path = REPO_ROOT) -> bool:
    return (root / "services" / "worker" / "__main__.py").exists()


def has_scheduler(root: Path = REPO_ROOT) -> bool:
    return (root / "services" / "scheduling" / "scheduler.py").exists()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def nginx_binary() -> str:
    found = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.path.exists(p)), None)
    if not found:
        raise SystemExit("nginx is not installed (apt-get install -y nginx)")
    return found


# --------------------------------------------------------------------------------------------
# Databases


def database_urls(services: Iterable[str], run_dir: Path, env: Mapping[str, str]) -> dict[str, str]:
    admin = env.get("TASKHUB_UP_POSTGRES_URL")
    prefix = env.get("TASKHUB_UP_DB_PREFIX", "taskhub_")
    urls = {}
    for service in services:
        given = env.get(f"{service.upper()}_DATABASE_URL")
        if given:
            urls[service] = given
        elif admin:
            urls[service] = f"{admin.rsplit('/', 1)[0]}/{prefix}{service}"
        else:
            urls[service] = f"sqlite:///{run_dir / 'data' / f'{service}.db'}"
    return urls


def ensure_databases(urls: Iterable[str]) -> None:
    """CREATE DATABASE for each PostgreSQL URL whose database does not exist yet."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from shared.db import normalize_url

    for raw in urls:
        url = make_url(normalize_url(raw))
        if not url.drivername.startswith("postgresql"):
            continue
        admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                exists = conn.execute(
                    text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": url.database}
                ).first()
                if not exists:
                    conn.execute(text(f'CREATE DATABASE "{url.database}"'))
        finally:
            admin.dispose()


# --------------------------------------------------------------------------------------------
# The plan


@dataclass
class Layout:
    run_dir: Path

    @property
    def state(self) -> Path:
        return self.run_dir / "topology.json"

    @property
    def logs(self) -> Path:
        return self.run_dir / "logs"

    @property
    def nginx(self) -> Path:
        return self.run_dir / "nginx"

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"


def shared_env(layout: Layout, urls: Mapping[str, str], ports: Mapping[str, int]) -> dict[str, str]:
    from shared.embedded_secret import dev_secret

    env = {
        "PYTHONPATH": str(REPO_ROOT),
        "JWT_SECRET": os.environ.get("JWT_SECRET") or dev_secret(),
        "AMQP_URL": os.environ.get("AMQP_URL") or DEFAULT_AMQP_URL,
        "AMQP_PREFIX": os.environ.get("AMQP_PREFIX", "taskhub."),
        "TASKHUB_DATA_DIR": str(layout.run_dir / "data"),
        "PYTHONUNBUFFERED": "1",
        "TASKHUB_AUTO_MIGRATE": "false",  # `up` ran every migration before starting anything
    }
    env.update({f"{service.upper()}_DATABASE_URL": url for service, url in urls.items()})
    # Internal calls (the worker saving checkpoints, scheduling creating tasks in core) go straight
    # to the service, not through the public gateway and its per-client rate limit.
    for service, variable in (("persistence", "TASKHUB_PERSISTENCE_URL"), ("core", "TASKHUB_CORE_URL")):
        if service in ports:
            env[variable] = f"http://127.0.0.1:{ports[service]}"
    return env


def metrics_ports(workers: int, free_ports: bool, base: int = METRICS_BASE_PORT) -> dict[str, int]:
    """The /metrics port of each process that has no web app (the services' figures are on their
    web port, background processes included: they share its metrics folder)."""
    names = [f"worker-{index}" for index in range(1, workers + 1)] if has_worker() else []
    names += ["scheduler"] if has_scheduler() else []
    if free_ports:
        return {name: free_port() for name in names}
    return {name: base + (int(name.split("-")[1]) if "-" in name else 0) for name in names}


def _with_metrics(env: Mapping[str, str], name: str, ports: Mapping[str, int]) -> dict[str, str]:
    if name not in ports:
        return dict(env)
    return {**env, "TASKHUB_METRICS_PORT": str(ports[name]), "TASKHUB_METRICS_HOST": "127.0.0.1"}


def plan(
    layout: Layout,
    gateway_port: int,
    ports: Mapping[str, int],
    env: Mapping[str, str],
    metrics: Mapping[str, int] | None = None,
) -> list[Proc]:
    python = sys.executable
    metrics = metrics or {}
    procs: list[Proc] = []
    for service, port in ports.items():
        metrics_dir = layout.run_dir / "prometheus" / service
        service_env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
        gunicorn = [python, "-m", "gunicorn", "-c", str(REPO_ROOT / "deploy" / "gunicorn_conf.py")]
        procs.append(
            Proc(
                f"{service}-web",
                "web",
                [*gunicorn, "--bind", f"127.0.0.1:{port}", f"services.{service}.wsgi:app"],
                {**service_env, "WEB_CONCURRENCY": env["WEB_CONCURRENCY"]},
                ready_url=f"http://127.0.0.1:{port}/readyz",
            )
        )
        procs.append(
            Proc(
                f"{service}-background",
                "background",
                [python, "-m", "shared.run_service", service, "background"],
                service_env,
            )
        )
    if has_worker():
        for index in range(1, int(env.get("TASKHUB_UP_WORKERS", "1")) + 1):
            name = f"worker-{index}"
            procs.append(
                Proc(name, "worker", [python, "-m", "services.worker"], _with_metrics(env, name, metrics))
            )
    if has_scheduler():
        scheduler_env = _with_metrics(env, "scheduler", metrics)
        procs.append(
            Proc("scheduler", "scheduler", [python, "-m", "services.scheduling.scheduler"], scheduler_env)
        )
    procs.append(
        Proc(
            "gateway",
            "gateway",
            [
                nginx_binary(),
                "-p",
                str(layout.nginx),
                "-c",
                str(layout.nginx / "nginx.conf"),
                "-e",
                str(layout.nginx / "error.log"),
            ],
            {},
            ready_url=f"http://127.0.0.1:{gateway_port}/healthz",
        )
    )
    return procs


def render_gateway(layout: Layout, gateway_port: int, ports: Mapping[str, int]) -> None:
    from gateway.render import GatewayConfig, render

    (layout.nginx / "temp").mkdir(parents=True, exist_ok=True)
    config = GatewayConfig(
        listen=f"127.0.0.1:{gateway_port}",
        upstreams={service: [f"127.0.0.1:{port}"] for service, port in ports.items()},
        prefix_dir=layout.nginx,
        rate=os.environ.get("GATEWAY_RATE_LIMIT", "100r/s"),
        burst=int(os.environ.get("GATEWAY_RATE_BURST", "200")),
        brand_rate=os.environ.get("GATEWAY_BRAND_RATE_LIMIT", "300r/s"),
        brand_burst=int(os.environ.get("GATEWAY_BRAND_RATE_BURST", "600")),
        read_timeout_s=int(os.environ.get("GATEWAY_READ_TIMEOUT", "60")),
    )
    (layout.nginx / "nginx.conf").write_text(render(config))


# --------------------------------------------------------------------------------------------
# Processes: supervisord and what it reports


def _start_time(pid: int) -> str | None:
    """Field 22 of /proc/<pid>/stat, or None if the pid is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] == "Z" else fields[19]


def supervisor_alive(meta: Mapping[str, Any]) -> bool:
    """The supervisord of this state file still runs (a reused pid is not ours: its start time)."""
    daemon = meta.get("supervisord") or {}
    return bool(daemon.get("pid")) and _start_time(daemon["pid"]) == daemon.get("started")


def start_supervisor(layout: Layout, procs: list[Proc], env: Mapping[str, str]) -> dict[str, Any]:
    """Write run/supervisord.conf from the plan and start supervisord, detached in its own session
    (so that every process it runs is in that session too: `down` checks nothing is left there)."""
    programs = [
        Proc(p.name, p.kind, p.argv, {k: v for k, v in p.env.items() if env.get(k) != v}) for p in procs
    ]
    conf = layout.run_dir / "supervisord.conf"
    conf.write_text(supervision.config(layout.run_dir, programs))
    supervision.socket_path(layout.run_dir).unlink(missing_ok=True)
    with open(layout.log("supervisord-console"), "ab") as console:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "supervisor.supervisord", "-c", str(conf)],
            env={**os.environ, **env},  # every program's shared environment, secret included
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=console,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return {"pid": daemon.pid, "started": _start_time(daemon.pid)}


def supervised(layout: Layout) -> dict[str, dict[str, Any]]:
    """supervisord's view of every program, {} while its socket does not answer."""
    try:
        return supervision.processes(layout.run_dir)
    except (OSError, xmlrpc_client.Fault, xmlrpc_client.ProtocolError):
        return {}


def refresh_pids(layout: Layout, procs: list[Proc]) -> None:
    states = supervised(layout)
    for proc in procs:
        proc.pid = (states.get(proc.name) or {}).get("pid") or None


def stop_supervisor(layout: Layout, meta: Mapping[str, Any]) -> None:
    """supervisord stops every program (gateway first, web last) and exits; then anything left in
    its session (a child that escaped its process group) is killed."""
    daemon = meta.get("supervisord") or {}
    if supervisor_alive(meta):
        with contextlib.suppress(OSError, xmlrpc_client.Fault, xmlrpc_client.ProtocolError):
            supervision.control(layout.run_dir).shutdown()
        deadline = time.monotonic() + SHUTDOWN_TIMEOUT_S
        while time.monotonic() < deadline and supervisor_alive(meta):
            time.sleep(0.2)
    if daemon.get("pid"):
        for pid in session_members(daemon["pid"]):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def session_members(session: int) -> list[int]:
    """Live processes of a session (zombies excluded: they are gone, waiting to be reaped)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getsid(int(entry.name)) == session and _start_time(int(entry.name)):
                members.append(int(entry.name))
        except (ProcessLookupError, PermissionError):
            continue
    return members


def readiness_detail(url: str) -> str:
    """What a /readyz says (its checks), for a start-up that timed out."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.read().decode(errors="replace")[:200]
    except urllib.error.HTTPError as error:
        return f"{error.code} {error.read().decode(errors='replace')[:200]}"
    except (urllib.error.URLError, OSError) as error:
        return repr(error)


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def wait_ready(layout: Layout, procs: list[Proc], timeout: float = READY_TIMEOUT_S) -> None:
    """Until supervisord runs every process and each that has a readiness URL answers it; a process
    that cannot start (FATAL after its retries) or a supervisord that died fails at once."""
    deadline = time.monotonic() + timeout
    meta, _ = load(layout)
    pending = [p for p in procs if p.ready_url]
    while True:
        if not supervisor_alive(meta):
            raise RuntimeError(f"supervisord exited:\n{tail(layout.log('supervisord'))}")
        states = supervised(layout)
        failed = [p for p in procs if (states.get(p.name) or {}).get("statename") in ("FATAL", "EXITED")]
        if failed:
            raise RuntimeError(f"{failed[0].name} could not start:\n{tail(layout.log(failed[0].name))}")
        running = states and all((states.get(p.name) or {}).get("statename") == "RUNNING" for p in procs)
        pending = [p for p in pending if not http_ok(p.ready_url or "")]
        if running and not pending:
            return
        if time.monotonic() > deadline:
            details = "\n".join(f"  {p.name}: {readiness_detail(p.ready_url or '')}" for p in pending)
            starting = [n for n, info in states.items() if info.get("statename") != "RUNNING"]
            raise RuntimeError(f"not ready within {timeout:.0f}s (not running: {starting}):\n{details}")
        time.sleep(0.2)


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# --------------------------------------------------------------------------------------------
# State


def save(layout: Layout, meta: dict[str, object], procs: list[Proc]) -> None:
    layout.run_dir.mkdir(parents=True, exist_ok=True)
    layout.state.write_text(json.dumps({**meta, "processes": [asdict(p) for p in procs]}, indent=2))
    layout.state.chmod(0o600)  # it holds the JWT secret of the children's environment


def load(layout: Layout) -> tuple[dict[str, Any], list[Proc]]:
    if not layout.state.exists():
        return {}, []
    raw = json.loads(layout.state.read_text())
    procs = [Proc(**p) for p in raw.pop("processes")]
    return raw, procs


# --------------------------------------------------------------------------------------------
# Commands


def preflight(amqp_url: str) -> None:
    """Fail in a second with a clear message rather than after the readiness timeout."""
    nginx_binary()
    parsed = urllib.parse.urlsplit(amqp_url)
    try:
        socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 5672), timeout=3).close()
    except OSError as error:
        raise SystemExit(
            f"RabbitMQ is not reachable at {parsed.hostname}:{parsed.port or 5672} ({error})"
        ) from None


def up(layout: Layout, gateway_port: int, free_ports: bool) -> None:
    meta, procs = load(layout)
    if supervisor_alive(meta):
        raise SystemExit(f"already up (gateway on port {meta.get('gateway_port')}); `make down` first")
    preflight(os.environ.get("AMQP_URL") or DEFAULT_AMQP_URL)
    services = present_services(only=os.environ.get("TASKHUB_UP_SERVICES"))
    ports = {s: free_port() if free_ports else route_of(s).default_port for s in services}
    if gateway_port == 0:
        gateway_port = free_port()
    urls = database_urls(services, layout.run_dir, os.environ)
    ensure_databases(urls.values())
    (layout.run_dir / "data").mkdir(parents=True, exist_ok=True)
    env = shared_env(layout, urls, ports)
    env["WEB_CONCURRENCY"] = os.environ.get("WEB_CONCURRENCY", "2")
    migrate(layout, services, env)
    for service in services:  # multiprocess metric files of a previous run would be summed in
        metrics_dir = layout.run_dir / "prometheus" / service
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
    render_gateway(layout, gateway_port, ports)
    # plan() reads the worker count from the environment it is given (the shared one lacked it, so
    # TASKHUB_UP_WORKERS was ignored and one worker ran)
    env["TASKHUB_UP_WORKERS"] = os.environ.get("TASKHUB_UP_WORKERS", "1")
    base = int(os.environ.get("TASKHUB_UP_METRICS_PORT", str(METRICS_BASE_PORT)))
    metrics = metrics_ports(int(env["TASKHUB_UP_WORKERS"]), free_ports, base)
    procs = plan(layout, gateway_port, ports, env, metrics)
    meta = {"gateway_port": gateway_port, "ports": ports, "metrics_ports": metrics, "databases": urls}
    try:
        meta["supervisord"] = start_supervisor(layout, procs, env)
        save(layout, meta, procs)
        wait_ready(layout, procs)
    except (RuntimeError, OSError) as error:
        stop_supervisor(layout, meta)
        layout.state.unlink(missing_ok=True)
        raise SystemExit(f"make up failed: {error}") from None
    refresh_pids(layout, procs)
    save(layout, meta, procs)
    print(f"taskhub is up: http://127.0.0.1:{gateway_port}/tasks/  ({', '.join(p.name for p in procs)})")
    print(f"supervised by supervisord; logs: {layout.logs}/   token: make token   stop: make down")


def migrate(layout: Layout, services: list[str], env: dict[str, str]) -> None:
    """Every service's Alembic history to head, in parallel, before anything serves."""
    layout.logs.mkdir(parents=True, exist_ok=True)
    running = []
    for service in services:
        log = open(layout.log(f"{service}-migrate"), "ab")  # noqa: SIM115 - closed below
        command = [sys.executable, "-m", "shared.migrations", service, "upgrade"]
        child = subprocess.Popen(
            command, env={**os.environ, **env}, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT
        )
        running.append((service, child, log))
    failed = []
    for service, child, log in running:
        if child.wait(timeout=120) != 0:
            failed.append(service)
        log.close()
    if failed:
        details = "\n".join(tail(layout.log(f"{s}-migrate"), 15) for s in failed)
        raise SystemExit(f"migrations failed for {', '.join(failed)}:\n{details}")


def down(layout: Layout) -> None:
    meta, procs = load(layout)
    if not meta:
        print("nothing is up")
        return
    stop_supervisor(layout, meta)
    layout.state.unlink(missing_ok=True)
    print(f"stopped {len(procs)} processes and supervisord")


def status(layout: Layout) -> int:
    meta, procs = load(layout)
    if not meta:
        print("nothing is up")
        return 1
    if not supervisor_alive(meta):
        print("supervisord is not running: `make down`, then `make up`")
        return 1
    print(
        f"gateway: http://127.0.0.1:{meta.get('gateway_port')}/   supervisord pid {meta['supervisord']['pid']}"
    )
    states = supervised(layout)
    metrics = meta.get("metrics_ports") or {}
    healthy = True
    for proc in procs:
        info = states.get(proc.name) or {}
        state = str(info.get("statename", "UNKNOWN"))
        if state == "RUNNING" and proc.ready_url:
            state += ", ready" if http_ok(proc.ready_url) else ", NOT READY"
        healthy = healthy and state in ("RUNNING", "RUNNING, ready")
        extra = f"  /metrics on {metrics[proc.name]}" if proc.name in metrics else ""
        print(f"  {proc.name:24} pid {info.get('pid') or '-':>7}  {state}{extra}")
    return 0 if healthy else 1


def stop_one(layout: Layout, name: str) -> None:
    """Stop one process (supervisord will not restart it until `start`)."""
    meta, procs = load(layout)
    _named(procs, name)
    supervision.control(layout.run_dir).stopProcess(name, True)
    refresh_pids(layout, procs)
    save(layout, meta, procs)


def start_one(layout: Layout, name: str) -> None:
    meta, procs = load(layout)
    proc = _named(procs, name)
    if (supervised(layout).get(name) or {}).get("statename") != "RUNNING":
        supervision.control(layout.run_dir).startProcess(name, True)
    wait_ready(layout, [proc])
    refresh_pids(layout, procs)
    save(layout, meta, procs)


def _named(procs: list[Proc], name: str) -> Proc:
    for proc in procs:
        if proc.name == name:
            return proc
    raise SystemExit(f"no process {name!r}; known: {', '.join(p.name for p in procs)}")


def logs(layout: Layout, name: str | None, follow: bool) -> None:
    files = [layout.log(name)] if name else sorted(layout.logs.glob("*.log"))
    files = [f for f in files if f.exists()]
    if not files:
        print("no logs yet")
        return
    if follow:
        os.execvp("tail", ["tail", "-n", "20", "-F", *map(str, files)])
    for path in files:
        print(f"==> {path.name} <==\n{tail(path, 20)}\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument(
        "--run-dir", type=Path, default=Path(os.environ.get("TASKHUB_RUN_DIR", REPO_ROOT / "run"))
    )
    commands = parser.add_subparsers(dest="command", required=True)
    up_parser = commands.add_parser("up")
    up_parser.add_argument(
        "--gateway-port",
        type=int,
        default=int(os.environ.get("GATEWAY_PORT", "8000")),
        help="0 picks a free port",
    )
    up_parser.add_argument("--free-ports", action="store_true", help="free ports for the services too")
    commands.add_parser("down")
    commands.add_parser("status")
    logs_parser = commands.add_parser("logs")
    logs_parser.add_argument("name", nargs="?")
    logs_parser.add_argument("-f", "--follow", action="store_true")
    for command in ("stop", "start"):
        commands.add_parser(command).add_argument("name")
    args = parser.parse_args(argv)
    layout = Layout(args.run_dir.resolve())
    if args.command == "up":
        up(layout, args.gateway_port, args.free_ports)
    elif args.command == "down":
        down(layout)
    elif args.command == "status":
        sys.exit(status(layout))
    elif args.command == "logs":
        logs(layout, args.name, args.follow)
    elif args.command == "stop":
        stop_one(layout, args.name)
    elif args.command == "start":
        start_one(layout, args.name)


if __name__ == "__main__":
    main()
