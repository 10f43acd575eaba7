"""Check the report pages and links in a real headless browser against the running local stack
(`make run`).

    make ui-check        # = python scripts/ui_check.py [--no-run]

1. logs in through the API (`POST /auth/token`, the credentials `make run` printed, from .env);
2. finds the newest successful `churn_retrain` run (waits for the demo's first one) and checks its
   `validate` task has a "Validation report" link that serves the partition's report;
3. runs `churn_monitor` through the scheduler (REST API) and waits for it, so there is a drift
   report, and checks the `drift_check` task's "Drift report" link;
4. drives Chromium (Debian's `chromium` package, or $CHROMIUM) over the DevTools protocol with the
   login cookie: without it the plugin page must refuse (401); with it, opens the Airflow UI's
   "Validation & drift reports" view (the plugin's external view, an iframe on /airtrain/), checks
   it lists the monitor's decisions and the validated partitions, follows a validation report link
   and a drift report link and checks each page's title, then opens the validate task's link;
5. saves screenshots to .local/ui-check/.

What it needs is checked first, before any waiting: Chromium (Debian's `chromium` package, or
$CHROMIUM), the `websockets` package and a `make run` stack that answers with the demo pipeline.
Exits non-zero with the reason when anything is missing or any step fails; every wait is bounded
and says what it waits for.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
OUT = ROOT / ".local" / "ui-check"


def fail(msg: str) -> None:
    print(f"ui-check FAILED: {msg}", file=sys.stderr)
    raise SystemExit(1)


def http(method: str, url: str, body: dict | None = None, token: str | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json",
                                          **({"Authorization": f"Bearer {token}"} if token else {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - localhost only
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def run_monitor(base: str, token: str, timeout: float = 300) -> dict:
    import datetime as dt

    yesterday = (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)).isoformat()
    status, body = http("POST", f"{base}/api/v2/dags/churn_monitor/dagRuns",
                        {"logical_date": None, "conf": {"date": yesterday}}, token)
    if status not in (200, 201):
        fail(f"could not trigger churn_monitor: {status} {body[:300]}")
    run = json.loads(body)
    run_id = run["dag_run_id"]
    print(f"triggered churn_monitor run {run_id}; waiting for it")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, body = http("GET", f"{base}/api/v2/dags/churn_monitor/dagRuns/{urllib.parse.quote(run_id)}",
                            token=token)
        state = json.loads(body).get("state")
        if state in ("success", "failed"):
            if state != "success":
                fail(f"churn_monitor run {run_id} {state}; see the task logs in the UI")
            return json.loads(body)
        time.sleep(3)
    fail(f"churn_monitor run {run_id} did not finish in {timeout:.0f}s (is the scheduler up? `make status`)")
    return {}


def newest_retrain_run(base: str, token: str, timeout: float = 600) -> dict:
    """The newest successful churn_retrain run (waiting for the demo's bootstrap if there is none yet)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, body = http("GET", f"{base}/api/v2/dags/churn_retrain/dagRuns?state=success&order_by=-end_date"
                            "&limit=1", token=token)
        runs = json.loads(body).get("dag_runs", []) if status == 200 else []
        if runs:
            return runs[0]
        time.sleep(5)
    fail(f"no successful churn_retrain run after {timeout:.0f}s (is `make run` up? `make status`)")
    return {}


def task_link(base: str, token: str, dag_id: str, run_id: str, task_id: str, name: str, prefix: str) -> str:
    status, body = http("GET", f"{base}/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id)}/taskInstances/"
                        f"{task_id}/links", token=token)
    link = json.loads(body).get("extra_links", {}).get(name) if status == 200 else None
    if not link or not link.startswith(prefix):
        fail(f"the {task_id} task of {dag_id} run {run_id} has no '{name}' link ({status} {body[:200]})")
    status, page = http("GET", f"{base}{link}", token=token)
    if status != 200 or "<title>" not in page:
        fail(f"the {task_id} task's link {link} does not serve a report ({status} {page[:200]})")
    print(f"ok: the {task_id} task of {run_id} links to its report: {link}")
    return link


