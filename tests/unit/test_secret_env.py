"""Secrets reach the ingress alone: what `hubserve serve` takes out of Ray's environment, the
folder it writes, and the config a model replica gets."""

import os
import stat

import pytest

from hubserve.config import secrets_dir
from hubserve.config.app import AppConfig
from hubserve.tokens import secret_env
from hubserve.tokens.access import ADMIN_HASH_ENV, admin_token_hash
from hubserve.tokens.principal import token_hash

ADMIN = "hf_" + "S" * 40
ENV = {
    "PATH": "/usr/bin", "HOME": "/root", "TOKENIZERS_PARALLELISM": "false", "RAY_AUTH_MODE": "token",
    "HUBSERVE_ADMIN_TOKEN": ADMIN, "HF_TOKEN": "hf_upstream", "HUBSERVE_AUTH_DB": "postgresql://u:pw@db/hs",
    "HUBSERVE_REDIS_URL": "redis://:pw@redis:6379/0", "AWS_SECRET_ACCESS_KEY": "aws", "GITHUB_TOKEN": "gh",
    "PGPASSWORD": "pg", "MY_SERVICE_API_KEY": "k", "VAULT_PASSWORD_FILE": "/v",
}


def test_the_local_head_gets_no_secret_and_the_ingress_gets_what_it_needs(tmp_path):
    clean, folder = secret_env.for_local_server(ENV, None)
    try:
        assert clean == {"PATH": "/usr/bin", "HOME": "/root", "TOKENIZERS_PARALLELISM": "false",
                         "RAY_AUTH_MODE": "token"}
        values = secrets_dir.read_secrets_dir(folder)
        assert values == {ADMIN_HASH_ENV: token_hash(ADMIN), "HF_TOKEN": "hf_upstream",
                          "HUBSERVE_AUTH_DB": "postgresql://u:pw@db/hs", "HUBSERVE_REDIS_URL": "redis://:pw@redis:6379/0"}
        assert ADMIN not in "".join(values.values()), "the ingress gets the admin token's hash, not the token"
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        assert {stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()} == {0o600}
    finally:
        for p in folder.iterdir():
            p.unlink()
        folder.rmdir()


def test_the_upstream_token_is_read_under_the_configs_name():
    env = {"PATH": "/bin", "ACME_HUB": "hf_acme", "HF_TOKEN": "hf_default"}
    clean, folder = secret_env.for_local_server(env, "ACME_HUB")
    try:
        assert clean == {"PATH": "/bin"}
        assert secrets_dir.read_secrets_dir(folder) == {"ACME_HUB": "hf_acme"}
    finally:
        for p in folder.iterdir():
            p.unlink()
        folder.rmdir()


def test_no_secret_no_folder():
    clean, folder = secret_env.for_local_server({"PATH": "/bin"}, None)
    assert clean == {"PATH": "/bin"} and folder is None


def test_a_short_admin_token_still_refuses_to_start():
    with pytest.raises(ValueError, match="characters"):
        secret_env.for_local_server({"HUBSERVE_ADMIN_TOKEN": "hf_short"}, None)


def test_the_admin_hash_stands_for_the_token_and_is_checked():
    assert admin_token_hash({ADMIN_HASH_ENV: token_hash(ADMIN).upper()}) == token_hash(ADMIN)
    with pytest.raises(ValueError, match="SHA-256"):
        admin_token_hash({ADMIN_HASH_ENV: ADMIN})


def test_scrub_process_drops_secret_variables_and_keeps_rays():
    env = dict(ENV, RAY_AUTH_TOKEN="ray", RAY_REDIS_PASSWORD="ray-gcs")
    dropped = secret_env.scrub_process(env)
    assert set(dropped) == {"HUBSERVE_ADMIN_TOKEN", "HF_TOKEN", "HUBSERVE_AUTH_DB", "HUBSERVE_REDIS_URL",
                            "AWS_SECRET_ACCESS_KEY", "GITHUB_TOKEN", "PGPASSWORD", "MY_SERVICE_API_KEY",
                            "VAULT_PASSWORD_FILE"}
    assert env["RAY_AUTH_TOKEN"] == "ray" and env["TOKENIZERS_PARALLELISM"] == "false"
    assert secret_env.scrubbed(ENV) == {k: v for k, v in ENV.items() if k in env}


def test_a_secrets_folder_reads_like_a_kubernetes_secret_volume(tmp_path):
    (tmp_path / "..data").mkdir()
    (tmp_path / "..data" / "HF_TOKEN").write_text("hf_x\n")
    os.symlink("..data/HF_TOKEN", tmp_path / "HF_TOKEN")
    (tmp_path / "not a name").write_text("x")
    assert secrets_dir.read_secrets_dir(tmp_path) == {"HF_TOKEN": "hf_x"}
    (tmp_path / "HUGE").write_bytes(b"x" * (secrets_dir.MAX_SECRET_BYTES + 1))
    with pytest.raises(ValueError, match="larger"):
        secrets_dir.read_secrets_dir(tmp_path)


def test_a_replica_config_holds_no_url_of_the_shared_state(tmp_path):
    config = AppConfig.from_args({
        "model_store": str(tmp_path / "store"), "data_dir": str(tmp_path / "data"), "secrets_dir": str(tmp_path),
        "auth": {"db": "postgresql://u:pw@db/hs"},
        "cache": {"backend": "redis", "redis_url": "redis://:pw@r/0"},
        "limits": {"redis_url": "redis://:pw@r/0"}, "hub": {"token_file": str(tmp_path / "token")},
    }, env={})
    replica = secret_env.replica_config(config)
    dumped = str(replica.model_dump(mode="json"))
    assert "pw@" not in dumped and str(tmp_path / "token") not in dumped and replica.secrets_dir is None
    assert AppConfig.model_validate(replica.model_dump(mode="json")).limits == replica.limits
