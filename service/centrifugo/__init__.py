"""Centrifugo's client protocol (v2, JSON) at `/connection/websocket` (docs/centrifugo.md):
its frames in and out, and the socket that speaks it as a member of rooms. The rooms,
policies, history, presence and credentials are the native protocol's own."""
