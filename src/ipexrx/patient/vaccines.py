"""Which vaccines are live attenuated: names and CVX codes.

Why a fixed list: the live-vaccine rule must know whether "MMR" or CVX 116 is live; an unknown
vaccine is reported as "live status unknown" instead of being assumed inactivated. A record may
override with ``"live": true/false`` (e.g. a local product name). CVX codes are from the CDC CVX
table; only codes of live products are listed here, inactivated ones fall back to name matching.
"""

from __future__ import annotations

import re

LIVE_NAMES = (
    "mmr", "measles", "mumps", "rubella", "mmrv", "proquad", "priorix", "m-m-r ii", "varicella", "varivax",
    "chickenpox", "rotavirus", "rotateq", "rotarix", "bcg", "opv", "oral polio", "oral poliovirus",
    "yellow fever", "yf-vax", "stamaril", "laiv", "flumist", "live attenuated influenza", "nasal influenza",
    "ty21a", "oral typhoid", "vivotif", "zostavax", "zoster live", "cholera live", "vaxchora", "dengvaxia",
    "smallpox", "acam2000", "japanese encephalitis live", "imojev",
)
INACTIVATED_NAMES = (
    "dtap", "dtp", "tdap", "td", "ipv", "inactivated polio", "hib", "hepatitis b", "hepb", "hepatitis a", "hepa",
    "pcv13", "pcv15", "pcv20", "pcv", "ppsv23", "pneumococcal", "meningococcal", "menacwy", "menb",
    "inactivated influenza", "influenza inactivated", "iiv", "hpv", "covid-19 mrna", "covid-19", "shingrix",
    "recombinant zoster", "rabies", "typhoid vi", "tick-borne encephalitis", "hexavalent", "pentavalent",
)
# CVX codes of live vaccines (CDC CVX table).
LIVE_CVX = {"03": "MMR", "04": "measles-rubella", "05": "measles", "06": "rubella", "07": "mumps", "94": "MMRV",
            "21": "varicella", "116": "rotavirus, pentavalent", "119": "rotavirus, monovalent",
            "122": "rotavirus, unspecified", "19": "BCG", "02": "OPV", "37": "yellow fever", "111": "LAIV",
            "149": "LAIV4", "25": "typhoid, oral", "121": "zoster live", "174": "cholera, live oral"}

_LIVE = re.compile(r"\b(" + "|".join(re.escape(n) for n in sorted(LIVE_NAMES, key=len, reverse=True)) + r")\b")
_INACT = re.compile(r"\b(" + "|".join(re.escape(n) for n in sorted(INACTIVATED_NAMES, key=len, reverse=True))
                    + r")\b")


def is_live(name: str, cvx: str | None = None) -> bool | None:
    """True for a live vaccine, False for a known inactivated one, None when we cannot tell."""
    if cvx is not None:
        code = cvx.strip().lstrip("0") or "0"
        code = code.zfill(2)
        if code in LIVE_CVX:
            return True
    text = name.strip().lower()
    if text.isdigit():
        return True if text.zfill(2) in LIVE_CVX else None
    if "inactivated" in text or "recombinant" in text:
        return False
    if _LIVE.search(text):
        return True
    if _INACT.search(text):
        return False
    return None
