"""What a client can do to a paging token and to the links the service writes: read a token out of a link,
forge its fields, change, cut or re-encode it; and the check that no link carries a credential."""
from __future__ import annotations

import base64
import json
import re
from urllib.parse import parse_qsl, unquote, urlsplit

# Query parameter names that carry a credential somewhere: the Functions key (`code`), API keys, OAuth tokens,
# SAS signatures, passwords. A link the service writes carries none of them, whatever the request carried.
CREDENTIAL_NAMES = frozenset({
    "code", "key", "apikey", "api_key", "api-key", "x-functions-key", "subscription-key", "access_token",
    "id_token", "refresh_token", "token", "auth", "authorization", "bearer", "sig", "signature", "sv", "se", "sp",
    "password", "passwd", "pwd", "secret", "client_secret", "session", "sessionid", "jwt"})
LINK_KEYS = re.compile(r"(link|url|uri|href|context|location)$", re.IGNORECASE)
HTML_LINK = re.compile(r"""\b(?:href|src|action)\s*=\s*["']([^"']*)["']""", re.IGNORECASE)


def token_in(url: str, name: str) -> str:
    """The paging token (`$skiptoken` or `after`) of a link."""
    return dict(parse_qsl(urlsplit(url).query))[name]


def _decode(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def _encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _payload_start(data: bytes) -> int:
    # The payload is JSON whose first key is "v"; a signature in front of it is random bytes, which can hold a
    # "{" but (all but never) this whole opening.
    return data.index(b'{"v":')


def forge(token: str, **changes) -> str:
    """The token with fields of its JSON payload changed (e.g. r=50, the rows $top still allows), everything
    else (a signature in front of it, if any) kept as it was: what a client can do without the key."""
    data = _decode(token)
    start = _payload_start(data)
    payload = json.loads(data[start:])
    payload.update(changes)
    return _encode(data[:start] + json.dumps(payload, separators=(",", ":")).encode())


def payload_of(token: str) -> dict:
    data = _decode(token)
    return json.loads(data[_payload_start(data):])


def byte_changed(token: str, index: int, xor: int) -> str:
    """The token with one byte of what it encodes changed (xor != 0)."""
    data = bytearray(_decode(token))
    data[index % len(data)] ^= xor or 1
    return _encode(bytes(data))


def char_changed(token: str, index: int, char: str) -> str:
    i = index % len(token)
    return token[:i] + char + token[i + 1:]


def re_encodings(token: str) -> list[str]:
    """The same bytes spelled otherwise: padded, standard alphabet, with a character base64 decoders skip.
    (Not surrounding spaces: the simple routes trim every parameter.)"""
    data = _decode(token)
    padded = base64.urlsafe_b64encode(data).decode()
    standard = base64.b64encode(data).decode()
    out = {padded, standard, standard.rstrip("="), token + "=", token + "==", token[:5] + "." + token[5:],
           token[:3] + "\n" + token[3:]}
    return sorted(out - {token})


def link_values(response) -> list[str]:
    """Every link the response writes: Link and Location headers, JSON values whose key names a link
    (nextLink, @odata.nextLink, @odata.context, ...) at any depth, and href/src/action attributes of HTML."""
    # requests gives one value per header name, schemathesis a list of them under the lower-case name.
    headers = [(k.lower(), one) for k, v in response.headers.items() for one in (v if isinstance(v, list) else [v])]
    links = [v for k, v in headers if k in ("link", "location", "content-location")]
    content_type = next((v for k, v in headers if k == "content-type"), "")
    if "json" in content_type:
        try:
            body = response.json()
        except ValueError:
            body = None

        def walk(value, key=""):
            if isinstance(value, dict):
                for k, v in value.items():
                    walk(v, str(k))
            elif isinstance(value, list):
                for v in value:
                    walk(v, key)
            elif isinstance(value, str) and LINK_KEYS.search(key):
                links.append(value)
        walk(body)
    elif "html" in content_type:
        links += HTML_LINK.findall(response.text)
    return links


def assert_no_credential_in_links(response, secrets=()) -> None:
    """No link of the response names a credential parameter or holds one of `secrets` (the keys the request
    carried), plainly or percent-encoded."""
    for link in link_values(response):
        for part in re.findall(r"<([^>]*)>", link) or [link]:
            query = urlsplit(part).query
            names = sorted({name.lower() for name, _ in parse_qsl(query, keep_blank_values=True)}
                           & CREDENTIAL_NAMES)
            assert not names, f"{response.request.url} wrote a link carrying {names}: {part[:300]}"
            for secret in secrets:
                if secret:
                    assert secret not in unquote(part) and secret not in part, \
                        f"{response.request.url} wrote a link holding a key the request carried: {part[:300]}"
