"""A person in headless Chromium: log in, upload a clip, watch the transcript appear."""

import shutil

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from tests.factories import PASSWORD, speech_wav

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def start_chromium(profile, extra_flags=()):
    chromium = shutil.which("chromium")
    driver_path = shutil.which("chromedriver")
    assert chromium and driver_path, "Debian's chromium and chromium-driver are needed: make install"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in [*CHROMIUM_FLAGS, *extra_flags, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(60)
    # Every page records the Content-Security-Policy violations it meets (blocked scripts, styles,
    # connections) where the test can read them afterwards, across navigations.
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": RECORD_CSP_VIOLATIONS})
    return driver


RECORD_CSP_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (e) => {
  const seen = JSON.parse(localStorage.getItem("cspViolations") || "[]");
  seen.push(`${location.pathname}: ${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`);
  localStorage.setItem("cspViolations", JSON.stringify(seen));
});
"""


def csp_violations(driver) -> list[str]:
    return driver.execute_script("return JSON.parse(localStorage.getItem('cspViolations') || '[]')")


@pytest.fixture
def browser(tmp_path):
    driver = start_chromium(tmp_path / "profile")
    yield driver
    try:
        assert csp_violations(driver) == [], "the pages broke the Content-Security-Policy"
    finally:
        driver.quit()


def log_in(browser, server, path):
    browser.get(f"{server}{path}")
    browser.find_element(By.NAME, "username").send_keys("alice")
    browser.find_element(By.NAME, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()


@pytest.fixture(scope="module")
def long_speech(tmp_path_factory):
    """Long enough (~40 s) that the page is open well before the transcript is ready."""
    sentence = "This is part {} of a long report about the quick brown fox and the lazy dog. "
    text = "".join(sentence.format(n) for n in ("one", "two", "three", "four", "five", "six"))
    return speech_wav(text, tmp_path_factory.mktemp("long") / "long.wav")


def test_log_in_upload_and_see_the_transcript(daphne_server, browser, alice, long_speech):
    path = long_speech
    browser.get(f"{daphne_server}/recordings/")
    # Not logged in: sent to the login page.
    assert "/accounts/login/" in browser.current_url
    browser.find_element(By.NAME, "username").send_keys("alice")
    browser.find_element(By.NAME, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()

    WebDriverWait(browser, 20).until(EC.presence_of_element_located((By.ID, "upload-form")))
    browser.find_element(By.ID, "id_audio").send_keys(str(path))
    browser.find_element(By.ID, "id_title").send_keys("Browser clip")
    browser.find_element(By.CSS_SELECTOR, "#upload-form button[type=submit]").click()

    # The recording page: the transcript arrives over the WebSocket, without a reload.
    WebDriverWait(browser, 20).until(EC.presence_of_element_located((By.ID, "recording")))
    browser.execute_script("document.body.dataset.sameDocument = 'yes'")
    assert browser.find_element(By.ID, "status").text in ("Queued", "Transcribing")
    WebDriverWait(browser, 120).until(EC.text_to_be_present_in_element((By.ID, "transcript"), "fox"))
    assert browser.find_element(By.ID, "status").text == "Done"
    assert browser.execute_script("return document.body.dataset.sameDocument") == "yes"
    assert browser.find_elements(By.CSS_SELECTOR, "#transcript .segments li .time")


def test_the_live_page_shows_spoken_words_as_they_are_said(daphne_server, alice, long_speech, tmp_path):
    # Chromium's fake microphone plays the file (looped) into getUserMedia.
    browser = start_chromium(
        tmp_path / "profile",
        [
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={long_speech}",
            "--autoplay-policy=no-user-gesture-required",
        ],
    )
    try:
        log_in(browser, daphne_server, "/recordings/live")
        WebDriverWait(browser, 20).until(EC.element_to_be_clickable((By.ID, "live-start"))).click()
        WebDriverWait(browser, 20).until(EC.text_to_be_present_in_element((By.ID, "live-status"), "Listening"))
        # Words become final (committed text) while the audio is still playing.
        try:
            WebDriverWait(browser, 60).until(EC.text_to_be_present_in_element((By.ID, "live-committed"), "fox"))
        except Exception:
            state = {
                i: browser.find_element(By.ID, i).text
                for i in ("live-status", "live-committed", "live-partial", "live-notice")
            }
            state["samples"] = browser.execute_script("return document.getElementById('live').dataset.samples")
            logs = browser.get_log("browser") if hasattr(browser, "get_log") else []
            raise AssertionError(f"{state} {logs}") from None
        committed = browser.find_element(By.ID, "live-committed").text
        assert "report" in committed.lower() or "dog" in committed.lower(), committed
        browser.find_element(By.ID, "live-stop").click()
        saved = WebDriverWait(browser, 60).until(EC.presence_of_element_located((By.ID, "live-saved")))
        saved.click()
        WebDriverWait(browser, 20).until(EC.text_to_be_present_in_element((By.ID, "transcript"), "fox"))
        assert csp_violations(browser) == []  # the AudioWorklet and the WebSocket included
    finally:
        browser.quit()


def test_search_plays_from_the_moment_and_the_graph_expands(daphne_server, browser, alice, long_speech):
    from django.core.files.base import ContentFile

    from graph import writes
    from tests.factories import make_transcribed

    standup = make_transcribed(
        alice,
        "standup",
        [
            "Today Stella met John Smith in Boston.",
            "The lazy budget for Boston is late.",
            "Then John Smith flew to Paris.",
        ],
    )
    standup.audio.save("standup.wav", ContentFile(long_speech.read_bytes()), save=True)
    review = make_transcribed(alice, "review", ["John Smith and Stella reviewed the budget."])
    writes.write_recording(standup.id)
    writes.write_recording(review.id)

    log_in(browser, daphne_server, "/recordings/")
    WebDriverWait(browser, 20).until(EC.presence_of_element_located((By.ID, "upload-form")))
    box = browser.find_element(By.CSS_SELECTOR, "header form.search input[name=q]")
    box.send_keys("lazy\n")
    hit = WebDriverWait(browser, 20).until(
        EC.presence_of_element_located((By.CSS_SELECTOR, "#segment-results li a.time"))
    )
    assert "<mark>lazy</mark>" in browser.find_element(By.ID, "segment-results").get_attribute("innerHTML")
    hit.click()

    # The recording page seeks its player to the segment and marks it.
    WebDriverWait(browser, 20).until(EC.presence_of_element_located((By.CSS_SELECTOR, "li.current")))
    assert browser.find_element(By.CSS_SELECTOR, "li.current").get_attribute("data-start") == "2.0"
    WebDriverWait(browser, 10).until(
        lambda b: b.execute_script("return document.getElementById('player').currentTime") >= 2.0
    )
    WebDriverWait(browser, 20).until(EC.text_to_be_present_in_element((By.ID, "knowledge"), "John Smith"))

    # The explorer draws the neighbourhood, then loads a neighbour's links on demand.
    browser.find_element(By.PARTIAL_LINK_TEXT, "Explore its graph").click()
    WebDriverWait(browser, 20).until(
        lambda b: b.execute_script("return window.graphExplorer && window.graphExplorer.cy.nodes().length > 1")
    )
    before = browser.execute_script("return graphExplorer.cy.nodes().length")
    assert browser.execute_script(f"return graphExplorer.cy.getElementById('recording:{review.id}').empty()")
    john = browser.execute_script(
        "return graphExplorer.cy.nodes().filter(n => n.data('label') === 'John Smith')[0].id()"
    )
    browser.execute_script("graphExplorer.cy.getElementById(arguments[0]).emit('tap')", john)
    WebDriverWait(browser, 20).until(
        lambda b: b.execute_script(f"return !graphExplorer.cy.getElementById('recording:{review.id}').empty()")
    )
    assert browser.execute_script("return graphExplorer.cy.nodes().length") > before


def test_the_pages_keep_working_under_the_content_security_policy(daphne_server, browser, alice):
    from django.contrib.auth import get_user_model

    from graph import writes
    from tests.factories import make_transcribed

    recording = make_transcribed(alice, "kept", ["Stella met John Smith in Boston."])
    writes.write_recording(recording.id)
    get_user_model().objects.filter(pk=alice.pk).update(is_staff=True, is_superuser=True)
    log_in(browser, daphne_server, "/recordings/")
    WebDriverWait(browser, 20).until(EC.presence_of_element_located((By.ID, "upload-form")))

    # The policy is enforced (an injected inline script is blocked and recorded), then forgotten.
    browser.execute_script(
        "document.body.appendChild(Object.assign(document.createElement('script'), {textContent: 'window.inlineRan = true'}))"
    )
    WebDriverWait(browser, 10).until(lambda b: csp_violations(b))
    assert browser.execute_script("return window.inlineRan === undefined")
    assert "script-src" in csp_violations(browser)[0]
    browser.execute_script("localStorage.removeItem('cspViolations')")
    # The one inline style allowed (by its hash): the rule Cytoscape.js injects for the explorer.
    browser.execute_script(
        "document.head.appendChild(Object.assign(document.createElement('style'),"
        " {textContent: '.__________cytoscape_container { position: relative; }'}))"
    )

    # Deleting asks first (confirm.js, no inline handler); dismissed, nothing is deleted.
    browser.get(f"{daphne_server}/recordings/{recording.pk}/")
    browser.find_element(By.CSS_SELECTOR, "form.danger button[type=submit]").click()
    WebDriverWait(browser, 10).until(EC.alert_is_present())
    browser.switch_to.alert.dismiss()
    assert browser.find_element(By.ID, "recording")

    # The other pages, the API docs (Swagger UI from our static files) and the admin among them.
    for path, ready in [
        ("/accounts/profile/", (By.ID, "id_expires_in_days")),
        ("/accounts/delete/", (By.ID, "id_password")),
        ("/workflows/", (By.TAG_NAME, "main")),
        ("/api/docs", (By.CSS_SELECTOR, ".swagger-ui .info")),
        ("/admin/", (By.ID, "content")),
    ]:
        browser.get(f"{daphne_server}{path}")
        WebDriverWait(browser, 30).until(EC.presence_of_element_located(ready))
    # The fixture then checks that none of these met a violation.
