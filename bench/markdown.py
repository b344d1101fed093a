"""`python -m bench.markdown <results.json>`: the README's benchmark table from a results file."""

from __future__ import annotations

import json
import sys


def main() -> None:
    with open(sys.argv[1]) as results:
        body = json.load(results)
    env = body["environment"]
    print(
        f"Run {env['date']} on {env['machine']}; Python {env['python']}, {env['postgresql']}, "
        f"RabbitMQ {env['rabbitmq']}, {env['nginx']}; packages {env['packages']}.\n"
    )
    print("| figure | median | min | max | target |")
    print("|---|---|---|---|---|")
    for f in body["figures"]:
        verdict = {True: " ✅ met", False: " ❌ missed", None: ""}[f["meets_target"]]
        print(
            f"| {f['name']} | {f['median']:.2f} {f['unit']} | {f['min']:.2f} | {f['max']:.2f} | {f['target']}{verdict} |"
        )


if __name__ == "__main__":
    main()
