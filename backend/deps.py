"""Typed dependencies shared by the routes (tests override them)."""

from __future__ import annotations

import secrets
from functools import lru_cache
from typing import Annotated

import redis
import redis.asyncio as aioredis
from fastapi import Depends, Header, HTTPException

from service.settings import Settings, get_settings

SettingsDep = Annotated[Settings, Depends(get_settings)]


@lru_cache(maxsize=4)
def _async_redis(url: str) -> aioredis.Redis:
    return aioredis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)


@lru_cache(maxsize=4)
def _sync_redis(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)


def _url(settings: Settings) -> str:
    if not settings.redis_url:
        raise HTTPException(503, "no Redis configured (REKD_REDIS_URL); start the app with `rekd up`")
    return settings.redis_url


def get_async_redis(settings: SettingsDep) -> aioredis.Redis:
    return _async_redis(_url(settings))


def get_sync_redis(settings: SettingsDep) -> redis.Redis:
    return _sync_redis(_url(settings))


AsyncRedisDep = Annotated[aioredis.Redis, Depends(get_async_redis)]
SyncRedisDep = Annotated[redis.Redis, Depends(get_sync_redis)]


def require_token(settings: SettingsDep, authorization: Annotated[str | None, Header()] = None) -> None:
    """With REKD_API_TOKEN set, mutating endpoints need `Authorization: Bearer <token>`."""
    if settings.api_token is None:
        return
    given = (authorization or "").removeprefix("Bearer ").strip()
    if not secrets.compare_digest(given.encode(), settings.api_token.encode()):
        raise HTTPException(401, "missing or wrong API token (Authorization: Bearer ...)")


TokenDep = Depends(require_token)
