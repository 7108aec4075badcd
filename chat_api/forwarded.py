"""The client's address behind a known number of trusted proxies.

Each proxy appends the address it received the request from to `X-Forwarded-For`, so the
rightmost entry was written by the nearest proxy, the one before it by the next, and so on;
everything further left came with the request and may be made up by the client. Behind N
trusted proxies the client is therefore the N-th entry from the right (as werkzeug's ProxyFix
counts, `x_for=N`). With N = 0 the TCP peer is the client and the header is not read.

uvicorn is started with `proxy_headers=False` (`chat_api.cli serve`) so that the peer we see is
the real TCP peer, not one uvicorn already took from the header.
"""

from __future__ import annotations

from collections.abc import Iterable


def client_address(peer: str | None, forwarded_for: Iterable[str], trusted_hops: int) -> str:
    """The client address: the `trusted_hops`-th `X-Forwarded-For` entry from the right, or
    the peer when there are no trusted hops or the header has fewer entries (a request that
    did not come through every proxy). `forwarded_for` holds the header's values in the order
    received (a repeated header counts as one comma-joined list)."""
    fallback = peer or "unknown"
    if trusted_hops <= 0:
        return fallback
    entries = [entry.strip() for value in forwarded_for for entry in value.split(",")]
    if len(entries) < trusted_hops:
        return fallback
    return entries[-trusted_hops] or fallback
