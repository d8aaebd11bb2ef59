"""`hubserve cluster up --gcs-redis`: what the head is started with."""

from __future__ import annotations

import pytest

from hubserve.cli.cluster import gcs_storage


def test_the_head_keeps_its_gcs_in_the_named_redis_under_the_clusters_namespace():
    env, flags = gcs_storage("redis://127.0.0.1:6380", "hubserve-abc")
    assert env == {"RAY_REDIS_ADDRESS": "127.0.0.1:6380", "RAY_external_storage_namespace": "hubserve-abc"}
    assert flags == []


def test_a_password_and_user_become_ray_start_flags():
    env, flags = gcs_storage("redis://ops:s3cret@redis.internal:6379", "ns")
    assert env["RAY_REDIS_ADDRESS"] == "redis.internal:6379"
    assert flags == ["--redis-password", "s3cret", "--redis-username", "ops"]


@pytest.mark.parametrize("url", ["127.0.0.1:6379", "http://127.0.0.1:6379", "redis://127.0.0.1", "redis://:6379"])
def test_anything_but_a_redis_url_with_host_and_port_is_refused(url):
    with pytest.raises(ValueError, match="redis://"):
        gcs_storage(url, "ns")
