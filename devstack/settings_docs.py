"""Regenerate the settings table in README.md and local.settings.json.example from shared/config/settings.py specs().

    .venv/bin/python -m devstack.settings_docs

tests/test_settings.py fails when either is out of date, so run this after adding or changing a setting.
"""
from __future__ import annotations

import json

from shared.config.settings import specs

from .stack import ROOT, Stack

HOST_VALUES = {"FUNCTIONS_WORKER_RUNTIME": ("python", "Functions host: the language worker (always python)."),
               "AzureWebJobsStorage": ("UseDevelopmentStorage=true",
                                       "Functions host: storage for timer schedules and keys (Azurite locally).")}


def default_text(spec) -> str:
    return spec.default if spec.default is not None else "unset"


def example() -> dict:
    local = Stack().app_env()  # the make run stack on its default ports
    values = {k: v for k, (v, _) in HOST_VALUES.items()}
    meanings = {k: m for k, (_, m) in HOST_VALUES.items()}
    for spec in specs():
        values[spec.name] = local.get(spec.name, spec.default if spec.default is not None else "")
        meanings[spec.name] = f"[default: {default_text(spec)}] {spec.meaning}"
    return {"IsEncrypted": False,
            "_comment": "Copy to local.settings.json for `func start` or `make run`. Values: every app setting, set "
                        "for the local stack of `make run` (ports 10000, 8081, 8765) where it differs from the "
                        "default, else to the default; empty means unset. Meanings: each setting's default and "
                        "what it does.",
            "Values": values, "Meanings": meanings}


def table() -> str:
    rows = ["| Setting | Default | Meaning |", "|---|---|---|"]
    for spec in specs():
        default = f"`{spec.default}`" if spec.default is not None else "unset"
        rows.append(f"| `{spec.name}` | {default} | {spec.meaning.replace('|', '/')} |")
    return "\n".join(rows)


def main() -> None:
    (ROOT / "local.settings.json.example").write_text(json.dumps(example(), indent=2) + "\n")
    readme = (ROOT / "README.md").read_text()
    start = readme.index("| Setting | Default | Meaning |")
    end = readme.index("\n\n", start)
    (ROOT / "README.md").write_text(readme[:start] + table() + readme[end:])
    print("updated README.md and local.settings.json.example")


if __name__ == "__main__":
    main()
