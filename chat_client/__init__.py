"""`chat-client`: a terminal client for the chat service that stays connected.

    chat-client --url ws://127.0.0.1:8080/ws --room lobby --token TOKEN
    CHAT_PASSWORD=... chat-client --url ws://a:8080/ws --url ws://b:8080/ws --username alice

Each line read from stdin is sent to the current room (the first `--room`, or the last
`/join`, `/switch`, `/create` or `/dm`); `//text` sends `/text`. Slash commands join, leave
and switch rooms, create a private room and invite or remove its members (through the chat
instance's `/api/rooms`), start a DM by username, list who is here and page back through
history: `/help` lists them (chat_client/commands.py). What arrives from every joined room
is printed on stdout. The credential is `--token` (or `CHAT_TOKEN`), or `--username` with
the password from `CHAT_PASSWORD` or a prompt: there is no `--password`, because `ps` shows
every process's argv to every local user.

Logged in with `--username`, the token is refreshed before it expires. After a drop (1001,
1006, 1011, 1012, 1013) the client reconnects to the next `--url` with backoff, joins its
rooms again with `since`, and prints what it missed, or exactly which messages are lost; a
line being sent when the connection dropped is sent again, and published once.

Exit status: 0 after stdin's end (every line sent and answered) or when the server closes
with 1000; 1 when the first connection fails, a `--room` cannot be joined, or the server
closes with 1008, 1009, 4003 (or 4001 with a `--token`); 2 for a usage error or a credential
the services refuse; 130 on Ctrl-C.
"""