class Page:
    """The smallest DevTools-protocol client that does the job (websockets is already installed)."""

    def __init__(self, ws) -> None:
        self.ws, self.n = ws, 0

    async def call(self, method: str, **params):
        self.n += 1
        await self.ws.send(json.dumps({"id": self.n, "method": method, "params": params}))
        while True:
            msg = json.loads(await self.ws.recv())
            if msg.get("id") == self.n:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    async def goto(self, url: str, settle: float = 4.0) -> None:
        await self.call("Page.navigate", url=url)
        await asyncio.sleep(settle)  # let the React app render and the iframe load
        await self.wait_for("document.readyState === 'complete'")

    async def wait_for(self, expr: str, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if await self.eval(expr):
                    return True
            except RuntimeError:  # the page is navigating
                pass
            await asyncio.sleep(0.5)
        return False

    async def eval(self, expr: str):
        res = await self.call("Runtime.evaluate", expression=expr, returnByValue=True)
        return res.get("result", {}).get("value")

    async def shot(self, name: str) -> Path:
        data = (await self.call("Page.captureScreenshot", format="png"))["data"]
        path = OUT / name
        path.write_bytes(base64.b64decode(data))
        return path


def chromium() -> str:
    """The Chromium executable, or fail saying what is missing."""
    wanted = os.environ.get("CHROMIUM")
    if wanted:
        exe = shutil.which(wanted)
        if not exe:
            fail(f"CHROMIUM={wanted!r} is not an executable; point it at Chromium or unset it")
        return exe
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not exe:
        fail("no Chromium found (looked for chromium, chromium-browser, google-chrome on the PATH): install "
             "Debian's `chromium` package (apt-get install chromium) or set CHROMIUM=/path/to/chromium")
    return exe


def preflight() -> str:
    """What ui-check needs that is not the stack: Chromium and the websockets package. Returns Chromium."""
    exe = chromium()
    try:
        import websockets  # noqa: F401
    except ImportError:
        fail("the Python package `websockets` is missing (it comes with the dev requirements: make venv)")
    return exe


def devtools_url(proc: subprocess.Popen, timeout: float = 30.0) -> str:
    """The DevTools websocket URL Chromium prints on stderr; fails (never blocks) when it does not come."""
    import queue
    import threading

    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in proc.stderr:  # type: ignore[union-attr]
            lines.put(line)
        lines.put("")  # Chromium closed stderr (it exited)

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        try:
            line = lines.get(timeout=max(left, 0.01))
        except queue.Empty:
            fail(f"Chromium did not start in {timeout:.0f} s (no DevTools endpoint); its output: "
                 f"{''.join(seen)[-500:]!r}")
        if "DevTools listening on" in line:
            return line.split("DevTools listening on", 1)[1].strip()
        if line == "" and proc.poll() is not None:
            fail(f"Chromium exited with {proc.returncode} before it listened; its output: {''.join(seen)[-500:]!r}")
        seen.append(line)


async def browse(base: str, token: str, validation_link: str, exe: str) -> None:
    import websockets

    profile = tempfile.mkdtemp(prefix="airtrain-chromium-")
    proc = subprocess.Popen([exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                             "--disable-quic", "--disable-background-networking", "--disable-component-update",
                             "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
                             "--remote-debugging-port=0",
                             "--remote-debugging-address=127.0.0.1", "--window-size=1400,1000", "about:blank"],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        ws_url = devtools_url(proc)
        port = ws_url.split(":")[2].split("/")[0]
        with urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/json/new?about:blank",
                                                           method="PUT"), timeout=10) as resp:  # noqa: S310
            target = json.loads(resp.read())
        async with websockets.connect(target["webSocketDebuggerUrl"], max_size=50_000_000) as ws:
            page = Page(ws)
            await page.call("Page.enable")
            await page.call("Network.enable")
            # without the login cookie the plugin refuses
            await page.goto(f"{base}/airtrain/", settle=1.5)
            text = await page.eval("document.body.innerText")
            if "Not authenticated" not in (text or ""):
                fail(f"/airtrain/ without login should refuse, got: {text[:200]!r}")
            print("ok: /airtrain/ refuses an anonymous browser (401)")
            await page.call("Network.setCookie", name="_token", value=token, url=base, path="/")
            # the Airflow UI's nav entry, rendering the plugin page in an iframe
            await page.goto(f"{base}/plugin/reports", settle=8)
            frame_text = await page.eval(
                "(() => { const f = document.querySelector('iframe'); "
                "return f && f.contentDocument ? f.contentDocument.body.innerText : null })()")
            shot = await page.shot("airflow-ui-reports.png")
            if not frame_text or "Validation and drift reports" not in frame_text:
                fail(f"the UI's reports view did not show the plugin page (screenshot {shot}); "
                     f"iframe text: {str(frame_text)[:300]!r}")
            for expected in ("churn_monitor", "Drift decisions", "Validated partitions"):
                if expected not in frame_text:
                    fail(f"the reports page does not show {expected!r} (screenshot {shot})")
            print(f"ok: Airflow UI → Browse → Validation & drift reports renders the plugin page ({shot})")
            # the page itself, then a validation report and a drift report from its links
            await page.goto(f"{base}/airtrain/", settle=1.5)
            await page.shot("reports-page.png")
            for kind, selector, title_start, min_size in (
                    ("validation", "a.validation-report", "churn validation ", 1_000),
                    ("drift", "a[href*='/reports/churn/drift/']", "churn drift report", 10_000)):
                await page.goto(f"{base}/airtrain/", settle=1.5)
                await page.wait_for(f"document.querySelector({json.dumps(selector)}) !== null")
                href = await page.eval(f"(() => {{ const a = document.querySelector({json.dumps(selector)}); "
                                       f"return a ? a.href : null }})()")
                if not href:
                    body = await page.eval("document.location.href + ' ' + document.body.innerText.slice(0, 300)")
                    fail(f"no {kind} report link on /airtrain/ (the page shows: {body!r})")
                await page.goto(href, settle=6 if kind == "drift" else 2)
                size = await page.eval("document.documentElement.outerHTML.length")
                title = await page.eval("document.title") or ""
                shot = await page.shot(f"{kind}-report.png")
                if not size or size < min_size or not title.startswith(title_start):
                    fail(f"the {kind} report at {href} looks wrong ({size} bytes, title {title!r}; {shot})")
                print(f"ok: {kind} report {href} opens ({size:,} bytes of HTML, title {title!r}; {shot})")
            # the validate task's extra link, as the task instance page opens it
            await page.goto(f"{base}{validation_link}", settle=2)
            title = await page.eval("document.title") or ""
            shot = await page.shot("validate-task-link.png")
            if not title.startswith("churn validation "):
                fail(f"the validate task's link {validation_link} opened {title!r} ({shot})")
            print(f"ok: the validate task's 'Validation report' link opens {title!r} ({shot})")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(profile, ignore_errors=True)


