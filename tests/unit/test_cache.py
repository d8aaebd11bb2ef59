"""Response cache backends and keys (no Ray; Redis is a real redis-server)."""

import numpy as np

from deployments.tasks import get_task
from serve_app.cache import MemoryCache, RedisCache, cache_key, decode_entry, encode_entry
from deployments.payloads import decode_body


def request(body: bytes):
    return get_task("fill-mask").parse(decode_body(body))


def test_keys_depend_on_everything_that_changes_the_answer():
    a = request(b'{"inputs": "a [MASK]", "parameters": {"top_k": 2}}')
    base = cache_key("m/x", "1" * 40, "fill-mask", a)
    assert base == cache_key("m/x", "1" * 40, "fill-mask", request(b'{"parameters": {"top_k": 2}, "inputs": "a [MASK]"}'))
    assert base != cache_key("m/x", "2" * 40, "fill-mask", a)
    assert base != cache_key("m/y", "1" * 40, "fill-mask", a)
    assert base != cache_key("m/x", "1" * 40, "fill-mask", request(b'{"inputs": "a [MASK]", "parameters": {"top_k": 3}}'))
    assert base != cache_key("m/x", "1" * 40, "fill-mask", a, scope="user:alice")


def test_entries_round_trip_numpy_as_lists():
    raw = encode_entry(np.array([0.5, 0.25], dtype=np.float32), "cpu")
    assert decode_entry(raw) == ([0.5, 0.25], "cpu", {})
    raw = encode_entry({"text": "hi"}, "cpu", {"x-compute-audio-length": "1.500"})
    assert decode_entry(raw) == ({"text": "hi"}, "cpu", {"x-compute-audio-length": "1.500"})


def test_file_answers_round_trip_as_bytes_and_keys_depend_on_the_media_type():
    audio = b"fLaC\x00\xff" * 100
    assert decode_entry(encode_entry(audio, "cpu")) == (audio, "cpu", {})
    task = get_task("text-to-speech")
    flac, wav = (task.parse(decode_body(b'{"inputs": "hello"}')) for _ in range(2))
    flac.media_type, wav.media_type = "audio/flac", "audio/wav"
    assert cache_key("m/x", "1" * 40, task.name, flac) != cache_key("m/x", "1" * 40, task.name, wav)


def test_memory_cache_is_an_lru_bounded_in_bytes():
    cache = MemoryCache(max_bytes=400)
    for i in range(10):
        cache.set(f"k{i}", b"x" * 90)
    assert cache.size <= 400 and len(cache) == 4
    assert cache.get("k0") is None and cache.get("k9") == b"x" * 90
    cache.get("k6")
    cache.set("new", b"y" * 90)
    assert cache.get("k6") is not None and cache.get("k7") is None
    cache.set("huge", b"z" * 200)  # over a quarter of the bound: not kept
    assert cache.get("huge") is None


def test_redis_cache_round_trip_and_ttl(redis_url):
    cache = RedisCache(redis_url, ttl_s=30)
    cache.set("abc", b"value")
    assert cache.get("abc") == b"value"
    assert 0 < cache.client.ttl(RedisCache.PREFIX + "abc") <= 30
    assert cache.get("missing") is None


def test_an_unreachable_redis_is_a_miss_not_an_error():
    cache = RedisCache("redis://127.0.0.1:1/0", ttl_s=30)
    cache.set("k", b"v")
    assert cache.get("k") is None


def test_a_model_s_entries_are_evicted_together_in_both_backends(redis_url):
    a = request(b'{"inputs": "a [MASK]"}')
    b = request(b'{"inputs": "b [MASK]"}')
    for cache in (MemoryCache(max_bytes=10_000), RedisCache(redis_url, ttl_s=30)):
        doomed = [cache_key("org/gone", "1" * 40, "fill-mask", r) for r in (a, b)]
        doomed.append(cache_key("org/gone", "2" * 40, "fill-mask", a, scope="token:x"))
        kept = cache_key("org/kept", "1" * 40, "fill-mask", a)
        for key in [*doomed, kept]:
            cache.set(key, b"v")
        assert "org/gone" not in doomed[0]  # keys do not name models
        assert cache.evict_model("org/gone") == 3
        assert all(cache.get(k) is None for k in doomed) and cache.get(kept) == b"v"
    memory = MemoryCache(max_bytes=10_000)
    memory.set(cache_key("o/m", "1" * 40, "fill-mask", a), b"12345")
    memory.evict_model("o/m")
    assert memory.size == 0
