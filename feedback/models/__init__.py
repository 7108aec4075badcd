"""ORM models, one module per aggregate. Importing this package registers every table."""

from feedback.models.approved_answer import AnswerSource, ApprovedAnswer
from feedback.models.audit import ActorType, AuditEntry
from feedback.models.base import Base, utcnow
from feedback.models.conversation import (
    HUMAN_STATES,
    Conversation,
    ConversationState,
    ConversationStateChange,
    ConversationStatus,
    Message,
    MessageRole,
)
from feedback.models.correction import Correction
from feedback.models.model_version import ModelAlias, ModelAliasEvent, ModelVersion
from feedback.models.monitor import MonitorDecision, MonitorEvaluation
from feedback.models.operator import ApiKey, Operator, OperatorRole, OperatorSession
from feedback.models.rating import Rating
from feedback.models.run import ACTIVE_RUN_STATUSES, DistillRun, RunStatus, RunTrigger
from feedback.models.seed import SeedExample, SeedImport
from feedback.models.snapshot import Snapshot
from feedback.models.teacher_output import TeacherOutput

__all__ = [
    "ACTIVE_RUN_STATUSES",
    "HUMAN_STATES",
    "ActorType",
    "AnswerSource",
    "ApiKey",
    "ApprovedAnswer",
    "AuditEntry",
    "Base",
    "Conversation",
    "ConversationState",
    "ConversationStateChange",
    "ConversationStatus",
    "Correction",
    "DistillRun",
    "Message",
    "MessageRole",
    "ModelAlias",
    "ModelAliasEvent",
    "ModelVersion",
    "MonitorDecision",
    "MonitorEvaluation",
    "Operator",
    "OperatorRole",
    "OperatorSession",
    "Rating",
    "RunStatus",
    "RunTrigger",
    "SeedExample",
    "SeedImport",
    "Snapshot",
    "TeacherOutput",
    "utcnow",
]
