"""Offline checks of the infrastructure as code (infra/, azure.yaml): no az CLI, Bicep compiler or network needed.

1. Syntax: every .bicep file parses with pycep-parser, the parser checkov itself uses (so a file that passes here
   is also one checkov scans, rather than silently skips), and every module path resolves.
2. Security: checkov reports no failed check except those in infra/checkov-skips.txt, and every line there still
   matches a failure (the list cannot go stale). It runs once per session (about 10 s).
3. Contract between the code and the Bicep app settings, read from the parsed Bicep, against shared/settings.py
   SPECS as it is at test time: every setting the app reads is set by Bicep or has a safe default; Bicep sets no
   setting the app ignores (the host's own settings are in one allow list); secrets and local-only settings stay
   unset; the values Bicep sets by default pass the app's own validation; binding expressions (%NAME%) resolve;
   the Cosmos DB containers and partition keys are those of shared/schema.py.
Each check is a function returning a list of problems, so the tests that break a copy of infra/ can show that
the check fails.
"""
from __future__ import annotations

import fnmatch
import functools
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from shared.stores.schema import cosmos_containers
from shared.config.settings import SettingsError, load_settings, specs

ROOT = Path(__file__).resolve().parent.parent
INFRA = ROOT / "infra"
SKIPS_FILE = INFRA / "checkov-skips.txt"

# Settings the app reads that are deliberately NOT app settings in Azure, each with the reason.
LEFT_UNSET_IN_AZURE = {
    "COSMOS_KEY": "secret; Azure uses Entra ID (the identity has Cosmos DB Built-in Data Contributor)",
    "STORAGE_CONNECTION_STRING": "secret and local (Azurite); Azure uses STORAGE_ACCOUNT_URL with the identity",
    "GRAPH_STATIC_TOKEN": "local simulators only; refused unless GRAPH_ENDPOINT is a loopback address",
    "GRAPH_CLIENT_SECRET": "secret; Azure uses the managed identity (GRAPH_CREDENTIAL=managed_identity)",
    "GRAPH_CERTIFICATE_PATH": "certificate mode only; Azure uses the managed identity",
    "GRAPH_CERTIFICATE_PASSWORD": "secret; certificate mode only",
    "GRAPH_TENANT_ID": "client_secret / certificate modes only; a managed identity knows its tenant",
}

# Settings the Functions host (not the app) reads, which Bicep may set: one explicit list of patterns.
HOST_SETTINGS = (
    "AzureWebJobsStorage__*",                    # identity-based host storage: accountName, credential, clientId
    "AzureWebJobs.*.Disabled",                   # switching one function off from the portal
    "AzureWebJobsFeatureFlags",
    "WEBSITE_*",
    "PYTHON_*",
)
# Settings Flex Consumption rejects (the runtime is in functionAppConfig) or that would carry a key.
FORBIDDEN_IN_AZURE = {
    "FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION", "WEBSITE_RUN_FROM_PACKAGE",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING", "WEBSITE_CONTENTSHARE", "AzureWebJobsStorage",
    "APPINSIGHTS_INSTRUMENTATIONKEY",
}
# App settings whose value exists only once Azure has created something: a stand-in for validation.
RUNTIME_STAND_INS = {
    "COSMOS_ENDPOINT": "https://cosmos-example.documents.azure.com:443/",
    "STORAGE_ACCOUNT_URL": "https://stexample.blob.core.windows.net/",
    "GRAPH_CLIENT_ID": "00000000-0000-0000-0000-0000000000c1",
    "AZURE_CLIENT_ID": "00000000-0000-0000-0000-0000000000c1",
    "APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=00000000-0000-0000-0000-000000000000",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "ClientId=00000000-0000-0000-0000-0000000000c1;Authorization=AAD",
}
# App settings whose Bicep default deliberately differs from the code's default (none today).
AZURE_DEFAULT_DIFFERS: dict[str, str] = {}

GRAPH_APP_ROLES = {
    "CallRecords.Read.All": "45bbb07e-7321-4fd7-a8f6-3ff27e6a81c8",
    "CallRecord-PstnCalls.Read.All": "a2611786-80b3-417e-adaa-707d4261a5f0",
}
RUNTIME = "<known only at deployment>"


# ---- Parsing ----------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _parser():
    from pycep import BicepParser

    return BicepParser()


