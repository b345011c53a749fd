"""What a room name may be: the one rule the chat service and its clients both apply."""

from __future__ import annotations

import re

ROOM = re.compile(r"^[A-Za-z0-9_.:,-]{1,128}$")
