"""The sandbox as a CDS client: hook calls and feedback to the ipexrx CDS service, signed like a real EHR.

Every request carries ``Authorization: Bearer <JWT>`` signed with the sandbox's own EC P-384 key
(ES384, ``kid`` in the header), ``iss`` the sandbox's base URL, ``aud`` the exact URL called, a
five-minute ``exp`` and a fresh ``jti`` (CDS Hooks 2.0, "Trusting CDS Clients"). ``ipexrx
sandbox`` starts the service with this issuer and its public key in ``IPEXRX_CDS_ISSUERS``
(:func:`issuer_config`), so the service verifies the calls exactly as it would a hospital's.

Hook requests carry the whole prefetch (the service's own templates, filled from the sandbox's
FHIR store), plus ``fhirServer`` and a patient-scoped ``fhirAuthorization`` in case the service
wants more.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec

ALG = "ES384"
TIMEOUT = 30.0


class CdsUnavailable(Exception):
    """The CDS service could not be reached or refused the call (the message is for the page)."""


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


def public_jwk(key: ec.EllipticCurvePrivateKey, kid: str) -> dict[str, Any]:
    jwk: dict[str, Any] = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid=kid, use="sig", alg=ALG)
    return jwk


def issuer_config(issuer: str, key: ec.EllipticCurvePrivateKey, kid: str, fhir_base: str) -> dict[str, Any]:
    """The ``IPEXRX_CDS_ISSUERS`` value that makes the service trust this sandbox."""
    return {issuer: {"jwks": {"keys": [public_jwk(key, kid)]}, "algorithms": [ALG], "fhir_servers": [fhir_base]}}


@dataclass
class CdsClient:
    app_url: str  # the ipexrx service's base URL, before /cds-services
    issuer: str
    key: ec.EllipticCurvePrivateKey
    kid: str
    http: httpx.Client | None = None  # tests hand in the service's TestClient
    services: dict[str, str] = field(default_factory=dict)  # hook -> service id (from discovery)

    def _client(self) -> httpx.Client:
        if self.http is None:
            self.http = httpx.Client(timeout=TIMEOUT, follow_redirects=False)
        return self.http

    def token(self, url: str) -> str:
        now = int(time.time())
        claims = {"iss": self.issuer, "aud": url, "exp": now + 300, "iat": now, "jti": str(uuid.uuid4())}
        return jwt.encode(claims, self.key, algorithm=ALG, headers={"kid": self.kid, "typ": "JWT"})

    def _send(self, method: str, path: str, body: Any = None) -> httpx.Response:
        url = f"{self.app_url}{path}"
        headers = {"Authorization": f"Bearer {self.token(url)}", "Accept": "application/json"}
        try:
            return self._client().request(method, url, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise CdsUnavailable(f"the CDS service at {self.app_url} could not be reached ({type(exc).__name__})") \
                from None

    def service_for(self, hook: str) -> str:
        if not self.services:
            resp = self._send("GET", "/cds-services")
            if resp.status_code != 200:
                raise CdsUnavailable(f"the CDS service's discovery answered {resp.status_code} (expected 200: is "
                                     "the sandbox's key configured in IPEXRX_CDS_ISSUERS?)")
            self.services = {s["hook"]: s["id"] for s in resp.json().get("services", [])}
        if hook not in self.services:
            raise CdsUnavailable(f"the CDS service offers no service for the {hook} hook")
        return self.services[hook]

    def call(self, hook: str, context: dict[str, Any], prefetch: dict[str, Any], fhir_server: str,
             fhir_token: str, patient: str) -> tuple[str, list[dict[str, Any]]]:
        """(the service id called, the cards it returned)."""
        sid = self.service_for(hook)
        body = {"hook": hook, "hookInstance": str(uuid.uuid4()), "fhirServer": fhir_server,
                "fhirAuthorization": {"access_token": fhir_token, "token_type": "Bearer", "expires_in": 300,
                                      "scope": "patient/*.rs", "subject": "ipexrx-sandbox", "patient": patient},
                "context": context, "prefetch": prefetch}
        resp = self._send("POST", f"/cds-services/{sid}", body)
        if resp.status_code != 200:
            raise CdsUnavailable(f"the CDS service answered {resp.status_code} to the {hook} call: "
                                 f"{_message(resp)}")
        cards = resp.json().get("cards")
        return sid, cards if isinstance(cards, list) else []

    def feedback(self, service_id: str, card: str, outcome: str, *, accepted: list[str] | None = None,
                 reason: dict[str, Any] | None = None, comment: str | None = None) -> None:
        item: dict[str, Any] = {"card": card, "outcome": outcome,
                                "outcomeTimestamp": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")}
        if accepted:
            item["acceptedSuggestions"] = [{"id": a} for a in accepted]
        if reason is not None or comment:
            item["overrideReason"] = {k: v for k, v in (("reason", reason), ("userComment", comment)) if v}
        resp = self._send("POST", f"/cds-services/{service_id}/feedback", {"feedback": [item]})
        if resp.status_code != 200:
            raise CdsUnavailable(f"the CDS service answered {resp.status_code} to the feedback: {_message(resp)}")


def _message(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:200] or "no detail"
    if isinstance(body, dict):
        if isinstance(body.get("message"), str):
            return str(body["message"])[:300]
        issues = body.get("issue")
        if isinstance(issues, list) and issues and isinstance(issues[0], dict):
            return str(issues[0].get("diagnostics") or issues[0].get("code"))[:300]
    return "no detail"