@functools.lru_cache(maxsize=256)
def _parse_text(text: str) -> dict:
    return _parser().parse(text=text)


def parse_bicep(path: Path) -> dict:
    return _parse_text(path.read_text(encoding="utf-8"))


def bicep_files(infra: Path) -> list[Path]:
    return sorted(infra.rglob("*.bicep"))


def _body(resource_or_module: dict) -> dict:
    """The object of a resource or module, under a condition or loop if it has one."""
    config = resource_or_module["config"]
    if isinstance(config, dict) and "config" in config and ("loop_type" in config or "condition" in config):
        return config["config"]
    return config


def syntax_problems(infra: Path) -> list[str]:
    problems = []
    files = bicep_files(infra)
    if not (infra / "main.bicep").exists():
        problems.append("infra/main.bicep is missing")
    for path in files:
        try:
            doc = parse_bicep(path)
        except Exception as exc:  # lark raises several exception types; any of them means "does not parse"
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            problems.append(f"{path.relative_to(infra)} does not parse: {first_line}")
            continue
        for name, module in doc.get("modules", {}).items():
            target = (path.parent / module["detail"]["path"]).resolve()
            if module.get("type") == "local" and not target.is_file():
                problems.append(f"{path.relative_to(infra)}: module {name} points at a missing file {target.name}")
    return problems


# ---- Resolving Bicep expressions (just enough for app settings and container definitions) ------------------

class Scope:
    """A parsed Bicep file, plus the values its parameters get from the module call that uses it."""

    def __init__(self, doc: dict, call_params: dict[str, tuple[object, "Scope"]] | None = None):
        self.doc = doc
        self.call_params = call_params or {}

    def lookup(self, name: str):
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_]\w*", name):
            return None
        if name in self.doc.get("variables", {}):
            return self.doc["variables"][name]["value"], self
        if name in self.doc.get("parameters", {}):
            if name in self.call_params:
                return self.call_params[name]
            param = self.doc["parameters"][name]
            if "default" in param:
                return param["default"], self
        return None

    def param_behind(self, expr) -> tuple[str, "Scope"] | None:
        """The parameter a value comes from, if it is a parameter or string(parameter), followed across modules."""
        if isinstance(expr, dict) and expr.get("function", {}).get("type") == "string":
            return self.param_behind(expr["function"]["parameters"]["value_to_convert"])
        if isinstance(expr, str) and expr in self.doc.get("variables", {}):
            return self.param_behind(self.doc["variables"][expr]["value"])
        if isinstance(expr, str) and expr in self.doc.get("parameters", {}):
            if expr in self.call_params:
                value, scope = self.call_params[expr]
                return scope.param_behind(value) or (expr, self)
            return expr, self
        return None


def object_entries(expr, scope: Scope) -> dict[str, tuple[object, Scope]]:
    """Key -> (value expression, scope) of an object expression: a literal, a name, or union(...) of those."""
    if isinstance(expr, str):
        found = scope.lookup(expr)
        if found is None:
            raise ValueError(f"cannot resolve {expr!r} to an object")
        return object_entries(*found)
    if isinstance(expr, dict) and set(expr) == {"function"} and expr["function"]["type"] == "union":
        merged: dict[str, tuple[object, Scope]] = {}
        for argument in expr["function"]["parameters"].values():
            merged.update(object_entries(argument, scope))
        return merged
    if isinstance(expr, dict) and not ({"function", "operator"} & set(expr)):
        return {key: (value, scope) for key, value in expr.items()}
    raise ValueError(f"cannot read an object from {json.dumps(expr)[:120]}")


def evaluate(expr, scope: Scope) -> str:
    """The string value an expression has with every parameter at its default, or RUNTIME."""
    if isinstance(expr, bool):
        return "true" if expr else "false"
    if isinstance(expr, int):
        return str(expr)
    if isinstance(expr, str):
        found = scope.lookup(expr)
        if found is not None:
            return evaluate(*found)

        def substitute(match: re.Match) -> str:
            inner = scope.lookup(match.group(1))
            return evaluate(*inner) if inner is not None else RUNTIME

        text = re.sub(r"\$\{([A-Za-z_]\w*)\}", substitute, expr)
        if RUNTIME in text or "${" in text:
            return RUNTIME
        return text.replace("\\'", "'")
    if isinstance(expr, dict) and expr.get("function", {}).get("type") == "string":
        return evaluate(expr["function"]["parameters"]["value_to_convert"], scope)
    return RUNTIME


