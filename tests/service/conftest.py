"""Fixtures for the service tests: real keys, real signed JWTs, a fresh SQLite database per app."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi.testclient import TestClient

from ipexrx.service import Settings, create_app

ISSUER = "https://ehr.example.org"
BASE = "http://testserver"


@pytest.fixture(scope="session", autouse=True)
def _runtime_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep the default replay-store directories of the apps under test out of the real /dev/shm."""
    import os

    d = tmp_path_factory.mktemp("runtime")
    d.chmod(0o700)
    old = os.environ.get("XDG_RUNTIME_DIR")
    os.environ["XDG_RUNTIME_DIR"] = str(d)
    yield
    if old is None:
        os.environ.pop("XDG_RUNTIME_DIR", None)
    else:
        os.environ["XDG_RUNTIME_DIR"] = old


@pytest.fixture(scope="session")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


@pytest.fixture(scope="session")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def jwks(ec_key: ec.EllipticCurvePrivateKey, rsa_key: rsa.RSAPrivateKey) -> dict[str, Any]:
    ec_jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(ec_key.public_key()))
    ec_jwk.update(kid="ec-1", use="sig", alg="ES384")
    rsa_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key.public_key()))
    rsa_jwk.update(kid="rsa-1", use="sig", alg="RS384")
    return {"keys": [ec_jwk, rsa_jwk]}


TokenFactory = Callable[..., str]


@pytest.fixture(scope="session")
def make_token(ec_key: ec.EllipticCurvePrivateKey, rsa_key: rsa.RSAPrivateKey) -> TokenFactory:
    """Sign a CDS Hooks client JWT; keyword overrides change claims (None removes one) or headers."""

    def factory(aud: str | list[str] | None, *, alg: str = "ES384", kid: str | None = "ec-1", key: Any = None,
                headers: dict[str, Any] | None = None, **claims: Any) -> str:
        now = int(time.time())
        payload: dict[str, Any] = {"iss": ISSUER, "exp": now + 300, "iat": now, "jti": str(uuid.uuid4())}
        if aud is not None:
            payload["aud"] = aud
        for k, v in claims.items():
            if v is None:
                payload.pop(k, None)
            else:
                payload[k] = v
        hdr: dict[str, Any] = {"typ": "JWT"}
        if kid is not None:
            hdr["kid"] = kid
        hdr.update(headers or {})
        if key is None:
            key = rsa_key if alg.startswith(("RS", "PS")) else ec_key
        return jwt.encode(payload, key, algorithm=alg, headers=hdr)

    return factory


@pytest.fixture(scope="session")
def migrated_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One database migrated once per session; tests get a copy (migrations are tested in test_storage)."""
    from ipexrx.storage import Database

    path = tmp_path_factory.mktemp("template") / "template.sqlite3"
    db = Database(f"sqlite:///{path}")
    db.migrate()
    with db.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    db.dispose()
    return path


@pytest.fixture
def db_url(tmp_path: Path, migrated_db: Path) -> str:
    import shutil

    target = tmp_path / "ipexrx.sqlite3"
    shutil.copyfile(migrated_db, target)
    return f"sqlite:///{target}"


@pytest.fixture
def settings(jwks: dict[str, Any], db_url: str) -> Settings:
    return Settings(issuers={ISSUER: {"jwks": jwks}}, database_url=db_url, auto_migrate=False,
                    replay_dir=Path(db_url.removeprefix("sqlite:///")).parent / "seen")


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), base_url=BASE) as c:
        yield c


@pytest.fixture
def dev_client(db_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(dev_mode=True, database_url=db_url, auto_migrate=False)), base_url=BASE) as c:
        yield c


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def auth(make_token: TokenFactory) -> Callable[[str], dict[str, str]]:
    """Headers with a fresh valid token for the given path."""

    def headers(path: str, **claims: Any) -> dict[str, str]:
        return bearer(make_token(BASE + path, **claims))

    return headers
