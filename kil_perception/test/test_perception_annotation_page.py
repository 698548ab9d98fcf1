"""Annotating without a display: the web page served by ``annotate --web``, driven in Debian's
headless Chromium through Selenium — points clicked, one dragged, saved — writes the same spec as
``--point`` with those pixels; a save with a point missing or outside the frame is refused by name
and the page stays up."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from kil_perception.annotation_page import AnnotationPage

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


def _post(url: str, payload) -> tuple[int, dict]:
    request = urllib.request.Request(
        url + "save", json.dumps(payload).encode(), {"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_the_page_serves_the_frame_and_checks_what_is_saved() -> None:
    rgb = np.zeros((40, 60, 3), np.uint8)
    rgb[10:20, 5:15] = (255, 0, 0)
    saved = []
    page = AnnotationPage(rgb, ["a", "b", "c"], "mug", port=0, on_save=lambda p: saved.append(p) or "spec.yaml")
    page.start()
    try:
        with urllib.request.urlopen(page.url, timeout=10) as reply:
            html = reply.read().decode()
        assert '<li data-name="a">a</li>' in html and 'width="60" height="40"' in html
        with urllib.request.urlopen(page.url + "frame.png", timeout=10) as reply:
            frame = cv2.cvtColor(
                cv2.imdecode(np.frombuffer(reply.read(), np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB
            )
        np.testing.assert_array_equal(frame, rgb)  # lossless
        status, answer = _post(page.url, {"points": {"a": [1, 2], "b": [3, 4]}})
        assert status == 400 and "missing ['c']" in answer["error"] and not saved
        status, answer = _post(page.url, {"points": {"a": [1, 2], "b": [3, 4], "c": [60, 4]}})
        assert status == 400 and "c (60.0, 4.0) is outside the 60x40 frame" in answer["error"]
        status, answer = _post(page.url, {"points": {"a": [1, 2], "b": [3.25, 4], "c": [59.5, 39]}})
        assert status == 200 and answer == {"saved": "spec.yaml"}
        assert page.wait(5) == {"a": (1.0, 2.0), "b": (3.2, 4.0), "c": (59.5, 39.0)} == saved[0]
    finally:
        page.close()


@pytest.fixture()
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    assert CHROMIUM and CHROMEDRIVER, "Debian's chromium and chromium-driver are needed (make setup installs them)"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=900,700"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    yield driver
    driver.quit()


def test_points_clicked_and_dragged_in_chromium_write_the_same_spec_as_point(tmp_path: Path, browser) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    rng = np.random.default_rng(0)
    image = tmp_path / "frame.png"
    cv2.imwrite(str(image), rng.integers(0, 255, (120, 160, 3), dtype=np.uint8))
    process = subprocess.Popen(
        [sys.executable, "-m", "kil_perception.annotate", "--image", str(image), "--category", "mug",
         "--names", "handle", "body", "rim", "--out", str(tmp_path / "web" / "spec.yaml"), "--web", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        first = process.stdout.readline()
        url = re.search(r"open (http://\S+) in a browser", first).group(1)
        browser.get(url)
        img = browser.find_element(By.ID, "image")
        WebDriverWait(browser, 20).until(lambda d: d.execute_script("return arguments[0].complete", img))
        clicks = {"handle": (40, 30), "body": (100, 60), "rim": (130, 100)}
        for u, v in clicks.values():  # each click places the next unplaced name
            ActionChains(browser).move_to_element_with_offset(img, u - 80, v - 60).click().perform()
        dot = browser.find_element(By.CSS_SELECTOR, '.point[data-name="body"]')
        ActionChains(browser).click_and_hold(dot).move_by_offset(-30, 10).release().perform()
        clicks["body"] = (70, 70)  # dragged 30 px left, 10 px down
        browser.find_element(By.ID, "save").click()
        status = browser.find_element(By.ID, "status")
        WebDriverWait(browser, 20).until(lambda d: status.text.startswith("saved"))
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
    points = [f"--point={name}={u},{v}" for name, (u, v) in clicks.items()]
    done = subprocess.run(
        [sys.executable, "-m", "kil_perception.annotate", "--image", str(image), "--category", "mug", *points,
         "--out", str(tmp_path / "cli" / "spec.yaml")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    web, cli = (yaml.safe_load((tmp_path / d / "spec.yaml").read_text()) for d in ("web", "cli"))
    web_points = web["categories"][0]["references"][0].pop("keypoints")
    cli_points = cli["categories"][0]["references"][0].pop("keypoints")
    assert web == cli and list(web_points) == list(cli_points) == ["handle", "body", "rim"]
    for name in cli_points:
        assert np.abs(np.subtract(web_points[name], cli_points[name])).max() <= 1.0, (name, web_points, cli_points)
    assert (tmp_path / "web" / "mug_reference.png").read_bytes() == (
        tmp_path / "cli" / "mug_reference.png"
    ).read_bytes()


def test_export_frame_writes_the_reference_frame(tmp_path: Path) -> None:
    image = tmp_path / "frame.png"
    cv2.imwrite(str(image), np.full((30, 40, 3), 77, np.uint8))
    done = subprocess.run(
        [sys.executable, "-m", "kil_perception.annotate", "--image", str(image), "--export-frame",
         str(tmp_path / "out.png")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0 and "the 40x30 reference frame" in done.stdout
    assert (cv2.imread(str(tmp_path / "out.png")) == 77).all()
