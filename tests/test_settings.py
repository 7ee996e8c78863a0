import datetime as dt
import json
from pathlib import Path

import pytest

from shared.config.settings import SettingsError, load_settings, specs

ROOT = Path(__file__).resolve().parent.parent
MINIMAL = {"COSMOS_ENDPOINT": "https://acct.documents.azure.com:443/",
           "STORAGE_ACCOUNT_URL": "https://acct.blob.core.windows.net"}


def test_defaults_apply_with_only_the_required_settings():
    s = load_settings(MINIMAL)
    assert s.graph_endpoint == "https://graph.microsoft.com"
    assert s.graph_api_version == "v1.0"
    assert s.graph_credential == "managed_identity"
    assert s.feeds == ("pstn", "directRouting")
    assert s.time_zone == "UTC" and s.rescan_days == 3 and s.coverage_start is None
    assert s.cosmos_key is None and s.storage_connection_string is None
    # Microsoft's call-log limits (50 per function, 200 per app, 1,000 per tenant a minute) less 5%.
    assert (s.graph_function_requests_per_minute, s.graph_app_requests_per_minute,
            s.graph_tenant_requests_per_minute) == (47, 190, 950)


def test_typed_values_are_parsed():
    s = load_settings({**MINIMAL, "GRAPH_API_VERSION": "beta", "COVERAGE_START": "2026-01-02", "FEEDS": "pstn",
                       "GRAPH_FUNCTION_REQUESTS_PER_MINUTE": "2.5", "TIME_ZONE": "Europe/Berlin", "SUBWINDOWS": "4"})
    assert s.graph_api_version == "beta" and s.coverage_start == dt.date(2026, 1, 2)
    assert s.feeds == ("pstn",) and s.graph_function_requests_per_minute == 2.5 and s.subwindows == 4


@pytest.mark.parametrize("function, app, tenant", [
    ("0.5", "1", "1.5"),            # fractions: a request every two minutes is a rate too
    ("4700", "19000", "95000"),     # the simulator on a time scale of 100
    ("1000000", "1000000", "1000000"),
    ("300", "200", "100"),          # narrower above wider is pointless, not wrong: the wider one binds
])
def test_request_limits_take_any_positive_rate(function, app, tenant):
    s = load_settings({**MINIMAL, "GRAPH_FUNCTION_REQUESTS_PER_MINUTE": function,
                       "GRAPH_APP_REQUESTS_PER_MINUTE": app, "GRAPH_TENANT_REQUESTS_PER_MINUTE": tenant})
    assert (s.graph_function_requests_per_minute, s.graph_app_requests_per_minute,
            s.graph_tenant_requests_per_minute) == (float(function), float(app), float(tenant))


@pytest.mark.parametrize("name", ["GRAPH_FUNCTION_REQUESTS_PER_MINUTE", "GRAPH_APP_REQUESTS_PER_MINUTE",
                                  "GRAPH_TENANT_REQUESTS_PER_MINUTE"])
@pytest.mark.parametrize("value", ["0", "-1", "fast", "nan", "inf", "1000001", "1e9"])
def test_a_request_limit_that_is_not_a_rate_is_refused_with_its_name(name, value):
    with pytest.raises(SettingsError) as err:
        load_settings({**MINIMAL, name: value})
    assert err.value.setting == name and name in err.value.public and "per minute" in err.value.public


@pytest.mark.parametrize("name, documented", [("GRAPH_FUNCTION_REQUESTS_PER_MINUTE", "50 per 60 s"),
                                              ("GRAPH_APP_REQUESTS_PER_MINUTE", "200 per 60 s"),
                                              ("GRAPH_TENANT_REQUESTS_PER_MINUTE", "1,000 per 60 s")])
def test_each_request_limit_states_the_documented_figure(name, documented):
    assert documented in {spec.name: spec.meaning for spec in specs()}[name]


