"""Tokens, principals, visibility, rate limits and request caps (no Ray)."""

import asyncio
import re
import sqlite3
import uuid

import pytest

from hubserve.tokens.access import ADMIN_ENV, ADMIN_FILE_ENV, INVALID_CREDENTIALS, Access, admin_token_hash
from hubserve.tokens.auth import AuthStore, PostgresAuthStore, open_auth_store
from hubserve.tokens.principal import Principal, new_token, token_hash
from hubserve.config.limits import LimitsConfig, RateLimit
from hubserve.errors import InvalidInput, RateLimited, Unauthorized
from hubserve.inputs import check_inputs
from serve_app.security import MemoryWindows, RateLimiter, RedisWindows


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    """The token store on each database: a SQLite file, and a real PostgreSQL server (its tables
    emptied for each test)."""
    if request.param == "sqlite":
        return AuthStore(tmp_path / "data" / "auth.sqlite")
    postgres = open_auth_store(request.getfixturevalue("postgres_url"))
    for table in ("tokens", "members", "models"):
        postgres._write(f"DELETE FROM {table}")
    return postgres


def stored_bytes(store) -> bytes:
    """Everything the database holds of the tokens, as bytes."""
    if isinstance(store, PostgresAuthStore):
        return repr(store._read("SELECT * FROM tokens")).encode()
    return store.path.read_bytes() + b"".join(p.read_bytes() for p in store.path.parent.glob("*-wal"))


def test_tokens_look_like_hosted_ones_and_are_stored_only_as_hashes(store):
    tokens = {new_token() for _ in range(200)}
    assert len(tokens) == 200 and all(re.fullmatch(r"hf_[A-Za-z]{34}", t) for t in tokens)
    token_id, token = store.create_token("alice", role="write", org="acme")
    raw = stored_bytes(store)
    assert token_hash(token).encode() in raw
    assert token.encode() not in raw and token[3:].encode() not in raw
    [listed] = store.list_tokens()
    assert listed["id"] == token_id and listed["user"] == "alice" and listed["role"] == "write"
    assert listed["orgs"] == ["acme"] and listed["hint"].endswith(token[-4:]) and listed["revoked"] is None


def test_lookup_and_revoke(store):
    assert store.lookup(new_token()) is None  # no database yet: nobody is known
    token_id, token = store.create_token("bob")
    principal = store.lookup(token)
    assert principal.user == "bob" and principal.role == "read" and principal.token_id == token_id
    assert store.revoke(token_id) and not store.revoke(token_id) and not store.revoke("nope")
    assert store.lookup(token) == "revoked"


def test_bad_names_and_roles_are_refused(store):
    for user in ("", "a/b", "../x", "x" * 200, "bad name"):
        with pytest.raises(InvalidInput):
            store.create_token(user)
    with pytest.raises(InvalidInput, match="role"):
        store.create_token("alice", role="owner")


def test_access_principals(store, monkeypatch):
    _, token = store.create_token("alice", org="acme")
    revoked_id, revoked = store.create_token("carol")
    store.revoke(revoked_id)
    admin = "hf_admin_" + "k" * 30
    access = Access(store, anonymous=True, admin_hash=admin_token_hash({ADMIN_ENV: admin}), ttl_s=0)
    assert access.principal(None).anonymous
    alice = access.principal(f"Bearer {token}")
    assert alice.user == "alice" and alice.orgs == {"acme"}
    assert access.principal(f"bearer   {token} ").user == "alice"
    assert access.principal(f"Bearer {admin}").admin
    for header in (f"Bearer {revoked}", "Bearer hf_unknown", f"Basic {token}", "Bearer", token):
        with pytest.raises(Unauthorized) as err:
            access.principal(header)
        assert err.value.message == INVALID_CREDENTIALS and err.value.status_code == 401
    lenient = Access(store, anonymous=True, ttl_s=0, unknown_as_anonymous=True)
    assert lenient.principal("Bearer hf_someHubToken").anonymous
    with pytest.raises(Unauthorized):
        lenient.principal(f"Bearer {revoked}")  # revoked stays refused
    closed = Access(store, anonymous=False, ttl_s=0)
    with pytest.raises(Unauthorized):
        closed.principal(None)
    assert closed.principal(f"Bearer {token}").user == "alice"


