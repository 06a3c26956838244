"""What a worker process works with, built once and handed down as one value."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

import torch

from hpo.core.spec import Spec
from hpo.store.connect import StoredStudy
from hpo.train.data import TensorDataset


def worker_id() -> str:
    """host:pid of this worker process."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class WorkerContext:
    """A worker's study, the spec it runs, the data on its device, and who it is (host:pid)."""

    stored: StoredStudy
    spec: Spec
    data: TensorDataset
    device: torch.device
    worker: str
