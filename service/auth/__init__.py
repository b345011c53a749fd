"""Who holds each socket, decided at the handshake and kept true for the socket's life: the
authenticator chain, the introspection client and its cache, the auth service's published
keys, and the limits on failed handshakes."""
