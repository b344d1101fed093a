"""Render the nginx gateway configuration from the one route table (shared/routes.py).

    python -m gateway.render --out run/nginx/nginx.conf --listen 127.0.0.1:8000 \\
        --upstream core=127.0.0.1:8101 [--upstream monitoring=...] [--prefix-dir run/nginx]
    python -m gateway.render --k8s          (the Kubernetes ConfigMap; --container: docker compose)

`python -m deploy.generate` writes both of those into deploy/ (a test checks they are current).

Nothing here spells a URL prefix: every `location` comes from ROUTES. A route whose service has no
upstream (not deployed on this machine yet) answers a JSON 503 instead of falling through to a
shorter prefix, so `/tasks/monitoring/...` never reaches core by accident.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from shared.config import REPO_ROOT
from shared.errors import HTTP_CODES
from shared.routes import ROUTES, SERVICES, STATIC_SITES, StaticSite

# Gateway-made errors, in the platform's shape: the error codes are shared/errors.py's, the
# statuses only nginx answers add theirs. 502 and 503 both mean "the service behind this prefix
# cannot answer now, try again": one code for clients to handle.
NGINX_ONLY_CODES = {
    408: "REQUEST_TIMEOUT",
    414: "URI_TOO_LONG",
    494: "HEADERS_TOO_LARGE",  # a header line or all headers over large_client_header_buffers
    501: "NOT_IMPLEMENTED",
    505: "HTTP_VERSION_NOT_SUPPORTED",
}
ERROR_CODES = {**HTTP_CODES, **NGINX_ONLY_CODES, 502: HTTP_CODES[503]}
GATEWAY_DETAILS: dict[int, str] = {
    400: "The request could not be parsed.",
    404: "No service serves this path.",
    405: "This method is not allowed here.",
    408: "The request was not received in time.",
    413: "The request body is larger than the limit.",
    414: "The request URI is too long.",
    429: "Too many requests from this client or brand; slow down.",
    494: "A request header, or all of them together, is too large.",  # nginx answers it as 400
    500: "The gateway failed to handle the request.",
    501: "This Transfer-Encoding or method is not supported.",
    502: "The service behind this path is not answering; try again shortly.",
    503: "The service behind this path is unavailable; try again shortly.",
    504: "The service behind this path did not answer in time.",
    505: "Use HTTP/1.0 or HTTP/1.1.",
}
GATEWAY_ERRORS: dict[int, tuple[str, str]] = {
    status: (ERROR_CODES[status], detail) for status, detail in GATEWAY_DETAILS.items()
}
# The gateway's error answers are internal locations reached by URI, not named ones: a request
# whose request line could not be parsed (505) has no URI, and nginx cannot send it to a named one.
ERROR_PATH = "/_taskhub_gateway_error/"
# What the client sees for a status nginx uses internally only.
ANSWERED_AS = {494: 400}
# nginx's request line and header line limit. Below gunicorn's (deploy/gunicorn_conf.py:
# limit_request_line 8190), so an over-long request is refused here, in JSON, and never reaches
# gunicorn, whose own 400 is not JSON.
HEADER_BUFFER = "4 8000"
RETRY_AFTER = {429: 1, 502: 2, 503: 2}
# Forwarded headers from these peers are believed (the ingress controller, in Kubernetes).
PRIVATE_NETWORKS = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
SERVICE_PORT = 8000
# Where the gateway image keeps the static sites' files (deploy/docker/gateway.Dockerfile).
IMAGE_STATIC_ROOT = "/usr/share/taskhub"


@dataclass(frozen=True)
class GatewayConfig:
    listen: str
    upstreams: Mapping[str, Sequence[str]]  # service -> ["host:port", ...]
    prefix_dir: Path | None = None  # None: logs to stdout/stderr, temp files under /tmp (containers)
    rate: str = "100r/s"
    burst: int = 200
    # per brand (the X-Brand-ID header), whichever client sends it: docs/limits.md
    brand_rate: str = "300r/s"
    brand_burst: int = 600
    max_body: str = "1m"
    read_timeout_s: int = 60
    worker_processes: str = "1"
    behind_proxy: bool = False  # trust X-Forwarded-* / real client IP from PRIVATE_NETWORKS
    trusted_networks: Sequence[str] = field(default=PRIVATE_NETWORKS)
    # static site name -> folder of its files; None: the repository's own folders (this machine)
    static_roots: Mapping[str, str] | None = None


def _quoted(text: str) -> str:
    """An nginx single-quoted string (no `$`, so nothing is interpolated)."""
    assert "$" not in text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _error_location(status: int) -> str:
    code, detail = GATEWAY_ERRORS[status]
    body = json.dumps({"detail": detail, "error_code": code})
    lines = [
        f"    location = {ERROR_PATH}{status} {{",
        "        internal;",
        "        default_type application/json;",
        "        add_header X-Request-ID $taskhub_request_id always;",
    ]
    if status in RETRY_AFTER:
        lines.append(f"        add_header Retry-After {RETRY_AFTER[status]} always;")
    lines += [f"        return {ANSWERED_AS.get(status, status)} {_quoted(body)};", "    }"]
    return "\n".join(lines)


def _upstream_name(service: str) -> str:
    return f"taskhub_{service}"


def _proxy_location(path: str, service: str, config: GatewayConfig) -> str:
    # `= /tasks/monitoring` too: nginx would otherwise answer the path without its slash with its
    # own HTML 301; the service answers it (or says 404) in JSON instead.
    exact = path.rstrip("/")
    if service not in config.upstreams:
        # Declared in the route table but not running here: say so rather than fall through.
        return "\n".join(f"    location {m} {{\n        return 503;\n    }}" for m in (path, f"= {exact}"))
    return "\n".join(
        f"    location {m} {{\n"
        f"        limit_req zone=per_client burst={config.burst} nodelay;\n"
        f"        limit_req zone=per_brand burst={config.brand_burst} nodelay;\n"
        f"        proxy_pass http://{_upstream_name(service)};\n"
        "    }"
        for m in (path, f"= {exact}")
    )


def _static_location(site: StaticSite, config: GatewayConfig) -> str:
    """A static site's files, with their own headers (the console's CSP). Static files are not
    rate limited: a page load is a handful of them, and the API calls it makes are."""
    from console import HEADERS, MIME_TYPES

    roots = config.static_roots or {s.name: str(REPO_ROOT / s.directory) for s in STATIC_SITES}
    root = roots[site.name].rstrip("/") + "/"
    types = " ".join(f"{mime} {ext};" for ext, mime in MIME_TYPES.items())
    headers = "".join(f'        add_header {name} "{value}" always;\n' for name, value in HEADERS.items())
    return (
        f"    location = {site.prefix.rstrip('/')} {{\n"
        "        absolute_redirect off;\n"
        f"        return 301 {site.prefix};\n"
        "    }\n"
        f"    location {site.prefix} {{\n"
        f"        alias {root};\n"
        "        index index.html;\n"
        f"        types {{ {types} }}\n"
        "        default_type application/octet-stream;\n"
        "        absolute_redirect off;\n"
        # add_header here replaces the server's: the request id is repeated on purpose
        "        add_header X-Request-ID $taskhub_request_id always;\n"
        f"{headers}"
        "    }"
    )


def _forwarded_maps(config: GatewayConfig) -> str:
    if not config.behind_proxy:
        # We are the edge: what the client claims about proxies in front of us is not believed.
        return (
            "    map $scheme $taskhub_forwarded_proto { default $scheme; }\n"
            "    map $http_host $taskhub_forwarded_host { default $http_host; }\n"
            '    map $scheme $taskhub_forwarded_prefix { default ""; }\n'
        )
    trusted = "\n".join(f"    set_real_ip_from {network};" for network in config.trusted_networks)
    peers = " ".join(f"{network} 1;" for network in config.trusted_networks)
    # The X-Forwarded-* a client sends are believed only when the peer that connected (before
    # real_ip rewrote $remote_addr) is one of the trusted proxies; anyone else's are replaced.
    return (
        f"{trusted}\n"
        "    real_ip_header X-Forwarded-For;\n"
        "    real_ip_recursive on;\n"
        f"    geo $realip_remote_addr $taskhub_trusted_peer {{ default 0; {peers} }}\n"
        '    map "$taskhub_trusted_peer:$http_x_forwarded_proto" $taskhub_forwarded_proto {\n'
        '        "~^1:(?<fp>https?)$" $fp;\n'
        "        default $scheme;\n"
        "    }\n"
        '    map "$taskhub_trusted_peer:$http_x_forwarded_host" $taskhub_forwarded_host {\n'
        '        "~^1:(?<fh>[A-Za-z0-9.:\\[\\]-]+)$" $fh;\n'
        "        default $http_host;\n"
        "    }\n"
        '    map "$taskhub_trusted_peer:$http_x_forwarded_prefix" $taskhub_forwarded_prefix {\n'
        '        "~^1:(?<fx>/[A-Za-z0-9._/-]*)$" $fx;\n'
        '        default "";\n'
        "    }\n"
    )


def render(config: GatewayConfig) -> str:
    unknown = set(config.upstreams) - set(SERVICES)
    if unknown:
        raise ValueError(f"not in the route table: {sorted(unknown)}")
    for rate, burst in ((config.rate, config.burst), (config.brand_rate, config.brand_burst)):
        if not re.fullmatch(r"[1-9][0-9]*r/[sm]", rate) or burst < 0:
            raise ValueError(f"rate must look like 100r/s or 600r/m and burst be >= 0: {rate!r}, {burst}")
    pid: str | Path
    error_log: str | Path
    access_log: str | Path
    if config.prefix_dir is None:
        pid, error_log, access_log, temp = "/tmp/nginx.pid", "stderr", "/dev/stdout", Path("/tmp")
    else:
        prefix = config.prefix_dir.resolve()
        pid, error_log, access_log, temp = (
            prefix / "nginx.pid",
            prefix / "error.log",
            prefix / "access.log",
            prefix / "temp",
        )
    upstreams = "\n".join(
        f"    upstream {_upstream_name(service)} {{\n"
        + "".join(f"        server {server} max_fails=1 fail_timeout=2s;\n" for server in servers)
        + "        keepalive 32;\n"
        # below gunicorn's keep-alive (75 s), so nginx never reuses a connection gunicorn closed
        "        keepalive_timeout 60s;\n"
        "    }"
        for service, servers in sorted(config.upstreams.items())
    )
    locations = "\n".join(
        [_proxy_location(route.prefix, route.service, config) for route in ROUTES]
        + [_proxy_location(f"/docs/{service}/", service, config) for service in SERVICES]
        + [_static_location(site, config) for site in STATIC_SITES]
    )
    error_pages = "\n".join(f"    error_page {status} = {ERROR_PATH}{status};" for status in GATEWAY_ERRORS)
    error_locations = "\n".join(_error_location(status) for status in GATEWAY_ERRORS)
    return f"""# Generated by `python -m gateway.render` from shared/routes.py. Do not edit: re-render.
