"""The `X-API-Key` authentication of the public API."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from mindo.api_keys import api_key_authenticate
from mindo.errors import ApiKeyExpiredError
from mindo.exceptions import API_KEY_EXPIRED_CODE
from mindo.models import ApiKey

API_KEY_HEADER = "X-API-Key"


class ApiKeyExpired(AuthenticationFailed):
    """401 with the contract's message for a key that expired or was revoked."""

    default_code = API_KEY_EXPIRED_CODE


class ApiKeyAuthentication(BaseAuthentication):
    """Sets `request.user` to the key's user and `request.auth` to the ApiKey.

    A missing key leaves the request anonymous, so the permission check answers 401; an unknown
    key, or one whose user is inactive or has left its organization, fails at once with the same
    body (see mindo.exceptions); an expired or revoked one fails with "API Key expirada".
    """

    def authenticate(self, request: Request) -> tuple[AbstractBaseUser, ApiKey] | None:
        raw_key = request.headers.get(API_KEY_HEADER, "").strip()
        if not raw_key:
            return None
        try:
            api_key = api_key_authenticate(raw_key)
        except ApiKeyExpiredError as error:
            raise ApiKeyExpired(error.message) from None
        if api_key is None:
            raise AuthenticationFailed()
        return api_key.user, api_key

    def authenticate_header(self, request: Request) -> str:
        # Any value makes DRF answer 401 rather than 403 to an unauthenticated request.
        return API_KEY_HEADER
