"""Every setting the app reads, its default, and its validation.

The same names serve as Azure app settings, `local.settings.json` values and plain environment variables.
Nothing else in the code reads `os.environ`: a newcomer finds every knob here, and a bad value stops the app
at start-up with a message naming the setting instead of failing on the first request at 3 a.m.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import re
from dataclasses import dataclass
from typing import Callable, Mapping
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .feeds import DERIVED, FEEDS, container_tables

CREDENTIAL_MODES = ("managed_identity", "client_secret", "certificate", "default", "static_token")


_NO_VALUE = object()


class SettingsError(ValueError):
    """A setting is missing or invalid.

    `setting` is its name and `public` the problem in a sentence that names it but never quotes the value: what
    anonymous and client answers show, since a mistyped value can be a secret (a connection string with its
    account key in COSMOS_ENDPOINT). str() adds the value given, with anything secret-looking in it masked, for
    the logs and the command line, where seeing the typo is what fixes it."""

    def __init__(self, problem: str, setting: str | None = None, value: object = _NO_VALUE) -> None:
        self.setting, self.public = setting, problem
        if value is not _NO_VALUE:
            problem = f"{problem}, got {mask_secrets(str(value))!r}"
        super().__init__(problem)


@dataclass(frozen=True)
class Spec:
    name: str
    default: str | None  # None: no default (required, or optional and unset)
    meaning: str
    secret: bool = False


# The settings of the app but those the feed table declares (see specs()).
_SPECS: tuple[Spec, ...] = (
    Spec("GRAPH_ENDPOINT", "https://graph.microsoft.com",
         "Graph base URL: national clouds (https://graph.microsoft.us, https://dod-graph.microsoft.us) or a local simulator."),
    Spec("GRAPH_API_VERSION", "v1.0", "Graph API version: v1.0 or beta (beta rows carry more fields)."),
    Spec("GRAPH_CREDENTIAL", "managed_identity",
         "How to get Graph tokens: managed_identity, client_secret, certificate, default (azure-identity's chain) or static_token (local simulators only)."),
    Spec("GRAPH_TENANT_ID", None, "Entra tenant id; required for client_secret and certificate."),
    Spec("GRAPH_CLIENT_ID", None,
         "App (client) id for client_secret/certificate; for managed_identity, the user-assigned identity's client id (else AZURE_CLIENT_ID, else system-assigned)."),
    Spec("GRAPH_CLIENT_SECRET", None, "Client secret, for GRAPH_CREDENTIAL=client_secret.", secret=True),
    Spec("GRAPH_CERTIFICATE_PATH", None, "PEM or PFX certificate file, for GRAPH_CREDENTIAL=certificate."),
    Spec("GRAPH_CERTIFICATE_PASSWORD", None, "Password of the certificate file, if it has one.", secret=True),
    Spec("GRAPH_STATIC_TOKEN", None,
         "Bearer token sent as is, for GRAPH_CREDENTIAL=static_token; refused unless GRAPH_ENDPOINT is a loopback address.",
         secret=True),
    Spec("GRAPH_FUNCTION_REQUESTS_PER_MINUTE", "47",
         "Requests per minute to each call-log function (each feed's own), shared by every "
         "thread and Graph client of the process. Microsoft documents 50 per 60 s per function (collection); the "
         "default stays 5% under it."),
    Spec("GRAPH_APP_REQUESTS_PER_MINUTE", "190",
         "Requests per minute of the app identity (GRAPH_CLIENT_ID or the managed identity) to the call-log "
         "functions, all functions together. Microsoft documents 200 per 60 s per application per tenant; the "
         "default stays 5% under it."),
    Spec("GRAPH_TENANT_REQUESTS_PER_MINUTE", "950",
         "Requests per minute of the process to the tenant's call-log functions, all app identities together. "
         "Microsoft documents 1,000 per 60 s per tenant for all apps; the default stays 5% under it (lower it when "
         "other apps read the tenant's call logs too)."),
    Spec("GRAPH_TIMEOUT_SECONDS", "60", "Timeout of each Graph request (connect and read)."),
    Spec("GRAPH_MAX_RETRIES", "8", "Retries of one Graph request on 429, 503, 504 and dropped connections."),
    Spec("AZURE_CLIENT_ID", None,
         "Client id of the user-assigned managed identity used for Cosmos DB and Blob storage (unset: system-assigned or azure-identity's chain)."),
    Spec("COSMOS_ENDPOINT", None, "Cosmos DB (NoSQL API) account endpoint, e.g. https://ACCOUNT.documents.azure.com:443/. Required."),
    Spec("COSMOS_KEY", None, "Cosmos DB account key; unset means Entra ID (managed identity), the recommended way.",
         secret=True),
    Spec("COSMOS_DATABASE", "teamscalls", "Cosmos DB database name."),
    Spec("COSMOS_RUNS_CONTAINER", "runs", "Container of the run ledger and leases (partition key /pk)."),
    Spec("STORAGE_CONNECTION_STRING", None,
         "Blob storage connection string (local Azurite); set this or STORAGE_ACCOUNT_URL.", secret=True),
    Spec("STORAGE_ACCOUNT_URL", None,
         "Blob service URL, e.g. https://ACCOUNT.blob.core.windows.net, reached with the managed identity."),
    Spec("ARCHIVE_CONTAINER", "callrecords-raw", "Blob container of the raw Graph pages and run manifests."),
    Spec("TIME_ZONE", "UTC", "IANA time zone whose calendar day is 'a day' (e.g. Europe/Berlin)."),
    Spec("COVERAGE_START", None, "First day (YYYY-MM-DD) that must be collected; unset: 30 days before the first run."),
    Spec("RESCAN_DAYS", "3", "Recent days collected again on every run, to pick up rows Graph publishes late."),
    Spec("TIME_BUDGET_SECONDS", "1500", "Wall time one timer run may spend before it leaves the rest to the next run."),
    Spec("SUBWINDOWS", "1",
         "Concurrent sub-windows a day is fetched in (1 = whole day). Above 1, a day collected before is cut to "
         "its shape instead: windows of about a page each."),
    Spec("LEASE_SECONDS", "300",
         "A day's lease in the ledger: renewed while its run makes progress, free this long after a run died."),
    Spec("UPSERT_CONCURRENCY", "8", "Concurrent Cosmos writes (each a batch of up to 100 rows of one day)."),
    Spec("COLLECT_SCHEDULE", "0 30 3 * * *",
         "NCRONTAB schedule (UTC) of the daily rhythm: new days and the re-scan become due at each occurrence "
         "(daily at 03:30 by default)."),
    Spec("COLLECT_TIMER_SCHEDULE", "0 * * * * *",
         "NCRONTAB schedule (UTC) of the collect timer: each tick collects what is due and returns at once when "
         "nothing is, so a backlog goes on within a minute of the last run's end (every minute by default)."),
    Spec("FAILED_RETRY_MINUTES", "30",
         "A failed day is retried at the next tick this long after its failure (or at the next COLLECT_SCHEDULE)."),
    Spec("PRIVACY_MASK", "false",
         "true: the query routes mask phone numbers (all but the last 4 digits) and client IP addresses, and refuse "
         "filters on them."),
    Spec("APPLICATIONINSIGHTS_CONNECTION_STRING", None,
         "Application Insights connection string; when set, logs go there with their fields as custom dimensions."),
    Spec("APPLICATIONINSIGHTS_AUTHENTICATION_STRING", None,
         "Authorization=AAD (with ClientId=...) to send telemetry with the managed identity instead of a key."),
)


def specs() -> tuple[Spec, ...]:
    """The one list of settings, in documentation order: each feed's container setting follows
    COSMOS_DATABASE, each derived table's follows COSMOS_RUNS_CONTAINER, and FEEDS (after ARCHIVE_CONTAINER)
    lists the feeds of the table. The example file, the README table and the infra contract test are checked
    against it, so a setting added without documenting it fails the tests. Read from the feed table when
    called, so a feed added there has its setting at once."""
    def container(table) -> Spec:
        return Spec(table.container_setting, table.container_default,
                    f"Container of {table.title} (partition key /day).")

    after = {
        "COSMOS_DATABASE": [container(feed) for feed in FEEDS.values()],
        "COSMOS_RUNS_CONTAINER": [container(table) for table in DERIVED.values()],
        "ARCHIVE_CONTAINER": [Spec("FEEDS", ",".join(f.name for f in FEEDS.values() if f.enabled_by_default),
                                   f"Feeds to collect, comma separated: {', '.join(FEEDS)}.")],
    }
    out = []
    for spec in _SPECS:
        out += [spec, *after.get(spec.name, ())]
    return tuple(out)


@dataclass(frozen=True)
class Settings:
    graph_endpoint: str
    graph_api_version: str
    graph_credential: str
    graph_tenant_id: str | None
    graph_client_id: str | None
    graph_client_secret: str | None
    graph_certificate_path: str | None
    graph_certificate_password: str | None
    graph_static_token: str | None
    graph_function_requests_per_minute: float
    graph_app_requests_per_minute: float
    graph_tenant_requests_per_minute: float
    graph_timeout_seconds: float
    graph_max_retries: int
    azure_client_id: str | None
    cosmos_endpoint: str
    cosmos_key: str | None
    cosmos_database: str
    cosmos_runs_container: str
    containers: tuple[tuple[str, str], ...]  # (feed or derived table, its container), from the feed table
    storage_connection_string: str | None
    storage_account_url: str | None
    archive_container: str
    feeds: tuple[str, ...]
    time_zone: str
    coverage_start: dt.date | None
    rescan_days: int
    time_budget_seconds: float
    subwindows: int
    lease_seconds: float
    upsert_concurrency: int
    collect_schedule: str
    collect_timer_schedule: str
    failed_retry_minutes: float
    privacy_mask: bool
    applicationinsights_connection_string: str | None
    applicationinsights_authentication_string: str | None

    def container(self, table: str) -> str:
        """The Cosmos container of a feed or derived table (its name in the feed table)."""
        for name, container in self.containers:
            if name == table:
                return container
        raise KeyError(f"no container for {table!r}; the tables are {', '.join(n for n, _ in self.containers)}")

    def __repr__(self) -> str:
        # A Settings in a log line or a traceback shows what masked() shows, never a secret.
        return f"Settings({self.masked()!r})"

    def masked(self) -> dict[str, object]:
        """The settings in force, safe to log or show on a status page: a secret setting is "***" (a connection
        string keeps its account name and endpoints), and anything secret-looking in the others is masked
        (mask_secrets), since a value typed into the wrong setting is not declared secret."""
        held = dict(self.containers)
        by_setting = {t.container_setting: held[t.name] for t in container_tables() if t.name in held}
        out: dict[str, object] = {}
        for spec in specs():
            value = by_setting[spec.name] if spec.name in by_setting else getattr(self, spec.name.lower(), None)
            if spec.secret and value:
                value = mask_secrets(value) if _is_connection_string(value) else "***"
            elif isinstance(value, str):
                value = mask_secrets(value)
            elif isinstance(value, dt.date):
                value = value.isoformat()
            elif isinstance(value, tuple):
                value = list(value)
            out[spec.name] = value
        return out


MASK = "***"
# Connection-string keys whose values identify a resource without granting access: kept so that an operator
# recognises the account; every other key's value (AccountKey, SharedAccessSignature, InstrumentationKey,
# Password, ...) is masked, so a key not listed here is hidden rather than shown.
_PUBLIC_KEYS = frozenset(k.lower() for k in (
    "AccountName", "DefaultEndpointsProtocol", "EndpointSuffix", "Authorization", "ClientId", "ApplicationId",
    "UseDevelopmentStorage", "DevelopmentStorageProxyUri"))
# A run of 32 or more base64 / base64url characters mixing upper case, lower case and digits: the shape of
# account keys, client secrets and tokens. GUIDs (8-4-4-4-12) and names do not reach it.
_TOKEN_LIKE = re.compile(r"[A-Za-z0-9+/_-]{32,}={0,2}")
_CONNECTION_PART = re.compile(r"\s*[A-Za-z][A-Za-z0-9_.-]*\s*=")


def _is_connection_string(value: str) -> bool:
    """Key=Value pairs separated by ';' (a base64 key's trailing '=' alone does not make one)."""
    parts = [p for p in value.split(";") if p.strip()]
    return bool(parts) and all(_CONNECTION_PART.match(p) for p in parts)


def _mask_token_like(text: str) -> str:
    def hide(match: re.Match) -> str:
        run = match.group(0)
        mixed = any(c.isupper() for c in run) and any(c.islower() for c in run) and any(c.isdigit() for c in run)
        return MASK if mixed else run
    return _TOKEN_LIKE.sub(hide, text)


def _mask_url(value: str) -> str:
    """A URL with its user information, query values and fragment masked; scheme, host, port and path kept."""
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return _mask_token_like(value)
    netloc = parts.netloc
    if "@" in netloc:
        host = parts.hostname or ""
        host = f"[{host}]" if ":" in host else host
        netloc = f"{MASK}@{host}" + (f":{port}" if port is not None else "")
    query = "&".join(f"{pair.partition('=')[0]}={MASK}" if pair else pair for pair in parts.query.split("&")) \
        if parts.query else ""
    # Past a ';' or '=' the path holds no resource name but, as often as not, a pasted connection string's key.
    path = re.sub(r"[;=].*", lambda m: m.group(0)[0] + MASK, parts.path)
    return urlunsplit((parts.scheme, netloc, _mask_token_like(path), query, MASK if parts.fragment else ""))


def mask_secrets(value: str) -> str:
    """`value` with whatever may be a secret replaced by ***, keeping what recognises it: a URL keeps its
    scheme, host, port and path (user information, query values such as a SAS token's, and the fragment are
    masked); a connection string (Key=Value;...) keeps the keys, the endpoints (masked as URLs) and the values
    of the keys in _PUBLIC_KEYS; anything else keeps all but token-like runs of characters."""
    if re.match(r"^\s*[a-zA-Z][a-zA-Z0-9+.-]*://", value):
        return _mask_url(value.strip())
    if _is_connection_string(value):
        out = []
        for part in value.split(";"):
            key, eq, item = part.partition("=")
            key = _mask_token_like(key)
            if not eq:
                out.append(_mask_token_like(part))
            elif key.strip().lower().endswith("endpoint") or key.strip().lower().endswith("uri"):
                out.append(f"{key}={_mask_url(item.strip())}" if "://" in item else f"{key}={MASK}")
            elif key.strip().lower() in _PUBLIC_KEYS:
                out.append(f"{key}={_mask_token_like(item)}")
            else:
                out.append(f"{key}={MASK}" if item else part)
        return ";".join(out)
    return _mask_token_like(value)


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _http_url(name: str, value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(f"{name} must be an http(s) URL", name, value)
    if parts.scheme == "http" and not _is_loopback(value):
        raise SettingsError(f"{name} must use https unless it points at a loopback address", name, value)
    return value.rstrip("/")


def _number(name: str, value: str, kind: Callable[[str], float | int], low: float, high: float):
    try:
        number = kind(value)
    except ValueError:
        raise SettingsError(f"{name} must be a {kind.__name__} between {low} and {high}", name, value) from None
    if not low <= number <= high:
        raise SettingsError(f"{name} must be between {low} and {high}", name, value)
    return number


# Tests and benchmarks run the Graph simulator on a compressed time scale, so a rate far above Graph's own
# limits is legitimate; only a rate that cannot be a rate is refused.
MAX_REQUESTS_PER_MINUTE = 1_000_000


def _rate(name: str, value: str) -> float:
    """Requests per minute: a number above 0 (fractions allowed) and at most MAX_REQUESTS_PER_MINUTE."""
    problem = f"{name} must be a number of requests per minute above 0 and at most {MAX_REQUESTS_PER_MINUTE}"
    try:
        number = float(value)
    except ValueError:
        raise SettingsError(problem, name, value) from None
    # NaN fails both comparisons, so it is refused here too.
    if not 0 < number <= MAX_REQUESTS_PER_MINUTE:
        raise SettingsError(problem, name, value)
    return number


def _boolean(name: str, value: str) -> bool:
    lowered = value.lower()
    if lowered not in ("true", "false", "1", "0", "yes", "no"):
        raise SettingsError(f"{name} must be true or false", name, value)
    return lowered in ("true", "1", "yes")


def _cron(name: str, value: str) -> str:
    # NCRONTAB: six fields (seconds first); a %SETTING% expression is resolved by the host, so only shape is checked.
    if len(value.split()) != 6:
        raise SettingsError(f"{name} must be an NCRONTAB expression with six fields "
                            f"(second minute hour day month weekday)", name, value)
    return value


def apply_local_settings_file(path: str = "local.settings.json") -> None:
    """Copy a local.settings.json file's "Values" into the environment, as `func start` does: variables already
    set win. Only for running outside Azure (make run, the command line)."""
    if not os.path.exists(path):
        return
    try:
        with open(path, encoding="utf-8") as file:
            values = json.load(file).get("Values", {})
    except (OSError, ValueError, AttributeError) as exc:
        raise SettingsError(f"{path} is not a valid local.settings.json file: {exc}", path) from None
    for key, value in values.items():
        os.environ.setdefault(key, str(value))


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every setting; raise SettingsError naming the first bad one."""
    env = os.environ if env is None else env
    defaults = {s.name: s.default for s in specs()}

    def raw(name: str) -> str | None:
        value = env.get(name)
        if value is None or value.strip() == "":
            return defaults[name]
        return value.strip()

    def required(name: str, why: str = "") -> str:
        value = raw(name)
        if value is None:
            raise SettingsError(f"{name} is required{why}", name)
        return value

    graph_endpoint = _http_url("GRAPH_ENDPOINT", required("GRAPH_ENDPOINT"))
    version = required("GRAPH_API_VERSION")
    if version not in ("v1.0", "beta"):
        raise SettingsError("GRAPH_API_VERSION must be v1.0 or beta", "GRAPH_API_VERSION", version)

    credential = required("GRAPH_CREDENTIAL")
    if credential not in CREDENTIAL_MODES:
        raise SettingsError(f"GRAPH_CREDENTIAL must be one of {', '.join(CREDENTIAL_MODES)}", "GRAPH_CREDENTIAL",
                            credential)
    if credential in ("client_secret", "certificate"):
        required("GRAPH_TENANT_ID", f" when GRAPH_CREDENTIAL={credential}")
        required("GRAPH_CLIENT_ID", f" when GRAPH_CREDENTIAL={credential}")
    if credential == "client_secret":
        required("GRAPH_CLIENT_SECRET", " when GRAPH_CREDENTIAL=client_secret")
    if credential == "certificate":
        path = required("GRAPH_CERTIFICATE_PATH", " when GRAPH_CREDENTIAL=certificate")
        if not os.path.isfile(path):
            raise SettingsError("GRAPH_CERTIFICATE_PATH does not name a readable file", "GRAPH_CERTIFICATE_PATH", path)
    if credential == "static_token":
        required("GRAPH_STATIC_TOKEN", " when GRAPH_CREDENTIAL=static_token")
        if not _is_loopback(graph_endpoint):
            raise SettingsError("GRAPH_CREDENTIAL=static_token is for local simulators only: GRAPH_ENDPOINT must be "
                                "a loopback address", "GRAPH_ENDPOINT", graph_endpoint)

    cosmos_endpoint = _http_url("COSMOS_ENDPOINT", required("COSMOS_ENDPOINT"))

    conn, account_url = raw("STORAGE_CONNECTION_STRING"), raw("STORAGE_ACCOUNT_URL")
    if not conn and not account_url:
        raise SettingsError("Set STORAGE_CONNECTION_STRING or STORAGE_ACCOUNT_URL (Blob storage for the raw archive)",
                            "STORAGE_ACCOUNT_URL")
    if conn and account_url:
        raise SettingsError("Set only one of STORAGE_CONNECTION_STRING and STORAGE_ACCOUNT_URL",
                            "STORAGE_CONNECTION_STRING")
    if account_url:
        account_url = _http_url("STORAGE_ACCOUNT_URL", account_url)
    if conn and "=" not in conn:
        raise SettingsError("STORAGE_CONNECTION_STRING does not look like a connection string (Key=Value;...)",
                            "STORAGE_CONNECTION_STRING")

    feeds = tuple(f.strip() for f in required("FEEDS").split(",") if f.strip())
    bad = [f for f in feeds if f not in FEEDS]
    if bad or not feeds:
        raise SettingsError(f"FEEDS must list one or more of {', '.join(FEEDS)}", "FEEDS", raw("FEEDS"))

    time_zone = required("TIME_ZONE")
    try:
        ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise SettingsError("TIME_ZONE must be an IANA time zone name such as Europe/Berlin", "TIME_ZONE",
                            time_zone) from None

    coverage_start = raw("COVERAGE_START")
    try:
        coverage_date = dt.date.fromisoformat(coverage_start) if coverage_start else None
    except ValueError:
        raise SettingsError("COVERAGE_START must be a date YYYY-MM-DD", "COVERAGE_START", coverage_start) from None

    tables = container_tables()
    for name in ("COSMOS_DATABASE", *(f.container_setting for f in FEEDS.values()), "COSMOS_RUNS_CONTAINER",
                 *(t.container_setting for t in DERIVED.values()), "ARCHIVE_CONTAINER"):
        value = required(name)
        if any(c in value for c in "/\\#? "):
            raise SettingsError(f"{name} must not contain '/', '\\', '#', '?' or spaces", name, value)

    return Settings(
        graph_endpoint=graph_endpoint,
        graph_api_version=version,
        graph_credential=credential,
        graph_tenant_id=raw("GRAPH_TENANT_ID"),
        graph_client_id=raw("GRAPH_CLIENT_ID"),
        graph_client_secret=raw("GRAPH_CLIENT_SECRET"),
        graph_certificate_path=raw("GRAPH_CERTIFICATE_PATH"),
        graph_certificate_password=raw("GRAPH_CERTIFICATE_PASSWORD"),
        graph_static_token=raw("GRAPH_STATIC_TOKEN"),
        graph_function_requests_per_minute=_rate("GRAPH_FUNCTION_REQUESTS_PER_MINUTE",
                                                 required("GRAPH_FUNCTION_REQUESTS_PER_MINUTE")),
        graph_app_requests_per_minute=_rate("GRAPH_APP_REQUESTS_PER_MINUTE", required("GRAPH_APP_REQUESTS_PER_MINUTE")),
        graph_tenant_requests_per_minute=_rate("GRAPH_TENANT_REQUESTS_PER_MINUTE",
                                               required("GRAPH_TENANT_REQUESTS_PER_MINUTE")),
        graph_timeout_seconds=_number("GRAPH_TIMEOUT_SECONDS", required("GRAPH_TIMEOUT_SECONDS"), float, 1, 600),
        graph_max_retries=_number("GRAPH_MAX_RETRIES", required("GRAPH_MAX_RETRIES"), int, 0, 50),
        azure_client_id=raw("AZURE_CLIENT_ID"),
        cosmos_endpoint=cosmos_endpoint,
        cosmos_key=raw("COSMOS_KEY"),
        cosmos_database=required("COSMOS_DATABASE"),
        cosmos_runs_container=required("COSMOS_RUNS_CONTAINER"),
        containers=tuple((t.name, required(t.container_setting)) for t in tables),
        storage_connection_string=conn,
        storage_account_url=account_url,
        archive_container=_container_name("ARCHIVE_CONTAINER", required("ARCHIVE_CONTAINER")),
        feeds=feeds,
        time_zone=time_zone,
        coverage_start=coverage_date,
        rescan_days=_number("RESCAN_DAYS", required("RESCAN_DAYS"), int, 0, 90),
        time_budget_seconds=_number("TIME_BUDGET_SECONDS", required("TIME_BUDGET_SECONDS"), float, 1, 86400),
        subwindows=_number("SUBWINDOWS", required("SUBWINDOWS"), int, 1, 24),
        lease_seconds=_number("LEASE_SECONDS", required("LEASE_SECONDS"), float, 2, 86400),
        upsert_concurrency=_number("UPSERT_CONCURRENCY", required("UPSERT_CONCURRENCY"), int, 1, 64),
        collect_schedule=_cron("COLLECT_SCHEDULE", required("COLLECT_SCHEDULE")),
        collect_timer_schedule=_cron("COLLECT_TIMER_SCHEDULE", required("COLLECT_TIMER_SCHEDULE")),
        failed_retry_minutes=_number("FAILED_RETRY_MINUTES", required("FAILED_RETRY_MINUTES"), float, 0, 10080),
        privacy_mask=_boolean("PRIVACY_MASK", required("PRIVACY_MASK")),
        applicationinsights_connection_string=raw("APPLICATIONINSIGHTS_CONNECTION_STRING"),
        applicationinsights_authentication_string=raw("APPLICATIONINSIGHTS_AUTHENTICATION_STRING"),
    )


def _container_name(name: str, value: str) -> str:
    # Blob container names: 3-63 lowercase letters, digits and single hyphens; Azure rejects anything else later
    # with a less helpful message.
    ok = (3 <= len(value) <= 63 and value[0].isalnum() and value[-1].isalnum() and "--" not in value
          and all(c.islower() or c.isdigit() or c == "-" for c in value))
    if not ok:
        raise SettingsError(f"{name} must be 3-63 lowercase letters, digits or single hyphens", name, value)
    return value
