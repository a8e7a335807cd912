"""Run inside a stand-in's network namespace: start ``lakeflow run``, watch it go silent.

Usage: ``python silent_probe.py LAKEFLOW PIPELINE METRICS_URL DEADLINE``. Starts the
collector, polls ``/healthz`` until it answers non-200 for a silent source (or the
deadline passes), then reads ``/metrics`` and ``lakeflow status`` at that moment, stops
the collector with SIGINT and prints one JSON object: what was seen, and when.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError as exc:
        return 0, str(exc)


def main(lakeflow: str, pipeline: str, metrics: str, deadline: float) -> int:
    started = time.time()
    with open("collector.log", "w") as log:
        collector = subprocess.Popen(
            [lakeflow, "run", pipeline], stdout=log, stderr=subprocess.STDOUT
        )
    seen: dict = {"started": started}
    while time.time() - started < deadline:
        status, body = get(f"{metrics}/healthz")
        if status not in (0, 200) and "silent" in body:
            seen |= {"healthz_status": status, "healthz": json.loads(body), "at": time.time()}
            break
        time.sleep(0.2)
    seen["metrics"] = get(f"{metrics}/metrics")[1]
    for args, key in ((["status", pipeline], "status"), (["status", pipeline, "--json"], "json")):
        # `lakeflow status` reads the status files, which the collector rewrites every
        # second: on a busy machine the first read may predate the silence /healthz saw.
        asked = time.time()
        while True:
            done = subprocess.run([lakeflow, *args], capture_output=True, text=True, timeout=30)
            if done.returncode != 0 or time.time() - asked > 5:
                break
            time.sleep(0.2)
        seen[key] = done.stdout + done.stderr
        seen[f"{key}_exit"] = done.returncode
    collector.send_signal(signal.SIGINT)
    seen["exit"] = collector.wait(60)
    with open("collector.log") as log:
        seen["log"] = log.read()
    print(json.dumps(seen))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])))
