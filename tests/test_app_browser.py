"""End to end in a real headless Chromium (Debian's /usr/bin/chromium driven by Playwright; no
browser download): `python app.py` serves the app; upload a sketch and a reference, pick the tags
method, move a tag slider, paint a stroke, click Colorize, and an output image appears whose
stroked region has the brush colour exactly. With COLORIZE_UPDATE_SCREENSHOT=1 it refreshes
docs/screenshot.png for the README; otherwise the screenshot goes to the test's tmp_path, so a
test run leaves the repository untouched."""

import io
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import app

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
SCREENSHOT = REPO / "docs" / "screenshot.png"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
TORSO = (130, 122)  # runner-sketch.png: inside the closed torso region (radius 15 px)
TIMEOUT_MS = 180_000  # a busy 2-core machine: model loads and first events are slow

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="Debian's chromium is not installed at /usr/bin/chromium (CI's .ci/run installs "
        "it with apt-get install chromium)",
    ),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`python app.py --port N` (the README's run command) with the default weights."""
    port = _free_port()
    cache = tmp_path_factory.mktemp("gradio")
    env = {**os.environ, "GRADIO_EXAMPLES_CACHE": str(cache / "examples"),
           "GRADIO_TEMP_DIR": str(cache / "tmp"), "GRADIO_ANALYTICS_ENABLED": "False"}  # fmt: skip
    env.pop("COLORIZE_WEIGHTS", None)
    log = (cache / "app.log").open("w")
    process = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=REPO, env=env,
                               stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 240
    while True:
        try:
            urllib.request.urlopen(url, timeout=5)
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(
                    f"python app.py did not serve {url}:\n{(cache / 'app.log').read_text()}"
                )
            time.sleep(1)
    yield url
    process.terminate()
    process.wait(timeout=60)
    log.close()


def _on_canvas(page, x: float, y: float, size: tuple[int, int]) -> tuple[float, float]:
    """Screen position of image pixel (x, y): the editor centres the image at its zoom."""
    box = page.locator("#sketch canvas").first.bounding_box()
    zoom = page.locator("#sketch").get_by_role("button", name=re.compile(r"^\d+%$")).inner_text()
    zoom = float(zoom.rstrip("%")) / 100
    left = box["x"] + (box["width"] - size[0] * zoom) / 2
    top = box["y"] + (box["height"] - size[1] * zoom) / 2
    return left + x * zoom, top + y * zoom


def _save_screenshot(png: bytes, path: Path) -> None:
    """A small PNG for the README: the page scaled to 900 px wide, 128 colours."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    image = image.resize((900, round(image.height * 900 / image.width)), Image.Resampling.LANCZOS)
    path.parent.mkdir(exist_ok=True)
    image.quantize(128, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)


def test_colorize_in_a_real_browser(server, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    sketch_path = EXAMPLES / "runner-sketch.png"
    size = Image.open(sketch_path).size
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(TIMEOUT_MS)
            expect.set_options(timeout=TIMEOUT_MS)
            page.goto(server, wait_until="domcontentloaded")

            page.wait_for_selector("#sketch canvas")
            zoom = page.locator("#sketch").get_by_role("button", name=re.compile(r"^\d+%$"))
            empty_canvas_zoom = zoom.inner_text()
            page.locator("#sketch input[type=file]").set_input_files(sketch_path)
            expect(zoom).not_to_have_text(empty_canvas_zoom)  # the sketch is on the canvas
            page.locator("#reference input[type=file]").set_input_files(
                EXAMPLES / "runner-reference.png"
            )
            expect(page.locator("#reference img")).to_be_visible()

            page.locator("#method input").click()
            page.get_by_role("option", name=re.compile(r"^tags")).click()
            blue = page.locator("#tag-blue")
            expect(blue).to_be_visible()
            # the sliders start where the tagger reads the reference, then one is moved
            expect(blue.locator("input[type=number]")).not_to_have_value("0")
            blue.locator("input[type=range]").fill("4")
            expect(blue.locator("input[type=number]")).to_have_value("4")

            page.locator("#sketch button[aria-label=Brush]").click()
            x, y = _on_canvas(page, *TORSO, size)
            page.mouse.move(x - 4, y - 3)
            page.mouse.down()
            for step in range(8):
                page.mouse.move(x - 4 + step, y - 3 + step * 0.75)
            page.mouse.up()

            page.locator("#colorize").click()
            output = page.locator("#output img")
            expect(output).to_be_visible()
            status = page.locator("#status")
            expect(status).to_contain_text(re.compile(r"tags · cpu · float32 · \d+ ms"))
            coloured = Image.open(io.BytesIO(page.request.get(output.get_attribute("src")).body()))
            assert coloured.size == size
            brush = tuple(int(app.BRUSH_COLORS[0][i : i + 2], 16) for i in (1, 3, 5))
            torso = np.asarray(coloured.convert("RGB"))[TORSO[1] - 3 : TORSO[1] + 4,
                                                         TORSO[0] - 3 : TORSO[0] + 4]  # fmt: skip
            assert (torso == brush).all(), "the stroked region has the brush colour exactly"
            update = os.environ.get("COLORIZE_UPDATE_SCREENSHOT") == "1"
            target = SCREENSHOT if update else tmp_path / "app.png"
            _save_screenshot(page.screenshot(full_page=True), target)
            assert Image.open(target).width == 900
        finally:
            browser.close()
