"""The worker's pipeline: stream entries in, rows written out, through these steps in order.

1. decode    (``steps.decode``)    entries -> events; what does not decode is a dead letter
2. validate  (``steps.validate``)  events -> those whose link exists; the rest rejected
3. attribute (``steps.attribute``) conversions -> the click each credits (or the coupon, or
                                   the partner a customer is bound to: a renewal)
4. classify  (``steps.classify``)  clicks and impressions -> Redis's verdict: flags, uniqueness
5. price     (``steps.price``)     conversions -> commission, flags, review
6. write     (``steps.write``)     the batch in one transaction, idempotently, with its rollup

A dropped event becomes a ``rejected_events`` row with its ``RejectReason``; nothing is dropped
silently. Every outside question is asked once per batch: ``ask`` runs steps 2 and 3 and sends
the questions (Redis's quality script; the database's credited clicks and the clicks of orders a
postback names none for) without waiting for the answers; ``finish`` awaits them and runs steps
3 (what is known of the credited click), 4 and 5. So the worker builds one batch's rows while
Redis answers the next batch's questions (``backend.worker.consumer``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

from backend.core.ids import ClickIdSigner
from backend.domain.events import QueuedEvent
from backend.domain.quality.windows import Counter
from backend.storage.catalog import Catalog
from backend.storage.db.engine import Database
from backend.storage.rollups.hourly import SharedDeltas
from backend.worker.batch import Prepared
from backend.worker.steps.attribute import (
    Attribution,
    ConversionFacts,
    CreditedClick,
    OrderKey,
    credited_click_ids,
    names_no_click,
    order_of,
)
from backend.worker.steps.classify import add_clicks, add_impressions, questions
from backend.worker.steps.decode import Decoded, decode
from backend.worker.steps.price import add_conversion
from backend.worker.steps.validate import Validated, validate
from backend.worker.steps.write import Written, write_batch
from backend.worker.stream import Entry

Answers = tuple[
    tuple[list[int], list[int], list[int]], dict[str, CreditedClick], dict[OrderKey, str]
]


@dataclass(frozen=True, slots=True)
class Inquiry:
    """A batch validated and attributed, with its questions on their way."""

    batch: Prepared  # holds the rejects found so far
    valid: Validated
    attributed: list[ConversionFacts]
    credited: set[str]  # the click ids attributed conversions credit
    answers: asyncio.Future[Answers]

    def cancel(self) -> None:
        """Drop the batch unfinished (its stream entries stay pending, to be read again).

        The answers may be settled already, or only about to be (its questions answered or
        failed, the gathering future not told yet): their outcome is read once it is there,
        so that nothing is left to log as never retrieved."""
        self.answers.cancel()
        self.answers.add_done_callback(_dropped)


def _dropped(answers: asyncio.Future[Answers]) -> None:
    if not answers.cancelled():
        answers.exception()


class Pipeline:
    """The steps with what they ask: the catalog, Redis, the click id signer, the database."""

    def __init__(
        self, catalog: Catalog, redis: Redis, signer: ClickIdSigner, database: Database
    ) -> None:
        self._catalog = catalog
        self._counter = Counter(redis)
        self._attribution = Attribution(catalog, signer, database)
        self._db = database

    @staticmethod
    def decode(entries: list[Entry]) -> Decoded:
        return decode(entries)

    async def prepare(
        self, events: list[QueuedEvent], unwritten: Sequence[Prepared] = ()
    ) -> Prepared:
        """Steps 2 to 5; ``unwritten``: batches that may not be committed yet."""
        return await self.finish(await self.ask(events), unwritten)

    async def ask(self, events: list[QueuedEvent]) -> Inquiry:
        """Validate and attribute, then send the batch's questions without waiting for the
        answers."""
        batch = Prepared()
        valid = await validate(events, self._catalog, batch.rejected)
        attributed = [await self._attribution.attribute(event) for event in valid.conversions]
        # One query, only for a batch with conversions that credit nobody but name a customer.
        await self._attribution.credit_renewals(attributed)
        credited = credited_click_ids(attributed)
        orders = {order_of(f.event) for f in attributed if names_no_click(f.event)}
        answers = asyncio.gather(
            self._counter.answer(questions(valid)),
            self._attribution.stored_clicks(credited),
            self._attribution.order_clicks(orders),
        )
        # The questions leave when their tasks first run: let them now, not once the caller
        # has built the rows of the batch before (Redis would wait all that time).
        await asyncio.sleep(0)
        return Inquiry(batch, valid, attributed, credited, answers)

    async def finish(self, inquiry: Inquiry, unwritten: Sequence[Prepared] = ()) -> Prepared:
        """Classify and price once the answers are in. ``unwritten``: the batches staged
        before this one that may not have been committed when its credited clicks were
        looked up."""
        (click_bits, impression_bits, conversion_bits), stored, order_clicks = await inquiry.answers
        batch, valid = inquiry.batch, inquiry.valid
        shared: SharedDeltas = {}
        in_batch = add_clicks(batch, valid.clicks, click_bits, inquiry.credited, shared)
        add_impressions(batch, valid.impressions, impression_bits, shared)
        for facts, bits in zip(inquiry.attributed, conversion_bits, strict=True):
            facts.bits = bits
        credited = await self._attribution.credit(
            inquiry.attributed, stored, order_clicks, in_batch, unwritten
        )
        for facts in credited:
            facts.network = valid.network.get(facts.event.event_id)
            add_conversion(batch, facts)
        return batch

    async def write(self, batch: Prepared) -> Written:
        return await write_batch(self._db, batch)
