"""Tencent Cloud TRTC API: signing, transport and error mapping."""
