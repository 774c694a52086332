"""`make demo` runs end to end (with --no-serve so it stops)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    home = tmp_path / "demo-home"
    result = subprocess.run(
        [sys.executable, "-m", "registry.demo", "--no-serve", "--home", str(home), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "Submitted version 1" in out
    assert "sha256:" in out
    assert "pickle" in out and "marker file created: False" in out
    assert "Audit chain intact" in out
    assert "Verdict: PASSED" in out  # the example predictions under the example policy
    assert "auroc-non-inferior" in out
    assert not (home / "PWNED-if-this-exists").exists()


def test_demo_refuses_to_wipe_a_directory_it_did_not_make(tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "data.txt").write_text("keep me")
    result = subprocess.run(
        [sys.executable, "-m", "registry.demo", "--no-serve", "--home", str(precious)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "was not made by the demo" in result.stderr
    assert (precious / "data.txt").read_text() == "keep me"