worker_processes {config.worker_processes};
daemon off;
pid {pid};
error_log {error_log} warn;

events {{
    worker_connections 1024;
}}

http {{
    client_body_temp_path {temp}/client_body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;

    default_type application/json;
    server_tokens off;
    sendfile on;
    tcp_nodelay on;

    # X-Request-ID: the client's when it is a safe token, else nginx's own 32 hex digits.
    map $http_x_request_id $taskhub_request_id {{
        "~^[A-Za-z0-9._:-]{{1,128}}$" $http_x_request_id;
        default $request_id;
    }}
{_forwarded_maps(config)}
    log_format taskhub escape=json '{{"time":"$time_iso8601","request_id":"$taskhub_request_id",'
        '"client":"$remote_addr","method":"$request_method","uri":"$request_uri","status":$status,'
        '"bytes":$body_bytes_sent,"duration_s":$request_time,"upstream":"$upstream_addr",'
        '"upstream_status":"$upstream_status","upstream_s":"$upstream_response_time"}}';
    access_log {access_log} taskhub;

    # Leaky buckets (reliability.md §4, docs/limits.md), one per client address and one per brand
    # (X-Brand-ID; requests without one are not counted there): beyond a burst, 429, never 503.
    limit_req_zone $binary_remote_addr zone=per_client:10m rate={config.rate};
    limit_req_zone $taskhub_brand zone=per_brand:10m rate={config.brand_rate};
    limit_req_status 429;
    limit_req_log_level warn;

    # The brand the request names, when it is a brand id at all (anything else is refused
    # by the services with a 400 and need not fill the zone).
    map $http_x_brand_id $taskhub_brand {{
        "~^-?[0-9]{{1,18}}$" $http_x_brand_id;
        default "";
    }}

    # Short client timeouts against slow-client attacks; the body limit answers a JSON 413.
    client_max_body_size {config.max_body};
    large_client_header_buffers {HEADER_BUFFER};
    client_header_timeout 10s;
    client_body_timeout 15s;
    send_timeout 30s;
    keepalive_timeout 65s;

    gzip on;
    gzip_types application/json application/problem+json text/plain text/css application/javascript;
    gzip_min_length 1024;
    gzip_proxied any;
    gzip_vary on;

    # Keepalive to the services: HTTP/1.1 and no "Connection: close" passed on.
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host $http_host;
    proxy_set_header X-Request-ID $taskhub_request_id;
    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Proto $taskhub_forwarded_proto;
    proxy_set_header X-Forwarded-Host $taskhub_forwarded_host;
    proxy_set_header X-Forwarded-Prefix $taskhub_forwarded_prefix;
    # The service echoes the id too; ours (the same value) is the one sent, exactly once.
    proxy_hide_header X-Request-ID;
    proxy_connect_timeout 3s;
    proxy_send_timeout 30s;
    proxy_read_timeout {config.read_timeout_s}s;
    # Only a failed connect or a timeout moves to another server; POST/PATCH are never replayed
    # (the flag that would allow it is left out), and at most one other server is tried.
    proxy_next_upstream error timeout;
    proxy_next_upstream_tries 2;
    proxy_next_upstream_timeout 10s;
    # A service's own errors are already JSON: only nginx's own are replaced below.
    proxy_intercept_errors off;

{upstreams}

    server {{
        listen {config.listen};
        add_header X-Request-ID $taskhub_request_id always;

{error_pages}

    location = /healthz {{
        default_type application/json;
        return 200 '{{"status":"ok","service":"gateway"}}';
    }}

{locations}

    location / {{
        return 404;
    }}

{error_locations}
    }}
}}
"""


def k8s_configmap(config_text: str, name: str = "gateway-nginx") -> str:
    """The gateway's ConfigMap, as YAML (a literal block keeps the file readable in a diff)."""
    body = "\n".join(("    " + line) if line else "" for line in config_text.splitlines())
    return (
        "# Generated by `python -m gateway.render --k8s` from shared/routes.py. Do not edit.\n"
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n"
        f"  name: {name}\n  labels:\n    app.kubernetes.io/name: gateway\n"
        f"data:\n  nginx.conf: |\n{body}\n"
    )


