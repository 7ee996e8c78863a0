"""No secret in the repository's files: detect-secrets scans every tracked file; only findings listed, with a
reason, in .secrets-allowlist.json (public emulator keys, the word "code" as a parameter name) may appear."""
import json
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def findings(root: Path, files: list[str]) -> list[tuple[str, int, str, str]]:
    from detect_secrets import SecretsCollection
    from detect_secrets.settings import default_settings

    collection = SecretsCollection(root=str(root))
    with default_settings():
        for name in files:
            collection.scan_file(name)
    return [(name, secret.line_number, secret.type, secret.secret_hash) for name, secret in collection]


def unexplained(root: Path, files: list[str]) -> list[str]:
    allowed = {(a["type"], a["secret_hash"]) for a in json.loads((ROOT / ".secrets-allowlist.json").read_text())["allowed"]}
    return [f"{name}:{line} {kind}" for name, line, kind, digest in findings(root, files)
            if (kind, digest) not in allowed]


def tracked() -> list[str]:
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout.split()
    # The lock file is npm's integrity hashes; the allow list is detect-secrets' own hashes.
    return [name for name in out if (ROOT / name).is_file()
            and name not in ("package-lock.json", ".secrets-allowlist.json")]


def test_no_secret_in_the_repository(monkeypatch):
    monkeypatch.chdir(ROOT)
    assert unexplained(ROOT, tracked()) == []


def test_the_scan_catches_a_planted_key(tmp_path, monkeypatch):
    copy = tmp_path / "repo"
    copy.mkdir()
    shutil.copy(ROOT / "shared" / "config" / "settings.py", copy / "settings.py")
    planted = "AccountKey=" + "Zm9vYmFyYmF6cXV4" * 5 + "YWJjZGVm" + "=="  # 88 base64 characters, like a real key
    (copy / "settings.py").write_text((copy / "settings.py").read_text() +
                                      f'\nCONNECTION = "DefaultEndpointsProtocol=https;AccountName=prod;{planted};"\n')
    monkeypatch.chdir(copy)
    assert any("Azure Storage Account access key" in f for f in unexplained(copy, ["settings.py"]))


def test_every_allowlist_entry_has_a_reason():
    entries = json.loads((ROOT / ".secrets-allowlist.json").read_text())["allowed"]
    assert entries and all(len(e["why"]) > 20 for e in entries)
