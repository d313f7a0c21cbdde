"""The ERP's confirmations, set-based: one path for a run of any length, a run of one included.

A run's sales are locked together (in id order) before anything is read or posted, so a
concurrent cancellation serialises with the confirmation. Then, per confirmation in order: an
unknown sale is refused; a confirmed one is a repeat (same terms: re-announced; other terms:
refused ``already_confirmed``); otherwise the status change, the installment plan, the stock
movements and, where the store checks stock, the stock on hand (locked per product; what the
run's earlier confirmations take is counted) must all pass, or the confirmation is refused and
posts nothing. What passes is posted in three statements. A sale named twice in a run is
confirmed by its first confirmation; the next ones are handled after it, as repeats.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.ledger import answers, domain
from services.ledger.ports import LedgerUnitOfWork, Posting, SaleRow, StockKey
from shared.contracts import SaleConfirm
from shared.logging import get_logger
from shared.messaging import Envelope
from shared.subscribers import Received

log = get_logger(__name__)


async def confirm(uow: LedgerUnitOfWork, run: list[Received[SaleConfirm]]) -> list[Envelope]:
    envs: list[Envelope] = []
    pending = run
    while pending:
        named: set[str] = set()
        first: list[Received[SaleConfirm]] = []
        later: list[Received[SaleConfirm]] = []
        for received in pending:
            sale_id = received.message.sale_id
            (later if sale_id in named else first).append(received)
            named.add(sale_id)
        envs += await _confirm_once(uow, first)
        pending = later
    return envs


@dataclass
class _Planned:
    at: int  # the confirmation's place in the run
    received: Received[SaleConfirm]
    sale: SaleRow
    posting: Posting
    lines: list[domain.SaleLine]


async def _confirm_once(uow: LedgerUnitOfWork, run: list[Received[SaleConfirm]]) -> list[Envelope]:
    """Confirmations of distinct sales."""
    locked = await uow.sales.lock(sorted({r.message.sale_id for r in run}))
    answered: dict[int, Envelope] = {}
    repeats = [(n, r) for n, r in enumerate(run) if _status(locked, r) == domain.CONFIRMED]
    answered |= await _repeats(uow, locked, repeats)
    rest = [(n, r, locked.get(r.message.sale_id)) for n, r in enumerate(run)]
    lines = await uow.sales.lines(
        [sale.sale_id for _, _, sale in rest if sale and sale.status != domain.CONFIRMED]
    )
    planned: list[_Planned] = []
    for n, received, sale in rest:
        if sale is None:
            sale_id, source = received.message.sale_id, received.correlation_id
            answered[n] = answers.unknown_sale(sale_id, received.message_id, source)
        elif sale.status != domain.CONFIRMED:
            try:
                planned.append(_plan(n, received, sale, lines.get(sale.sale_id, [])))
            except domain.Refusal as refused:
                answered[n] = answers.refusal(
                    sale, sale.sale_id, refused.code, refused.detail, received.message_id
                )
    postings, short = await _stock_checked(uow, planned)
    answered |= short
    answered |= await _post(uow, postings)
    return [answered[n] for n in sorted(answered)]


def _status(locked: dict[str, SaleRow], received: Received[SaleConfirm]) -> str | None:
    sale = locked.get(received.message.sale_id)
    return sale.status if sale else None


async def _repeats(
    uow: LedgerUnitOfWork,
    locked: dict[str, SaleRow],
    repeats: list[tuple[int, Received[SaleConfirm]]],
) -> dict[int, Envelope]:
    """Confirmations of confirmed sales: re-announced when the terms are the same."""
    if not repeats:
        return {}
    ids = [r.message.sale_id for _, r in repeats]
    receivables = await uow.receivables.of(ids)
    movements = await uow.stock.movements(ids, "out")
    out: dict[int, Envelope] = {}
    for n, received in repeats:
        sale = locked[received.message.sale_id]
        theirs = receivables.get(sale.sale_id, [])
        if not domain.same_terms(sale.seller_id, theirs, received.message):
            detail = "the sale is already confirmed with different terms"
            out[n] = answers.refusal(
                sale, sale.sale_id, "already_confirmed", detail, received.message_id
            )
            continue
        moved = [m for _, m in movements.get(sale.sale_id, [])]
        log.info("repeated confirmation: re-announcing", sale_id=sale.sale_id)
        out[n] = answers.confirmed(sale, sale.seller_id, theirs, moved)
    return out


def _plan(
    at: int, received: Received[SaleConfirm], sale: SaleRow, lines: list[domain.SaleLine]
) -> _Planned:
    """What the confirmation would post; ``Refusal`` (status, installments, lines) if nothing."""
    request = received.message
    domain.transition(sale.status, "confirm")  # type: ignore[arg-type]
    installments = domain.plan_installments(sale.total, sale.sale_date, request.payment)
    moves = domain.plan_stock_out(lines)
    posting = Posting(sale, request, received.message_id, installments, moves)
    return _Planned(at, received, sale, posting, lines)


async def _stock_checked(
    uow: LedgerUnitOfWork, planned: list[_Planned]
) -> tuple[list[_Planned], dict[int, Envelope]]:
    """The confirmations that find their stock where the store checks it (what the earlier ones
    take counted), and the refusals ``insufficient_stock`` of the others."""
    checked = await uow.stock.checked_stores({p.sale.store_id for p in planned})
    keys = sorted(
        {(p.sale.store_id, m.product_id) for p in planned if p.sale.store_id in checked for m in p.posting.movements}
    )  # fmt: skip
    on_hand: dict[StockKey, int] = await uow.stock.lock_and_count(keys) if keys else {}
    passed: list[_Planned] = []
    refused: dict[int, Envelope] = {}
    for plan in planned:
        store = plan.sale.store_id
        if store not in checked:
            passed.append(plan)
            continue
        have = {line.product_id: on_hand.get((store, line.product_id), 0) for line in plan.lines}
        short = domain.stock_shortages(plan.lines, have)
        if short:
            detail = "; ".join(
                f"{s.description or s.product_id}: requested {s.requested}, available {s.available}"
                for s in short
            )
            refused[plan.at] = answers.refusal(
                plan.sale,
                plan.sale.sale_id,
                "insufficient_stock",
                f"insufficient stock: {detail}",
                plan.received.message_id,
            )
            continue
        for line in plan.lines:
            have[line.product_id] -= line.quantity
        on_hand |= {(store, product): left for product, left in have.items()}
        passed.append(plan)
    return passed, refused


async def _post(uow: LedgerUnitOfWork, planned: list[_Planned]) -> dict[int, Envelope]:
    if not planned:
        return {}
    posted = await uow.sales.confirm([p.posting for p in planned])
    out: dict[int, Envelope] = {}
    for plan in planned:
        sale, request = plan.sale, plan.posting.request
        receivables, movements = posted[sale.sale_id]
        seller = request.seller_id or sale.seller_id
        log.info(
            "sale confirmed",
            sale_id=sale.sale_id,
            store_id=sale.store_id,
            order_id=sale.order_id,
            receivables=len(receivables),
            movements=len(movements),
        )
        out[plan.at] = answers.confirmed(sale, seller, receivables, movements)
    return out