def k8s_config() -> GatewayConfig:
    """In the cluster every service of the route table is deployed, behind its Service name."""
    return GatewayConfig(
        listen="8080",
        upstreams={service: [f"{service}:{SERVICE_PORT}"] for service in SERVICES},
        worker_processes="auto",
        behind_proxy=True,
        static_roots={site.name: f"{IMAGE_STATIC_ROOT}/{site.name}" for site in STATIC_SITES},
    )


def container_config() -> GatewayConfig:
    """docker compose: the gateway is the edge, the services answer by their compose names."""
    return GatewayConfig(
        listen="8080",
        upstreams={service: [f"{service}:{SERVICE_PORT}"] for service in SERVICES},
        worker_processes="auto",
        static_roots={site.name: f"{IMAGE_STATIC_ROOT}/{site.name}" for site in STATIC_SITES},
    )


def _parse_upstreams(values: Sequence[str]) -> dict[str, list[str]]:
    upstreams: dict[str, list[str]] = {}
    for value in values:
        service, sep, server = value.partition("=")
        if not sep or not server:
            raise SystemExit(f"--upstream wants service=host:port, got {value!r}")
        upstreams.setdefault(service, []).append(server)
    return upstreams


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--out", help="file to write (default: stdout)")
    parser.add_argument("--k8s", action="store_true", help="the Kubernetes gateway ConfigMap")
    parser.add_argument("--container", action="store_true", help="nginx.conf for docker compose")
    parser.add_argument("--listen", default="127.0.0.1:8000")
    parser.add_argument("--upstream", action="append", default=[], metavar="SERVICE=HOST:PORT")
    parser.add_argument("--prefix-dir", type=Path, help="pid, temp files and logs (default: beside --out)")
    parser.add_argument("--rate", default="100r/s", help="per-client rate (limit_req_zone)")
    parser.add_argument("--burst", type=int, default=200)
    parser.add_argument("--brand-rate", default="300r/s", help="per-brand rate (X-Brand-ID)")
    parser.add_argument("--brand-burst", type=int, default=600)
    parser.add_argument("--read-timeout", type=int, default=60, help="seconds (proxy_read_timeout)")
    args = parser.parse_args(argv)
    if args.k8s:
        text = k8s_configmap(render(k8s_config()))
    elif args.container:
        text = render(container_config())
    else:
        prefix = args.prefix_dir or (Path(args.out).parent if args.out else Path("run/nginx"))
        text = render(
            GatewayConfig(
                listen=args.listen,
                upstreams=_parse_upstreams(args.upstream),
                prefix_dir=prefix,
                rate=args.rate,
                burst=args.burst,
                brand_rate=args.brand_rate,
                brand_burst=args.brand_burst,
                read_timeout_s=args.read_timeout,
            )
        )
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
