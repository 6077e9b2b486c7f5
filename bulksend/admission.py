"""Admitting claimed messages within the portfolio's moving 24 h unique-recipient window, at the
moment they are about to go out: the drain's batches and single sends pass the same gate."""

from __future__ import annotations

from datetime import datetime

from django.db import connection

from bulksend.lifecycle import batch_settle
from bulksend.quota import window_room_frees_at
from bulksend.window_sql import GATE_SQL, window_params, window_sql
from messaging.delivery import ClaimedMessage, DeliveryResult, Settle
from templates_app.models import PhoneNumber


class QuotaGate:
    """Admits claimed messages within the portfolio's moving 24 h unique-recipient window."""

    def __init__(self, number: PhoneNumber) -> None:
        self.account_id = number.business_account_id
        self.number_pk = number.pk
        self.limit = number.business_account.quota_total

    def split(
        self, claimed: list[ClaimedMessage], now: datetime
    ) -> tuple[list[ClaimedMessage], list[ClaimedMessage]]:
        """The messages that fit the window and those that must wait for it, in claim order.

        A recipient costs no room when they hold a place already (a message to them went out
        in the last 24 h outside a service window, or is in flight) or when their service
        window with this number is open now. One statement for the whole batch.

        Call it in the claim's transaction: it takes a per-portfolio lock held until that
        transaction ends, so two senders cannot both spend the last room.
        """
        if self.limit is None or not claimed:
            return claimed, []
        phones = [message.recipient for message in claimed]
        params = window_params(account_id=self.account_id, now=now)
        params.update(
            number=self.number_pk, claimed=[m.id for m in claimed], phones=sorted(set(phones))
        )
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [self.account_id])
            cursor.execute(window_sql(GATE_SQL), params)
            taken, holding, window_open = cursor.fetchone()
        room = self.limit - taken
        free = set(holding) | set(window_open)
        admitted: list[ClaimedMessage] = []
        waiting: list[ClaimedMessage] = []
        for message in claimed:
            if message.recipient in free:
                admitted.append(message)
            elif room > 0:
                room -= 1
                free.add(message.recipient)
                admitted.append(message)
            else:
                waiting.append(message)
        return admitted, waiting

    def room_frees_at(self, now: datetime) -> datetime:
        """When the window next has room for one more recipient (the gate is limited)."""
        assert self.limit is not None
        return window_room_frees_at(
            account_id=self.account_id, overflow=1, total=self.limit, now=now
        )

    def admit(self, claimed: list[ClaimedMessage], now: datetime) -> list[ClaimedMessage]:
        """Keep the messages that fit; put the others back until the window frees room."""
        admitted, waiting = self.split(claimed, now)
        if waiting:
            # Waiting for the window is not an attempt: released, not retried.
            frees_at = self.room_frees_at(now)
            batch_settle(
                [DeliveryResult(m.id, Settle.RELEASE, retry_at=frees_at) for m in waiting],
                now=now,
            )
        return admitted