def main() -> int:
    from devstack import airflow_env, load_dotenv

    exe = preflight()  # before anything waits: say at once what is missing
    print(f"using {exe}")
    cfg = load_dotenv()
    env = airflow_env(cfg)
    base = env["AIRFLOW__API__BASE_URL"]
    user = cfg.get("AIRFLOW_ADMIN_USER") or "admin"
    try:
        status, body = http("POST", f"{base}/auth/token", {"username": user,
                                                            "password": cfg["AIRFLOW_ADMIN_PASSWORD"]})
    except OSError as exc:  # nothing listens
        fail(f"the Airflow API at {base} does not answer ({type(exc).__name__}); start the stack with `make run`")
    if status not in (200, 201):
        fail(f"login failed ({status}); is `make run` up? {body[:200]}")
    token = json.loads(body)["access_token"]
    print(f"logged in to {base} as {user}")
    status, body = http("GET", f"{base}/api/v2/dags/churn_retrain", token=token)
    if status != 200:
        fail(f"the stack has no churn_retrain DAG ({status}): ui-check needs the demo pipeline (DEMO_DAYS > 0 in "
             ".env, then `make stop && make run`)")
    print("waiting for a successful churn_retrain run (the demo's first one, up to 10 minutes)")
    OUT.mkdir(parents=True, exist_ok=True)
    retrain = newest_retrain_run(base, token)
    validation_link = task_link(base, token, "churn_retrain", retrain["dag_run_id"], "validate", "Validation report",
                                "/airtrain/reports/churn/validation/")
    if "--no-run" not in sys.argv:
        run = run_monitor(base, token)
        task_link(base, token, "churn_monitor", run["dag_run_id"], "drift_check", "Drift report",
                  "/airtrain/reports/churn/drift/")
    asyncio.run(browse(base, token, validation_link, exe))
    print("ui-check passed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
