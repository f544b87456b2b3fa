"""``sv4d demo``: a clip becomes views, a 4D asset to turn around and a download, in a web page.

``service`` holds the work (no gradio), ``jobs`` the service rules (uploads, job folders, the
device queue), ``page`` the gradio page over them (the optional extra ``sv4d[demo]``)."""

from __future__ import annotations

from .jobs import DemoLimits, DeviceQueue, JobStore, check_upload
from .service import Demo, DemoOptions

__all__ = ["Demo", "DemoLimits", "DemoOptions", "DeviceQueue", "JobStore", "check_upload"]
