"""The registry service layer: every operation takes the acting user, checks the role and the
centre, validates the input, writes the change and its audit entry in one transaction.

Faces (CLI, JSON API, web forms) call only these functions, so that the rules are enforced in one
place whatever the face. Reads are audited too (who looked at which patient), and so are refusals.
"""

from __future__ import annotations

import datetime as dt
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Engine, event, func, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

from ..storage import Database
from . import audit, throttle
from .errors import Conflict, NotAuthenticated, NotFound, PermissionDenied, RateLimited, ValidationFailed
from .models import (
    AdverseEvent,
    ApiToken,
    Centre,
    Course,
    Hsct,
    ManifestationEpisode,
    Patient,
    TroughLevel,
    User,
    Visit,
)
from .schemas import (
    AdverseEventIn,
    CentreIn,
    CourseIn,
    HsctIn,
    ManifestationIn,
    PatientBundle,
    PatientIn,
    UserIn,
    VisitIn,
    check_references,
    kb_hpo_index,
    parse,
)
from .security import (
    check_csrf,
    csrf_token,
    hash_password,
    new_token,
    password_problems,
    token_digest,
    verify_password,
)

ROLES = ("clinician", "data_manager", "analyst", "admin")
LOGIN_REFUSED = (f"unknown user, wrong password or deactivated account (after {throttle.ACCOUNT_FREE} failed "
                 "sign-ins in a row from one address, that address waits before each further try for that "
                 "username, 1 s at first, doubling)")
USERNAME_MAX: int = getattr(User.__table__.c.username.type, "length", 100)
CENTRE_ROLES = frozenset({"clinician", "data_manager"})
SESSION_HOURS = 12

# action -> roles allowed. Centre roles are further limited to their own centre's patients.
PERMISSIONS: dict[str, frozenset[str]] = {
    "centre.create": frozenset({"admin"}),
    "centre.list": frozenset(ROLES),
    "user.create": frozenset({"admin"}),
    "user.change": frozenset({"admin"}),
    "user.list": frozenset({"admin"}),
    "token.issue": frozenset(ROLES),
    "patient.read": CENTRE_ROLES,
    "patient.write": CENTRE_ROLES,
    "patient.list": CENTRE_ROLES,
    "import": frozenset({"data_manager"}),
    "export.centre": frozenset({"data_manager"}),
    "export.deidentified": frozenset({"data_manager", "analyst"}),
    "analytics": frozenset({"clinician", "data_manager", "analyst"}),
    "audit.verify": frozenset({"admin"}),
    "audit.read": frozenset({"admin"}),
}
PSEUDONYM_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud and retyped safely


@dataclass(frozen=True)
class Actor:
    """Who is acting. ``role='system'`` is the local operator (CLI bootstrap, demo loader, restore)."""

    user_id: int | None
    username: str
    role: str
    centre_id: int | None = None

    def audit(self) -> audit.AuditActor:
        return audit.AuditActor(self.user_id, self.username, self.role)


SYSTEM = Actor(None, "system", "system", None)


def _field(data: Any, name: str) -> str:
    return str(getattr(data, name, None) or (data.get(name) if isinstance(data, dict) else None) or "-")[:60]


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, dt.date | dt.datetime) else v for k, v in row.items()}


def _insert(s: Session, model: Any, rows: list[dict[str, Any]]) -> list[int]:
    """Multi-row INSERT ... RETURNING id, ids in the order of ``rows``."""
    if not rows:
        return []
    from sqlalchemy import insert

    table = model.__table__
    res = s.execute(insert(table).returning(table.c.id, sort_by_parameter_order=True), rows)
    return [int(r[0]) for r in res]


_DUMMY: list[str] = []


def _dummy_hash() -> str:
    if not _DUMMY:
        _DUMMY.append(hash_password(secrets.token_urlsafe(16)))
    return _DUMMY[0]


def _busy(exc: Exception) -> RateLimited:
    """A database that stayed busy past its lock or pool timeout, while signing in: a 429 with
    Retry-After (no token is issued), never a 5xx. Any other database error is re-raised."""
    text = str(exc).lower()
    if isinstance(exc, OperationalError) and "locked" not in text and "timeout" not in text and "busy" not in text:
        raise exc
    return RateLimited(throttle.BUSY.format(s=1), 1)


@contextmanager
def _busy_is_rate_limited() -> Iterator[None]:
    try:
        yield
    except (OperationalError, PoolTimeout) as exc:
        raise _busy(exc) from None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value  # SQLite returns naive UTC


