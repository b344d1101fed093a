"""`python -m bench.markdown <results.json> [--match TEXT ...]`: a results file as the Markdown
table of the README and docs/benchmarks.md; `--match` keeps the figures whose name contains one
of the texts (`--match "e2e ratio" "our processes together"` for a summary)."""

from __future__ import annotations

import argparse
import json


def table(body: dict, matches: list[str] | None = None) -> str:
    env = body["environment"]
    lines = [
        f"Run {env['date']} on {env['machine']}; Python {env['python']}, {env['postgresql']}, "
        f"RabbitMQ {env['rabbitmq']}, {env['nginx']}; packages {env['packages']}"
        + (" (quick run: reduced sizes, not for reading)." if body.get("quick") else "."),
        "",
        "| figure | median | min | max | target |",
        "|---|---|---|---|---|",
    ]
    for f in body["figures"]:
        if matches and not any(m in f["name"] for m in matches):
            continue
        verdict = {True: " ✅ met", False: " ❌ missed", None: ""}[f["meets_target"]]
        if f["median"] is None:
            lines.append(f"| {f['name']} | — | — | — | {f['target']} |")
            continue
        lines.append(
            f"| {f['name']} | {f['median']:.2f} {f['unit']} | {f['min']:.2f} | {f['max']:.2f} | {f['target']}{verdict} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("results")
    parser.add_argument("--match", nargs="*", help="keep figures whose name contains one of these")
    args = parser.parse_args()
    with open(args.results) as results:
        print(table(json.load(results), args.match))


if __name__ == "__main__":
    main()
