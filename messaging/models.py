"""One template message per unique recipient of a send, and the organization's contacts."""

from __future__ import annotations

import functools
import hmac

from django.conf import settings
from django.db import models
from django.db.models import Case, Q, Value, When
from django.db.models.functions import Now
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac

from meta.account_events import SHORT_TEXT as PRICING_TEXT_MAX_LENGTH
from meta.user_ids import USER_ID_MAX_LENGTH
from meta.webhook_payload import (
    ERROR_CODE_MAX_LENGTH,
    PHONE_NUMBER_ID_MAX_LENGTH,
    WAMID_MAX_LENGTH,
)


class ContactList(models.Model):
    """A named group of an organization's contacts. Each organization has one default list,
    made when first needed, where contacts that arrive without one go (a send's recipients, an
    inbound message's sender)."""

    organization = models.ForeignKey(
        "mindo.Organization", on_delete=models.CASCADE, related_name="contact_lists"
    )
    name = models.CharField(max_length=200)
    is_default = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "name"], name="contact_list_unique_name_per_organization"
            ),
            models.UniqueConstraint(
                fields=["organization"],
                condition=Q(is_default=True),
                name="contact_list_one_default_per_organization",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class ContactSource(models.TextChoices):
    """How a contact came to be: it wrote to us, a send reached it, or a person added it."""

    ORGANIC = "organic"
    API = "api"
    ADMIN = "admin"
    IMPORT = "import"


class Contact(models.Model):
    """One per phone within an organization, in one of its lists.

    The phone is E.164 as `mindo.phones.phone_normalize` writes it, so any spelling of the number
    finds the same row. `user_id` is Meta's business-scoped user id (meta.user_ids): learnt from
    a webhook that names both (so later events naming only the id find the contact), or the only
    thing known of a recipient given by user id (phone null then).
    """

    # No index of its own: the (organization, phone) constraint's leads with it, and every index
    # less is one less entry per contact a 100,000-recipient send makes.
    organization = models.ForeignKey(
        "mindo.Organization", on_delete=models.CASCADE, related_name="contacts", db_index=False
    )
    # Null only for rows written outside the service's own paths (every path sets a list).
    contact_list = models.ForeignKey(
        ContactList, on_delete=models.PROTECT, related_name="contacts", null=True
    )
    phone = models.CharField(
        max_length=20, null=True, blank=True, help_text="E.164, e.g. +5491112345678"
    )
    user_id = models.CharField(
        "business-scoped user id",
        max_length=USER_ID_MAX_LENGTH,
        null=True,
        blank=True,
        help_text="Meta's user id for this business, e.g. US.13491208655302741918",
    )
    # The full name; null when nobody told us (a send's recipient).
    name = models.CharField("full name", max_length=200, null=True, blank=True)
    email = models.EmailField(max_length=254, null=True, blank=True)
    source = models.CharField(
        max_length=16,
        choices=ContactSource.choices,
        default=ContactSource.ADMIN,
        db_default=ContactSource.ADMIN,
    )
    created_at = models.DateTimeField(default=timezone.now, db_default=Now())

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "phone"], name="contact_unique_phone_per_organization"
            ),
            # Partial: the contacts with no user id (most) cost this index nothing.
            models.UniqueConstraint(
                fields=["organization", "user_id"],
                condition=Q(user_id__isnull=False),
                name="contact_unique_user_id_per_organization",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name or ''} {self.phone or self.user_id}".strip()


