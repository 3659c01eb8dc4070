#!/usr/bin/env python3
"""The dashboard in a real browser: Debian's headless Chromium driven by selenium (nothing is
downloaded: the browser and its driver are the system's). Run by WorkerDashboardBrowserTests
against a `worker run` it started; every case prints one line, and a failed one ends the run
with exit status 1 and its reason. Screenshots of each page go to $SCREENSHOT_DIR.

Environment: DASHBOARD_URL (http://127.0.0.1:PORT), API_TOKEN, WORKER_BIN, WORK_DIR (where the
worker's CLI finds its database), TRIGGER (a file whose creation lets the running job print its
second line), SCREENSHOT_DIR.
"""
import json
import os
import subprocess
import sys
import time
import traceback

from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException, TimeoutException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

URL = os.environ["DASHBOARD_URL"]
TOKEN = os.environ["API_TOKEN"]
WORKER = os.environ["WORKER_BIN"]
WORK_DIR = os.environ["WORK_DIR"]
TRIGGER = os.environ["TRIGGER"]
SHOTS = os.environ["SCREENSHOT_DIR"]


def worker(*arguments):
    """Runs a worker CLI command; returns its standard output."""
    result = subprocess.run([WORKER, *arguments], cwd=WORK_DIR, capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin", "HOME": WORK_DIR, "NO_COLOR": "1", "JOB_SANDBOX": "none"})
    if result.returncode != 0:
        raise AssertionError(f"worker {' '.join(arguments)} failed: {result.stderr}")
    return result.stdout.strip()


def enqueue(prompt, *extra):
    return worker("enqueue", "--prompt", prompt, *extra)


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def wait(driver, condition, timeout=10, message="timed out"):
    # A page that updates itself live replaces elements between finding one and reading it:
    # such a stale element is looked up again, as a missing one is. Chromium reports the same
    # race on a click as an unknown error ("Node with given id does not belong to the
    # document"), the node resolved before the click was dispatched, and a command that ran
    # while a form's answer replaced the page as "aborted by navigation": tried again too.
    def tolerant(d):
        try:
            return condition(d)
        except WebDriverException as error:
            if "does not belong to the document" in str(error) or "aborted by navigation" in str(error):
                return False
            raise
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.05,
                             ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)).until(tolerant)
    except TimeoutException:
        raise AssertionError(message)


def click(driver, element_id):
    """Clicks the element, found again if the page replaced it in between (live pages)."""
    wait(driver, lambda d: d.find_element(By.ID, element_id).click() or True, message=f"#{element_id} could not be clicked")


def type_into(driver, element_id, text):
    """Types into the element once the page that holds it has loaded (a form's answer may
    still be replacing the page when the element is first found)."""
    wait(driver, lambda d: d.execute_script("return document.readyState") == "complete", message="the page never loaded")
    wait(driver, lambda d: d.find_element(By.ID, element_id).send_keys(text) or True, message=f"#{element_id} could not be typed into")


def shot(driver, name):
    path = os.path.join(SHOTS, name + ".png")
    driver.save_screenshot(path)
    return path


def events_hold(driver, text):
    """Whether a line of the job page's events holds `text` (in the page: a job of 2,000 lines
    asked element by element took a WebDriver round trip each)."""
    return driver.execute_script(
        "var t = arguments[0]; return Array.from(document.querySelectorAll('#events li')).some(function (li) { return li.textContent.replace(/\\s+/g, ' ').indexOf(t) >= 0; });",
        text)


def events_end_with(driver, text):
    """Whether a line of the job page's events ends with `text`."""
    return driver.execute_script(
        "var t = arguments[0]; return Array.from(document.querySelectorAll('#events li')).some(function (li) { var s = li.textContent.replace(/\\s+/g, ' ').trim(); return s.slice(-t.length - 1) === ' ' + t; });",
        text)


def listed(driver):
    """The jobs list's rows as (id, status), read in one script: the list refreshes itself in
    place, and an element found before a refresh is gone after it."""
    return [tuple(row) for row in driver.execute_script(
        "return Array.from(document.querySelectorAll('#jobs tbody tr[data-id]')).map(r => [r.dataset.id, r.dataset.status])")]


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,900"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.set_page_load_timeout(20)
    return driver