def row_dict(obj: Any, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    out = {}
    for col in obj.__table__.columns:
        if col.key in exclude:
            continue
        v = getattr(obj, col.key)
        out[col.key] = v.isoformat() if isinstance(v, dt.date | dt.datetime) else v
    return out


def _sqlite_immediate(engine: Engine) -> None:
    """Writers take the lock at BEGIN (no lock upgrade deadlocks), fsync at every commit, FKs on."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _rec: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        # read-only transactions (Registry.read_tx) take no write lock: WAL lets them run beside a writer
        conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get(READ_ONLY) else "BEGIN IMMEDIATE")


READ_ONLY = "ipexrx_read_only"


class Registry:
    """One registry database. ``Registry(url)`` migrates the schema on first use."""

    def __init__(self, url: str | None = None, *, migrate: bool = True):
        self.db = Database(url)
        self.url = self.db.url
        if self.db.engine.dialect.name == "sqlite":
            _sqlite_immediate(self.db.engine)
        self.engine = self.db.engine
        if migrate:
            self.db.migrate()
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._read_sessions = sessionmaker(self.engine.execution_options(**{READ_ONLY: True}),
                                           expire_on_commit=False)
        self._local = threading.local()

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def tx(self) -> Iterator[Session]:
        """One transaction: committed on success, rolled back (nothing half-written) on any error.

        A refusal raised inside the transaction is audited after the rollback, in its own transaction.
        """
        self._local.depth = getattr(self._local, "depth", 0) + 1
        try:
            with self._sessions() as s, s.begin():
                yield s
        except PermissionDenied as exc:
            pending = getattr(exc, "pending_audit", None)
            if pending is not None:
                exc.pending_audit = None  # type: ignore[attr-defined]
                self._audit_denial(*pending)
            raise
        finally:
            self._local.depth -= 1

    @contextmanager
    def read_tx(self) -> Iterator[Session]:
        """A transaction that only reads: on SQLite it does not take the write lock (plain BEGIN, so
        WAL readers run beside the writer). Nothing written in it may be relied on."""
        with self._read_sessions() as s, s.begin():
            if self.engine.dialect.name == "postgresql":  # refused by the server if anything writes
                s.execute(text("SET TRANSACTION READ ONLY"))
            yield s

    # ---------------------------------------------------------------------------------------
    # permissions
    # ---------------------------------------------------------------------------------------
    def _audit_denial(self, actor: Actor, action: str, target: str, why: str) -> None:
        with self._sessions() as s, s.begin():
            audit.append(s, actor.audit(), "denied", action, target, centre_id=actor.centre_id, after={"why": why})

    def _denied(self, actor: Actor, action: str, target: str, why: str) -> PermissionDenied:
        exc = PermissionDenied(f"{actor.username} ({actor.role}) may not {action}: {why}")
        exc.pending_audit = (actor, action, target, why)  # type: ignore[attr-defined]
        return exc

    @staticmethod
    def why_not(actor: Actor, action: str, centre_id: int | None = None) -> str | None:
        """None when ``actor`` may do ``action`` (on a patient of ``centre_id``), else the reason."""
        if actor.role == "system":
            return None
        if actor.role not in PERMISSIONS.get(action, frozenset()):
            allowed = ", ".join(sorted(PERMISSIONS.get(action, ()))) or "nobody"
            return f"role '{actor.role}' lacks it (allowed: {allowed})"
        if actor.role in CENTRE_ROLES and centre_id is not None and centre_id != actor.centre_id:
            return "the patient belongs to another centre"
        return None

    def require(self, actor: Actor, action: str, centre_id: int | None = None, target: str = "-") -> None:
        """Raise (and audit) a refusal. Inside a transaction the refusal is audited after its rollback."""
        why = self.why_not(actor, action, centre_id)
        if why is not None:
            exc = self._denied(actor, action, target, why)
            if not getattr(self._local, "depth", 0):
                exc.pending_audit = None  # type: ignore[attr-defined]
                self._audit_denial(actor, action, target, why)
            raise exc

    # ---------------------------------------------------------------------------------------
    # centres and users
    # ---------------------------------------------------------------------------------------
    def create_centre(self, actor: Actor, data: CentreIn | dict[str, Any]) -> int:
        self.require(actor, "centre.create", target=_field(data, "code"))  # refuse before judging the input
        c_in: CentreIn = parse(CentreIn, data, "centre")
        with self.tx() as s:
            if s.scalar(select(Centre.id).where(Centre.code == c_in.code)) is not None:
                raise Conflict(f"centre '{c_in.code}' already exists")
            c = Centre(**c_in.model_dump(), created_at=_now())
            s.add(c)
            s.flush()
            audit.append(s, actor.audit(), "create", "centre", c.id, centre_id=c.id, after=row_dict(c),
                         rows=[(Centre, c.id)])
            return c.id

    def centres(self, actor: Actor) -> list[dict[str, Any]]:
        self.require(actor, "centre.list")
        with self.tx() as s:
            return [row_dict(c) for c in s.scalars(select(Centre).order_by(Centre.code))]

    def _centre_id(self, s: Session, code: str) -> int:
        cid = s.scalar(select(Centre.id).where(Centre.code == code))
        if cid is None:
            known = ", ".join(s.scalars(select(Centre.code).order_by(Centre.code).limit(30)))
            raise NotFound(f"no centre '{code}' (known: {known or 'none yet'})")
        return cid

    def create_user(self, actor: Actor, data: UserIn | dict[str, Any]) -> int:
        self.require(actor, "user.create", target=_field(data, "username"))
        u_in: UserIn = parse(UserIn, data, "user")
        problems = password_problems(u_in.password, u_in.username)
        if problems:
            raise ValidationFailed(problems, "user")
        pw_hash = hash_password(u_in.password)
        with self.tx() as s:
            if s.scalar(select(User.id).where(User.username == u_in.username)) is not None:
                raise Conflict(f"user '{u_in.username}' already exists")
            cid = self._centre_id(s, u_in.centre_code) if u_in.centre_code else None
            u = User(username=u_in.username, password_hash=pw_hash, role=u_in.role, centre_id=cid, active=True,
                     created_at=_now())
            s.add(u)
            s.flush()
            audit.append(s, actor.audit(), "create", "user", u.id, centre_id=cid,
                         after=row_dict(u, exclude=("password_hash",)), rows=[(User, u.id)])
            return u.id

    def change_user(self, actor: Actor, username: str, *, role: str | None = None, centre_code: str | None = None,
                    active: bool | None = None) -> None:
        """Permission change (role, centre, active): audited with before and after."""
        self.require(actor, "user.change", target=username)
        if role is not None and role not in ROLES:
            raise ValidationFailed([f"role: expected one of {', '.join(ROLES)}, got '{role}'"], "user change")
        with self.tx() as s:
            u = s.scalar(select(User).where(User.username == username))
            if u is None:
                raise NotFound(f"no user '{username}'")
            before = row_dict(u, exclude=("password_hash",))
            if role is not None:
                u.role = role
            if centre_code is not None:
                u.centre_id = self._centre_id(s, centre_code) if centre_code else None
            if active is not None:
                u.active = active
            if u.role in CENTRE_ROLES and u.centre_id is None:
                raise ValidationFailed([f"a {u.role} belongs to a centre: give centre_code"], "user change")
            if u.role not in CENTRE_ROLES:
                u.centre_id = None
            rows: list[audit.RowRef] = [(User, u.id)]
            if not active and active is not None:
                for t in s.scalars(select(ApiToken).where(ApiToken.user_id == u.id, ApiToken.revoked_at.is_(None))):
                    t.revoked_at = _now()
                    rows.append((ApiToken, t.id))
            s.flush()
            audit.append(s, actor.audit(), "permission-change", "user", u.id, centre_id=u.centre_id,
                         before=before, after=row_dict(u, exclude=("password_hash",)), rows=rows)

    def users(self, actor: Actor) -> list[dict[str, Any]]:
        self.require(actor, "user.list")
        with self.tx() as s:
            rows = [row_dict(u, exclude=("password_hash",)) for u in s.scalars(select(User).order_by(User.username))]
            audit.append(s, actor.audit(), "read", "user", "*", after={"count": len(rows)})
            return rows

    def has_users(self) -> bool:
        with self.tx() as s:
            return bool(s.scalar(select(func.count()).select_from(User)))

    def _actor(self, u: User) -> Actor:
        return Actor(u.id, u.username, u.role, u.centre_id)

    def authenticate(self, username: str, password: str, source: str | None = None) -> Actor:
        """Check a password; every attempt that is checked is audited, with its source address.

        Order (so that sign-in floods never queue on the database's write lock): a read-only look at
        the user and the throttle (:mod:`.throttle`; a pair in back-off gets :class:`RateLimited`
        without a hash check), then the Argon2 check outside any transaction (at most
        ``throttle.HASH_SLOTS`` at once), then one short write transaction recording the outcome.
        The answer is the same whatever the reason (unknown user, wrong password, deactivated
        account), and each checked attempt costs one hash verification, so neither the message nor
        the timing tells which usernames exist. ``source``: the client's address (None: local)."""
        now = _now()
        keys = throttle.Keys.of(username, source)
        known = len(username) <= USERNAME_MAX  # a longer name cannot exist: no lookup, same answer
        cur: User | None = None
        try:
            with self.read_tx() as s:
                u = s.scalar(select(User).where(User.username == username)) if known else None
                state = throttle.load(s, keys, now)
            with throttle.attempt(keys, state, now):
                ok, upgraded = verify_password(u.password_hash if u is not None else _dummy_hash(), password)
            ok = ok and u is not None and u.active
            src = source or throttle.LOCAL_SOURCE
            with self.tx() as s:
                if ok and u is not None:
                    cur = s.get(User, u.id, populate_existing=True)
                    ok = cur is not None and cur.active and cur.password_hash == u.password_hash
                if ok and cur is not None:
                    throttle.record_success(s, keys)
                    rows: list[audit.RowRef] = []
                    if upgraded:
                        cur.password_hash = upgraded
                        s.flush()
                        rows = [(User, cur.id)]
                    audit.append(s, self._actor(cur).audit(), "login", "user", cur.id, centre_id=cur.centre_id,
                                 after={"source": src}, rows=rows)
                    return self._actor(cur)
                started = throttle.record_failure(s, keys, now)
                audit.append(s, audit.AuditActor(None, username, "anonymous"), "login-failed", "user", username,
                             after={"source": src})
                if started:
                    audit.append(s, audit.AuditActor(None, username, "anonymous"), "login-throttled", "user",
                                 username, after={"source": src, "wait_seconds": started})
                throttle.purge(s, now)
        except (OperationalError, PoolTimeout) as exc:
            raise _busy(exc) from None
        raise NotAuthenticated(LOGIN_REFUSED)

    def issue_token(self, actor: Actor, label: str = "", *, kind: str = "api", ttl_days: int | None = 90) -> str:
        """A new bearer token for the acting user. The plain token is returned once and never stored."""
        self.require(actor, "token.issue")
        if actor.user_id is None:
            raise PermissionDenied("tokens belong to a user account; the system operator has none")
        token = new_token()
        with _busy_is_rate_limited(), self.tx() as s:
            t = ApiToken(user_id=actor.user_id, token_hash=token_digest(token), kind=kind, label=label[:100],
                         created_at=_now(), expires_at=_now() + dt.timedelta(days=ttl_days) if ttl_days else None)
            s.add(t)
            s.flush()
            audit.append(s, actor.audit(), "issue-token", "token", t.id, centre_id=actor.centre_id,
                         after={"kind": kind, "label": t.label, "expires_at": t.expires_at}, rows=[(ApiToken, t.id)])
        return token

    def start_session(self, username: str, password: str, hours: int = SESSION_HOURS,
                      source: str | None = None) -> tuple[str, str]:
        """Web login: (session token for an HttpOnly cookie, CSRF token for the forms of that session).

        The CSRF token is derived from the session token (HMAC), so nothing more is stored, and a
        form posted from another site cannot carry it (it never sees the cookie's value).
        """
        actor = self.authenticate(username, password, source)
        if actor.user_id is None:  # pragma: no cover - authenticate only returns real users
            raise NotAuthenticated("no user")
        token = new_token()
        with _busy_is_rate_limited(), self.tx() as s:
            t = ApiToken(user_id=actor.user_id, token_hash=token_digest(token), kind="session", label="web",
                         created_at=_now(), expires_at=_now() + dt.timedelta(hours=hours))
            s.add(t)
            s.flush()
            audit.append(s, actor.audit(), "issue-token", "token", t.id, centre_id=actor.centre_id,
                         after={"kind": "session", "expires_at": t.expires_at}, rows=[(ApiToken, t.id)])
        return token, csrf_token(token)

    def actor_for_form(self, session_token: str, csrf: str | None) -> Actor:
        """The user of a web session posting a form: the session must be valid and the CSRF token match."""
        if not csrf or not check_csrf(session_token, csrf):
            raise PermissionDenied("the form's security token is missing or does not match your sign-in; reload "
                                   "the form and submit again")
        return self.actor_for_token(session_token)

    def revoke_token(self, actor: Actor, token: str) -> None:
        with self.tx() as s:
            t = s.scalar(select(ApiToken).where(ApiToken.token_hash == token_digest(token)))
            if t is None or (t.user_id != actor.user_id and actor.role not in ("admin", "system")):
                raise NotFound("no such token for this user")
            t.revoked_at = _now()
            s.flush()
            audit.append(s, actor.audit(), "revoke-token", "token", t.id, centre_id=actor.centre_id,
                         rows=[(ApiToken, t.id)])

    def actor_for_token(self, token: str) -> Actor:
        with self.tx() as s:
            row = s.execute(
                select(ApiToken, User).join(User, User.id == ApiToken.user_id)
                .where(ApiToken.token_hash == token_digest(token))
            ).first()
            if row is None:
                raise NotAuthenticated("unknown token")
            t, u = row
            exp = _utc(t.expires_at) if t.expires_at is not None else None
            if t.revoked_at is not None or not u.active or (exp is not None and exp < _now()):
                raise NotAuthenticated("token revoked or expired, or the account is deactivated")
            return self._actor(u)

    # ---------------------------------------------------------------------------------------
    # patients
    # ---------------------------------------------------------------------------------------
    def _new_pseudonym(self, s: Session, centre_code: str) -> str:
        while True:
            p = f"{centre_code}-" + "".join(secrets.choice(PSEUDONYM_ALPHABET) for _ in range(8))
            if s.scalar(select(Patient.id).where(Patient.pseudonym == p)) is None:
                return p

    def add_patient(self, actor: Actor, data: PatientBundle | PatientIn | dict[str, Any]) -> str:
        """Create a patient (optionally with the whole follow-up); return the registry pseudonym."""
        self.require(actor, "patient.write")  # the role first; the centre once the input names it
        if isinstance(data, PatientIn) or (isinstance(data, dict) and "patient" not in data):
            data = {"patient": data}
        bundle: PatientBundle = parse(PatientBundle, data, "patient")
        return self.add_bundles(actor, [bundle])[0]

    def add_bundles(self, actor: Actor, bundles: list[PatientBundle], action: str = "create") -> list[str]:
        """Write several patients in ONE transaction (import): all or none. One audit entry per patient."""
        problems: list[str] = []
        for i, b in enumerate(bundles):
            problems += [(f"patient {i + 1}: " if len(bundles) > 1 else "") + p for p in check_references(b)]
        if problems:
            raise ValidationFailed(problems, "patient" if len(bundles) == 1 else f"import of {len(bundles)} patients")
        hpo = kb_hpo_index()
        items: list[tuple[PatientBundle, int, str]] = []
        with self.tx() as s:
            codes: dict[str, int] = {}
            for b in bundles:
                code = b.patient.centre_code
                if code is None:
                    if actor.centre_id is None:
                        raise ValidationFailed(["centre_code: required (the acting user has no centre)"], "patient")
                    cid = actor.centre_id
                    code = s.scalar(select(Centre.code).where(Centre.id == cid)) or ""
                else:
                    cid = codes.get(code) or self._centre_id(s, code)
                codes[code] = cid
                self.require(actor, "import" if action == "import" else "patient.write", cid, target=code)
                items.append((b, cid, code))
            return self._write_bundles(s, actor, items, hpo, action)

    def _write_bundles(self, s: Session, actor: Actor, items: list[tuple[PatientBundle, int, str]],
                       hpo: dict[str, tuple[str, str]], action: str) -> list[str]:
        """Insert validated bundles with one multi-row INSERT per table (not per patient), then one
        audit entry per patient holding everything written for them. Same transaction as the caller."""
        now = _now()
        pseudonyms = self._new_pseudonyms(s, [code for _, _, code in items])
        prow = [{"pseudonym": ps, "centre_id": cid, **b.patient.model_dump(exclude={"centre_code"}),
                 "created_at": now, "updated_at": now} for ps, (b, cid, _) in zip(pseudonyms, items, strict=True)]
        pids = _insert(s, Patient, prow)
        for r, i in zip(prow, pids, strict=True):
            r["id"] = i
        per: list[dict[str, list[dict[str, Any]]]] = [
            {"manifestations": [], "courses": [], "visits": [], "adverse_events": [], "hsct": [], "troughs": []}
            for _ in items]
        rows: dict[str, list[dict[str, Any]]] = {k: [] for k in per[0]}
        owner: dict[str, list[int]] = {k: [] for k in per[0]}

        def add(kind: str, k: int, row: dict[str, Any]) -> None:
            rows[kind].append(row)
            owner[kind].append(k)
            per[k][kind].append(row)

        for k, ((b, _, _), pid) in enumerate(zip(items, pids, strict=True)):
            for m in b.manifestations:
                add("manifestations", k, {"patient_id": pid, "hpo_code": m.hpo_code,
                                          "manifestation_id": hpo[m.hpo_code][0], "onset_date": m.onset_date,
                                          "resolution_date": m.resolution_date})
            for c in b.courses:
                add("courses", k, {"patient_id": pid, **c.model_dump(exclude={"troughs"})})
            for v in b.visits:
                add("visits", k, {"patient_id": pid, **v.model_dump(exclude={"organs"}), "organs": ";".join(v.organs)})
            for h in b.hsct:
                add("hsct", k, {"patient_id": pid, **h.model_dump()})
        first: list[tuple[str, Any]] = [("manifestations", ManifestationEpisode), ("courses", Course),
                                        ("visits", Visit), ("hsct", Hsct)]
        for kind, model in first:
            for r, i in zip(rows[kind], _insert(s, model, rows[kind]), strict=True):
                r["id"] = i
        for k, (b, _, _) in enumerate(items):
            course_ids = [c["id"] for c in per[k]["courses"]]
            for c, cid_ in zip(b.courses, course_ids, strict=True):
                for t in c.troughs:
                    add("troughs", k, {"course_id": cid_, "date": t.date, "value_ng_ml": t.value_ng_ml})
            for a in b.adverse_events:
                add("adverse_events", k, {"patient_id": pids[k], "serious": a.serious, "date": a.date, "term": a.term,
                                          "grade": a.grade,
                                          "course_id": course_ids[a.course_index] if a.course_index is not None
                                          else None})
        second: list[tuple[str, Any]] = [("troughs", TroughLevel), ("adverse_events", AdverseEvent)]
        for kind, model in second:
            for r, i in zip(rows[kind], _insert(s, model, rows[kind]), strict=True):
                r["id"] = i
        models = {"manifestations": ManifestationEpisode, "courses": Course, "visits": Visit,
                  "adverse_events": AdverseEvent, "hsct": Hsct, "troughs": TroughLevel}
        audit.append_many(s, actor.audit(), [
            (action, "patient", r["pseudonym"], r["centre_id"], None,
             {"patient": _jsonable(r), **{kind: [_jsonable(x) for x in xs] for kind, xs in per[k].items()}})
            for k, r in enumerate(prow)],
            row_refs=[[(Patient, r["id"])] + [(models[kind], x["id"]) for kind, xs in per[k].items() for x in xs]
                  for k, r in enumerate(prow)])
        return pseudonyms

    def _new_pseudonyms(self, s: Session, centre_codes: list[str]) -> list[str]:
        out: list[str] = []
        while len(out) < len(centre_codes):
            cand = [f"{code}-" + "".join(secrets.choice(PSEUDONYM_ALPHABET) for _ in range(8))
                    for code in centre_codes[len(out):]]
            taken = set(s.scalars(select(Patient.pseudonym).where(Patient.pseudonym.in_(cand)))) if cand else set()
            seen = set(out)
            for c in cand:
                if c in taken or c in seen:
                    break  # regenerate from here (astronomically rare: 32^8 per centre)
                out.append(c)
                seen.add(c)
        return out

    def _scoped_patient(self, actor: Actor, s: Session, pseudonym: str, action: str) -> Patient:
        self.require(actor, action, target=pseudonym)
        p = s.scalar(select(Patient).where(Patient.pseudonym == pseudonym))
        if p is None:
            raise NotFound(f"no patient '{pseudonym}'")
        self.require(actor, action, p.centre_id, target=pseudonym)
        return p

    def get_patient(self, actor: Actor, pseudonym: str) -> dict[str, Any]:
        """The full record of one patient of the actor's centre (audited read)."""
        with self.tx() as s:
            p = self._scoped_patient(actor, s, pseudonym, "patient.read")
            rec = patient_record(s, p)
            audit.append(s, actor.audit(), "read", "patient", pseudonym, centre_id=p.centre_id)
            return rec

    def list_patients(self, actor: Actor) -> list[dict[str, Any]]:
        self.require(actor, "patient.list")
        with self.tx() as s:
            stmt = select(Patient).order_by(Patient.pseudonym)
            if actor.role != "system":
                stmt = stmt.where(Patient.centre_id == actor.centre_id)
            rows = [{k: v for k, v in row_dict(p).items() if k in SUMMARY_FIELDS} for p in s.scalars(stmt)]
            audit.append(s, actor.audit(), "list", "patient", "*", centre_id=actor.centre_id,
                         after={"count": len(rows)})
            return rows

    def update_patient(self, actor: Actor, pseudonym: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Change core fields (vital status, follow-up, consent...): validated as a whole, audited before/after."""
        with self.tx() as s:
            p = self._scoped_patient(actor, s, pseudonym, "patient.write")
            before = row_dict(p)
            current = {k: getattr(p, k) for k in PatientIn.model_fields if k != "centre_code"}
            unknown = sorted(set(changes) - set(current))
            if unknown:
                raise ValidationFailed([f"{k}: not a changeable patient field" for k in unknown], "patient change")
            new: PatientIn = parse(PatientIn, {**current, **changes}, "patient change")
            rec = patient_record(s, p)
            problems = check_references(_bundle_from_record(new, rec))
            if problems:
                raise ValidationFailed(problems, "patient change")
            for k, v in new.model_dump(exclude={"centre_code"}).items():
                setattr(p, k, v)
            p.updated_at = _now()
            s.flush()
            after = row_dict(p)
            audit.append(s, actor.audit(), "update", "patient", pseudonym, centre_id=p.centre_id,
                         before={k: before[k] for k in changes}, after={k: after[k] for k in changes},
                         rows=[(Patient, p.id)])
            return after

    def withdraw_consent(self, actor: Actor, pseudonym: str, date: dt.date) -> None:
        """From this date the patient leaves analyses and exports; the record stays for the audit trail."""
        self.update_patient(actor, pseudonym, {"consent_withdrawn_date": date})

    def _add_child(self, actor: Actor, pseudonym: str, field: str, model: type, data: Any) -> int:
        self.require(actor, "patient.write", target=pseudonym)
        item = parse(model, data, field.rstrip("s").replace("_", " "))
        with self.tx() as s:
            p = self._scoped_patient(actor, s, pseudonym, "patient.write")
            rec = patient_record(s, p)
            bundle = _bundle_from_record(PatientIn.model_validate(
                {k: getattr(p, k) for k in PatientIn.model_fields if k != "centre_code"}), rec)
            getattr(bundle, field).append(item)
            prefix = f"{field}.{len(getattr(bundle, field)) - 1}"
            problems = [x for x in check_references(bundle) if x.startswith(prefix)]
            if problems:
                raise ValidationFailed(problems, field.rstrip("s").replace("_", " "))
            hpo = kb_hpo_index()
            obj: Any
            if field == "manifestations":
                obj = ManifestationEpisode(patient_id=p.id, manifestation_id=hpo[item.hpo_code][0], **item.model_dump())
            elif field == "courses":
                obj = Course(patient_id=p.id, **item.model_dump(exclude={"troughs"}))
            elif field == "visits":
                obj = Visit(patient_id=p.id, **item.model_dump(exclude={"organs"}), organs=";".join(item.organs))
            elif field == "adverse_events":
                obj = AdverseEvent(patient_id=p.id, **item.model_dump(exclude={"course_index"}))
            else:
                obj = Hsct(patient_id=p.id, **item.model_dump())
            s.add(obj)
            s.flush()
            after = row_dict(obj)
            if field == "courses":
                tr = [TroughLevel(course_id=obj.id, date=t.date, value_ng_ml=t.value_ng_ml) for t in item.troughs]
                s.add_all(tr)
                s.flush()
                after["troughs"] = [row_dict(t) for t in tr]
            p.updated_at = _now()
            s.flush()
            written: list[audit.RowRef] = [(Patient, p.id), (type(obj), obj.id)]
            if field == "courses":
                written += [(TroughLevel, t.id) for t in tr]
            audit.append(s, actor.audit(), "create", model.__name__.removesuffix("In").lower(), obj.id,
                         centre_id=p.centre_id, after={"patient": pseudonym, **after}, rows=written)
            return int(obj.id)

    def add_manifestation(self, actor: Actor, pseudonym: str, data: ManifestationIn | dict[str, Any]) -> int:
        return self._add_child(actor, pseudonym, "manifestations", ManifestationIn, data)

    def add_course(self, actor: Actor, pseudonym: str, data: CourseIn | dict[str, Any]) -> int:
        return self._add_child(actor, pseudonym, "courses", CourseIn, data)

    def add_visit(self, actor: Actor, pseudonym: str, data: VisitIn | dict[str, Any]) -> int:
        return self._add_child(actor, pseudonym, "visits", VisitIn, data)

    def add_adverse_event(self, actor: Actor, pseudonym: str, data: AdverseEventIn | dict[str, Any]) -> int:
        return self._add_child(actor, pseudonym, "adverse_events", AdverseEventIn, data)

    def add_hsct(self, actor: Actor, pseudonym: str, data: HsctIn | dict[str, Any]) -> int:
        return self._add_child(actor, pseudonym, "hsct", HsctIn, data)

    def stop_course(self, actor: Actor, pseudonym: str, course_id: int, stop_date: dt.date, reason: str,
                    reason_other: str | None = None) -> None:
        with self.tx() as s:
            p = self._scoped_patient(actor, s, pseudonym, "patient.write")
            c = s.get(Course, course_id)
            if c is None or c.patient_id != p.id:
                raise NotFound(f"no course {course_id} for patient {pseudonym}")
            before = row_dict(c)
            fields = {k: getattr(c, k) for k in CourseIn.model_fields if k != "troughs"}
            new: CourseIn = parse(CourseIn, {**fields, "stop_date": stop_date, "reason_stopped": reason,
                                             "reason_other": reason_other}, "course stop")
            if p.death_date and stop_date > p.death_date:
                raise ValidationFailed([f"stop_date: {stop_date} is after death ({p.death_date})"], "course stop")
            c.stop_date, c.reason_stopped, c.reason_other = new.stop_date, new.reason_stopped, new.reason_other
            s.flush()
            audit.append(s, actor.audit(), "update", "course", c.id, centre_id=p.centre_id, before=before,
                         after=row_dict(c), rows=[(Course, c.id)])

    # ---------------------------------------------------------------------------------------
    # audit
    # ---------------------------------------------------------------------------------------
    def verify_audit(self, actor: Actor, expect_head: str | None = None) -> audit.VerifyResult:
        self.require(actor, "audit.verify")
        with self.tx() as s:
            result = audit.verify(s, expect_head)
        with self.tx() as s:
            audit.append(s, actor.audit(), "verify", "audit", result.head_seq,
                         after={"ok": result.ok, "entries": result.entries, "problems": len(result.problems)})
        return result


SUMMARY_FIELDS = ("pseudonym", "birth_year", "birth_month", "sex", "diagnosis", "gene", "diagnosis_date",
                  "vital_status", "last_followup_date", "consent_withdrawn_date", "synthetic")


def patient_record(s: Session, p: Patient) -> dict[str, Any]:
    """The whole record of a patient as plain JSON-ready dicts."""
    courses = list(s.scalars(select(Course).where(Course.patient_id == p.id).order_by(Course.start_date, Course.id)))
    troughs: dict[int, list[dict[str, Any]]] = {}
    if courses:
        for t in s.scalars(select(TroughLevel).where(TroughLevel.course_id.in_([c.id for c in courses]))
                           .order_by(TroughLevel.date)):
            troughs.setdefault(t.course_id, []).append(row_dict(t))
    centre_code = s.scalar(select(Centre.code).where(Centre.id == p.centre_id))
    return {
        "patient": {**row_dict(p), "centre_code": centre_code},
        "manifestations": [row_dict(m) for m in s.scalars(
            select(ManifestationEpisode).where(ManifestationEpisode.patient_id == p.id)
            .order_by(ManifestationEpisode.onset_date, ManifestationEpisode.id))],
        "courses": [{**row_dict(c), "troughs": troughs.get(c.id, [])} for c in courses],
        "visits": [row_dict(v) for v in s.scalars(select(Visit).where(Visit.patient_id == p.id)
                                                  .order_by(Visit.date, Visit.id))],
        "adverse_events": [row_dict(a) for a in s.scalars(select(AdverseEvent).where(AdverseEvent.patient_id == p.id)
                                                          .order_by(AdverseEvent.date, AdverseEvent.id))],
        "hsct": [row_dict(h) for h in s.scalars(select(Hsct).where(Hsct.patient_id == p.id).order_by(Hsct.date))],
    }


def _bundle_from_record(pt: PatientIn, rec: dict[str, Any]) -> PatientBundle:
    """Rebuild a bundle from stored rows so that cross-record checks run on the record as it would become."""

    def pick(model: type[BaseModel], row: dict[str, Any]) -> Any:
        return model.model_validate({k: v for k, v in row.items() if k in model.model_fields})

    return PatientBundle.model_construct(
        patient=pt,
        manifestations=[pick(ManifestationIn, m) for m in rec["manifestations"]],
        courses=[pick(CourseIn, {**c, "troughs": [{"date": t["date"], "value_ng_ml": t["value_ng_ml"]}
                                                  for t in c["troughs"]]}) for c in rec["courses"]],
        visits=[pick(VisitIn, {**v, "organs": [o for o in v["organs"].split(";") if o]}) for v in rec["visits"]],
        adverse_events=[pick(AdverseEventIn, a) for a in rec["adverse_events"]],
        hsct=[pick(HsctIn, h) for h in rec["hsct"]],
    )
