"""Load benchmark of ``ipexrx serve`` on loopback with wrk (Debian package ``wrk``).

Starts the server as a user would in production (``ipexrx serve --workers N``, JWT verification
ON with a real key set: a P-384 key for ES384 and an RSA-2048 key for RS384), pre-signs one JWT
per request (every ``jti`` is used once, as the replay check demands), and drives five scenarios
at 32 connections:

* ``discovery``           GET  /cds-services                        (JWT verified)
* ``drug-page``           GET  /drugs/sirolimus                     (HTML monograph)
* ``patient-view``        POST /cds-services/ipexrx-patient-view    (JWT, realistic prefetch: the
                          same patient every time, as when an EHR reopens a chart -> analysis cache hit)
* ``patient-view-distinct`` the same, but every wrk thread cycles through its own 2,000 distinct
                          patients, more than a worker's analysis cache holds (512): a cache miss,
                          the full FHIR read + assessment, on every call
* ``patient-view-not-ipex`` distinct patients as above, without an IPEX diagnosis: what nearly every
                          chart an EHR opens looks like (read in full and assessed: drug safety runs
                          for every chart; the cards say there is no IPEX diagnosis)

The CDS scenarios run once per JWT algorithm (``--algs``, default both): a P-384 signature check
costs the server about 0.5 ms of CPU (OpenSSL; ``openssl speed ecdsap384``), an RSA one about
0.02 ms, and at these rates that difference is most of the budget. Prints requests per second,
p50 and p99 latency (wrk's, corrected for coordinated omission), non-2xx counts, and the server's CPU
time per call (its processes' user + system time over the run, divided by the calls: steadier than
requests per second on a shared machine, and 1.86 cores / CPU per call bounds the throughput). Usage::

    python benchmarks/service_load.py [--workers 2] [--duration 15] [--connections 32]

Before each distinct-chart row the same charts are also judged in this process, without HTTP, token or card
log (``in process, same charts``): the host's speed at that moment. The last column, the server's CPU per call
divided by it, is what serving adds, and moves much less than either figure on a shared machine.
The column after it is how wrk's connections were split between the workers, read from /proc 3 s into the
run and again 3 s before its end: wrk keeps its connections, so without the server's balancing
(``IPEXRX_WORKER_BALANCE=0``, see ipexrx.service.balance) a lopsided split lasts the whole run and lengthens
p99 on the busier worker.

Machine load from other processes skews the figures; the script prints the load average first.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from ipexrx.service.cds import samples

ROOT = Path(__file__).resolve().parents[1]
ISSUER = "https://bench-ehr.example.org"
DISTINCT = 4000  # distinct patients, split between the wrk threads
DISTINCT_SCENARIOS = ("patient-view-distinct", "patient-view-not-ipex")

LUA = r"""
local nthreads = %(nthreads)d
local nonce = "%(nonce)s"  -- new for every wrk run: hookInstances never repeat across runs
local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end
function init(args)
  tokens = {}
  local n = 0
  for line in io.lines("%(tokens)s") do
    if n %% nthreads == id then table.insert(tokens, line) end
    n = n + 1
  end
  bodies = {}
  %(bodies_loader)s
  i = 0
