"""The caller's address behind proxies, and what Serve's uvicorn did to it (no Ray)."""

import pytest
from pydantic import ValidationError

from hubserve.config.limits import LimitsConfig
from serve_app.client_ip import UVICORN_DEFAULT_TRUST, ClientAddresses


def addresses(*trusted, server_trust=UVICORN_DEFAULT_TRUST):
    return ClientAddresses(LimitsConfig(trusted_proxies=list(trusted)), server_trust=server_trust)


def test_without_trusted_proxies_the_header_is_ignored():
    plain = addresses()
    assert plain.of(("203.0.113.5", 50123), ["198.51.100.1"]) == "203.0.113.5"
    assert plain.of(("203.0.113.5", 50123), []) == "203.0.113.5"
    assert plain.of(None, ["198.51.100.1"]) == "unknown"


def test_a_peer_uvicorn_replaced_from_a_forged_header_is_one_client_whatever_the_header():
    """A loopback client sends X-Forwarded-For; uvicorn (trusting loopback) reports the header's
    last entry as the peer, port 0. That is undone: every such request is one client."""
    plain = addresses()
    keys = {plain.of((forged, 0), [f"10.9.9.9, {forged}"]) for forged in ("198.51.100.1", "198.51.100.2", "::5")}
    assert keys == {UVICORN_DEFAULT_TRUST}
    assert plain.of(("198.51.100.7", 0), ["198.51.100.7"]) == UVICORN_DEFAULT_TRUST  # the victim's own key is
    assert plain.of(("198.51.100.7", 40001), []) != UVICORN_DEFAULT_TRUST  # untouched by it


def test_a_remote_peer_that_sends_its_own_address_is_itself():
    plain = addresses()
    assert plain.of(("198.51.100.7", 40001), ["198.51.100.7"]) == "198.51.100.7"  # uvicorn's port would be 0


def test_a_trusted_proxy_names_the_client_and_what_precedes_its_entry_is_ignored():
    behind = addresses("10.0.0.0/8")
    assert behind.of(("10.0.0.5", 4000), ["forged, 198.51.100.7"]) == "198.51.100.7"
    assert behind.of(("10.0.0.5", 4000), ["forged", "198.51.100.7"]) == "198.51.100.7"  # two header lines
    assert behind.of(("10.0.0.5", 4000), ["198.51.100.7, 10.0.0.9"]) == "198.51.100.7"  # a chain of proxies
    assert behind.of(("10.0.0.5", 4000), ["[2001:db8::1]:443"]) == "2001:db8::1"
    assert behind.of(("10.0.0.5", 4000), []) == "10.0.0.5"
    assert behind.of(("10.0.0.5", 4000), ["10.0.0.7"]) == "10.0.0.7"  # every entry a proxy: the first
    assert behind.of(("203.0.113.9", 4000), ["198.51.100.7"]) == "203.0.113.9"  # not from the proxy


def test_a_trusted_proxy_on_loopback_behind_uvicorns_replacement():
    """HAProxy on loopback in front of the replica's uvicorn, which already took the last entry."""
    haproxy = addresses("127.0.0.1", "::1")
    assert haproxy.of(("198.51.100.7", 0), ["forged, 198.51.100.7"]) == "198.51.100.7"
    assert haproxy.of(("198.51.100.7", 0), ["forged", "198.51.100.7"]) == "198.51.100.7"
    assert haproxy.of(("127.0.0.1", 50000), []) == "127.0.0.1"


def test_where_uvicorn_trusts_nobody_the_reported_peer_is_the_peer():
    untouched = addresses(server_trust="")
    assert untouched.of(("198.51.100.7", 0), ["198.51.100.7"]) == "198.51.100.7"
    assert addresses("127.0.0.1", server_trust="").of(("127.0.0.1", 5), ["forged, 198.51.100.7"]) == "198.51.100.7"


def test_trusted_proxies_are_addresses_or_networks():
    assert LimitsConfig(trusted_proxies=["127.0.0.1", "10.0.0.0/8", "::1"]).trusted_proxies == [
        "127.0.0.1/32", "10.0.0.0/8", "::1/128"]
    with pytest.raises(ValidationError, match="trusted_proxies"):
        LimitsConfig(trusted_proxies=["haproxy"])
