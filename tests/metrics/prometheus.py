"""A real Prometheus (Debian's /usr/bin/prometheus) for tests: temp storage, free port, killed after."""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

DEPLOY_CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "prometheus.yml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Prometheus:
    """Runs Prometheus with deploy/prometheus/prometheus.yml, rewritten to scrape ``target`` every second."""

    def __init__(self, workdir: Path, target: str) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            raise RuntimeError("prometheus not found: install Debian's `prometheus` package (.ci/setup does)")
        text = DEPLOY_CONFIG.read_text()
        assert '"127.0.0.1:8002"' in text and "scrape_interval: 5s" in text, "deploy config changed shape"
        config = workdir / "prometheus.yml"
        config.write_text(text.replace('"127.0.0.1:8002"', f'"{target}"')
                          .replace("scrape_interval: 5s", "scrape_interval: 1s"))
        self.url = f"http://127.0.0.1:{free_port()}"
        self._log = open(workdir / "prometheus.log", "wb")
        self.process = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address={self.url.removeprefix('http://')}", "--log.level=warn"],
            stdout=self._log, stderr=subprocess.STDOUT)
        self.wait_for(lambda: self.query('up{job="bwserve"} == 1'), "the first scrape of bwserve")

    def query(self, expr: str) -> list[dict]:
        """An instant query through the HTTP API; the result vector (empty on any failure to answer)."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = json.load(response)
        except OSError:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self.process.returncode}") from None
            return []
        assert body["status"] == "success", body
        return body["data"]["result"]

    def wait_for(self, condition, what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"prometheus: timed out waiting for {what}")
            time.sleep(0.2)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()
