"""Authentication as chttpd does it in 3.4: basic auth and the `AuthSession` cookie, checked against the
server admins in `[admins]` and the users in the authentication database.

Verifying a password costs one PBKDF2 of `iterations` rounds (600,000 by default). Like couch_passwords_cache,
a credential that verified once is remembered (keyed by everything the verdict depends on: name, password,
salt, derived key, iterations, PRF), so a keep-alive client sending basic auth on every request costs one
hash, not one per request.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import time
import uuid
from collections import OrderedDict
from typing import Mapping, Protocol

from .config import Config
from .database import Database
from .errors import CouchError, bad_request, unauthorized
from .security import ANONYMOUS, UserCtx
from .users import USER_PREFIX, pbkdf2_hex, pbkdf2_hex_async


class AuthHost(Protocol):
    """What authentication reads of the cluster: the local node's config and the authentication database."""

    config: Config
    dbs: Mapping[str, Database]

CACHE_SIZE = 10_000
AUTH_HANDLERS = ["cookie", "default"]
# The [admins] values CouchDB takes as hashed already (couch_passwords.erl `get_unhashed_admins`); any other
# value, one starting with "-" too, is a plaintext password it hashes.
HASHED_ADMIN_PREFIXES = ("-hashed-", "-pbkdf2-", "-pbkdf2:sha-", "-pbkdf2:sha224-", "-pbkdf2:sha256-",
                         "-pbkdf2:sha384-", "-pbkdf2:sha512-")


def is_hashed_admin(value: str) -> bool:
    return value.startswith(HASHED_ADMIN_PREFIXES)


def hash_admin_password(password: str, prf: str, iterations: int) -> str:
    """couch_passwords:hash_admin_password/1 in 3.4: `-pbkdf2:PRF-DERIVED,SALT,ITERATIONS`."""
    salt = uuid.uuid4().hex
    return f"-pbkdf2:{prf}-{pbkdf2_hex(prf, password, salt, iterations)},{salt},{iterations}"


def parse_admin_hash(value: str) -> dict | None:
    """The stored credentials of an `[admins]` entry, or None for a plaintext value not yet hashed."""
    if value.startswith("-pbkdf2"):
        head, _, rest = value[1:].partition("-")
        prf = head.split(":", 1)[1] if ":" in head else "sha1"
        parts = rest.split(",")
        if len(parts) == 3 and parts[2].isdigit():
            return {"password_scheme": "pbkdf2", "pbkdf2_prf": prf, "derived_key": parts[0], "salt": parts[1],
                    "iterations": int(parts[2])}
    if value.startswith("-hashed-"):
        sha, _, salt = value[len("-hashed-"):].partition(",")
        return {"password_scheme": "simple", "password_sha": sha, "salt": salt}
    return None


