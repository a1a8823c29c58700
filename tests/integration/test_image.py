"""The container image's install and start steps, run on the host (CI has no container engine)."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_image_steps_install_start_healthcheck_and_stop(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable}
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts/image-steps"), "--keep", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "HEALTHCHECK ['tether', 'probe', '--ready'] passes" in out.stdout
    assert "SIGTERM -> clean exit" in out.stdout
    # The image's state (CA, ledger) is in the volume, nowhere else.
    assert (tmp_path / "state" / "mitmproxy-ca-cert.pem").is_file()
    assert (tmp_path / "state" / "ledger.db").is_file()
    assert not (tmp_path / "opt" / "tether" / "bin" / "pytest").exists()  # no dev tools in the image


def test_dockerfile_runs_as_non_root_with_state_in_a_volume():
    text = (ROOT / "Dockerfile").read_text()
    final = text[text.rindex("FROM ") :]
    assert "USER 10001:10001" in final
    assert 'VOLUME ["/var/lib/tether"]' in final
    assert 'ENTRYPOINT ["tether", "run"]' in final
    assert "HEALTHCHECK" in final
    assert "python:3.12-slim" in text
