"""The spool of a streamed send's checked recipients (bulksend.checked_spool): what its COPY
reads back is exactly what the check kept, batch by batch, in order."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bulksend.checked_spool import CheckedSpool
from bulksend.recipients import Recipient

texts = st.text(max_size=40)
recipients = st.builds(
    Recipient,
    phone=st.none() | texts,
    variables=st.dictionaries(texts, texts, max_size=4),
    button_variables=st.dictionaries(texts, texts, max_size=2),
    user_id=st.none() | texts,
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(recipients, max_size=6), max_size=5))
def test_every_field_of_every_batch_reads_back_exactly(batches: list[list[Recipient]]) -> None:
    spool = CheckedSpool()
    for batch in batches:
        spool.append(batch)

    assert list(spool.batches()) == batches
    assert list(spool.batches()) == batches  # read again from the start
    spool.close()
