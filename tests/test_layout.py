"""The layout of shared/ by stage, and imports that run one way between the stages.

The stages, from the bottom: `instants` (the one place that parses and formats instants and days), `config`
(settings, credentials, the feed table), then three that know nothing of each other: `graph` (the client),
`stores` (Cosmos DB and Blob storage) and `odata` (the query language); `derive` (what is computed from stored
rows), `collect` (a run and its days), `api` (the HTTP routes), and at the top the entry points of the
process (`cli`, `telemetry`). A module may import its own stage and the stages below it, never one above it
or beside it: a test that finds such an import fails, naming the file, the line and the stage it reached.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT / "shared"

# stage -> the stages it may import (besides itself)
BELOW: dict[str, frozenset[str]] = {}
_ORDER = [("instants", ()), ("config", ("instants",)),
          ("graph", ("config", "instants")), ("stores", ("config", "instants")), ("odata", ("config", "instants")),
          ("derive", ("stores", "odata", "config", "instants")),
          ("collect", ("derive", "graph", "stores", "config", "instants")),
          ("api", ("collect", "derive", "graph", "stores", "odata", "config", "instants"))]
for _stage, _below in _ORDER:
    BELOW[_stage] = frozenset(_below)
# Entry points of a process: they may import any stage; no stage imports them, nor does one the other.
TOP = ("cli", "telemetry")
_STAGES = frozenset(BELOW)
for _stage in TOP:
    BELOW[_stage] = _STAGES


def stage_of(module: str) -> str | None:
    """`shared.stores.ledger` -> `stores`; `shared.instants` -> `instants`; None outside shared or unknown."""
    parts = module.split(".")
    if parts[0] != "shared" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in BELOW else None


def module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path, root: Path) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in the file, the ones inside functions too."""
    module = module_name(path, root)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.append((node.lineno, target))
            # `from . import x` / `from shared import stores` name modules in the names
            if node.module is None or target in ("shared",):
                out += [(node.lineno, f"{target}.{alias.name}") for alias in node.names]
    return out


def violations(root: Path) -> list[str]:
    found = []
    shared = root / "shared"
    for path in sorted(shared.rglob("*.py")):
        module = module_name(path, root)
        if module == "shared":
            continue
        stage = stage_of(module)
        if stage is None:
            found.append(f"{path.relative_to(root)}: belongs to no stage ({', '.join(BELOW)})")
            continue
        for line, target in imports(path, root):
            if target == "azure.functions" or target.startswith("azure.functions."):
                found.append(f"{path.relative_to(root)}:{line}: imports azure.functions (shared/ never does)")
            other = stage_of(target)
            if other is None or other == stage:
                continue
            if other not in BELOW[stage]:
                direction = "beside" if stage not in BELOW[other] else "above"
                found.append(f"{path.relative_to(root)}:{line}: {stage} imports {target}, a stage {direction} it")
    return found


def test_every_module_of_shared_belongs_to_a_stage_and_imports_run_one_way():
    assert violations(ROOT) == []


def write(root: Path, name: str, text: str) -> None:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


@pytest.mark.parametrize("name, text, expected", [
    ("shared/stores/ledger.py", "from ..collect.day_shape import DayShape\n", "stores imports shared.collect.day_shape, a stage above it"),
    ("shared/graph/client.py", "def f():\n    from shared.stores import open_stores\n", "graph imports shared.stores, a stage beside it"),
    ("shared/config/feeds.py", "from ..api import http\n", "config imports shared.api, a stage above it"),
    ("shared/odata/sql.py", "from .. import stores\n", "odata imports shared.stores, a stage beside it"),
    ("shared/collector.py", "x = 1\n", "belongs to no stage"),
    ("shared/api/http.py", "import azure.functions as func\n", "imports azure.functions"),
    ("shared/telemetry.py", "from .cli import main\n", "telemetry imports shared.cli, a stage beside it"),
    ("shared/api/ops.py", "from ..cli import main\n", "api imports shared.cli, a stage above it"),
])
def test_an_import_that_runs_back_up_is_found(tmp_path, name, text, expected):
    write(tmp_path, "shared/__init__.py", "")
    for stage in BELOW:
        if stage not in TOP:
            write(tmp_path, f"shared/{stage}/__init__.py", "")
    write(tmp_path, name, text)
    found = violations(tmp_path)
    assert len(found) == 1 and expected in found[0], found


def test_imports_downwards_and_within_a_stage_are_allowed(tmp_path):
    write(tmp_path, "shared/__init__.py", "")
    write(tmp_path, "shared/instants.py", "import datetime\n")
    write(tmp_path, "shared/cli.py", "from .api import http\nfrom .collect import run\n")
    write(tmp_path, "shared/api/http.py", "from ..stores import clients\nfrom . import ops\nfrom ..instants import x\n")
    write(tmp_path, "shared/collect/run.py", "def f():\n    from ..derive.summaries import refresh\n")
    assert violations(tmp_path) == []
