"""The progress callback every long-running library function accepts.

``progress(done, total, info)``: ``done`` of ``total`` units (steps, batches, images) are
finished; ``info`` holds a few current values to show (losses, the support, images per
second). The CLI passes a progress bar; library users may pass any callable or None.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

ProgressFn = Callable[[int, int, dict[str, Any]], None]
