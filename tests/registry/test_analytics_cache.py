"""The analytics report is computed once per version of the registry's data, scope and filters
(:mod:`ipexrx.registry.analytics_cache`): a second view is served from the cache (the computation is
not run again), any write (also by another process) makes the next view recompute, and roles, centres
and filters never share a cached report."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from ipexrx.registry import SYSTEM, Registry, analytics, ops
from ipexrx.registry.analytics_cache import REPORTS, ReportCache

from .conftest import PASSWORD, World, patient_data

AS_OF = dt.date(2026, 6, 30)


@pytest.fixture
def computed(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[int | None, str]]]:
    """Every run of the report's computation, as (centre id, scope); an empty cache to start."""
    calls: list[tuple[int | None, str]] = []
    real = analytics.compute_report

    def counting(s: Any, centre_id: int | None, scope: str, *args: Any, **kw: Any) -> analytics.Report:
        calls.append((centre_id, scope))
        return real(s, centre_id, scope, *args, **kw)

    REPORTS.clear()
    monkeypatch.setattr(analytics, "compute_report", counting)
    yield calls
    REPORTS.clear()


def test_a_second_view_is_served_from_the_cache(world: World, computed: list[Any]) -> None:
    analyst = world.actors["analyst"]
    first = ops.analytics_report(world.reg, analyst, AS_OF)
    second = ops.analytics_report(world.reg, analyst, AS_OF)
    assert len(computed) == 1  # the second view did not compute
    assert second is not first and second == first  # the same report, the caller's own copy
    assert (second.patients, second.scope) == (2, "all centres (pooled)")


def test_any_write_makes_the_next_view_recompute(world: World, computed: list[Any]) -> None:
    reg, clinician, analyst = world.reg, world.actors["clinician"], world.actors["analyst"]
    assert ops.analytics_report(reg, analyst, AS_OF).patients == 2
    reg.add_patient(clinician, patient_data())  # a new row
    assert ops.analytics_report(reg, analyst, AS_OF).patients == 3 and len(computed) == 2
    ops.analytics_report(reg, analyst, AS_OF)
    assert len(computed) == 2
    # a change that adds no row (the same counts): stopping a course
    course = reg.get_patient(clinician, world.pa)["courses"][0]["id"]
    before = {d.drug_id: d.ongoing for d in ops.analytics_report(reg, analyst, AS_OF).drugs}
    reg.stop_course(clinician, world.pa, course, dt.date(2020, 3, 1), "toxicity")
    after = {d.drug_id: d.ongoing for d in ops.analytics_report(reg, analyst, AS_OF).drugs}
    assert len(computed) == 3 and after["sirolimus"] == before["sirolimus"] - 1
    reg.withdraw_consent(clinician, world.pa, dt.date(2026, 1, 1))  # the patient leaves every analysis
    assert ops.analytics_report(reg, analyst, AS_OF).patients == 2 and len(computed) == 4


def test_a_write_by_another_process_makes_the_next_view_recompute(world: World, computed: list[Any],
                                                                  db_url: str) -> None:
    analyst = world.actors["analyst"]
    assert ops.analytics_report(world.reg, analyst, AS_OF).patients == 2
    script = textwrap.dedent(f"""
        import datetime
        from ipexrx.registry import SYSTEM, Registry
        reg = Registry({db_url!r})
        reg.add_patient(SYSTEM, {{"patient": {patient_data('CTR-B')!r}}})
        reg.close()
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert ops.analytics_report(world.reg, analyst, AS_OF).patients == 3 and len(computed) == 2


def test_centres_roles_and_filters_never_share_a_cached_report(world: World, computed: list[Any]) -> None:
    reg, clinician, analyst, clin_b = world.reg, world.actors["clinician"], world.actors["analyst"], world.clin_b
    own = ops.analytics_report(reg, clinician, AS_OF)
    assert own.scope == "centre CTR-A" and own.patients == 1 and own.followup_due  # the centre's own list
    other = ops.analytics_report(reg, clin_b, AS_OF)
    assert other.scope == "centre CTR-B" and [p for p, _ in other.followup_due] == [world.pb]
    pooled = ops.analytics_report(reg, analyst, AS_OF)
    assert pooled.patients == 2 and pooled.followup_due == []
    # an analyst narrowed to centre A reads the same data as A's clinician (one computation, one cached
    # report), but gets a copy without the pseudonyms; the clinician's cached list is untouched
    narrowed = ops.analytics_report(reg, analyst, AS_OF, "CTR-A")
    assert narrowed.patients == 1 and narrowed.followup_due == []
    assert ops.analytics_report(reg, clinician, AS_OF).followup_due == own.followup_due
    ops.analytics_report(reg, analyst, AS_OF + dt.timedelta(days=1))  # another report day
    ops.analytics_report(reg, analyst, AS_OF, diagnosed=(dt.date(2019, 1, 1), None))  # another period
    ops.analytics_report(reg, clin_b, AS_OF)  # cached: centre B's own
    assert [scope for _, scope in computed] == [
        "centre CTR-A", "centre CTR-B", "all centres (pooled)", "all centres (pooled)",
        "all centres (pooled), diagnosed from 2019-01-01 onwards"]


def test_the_cache_keeps_at_most_its_size_least_recently_used_out() -> None:
    cache = ReportCache(size=2, max_age=60)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "b" is now the least recently used
    cache.put("c", 3)
    assert (cache.get("b"), cache.get("a"), cache.get("c"), len(cache)) == (None, 1, 3, 2)
    stale = ReportCache(size=2, max_age=-1)
    stale.put("a", 1)
    assert stale.get("a") is None and len(stale) == 0  # too old: computed again


def test_the_analytics_page_viewed_again_is_served_from_the_cache(tmp_path: Any, computed: list[Any]) -> None:
    from ipexrx.service.registry_mount import mount_registry_web

    reg = Registry(f"sqlite:///{tmp_path / 'registry.sqlite3'}")
    try:
        ops.load_demo(reg, SYSTEM, n_patients=40, n_centres=2)
        reg.create_user(SYSTEM, {"username": "pooled.analyst", "password": PASSWORD, "role": "analyst"})
        app = FastAPI()
        mount_registry_web(app, reg)
        c = TestClient(app, base_url="https://testserver", follow_redirects=False)
        assert c.post("/registry/login", data={"username": "pooled.analyst", "password": PASSWORD}).status_code == 303
        pages = [c.get(f"/registry/analytics?as_of={AS_OF}") for _ in range(2)]
        assert [p.status_code for p in pages] == [200, 200] and pages[0].text == pages[1].text
        assert c.get(f"/registry/analytics/drugs.csv?as_of={AS_OF}").status_code == 200  # the same report
        assert len(computed) == 1
        assert c.get(f"/registry/analytics?as_of={AS_OF}&diagnosed_from=2010-01-01").status_code == 200
        assert len(computed) == 2
    finally:
        reg.close()