@pytest.mark.parametrize("env, named", [
    ({"COSMOS_ENDPOINT": ""}, "COSMOS_ENDPOINT"),
    ({"COSMOS_ENDPOINT": "not a url"}, "COSMOS_ENDPOINT"),
    ({"STORAGE_ACCOUNT_URL": ""}, "STORAGE_ACCOUNT_URL"),
    ({"STORAGE_CONNECTION_STRING": "UseDevelopmentStorage"}, "STORAGE_CONNECTION_STRING"),
    ({"GRAPH_ENDPOINT": "ftp://graph"}, "GRAPH_ENDPOINT"),
    ({"GRAPH_ENDPOINT": "http://graph.microsoft.com"}, "GRAPH_ENDPOINT"),
    ({"GRAPH_API_VERSION": "v2"}, "GRAPH_API_VERSION"),
    ({"GRAPH_CREDENTIAL": "password"}, "GRAPH_CREDENTIAL"),
    ({"GRAPH_CREDENTIAL": "client_secret", "GRAPH_TENANT_ID": "t", "GRAPH_CLIENT_ID": "c"}, "GRAPH_CLIENT_SECRET"),
    ({"GRAPH_CREDENTIAL": "client_secret", "GRAPH_CLIENT_ID": "c", "GRAPH_CLIENT_SECRET": "s"}, "GRAPH_TENANT_ID"),
    ({"GRAPH_CREDENTIAL": "certificate", "GRAPH_TENANT_ID": "t", "GRAPH_CLIENT_ID": "c",
      "GRAPH_CERTIFICATE_PATH": "/nonexistent.pem"}, "GRAPH_CERTIFICATE_PATH"),
    ({"GRAPH_CREDENTIAL": "static_token", "GRAPH_STATIC_TOKEN": "x"}, "GRAPH_ENDPOINT"),
    ({"GRAPH_CREDENTIAL": "static_token", "GRAPH_ENDPOINT": "http://127.0.0.1:8765"}, "GRAPH_STATIC_TOKEN"),
    ({"GRAPH_FUNCTION_REQUESTS_PER_MINUTE": "fast"}, "GRAPH_FUNCTION_REQUESTS_PER_MINUTE"),
    ({"GRAPH_APP_REQUESTS_PER_MINUTE": "0"}, "GRAPH_APP_REQUESTS_PER_MINUTE"),
    ({"GRAPH_TENANT_REQUESTS_PER_MINUTE": "-5"}, "GRAPH_TENANT_REQUESTS_PER_MINUTE"),
    ({"GRAPH_TIMEOUT_SECONDS": "-1"}, "GRAPH_TIMEOUT_SECONDS"),
    ({"FEEDS": "pstn,sms"}, "FEEDS"),
    ({"FEEDS": ","}, "FEEDS"),
    ({"TIME_ZONE": "Mars/Olympus"}, "TIME_ZONE"),
    ({"COVERAGE_START": "2026-13-01"}, "COVERAGE_START"),
    ({"RESCAN_DAYS": "1.5"}, "RESCAN_DAYS"),
    ({"SUBWINDOWS": "0"}, "SUBWINDOWS"),
    ({"UPSERT_CONCURRENCY": "1000"}, "UPSERT_CONCURRENCY"),
    ({"ARCHIVE_CONTAINER": "Raw_Pages"}, "ARCHIVE_CONTAINER"),
    ({"COSMOS_PSTN_CONTAINER": "a/b"}, "COSMOS_PSTN_CONTAINER"),
    ({"COLLECT_SCHEDULE": "every day"}, "COLLECT_SCHEDULE"),
    ({"PRIVACY_MASK": "maybe"}, "PRIVACY_MASK"),
])
def test_a_bad_setting_is_refused_with_its_name(env, named):
    with pytest.raises(SettingsError) as err:
        load_settings({**MINIMAL, **env})
    assert named in str(err.value)


def test_both_storage_settings_at_once_is_refused():
    with pytest.raises(SettingsError, match="STORAGE_CONNECTION_STRING"):
        load_settings({**MINIMAL, "STORAGE_CONNECTION_STRING": "AccountName=a;AccountKey=b"})