def _module_scopes(infra: Path) -> list[tuple[Path, Scope]]:
    main_path = infra / "main.bicep"
    main = Scope(parse_bicep(main_path))
    scopes = [(main_path, main)]
    for module in main.doc.get("modules", {}).values():
        path = (main_path.parent / module["detail"]["path"]).resolve()
        params = _body(module).get("params", {})
        scopes.append((path, Scope(parse_bicep(path), {k: (v, main) for k, v in params.items()})))
    return scopes


def app_settings(infra: Path) -> dict[str, tuple[object, Scope]]:
    """Every app setting the Bicep gives the Function App: name -> (value expression, scope)."""
    found: list[dict[str, tuple[object, Scope]]] = []
    for _, scope in _module_scopes(infra):
        for resource in scope.doc.get("resources", {}).values():
            body = _body(resource)
            if resource["type"] == "Microsoft.Web/sites":
                settings = body.get("properties", {}).get("siteConfig", {}).get("appSettings")
                if isinstance(settings, dict) and settings.get("loop_type", {}).get("type") == "object":
                    found.append(object_entries(settings["loop_type"]["detail"]["object_name"], scope))
                elif isinstance(settings, list):
                    found.append({item["name"]: (item["value"], scope) for item in settings})
            elif resource["type"] == "Microsoft.Web/sites/config" and body.get("name") == "appsettings":
                found.append(object_entries(body["properties"], scope))
    if len(found) != 1:
        raise AssertionError(f"expected the app settings of exactly one Function App in infra/, found {len(found)}")
    return found[0]


def binding_settings(root: Path) -> set[str]:
    """%NAME% binding expressions in the function code: the host resolves them from app settings only."""
    names: set[str] = set()
    skip = {".venv", "node_modules", "tests", "infra", "devstack", ".devstack", ".git"}
    for path in root.rglob("*.py"):
        if skip & set(path.relative_to(root).parts):
            continue
        names.update(re.findall(r"""["']%([A-Za-z_][A-Za-z0-9_]*)%["']""", path.read_text(encoding="utf-8")))
    return names


def settings_env(settings: dict[str, tuple[object, Scope]]) -> tuple[dict[str, str], set[str]]:
    """The app's settings as Azure gets them with every parameter at its default (stand-ins for deployment-time
    values), and the names whose value is known only at deployment."""
    spec_names = {s.name for s in specs()}
    env, runtime = {}, set()
    for name, (expr, scope) in settings.items():
        if name not in spec_names:
            continue
        value = evaluate(expr, scope)
        if value == RUNTIME:
            runtime.add(name)
            value = RUNTIME_STAND_INS.get(name, RUNTIME)
        env[name] = value
    return env, runtime


def contract_problems(infra: Path, root: Path = ROOT) -> list[str]:
    try:
        settings = app_settings(infra)
    except (AssertionError, ValueError, KeyError) as exc:
        return [f"cannot read the app settings from the Bicep: {exc}"]
    problems = []
    by_name = {s.name: s for s in specs()}
    for name, spec in by_name.items():
        if name in LEFT_UNSET_IN_AZURE:
            if name in settings:
                problems.append(f"{name} is set by the Bicep but must stay unset in Azure: "
                                f"{LEFT_UNSET_IN_AZURE[name]}")
        elif name not in settings and spec.default is None:
            problems.append(f"{name} is read by the app, has no default, and the Bicep does not set it")
    for name in LEFT_UNSET_IN_AZURE:
        if name not in by_name:
            problems.append(f"LEFT_UNSET_IN_AZURE lists {name}, which the app no longer reads")
    for name in settings:
        if name in FORBIDDEN_IN_AZURE:
            problems.append(f"the Bicep sets {name}, which Flex Consumption rejects or which carries a key")
        elif name not in by_name and not any(fnmatch.fnmatchcase(name, p) for p in HOST_SETTINGS):
            problems.append(f"the Bicep sets {name}, which neither the app (shared/settings.py) nor the host reads")
    for name in sorted(binding_settings(root)):
        if name not in settings:
            problems.append(f"the function code binds %{name}%, which the host resolves from app settings only, "
                            f"and the Bicep does not set {name}")
    env, runtime = settings_env(settings)
    for name in sorted(runtime - set(RUNTIME_STAND_INS)):
        problems.append(f"{name} is known only at deployment: give it a stand-in in RUNTIME_STAND_INS")
    try:
        loaded = load_settings(env)
    except SettingsError as exc:
        problems.append(f"the app refuses the settings the Bicep gives it by default: {exc}")
    else:
        if loaded.graph_credential != "managed_identity" or loaded.cosmos_key or loaded.storage_connection_string:
            problems.append("Azure must use the managed identity for Graph, Cosmos DB and Blob storage")
        problems.extend(container_problems(infra, loaded))
    return problems


