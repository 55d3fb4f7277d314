"""DRF authentication by `Authorization: Bearer <token>` against hashed API client tokens."""

from __future__ import annotations

from rest_framework import authentication, exceptions

from .models import ApiClient, hash_token


class ApiClientPrincipal:
    """Stands in for request.user when an API client calls; it holds no Django permissions."""

    is_authenticated = True
    is_active = True
    is_staff = False
    is_superuser = False
    pk = None

    def __init__(self, client: ApiClient):
        self.client = client
        self.username = f"api:{client.name}"

    def __str__(self) -> str:
        return self.username


class BearerTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Authorization header must be 'Bearer <token>'.")
        try:
            token = header[1].decode()
        except UnicodeError:
            raise exceptions.AuthenticationFailed("Token contains invalid characters.") from None
        client = ApiClient.objects.filter(token_hash=hash_token(token)).first()
        if client is None or not client.is_active:
            raise exceptions.AuthenticationFailed("Invalid or revoked API token.")
        client.touch()
        return ApiClientPrincipal(client), client

    def authenticate_header(self, request) -> str:
        return self.keyword