class InboundMessage(models.Model):
    """A message a person sent to one of the organization's numbers, as Meta's webhook carried
    it: what tells whether a contact replied and whether their 24 h session window is open."""

    # Meta's id of the message: a redelivered webhook records nothing twice.
    wamid = models.CharField(max_length=WAMID_MAX_LENGTH, unique=True)
    organization = models.ForeignKey(
        "mindo.Organization", on_delete=models.CASCADE, related_name="+"
    )
    # No index of its own: `inbound_number_sent_at` leads with it.
    phone_number = models.ForeignKey(
        "templates_app.PhoneNumber", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    # The sender, E.164; null when Meta named them only by user id and no contact of the
    # organization has that id with a phone.
    from_phone = models.CharField(max_length=20, null=True, blank=True)
    # The sender's business-scoped user id, when Meta gave it.
    from_user_id = models.CharField(max_length=USER_ID_MAX_LENGTH, null=True, blank=True)
    message_type = models.CharField(max_length=32)
    text = models.TextField(blank=True)
    # Meta's time of the message, never later than when its webhook was received.
    sent_at = models.DateTimeField()
    received_at = models.DateTimeField(db_default=Now())

    class Meta:
        indexes = [
            # A contact's latest message: one index entry, read backwards.
            models.Index(
                fields=["organization", "from_phone", "-sent_at"], name="inbound_sender_latest"
            ),
            # The service windows open with a portfolio's numbers (bulksend.window_sql): one
            # range scan per number, read from the index alone.
            models.Index(
                fields=["phone_number", "sent_at"],
                include=["from_phone", "from_user_id"],
                name="inbound_number_sent_at",
            ),
            # A sender Meta named only by user id, with no known phone (the contact lookup by
            # user id): partial, so the messages with a phone (most) cost it nothing.
            models.Index(
                fields=["organization", "from_user_id", "-sent_at"],
                condition=Q(from_phone__isnull=True),
                name="inbound_user_id_latest",
            ),
        ]

    def __str__(self) -> str:
        sender = self.from_phone or self.from_user_id
        return f"{sender} {self.message_type} {self.sent_at:%Y-%m-%d %H:%M:%S}"


class MessageStatus(models.TextChoices):
    """The message state machine: status only moves forward.

    pending -> sending -> sent -> delivered -> read; failed ends any step before delivery;
    cancelled ends a pending message of a cancelled send.
    """

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"
    CANCELLED = "cancelled"


# Statuses a client sees: a message claimed by a worker is still pending to them.
PUBLIC_STATUS = {MessageStatus.SENDING: MessageStatus.PENDING}
# ... and in a cancelled send, a `pending` one is cancelled: the cancel counts it so at once, and a
# task turns the row `cancelled` afterwards (bulksend.conversion).
CANCELLED_SEND_PUBLIC_STATUS = {**PUBLIC_STATUS, MessageStatus.PENDING: MessageStatus.CANCELLED}


def public_status_of(status: str, *, send_cancelled: bool = False) -> str:
    """The status a client sees of a message stored as `status` (its send cancelled or not)."""
    shown = CANCELLED_SEND_PUBLIC_STATUS if send_cancelled else PUBLIC_STATUS
    return str(shown.get(MessageStatus(status), status))


def stored_statuses_of(public: str, *, send_cancelled: bool = False) -> list[str]:
    """The stored statuses a client sees as `public` (its send cancelled or not)."""
    return [
        str(status)
        for status in MessageStatus
        if public_status_of(status, send_cancelled=send_cancelled) == public
    ]


# "The recipient" of a message row aliased `{alias}`, phone or user id, as SQL.
RECIPIENT_SQL = "COALESCE({alias}recipient_phone, {alias}recipient_user_id)"


class MessagePhase(models.IntegerChoices):
    """Where a message is in its life, coarser than its status: the indexes read this instead of
    the status, so that Meta's `delivered`, `read` and late `failed` webhooks (which change the
    status, never the phase) update a message in place (a HOT update: no index entry written)."""

    OPEN = 0  # pending or sending: the drain's and the reaper's
    HANDED = 1  # sent, delivered, read, or failed with the wamid Meta gave it
    CLOSED = 2  # ended without a wamid: failed before Meta took it, or cancelled


def recipient_sql(alias: str = "") -> str:
    return RECIPIENT_SQL.format(alias=f"{alias}." if alias else "")


def in_template_order(variables: dict[str, str], names: list[str]) -> dict[str, str]:
    """`variables` in the template's order: jsonb keeps keys sorted, clients expect theirs."""
    ordered = {name: variables[name] for name in names if name in variables}
    ordered.update((name, value) for name, value in variables.items() if name not in ordered)
    return ordered


class Message(models.Model):
    """Rows are written in bulk with COPY when a send is accepted (bulksend.creation)."""

    # No index of its own: `message_send_id` leads with it (and adds the id order pages need).
    bulk_send = models.ForeignKey(
        "bulksend.BulkSend", on_delete=models.CASCADE, related_name="messages", db_index=False
    )
    # Denormalized from the send's number so the 24 h quota window is one index range scan.
    # No database constraint: the send's own key already guarantees it, and a second foreign-key
    # check per row would add a third to the COPY of a 100,000-recipient send.
    business_account = models.ForeignKey(
        "templates_app.WhatsAppBusinessAccount",
        on_delete=models.CASCADE,
        related_name="+",
        db_constraint=False,
    )
    # The recipient: a phone (E.164) or, for one given by Meta's business-scoped user id, that
    # id and no phone. Exactly one of the two is set. SQL that needs "the recipient" whichever
    # it is reads `RECIPIENT_SQL` (a phone starts with `+`, a user id never does).
    recipient_phone = models.CharField(max_length=20, null=True, blank=True)
    recipient_user_id = models.CharField(max_length=USER_ID_MAX_LENGTH, null=True, blank=True)
    variables = models.JSONField(default=dict, db_default={})
    button_variables = models.JSONField(default=dict, db_default={})
    status = models.CharField(
        max_length=16,
        choices=MessageStatus.choices,
        default=MessageStatus.PENDING,
        db_default=MessageStatus.PENDING,
    )
    wamid = models.CharField(max_length=WAMID_MAX_LENGTH, null=True, blank=True)
    # Computed by PostgreSQL from status and wamid: it changes only on moves that write an index
    # anyway (a claim's lease, a recorded wamid), so indexing it costs webhooks nothing.
    phase = models.GeneratedField(
        expression=Case(
            When(
                status__in=[MessageStatus.PENDING, MessageStatus.SENDING],
                then=Value(MessagePhase.OPEN.value),
            ),
            When(
                Q(status__in=[MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.READ])
                | Q(wamid__isnull=False),
                then=Value(MessagePhase.HANDED.value),
            ),
            default=Value(MessagePhase.CLOSED.value),
        ),
        output_field=models.SmallIntegerField(choices=MessagePhase.choices),
        db_persist=True,
    )
    attempts = models.PositiveSmallIntegerField(default=0, db_default=0)
    # A claimed (`sending`) message belongs to its worker until this moment; past it (and a grace
    # period for Meta's `sent` webhook) the reaper hands it back.
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    # A message to retry later (backoff, Meta's "try again in hours") is not claimed before this.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(db_default=Now())
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    error_code = models.CharField(max_length=ERROR_CODE_MAX_LENGTH, null=True, blank=True)
    error_message = models.TextField(null=True, blank=True)
    # How Meta bills the message, from the `pricing` of its status webhooks (null until one
    # carries it): the model (PMP), the category (marketing, utility, authentication, service...)
    # and the type (regular, free_customer_service, free_entry_point).
    pricing_billable = models.BooleanField(null=True, blank=True)
    pricing_model = models.CharField(max_length=PRICING_TEXT_MAX_LENGTH, null=True, blank=True)
    pricing_category = models.CharField(max_length=PRICING_TEXT_MAX_LENGTH, null=True, blank=True)
    pricing_type = models.CharField(max_length=PRICING_TEXT_MAX_LENGTH, null=True, blank=True)

    class Meta:
        constraints = [
            # A send holds each normalized phone once: deduplication is a database fact.
            models.UniqueConstraint(
                fields=["bulk_send", "recipient_phone"], name="message_unique_recipient_per_send"
            ),
            # Partial: messages to phones (most) cost this index nothing.
            models.UniqueConstraint(
                fields=["bulk_send", "recipient_user_id"],
                condition=Q(recipient_user_id__isnull=False),
                name="message_unique_user_id_per_send",
            ),
            # Partial: unsent messages have no wamid and cost this index nothing when inserted.
            models.UniqueConstraint(
                fields=["wamid"], condition=Q(wamid__isnull=False), name="message_unique_wamid"
            ),
        ]
        indexes = [
            # A send's messages in id order, the order of its pages: page 1 is a range scan, and
            # a deep page skips entries of this narrow index instead of whole rows.
            models.Index(fields=["bulk_send", "id"], name="message_send_id"),
            # Claiming `pending` messages of a send in id order is one ordered range scan (the
            # few `sending` ones among them rechecked away), and so is a page of its unsent ones.
            # By phase, not status: see MessagePhase.
            models.Index(fields=["bulk_send", "phase", "id"], name="message_send_phase_id"),
            # The quota window: recipients a business account messaged since a moment.
            models.Index(
                fields=["business_account", "sent_at"],
                include=["recipient_phone", "recipient_user_id"],
                name="message_account_sent_at",
                condition=Q(sent_at__isnull=False),
            ),
            models.Index(fields=["recipient_phone"], name="message_recipient_phone"),
            # The same for messages to user ids (the quota window's service windows): partial,
            # so messages to phones (most) cost it nothing.
            models.Index(
                fields=["recipient_user_id"],
                condition=Q(recipient_user_id__isnull=False),
                name="message_recipient_user_id",
            ),
            # The reaper's look-up: only messages in flight are in it, so it stays tiny (a claim
            # sets the lease; a move back to pending clears it, any other leaves the phase).
            models.Index(
                fields=["lease_expires_at"],
                name="message_open_lease",
                condition=Q(phase=MessagePhase.OPEN, lease_expires_at__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.recipient} {self.status}"

    @property
    def recipient(self) -> str:
        """The phone, or the user id of a message to one."""
        return self.recipient_phone or self.recipient_user_id or ""

    @property
    def public_status(self) -> str:
        """`public_status_of` its status; read with its send (`select_related`) when loaded."""
        send = self._state.fields_cache.get("bulk_send")
        return public_status_of(self.status, send_cancelled=bool(send and send.is_cancelled))


# Every request to Meta carries this naming our message, and Meta echoes it in status webhooks,
# so a status can find its message even before the message's wamid is recorded. The id is
# followed by an HMAC of it under the server's key: message ids are sequential, and a status
# naming an id it did not get from us must find nothing.
CALLBACK_DATA_PREFIX = "mindo-message:"
CALLBACK_SALT = "mindo.messaging.callback-data"
# 128 bits of the HMAC, in hex: unguessable, and short beside Meta's 512-character limit.
CALLBACK_MAC_LENGTH = 32


@functools.lru_cache(maxsize=4)
def _callback_hmac(secret_key: str) -> hmac.HMAC:
    """`salted_hmac(CALLBACK_SALT, ...)` with its key derived once: the drain signs every message
    it sends, and deriving the key again for each cost more than the rest of its body."""
    return salted_hmac(CALLBACK_SALT, b"", secret=secret_key, algorithm="sha256")


def _callback_mac(message_id: int) -> str:
    # A fresh HMAC keyed as salted_hmac keys it: the same MAC, without hashing the key again.
    mac = _callback_hmac(settings.SECRET_KEY).copy()
    mac.update(str(message_id).encode())
    return mac.hexdigest()[:CALLBACK_MAC_LENGTH]


def callback_data_for(message_id: int) -> str:
    return f"{CALLBACK_DATA_PREFIX}{message_id}:{_callback_mac(message_id)}"


def message_id_from_callback_data(data: str | None) -> int | None:
    """Our message id when `data` is callback data we signed, else None."""
    if not data or not data.startswith(CALLBACK_DATA_PREFIX):
        return None
    number, _, mac = data[len(CALLBACK_DATA_PREFIX) :].partition(":")
    # ASCII digits only, and within a bigint: anything else names no message of ours.
    if not (0 < len(number) <= 18 and number.isascii() and number.isdigit()):
        return None
    message_id = int(number)
    if not constant_time_compare(mac, _callback_mac(message_id)):
        return None
    return message_id


class DeferredStatus(models.Model):
    """A status event for a wamid no message has yet: the sender may commit the wamid after Meta's
    first webhook arrives. Applied and deleted as soon as that wamid is recorded."""

    wamid = models.CharField(max_length=WAMID_MAX_LENGTH, db_index=True)
    status = models.CharField(max_length=16, choices=MessageStatus.choices)
    occurred_at = models.DateTimeField()
    error_code = models.CharField(max_length=ERROR_CODE_MAX_LENGTH, null=True, blank=True)
    error_message = models.TextField(null=True, blank=True)
    message_ref = models.BigIntegerField(null=True, blank=True)
    # The number the event named; checked again when the event is applied.
    phone_number_id = models.CharField(max_length=PHONE_NUMBER_ID_MAX_LENGTH, null=True, blank=True)
    # The event's `pricing` (billable, model, category, type), applied with it.
    pricing = models.JSONField(null=True, blank=True)
    received_at = models.DateTimeField(db_default=Now(), db_index=True)

    class Meta:
        verbose_name_plural = "deferred statuses"

    def __str__(self) -> str:
        return f"{self.wamid} {self.status}"


class WebhookProgress(models.Model):
    """How far Meta's status webhooks for one number have come: the latest Meta time of a status
    received for it (never later than when it was received).

    The evidence that a message handed to Meta with no answer ("maybe delivered") was not taken:
    Meta's statuses for that number have come in for a while past the moment it was handed
    over, and none named it. Until then it is not sent again (messaging.delivery.leases_reap).
    """

    phone_number_id = models.CharField(max_length=64, unique=True)
    latest_status_at = models.DateTimeField()

    class Meta:
        verbose_name_plural = "webhook progress"

    def __str__(self) -> str:
        return f"{self.phone_number_id} {self.latest_status_at:%Y-%m-%d %H:%M:%S}"


class SuppressionSource(models.TextChoices):
    """Who put a phone on the suppression list."""

    META_131050 = "meta_131050"  # Meta refused a marketing message: the user stopped them
    USER_PREFERENCES = "user_preferences"  # Meta's webhook: the user stopped marketing
    API = "api"  # a client, through POST /api/v1/suppressions/
    ADMIN = "admin"  # an operator


class Suppression(models.Model):
    """A phone (or a business-scoped user id: Meta's opt-out named the user by it) that gets no
    MARKETING template from the organization (UTILITY and AUTHENTICATION still go).

    Kept per organization, not per business account: a person who tells one of a company's
    numbers to stop expects the company to stop, whichever of its accounts would write next;
    and the clients that read and edit the list know their organization, not Meta's accounts.
    """

    organization = models.ForeignKey(
        "mindo.Organization", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    phone = models.CharField(
        max_length=USER_ID_MAX_LENGTH,
        help_text="E.164, e.g. +5491112345678, or Meta's business-scoped user id",
    )
    source = models.CharField(max_length=20, choices=SuppressionSource.choices)
    reason = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_default=Now())

    class Meta:
        constraints = [
            # Also the index of every look-up: by organization, by organization and phone.
            models.UniqueConstraint(
                fields=["organization", "phone"], name="suppression_unique_phone_per_organization"
            )
        ]

    def __str__(self) -> str:
        return f"{self.phone} ({self.source})"


class MarketingCooldown(models.Model):
    """Meta held back a MARKETING message to this recipient (131049, its per-user marketing
    limit): no marketing from the business account to them before `until`.

    `strikes` counts the 131049 answers of one episode; each waits longer (messaging.cooldown),
    and after the last step the message fails instead of waiting again.
    """

    business_account = models.ForeignKey(
        "templates_app.WhatsAppBusinessAccount",
        on_delete=models.CASCADE,
        related_name="+",
        db_index=False,
    )
    # The recipient: a phone, or the user id of a message to one.
    phone = models.CharField(max_length=USER_ID_MAX_LENGTH)
    strikes = models.PositiveSmallIntegerField(default=1)
    until = models.DateTimeField()
    updated_at = models.DateTimeField(default=timezone.now, db_default=Now())

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["business_account", "phone"], name="cooldown_unique_phone_per_account"
            )
        ]

    def __str__(self) -> str:
        return f"{self.phone} until {self.until:%Y-%m-%d %H:%M:%S}"