def container_problems(infra: Path, settings) -> list[str]:
    main = Scope(parse_bicep(infra / "main.bicep"))
    found = main.lookup("cosmosContainers")
    if found is None:
        return ["main.bicep has no cosmosContainers variable (the Cosmos DB containers to create)"]
    bicep = {evaluate(item["name"], main): item for item in found[0]}
    problems = []
    for container in cosmos_containers(settings):
        item = bicep.get(container.name)
        if item is None:
            problems.append(f"the Bicep does not create the Cosmos DB container {container.name}")
            continue
        key = evaluate(item["partitionKey"], main)
        if key != container.partition_key:
            problems.append(f"container {container.name}: partition key {key} in the Bicep, "
                            f"{container.partition_key} in shared/schema.py")
        paths = item["indexedPaths"]
        if isinstance(paths, str):  # a variable shared by several containers
            paths = main.lookup(paths)[0]
        if f"{container.partition_key}/?" not in paths:
            problems.append(f"container {container.name}: its partition key path is not indexed")
    return problems


# ---- 1. Syntax -------------------------------------------------------------------------------------------

def test_every_bicep_file_parses():
    files = bicep_files(INFRA)
    assert INFRA / "main.bicep" in files and len(files) >= 5
    assert syntax_problems(INFRA) == []


def test_a_broken_bicep_file_fails_the_syntax_check(tmp_path):
    copy = tmp_path / "infra"
    shutil.copytree(INFRA, copy)
    target = copy / "modules" / "storage.bicep"
    text = target.read_text()
    target.write_text(text.replace("allowBlobPublicAccess: false", "allowBlobPublicAccess: = false", 1))
    problems = syntax_problems(copy)
    assert len(problems) == 1 and "storage.bicep does not parse" in problems[0]


def test_a_module_pointing_at_a_missing_file_fails_the_syntax_check(tmp_path):
    copy = tmp_path / "infra"
    shutil.copytree(INFRA, copy)
    (copy / "modules" / "alerts.bicep").unlink()
    assert any("module alerts points at a missing file" in p for p in syntax_problems(copy))


def test_syntax_check_uses_the_parser_checkov_uses():
    # checkov pins its own pycep-parser; a file it cannot parse it skips without failing, so the syntax check
    # must use the same version for "parses" to mean "is scanned".
    pinned = [r for r in importlib.metadata.requires("checkov") or [] if r.replace(" ", "").startswith("pycep-parser")]
    assert pinned, "checkov no longer pins pycep-parser: revisit the syntax check"
    assert pinned[0].split("==")[-1].split(";")[0].strip() == importlib.metadata.version("pycep-parser")


# ---- 2. checkov ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Skip:
    check: str
    resource: str
    reason: str


def load_skips(path: Path = SKIPS_FILE) -> tuple[list[Skip], list[str]]:
    skips, problems = [], []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split(None, 2)
        if len(parts) < 3 or not re.fullmatch(r"CKV2?_[A-Z]+_\d+", parts[0]) or len(parts[2]) < 20:
            problems.append(f"{path.name}:{number}: expected 'CHECK_ID RESOURCE reason', got {line!r}")
            continue
        skips.append(Skip(*parts))
    duplicates = {(s.check, s.resource) for s in skips if skips.count(s) > 1}
    problems.extend(f"{path.name}: {c} {r} is listed twice" for c, r in duplicates)
    return skips, problems


def unlisted_failures(failed: list[dict], skips: list[Skip]) -> list[str]:
    allowed = {(s.check, s.resource) for s in skips}
    return [f"{f['check_id']} {f['resource']} ({f.get('file_path', '?')}): {f.get('check_name', '')}"
            for f in failed if (f["check_id"], f["resource"]) not in allowed]