class Authenticator:
    def __init__(self, cluster: AuthHost):
        self.cluster = cluster
        self.verified: OrderedDict[tuple, bool] = OrderedDict()
        self.deriving: dict[tuple, asyncio.Future] = {}

    # ------------------------------------------------------------------ who is this
    def credentials(self, name: str) -> tuple[dict, list[str]] | None:
        """(stored credential fields, roles) of a server admin or a `_users` user."""
        stored = self.cluster.config.get_set("admins", name)
        if stored is not None:
            creds = parse_admin_hash(stored)
            return (creds, ["_admin"]) if creds else None
        db = self.cluster.dbs.get(self.cluster.config.get("chttpd_auth", "authentication_db"))
        entry = db.entry(USER_PREFIX + name) if db else None
        if entry is None or entry.deleted:
            return None
        body = entry.winner.body or {}
        roles = body.get("roles") if isinstance(body.get("roles"), list) else []
        return body, [r for r in roles if isinstance(r, str)]

    async def verify(self, name: str, password: str) -> UserCtx | None:
        found = self.credentials(name)
        if found is None:
            return None
        creds, roles = found
        scheme = creds.get("password_scheme", "simple")
        if scheme == "pbkdf2":
            key = (name, password, creds.get("salt"), creds.get("derived_key"), creds.get("iterations"),
                   creds.get("pbkdf2_prf", "sha1"))
            if key in self.verified:
                self.verified.move_to_end(key)
            elif not await self._derived_key_matches(key):
                return None
        elif scheme == "simple":
            digest = hashlib.sha1((password + str(creds.get("salt", ""))).encode("utf-8")).hexdigest()
            if not hmac.compare_digest(digest, str(creds.get("password_sha", ""))):
                return None
        else:
            return None
        return UserCtx(name, roles)

    async def _derived_key_matches(self, key: tuple) -> bool:
        """One PBKDF2 per credential even when many connections present it at once (a pool warming up)."""
        task = self.deriving.get(key)
        if task is None:
            task = asyncio.ensure_future(self._derive(key))
            self.deriving[key] = task
            task.add_done_callback(lambda _: self.deriving.pop(key, None))
        return await asyncio.shield(task)

    async def _derive(self, key: tuple) -> bool:
        name, password, salt, derived_key, iterations, prf = key
        try:
            derived = await pbkdf2_hex_async(prf, password, str(salt), int(iterations))
        except (TypeError, ValueError):
            return False
        if not hmac.compare_digest(derived, str(derived_key)):
            return False
        self.verified[key] = True
        if len(self.verified) > CACHE_SIZE:
            self.verified.popitem(last=False)
        return True

    async def authenticate(self, headers, cookies) -> tuple[UserCtx, str | None]:
        """The request's user, and a refreshed AuthSession cookie value when one is due.

        Handlers run in 3.x's default order, `[chttpd] authentication_handlers` = cookie, then default
        (basic): a valid cookie wins; otherwise basic credentials must be right (401) or absent."""
        session = cookies.get("AuthSession")
        if session:
            found = self.from_cookie(session)
            if found is not None:
                ctx, refresh = found
                return ctx, self.make_cookie(ctx.name) if refresh else None
        authorization = headers.get("Authorization", "")
        if authorization[:6].lower() == "basic ":
            try:
                name, _, password = base64.b64decode(authorization[6:].strip()).decode("utf-8").partition(":")
            except (binascii.Error, UnicodeDecodeError):
                raise bad_request("Authorization header has invalid base64 value")
            ctx = await self.verify(name, password)
            if ctx is None:
                raise unauthorized("Name or password is incorrect.")
            ctx.handler = "default"
            return ctx, None
        if self.cluster.config.get_bool("chttpd", "require_valid_user"):
            raise unauthorized("Authentication required.")
        return ANONYMOUS, None

    # ------------------------------------------------------------------ cookies
    def _secret(self) -> str:
        return self.cluster.config.get("chttpd_auth", "secret", "")

    def _mac(self, name: str, salt: str, timestamp: str) -> bytes:
        return hmac.new((self._secret() + salt).encode("utf-8"), f"{name}:{timestamp}".encode("utf-8"),
                        hashlib.sha256).digest()

    def make_cookie(self, name: str) -> str:
        found = self.credentials(name)
        salt = str(found[0].get("salt", "")) if found else ""
        timestamp = format(int(time.time()), "X")
        raw = f"{name}:{timestamp}:".encode("utf-8") + self._mac(name, salt, timestamp)
        return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")

    def from_cookie(self, value: str) -> tuple[UserCtx, bool] | None:
        """couch_httpd_auth:cookie_authentication_handler/2: a bad or expired cookie means anonymous; a valid
        one past 10% of its life is due for a fresh cookie (TimeLeft < Timeout * 0.9)."""
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
            name_bytes, timestamp_bytes, mac = raw.split(b":", 2)
            name, timestamp = name_bytes.decode("utf-8"), timestamp_bytes.decode("ascii")
            issued = int(timestamp, 16)
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise bad_request("Malformed AuthSession cookie. Please clear your cookies.")
        found = self.credentials(name)
        if found is None:
            return None
        creds, roles = found
        if not hmac.compare_digest(mac, self._mac(name, str(creds.get("salt", "")), timestamp)):
            return None
        timeout = self.cluster.config.get_int("chttpd_auth", "timeout")
        left = issued + timeout - time.time()
        if left < 0:
            return None
        return UserCtx(name, roles, "cookie"), left < timeout * 0.9

    def set_cookie_header(self, value: str, expire: bool = False) -> str:
        if expire:
            return "AuthSession=; Version=1; Expires=Fri, 02-Jan-1970 00:00:01 GMT; Max-Age=0; Path=/; HttpOnly"
        timeout = self.cluster.config.get_int("chttpd_auth", "timeout")
        expires = time.strftime("%a, %d-%b-%Y %H:%M:%S GMT", time.gmtime(time.time() + timeout))
        return f"AuthSession={value}; Version=1; Expires={expires}; Max-Age={timeout}; Path=/; HttpOnly"


def session_info(ctx: UserCtx) -> dict:
    info: dict = {"authentication_handlers": AUTH_HANDLERS}
    if ctx.handler:
        info["authenticated"] = ctx.handler
    return {"ok": True, "userCtx": ctx.json(), "info": info}


def unauthorized_login() -> CouchError:
    return unauthorized("Name or password is incorrect.")
