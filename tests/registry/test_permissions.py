"""Every role against every registry operation, including the other centre's patients.

The expected table is written out here by hand (the specification), not derived from
``PERMISSIONS``, so that a change to the code's table shows up as a failing test."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select

from ipexrx.registry import PermissionDenied, ops
from ipexrx.registry.models import AuditEntry

from .conftest import PASSWORD, World

OPS: dict[str, Callable[[World, Any], Any]] = {
    "create centre": lambda w, a: w.reg.create_centre(a, {"code": "CTR-NEW", "name": "New"}),
    "create user": lambda w, a: w.reg.create_user(a, {"username": "new.user", "password": PASSWORD,
                                                      "role": "analyst"}),
    "change role": lambda w, a: w.reg.change_user(a, "analyst.user", role="admin"),
    "list users": lambda w, a: w.reg.users(a),
    "list centres": lambda w, a: w.reg.centres(a),
    "issue token": lambda w, a: w.reg.issue_token(a, "script"),
    "read own-centre patient": lambda w, a: w.reg.get_patient(a, w.pa),
    "read other-centre patient": lambda w, a: w.reg.get_patient(a, w.pb),
    "list patients": lambda w, a: w.reg.list_patients(a),
    "create patient": lambda w, a: w.reg.add_patient(a, {"patient": _p("CTR-A")}),
    "create patient in other centre": lambda w, a: w.reg.add_patient(a, {"patient": _p("CTR-B")}),
    "add visit own centre": lambda w, a: w.reg.add_visit(a, w.pa, {"date": "2020-01-10", "oi_score": 2}),
    "add visit other centre": lambda w, a: w.reg.add_visit(a, w.pb, {"date": "2020-01-10", "oi_score": 2}),
    "update patient own centre": lambda w, a: w.reg.update_patient(a, w.pa, {"last_followup_date": "2021-01-01"}),
    "update patient other centre": lambda w, a: w.reg.update_patient(a, w.pb, {"last_followup_date": "2021-01-01"}),
    "withdraw consent other centre": lambda w, a: w.reg.withdraw_consent(a, w.pb, dt.date(2021, 1, 1)),
    "export centre (pseudonymised)": lambda w, a: ops.export_centre(w.reg, a),
    "export de-identified": lambda w, a: ops.export_deidentified(w.reg, a),
    "analytics report": lambda w, a: ops.analytics_report(w.reg, a),
    "verify audit": lambda w, a: w.reg.verify_audit(a),
}

ALLOWED: dict[str, set[str]] = {
    "create centre": {"admin"},
    "create user": {"admin"},
    "change role": {"admin"},
    "list users": {"admin"},
    "list centres": {"clinician", "data_manager", "analyst", "admin"},
    "issue token": {"clinician", "data_manager", "analyst", "admin"},
    "read own-centre patient": {"clinician", "data_manager"},
    "read other-centre patient": set(),
    "list patients": {"clinician", "data_manager"},
    "create patient": {"clinician", "data_manager"},
    "create patient in other centre": set(),
    "add visit own centre": {"clinician", "data_manager"},
    "add visit other centre": set(),
    "update patient own centre": {"clinician", "data_manager"},
    "update patient other centre": set(),
    "withdraw consent other centre": set(),
    "export centre (pseudonymised)": {"data_manager"},
    "export de-identified": {"data_manager", "analyst"},
    "analytics report": {"clinician", "data_manager", "analyst"},
    "verify audit": {"admin"},
}
ROLES = ("clinician", "data_manager", "analyst", "admin")


def _p(centre: str) -> dict[str, Any]:
    from .conftest import patient_data

    return patient_data(centre)


def test_every_operation_has_an_expectation() -> None:
    assert set(OPS) == set(ALLOWED)


@pytest.mark.parametrize("role", ROLES)
def test_role_against_every_operation(world: World, role: str) -> None:
    actor = world.actors[role]
    for name, op in OPS.items():
        if role in ALLOWED[name]:
            op(world, actor)
        else:
            with world.reg.tx() as s:
                before = s.scalar(select(AuditEntry.seq).order_by(AuditEntry.seq.desc()).limit(1))
            with pytest.raises(PermissionDenied):
                op(world, actor)
            with world.reg.tx() as s:  # the refusal itself is in the audit log
                last = s.scalars(select(AuditEntry).where(AuditEntry.seq > before)).all()
            assert [e.action for e in last] == ["denied"], name
            assert last[0].username == actor.username
    assert world.reg.verify_audit(world.actors["admin"]).ok


def test_centre_user_lists_only_own_centre(world: World) -> None:
    rows = world.reg.list_patients(world.actors["clinician"])
    assert [r["pseudonym"] for r in rows] == [world.pa]


def test_analyst_report_is_pooled_and_centre_report_is_scoped(world: World) -> None:
    pooled = ops.analytics_report(world.reg, world.actors["analyst"])
    assert pooled.patients == 2 and pooled.followup_due == []  # the pooled report names no patient
    own = ops.analytics_report(world.reg, world.actors["clinician"])
    assert own.patients == 1 and [p for p, _ in own.followup_due] == [world.pa]


def test_deidentified_export_has_no_pseudonym_or_centre(world: World) -> None:
    out = ops.export_deidentified(world.reg, world.actors["analyst"])
    flat = repr(out)
    assert world.pa not in flat and world.pb not in flat and "CTR-A" not in flat
    assert {r["subject"] for r in out["patient"]} == {"DEID-000001", "DEID-000002"}


def test_tokens_authenticate_and_are_stored_hashed(world: World) -> None:
    from ipexrx.registry import NotAuthenticated
    from ipexrx.registry.models import ApiToken

    token = world.reg.issue_token(world.actors["clinician"], "script")
    assert world.reg.actor_for_token(token).username == "clinician.user"
    with world.reg.tx() as s:
        stored = s.scalars(select(ApiToken.token_hash)).all()
    assert token not in stored and len(stored[0]) == 64
    world.reg.revoke_token(world.actors["clinician"], token)
    with pytest.raises(NotAuthenticated):
        world.reg.actor_for_token(token)


def test_deactivated_user_cannot_log_in_and_loses_tokens(world: World) -> None:
    from ipexrx.registry import NotAuthenticated

    token = world.reg.issue_token(world.actors["analyst"], "x")
    world.reg.change_user(world.actors["admin"], "analyst.user", active=False)
    with pytest.raises(NotAuthenticated):
        world.reg.authenticate("analyst.user", PASSWORD)
    with pytest.raises(NotAuthenticated):
        world.reg.actor_for_token(token)


def test_passwords_are_argon2id_hashes(world: World) -> None:
    from ipexrx.registry.models import User

    with world.reg.tx() as s:
        hashes = s.scalars(select(User.password_hash)).all()
    assert all(h.startswith("$argon2id$") for h in hashes)
    assert all(PASSWORD not in h for h in hashes)


def test_wrong_password_is_refused_and_audited(world: World) -> None:
    from ipexrx.registry import NotAuthenticated

    with pytest.raises(NotAuthenticated):
        world.reg.authenticate("clinician.user", "not the password at all")
    with world.reg.tx() as s:
        last = s.scalars(select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(1)).one()
    assert (last.action, last.entity_id) == ("login-failed", "clinician.user")


def test_permission_change_is_audited_with_before_and_after(world: World) -> None:
    import json

    world.reg.change_user(world.actors["admin"], "analyst.user", role="data_manager", centre_code="CTR-B")
    with world.reg.tx() as s:
        e = s.scalars(select(AuditEntry).where(AuditEntry.action == "permission-change")).one()
    assert json.loads(e.before)["role"] == "analyst" and json.loads(e.after)["role"] == "data_manager"


@pytest.mark.real_argon2
def test_production_hasher_uses_rfc9106_parameters() -> None:
    from argon2 import Type, extract_parameters

    from ipexrx.registry.security import hash_password, verify_password

    h = hash_password("correct horse battery staple")
    params = extract_parameters(h)
    assert params.type is Type.ID and params.memory_cost >= 65536 and params.time_cost >= 3
    assert verify_password(h, "correct horse battery staple") == (True, None)
    assert verify_password(h, "wrong")[0] is False


def test_web_session_needs_the_matching_csrf_token(world: World) -> None:
    session, csrf = world.reg.start_session("clinician.user", PASSWORD)
    assert world.reg.actor_for_form(session, csrf).username == "clinician.user"
    other_session, other_csrf = world.reg.start_session("clin.b", PASSWORD)
    for bad in (None, "", other_csrf, csrf[:-1] + ("0" if csrf[-1] != "0" else "1")):
        with pytest.raises(PermissionDenied, match="security token"):
            world.reg.actor_for_form(session, bad)
    from ipexrx.registry.models import ApiToken

    with world.reg.tx() as s:
        kinds = s.scalars(select(ApiToken.kind)).all()
    assert kinds.count("session") == 2
