"""The web page in a real browser: a scientist's day, from signing in to deleting a finished job."""

from __future__ import annotations

import re
import time
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.browser.conftest import ARTIFACTS, Relay, Service, Site, Watched, watch

PASSWORD = "correct-horse-1"
PARAM_YAML = "# DECODE training parameters\nSimulation:\n  density: 0.5\n  frame_size: [64, 64]\n"
FILES_IN_FOLDER = 50


def _stack(path: Path, frames: int = 3) -> None:
    """A 16-bit TIFF stack, as microscopes write them (first frame: a bright square on dark)."""
    images = []
    for index in range(frames):
        image = Image.new("I;16", (64, 48))
        image.putdata([4000 if 16 <= x < 40 and 12 <= y < 36 and index == 0 else 100 + index for y in range(48) for x in range(64)])
        images.append(image)
    images[0].save(path, save_all=True, append_images=images[1:])


def _sign_up(web: Watched, username: str, *, shot: bool = False) -> None:
    """A new account (built-in identity, AUTH=1): the dialog's "Create an account"."""
    page = web.page
    page.wait_for_selector("#sign-in[open]")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    if shot:  # the dialog looks the same in every test: one screenshot of it, in the main flow
        web.shot("sign-in")
    page.click("#register")
    page.wait_for_selector(f"#who-name:text-is('Signed in as {username}')")


def _sign_in(web: Watched, site: Site, new_username: str) -> str:
    """Signed in on `site`: a new account with the built-in identity, the pool's user with Cognito."""
    if site.identity == "builtin":
        _sign_up(web, new_username, shot=True)
        return new_username
    page = web.page
    page.wait_for_selector("#sign-in[open]")
    assert page.is_hidden("#register")  # Cognito accounts are made elsewhere
    page.fill("#username", site.username)
    page.fill("#password", site.password)
    web.shot("sign-in")
    page.click("#sign-in-submit")
    page.wait_for_selector(f"#who-name:text-is('Signed in as {site.username}')")
    return site.username


def _open_folder(page: Any, path: str) -> None:
    button = page.locator(f"#tree button[data-path='{path}']")
    if button.get_attribute("aria-expanded") != "true":
        button.click()
    page.wait_for_selector(f"#tree button[data-path='{path}'][aria-expanded='true']")


def _badge(page: Any, status: str) -> None:
    page.wait_for_selector(f"#job-status.badge-{status}", timeout=10_000)


def _until(page: Any, expression: str, seconds: float = 10) -> None:
    """Until `expression` is true in the page. (`wait_for_function` evaluates its polls with `eval`,
    which the page's policy refuses.)"""
    deadline = time.monotonic() + seconds
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"never true: {expression}"
        time.sleep(0.05)


