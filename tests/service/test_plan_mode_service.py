"""The JSON API and the /assess page: the IPEX plan choice, the mode at the top, alerts before the plan."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlencode

from fastapi.testclient import TestClient

EXAMPLES = Path(__file__).parents[2] / "examples"
CASES = Path(__file__).parents[1] / "cases" / "assess"


def _ibd() -> dict[str, object]:
    return json.loads((CASES / "non-ipex-ibd-live-vaccine.json").read_text())["patient"]  # type: ignore[no-any-return]


def test_api_takes_the_ipex_plan_choice_and_answers_mode_first(dev_client: TestClient) -> None:
    ipex = json.loads((EXAMPLES / "sirolimus-azole.json").read_text())
    resp = dev_client.post("/api/v1/assess", params={"as_of": "2026-11-25"}, json=ipex)
    keys = list(resp.json())
    assert keys[3:6] == ["mode", "mode_reason", "ipex_plan"]
    assert keys.index("alerts") < keys.index("hsct") < keys.index("manifestations")
    assert resp.json()["mode"] == "ipex"
    expected = {"auto": ("drug-safety-only", None), "always": ("ipex-plan-on-request", "not-done"),
                "never": ("drug-safety-only", None)}
    for choice, (mode, hsct) in expected.items():
        a = dev_client.post("/api/v1/assess", params={"as_of": "2026-11-25", "ipex_plan": choice}, json=_ibd()).json()
        assert (a["mode"], (a["hsct"] or {}).get("status")) == (mode, hsct), choice
        assert any(al["severity"] == "critical" for al in a["alerts"])  # drug safety in every mode
    resp = dev_client.post("/api/v1/assess", params={"ipex_plan": "sometimes"}, json=_ibd())
    assert resp.status_code == 422 and resp.json()["issues"][0]["path"].endswith("ipex_plan")


def test_web_page_says_the_mode_before_the_alerts_and_hides_the_plan_without_ipex(dev_client: TestClient) -> None:
    form = {"patient": json.dumps(_ibd()), "as_of": "2026-11-25"}
    page = dev_client.post("/assess", content=urlencode(form),
                           headers={"Content-Type": "application/x-www-form-urlencoded"}).text
    assert page.index('id="mode"') < page.index('id="alerts"')
    assert "Mode: drug-safety-only." in page and 'id="hsct"' not in page and 'id="plans"' not in page
    form["ipex_plan"] = "always"
    page = dev_client.post("/assess", content=urlencode(form),
                           headers={"Content-Type": "application/x-www-form-urlencoded"}).text
    assert page.index('id="mode"') < page.index('id="alerts"') < page.index('id="hsct"') < page.index('id="plans"')
    assert '<option value="always" selected>' in page
    form["ipex_plan"] = "sometimes"
    resp = dev_client.post("/assess", content=urlencode(form),
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert resp.status_code == 422 and "auto, always or never" in resp.text