def unused_skips(failed: list[dict], skips: list[Skip]) -> list[str]:
    seen = {(f["check_id"], f["resource"]) for f in failed}
    return [f"{s.check} {s.resource}" for s in skips if (s.check, s.resource) not in seen]


@pytest.fixture(scope="module")
def checkov_report() -> dict:
    exe = Path(sys.executable).parent / "checkov"
    if not exe.exists():
        pytest.fail(f"checkov is not installed next to {sys.executable}: run make setup (requirements-dev.txt)")
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "CKV_SKIP_PACKAGE_UPDATE_CHECK": "TRUE"}
    proc = subprocess.run(
        [str(exe), "-d", str(INFRA), "--framework", "bicep", "--quiet", "--compact", "-o", "json", "--skip-download"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    # checkov exits 1 when any check failed (the accepted ones included); anything else is a crash.
    assert proc.returncode in (0, 1), f"checkov exited {proc.returncode}: {proc.stderr[-2000:]}"
    report = json.loads(proc.stdout)
    if isinstance(report, list):
        report = next(r for r in report if r.get("check_type") == "bicep")
    return report


def test_checkov_scanned_every_file_without_a_parse_error(checkov_report):
    summary = checkov_report["summary"] if "summary" in checkov_report else checkov_report
    assert summary["parsing_errors"] == 0
    assert summary["resource_count"] >= 20


def test_checkov_finds_no_failed_check_outside_the_skip_list(checkov_report):
    skips, problems = load_skips()
    assert problems == []
    failed = checkov_report.get("results", {}).get("failed_checks", [])
    assert unlisted_failures(failed, skips) == []
    assert unused_skips(failed, skips) == [], "these skips no longer match a failed check: remove them"


def test_an_unlisted_failure_or_a_stale_skip_is_reported():
    skips = [Skip("CKV_AZURE_35", "Microsoft.Storage/storageAccounts.storage", "a reason long enough to count")]
    failed = [{"check_id": "CKV_AZURE_190", "resource": "Microsoft.Storage/storageAccounts.storage",
               "check_name": "Ensure that Storage blobs restrict public access", "file_path": "/modules/storage.bicep"}]
    assert unlisted_failures(failed, skips) == [
        "CKV_AZURE_190 Microsoft.Storage/storageAccounts.storage (/modules/storage.bicep): "
        "Ensure that Storage blobs restrict public access"]
    assert unused_skips(failed, skips) == ["CKV_AZURE_35 Microsoft.Storage/storageAccounts.storage"]


def test_a_skip_without_a_reason_is_refused(tmp_path):
    path = tmp_path / "skips.txt"
    path.write_text("# comment\nCKV_AZURE_35 Microsoft.Storage/storageAccounts.storage\n")
    assert load_skips(path)[1] and "expected 'CHECK_ID RESOURCE reason'" in load_skips(path)[1][0]


# ---- 3. The settings contract ------------------------------------------------------------------------------

def test_bicep_app_settings_match_what_the_code_reads():
    assert contract_problems(INFRA) == []


def test_the_settings_are_read_from_the_parsed_bicep():
    settings = app_settings(INFRA)
    assert {"COSMOS_ENDPOINT", "STORAGE_ACCOUNT_URL", "COLLECT_SCHEDULE", "AzureWebJobsStorage__credential",
            "APPLICATIONINSIGHTS_AUTHENTICATION_STRING"} <= set(settings)
    env, runtime = settings_env(settings)
    assert runtime == set(RUNTIME_STAND_INS)
    assert env["GRAPH_CREDENTIAL"] == "managed_identity" and env["COLLECT_SCHEDULE"] == "0 30 3 * * *"
    assert evaluate(*settings["AzureWebJobsStorage__credential"]) == "managedidentity"


def _copy_with(tmp_path, relative: str, old: str, new: str) -> Path:
    copy = tmp_path / "infra"
    shutil.copytree(INFRA, copy)
    target = copy / relative
    text = target.read_text()
    assert old in text, f"{old!r} not in {relative}"
    target.write_text(text.replace(old, new, 1))
    return copy


@pytest.mark.parametrize("line, named", [
    ("  COSMOS_ENDPOINT: cosmos.outputs.endpoint\n", "COSMOS_ENDPOINT is read by the app, has no default"),
    ("  STORAGE_ACCOUNT_URL: storage.outputs.blobEndpoint\n", "STORAGE_ACCOUNT_URL is read by the app"),
    # It has a default in settings.py, but the timer binding %COLLECT_TIMER_SCHEDULE% is resolved by the host.
    ("  COLLECT_TIMER_SCHEDULE: collectTimerSchedule\n", "binds %COLLECT_TIMER_SCHEDULE%"),
])
def test_removing_a_needed_setting_fails_the_contract(tmp_path, line, named):
    problems = contract_problems(_copy_with(tmp_path, "main.bicep", line, ""))
    assert any(named in p for p in problems), problems


@pytest.mark.parametrize("added, named", [
    ("  REPORT_COLOUR: 'blue'\n", "the Bicep sets REPORT_COLOUR, which neither the app"),
    ("  COSMOS_KEY: 'not-a-key'\n", "COSMOS_KEY is set by the Bicep but must stay unset"),
    ("  FUNCTIONS_WORKER_RUNTIME: 'python'\n", "FUNCTIONS_WORKER_RUNTIME, which Flex Consumption rejects"),
])
def test_setting_something_the_code_ignores_fails_the_contract(tmp_path, added, named):
    anchor = "  FEEDS: feeds\n"
    problems = contract_problems(_copy_with(tmp_path, "main.bicep", anchor, anchor + added))
    assert any(named in p for p in problems), problems


def test_an_invalid_default_value_fails_the_contract(tmp_path):
    copy = _copy_with(tmp_path, "main.bicep", "param collectSchedule string = '0 30 3 * * *'",
                      "param collectSchedule string = '0 30 3 * *'")
    assert any("COLLECT_SCHEDULE must be an NCRONTAB expression" in p for p in contract_problems(copy))


def test_a_wrong_partition_key_fails_the_contract(tmp_path):
    copy = _copy_with(tmp_path, "main.bicep", "    partitionKey: '/pk'\n", "    partitionKey: '/feed'\n")
    assert any("partition key /feed in the Bicep, /pk in shared/schema.py" in p for p in contract_problems(copy))


def test_host_settings_use_the_identity():
    settings = app_settings(INFRA)
    host = {name: evaluate(*value) for name, value in settings.items() if name.startswith("AzureWebJobsStorage")}
    assert set(host) == {"AzureWebJobsStorage__accountName", "AzureWebJobsStorage__credential",
                         "AzureWebJobsStorage__clientId"}
    assert host["AzureWebJobsStorage__credential"] == "managedidentity"
    assert settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"][0] == "ClientId=${identityClientId};Authorization=AAD"
    # The client id the host and the app use is the user-assigned identity's, from main.bicep's module call.
    for name in ("AzureWebJobsStorage__clientId", "GRAPH_CLIENT_ID", "AZURE_CLIENT_ID"):
        expr, scope = settings[name]
        if scope.call_params and expr in scope.call_params:
            expr = scope.call_params[expr][0]
        assert json.dumps(expr).count('"identity"') == 1 and '"clientId"' in json.dumps(expr), name


def test_bicep_defaults_equal_the_code_defaults():
    # Two places hold a default (settings.py and a Bicep parameter): they must agree unless listed on purpose.
    env, runtime = settings_env(app_settings(INFRA))
    by_name = {s.name: s for s in specs()}
    differ = {name: (value, by_name[name].default) for name, value in env.items()
              if name not in runtime and name not in AZURE_DEFAULT_DIFFERS
              and (value or None) != by_name[name].default}
    assert differ == {}


def test_time_budget_stays_under_the_function_timeout():
    hours, minutes, seconds = json.loads((ROOT / "host.json").read_text())["functionTimeout"].split(":")
    timeout = int(hours) * 3600 + int(minutes) * 60 + int(seconds)
    expr, scope = app_settings(INFRA)["TIME_BUDGET_SECONDS"]
    name, owner = scope.param_behind(expr)
    param = owner.doc["parameters"][name]
    maximum = next(d["argument"] for d in param["decorators"] if d["type"] == "max_value")
    assert param["default"] < timeout and maximum < timeout


def test_containers_index_exactly_what_the_code_declares():
    """shared/schema.py is the one definition of each container's indexing; the Bicep must match it, and the
    local emulator is created from it, so queries that work locally have their indexes in Azure."""
    from shared.stores.schema import cosmos_containers

    main = Scope(parse_bicep(INFRA / "main.bicep"))
    containers = {evaluate(c["name"], main): c for c in main.lookup("cosmosContainers")[0]}
    settings = load_settings({"COSMOS_ENDPOINT": "https://a.documents.azure.com", "STORAGE_ACCOUNT_URL":
                              "https://a.blob.core.windows.net"})
    def resolve(value):  # a variable reference or a literal list
        found = main.lookup(value) if isinstance(value, str) else None
        return found[0] if found is not None else value

    for definition in cosmos_containers(settings):
        bicep = containers[definition.name]
        paths, composites = resolve(bicep["indexedPaths"]), resolve(bicep["compositeIndexes"])
        assert sorted(paths) == sorted(definition.indexed_paths), definition.name
        assert [[(p["path"], p["order"]) for p in index] for index in composites] == \
            [list(index) for index in definition.composite_indexes], definition.name
    cosmos = (INFRA / "modules" / "cosmos.bicep").read_text()
    assert "path: '/*'" in cosmos and "EnableServerless" in cosmos and "disableLocalAuth: true" in cosmos


# ---- azd: parameters file, azure.yaml, the Graph grant hook -----------------------------------------------

def test_parameters_file_maps_to_real_parameters_with_the_same_defaults():
    main = parse_bicep(INFRA / "main.bicep")["parameters"]
    values = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert values["environmentName"]["value"] == "${AZURE_ENV_NAME}"
    assert values["location"]["value"] == "${AZURE_LOCATION}"
    for name, entry in values.items():
        assert name in main, f"main.parameters.json sets {name}, which main.bicep does not declare"
        match = re.fullmatch(r"\$\{([A-Z0-9_]+)(?:=(.*))?\}", entry["value"])
        assert match, f"{name}: expected ${{VAR}} or ${{VAR=default}}, got {entry['value']!r}"
        if match.group(2) is not None:
            default = main[name]["default"]
            default = str(default).lower() if isinstance(default, bool) else str(default)
            assert match.group(2) == default, f"{name}: default {match.group(2)!r} here, {default!r} in main.bicep"
    required = [n for n, p in main.items() if "default" not in p]
    assert set(required) <= set(values), "every parameter without a default must come from the azd environment"


def test_graph_app_roles_are_the_documented_ones():
    main = Scope(parse_bicep(INFRA / "main.bicep"))
    assert {key.strip("'"): value for key, value in main.lookup("graphAppRoleIds")[0].items()} == GRAPH_APP_ROLES
    allowed = next(d["argument"] for d in main.doc["parameters"]["graphAppRole"]["decorators"] if d["type"] == "allowed")
    assert set(allowed) == set(GRAPH_APP_ROLES) and main.doc["parameters"]["graphAppRole"]["default"] == "CallRecords.Read.All"
    assert {"AZURE_FUNCTION_IDENTITY_PRINCIPAL_ID", "GRAPH_APP_ROLE_ID", "AZURE_GRAPH_ENDPOINT",
            "AZURE_TENANT_ID"} <= set(main.doc["outputs"])


def test_no_key_or_connection_string_anywhere_in_infra():
    text = "\n".join(p.read_text() for p in bicep_files(INFRA))
    for pattern in (r"listKeys\(", r"AccountKey=", r"primaryMasterKey", r"listConnectionStrings", r"InstrumentationKey="):
        assert not re.search(pattern, text), pattern


def test_azure_yaml_deploys_this_app_with_the_grant_hook():
    import yaml

    config = yaml.safe_load((ROOT / "azure.yaml").read_text())
    assert config["services"] == {"api": {"project": ".", "language": "python", "host": "function"}}
    hook = config["hooks"]["postprovision"]
    for shell in ("posix", "windows"):
        assert (ROOT / hook[shell]["run"]).is_file()
    assert os.access(ROOT / hook["posix"]["run"], os.X_OK), "the posix hook must be executable"
    # azd finds the Function App to deploy service 'api' to by its azd-service-name tag.
    assert "'azd-service-name': 'api'" in (INFRA / "modules" / "function-app.bicep").read_text()


HOOK = INFRA / "hooks" / "postprovision.sh"
FAKE_AZ = """#!/bin/sh
printf '%s\\n' "$*" >> "$FAKE_AZ_LOG"
case "$*" in
  "account show"*) echo "tenant-1" ;;
  "ad sp show"*) echo "graph-sp" ;;
  *"servicePrincipals(appId="*) echo "graph-sp" ;;
  *"--method GET"*appRoleAssignments*) echo "${FAKE_EXISTING:-0}" ;;
  *"--method POST"*) [ -z "${FAKE_POST_ERROR:-}" ] || { echo "$FAKE_POST_ERROR" >&2; exit 1; } ;;
esac
"""
EXPECTED_BODY = '{"principalId":"mi-1","resourceId":"graph-sp","appRoleId":"45bbb07e-7321-4fd7-a8f6-3ff27e6a81c8"}'


def _run_hook(tmp_path, **env) -> tuple[subprocess.CompletedProcess, list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "az").write_text(FAKE_AZ)
    (bin_dir / "az").chmod(0o755)
    log = tmp_path / "az.log"
    full_env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "FAKE_AZ_LOG": str(log), "GRANT_RETRY_SECONDS": "0",
                "AZURE_FUNCTION_IDENTITY_PRINCIPAL_ID": "mi-1", "AZURE_TENANT_ID": "tenant-1",
                "GRAPH_APP_ROLE": "CallRecords.Read.All", "GRAPH_APP_ROLE_ID": GRAPH_APP_ROLES["CallRecords.Read.All"],
                "AZURE_GRAPH_ENDPOINT": "https://graph.microsoft.com", **env}
    proc = subprocess.run(["sh", str(HOOK)], capture_output=True, text=True, env=full_env, timeout=60)
    calls = log.read_text().splitlines() if log.exists() else []
    return proc, calls


def test_hook_grants_the_graph_role_to_the_identity(tmp_path):
    proc, calls = _run_hook(tmp_path)
    assert proc.returncode == 0 and "Granted CallRecords.Read.All" in proc.stdout
    posts = [c for c in calls if "--method POST" in c]
    assert len(posts) == 1
    assert "servicePrincipals/mi-1/appRoleAssignments" in posts[0] and EXPECTED_BODY in posts[0]


def test_hook_does_nothing_when_the_role_is_already_granted(tmp_path):
    proc, calls = _run_hook(tmp_path, FAKE_EXISTING="1")
    assert proc.returncode == 0 and "already granted" in proc.stdout
    assert not [c for c in calls if "--method POST" in c]


@pytest.mark.parametrize("env, why", [
    ({"FAKE_POST_ERROR": "Forbidden({'error':{'code':'Authorization_RequestDenied'}})"}, "may not grant"),
    ({"AZURE_TENANT_ID": "tenant-2"}, "signed in to tenant tenant-1"),
    ({"GRANT_GRAPH_APP_ROLE": "false"}, "skipped on request"),
])
def test_hook_without_the_right_prints_a_working_one_command_fallback(tmp_path, env, why):
    proc, _ = _run_hook(tmp_path, **env)
    assert proc.returncode == 0, "the deployment must go on without the grant"
    assert why in proc.stdout
    command = next(line.strip() for line in proc.stdout.splitlines() if line.strip().startswith("az rest --method POST"))
    # The printed command, run as an administrator would run it, posts the right assignment.
    log = tmp_path / "admin.log"
    subprocess.run(["sh", "-c", command], check=True, timeout=60,
                   env={"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin", "FAKE_AZ_LOG": str(log)})
    post = log.read_text().splitlines()[-1]
    assert "servicePrincipals/mi-1/appRoleAssignments" in post and EXPECTED_BODY in post


def test_documented_manual_grant_is_one_working_command(tmp_path):
    doc = (ROOT / "README.md").read_text()
    command = next(line.strip() for line in doc.splitlines() if line.strip().startswith("az rest --method POST"))
    _run_hook(tmp_path, FAKE_EXISTING="1")  # writes the fake az
    log = tmp_path / "admin.log"
    subprocess.run(["sh", "-c", command.replace("<PRINCIPAL_ID>", "mi-1")], check=True, timeout=60,
                   env={"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin", "FAKE_AZ_LOG": str(log)})
    assert EXPECTED_BODY in log.read_text().splitlines()[-1]
    for needed in ("azd up", "azd down --purge", "azd env get-value AZURE_FUNCTION_IDENTITY_PRINCIPAL_ID",
                   "/api/health", "admin/functions/collect"):
        assert needed in doc, needed