def test_admin_token_from_a_file(tmp_path):
    path = tmp_path / "admin"
    token = "hf_from_file_" + "f" * 20
    path.write_text(token + "\n")
    assert admin_token_hash({ADMIN_FILE_ENV: str(path)}) == admin_token_hash({ADMIN_ENV: token})
    assert admin_token_hash({}) is None


def test_a_short_admin_token_is_refused():
    with pytest.raises(ValueError, match="at least 32"):
        admin_token_hash({ADMIN_ENV: "hf_" + "a" * 28})
    assert admin_token_hash({ADMIN_ENV: "hf_" + "a" * 29})


def test_revocation_takes_effect_after_the_cache_ttl(store):
    token_id, token = store.create_token("dave")
    clock = [0.0]
    access = Access(store, ttl_s=2.0)
    access_clock = pytest.MonkeyPatch()
    access_clock.setattr("hubserve.tokens.access.time.monotonic", lambda: clock[0])
    try:
        assert access.principal(f"Bearer {token}").user == "dave"
        store.revoke(token_id)
        assert access.principal(f"Bearer {token}").user == "dave"  # cached for ttl_s
        clock[0] = 2.5
        with pytest.raises(Unauthorized):
            access.principal(f"Bearer {token}")
    finally:
        access_clock.undo()


def test_private_models_are_visible_to_their_namespace_only(store):
    store.create_token("alice", org="acme")
    store.set_private("acme/secret", True)
    store.set_private("alice/own", True)
    store.set_private("acme/open", False)
    access = Access(store, ttl_s=0)
    alice = store.lookup(store.create_token("alice")[1])
    bob = store.lookup(store.create_token("bob")[1])
    anonymous = access.principal(None)
    for model_id, who_sees in {"acme/secret": {"alice"}, "alice/own": {"alice"}, "acme/open": {"alice", "bob", None},
                               "public/model": {"alice", "bob", None}}.items():
        seen_by = {p.user for p in (alice, bob, anonymous) if access.can_read(p, model_id)}
        assert seen_by == who_sees, model_id
    assert alice.can_write("acme/secret") is False  # a read token
    writer = store.lookup(store.create_token("alice", role="write")[1])
    assert writer.can_write("acme/secret") and writer.can_write("alice/x") and not writer.can_write("other/x")
    assert not writer.can_write("gpt2")  # legacy ids have no namespace: admin only
    store.forget_model("acme/secret")
    assert access.can_read(bob, "acme/secret")


def test_store_file_is_plain_sqlite_with_wal(tmp_path):
    store = AuthStore(tmp_path / "auth.sqlite")
    store.create_token("erin")
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@pytest.fixture(params=["memory", "redis"])
def windows(request):
    """Rate-limit windows in memory, and in a real Redis (shared by every replica); both on a
    clock the test moves, at the start of a 60 s window."""
    clock = [120.0]
    if request.param == "memory":
        return MemoryWindows(clock=lambda: clock[0]), clock
    shared = RedisWindows(request.getfixturevalue("redis_url"), clock=lambda: clock[0])
    shared.PREFIX = f"test:{uuid.uuid4().hex}:"
    return shared, clock


def test_rate_limits_use_fixed_windows_and_the_hosted_headers(tmp_path, windows):
    store = AuthStore(tmp_path / "auth.sqlite")
    windows, clock = windows
    limits = LimitsConfig(anonymous_rate=RateLimit(requests=3, window_s=60),
                          token_rate=RateLimit(requests=5, window_s=300))
    limiter = RateLimiter(limits, windows=windows)
    anonymous = Access(store).principal(None)
    user = store.lookup(store.create_token("frank")[1])
    unlimited = RateLimiter(LimitsConfig(anonymous_rate=None, token_rate=None))

    async def run() -> None:
        for _ in range(3):
            await limiter.check(anonymous, "10.0.0.1")
        with pytest.raises(RateLimited) as err:
            await limiter.check(anonymous, "10.0.0.1")
        exc = err.value
        assert exc.status_code == 429 and exc.message == "Rate limit reached. Please log in or use a HF access token"
        assert re.fullmatch(r'"api";r=0;t=60', exc.headers["ratelimit"])
        assert exc.headers["ratelimit-policy"] == '"fixed window";"api";q=3;w=60'
        await limiter.check(anonymous, "10.0.0.2")  # another address has its own window
        clock[0] += 61
        await limiter.check(anonymous, "10.0.0.1")  # a new window
        for _ in range(5):
            await limiter.check(user, "10.0.0.1")
        with pytest.raises(RateLimited, match="5 requests per 300s"):
            await limiter.check(user, "10.0.0.9")  # per token, wherever it comes from
        for _ in range(100):
            await unlimited.check(anonymous, "10.0.0.1")

    asyncio.run(run())