end
function request()
  i = i + 1
  local headers = {}
  headers["Authorization"] = "Bearer " .. tokens[((i - 1) %% #tokens) + 1]
  local body = nil
  if #bodies > 0 then
    headers["Content-Type"] = "application/json"
    local b = bodies[((i - 1) %% #bodies) + 1]
    body = b[1] .. nonce .. "-" .. id .. "-" .. i .. b[2]  -- a new hookInstance on every call, as the spec demands
  end
  return wrk.format("%(method)s", "%(path)s", headers, body)
end
"""

BODIES_LOADER = r"""
  local f = io.open("%s", "r")
  local k = 0
  for line in f:lines() do
    if k %% nthreads == id then  -- each wrk thread its own bodies, split around the hookInstance slot
      local a, b = string.find(line, "@HOOK@", 1, true)
      table.insert(bodies, {line:sub(1, a - 1), line:sub(b + 1)})
    end
    k = k + 1
  end
  f:close()
"""


def in_process_ms(bodies: Path, n: int = 400) -> float:
    """CPU ms per chart to judge ``n`` of the scenario's distinct charts in this process, without HTTP, the token
    or the card log (request JSON to cards' JSON): the host's speed at that moment, measured just before the row.

    Why: this shared machine's speed moves by a third between runs minutes apart, and every figure moves with
    it; the server's CPU per call divided by this reference is what the service adds, and moves much less."""
    import gc

    import orjson

    from ipexrx.service.cds import engine
    from ipexrx.service.cds.models import CdsRequest
    from ipexrx.service.cds.services import SERVICES

    svc = SERVICES["ipexrx-patient-view"]
    engine.warm_up()
    lines = bodies.read_bytes().splitlines()[:n]
    raws = [line.replace(b"@HOOK@", f"ref-{i}".encode()) for i, line in enumerate(lines)]
    gc.collect()
    t0 = time.process_time()
    for raw in raws:
        body = CdsRequest.model_validate(orjson.loads(raw))
        orjson.dumps({"cards": [c for c, _ in engine.evaluate(svc, body, dict(body.prefetch or {}), "http://x")]})
    spent = time.process_time() - t0
    engine._analysis_cache.clear()
    return spent * 1000 / len(raws)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


KIDS = {"ES384": "bench-ec", "RS384": "bench-rsa"}


def make_keys(tmp: Path) -> dict[str, Any]:
    """One P-384 key (ES384, what the CDS Hooks sandbox signs with) and one RSA-2048 key (RS384, what
    Epic reportedly uses by default); both public keys go into the issuer's JWK Set."""
    import jwt
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    keys: dict[str, Any] = {"ES384": ec.generate_private_key(ec.SECP384R1()),
                            "RS384": rsa.generate_private_key(public_exponent=65537, key_size=2048)}
    jwks = []
    for alg, key in keys.items():
        algo = jwt.algorithms.ECAlgorithm if alg.startswith("ES") else jwt.algorithms.RSAAlgorithm
        jwk = json.loads(algo.to_jwk(key.public_key()))
        jwk.update(kid=KIDS[alg], alg=alg, use="sig")
        jwks.append(jwk)
    (tmp / "jwks.json").write_text(json.dumps({"keys": jwks}))
    return keys


def _sign_chunk(job: tuple[bytes, str, str, int]) -> list[str]:
    import jwt
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    pem, alg, aud, n = job
    key = load_pem_private_key(pem, password=None)
    now = int(time.time())
    return [jwt.encode({"iss": ISSUER, "aud": aud, "iat": now, "exp": now + 900, "jti": str(uuid.uuid4())},
                       key, algorithm=alg, headers={"kid": KIDS[alg], "typ": "JWT"}) for _ in range(n)]


def sign_tokens(key: Any, alg: str, aud: str, n: int, path: Path) -> None:
    """n fresh tokens, signed on every core (P-384 signing is slow: ~1,300 per second per core)."""
    from concurrent.futures import ProcessPoolExecutor

    from cryptography.hazmat.primitives import serialization

    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    procs = os.cpu_count() or 1
    jobs = [(pem, alg, aud, n // procs + (1 if i < n % procs else 0)) for i in range(procs)]
    with ProcessPoolExecutor(procs) as pool, path.open("w") as fh:
        for chunk in pool.map(_sign_chunk, jobs):
            fh.writelines(t + "\n" for t in chunk)


def distinct_bodies(n: int, path: Path, ipex: bool = True) -> None:
    base = samples.load("patient_view")
    if not ipex:  # the same record without its IPEX diagnosis: what nearly every chart opened looks like
        conds = base["prefetch"]["conditions"]["entry"]
        base["prefetch"]["conditions"]["entry"] = [e for e in conds if "IPEX" not in json.dumps(e)]
    run = str(uuid.uuid4())
    with path.open("w") as fh:
        for i in range(n):
            body = copy.deepcopy(base)
            pid = f"bench-{i}"
            body["context"]["patientId"] = pid
            body["hookInstance"] = run + "-@HOOK@"  # wrk fills in a per-call number
            body["prefetch"]["patient"]["id"] = pid
            vitals = body["prefetch"]["vital_signs"]["entry"]
            vitals[0]["resource"]["valueQuantity"]["value"] = 15 + (i % 200) / 10  # a different weight each
            fh.write(json.dumps(body, separators=(",", ":")) + "\n")


def server_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by the server process and its workers (Linux /proc).

    Why: requests per second move 10-20 % between runs on a shared machine; the CPU each call costs the
    server moves much less, and it is what the 2 cores divide into throughput."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pids = [pid]
    try:
        pids += [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return float("nan")
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def worker_connections(pid: int, port: int) -> list[int]:
    """Open client connections each worker of the server ``pid`` holds on ``port`` (Linux /proc).

    Why: wrk keeps its connections for the whole run, so the split between the workers made at
    connect time holds to the end; a worker holding 20 of 32 connections answers each of them later
    than one holding 16, and that, not the rate, is what moves p99 from run to run."""
    established = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if f[3] == "01" and int(f[1].rsplit(":", 1)[1], 16) == port:  # ESTABLISHED, our side on the port
                established.add(f[9])
    counts = []
    try:
        children = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []
    for child in children:
        n = 0
        try:
            if b"resource_tracker" in Path(f"/proc/{child}/cmdline").read_bytes():
                continue  # multiprocessing's helper, not a worker
            for fd in Path(f"/proc/{child}/fd").iterdir():
                try:
                    link = os.readlink(fd)
                except OSError:
                    continue
                if link.startswith("socket:[") and link[8:-1] in established:
                    n += 1
        except OSError:
            continue
        counts.append(n)
    return sorted(counts, reverse=True)


def run_wrk(url: str, script: Path, args: argparse.Namespace, server_pid: int | None = None,
            port: int | None = None) -> dict[str, Any]:
    cmd = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}s", "--latency", "-s",
           str(script), url]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    split: list[list[int]] = []
    if server_pid is not None and port is not None:
        time.sleep(min(3.0, args.duration / 3))  # every connection is open by then
        split.append(worker_connections(server_pid, port))
        time.sleep(max(0.0, args.duration - 6.0))  # and again near the end
        split.append(worker_connections(server_pid, port))
    out, err = proc.communicate()
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, cmd, out, err)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def pct(p: str) -> str:
        m = re.search(rf"^\s+{p}%\s+([\d.]+\w+)", out, re.M)
        return m.group(1) if m else "?"

    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    total = re.search(r"(\d+) requests in", out)
    return {"rps": rps, "p50": pct("50"), "p99": pct("99"), "non2xx": int(non2xx.group(1)) if non2xx else 0,
            "requests": int(total.group(1)) if total else 0, "raw": out, "split": split}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--duration", type=int, default=15)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-rate", type=int, default=6000, help="tokens signed per second of test (upper bound)")
    ap.add_argument("--only", nargs="*", help="run only these scenarios")
    ap.add_argument("--algs", nargs="+", default=["ES384", "RS384"], choices=sorted(KIDS),
                    help="JWT algorithms to run the CDS scenarios with (each costs the server differently: "
                    "a P-384 signature check is ~0.5 ms of CPU, an RSA-2048 one ~0.02 ms)")
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--dev", action="store_true", help="diagnostic: JWT verification off (tokens still sent)")
    ap.add_argument("--workdir", default=str(Path.home() / ".cache"),
                    help="where the database and replay store live during the run (a disk, as in production)")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed (apt-get install wrk)")

    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="ipexrx-bench-", dir=args.workdir))
    keys = make_keys(tmp)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "IPEXRX_DATABASE_URL": f"sqlite:///{tmp / 'bench.sqlite3'}",
           "IPEXRX_CDS_ISSUERS": json.dumps({ISSUER: {"jwks_file": str(tmp / "jwks.json")}}),
           "IPEXRX_BASE_URL": base, "IPEXRX_DEV_MODE": "1" if args.dev else "0"}
    server = subprocess.Popen([sys.executable, "-m", "ipexrx", "serve", "--workers", str(args.workers), "--port",
                               str(port), "--log-level", "warning"], env=env, cwd=tmp)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/v1/version", timeout=2).read()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    sys.exit("the server did not start")
                time.sleep(0.3)
        for _ in range(20 * args.workers):  # warm every worker (KB, templates, caches)
            urllib.request.urlopen(f"{base}/drugs/sirolimus", timeout=10).read()

        n_tokens = args.max_rate * args.duration
        pv_body = tmp / "pv.ndjson"  # one patient; wrk gives every call a new hookInstance, as EHRs do
        one = samples.load("patient_view")
        one["hookInstance"] = str(uuid.uuid4()) + "-@HOOK@"
        pv_body.write_text("\n".join([json.dumps(one, separators=(",", ":"))] * args.threads) + "\n")
        distinct_bodies(DISTINCT, tmp / "pv-distinct.ndjson")
        distinct_bodies(DISTINCT, tmp / "pv-not-ipex.ndjson", ipex=False)
        scenarios = {
            "discovery": ("GET", "/cds-services", None),
            "drug-page": ("GET", "/drugs/sirolimus", None),
            "patient-view": ("POST", "/cds-services/ipexrx-patient-view", pv_body),
            "patient-view-distinct": ("POST", "/cds-services/ipexrx-patient-view", tmp / "pv-distinct.ndjson"),
            "patient-view-not-ipex": ("POST", "/cds-services/ipexrx-patient-view", tmp / "pv-not-ipex.ndjson"),
        }
        print(f"load average before: {os.getloadavg()}; cpus: {os.cpu_count()}; workers: {args.workers}; "
              f"{args.connections} connections, {args.threads} wrk threads, {args.duration} s each")
        rows = []
        for name, (method, path, bodies) in scenarios.items():
            if args.only and name not in args.only:
                continue
            for alg in args.algs if path.startswith("/cds") else [args.algs[0]]:
                label = f"{name} ({alg})" if path.startswith("/cds") else name
                tokens = tmp / f"{name}-{alg}.tokens"
                sign_tokens(keys[alg], alg, base + path, n_tokens if path.startswith("/cds") else args.threads,
                            tokens)
                script = tmp / f"{name}-{alg}.lua"
                script.write_text(LUA % {"nthreads": args.threads, "nonce": uuid.uuid4().hex, "tokens": tokens,
                                         "method": method, "path": path,
                                         "bodies_loader": BODIES_LOADER % bodies if bodies else ""})
                reference = in_process_ms(bodies) if bodies is not None and name in DISTINCT_SCENARIOS else None
                cpu0 = server_cpu_seconds(server.pid)
                res = run_wrk(base + path, script, args, server.pid, port)
                cpu = server_cpu_seconds(server.pid) - cpu0
                res["cpu_ms"] = cpu * 1000 / res["requests"] if res["requests"] else float("nan")
                res["cores"] = cpu / args.duration
                res["reference"] = reference
                if args.verbose:
                    print(res["raw"])
                rows.append((label, res))
                time.sleep(1)
        print("\n| scenario | req/s | p50 | p99 | requests | non-2xx | server CPU per call | server cores "
              "| in process, same charts | server / in process | connections per worker |"
              "\n|---|---|---|---|---|---|---|---|---|---|---|")
        for name, r in rows:
            ref = r["reference"]
            refs = f"{ref:.2f} ms | {r['cpu_ms'] / ref:.2f}" if ref else "- | -"
            split = " -> ".join("/".join(map(str, c)) for c in r["split"]) or "?"
            print(f"| {name} | {r['rps']:.0f} | {r['p50']} | {r['p99']} | {r['requests']} | {r['non2xx']} "
                  f"| {r['cpu_ms']:.2f} ms | {r['cores']:.2f} | {refs} | {split} |")
        print(f"\nload average after: {os.getloadavg()}")
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
        from ipexrx.storage import Database
        from ipexrx.storage.replay import default_replay_dir

        db = Database(env["IPEXRX_DATABASE_URL"])
        with db.engine.connect() as conn:  # the server flushed its card logs on shutdown
            cards = conn.exec_driver_sql("SELECT count(*), count(DISTINCT hook_instance) FROM cds_card").one()
        print(f"cards logged by the server: {cards[0]} from {cards[1]} hook calls with cards "
              "(each CDS call with cards must appear; compare with the request counts above)")
        shutil.rmtree(default_replay_dir(db), ignore_errors=True)  # the server's replay store (memory fs)
        db.dispose()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
