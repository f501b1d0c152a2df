"""trtc-recording-monitor: watches Tencent TRTC on-cloud recording tasks."""

from __future__ import annotations

__version__ = "0.1.0"
