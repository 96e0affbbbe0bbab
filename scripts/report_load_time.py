"""How long a report takes to open: load it from disk in headless Chromium, N times.

    python scripts/report_load_time.py RUN_DIR/report.html [--repeats 3]

Prints the size, the number of figures and, per load, the navigation timing's
DOMContentLoaded and load events (ms from the start of navigation). Needs Selenium and
Debian's chromium and chromium-driver, as the browser tests do.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("report", type=Path)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    if not args.report.is_file():
        print(f"error: {args.report} is not a file", file=sys.stderr)
        return 2
    from selenium import webdriver

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        print("error: needs chromium and chromedriver on PATH", file=sys.stderr)
        return 2
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=driver_path),
                              options=options)
    try:
        url = args.report.resolve().as_uri()
        print(f"{args.report}: {args.report.stat().st_size / 1e6:.2f} MB")
        for k in range(args.repeats):
            driver.get(url)
            dom, load = driver.execute_script(
                "var t = performance.getEntriesByType('navigation')[0];"
                "return [t.domContentLoadedEventEnd, t.loadEventEnd];")
            print(f"load {k + 1}: DOMContentLoaded {dom:.0f} ms, load {load:.0f} ms")
        n = driver.execute_script("return document.querySelectorAll('svg').length")
        print(f"{n} figures")
    finally:
        driver.quit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
