"""The `X-API-Key` authentication of the public API."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from mindo.api_keys import api_key_authenticate
from mindo.models import ApiKey

API_KEY_HEADER = "X-API-Key"


class ApiKeyAuthentication(BaseAuthentication):
    """Sets `request.user` to the key's user and `request.auth` to the ApiKey.

    A missing key leaves the request anonymous, so the permission check answers 401; an unknown
    or revoked key, or one whose user is inactive or has left its organization, fails at once.
    Both get the contract's one 401 body (see mindo.exceptions).
    """

    def authenticate(self, request: Request) -> tuple[AbstractBaseUser, ApiKey] | None:
        raw_key = request.headers.get(API_KEY_HEADER, "").strip()
        if not raw_key:
            return None
        api_key = api_key_authenticate(raw_key)
        if api_key is None:
            raise AuthenticationFailed()
        return api_key.user, api_key

    def authenticate_header(self, request: Request) -> str:
        # Any value makes DRF answer 401 rather than 403 to an unauthenticated request.
        return API_KEY_HEADER
