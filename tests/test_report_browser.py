"""The report in a real browser: headless Chromium through Selenium, opened from disk.

Checks what only a browser can: the page's script runs without console errors, every figure
has a size, sorting and filtering work, folded sections open, and a solver named like a
script runs nothing. Skipped, with the reason, where Selenium, Chromium or chromedriver is
missing (Debian: ``apt-get install chromium chromium-driver``). A screenshot of each page is
saved to ``$ODEBENCH_ARTIFACTS`` when that is set, else to the test's temporary folder.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.results import RESULTS_FILE
from reports.build import build_report

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.common.exceptions import NoAlertPresentException, WebDriverException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

FIXTURE = Path(__file__).parent / "fixtures" / "run_small"
EVIL = "<script>alert(1)</script>"
CHROMIUM = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser"),
                             "/usr/bin/chromium") if p and Path(p).exists()), None)
DRIVER = next((p for p in (shutil.which("chromedriver"), "/usr/bin/chromedriver")
               if p and Path(p).exists()), None)

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None,
    reason="needs Chromium and chromedriver (Debian: apt-get install chromium chromium-driver)")


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = os.environ.get("ODEBENCH_ARTIFACTS")
    path = Path(where) if where else tmp_path_factory.mktemp("artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def driver() -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,2000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = webdriver.ChromeService(executable_path=str(DRIVER))
    try:
        drv = webdriver.Chrome(service=service, options=options)
    except WebDriverException as exc:  # a browser that cannot start here is not our bug
        pytest.skip(f"Chromium did not start: {exc.msg}")
    drv.set_page_load_timeout(60)
    yield drv
    drv.quit()


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_report(FIXTURE, out=tmp_path_factory.mktemp("small") / "report.html")


@pytest.fixture(scope="module")
def evil(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """run_small with rk4 renamed to a script tag, in results and meta."""
    run = tmp_path_factory.mktemp("evil") / "run"
    shutil.copytree(FIXTURE, run)
    rows = [json.loads(line) for line in
            (run / RESULTS_FILE).read_text(encoding="utf-8").splitlines() if line.strip()]
    for r in rows:
        if r["solver"] == "rk4":
            r["solver"] = EVIL
            r["message"] = EVIL
    (run / RESULTS_FILE).write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    meta = json.loads((run / "meta.json").read_text(encoding="utf-8"))
    meta["solvers"][EVIL] = meta["solvers"].pop("rk4")
    meta["run_id"] = EVIL
    (run / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    return build_report(run)


def open_page(driver: webdriver.Chrome, path: Path) -> list[dict]:
    """Load ``path`` from disk; the console messages of the load."""
    driver.get_log("browser")  # drop what an earlier page left
    driver.get(path.resolve().as_uri())
    driver.find_element(By.ID, "schema")
    return driver.get_log("browser")


def assert_no_alert(driver: webdriver.Chrome) -> None:
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text  # noqa: B018 - raises when there is no alert


def shoot(driver: webdriver.Chrome, artifacts: Path, name: str) -> Path:
    path = artifacts / f"{name}.png"
    driver.save_screenshot(str(path))
    assert path.stat().st_size > 0
    return path


def test_page_loads_without_console_errors(driver: webdriver.Chrome, small: Path,
                                           artifacts: Path) -> None:
    log = open_page(driver, small)
    assert [e for e in log if e["level"] == "SEVERE"] == []
    assert driver.title.startswith("odebench report")
    print(f"screenshot: {shoot(driver, artifacts, 'report_small')}")


def test_every_figure_has_a_size(driver: webdriver.Chrome, small: Path) -> None:
    open_page(driver, small)
    svgs = driver.find_elements(By.CSS_SELECTOR, "figure > svg")
    assert len(svgs) == small.read_text(encoding="utf-8").count("<svg")
    for svg in svgs:
        driver.execute_script("arguments[0].closest('details') && "
                              "(arguments[0].closest('details').open = true)", svg)
        size = svg.size
        assert size["width"] > 0 and size["height"] > 0


def _column(table: object, col: int) -> list[float]:
    cells = table.find_elements(By.CSS_SELECTOR, f"tbody tr td:nth-child({col})")
    return [float(c.get_attribute("data-sort")) for c in cells
            if c.get_attribute("data-sort") not in (None, "")]


def test_clicking_a_numeric_header_sorts_as_numbers(driver: webdriver.Chrome,
                                                    small: Path) -> None:
    open_page(driver, small)
    table = driver.find_element(By.CSS_SELECTOR, "#problem-linear table.cases")
    nfe = table.find_elements(By.CSS_SELECTOR, "thead th")[3]
    assert nfe.text.startswith("NFE")
    before = _column(table, 4)
    assert before != sorted(before)
    nfe.click()
    assert _column(table, 4) == sorted(before)
    assert nfe.get_attribute("aria-sort") == "ascending"
    nfe.click()
    assert _column(table, 4) == sorted(before, reverse=True)


def test_typing_in_the_filter_hides_rows(driver: webdriver.Chrome, small: Path) -> None:
    open_page(driver, small)
    box = driver.find_element(By.CSS_SELECTOR, "#problem-linear div.tablebox")
    rows = box.find_elements(By.CSS_SELECTOR, "tbody tr")
    box.find_element(By.CSS_SELECTOR, "input.filter").send_keys("dopri5")
    shown = [r for r in rows if r.is_displayed()]
    assert 0 < len(shown) < len(rows)
    assert all(r.find_element(By.CSS_SELECTOR, "td").text.startswith("dopri5") for r in shown)


def test_a_folded_section_opens_on_click(driver: webdriver.Chrome, small: Path) -> None:
    open_page(driver, small)
    details = driver.find_element(By.CSS_SELECTOR, "#schema details")
    assert details.get_attribute("open") is None
    table = details.find_element(By.CSS_SELECTOR, "table")
    assert not table.is_displayed()
    details.find_element(By.CSS_SELECTOR, "summary").click()
    assert details.get_attribute("open") is not None and table.is_displayed()


def test_a_solver_named_like_a_script_runs_nothing(driver: webdriver.Chrome, evil: Path,
                                                   artifacts: Path) -> None:
    log = open_page(driver, evil)
    assert_no_alert(driver)
    assert [e for e in log if e["level"] == "SEVERE"] == []
    assert driver.find_elements(By.XPATH, f"//td[text()='{EVIL}']")  # shown as text
    assert driver.execute_script("return document.scripts.length") == 1  # the page's own
    # the page's own script still ran: a click sorts
    table = driver.find_element(By.CSS_SELECTOR, "#overview table.solvers")
    table.find_element(By.CSS_SELECTOR, "thead th").click()
    assert_no_alert(driver)
    print(f"screenshot: {shoot(driver, artifacts, 'report_hostile_name')}")