def main():
    os.makedirs(SHOTS, exist_ok=True)
    later = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 600))
    session = "5e551017-0000-4000-8000-000000000001"
    for turn in range(3):
        enqueue(f"session turn {turn}: add a login page", "--session-id", session)
    hostile = enqueue("<script>document.title='owned'</script><img src=x onerror=alert(1)> hostile", "--run-at", later)
    waiting = enqueue("cancel me later", "--run-at", later)
    failing = [enqueue(f"fail bulk {index}", "--queue", "bulk", "--max-attempts", "1") for index in range(50)]
    deadline = time.time() + 60
    while json.loads(worker("stats", "--json"))["failed"] < 50:
        check(time.time() < deadline, "the 50 bulk jobs did not fail in time")
        time.sleep(0.2)

    driver = browser()
    results = []
    live_job = []
    try:
        def case(name, body):
            started = time.time()
            body()
            results.append(name)
            print(f"ok  {name} ({time.time() - started:.1f} s)", flush=True)

        def login_form():
            driver.get(URL + "/ui")
            wait(driver, EC.presence_of_element_located((By.ID, "login")), message="no login form at /ui")
            check(driver.current_url.endswith("/ui/login"), f"not sent to the login form: {driver.current_url}")
            shot(driver, "login")
            type_into(driver, "token", "wrong-token")
            click(driver, "sign-in")
            error = wait(driver, EC.presence_of_element_located((By.ID, "login-error")), message="no error for a wrong token")
            check("not the API token" in error.text, f"wrong token message: {error.text}")
            type_into(driver, "token", TOKEN)
            click(driver, "sign-in")
            wait(driver, EC.presence_of_element_located((By.ID, "count-total")), message="not signed in with the right token")
            cookie = driver.get_cookie("mobvibe_dashboard")
            check(cookie is not None and cookie.get("httpOnly") and cookie.get("sameSite") == "Strict", f"session cookie: {cookie}")

        def overview_matches_stats():
            driver.get(URL + "/ui")
            stats = json.loads(worker("stats", "--json"))
            # Read in one script: the overview refreshes itself in place.
            shown = driver.execute_script(
                "return Object.fromEntries(Array.from(document.querySelectorAll('[id^=count-], #hour-failed')).map(e => [e.id, e.textContent]))")
            # The session turns may finish between the two reads: compare the settled figures.
            for status in ("failed", "cancelled"):
                check(int(shown[f"count-{status}"]) == stats[status], f"{status}: page {shown}, worker stats {stats}")
            check(int(shown["count-total"]) == sum(stats[s] for s in ("pending", "processing", "completed", "failed", "cancelled")),
                  f"total: page {shown}, worker stats {stats}")
            check(int(shown["hour-failed"]) >= 50, "the last hour's failures are not counted")
            wait(driver, lambda d: d.find_element(By.ID, "chart").is_displayed(), message="no chart")
            shot(driver, "overview")

        def refresh_waits_for_its_answer():
            driver.get(URL + "/ui")
            wait(driver, EC.presence_of_element_located((By.ID, "count-total")), message="no overview")
            # Every reload answered only after 12 s, as a slow page on a big table would: the
            # overview (every 5 s) starts no second reload while the first is out.
            driver.execute_script("""
                window.__reloads = 0;
                var real = window.fetch;
                window.fetch = function () {
                    var args = arguments;
                    window.__reloads += 1;
                    return new Promise(function (resolve) { setTimeout(function () { resolve(real.apply(window, args)); }, 12000); });
                };
            """)
            time.sleep(11.5)
            started = driver.execute_script("return window.__reloads")
            check(started == 1, f"{started} reloads started in 11.5 s while the first was unanswered")

        def filters():
            driver.get(URL + "/ui/jobs?status=failed")
            rows = listed(driver)
            check(len(rows) > 0 and all(status == "failed" for _, status in rows), f"status filter: {rows}")
            box = driver.find_element(By.ID, "filter-text")
            box.clear()
            box.send_keys("bulk 17")
            click(driver, "apply-filters")
            wait(driver, lambda d: "q=bulk+17" in d.current_url or "q=bulk%2017" in d.current_url, message="text filter not applied")
            ids = [job for job, _ in listed(driver)]
            check(ids == [failing[17]], f"text filter found {ids}")
            shot(driver, "jobs-filtered")

        def open_job_and_script_as_text():
            driver.get(URL + "/ui/jobs")
            shot(driver, "jobs")
            driver.get(URL + "/ui/jobs?q=hostile")
            driver.find_element(By.CSS_SELECTOR, f'#jobs a[href="/ui/jobs/{hostile}"]').click()
            prompt = wait(driver, EC.presence_of_element_located((By.ID, "prompt")), message="job page did not open")
            check("<script>document.title='owned'</script>" in prompt.text, f"prompt not shown as text: {prompt.text}")
            check(driver.title != "owned", "the prompt's script ran")
            check(len(driver.find_elements(By.CSS_SELECTOR, "main img")) == 0, "the prompt's img became an element")
            shot(driver, "job")

        def live_line():
            if os.path.exists(TRIGGER):
                os.remove(TRIGGER)
            job = enqueue("wait for the trigger")
            live_job.append(job)
            driver.get(URL + f"/ui/jobs/{job}")
            wait(driver, lambda d: any("first line" in e.text for e in d.find_elements(By.CSS_SELECTOR, "#events li")), timeout=20,
                 message="the running job's first line never appeared")
            open(TRIGGER, "w").close()
            created = time.time()
            wait(driver, lambda d: any("second line" in e.text for e in d.find_elements(By.CSS_SELECTOR, "#events li")), timeout=10,
                 message="the line printed while the page was open never appeared")
            delay = time.time() - created
            print(f"    a printed line appeared in the open page {delay * 1000:.0f} ms after it was printed", flush=True)
            check(delay < 1.0, f"the line took {delay:.2f} s to appear")
            wait(driver, lambda d: d.find_element(By.ID, "job-status").text == "completed", timeout=15, message="the page never showed completed")
            shot(driver, "job-live")

        def retried_job_followed():
            # Its page shows the first 2,000 events and streams the rest, the first attempt's
            # `failed` among them: before, the page stopped there, said "failed", and never
            # showed the retry's lines.
            retry_trigger = TRIGGER + ".retry"
            if os.path.exists(retry_trigger):
                os.remove(retry_trigger)
            job = enqueue("long first attempt", "--max-attempts", "1")
            deadline = time.time() + 30
            while json.loads(worker("jobs", "show", job, "--json"))["status"] != "failed":
                check(time.time() < deadline, "the long first attempt did not fail in time")
                time.sleep(0.2)
            worker("jobs", "retry", job)
            driver.get(URL + f"/ui/jobs/{job}")
            wait(driver, lambda d: events_hold(d, "status failed "), timeout=15, message="the first attempt's end never streamed in")
            open(retry_trigger, "w").close()
            wait(driver, lambda d: events_hold(d, "second attempt line"), timeout=20,
                 message="the retry's line never appeared: the page stopped at the first attempt's end")
            wait(driver, lambda d: "has ended" in d.find_element(By.ID, "events-state").text, timeout=20,
                 message="the page never said the job had ended")

        def pending_cancelled_elsewhere():
            # A pending job stores no event when cancelled: the page learns it from the stream's end.
            job = enqueue("cancelled elsewhere", "--run-at", later)
            driver.get(URL + f"/ui/jobs/{job}")
            wait(driver, lambda d: d.find_element(By.ID, "job-status").text == "pending", message="not pending")
            worker("jobs", "cancel", job)
            wait(driver, lambda d: "has ended" in d.find_element(By.ID, "events-state").text, timeout=20,
                 message="the page went on following a job cancelled elsewhere")

        def cancel_running_from_its_page():
            # The page the Cancel button leads to follows the job until its command has stopped:
            # its last lines and the `cancelled` event come after the click.
            job = enqueue("slow to stop")
            driver.get(URL + f"/ui/jobs/{job}")
            wait(driver, lambda d: events_hold(d, "running until stopped"), timeout=20, message="the slow job never started")
            click(driver, "cancel")
            wait(driver, lambda d: events_end_with(d, "stopped"), timeout=20,
                 message="the command's last line, printed after the cancel, never appeared")
            wait(driver, lambda d: events_hold(d, "status cancelled"), timeout=20, message="the cancelled event never appeared")

        def enqueued_job_appears():
            driver.get(URL + "/ui/jobs")
            marker = enqueue("appears while the page is open", "--run-at", later)
            wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, f'#jobs tr[data-id="{marker}"]')) == 1, timeout=15,
                 message="a job enqueued while the list was open did not appear")

        def cancel_pending():
            driver.get(URL + f"/ui/jobs/{waiting}")
            wait(driver, lambda d: d.find_element(By.ID, "job-status").text == "pending", message="not pending before the cancel")
            # The job's page refreshes itself live: the button may be replaced as it is clicked.
            click(driver, "cancel")
            wait(driver, lambda d: d.find_element(By.ID, "job-status").text == "cancelled", message="not cancelled")
            wait(driver, lambda d: "Cancelled" in d.find_element(By.ID, "notice").text, message="no notice after the cancel")
            check(json.loads(worker("jobs", "show", waiting, "--json"))["status"] == "cancelled", "the store does not say cancelled")

        def bulk_retry():
            driver.get(URL + "/ui/jobs?status=failed&queue=bulk")
            boxes = driver.find_elements(By.CSS_SELECTOR, "#jobs input[name=id]")
            check(len(boxes) == 50, f"{len(boxes)} failed bulk jobs listed")
            click(driver, "select-all")
            check(all(box.is_selected() for box in driver.find_elements(By.CSS_SELECTOR, "#jobs input[name=id]")), "select all")
            click(driver, "bulk-retry")
            confirm = wait(driver, EC.presence_of_element_located((By.ID, "confirm")), message="no confirmation page")
            check("50" in confirm.text, f"confirmation: {confirm.text}")
            shot(driver, "bulk-confirm")
            confirm.click()
            message = wait(driver, EC.presence_of_element_located((By.ID, "message")), message="no result page")
            check("Retried 50 of 50 jobs." in message.text, f"result: {message.text}")
            shot(driver, "bulk-result")
            # Each was retried: pending again, or already run once more (and failed again).
            for job in failing[:5]:
                status = json.loads(worker("jobs", "show", job, "--json"))
                check(status["status"] in ("pending", "processing") or status["attempts"] >= 2, f"{job} was not retried: {status}")

        def session_page():
            driver.get(URL + f"/ui/sessions/{session}")
            numbers = driver.execute_script(
                "return Array.from(document.querySelectorAll('#turns tbody tr')).map(r => r.cells[0].textContent)")
            check(numbers == ["1", "2", "3"], f"turns: {numbers}")
            shot(driver, "session")

        def phone_and_dark():
            driver.set_window_size(390, 844)
            driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "dark"}]})
            driver.get(URL + "/ui")
            width = driver.execute_script("return document.documentElement.scrollWidth")
            check(width <= 390, f"the overview is {width} px wide at a phone's 390 px")
            background = driver.execute_script("return getComputedStyle(document.body).backgroundColor")
            check(background == "rgb(20, 23, 26)", f"dark background: {background}")
            shot(driver, "overview-phone-dark")
            driver.get(URL + "/ui/jobs")
            width = driver.execute_script("return document.documentElement.scrollWidth")
            check(width <= 390, f"the jobs list is {width} px wide at 390 px (its table scrolls inside its box)")
            shot(driver, "jobs-phone-dark")
            driver.get(URL + f"/ui/jobs/{live_job[0]}")
            width = driver.execute_script("return document.documentElement.scrollWidth")
            check(width <= 390, f"a job's page is {width} px wide at 390 px")
            shot(driver, "job-phone-dark")

        case("login form, a wrong token, then the right one", login_form)
        case("overview numbers match worker stats --json", overview_matches_stats)
        case("the overview's refresh waits for its last answer", refresh_waits_for_its_answer)
        case("filter by status and by text", filters)
        case("open a job; a <script> prompt shown as text", open_job_and_script_as_text)
        case("a line printed by a running job appears in under a second", live_line)
        case("a job enqueued while the page is open appears", enqueued_job_appears)
        case("cancel a pending job and see it cancelled", cancel_pending)
        case("a retried job's page follows the retry past its first attempt's end", retried_job_followed)
        case("a pending job cancelled elsewhere: its open page says it has ended", pending_cancelled_elsewhere)
        case("cancel a running job from its page: its last lines and its cancelled event follow", cancel_running_from_its_page)
        case("bulk retry of 50 failed jobs", bulk_retry)
        case("a session's turns in order", session_page)
        case("usable at a phone's width, in dark mode", phone_and_dark)
    except Exception as error:  # an assertion, or selenium's own (an element not found)
        shot(driver, "failure")
        where = traceback.extract_tb(error.__traceback__)
        print(f"FAIL {type(error).__name__}: {error}", flush=True)
        print("at " + " <- ".join(f"line {frame.lineno} ({frame.name})" for frame in reversed(where)), flush=True)
        return 1
    finally:
        driver.quit()
    print(f"{len(results)} browser cases passed; screenshots in {SHOTS}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