def test_replicas_sharing_redis_count_one_window(redis_url):
    limits = LimitsConfig(token_rate=RateLimit(requests=3, window_s=3600), redis_url=redis_url)
    replicas = [RateLimiter(limits) for _ in range(2)]
    prefix = f"test:{uuid.uuid4().hex}:"
    for replica in replicas:
        assert isinstance(replica.windows, RedisWindows)
        replica.windows.PREFIX = prefix
    user = Principal(user="gina", role="read", token_id="t1")

    async def run() -> None:
        await replicas[0].check(user, "a")
        await replicas[1].check(user, "b")
        await replicas[0].check(user, "a")
        with pytest.raises(RateLimited):
            await replicas[1].check(user, "b")

    asyncio.run(run())


class Unreachable:
    """A Redis client that must not be called."""

    def pipeline(self):
        raise AssertionError("Redis was asked again while it is known to be down")


def test_an_unreachable_redis_admits_requests_and_is_not_asked_again_for_a_while():
    clock = [1000.0]
    limits = LimitsConfig(token_rate=RateLimit(requests=1, window_s=60), redis_url="redis://127.0.0.1:1/0")
    limiter = RateLimiter(limits, windows=RedisWindows(limits.redis_url, clock=lambda: clock[0]))
    user = Principal(user="hal", role="read", token_id="t2")

    async def run() -> None:
        await limiter.check(user, "a")  # refused connection: admitted
        real, limiter.windows.client = limiter.windows.client, Unreachable()
        for _ in range(3):
            await limiter.check(user, "a")  # admitted without a round trip
        clock[0] += RedisWindows.RETRY_AFTER_S + 1
        limiter.windows.client = real
        await limiter.check(user, "a")  # asked again, still down: admitted

    asyncio.run(run())


def test_request_caps():
    limits = LimitsConfig(max_inputs=3, max_input_chars=10)
    check_inputs(["a", "b", "c"], limits)
    check_inputs({"question": "q" * 10, "context": "c"}, limits)
    with pytest.raises(InvalidInput, match="Too many inputs: 4"):
        check_inputs(["a"] * 4, limits)
    with pytest.raises(InvalidInput, match="11 characters"):
        check_inputs({"source_sentence": "x", "sentences": ["y" * 11]}, limits)


def test_failed_authentication_is_rate_limited_like_anonymous_calls(tmp_path, monkeypatch):
    from starlette.requests import Request

    from hubserve.config.app import AppConfig
    from serve_app.security import Guard

    monkeypatch.delenv(ADMIN_ENV, raising=False)
    config = AppConfig.from_args({"data_dir": str(tmp_path), "limits": {
        "anonymous_rate": {"requests": 3, "window_s": 300}}}, env={})
    guard = Guard(config)
    token = AuthStore(config.auth.db).create_token("kim")[1]

    def call(authorization, client="10.1.1.1"):
        headers = [(b"authorization", authorization.encode())] if authorization else []
        return asyncio.run(guard.admit(Request({"type": "http", "headers": headers, "client": (client, 1)})))

    for guess in range(3):
        with pytest.raises(Unauthorized):
            call(f"Bearer hf_guess{guess}")
    with pytest.raises(RateLimited):
        call("Bearer hf_guess4")
    with pytest.raises(RateLimited):
        call(None)  # the same window as anonymous calls from that address
    assert call(f"Bearer {token}").user == "kim"  # a real token has its own limit
    with pytest.raises(Unauthorized):
        call("Bearer hf_guess5", client="10.1.1.2")


