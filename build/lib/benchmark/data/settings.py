"""The data layer's settings, read from the environment so that every process of a sweep
(workers included) sees the same ones; `xdkd --data-root/--bad-images` set them."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path
from typing import Literal

from benchmark.errors import XdkdError
from benchmark.machine import usable_cpus

BAD_IMAGE_POLICIES = ("skip", "stop")


def data_root() -> Path:
    """Where the published datasets live: $XDKD_DATA, else ~/data."""
    return Path(os.environ.get("XDKD_DATA") or Path.home() / "data").expanduser()


def bad_image_policy() -> Literal["skip", "stop"]:
    """$XDKD_BAD_IMAGES: `skip` unreadable images with a warning (default), or `stop`."""
    policy = os.environ.get("XDKD_BAD_IMAGES") or "skip"
    if policy not in BAD_IMAGE_POLICIES:
        raise XdkdError(f"XDKD_BAD_IMAGES={policy!r} is not a policy; use skip or stop")
    return policy  # type: ignore[return-value]


def _number(name: str, default: float) -> float:
    text = os.environ.get(name)
    try:
        value = float(text) if text else default
    except ValueError:
        value = -1.0
    if value < 0:
        raise XdkdError(f"{name}={text!r} is not a number >= 0")
    return value


def device_data_budget() -> int:
    """Bytes a split may take on the device ($XDKD_DEVICE_DATA_GB, default 4); bigger splits
    stream from host memory maps."""
    return int(_number("XDKD_DEVICE_DATA_GB", 4.0) * 2**30)


def data_workers() -> int:
    """Worker processes that decode and stream images ($XDKD_DATA_WORKERS, default up to 4);
    none inside a daemonic process, which may not start processes."""
    if multiprocessing.current_process().daemon:
        return 0
    return int(_number("XDKD_DATA_WORKERS", min(4, usable_cpus())))
