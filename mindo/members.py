"""Users of organizations."""

from __future__ import annotations

from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from mindo.models import Membership, Organization

USERNAME_MAX_LENGTH = 150


def member_ensure(
    *, organization: Organization, email: str, first_name: str = "", last_name: str = ""
) -> User:
    """The user whose username is `email`, created if missing, as a member of `organization`.

    A user belongs to one organization at most; one of another organization is refused, not
    moved, since the sends it made would follow it. The names only fill a user being created.
    """
    try:
        validate_email(email)
    except ValidationError:
        raise ValueError(f"{email!r} is not a valid email address.") from None
    if len(email) > USERNAME_MAX_LENGTH:
        raise ValueError(f"The email may have at most {USERNAME_MAX_LENGTH} characters.")
    user, _ = User.objects.get_or_create(
        username=email,
        defaults={
            "email": email,
            "first_name": first_name,
            "last_name": last_name,
            # API clients authenticate with keys; a password would be one more thing to leak.
            "password": make_password(None),
        },
    )
    membership, _ = Membership.objects.get_or_create(
        user=user, defaults={"organization": organization}
    )
    if membership.organization_id != organization.pk:
        raise ValueError(
            f"{email} is a member of {membership.organization.name!r}, not {organization.name!r}."
        )
    return user
