"""gunicorn settings shared by `make up`, the Docker images and Kubernetes:
`gunicorn -c deploy/gunicorn_conf.py services.<service>.wsgi:app`.

Environment: `PORT` (8000) or `GUNICORN_BIND`, `WEB_CONCURRENCY` (processes, 2), `GUNICORN_THREADS` (4).
"""

import os

bind = os.environ.get("GUNICORN_BIND") or f"0.0.0.0:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# gthread keeps connections alive (sync workers close each one), so nginx's upstream keepalive works.
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
# Longer than the gateway's upstream keepalive_timeout (60 s): nginx closes idle connections first,
# so it never sends a request on a connection gunicorn is closing (a POST would then be a 502).
keepalive = 75
timeout = 60
graceful_timeout = 20
# The gateway refuses over-long request and header lines itself, in JSON (large_client_header_buffers
# 8000 bytes < these): gunicorn's own 400 page is not JSON, so it must never be the one to refuse.
limit_request_line = 8190
limit_request_field_size = 8190
limit_request_fields = 32768  # nginx counts bytes, not headers: let its byte limit decide
# The app logs every request itself (JSON, with the request id); gunicorn's own lines go to stderr.
accesslog = None
errorlog = "-"
# Heartbeat files on tmpfs: containers often run with a read-only root filesystem.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None


def child_exit(server, worker):
    """A dead worker's live gauges must not linger in the aggregated /metrics."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def on_starting(server):
    """prometheus_client needs the folder to exist; wiping it is the launcher's job (make up, or
    a fresh emptyDir per pod), since the service's background process may share it."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        os.makedirs(folder, exist_ok=True)
