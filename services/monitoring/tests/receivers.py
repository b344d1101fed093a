"""Local endpoints the notifier talks to in tests: an HTTP webhook receiver and an SMTP server
(aiosmtpd), each on a port the system picks."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller

from services.monitoring.alerts.channels import verify


@dataclass
class Received:
    body: bytes
    headers: dict[str, str]


def verify_signature(secret: str, received: Received) -> bool:
    return verify(secret, received.headers["X-Taskhub-Signature"], received.body)


@dataclass
class WebhookReceiver:
    url: str
    calls: list[Received] = field(default_factory=list)
    fail_first: int = 0  # answer 500 to this many calls first (to see the retries)
    redirect_to: str | None = None  # answer 302 to there
    trickle_seconds: float = 0.0  # answer one byte per this many seconds (a tarpit)
    done: threading.Event = field(default_factory=threading.Event)


@contextmanager
def webhook_receiver(fail_first: int = 0, **behaviour: Any) -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver(url="", fail_first=fail_first, **behaviour)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            receiver.calls.append(Received(body, dict(self.headers.items())))
            if receiver.trickle_seconds:
                try:
                    for byte in b"HTTP/1.1 204 No Content\r\n\r\n":
                        if receiver.done.wait(receiver.trickle_seconds):
                            return
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                except OSError:
                    return  # the client hung up: what the deadline is for
                return
            if receiver.redirect_to:
                self.send_response(302)
                self.send_header("Location", receiver.redirect_to)
                self.end_headers()
                return
            failing = len(receiver.calls) <= receiver.fail_first
            self.send_response(500 if failing else 204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/alerts"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.done.set()
        server.shutdown()
        server.server_close()


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's naming
        self.messages.append(envelope)
        return "250 OK"


def _free_port() -> int:
    # aiosmtpd's Controller checks readiness by connecting to its port, so it needs a real one
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def smtp_server() -> Iterator[tuple[int, _Inbox]]:
    inbox = _Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=_free_port())
    controller.start()
    try:
        yield controller.port, inbox
    finally:
        controller.stop()
