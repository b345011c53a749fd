"""The native protocol of `/ws` (docs/protocol.md): JSON frames in and out, the commands they
carry, and the socket that speaks it as a member of rooms."""
