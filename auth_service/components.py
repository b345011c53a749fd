"""The auth service's parts, built once per application and shared by every handler."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from auth_service.clients import ClientRegistry
from auth_service.grants import GrantIndex
from auth_service.introspection import Introspector
from auth_service.keys import KeyRing
from auth_service.metrics import AuthMetrics
from auth_service.passwords import PasswordService
from auth_service.ratelimit import AddressQuota, Limits, LoginThrottle
from auth_service.refresh import RefreshTokens
from auth_service.revocation import Revocations
from auth_service.sessions import RedisSessionStorage
from auth_service.settings import AuthSettings
from auth_service.tokens import AccessTokens
from auth_service.users import UserStore
from common.redis import RedisClient, connect_to


@dataclass(frozen=True)
class AuthComponents:
    """Everything a request handler may need; one instance per application."""

    settings: AuthSettings
    redis: RedisClient
    users: UserStore
    passwords: PasswordService
    keyring: KeyRing
    access: AccessTokens
    refresh: RefreshTokens
    sessions: RedisSessionStorage
    clients: ClientRegistry
    throttle: LoginThrottle
    registrations: AddressQuota
    revocation_quota: AddressQuota
    grants: GrantIndex
    revocations: Revocations
    introspector: Introspector
    metrics: AuthMetrics

    @classmethod
    def build(cls, settings: AuthSettings) -> AuthComponents:
        redis = connect_to(
            settings.redis_url, settings.redis_cluster_nodes, password=settings.redis_password
        )
        users = UserStore(redis)
        keyring = KeyRing(redis, settings.signing_key_files)
        access = AccessTokens(
            keyring,
            issuer=settings.issuer,
            audience=settings.audience,
            ttl=settings.access_token_ttl,
            leeway=settings.leeway,
        )
        grants = GrantIndex(redis)
        refresh = RefreshTokens(redis, grants, ttl=settings.refresh_token_ttl)
        sessions = RedisSessionStorage(
            redis,
            cookie_name=settings.cookie_name,
            max_age=settings.session_ttl,
            secure=settings.cookie_secure,
            samesite=settings.cookie_samesite,
        )
        clients = ClientRegistry(settings.clients)
        passwords = PasswordService(
            time_cost=settings.argon2_time_cost,
            memory_kib=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
            workers=settings.hash_workers,
            max_pending=settings.max_pending_hashes,
        )
        metrics = AuthMetrics()
        metrics.watch(hash_queue=passwords.queued)
        return cls(
            settings=settings,
            redis=redis,
            users=users,
            passwords=passwords,
            keyring=keyring,
            access=access,
            refresh=refresh,
            sessions=sessions,
            clients=clients,
            throttle=LoginThrottle(
                redis,
                per_user=Limits(settings.login_max_failures, settings.login_max_attempts),
                per_address=Limits(
                    settings.login_max_failures_per_address,
                    settings.login_max_attempts_per_address,
                ),
                window=settings.login_window,
            ),
            registrations=AddressQuota(
                redis,
                name="register",
                limit=settings.register_max_per_address,
                window=settings.login_window,
            ),
            revocation_quota=AddressQuota(
                redis,
                name="revoke",
                limit=settings.revoke_max_per_address,
                window=settings.login_window,
            ),
            grants=grants,
            revocations=Revocations(
                redis,
                refresh,
                sessions,
                grants,
                leeway=settings.leeway,
                max_grants=settings.max_grants_per_user,
            ),
            introspector=Introspector(
                redis,
                keys_in_redis=not settings.signing_key_files,
                access=access,
                refresh=refresh,
                sessions=sessions,
                users=users,
                clients=clients,
                session_scope=settings.default_scope,
            ),
            metrics=metrics,
        )

    async def aclose(self) -> None:
        """Stops the hashing workers and closes the Redis pool."""
        self.passwords.close()
        await self.redis.aclose()


COMPONENTS = web.AppKey("auth_components", AuthComponents)
