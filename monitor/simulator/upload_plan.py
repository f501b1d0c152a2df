"""How a simulated recording's upload goes: the faults its callbacks act out. Pure."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from monitor.simulator.lives import check_duration

__all__ = ["UploadFault", "UploadPlan", "check_upload"]


class UploadFault(enum.StrEnum):
    """How a recording's upload goes wrong (the upload failures the monitor must tell apart)."""

    NONE = "none"
    START_FAILED = "start_failed"  # 301 Status 1: the recorder never started, nothing uploads
    UPLOAD_START_FAILED = "upload_start_failed"  # COS: 303 Status 1, then the files stranded
    STRANDED = "stranded"  # files left on the recording server: 305 / 310 / 311 Status 1
    UPLOAD_ERROR = "upload_error"  # a 308 with the storage's Code and Message, then stranded
    VOD_COMMIT_ERROR = "vod_commit_error"  # 311 Status 2 with an Errmsg, then 312 Status 1
    MP4_ERROR = "mp4_error"  # 310 Status 2 (the MP4 step could not read the HLS files)
    IMAGE_ERROR = "image_error"  # 309: a watermark/placeholder image could not be downloaded


@dataclass(frozen=True, slots=True)
class UploadPlan:
    """What the upload callbacks of one recording say.

    ``finish=False`` leaves out the event that says the upload ended (305, 310, 312): the
    upload started and never finished. ``recover_after`` sends a 305 with Status 2 (stranded
    files uploaded later) that long after the upload ended.
    """

    mp4: bool = False
    fault: UploadFault = UploadFault.NONE
    error_code: str = "InvalidParameter"
    error_message: str = "AccessKey invalid"
    finish: bool = True
    recover_after: float | None = None

    def __post_init__(self) -> None:
        if self.recover_after is not None:
            check_duration("recover_after", self.recover_after)


def check_upload(upload: UploadPlan, vod: bool) -> None:
    """Refuse a plan that cannot happen with the task's storage."""
    if upload.fault is UploadFault.VOD_COMMIT_ERROR and not vod:
        raise ValueError("upload_failure vod_commit_error needs a VOD task (vod: true)")
    if upload.fault is UploadFault.UPLOAD_START_FAILED and vod:
        raise ValueError("upload_failure upload_start_failed is a COS failure (vod: false)")
    if (upload.mp4 or upload.fault is UploadFault.MP4_ERROR) and vod:
        raise ValueError("MP4 files are made from COS recordings: not with vod: true")