def _axe(page: Any) -> None:
    """axe-core's WCAG A/AA rules on the page as it is: no violation."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page, options={"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa"]}})
    violations = results.response["violations"]
    assert not violations, "\n".join(f"{v['id']}: {v['help']} {[n['target'] for n in v['nodes']]}" for v in violations)


@pytest.mark.parametrize("site", ["builtin", "cognito"], indirect=True)
def test_a_training_from_upload_to_deleted(web: Watched, site: Site, tmp_path: Path):
    """On the embedded default (built-in identity, files on disk), and on the hosted deployment's
    shape (Cognito, files in S3: uploads and downloads are pre-signed requests to the bucket)."""
    page, service = web.page, site.service
    to_bucket: list[str] = []
    if service.bucket is not None:
        endpoint = service.bucket.endpoint
        page.on("request", lambda r: r.url.startswith(f"{endpoint}/{service.bucket.name}") and to_bucket.append(f"{r.method} {r.url}"))
        assert f"{endpoint} " in httpx.get(f"{service.url}/ui/").headers["content-security-policy"]  # connect-src
    page.goto(f"{service.url}/")  # a browser at the root is sent to the page
    assert page.url == f"{service.url}/ui/"
    username = _sign_in(web, site, "ada@example.org")
    page.wait_for_selector("#tree button[data-path='data/']")
    web.shot("files")
    if site.identity == "builtin":  # the same page either way: checked once
        _axe(page)

    # A folder for the training's config, made in the page, and a YAML uploaded into it.
    page.click("#tree button[data-path='config/']")
    page.click("#new-folder")
    page.fill("#confirm-input", "run1")
    page.click("#confirm-ok")
    page.wait_for_selector("#tree button[data-path='config/run1/']")
    page.click("#tree button[data-path='config/run1/']")
    (tmp_path / "param.yaml").write_text(PARAM_YAML)
    page.set_input_files("#pick-files", str(tmp_path / "param.yaml"))
    page.wait_for_selector("#tree button[data-path='config/run1/param.yaml']")

    # A folder of 50 files (a TIFF stack among them) into data/, with progress per file and in total.
    run = tmp_path / "run1"
    run.mkdir()
    _stack(run / "frames.tif")
    (run / "calib.mat").write_bytes(b"MATLAB 5.0 calibration" + bytes(range(256)) * 40)
    for index in range(FILES_IN_FOLDER - 2):
        (run / f"frame_{index:03d}.txt").write_text(f"frame {index}\n" * 200)
    page.click("#tree button[data-path='data/']")
    page.set_input_files("#pick-folder", str(run))
    page.wait_for_selector("#upload-total-text:text('all 50 files uploaded')", timeout=20_000)
    assert page.locator("#upload-list li").count() == FILES_IN_FOLDER
    assert page.locator("#upload-list .upload-state:text-is('done')").count() == FILES_IN_FOLDER
    assert page.eval_on_selector("#upload-total", "p => p.value") == 1
    web.shot("uploaded-folder")
    assert page.text_content("#tree button[data-path='data/run1/'] + .size").endswith("kB")  # the folder's total
    stored = service.names(f"{username}/data/run1")
    assert len(stored) == FILES_IN_FOLDER and "frames.tif" in stored
    if service.bucket is not None:  # each file went straight to the bucket, not through the service
        assert sum(1 for r in to_bucket if r.startswith("POST ")) == FILES_IN_FOLDER + 1, to_bucket  # and param.yaml

    # Previews: the YAML as text, the TIFF's first frame as an image.
    _open_folder(page, "config/run1/")
    page.click("#tree button[data-path='config/run1/param.yaml']")
    page.wait_for_selector("#preview-text:visible")
    assert page.text_content("#preview-text") == PARAM_YAML
    web.shot("preview-yaml")
    _open_folder(page, "data/run1/")
    page.click("#tree button[data-path='data/run1/frames.tif']")
    page.wait_for_selector("#preview-image:visible")
    _until(page, "document.getElementById('preview-image').naturalWidth > 0")
    assert page.eval_on_selector("#preview-image", "i => [i.naturalWidth, i.naturalHeight]") == [64, 48]
    web.shot("preview-tiff")

    # Start a DECODE training from the form: inputs chosen from the folders, never typed.
    page.click("nav a[data-section='new']")
    page.wait_for_selector("#f-config_id option[value='run1']", state="attached")
    assert page.input_value("#f-application") == "decode"
    page.select_option("#f-entrypoint", "train")
    page.fill("#f-job_name", "train1")
    page.select_option("#f-config_id", "run1")
    page.select_option("#f-data_ids", ["run1"])
    page.fill("#f-priority", "7")  # refused by the API: its detail shows next to the field
    web.allowed.append("status of 422")  # Chromium logs the refused request: provoked here, on purpose
    web.page.click("#job-submit")
    page.wait_for_selector("#e-priority:text('priority')")
    assert page.get_attribute("#f-priority", "aria-invalid") == "true"
    web.shot("form-error")
    page.fill("#f-priority", "1")
    web.shot("start-job", full_page=True)
    if site.identity == "builtin":  # the same page either way: checked once
        _axe(page)
    page.click("#job-submit")
    page.wait_for_url(re.compile(r".*#/jobs/\d+$"))
    job_id = int(page.url.rsplit("/", 1)[1])
    _badge(page, "queued")
    web.shot("job-queued")

    # The workers report; the page follows without a reload.
    service.set_status(job_id, "pulled")
    service.set_status(job_id, "running", "epoch 1/10")
    _badge(page, "running")
    page.wait_for_selector("#job-runtime:text('epoch 1/10')")
    web.shot("job-running", full_page=True)  # README: the history and Cancel below the fold
    service.put(f"{username}/output/train1/emitters.csv", b"x,y,photons\n1.5,2.5,1000\n")
    service.put(f"{username}/log/train1/job.log", b"training done\n")
    service.set_status(job_id, "finished")
    _badge(page, "finished")
    assert page.locator("#job-details dd").nth(4).text_content() != "not yet"  # date_finished
    web.shot("job-finished")

    # Its outputs: the link opens the folder; the file downloads with its bytes.
    page.click("#job-links a:text('output: output/train1/')")
    page.wait_for_selector("#tree button[data-path='output/train1/emitters.csv']")
    page.click("#tree button[data-path='output/train1/emitters.csv']")
    to_bucket.clear()
    with page.expect_download() as download:
        page.click("#download")
    assert Path(download.value.path()).read_bytes() == b"x,y,photons\n1.5,2.5,1000\n"
    assert download.value.suggested_filename == "emitters.csv"
    if service.bucket is not None:  # a pre-signed GET from the bucket
        assert to_bucket and all(r.startswith("GET ") and "Signature=" in r for r in to_bucket), to_bucket
    web.shot("outputs")

    # The jobs table, then the job deleted (with its folders).
    page.click("nav a[data-section='jobs']")
    page.wait_for_selector(f"#jobs-body tr[data-job='{job_id}'] .badge-finished")
    web.shot("jobs-table")
    if site.identity == "builtin":  # the same page either way: checked once
        _axe(page)
    page.click(f"#jobs-body tr[data-job='{job_id}'] a")
    _badge(page, "finished")
    page.click("#job-delete")
    page.click("#confirm-ok")
    page.wait_for_url(re.compile(r".*#/jobs$"))
    page.wait_for_selector("#jobs-body td:text('No jobs yet.')")
    assert service.names(f"{username}/output/train1") == []
    web.assert_clean()


def test_an_ended_session_asks_to_sign_in_again_and_keeps_the_page(web: Watched, service: Service):
    page = web.page
    page.goto(f"{service.url}/ui/#/new")
    _sign_up(web, "grace@example.org")
    page.wait_for_selector("#f-application option[value='decode']", state="attached")
    page.fill("#f-job_name", "half-typed")
    # The next API call answers 401, as for an expired token.
    expired = {"sent": False}

    def expire_once(route: Any) -> None:
        if not expired["sent"]:
            expired["sent"] = True
            route.fulfill(status=401, content_type="application/json", body='{"detail": "the token has expired"}')
        else:
            route.continue_()

    web.allowed.append("status of 401")  # Chromium logs the refused request: provoked here, on purpose
    page.route(re.compile(r".*/jobs/applications$|.*/files/.*"), expire_once)
    page.click("nav a[data-section='files']")  # lists the folders: 401
    page.wait_for_selector("#sign-in[open]")
    assert "sign in again" in page.text_content("#sign-in-reason")
    _axe(page)  # the dialog
    web.shot("session-ended")
    page.fill("#password", PASSWORD)
    page.click("#sign-in-submit")
    page.wait_for_selector("#sign-in:not([open])", state="hidden")
    page.wait_for_selector("#tree button[data-path='data/']")  # the listing, sent again
    page.click("nav a[data-section='new']")
    assert page.input_value("#f-job_name") == "half-typed"
    web.assert_clean()


def test_phone_width_and_keyboard(web: Watched, service: Service):
    page = web.page
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{service.url}/ui/")
    _sign_up(web, "lin@example.org")
    page.wait_for_selector("#tree button[data-path='data/']")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    web.shot("phone-files", full_page=True)
    # The keyboard reaches the folders and opens one.
    for _ in range(30):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.dataset.path") == "artifact/":
            break
    else:
        pytest.fail("the folders cannot be reached with Tab")
    page.keyboard.press("Enter")
    page.wait_for_selector("#tree button[data-path='artifact/'][aria-expanded='true']")
    page.click("nav a[data-section='new']")
    page.wait_for_selector("#f-application option[value='decode']", state="attached")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    web.shot("phone-form", full_page=True)
    page.click("#sign-out")
    page.wait_for_selector("#sign-in[open]")
    assert page.evaluate("sessionStorage.length") == 0
    web.assert_clean()


def test_dropped_files_renamed_deleted_and_a_folder_downloaded_as_a_zip(web: Watched, service: Service):
    page = web.page
    page.goto(f"{service.url}/ui/")
    _sign_up(web, "ida@example.org")
    page.click("#tree button[data-path='data/']")
    page.click("#new-folder")
    page.fill("#confirm-input", "drop")
    page.click("#confirm-ok")
    page.click("#tree button[data-path='data/drop/']")
    dropped = page.evaluate_handle(
        """() => {
          const data = new DataTransfer();
          data.items.add(new File(["x,y\\n1,2\\n"], "table.csv", {type: "text/csv"}));
          data.items.add(new File(["a note\\n"], "note.txt", {type: "text/plain"}));
          return data;
        }"""
    )
    page.dispatch_event("#drop-zone", "drop", {"dataTransfer": dropped})
    page.wait_for_selector("#upload-total-text:text('all 2 files uploaded')")
    page.wait_for_selector("#tree button[data-path='data/drop/note.txt']")
    web.shot("dropped")

    page.click("#tree button[data-path='data/drop/note.txt']")
    page.click("#rename")
    page.fill("#confirm-input", "data/drop/renamed.txt")
    page.click("#confirm-ok")
    page.wait_for_selector("#tree button[data-path='data/drop/renamed.txt']")

    page.click("#tree button[data-path='data/drop/table.csv']")
    page.click("#delete")
    assert "cannot be undone" in page.text_content("#confirm-text")
    page.click("#confirm-cancel")  # asked, and kept
    assert page.is_visible("#tree button[data-path='data/drop/table.csv']")
    page.click("#delete")
    page.click("#confirm-ok")
    page.wait_for_selector("#tree button[data-path='data/drop/table.csv']", state="detached")

    page.click("#tree button[data-path='data/drop/']")
    with page.expect_download() as download:
        page.click("#download")
    assert download.value.suggested_filename == "drop.zip"
    with zipfile.ZipFile(download.value.path()) as archive:
        assert archive.namelist() == ["renamed.txt"] and archive.read("renamed.txt") == b"a note\n"
    web.assert_clean()


def test_the_jobs_table_pages_and_filters(web: Watched, service: Service):
    page = web.page
    page.goto(f"{service.url}/ui/#/jobs")
    _sign_up(web, "max@example.org")
    token = httpx.post(f"{service.url}/token", data={"username": "max@example.org", "password": PASSWORD}).json()["id_token"]
    auth = {"Authorization": f"Bearer {token}"}
    for folder in ("config/c1", "data/d1"):
        r = httpx.post(f"{service.url}/files/{folder}/upload", headers=auth, files={"file": ("f.txt", b"1")})
        assert r.status_code == 201, r.text
    ids = []
    for index in range(23):
        body = {
            "job_name": f"{'b' if index % 2 else 'a'}-{index:02d}",
            "application": {"application": "decode", "version": "v0_10_1", "entrypoint": "train"},
            "attributes": {"files_down": {"config_id": "c1", "data_ids": ["d1"]}},
        }
        r = httpx.post(f"{service.url}/jobs", headers=auth, json=body)
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    service.set_status(ids[0], "error", "out of memory")
    page.wait_for_selector("#jobs-range:text-is('1 to 20 of 23')")  # arrived by polling, no reload
    assert page.locator("#jobs-body tr").count() == 20
    assert page.is_disabled("#jobs-prev")
    page.click("#jobs-next")
    page.wait_for_selector("#jobs-range:text-is('21 to 23 of 23')")
    assert page.locator("#jobs-body tr").count() == 3
    assert page.is_visible(f"#jobs-body tr[data-job='{ids[0]}'] .badge-error")
    web.shot("jobs-page-2")
    page.fill("#filter-name", "b-")
    page.click("#job-filters button[type='submit']")
    page.wait_for_selector("#jobs-range:text-is('1 to 11 of 11')")
    page.select_option("#filter-status", "error")
    page.fill("#filter-name", "")
    page.click("#job-filters button[type='submit']")
    page.wait_for_selector("#jobs-range:text-is('1 to 1 of 1')")
    assert page.text_content("#jobs-body tr td:nth-child(2)") == "a-00"
    web.shot("jobs-filtered")
    page.select_option("#filter-status", "")
    page.select_option("#filter-application", "comet")
    page.click("#job-filters button[type='submit']")
    page.wait_for_selector("#jobs-body td:text('No job matches the filters.')")
    page.select_option("#filter-application", "decode")
    page.fill("#filter-after", "2000-01-01")
    page.click("#job-filters button[type='submit']")
    page.wait_for_selector("#jobs-range:text-is('1 to 20 of 23')")
    web.assert_clean()


def test_the_watch_catches_csp_violations_and_requests_outside(web: Watched, service: Service):
    """The checks the other tests rely on do fire: an inline script, and a request to another host."""
    page = web.page
    page.goto(f"{service.url}/ui/")
    page.wait_for_selector("#sign-in[open]")
    page.evaluate("""() => {
      const script = document.createElement("script");
      script.textContent = "window.injected = true";
      document.body.append(script);
      const image = document.createElement("img");
      image.src = "https://example.org/tracker.png";
      document.body.append(image);
    }""")
    page.wait_for_timeout(300)
    assert page.evaluate("window.injected") is None  # the policy blocked the inline script
    assert any("CSP violation: script-src" in p for p in web.problems), web.problems
    assert any("example.org" in p for p in web.problems), web.problems
    web.problems.clear()


def _api_user(service: Service, username: str) -> dict[str, str]:
    """The bearer header of a user the page signed up, with a config and a data folder to start jobs from."""
    token = httpx.post(f"{service.url}/token", data={"username": username, "password": PASSWORD}).json()["id_token"]
    auth = {"Authorization": f"Bearer {token}"}
    for folder in ("config/c1", "data/d1"):
        r = httpx.post(f"{service.url}/files/{folder}/upload", headers=auth, files={"file": ("f.txt", b"1")})
        assert r.status_code == 201, r.text
    return auth


def _start_job(service: Service, auth: dict[str, str], name: str) -> int:
    body = {
        "job_name": name,
        "application": {"application": "decode", "version": "v0_10_1", "entrypoint": "train"},
        "attributes": {"files_down": {"config_id": "c1", "data_ids": ["d1"]}},
    }
    r = httpx.post(f"{service.url}/jobs", headers=auth, json=body)
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


# A live update shows within this after the PUT returns (measured: 15-45 ms; the bound leaves room for a loaded CI
# machine): far below the 20 s the page polls at while its stream is connected.
LIVE_SECONDS = 2.0


def _within(page: Any, selector: str, seconds: float) -> float:
    """How long `selector` took to appear, failing past `seconds`."""
    started = time.monotonic()
    page.wait_for_selector(selector, timeout=seconds * 1000)
    return time.monotonic() - started


def test_jobs_follow_the_event_stream_and_resume_it_after_a_drop(browser: Any, service: Service, request: pytest.FixtureRequest):
    """While the stream is connected, polling is every 20 s: updates that show within a second (and
    with no request for the job or the table) came through the stream. The page reaches the service
    through a relay, which the test cuts to lose the stream."""
    relay = Relay(int(service.url.rsplit(":", 1)[1]))
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        web = watch(context, (relay.url,), ARTIFACTS / "jobs_follow_the_event_stream")
        _follow_the_stream(web, relay, service)
    finally:
        context.close()
        relay.close()


def _follow_the_stream(web: Watched, relay: Relay, service: Service) -> None:
    page = web.page
    page.goto(f"{relay.url}/ui/#/jobs")
    _sign_up(web, "eve@example.org")
    auth = _api_user(service, "eve@example.org")
    first = _start_job(service, auth, "live-1")
    page.wait_for_selector(f"#jobs-body tr[data-job='{first}'] .badge-queued")
    page.wait_for_selector("html[data-live='stream']", state="attached")
    asked: list[str] = []  # the page asking for jobs or a job (polls, refreshes)
    page.on("request", lambda r: re.search(r"/jobs(\?|/\d+$)", r.url) and r.method == "GET" and asked.append(r.url))
    streams: list[dict[str, str]] = []
    page.on("request", lambda r: r.url.endswith("/jobs/events/stream") and streams.append(r.headers))

    for status in ("running", "finished"):
        service.set_status(first, status, f"now {status}")
        _within(page, f"#jobs-body tr[data-job='{first}'] .badge-{status}", LIVE_SECONDS)
    assert asked == []
    web.shot("table-live")

    # A job's page: its badge and history follow the stream too.
    second = _start_job(service, auth, "live-2")
    page.click(f"#jobs-body tr[data-job='{second}'] a")
    _badge(page, "queued")
    page.wait_for_selector("#job-events li")
    asked.clear()
    service.set_status(second, "running", "epoch 1/10")
    _within(page, "#job-status.badge-running", LIVE_SECONDS)
    page.wait_for_selector("#job-events li:has(.badge-running)")
    assert not [url for url in asked if url.endswith(f"/jobs/{second}")]
    assert page.is_visible("#job-cancel")

    # The stream drops (the network goes away): the page polls, then resumes the stream after the last id it saw.
    last_seen = max(e["seq"] for e in httpx.get(f"{service.url}/jobs/{second}/events", headers=auth).json())
    streams.clear()
    relay.cut()
    page.wait_for_selector("html[data-live='polling']", state="attached")
    service.set_status(second, "finished", "done")
    relay.mend()
    _badge(page, "finished")
    page.wait_for_selector("html[data-live='stream']", state="attached")
    assert streams and streams[-1].get("last-event-id") == str(last_seen), streams
    page.wait_for_selector("#job-events li:has(.badge-finished)")
    assert page.is_hidden("#job-cancel")  # a final job cannot be canceled
    web.shot("job-history")
    # What the cut did, and only that: requests under way failed, and Chromium logged them.
    cut = ("ERR_INCOMPLETE_CHUNKED_ENCODING", "ERR_EMPTY_RESPONSE", "ERR_CONNECTION", "ERR_NETWORK_CHANGED", "Could not refresh")
    web.problems[:] = [p for p in web.problems if not any(reason in p for reason in cut)]
    web.assert_clean()


def test_a_running_job_canceled_from_its_page_keeps_its_outputs(web: Watched, service: Service):
    page = web.page
    page.goto(f"{service.url}/ui/#/jobs")
    _sign_up(web, "rosalind@example.org")
    auth = _api_user(service, "rosalind@example.org")
    job_id = _start_job(service, auth, "to-cancel")
    service.set_status(job_id, "running", "epoch 3/10")
    service.put("rosalind@example.org/output/to-cancel/partial.csv", b"x,y\n1,2\n")
    page.goto(f"{service.url}/ui/#/jobs/{job_id}")
    _badge(page, "running")
    page.click("#job-cancel")
    assert "kept" in page.text_content("#confirm-text")
    page.click("#confirm-ok")
    _badge(page, "canceled")
    assert page.is_hidden("#job-cancel")  # a final job is not offered a cancel
    page.wait_for_selector("#job-events li:has(.badge-canceled)")
    web.shot("job-canceled")
    assert service.names("rosalind@example.org/output/to-cancel") == ["partial.csv"]
    page.click("#job-links a:text('output: output/to-cancel/')")
    page.wait_for_selector("#tree button[data-path='output/to-cancel/partial.csv']")
    page.click("nav a[data-section='jobs']")
    page.wait_for_selector(f"#jobs-body tr[data-job='{job_id}'] .badge-canceled")
    web.assert_clean()



def test_a_same_site_page_cannot_use_the_login_cookie_to_cancel_a_job(browser: Any, service: Service):
    """The attack the Origin check stops: another port of the same host is the same *site*, so the
    browser sends the `SameSite=Lax` cookie with its form's POST; the service refuses it (403) by its
    Origin. The service's own origin, with the same cookie, may."""
    attacker = "http://127.0.0.1:1"  # another port of the service's host: served by the test below
    context = browser.new_context()
    try:
        web = watch(context, (service.url, attacker), ARTIFACTS / "csrf")
        page = web.page
        httpx.post(f"{service.url}/user", data={"username": "mallory-victim@example.org", "password": PASSWORD})
        page.goto(f"{service.url}/ui/")
        login = page.evaluate(f"""async () => {{
            const r = await fetch("/login", {{method: "POST",
              body: new URLSearchParams({{username: "mallory-victim@example.org", password: "{PASSWORD}"}})}});
            await r.text();
            return r.status;
        }}""")
        assert login == 201
        auth = _api_user(service, "mallory-victim@example.org")
        job_id = _start_job(service, auth, "victim")
        service.set_status(job_id, "running")
        form = f'<form method="post" action="{service.url}/jobs/{job_id}/cancel"></form><p>prizes</p>'
        page.route(f"{attacker}/**", lambda route: route.fulfill(content_type="text/html", body=form))
        page.goto(f"{attacker}/win")
        web.allowed.append("status of 403")
        with page.expect_response(f"{service.url}/jobs/{job_id}/cancel") as answer:
            page.evaluate("document.forms[0].submit()")
        assert answer.value.status == 403
        assert answer.value.request.headers.get("cookie", "").startswith("Authorization=")  # the cookie was sent
        assert "cross-site request refused" in answer.value.json()["detail"]
        assert httpx.get(f"{service.url}/jobs/{job_id}", headers=auth).json()["status"] == "running"
        page.goto(f"{service.url}/ui/")
        canceled = page.evaluate(f'async () => (await fetch("/jobs/{job_id}/cancel", {{method: "POST"}})).status')
        assert canceled == 200  # the same cookie from the service's own page
        web.assert_clean()
    finally:
        context.close()
