"""The two sites of Tencent Cloud's TRTC API: their default access hosts and the regions they
serve, as data the task model and the simulator share. Pure.

International site: host ``trtc.intl.tencentcloudapi.com``, five regions (trtc.io 46958). China
site: host ``trtc.tencentcloudapi.com``, three regions (cloud.tencent.com 647/73784). The
web-page recording actions serve fewer regions than cloud recording: ap-singapore only on the
international site (trtc.io 72066/72067), the China site's three on the China site
(cloud.tencent.com 647/104541, 104542). See ``docs/trtc-api.md``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "CHINA_HOST",
    "INTERNATIONAL_HOST",
    "SITES",
    "Site",
    "SiteInfo",
    "site_info",
    "site_of_host",
]

INTERNATIONAL_HOST = "trtc.intl.tencentcloudapi.com"
CHINA_HOST = "trtc.tencentcloudapi.com"


class Site(enum.StrEnum):
    INTERNATIONAL = "international"
    CHINA = "china"


@dataclass(frozen=True, slots=True)
class SiteInfo:
    site: Site
    default_host: str
    regions: tuple[str, ...]  # where cloud recording (DescribeCloudRecording, ...) is served
    web_regions: tuple[str, ...]  # where the web-page recording actions are served

    def serves(self, region: str, *, web: bool = False) -> bool:
        return region in (self.web_regions if web else self.regions)


SITES: dict[Site, SiteInfo] = {
    Site.INTERNATIONAL: SiteInfo(
        Site.INTERNATIONAL,
        INTERNATIONAL_HOST,
        ("ap-beijing", "ap-guangzhou", "ap-mumbai", "ap-shanghai", "ap-singapore"),
        ("ap-singapore",),
    ),
    Site.CHINA: SiteInfo(
        Site.CHINA,
        CHINA_HOST,
        ("ap-beijing", "ap-guangzhou", "ap-shanghai"),
        ("ap-beijing", "ap-guangzhou", "ap-shanghai"),
    ),
}


def site_info(site: Site | str) -> SiteInfo:
    """The facts of one site; ValueError naming the sites for an unknown name."""
    try:
        return SITES[Site(site)]
    except ValueError:
        names = ", ".join(s.value for s in Site)
        raise ValueError(f"unknown site {site!r}: one of {names}") from None


def site_of_host(host: str) -> Site | None:
    """The site whose default host (or a pinned ``trtc.<region>.`` host of it) ``host`` is;
    None for any other host (a proxy, the simulator on loopback). A port is ignored."""
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    name = name.lower().rstrip(".")
    if name == INTERNATIONAL_HOST:
        return Site.INTERNATIONAL
    if name == CHINA_HOST:
        return Site.CHINA
    return None
