"""Deleting what tests declared on the machine's RabbitMQ.

Every quorum queue holds open files in the broker; a test suite that leaves its queues behind
exhausts the broker's file descriptors (about a thousand by default) and the broker then stops
completing handshakes. Tests therefore delete their prefix's queues and exchanges when done.
AMQP cannot list queues, so this goes through `rabbitmqctl eval`, in batches."""

from __future__ import annotations

import os
import shutil
import subprocess

_ERLANG = """
Prefixes = [{prefixes}],
Match = fun(Name) -> lists:any(fun(P) -> binary:longest_common_prefix([Name, P]) =:= byte_size(P) end, Prefixes) end,
Qs = [Q || Q <- rabbit_amqqueue:list(), begin {{resource, _, queue, N}} = amqqueue:get_name(Q), Match(N) end],
[catch rabbit_amqqueue:delete(Q, false, false, <<"tests">>) || Q <- Qs],
XNames = [element(2, X) || X <- rabbit_exchange:list(), Match(element(4, element(2, X)))],
[catch rabbit_exchange:delete(R, false, <<"tests">>) || R <- XNames],
length(Qs).
"""


def rabbitmqctl(*args: str, node: str | None = None) -> list[str]:
    """The command for the test broker's node (`node`, else TEST_RABBITMQ_NODE when it is not
    the default one)."""
    node = node or os.environ.get("TEST_RABBITMQ_NODE")
    return ["rabbitmqctl", *(["-n", node] if node else []), *args]


def delete_prefixed(prefixes: list[str], node: str | None = None) -> None:
    """Best effort: a cleanup failure must not fail the test that used the broker."""
    if not prefixes or shutil.which("rabbitmqctl") is None:
        return
    quoted = ", ".join('<<"' + p.replace('"', "") + '">>' for p in prefixes)
    command = rabbitmqctl("eval", _ERLANG.format(prefixes=quoted), node=node)
    subprocess.run(command, capture_output=True, timeout=120, check=False)


_STALE = """
Stale = fun(Name) -> re:run(Name, "^(t|it)[0-9a-f]{8}\\\\.|^bench[0-9]+\\\\.") =/= nomatch end,
Qs = [Q || Q <- rabbit_amqqueue:list(), begin {resource, _, queue, N} = amqqueue:get_name(Q), Stale(N) end],
[catch rabbit_amqqueue:delete(Q, false, false, <<"tests">>) || Q <- Qs],
XNames = [element(2, X) || X <- rabbit_exchange:list(), Stale(element(4, element(2, X)))],
[catch rabbit_exchange:delete(R, false, <<"tests">>) || R <- XNames],
{length(Qs), length(XNames)}.
"""


def delete_stale() -> None:
    """What earlier test runs left behind (test prefixes only: `t<hex8>.`, `it<hex8>.`, `bench<n>.`)."""
    if shutil.which("rabbitmqctl") is not None:
        result = subprocess.run(
            rabbitmqctl("eval", _STALE), capture_output=True, text=True, timeout=300, check=False
        )
        print("stale test queues/exchanges deleted:", result.stdout.strip() or result.stderr.strip())


if __name__ == "__main__":
    delete_stale()
