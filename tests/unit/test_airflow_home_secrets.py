"""An Airflow home's secrets: generated once, kept, and the same for every component started from it."""

from __future__ import annotations

from cryptography.fernet import Fernet

from launchers.airflow_env import airflow_env, home_secrets


def test_secrets_are_generated_once_at_their_recommended_length_and_kept(tmp_path):
    first = home_secrets(tmp_path)
    assert home_secrets(tmp_path) == first
    assert len(first["jwt_secret"]) >= 64 and len(first["api_secret_key"]) >= 64
    Fernet(first["fernet_key"].encode())  # a valid Fernet key


def test_every_component_gets_the_homes_fernet_key(tmp_path):
    # the scheduler encrypts trigger arguments that the triggerer decrypts: one key for both
    a = airflow_env(tmp_path, data_root=tmp_path / "data", port=8080)
    b = airflow_env(tmp_path, data_root=tmp_path / "data", port=8080)
    assert a["AIRFLOW__CORE__FERNET_KEY"] == b["AIRFLOW__CORE__FERNET_KEY"] == home_secrets(tmp_path)["fernet_key"]


def test_an_existing_home_keeps_the_key_its_connections_are_encrypted_with(tmp_path):
    key = Fernet.generate_key().decode()
    (tmp_path / "airflow.cfg").write_text(f"[core]\nfernet_key = {key}\n")
    assert home_secrets(tmp_path)["fernet_key"] == key