def test_a_private_id_costs_the_lookup_a_missing_one_does(tmp_path):
    from hubserve.tokens.principal import ANONYMOUS
    from hubserve.errors import ModelNotFound
    from hubserve.repos.store import ModelStore
    from serve_app.security import resolve_visible

    folder = tmp_path / "store" / "acme" / "secret"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    auth_store = AuthStore(tmp_path / "auth.sqlite")
    auth_store.set_private("acme/secret", True)
    access = Access(auth_store, ttl_s=60)
    lookups = []

    class CountingStore(ModelStore):
        def _candidate(self, model_id):
            lookups.append(model_id)
            return super()._candidate(model_id)

    store = CountingStore(tmp_path / "store")
    for model_id in ("acme/secret", "acme/nosuch", "acme/secret", "acme/nosuch"):
        with pytest.raises(ModelNotFound) as err:
            asyncio.run(resolve_visible(store, access, ANONYMOUS, model_id))
        assert err.value.message == f"Model {model_id} does not exist"
    assert lookups == ["acme/secret", "acme/nosuch"] * 2  # every time, for both
    owner = store.resolve("acme/secret")
    assert owner.model_id == "acme/secret" and lookups[-1] == "acme/secret"


def test_a_model_installed_private_elsewhere_is_never_shown_from_a_stale_cache(tmp_path):
    from hubserve.tokens.principal import ANONYMOUS
    from hubserve.errors import ModelNotFound
    from hubserve.repos.store import ModelStore
    from serve_app.security import resolve_visible

    auth_store = AuthStore(tmp_path / "auth.sqlite")
    access = Access(auth_store, ttl_s=3600)
    assert not access.is_private("acme/new")  # this replica's cache: nothing is private
    auth_store.set_private("acme/new", True)  # another replica records it private, then installs it
    folder = tmp_path / "store" / "acme" / "new"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    store = ModelStore(tmp_path / "store", ttl_s=3600)
    for _ in range(3):
        with pytest.raises(ModelNotFound):
            asyncio.run(resolve_visible(store, access, ANONYMOUS, "acme/new"))
    owner = AuthStore(tmp_path / "auth.sqlite").lookup(auth_store.create_token("ann", org="acme")[1])
    assert asyncio.run(resolve_visible(store, access, owner, "acme/new")).model_id == "acme/new"


def test_only_a_token_the_cache_lacks_needs_the_token_store(tmp_path):
    """``Guard.admit`` answers from memory where it can; a store read runs off the event loop."""
    store = AuthStore(tmp_path / "auth.sqlite")
    access = Access(store, ttl_s=30)
    token = store.create_token("ivy")[1]
    assert access.principal(None, lookup=False) is not None  # anonymous
    with pytest.raises(Unauthorized):
        access.principal("Basic abc", lookup=False)
    assert access.principal(f"Bearer {token}", lookup=False) is None  # not cached yet
    assert access.principal(f"Bearer {token}").user == "ivy"
    assert access.principal(f"Bearer {token}", lookup=False).user == "ivy"
    assert access.principal("Bearer hf_unknown", lookup=False) is None


def test_guard_admit_reads_the_store_only_off_the_event_loop(tmp_path, monkeypatch):
    """A token lookup and the private-model set's refresh run in a worker thread: a slow
    database never stalls the ingress's other requests. After ``admit`` the visibility checks
    answer from memory."""
    import threading

    from starlette.requests import Request

    from hubserve.config.app import AppConfig
    from serve_app.security import Guard

    monkeypatch.delenv(ADMIN_ENV, raising=False)
    config = AppConfig.from_args({"data_dir": str(tmp_path)}, env={})
    guard = Guard(config)
    store = guard.access.store
    token = store.create_token("lee")[1]
    store.set_private("lee/secret", True)
    reads = []
    for name in ("lookup", "private_models", "is_private"):
        real = getattr(store, name)
        monkeypatch.setattr(store, name, lambda *a, _real=real, _name=name: (
            reads.append((_name, threading.current_thread() is threading.main_thread())), _real(*a))[1])

    def admit(authorization):
        headers = [(b"authorization", authorization.encode())] if authorization else []
        return asyncio.run(guard.admit(Request({"type": "http", "headers": headers, "client": ("10.2.2.2", 1)})))

    assert admit(f"Bearer {token}").user == "lee"
    assert sorted(name for name, _ in reads) == ["lookup", "private_models"]
    assert not any(on_loop for _, on_loop in reads), reads
    reads.clear()
    assert admit(None).anonymous and admit(f"Bearer {token}").user == "lee"
    assert guard.access.is_private("lee/secret") and not guard.access.is_private("lee/open")
    assert reads == []  # all from the caches
