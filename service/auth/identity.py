"""Who holds a socket: the identity the auth service vouched for at the last check."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Identity:
    """Who holds a connection, as the auth service said at the last check."""

    user_id: str
    username: str
    token_type: str
    exp: int
    jti: str
    sid: str | None
    # The credential is kept to re-validate after a missed revocation, as the string it
    # arrived in (the request holds that anyway) and where in it the credential starts: a
    # copy would cost every socket as many bytes again as the credential is long.
    source: str = field(repr=False)
    offset: int = 0
    kid: str | None = None  # the signing key of an access token

    @property
    def credential(self) -> str:
        return self.source[self.offset :]

    def names(self) -> dict[str, str | None]:
        """This identity under the introspection field names that revocation events use."""
        return {"jti": self.jti, "sid": self.sid, "sub": self.user_id, "kid": self.kid}

    def public(self) -> dict[str, str]:
        return {"id": self.user_id, "username": self.username}
