"""The web client: plain static files (HTML, CSS, JavaScript modules) that every chat instance
serves at `/`; they speak the chat protocol (`/ws`), the chat HTTP API (`/api/…`) and the auth
service's token endpoints from the browser (README, "Web client")."""
