"""``/docs`` and ``/redoc`` render in a real browser with no network but loopback.

The app (fed runtime, no Kafka) runs in uvicorn on a free port; Debian's chromium, headless,
with its background networking off (this machine has no other network), loads each page and
dumps the DOM after the scripts ran. Swagger UI and ReDoc only render the operations when
their scripts loaded: served from the project's own files, not a CDN.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from service.api import create_app
from tests.service.api.fed_runtime import fed_runtime
from tests.support import free_port, wait_for

CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--virtual-time-budget=20000",
)


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    artifact = tmp_path_factory.mktemp("artifact")
    port = free_port()
    app = create_app(lambda: fed_runtime(artifact), start_pipeline=False)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 30, "uvicorn to start")
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def _rendered(url: str, profile: Path) -> str:
    chromium = shutil.which("chromium")
    assert chromium, "chromium is not installed: make system-deps installs it (Debian)"
    out = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", url],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_swagger_ui_renders_offline(base_url: str, tmp_path: Path) -> None:
    dom = _rendered(f"{base_url}/docs", tmp_path)
    assert 'class="swagger-ui' in dom
    # the operations, rendered by Swagger UI's script from /openapi.json
    for path in ("/engines", "/engines/{engine_id}", "/anomalies", "/model/reload"):
        assert f'data-path="{path}"' in dom, path


def test_redoc_renders_offline(base_url: str, tmp_path: Path) -> None:
    dom = _rendered(f"{base_url}/redoc", tmp_path)
    for summary in ("List Engines", "Get Engine", "List Events", "Reload Model"):
        assert summary in dom, summary
