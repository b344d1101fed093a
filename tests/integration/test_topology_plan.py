"""What `make up` decides before starting anything: which services exist, which database each one
gets, what every process is told. No server needed."""

from __future__ import annotations

from pathlib import Path

from deploy.local.topology import Layout, database_urls, plan, present_services, shared_env


def test_a_service_exists_once_its_wsgi_module_does(tmp_path: Path) -> None:
    (tmp_path / "services" / "core").mkdir(parents=True)
    (tmp_path / "services" / "core" / "wsgi.py").write_text("")
    (tmp_path / "services" / "monitoring").mkdir()  # being built: no wsgi.py yet
    assert present_services(tmp_path) == ["core"]
    assert present_services(tmp_path, only="monitoring") == []


def test_each_service_gets_its_own_database(tmp_path: Path) -> None:
    services = ["core", "scheduling"]
    assert database_urls(services, tmp_path, {}) == {
        "core": f"sqlite:///{tmp_path}/data/core.db",
        "scheduling": f"sqlite:///{tmp_path}/data/scheduling.db",
    }
    env = {
        "TASKHUB_UP_POSTGRES_URL": "postgresql+psycopg://postgres@db:5432/postgres",
        "TASKHUB_UP_DB_PREFIX": "t1_",
        "SCHEDULING_DATABASE_URL": "postgresql+psycopg://x@elsewhere/sched",
    }
    assert database_urls(services, tmp_path, env) == {
        "core": "postgresql+psycopg://postgres@db:5432/t1_core",
        "scheduling": "postgresql+psycopg://x@elsewhere/sched",  # a service's own URL wins
    }


def test_every_process_shares_the_secret_and_broker_and_reaches_services_directly(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("JWT_SECRET", "s" * 40)
    monkeypatch.setenv("AMQP_PREFIX", "p.")
    layout = Layout(tmp_path)
    ports = {"core": 9101, "persistence": 9103}
    env = shared_env(layout, {"core": "sqlite:///c.db", "persistence": "sqlite:///p.db"}, ports)
    env["WEB_CONCURRENCY"] = "1"
    assert env["TASKHUB_CORE_URL"] == "http://127.0.0.1:9101"
    assert env["TASKHUB_PERSISTENCE_URL"] == "http://127.0.0.1:9103"
    procs = plan(layout, 9000, ports, env)
    names = [p.name for p in procs]
    assert names[:4] == ["core-web", "core-background", "persistence-web", "persistence-background"]
    assert names[-1] == "gateway"
    for proc in procs[:-1]:
        assert proc.env["JWT_SECRET"] == "s" * 40 and proc.env["AMQP_PREFIX"] == "p."
    web = procs[0]
    assert "127.0.0.1:9101" in web.argv and web.ready_url == "http://127.0.0.1:9101/readyz"
    # web and background of a service write one metrics folder, scraped once
    assert web.env["PROMETHEUS_MULTIPROC_DIR"] == procs[1].env["PROMETHEUS_MULTIPROC_DIR"]


def test_supervisord_runs_the_plan_stops_the_gateway_first_and_never_sees_the_secret(tmp_path: Path) -> None:
    from deploy.local.supervision import config
    from deploy.local.topology import Proc

    procs = [
        Proc("core-web", "web", ["python", "-m", "gunicorn", "--bind", "127.0.0.1:1"], {"A": "50%"}),
        Proc("worker-1", "worker", ["python", "-m", "services.worker"], {"TASKHUB_METRICS_PORT": "9101"}),
        Proc("gateway", "gateway", ["nginx", "-c", "/x y/nginx.conf"], {}),
    ]
    text = config(tmp_path, procs)
    sections = {
        block.split("]", 1)[0]: dict(
            line.split("=", 1) for line in block.split("\n")[1:] if "=" in line and not line.startswith(";")
        )
        for block in text.split("\n[")[1:]
    }
    web, worker, gateway = (sections[f"program:{p.name}"] for p in procs)
    assert web["environment"] == 'A="50%%"'  # supervisord would expand a bare %
    assert gateway["command"] == "nginx -c '/x y/nginx.conf'" and "environment" not in gateway
    assert int(gateway["priority"]) > int(worker["priority"]) > int(web["priority"])  # stopped first
    assert all(s["autorestart"] == "true" and s["stopasgroup"] == "true" for s in (web, worker, gateway))
    assert int(worker["stopwaitsecs"]) > 25  # the worker's shutdown grace fits before SIGKILL
    assert worker["stdout_logfile"] == f"{tmp_path}/logs/worker-1.log"
    assert "JWT_SECRET" not in text


def test_the_worker_and_the_scheduler_get_their_own_metrics_port(tmp_path: Path, monkeypatch) -> None:
    from deploy.local.topology import has_scheduler, has_worker, metrics_ports

    monkeypatch.setenv("JWT_SECRET", "s" * 40)
    ports = metrics_ports(2, free_ports=False, base=9300)
    assert ports == {
        **({"worker-1": 9301, "worker-2": 9302} if has_worker() else {}),
        **({"scheduler": 9300} if has_scheduler() else {}),
    }
    layout = Layout(tmp_path)
    env = {**shared_env(layout, {"core": "sqlite:///c.db"}, {"core": 9101}), "WEB_CONCURRENCY": "1"}
    env["TASKHUB_UP_WORKERS"] = "2"
    procs = {p.name: p for p in plan(layout, 9000, {"core": 9101}, env, ports)}
    for name, port in ports.items():
        assert procs[name].env["TASKHUB_METRICS_PORT"] == str(port)
        assert procs[name].env["TASKHUB_METRICS_HOST"] == "127.0.0.1"  # this machine only
    assert "TASKHUB_METRICS_PORT" not in procs["core-web"].env  # its figures are on its web port
