"""Shared fixtures: the real CIFAR-10 sample (skipped with a reason when absent)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = Path(os.environ.get("HPO_SAMPLE", ROOT.parent / "shared" / "data" / "cifar10-sample.npz"))


@pytest.fixture(scope="session")
def sample_path() -> Path:
    """Path of the real CIFAR-10 sample; tests that need it skip when it is absent."""
    if not SAMPLE.is_file():
        pytest.skip(f"CIFAR-10 sample not found at {SAMPLE} (set HPO_SAMPLE to its path)")
    return SAMPLE


@pytest.fixture
def tiny_npz(tmp_path: Path) -> Path:
    """A small random dataset in keras .npz layout (for tests about plumbing, not learning)."""
    rng = np.random.default_rng(0)
    path = tmp_path / "tiny.npz"
    np.savez(
        path,
        x_train=rng.integers(0, 256, (96, 32, 32, 3), dtype=np.uint8),
        y_train=rng.integers(0, 10, 96, dtype=np.uint8),
        x_test=rng.integers(0, 256, (32, 32, 32, 3), dtype=np.uint8),
        y_test=rng.integers(0, 10, 32, dtype=np.uint8),
    )
    return path


def run_cli(
    *args: str, cwd: Path | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    """Run the real `hpo` console entry point as a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "hpo", *args],
        cwd=cwd or ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
