"""The settings as `chatdistill settings` prints them: every secret masked.

Masked wherever they sit, so that a setting added later is covered without a list to update:
the password of any URL-valued setting (database, Redis, the responder, ...), URL query values
whose names look secret (`?api_key=...`), and any field whose name looks secret (SecretStr
fields are already dumped as `**********`).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from feedback.settings import Settings

MASK = "***"
_SECRET_NAME = re.compile(r"secret|password|passwd|token|api_?key|credential", re.IGNORECASE)


def masked_settings(settings: Settings) -> dict[str, Any]:
    data = settings.model_dump(mode="json")
    data["database_url"] = settings.database_url
    masked: dict[str, Any] = _mask(data)
    return masked


def mask_url(url: str) -> str:
    """`url` with its password and secret-looking query values replaced by `***`."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # e.g. a bad port: keep nothing after the scheme that could hold secrets
        scheme, sep, _ = url.partition("://")
        return f"{scheme}{sep}{MASK}" if sep else MASK
    netloc = parts.netloc
    if password is not None:
        userinfo, _, host = netloc.rpartition("@")
        user = userinfo.partition(":")[0]
        netloc = f"{user}:{MASK}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, MASK if _SECRET_NAME.search(k) else v) for k, v in pairs], safe="*")
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _mask(value: Any, name: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _mask(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v, name) for v in value]
    if isinstance(value, str) and value:
        if _SECRET_NAME.search(name):
            return MASK if value != "**********" else value
        if "://" in value:
            return mask_url(value)
    return value
