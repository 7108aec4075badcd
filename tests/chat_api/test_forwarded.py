"""The client address behind N trusted proxies: the N-th X-Forwarded-For entry from the right."""

from __future__ import annotations

import pytest

from chat_api.forwarded import client_address


@pytest.mark.parametrize(
    ("header", "hops", "expected"),
    [
        # No trusted proxy: the header is the client's own text and is ignored.
        (["6.6.6.6"], 0, "10.0.0.1"),
        (["6.6.6.6, 7.7.7.7"], 0, "10.0.0.1"),
        # One proxy: it appended the address it saw; everything left of it is the client's.
        (["203.0.113.9"], 1, "203.0.113.9"),
        (["1.1.1.1, 203.0.113.9"], 1, "203.0.113.9"),
        (["spoofed, also-spoofed , 203.0.113.9 "], 1, "203.0.113.9"),
        # Two proxies: the outer one's entry is second from the right.
        (["1.1.1.1, 203.0.113.9, 10.1.2.3"], 2, "203.0.113.9"),
        # A repeated header is one list, in order.
        (["1.1.1.1", "203.0.113.9, 10.1.2.3"], 2, "203.0.113.9"),
        (["2001:db8::1"], 1, "2001:db8::1"),
        # Fewer entries than proxies (a request that skipped one): the peer.
        ([], 1, "10.0.0.1"),
        (["203.0.113.9"], 2, "10.0.0.1"),
        # An empty entry where the proxy's should be: the peer.
        (["203.0.113.9, "], 1, "10.0.0.1"),
    ],
)
def test_client_address_counts_hops_from_the_right(
    header: list[str], hops: int, expected: str
) -> None:
    assert client_address("10.0.0.1", header, hops) == expected


def test_no_peer_and_no_usable_header_is_unknown() -> None:
    assert client_address(None, ["1.1.1.1"], 0) == "unknown"
    assert client_address(None, [], 1) == "unknown"
