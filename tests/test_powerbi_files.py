"""The Power Query files users paste into Power BI parse with Microsoft's own M parser."""
import json
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FILES = sorted((ROOT / "powerbi").glob("*.pq"))


def parse(*paths: Path) -> list[dict]:
    done = subprocess.run(["node", str(ROOT / "devstack" / "pq_check.js"), *map(str, paths)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_every_power_query_file_parses():
    assert len(FILES) >= 6
    results = parse(*FILES)
    assert [r["file"] for r in results] == [str(f) for f in FILES]
    assert all(r["ok"] for r in results), [r for r in results if not r["ok"]]


def test_the_checker_rejects_broken_m(tmp_path):
    broken = tmp_path / "broken.pq"
    broken.write_text(FILES[0].read_text().replace("in\n", "", 1))
    assert parse(broken)[0]["ok"] is False


@pytest.mark.parametrize("entity_set", ["PstnCalls", "DirectRoutingCalls", "DailyUsage"])
def test_each_entity_set_has_an_odata_feed_query_with_the_key_in_the_credential_store(entity_set):
    text = (ROOT / "powerbi" / f"{entity_set}.pq").read_text()
    assert "OData.Feed(" in text and 'ApiKeyName = "code"' in text
    assert f'Name = "{entity_set}"' in text


def test_incremental_refresh_filters_one_bound_inclusive_and_one_exclusive():
    text = (ROOT / "powerbi" / "PstnCalls-IncrementalRefresh.pq").read_text()
    assert re.search(r"\[startDateTime\] >= DateTime.AddZone\(RangeStart, 0\)", text)
    assert re.search(r"\[startDateTime\] < DateTime.AddZone\(RangeEnd, 0\)", text)
    for name in ("RangeStart", "RangeEnd"):
        assert 'IsParameterQuery = true, Type = "DateTime"' in (ROOT / "powerbi" / f"{name}.pq").read_text()
