"""Who has a conversation: the bot, the queue, an operator. The one place its state changes.

    request_human   bot | resolved -> waiting   the customer asked, or the bot was unsure
    claim           waiting | agent -> agent    an operator takes it (another's: admins only)
    assign          waiting | agent -> agent    an admin gives it to an operator
    agent_reply     agent                       the assigned operator (or an admin) writes
    resolve         waiting | agent -> resolved the case is done; the customer may write again
    hand_back       waiting | agent -> bot      the bot answers again
    customer_wrote  resolved -> bot             a new question after a resolved case

Each change writes a `ConversationStateChange` row (from, to, who, why) and, for an operator's
action, one audit row; the customer sees a system message for the changes that concern them
(an agent joined, the case was resolved, the bot is back). Nothing here commits: the caller's
unit of work does, and only then announces the change (`chat_api.live`), so no listener hears
of a change that a failed commit undid.

Permissions: an operator acts on a conversation it claimed (or an unclaimed waiting one, by
claiming it); an admin acts on any. The widget token never reaches this module's operator
actions.

Errors: `NotFound` (no such conversation or operator), `NotPermitted` (another operator has it;
an operator assigning), `Conflict` (the conversation is not in a state the action applies to, or
is closed).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import update
from sqlalchemy.orm import Session

from feedback.errors import Conflict, NotFound, NotPermitted
from feedback.models import (
    ActorType,
    Conversation,
    ConversationState,
    ConversationStateChange,
    ConversationStatus,
    Message,
    MessageRole,
    Operator,
    OperatorRole,
    utcnow,
)
from feedback.redaction import redact_text
from feedback.repositories.audit import AuditRepository
from feedback.repositories.conversations import ConversationRepository

BOT, WAITING, AGENT, RESOLVED = (s.value for s in ConversationState)

HANDOFF_NOTICE = "A human agent has been asked to join this conversation. Please stay here."
JOINED_NOTICE = "An agent joined the conversation."
RESOLVED_NOTICE = "This conversation was marked as resolved. Write again any time."
BOT_BACK_NOTICE = "You are talking with the assistant again."


@dataclass(frozen=True)
class Change:
    """A state change made in a transaction not yet committed; announce it after the commit."""

    conversation_id: uuid.UUID
    from_state: str
    to_state: str
    assigned_operator_id: uuid.UUID | None
    notice: Message | None  # the system message the customer sees, if any


def _change(
    session: Session,
    conversation: Conversation,
    to_state: str,
    *,
    actor_type: str,
    actor_id: str | None,
    reason: str | None,
    assigned: uuid.UUID | None,
    notice: str | None,
) -> Change:
    from_state = conversation.state
    now = utcnow()
    conversation.state = to_state
    conversation.state_changed_at = now
    conversation.assigned_operator_id = assigned
    conversation.handed_off = to_state in (WAITING, AGENT)
    if to_state == WAITING and from_state not in (WAITING, AGENT):
        conversation.handed_off_at = now  # a new handoff: its wait is measured afresh
        conversation.first_agent_reply_at = None
    if reason is not None and to_state == WAITING:
        conversation.handoff_reason = redact_text(reason)[:200]
    session.add(
        ConversationStateChange(
            conversation_id=conversation.id,
            at=now,
            from_state=from_state,
            to_state=to_state,
            reason=redact_text(reason)[:200] if reason else None,
            actor_type=actor_type,
            actor_id=actor_id,
            assigned_operator_id=assigned,
        )
    )
    session.flush()
    message = None
    if notice is not None:
        message = ConversationRepository(session).add_message(
            conversation, role=MessageRole.SYSTEM, text=notice, handoff=to_state == WAITING
        )
    return Change(conversation.id, from_state, to_state, assigned, message)


def _audit(session: Session, operator: Operator, action: str, change: Change) -> None:
    AuditRepository(session).record(
        actor_type=ActorType.OPERATOR,
        actor_id=str(operator.id),
        action=action,
        target_type="conversation",
        target_id=str(change.conversation_id),
        details={
            "from": change.from_state,
            "to": change.to_state,
            "assigned_operator_id": str(change.assigned_operator_id)
            if change.assigned_operator_id
            else None,
        },
    )


def _open(session: Session, conversation_id: uuid.UUID) -> Conversation:
    conversation = ConversationRepository(session).get(conversation_id)
    if conversation.status == ConversationStatus.CLOSED.value:
        raise Conflict("this conversation is closed; nothing can change in it any more")
    return conversation


def _locked(session: Session, conversation_id: uuid.UUID) -> Conversation:
    """The conversation, its row held until commit (PostgreSQL's row lock; SQLite's write lock
    is held from the transaction's start): two operators claiming at once are serialised."""
    session.execute(
        update(Conversation)
        .where(Conversation.id == conversation_id)
        .values(updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    conversation = _open(session, conversation_id)
    session.refresh(conversation)
    return conversation


def request_human(
    session: Session, conversation_id: uuid.UUID, *, reason: str, actor_type: str = "customer"
) -> Change | None:
    """Put the conversation in the operators' queue; None when a human already has it (or it
    is waiting). `reason`: customer_request, low_confidence, out_of_scope, low_quality, ..."""
    conversation = _locked(session, conversation_id)
    if conversation.state in (WAITING, AGENT):
        return None
    return _change(
        session, conversation, WAITING, actor_type=actor_type, actor_id=None, reason=reason,
        assigned=None, notice=HANDOFF_NOTICE,
    )  # fmt: skip


def claim(session: Session, conversation_id: uuid.UUID, operator: Operator) -> Change:
    """`operator` takes the conversation. Taking one another operator has is for admins."""
    conversation = _locked(session, conversation_id)
    if conversation.state not in (WAITING, AGENT):
        raise Conflict(
            f"the conversation is {conversation.state!r}, not in the queue; only waiting "
            "conversations (or, for admins, ones another operator has) can be claimed"
        )
    held_by = conversation.assigned_operator_id
    if held_by == operator.id:
        raise Conflict("you already have this conversation")
    if held_by is not None and operator.role != OperatorRole.ADMIN.value:
        raise NotPermitted("another operator has this conversation; ask an admin to reassign it")
    return _by_operator(
        session, conversation, operator, "conversation.claim", AGENT, operator.id, JOINED_NOTICE
    )


def assign(
    session: Session, conversation_id: uuid.UUID, admin: Operator, to_operator_id: uuid.UUID
) -> Change:
    """An admin gives a waiting or claimed conversation to an active operator."""
    if admin.role != OperatorRole.ADMIN.value:
        raise NotPermitted("only admins assign conversations; claim it yourself instead")
    target = session.get(Operator, to_operator_id)
    if target is None or not target.active:
        raise NotFound(f"no active operator {to_operator_id}")
    conversation = _locked(session, conversation_id)
    if conversation.state not in (WAITING, AGENT):
        raise Conflict("only conversations waiting for or with an agent can be assigned")
    if conversation.assigned_operator_id == target.id:
        raise Conflict("the conversation is already assigned to that operator")
    return _by_operator(
        session, conversation, admin, "conversation.assign", AGENT, target.id, JOINED_NOTICE
    )


def _may_act(conversation: Conversation, operator: Operator) -> None:
    if operator.role == OperatorRole.ADMIN.value:
        return
    if conversation.assigned_operator_id != operator.id:
        raise NotPermitted(
            "claim the conversation first; another operator has it"
            if conversation.assigned_operator_id is not None
            else "claim the conversation first"
        )


def agent_reply(
    session: Session, conversation_id: uuid.UUID, operator: Operator, text: str
) -> tuple[Message, Change | None]:
    """The operator's message to the customer (role `agent`, PII-redacted like every text).
    An admin writing in a waiting conversation claims it first (the returned change)."""
    conversation = _locked(session, conversation_id)
    change = None
    if conversation.state == WAITING and operator.role == OperatorRole.ADMIN.value:
        change = claim(session, conversation_id, operator)
    elif conversation.state != AGENT:
        raise Conflict(
            "the conversation is not with an agent; claim it from the inbox before replying"
        )
    _may_act(conversation, operator)
    repo = ConversationRepository(session)
    message = repo.add_message(conversation, role=MessageRole.AGENT, text=text)
    message.operator_id = operator.id
    if conversation.first_agent_reply_at is None:
        conversation.first_agent_reply_at = message.created_at or utcnow()
    session.flush()
    return message, change


def resolve(session: Session, conversation_id: uuid.UUID, operator: Operator) -> Change:
    conversation = _locked(session, conversation_id)
    if conversation.state not in (WAITING, AGENT):
        raise Conflict("only conversations waiting for or with an agent can be resolved")
    _may_act_or_unclaimed(conversation, operator)
    assigned = conversation.assigned_operator_id
    return _by_operator(
        session, conversation, operator, "conversation.resolve", RESOLVED, assigned, RESOLVED_NOTICE
    )


def hand_back(session: Session, conversation_id: uuid.UUID, operator: Operator) -> Change:
    """The bot answers the conversation again."""
    conversation = _locked(session, conversation_id)
    if conversation.state not in (WAITING, AGENT):
        raise Conflict("the bot already has this conversation")
    _may_act_or_unclaimed(conversation, operator)
    return _by_operator(
        session, conversation, operator, "conversation.hand_back", BOT, None, BOT_BACK_NOTICE
    )


def _by_operator(
    session: Session,
    conversation: Conversation,
    operator: Operator,
    action: str,
    to_state: str,
    assigned: uuid.UUID | None,
    notice: str,
) -> Change:
    """A state change an operator made, with its notice to the customer, audited as `action`."""
    change = _change(
        session, conversation, to_state, actor_type=ActorType.OPERATOR.value,
        actor_id=str(operator.id), reason=None, assigned=assigned, notice=notice,
    )  # fmt: skip
    _audit(session, operator, action, change)
    return change


def _may_act_or_unclaimed(conversation: Conversation, operator: Operator) -> None:
    if conversation.assigned_operator_id is None:
        return  # a waiting conversation nobody claimed: any operator may close or return it
    _may_act(conversation, operator)


def customer_wrote(session: Session, conversation: Conversation) -> Change | None:
    """A customer message in a resolved conversation goes back to the bot (no notice)."""
    if conversation.state != RESOLVED:
        return None
    return _change(
        session, conversation, BOT, actor_type="customer", actor_id=None, reason=None,
        assigned=None, notice=None,
    )  # fmt: skip