def test_static_token_is_accepted_for_a_loopback_simulator():
    s = load_settings({**MINIMAL, "GRAPH_CREDENTIAL": "static_token", "GRAPH_STATIC_TOKEN": "t",
                       "GRAPH_ENDPOINT": "http://localhost:8765/"})
    assert s.graph_endpoint == "http://localhost:8765"


def test_masked_view_hides_every_secret():
    s = load_settings({**MINIMAL, "COSMOS_KEY": "cosmos-secret", "GRAPH_CREDENTIAL": "client_secret",
                       "GRAPH_TENANT_ID": "t", "GRAPH_CLIENT_ID": "c", "GRAPH_CLIENT_SECRET": "graph-secret"})
    shown = json.dumps(s.masked())
    assert "cosmos-secret" not in shown and "graph-secret" not in shown
    assert s.masked()["COSMOS_KEY"] == "***" and s.masked()["GRAPH_TENANT_ID"] == "t"


def test_every_setting_is_in_the_example_file_with_its_default_and_meaning():
    example = json.loads((ROOT / "local.settings.json.example").read_text())
    values, meanings = example["Values"], example["Meanings"]
    for spec in specs():
        assert spec.name in values, f"{spec.name} missing from local.settings.json.example"
        default = spec.default if spec.default is not None else "unset"
        assert meanings.get(spec.name, "").startswith(f"[default: {default}] "), spec.name
        assert len(meanings[spec.name]) > len(default) + 20, f"{spec.name} has no meaning in the example file"


def test_every_setting_is_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    missing = [spec.name for spec in specs() if f"`{spec.name}`" not in readme]
    assert not missing, f"settings not documented in README.md: {missing}"


def test_the_documented_settings_are_current():
    """Regenerate with `python -m devstack.settings_docs` after changing a setting."""
    from devstack.settings_docs import example, table

    assert table() in (ROOT / "README.md").read_text()
    assert json.loads((ROOT / "local.settings.json.example").read_text()) == example()


# --- secrets in answers and settings views (issue 13) ---------------------------------------------------------------
# 88 base64 characters like a real account key, built from pieces so that the secret scan has nothing to flag.
PLANTED = "Q2xpZW50U2VjcmV0" * 5 + "QWJjMTIz" + "=="
COSMOS_CONNECTION = f"AccountEndpoint=https://acct.documents.azure.com:443/;AccountKey={PLANTED};"
SAS_SIGNATURE = "sIgnAtUrE0123456789abcdefXYZ%3D"
AI_CONNECTION = ("InstrumentationKey=11111111-2222-3333-4444-555555555555;"
                 "IngestionEndpoint=https://westeurope-5.in.applicationinsights.azure.com/;ApplicationId=app-1")


def test_a_bad_value_is_named_but_never_quoted_in_the_public_message():
    """A connection string typed into COSMOS_ENDPOINT: the public message names the setting and the problem
    without the value; the full message (logs, command line) quotes the value with its key masked."""
    with pytest.raises(SettingsError) as err:
        load_settings({**MINIMAL, "COSMOS_ENDPOINT": COSMOS_CONNECTION})
    assert err.value.setting == "COSMOS_ENDPOINT" and "COSMOS_ENDPOINT" in err.value.public
    assert "AccountEndpoint" not in err.value.public and "acct" not in err.value.public
    assert PLANTED not in str(err.value) and "AccountEndpoint=https://acct.documents.azure.com:443/" in str(err.value)


