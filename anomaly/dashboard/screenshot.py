"""``python -m anomaly.dashboard.screenshot --out notebooks/dashboard.png``: the README's picture of the page.

Trains quick models, streams three simulated series (anomalies injected) with
``stream.py --dashboard``, opens the page in headless Chromium (Debian's, through the system
chromedriver) at 1280x800, waits for incidents, opens the first one's evidence and saves the
screenshot. Needs ``chromium``, ``chromium-driver`` and selenium.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m anomaly.dashboard.screenshot", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="notebooks/dashboard.png", help="the PNG to write")
    parser.add_argument("--seconds", type=float, default=25.0, help="how long to stream before the picture")
    args = parser.parse_args(argv)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from ..io.sinks import format_timestamps
    from ..simulate import simulate

    out = Path(args.out).resolve()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "MPLBACKEND": "Agg", "DISPLAY": ""}
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        subprocess.run([sys.executable, str(ROOT / "train.py"), "--quick", "--models", "models", "--quiet"],
                       cwd=work, env=env, check=True, capture_output=True)
        names = ["checkout-latency", "db-cpu", "web-requests"]
        series = {name: simulate(6000, seed=40 + k, anomalies=True, start_index=30_000) for k, name in enumerate(names)}
        stamps = {name: format_timestamps(s.timestamps) for name, s in series.items()}
        rows = [f"{name},{stamps[name][i]},{s.values[i] * (1 + k):.3f}" for i in range(6000)
                for k, (name, s) in enumerate(series.items())]
        (work / "hosts.csv").write_text("series,timestamp,value\n" + "\n".join(rows) + "\n")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        stream = subprocess.Popen([sys.executable, str(ROOT / "stream.py"), "--models", "models", "--source",
                                   "hosts.csv", "--rate", "300", "--no-plot", "--quiet", "--dashboard",
                                   f"127.0.0.1:{port}"], cwd=work, env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        options = webdriver.ChromeOptions()
        options.binary_location = "/usr/bin/chromium"
        for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     f"--user-data-dir={work / 'profile'}"):
            options.add_argument(flag)
        browser = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
        try:
            browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                                    {"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": False})
            time.sleep(3)  # the stream starts and the dashboard with it
            browser.get(f"http://127.0.0.1:{port}/")
            time.sleep(args.seconds)
            wait = WebDriverWait(browser, 60)
            wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#incidents tbody tr"))
            browser.execute_script("document.querySelector('#incidents tbody tr').click()")  # its evidence
            time.sleep(2)
            out.parent.mkdir(parents=True, exist_ok=True)
            browser.save_screenshot(str(out))
        finally:
            browser.quit()
            stream.terminate()
            stream.wait(timeout=60)
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
