"""Chat-robot receivers (docs/alerts.md): WeCom, DingTalk, Feishu and Slack.

``messages`` turns notices into text and packs it under the size limits, ``signing`` signs
DingTalk and Feishu requests, ``pacing`` keeps each robot under its rate, one module per
platform knows its request shape and answers, and ``worker`` puts them together.
"""

from __future__ import annotations