@pytest.mark.parametrize("env, named", [
    ({"GRAPH_API_VERSION": "v2-secret-ish"}, "GRAPH_API_VERSION"),
    ({"TIME_ZONE": "Mars/secret-ish"}, "TIME_ZONE"),
    ({"FEEDS": "pstn,secret-ish"}, "FEEDS"),
    ({"RESCAN_DAYS": "secret-ish"}, "RESCAN_DAYS"),
    ({"GRAPH_APP_REQUESTS_PER_MINUTE": "secret-ish"}, "GRAPH_APP_REQUESTS_PER_MINUTE"),
    ({"PRIVACY_MASK": "secret-ish"}, "PRIVACY_MASK"),
    ({"COLLECT_SCHEDULE": "secret-ish"}, "COLLECT_SCHEDULE"),
    ({"COVERAGE_START": "secret-ish"}, "COVERAGE_START"),
    ({"ARCHIVE_CONTAINER": "secret-ish/"}, "ARCHIVE_CONTAINER"),
    ({"GRAPH_ENDPOINT": "secret-ish"}, "GRAPH_ENDPOINT"),
    ({"STORAGE_ACCOUNT_URL": "http://secret-ish.example"}, "STORAGE_ACCOUNT_URL"),
])
def test_every_refusal_names_its_setting_apart_from_the_value(env, named):
    with pytest.raises(SettingsError) as err:
        load_settings({**MINIMAL, **env})
    assert err.value.setting == named and named in err.value.public and "secret-ish" not in err.value.public
    assert "secret-ish" in str(err.value)  # the operator's own view still shows what was typed


def test_anonymous_health_names_the_setting_and_not_its_value():
    from shared.api.health import check_health

    healthy, report = check_health({**MINIMAL, "COSMOS_ENDPOINT": COSMOS_CONNECTION})
    shown = json.dumps(report)
    assert not healthy and "COSMOS_ENDPOINT" in report["checks"]["settings"]
    assert PLANTED not in shown and "AccountKey" not in shown and "acct.documents" not in shown


def test_masked_view_hides_secret_looking_parts_of_every_setting():
    s = load_settings({**MINIMAL,
                       "STORAGE_ACCOUNT_URL": f"https://acct.blob.core.windows.net/?sv=2022-11-02&sig={SAS_SIGNATURE}",
                       "GRAPH_ENDPOINT": "https://user:pa55word@graph.example.com/",
                       "APPLICATIONINSIGHTS_CONNECTION_STRING": AI_CONNECTION})
    view = s.masked()
    shown = json.dumps(view) + repr(s)
    for secret in (SAS_SIGNATURE, "2022-11-02", "pa55word", "11111111-2222-3333-4444-555555555555"):
        assert secret not in shown, secret
    # What recognises each setting stays: the host, the parameter names, the ingestion endpoint.
    assert view["STORAGE_ACCOUNT_URL"] == "https://acct.blob.core.windows.net/?sv=***&sig=***"
    assert view["GRAPH_ENDPOINT"] == "https://***@graph.example.com"
    assert view["APPLICATIONINSIGHTS_CONNECTION_STRING"] == (
        "InstrumentationKey=***;IngestionEndpoint=https://westeurope-5.in.applicationinsights.azure.com/;"
        "ApplicationId=app-1")


def test_a_connection_string_setting_shows_its_account_but_not_its_key():
    conn = (f"DefaultEndpointsProtocol=https;AccountName=myacct;AccountKey={PLANTED};"
            "SharedAccessSignature=sv=2022&sig=abc;EndpointSuffix=core.windows.net")
    s = load_settings({"COSMOS_ENDPOINT": MINIMAL["COSMOS_ENDPOINT"], "STORAGE_CONNECTION_STRING": conn})
    assert s.masked()["STORAGE_CONNECTION_STRING"] == (
        "DefaultEndpointsProtocol=https;AccountName=myacct;AccountKey=***;SharedAccessSignature=***;"
        "EndpointSuffix=core.windows.net")
    assert PLANTED not in repr(s)


@pytest.mark.parametrize("value", ["Europe/Berlin", "0 30 3 * * *", "teamscalls", "callrecords-raw",
                                   "https://graph.microsoft.com", "11111111-2222-3333-4444-555555555555"])
def test_masking_leaves_ordinary_values_alone(value):
    from shared.config.settings import mask_secrets

    assert mask_secrets(value) == value


def test_a_token_typed_into_an_ordinary_setting_is_masked():
    from shared.config.settings import mask_secrets

    assert mask_secrets(f"oops {PLANTED}") == "oops ***"


def test_a_connection_string_pasted_after_an_endpoint_url_is_masked():
    from shared.config.settings import mask_secrets

    assert mask_secrets("https://acct.documents.azure.com:443/;AccountKey=short") == \
        "https://acct.documents.azure.com:443/;***"
