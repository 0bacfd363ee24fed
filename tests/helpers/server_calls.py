"""Small HTTP client calls for tests against a running server (not named http.py: scripts run
from tests/helpers, such as train_tiny.py, would import it as the standard library's http)."""

from __future__ import annotations

import json
import urllib.request
from typing import Any


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())
