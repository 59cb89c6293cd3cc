"""The wire contract as typed records. Generated from ordinance/streams/schemas/*.avsc by
ordinance/streams/typed_records.py — do not edit; regenerate with:

    python -m ordinance.streams.typed_records --write

``X`` is a record as ``Serde.decode`` returns it: every field a key, defaulted ones too.
``XIn`` is a datum as ``Serde.encode`` takes it: fields with a default may be left out,
maps may be any Mapping, Values may be floats and tuples. See typed_records.py.
"""

# No `from __future__ import annotations`: Python 3.11's TypedDict finds NotRequired only in
# evaluated annotations (__required_keys__ would list every key), and runtime checks read them.
import datetime
import decimal
from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal, NotRequired, TypeAlias, TypedDict, TypeVar, cast

from ordinance.streams.errors import SchemaError

if TYPE_CHECKING:
    from ordinance.streams.serde import Decoded

# ordinance.v1.Value as `values.from_wire` and `fastdecode.read_value` return it: the
# Decimal record inside it is read as decimal.Decimal, so it has no class of its own.
Value: TypeAlias = bool | int | str | decimal.Decimal | list["Value"] | dict[str, "Value"] | None
# ordinance.v1.Value as `values.to_wire` takes it: floats become exact decimals, tuples
# arrays, any Mapping a map.
ValueIn: TypeAlias = (
    bool
    | int
    | float
    | str
    | decimal.Decimal
    | list["ValueIn"]
    | tuple["ValueIn", ...]
    | Mapping[str, "ValueIn"]
    | None
)


RolloutMode: TypeAlias = Literal["stable", "canary", "shadow"]

Severity: TypeAlias = Literal["info", "warning", "critical"]

Verdict: TypeAlias = Literal["approved", "rejected"]

Effect: TypeAlias = Literal["allow", "deny", "require_approval"]

PrincipalKind: TypeAlias = Literal["agent", "person", "service", "unknown"]

PrincipalStatus: TypeAlias = Literal["active", "suspended", "revoked"]

LifecycleEvent: TypeAlias = Literal[
    "published",
    "approved",
    "staged",
    "canary",
    "enforced",
    "rolled_back",
    "retired",
    "unknown",
    "shadow",
    "reviewed",
]

AnalysisOutcome: TypeAlias = Literal["passed", "skipped", "unknown"]

SchemaCompatibilityOutcome: TypeAlias = Literal[
    "compatible",
    "acknowledged",
    "not_checked",
    "unknown",
]

WhatIfOutcome: TypeAlias = Literal["ran", "skipped", "unknown"]

GitState: TypeAlias = Literal["clean", "dirty", "not_in_git", "unknown"]


class Agent(TypedDict):
    """The ordinance.v1.Agent record, as in ActionRequest.agent."""

    id: str
    roles: list[str]
    attributes: dict[str, Value]


class Action(TypedDict):
    """The ordinance.v1.Action record, as in ActionRequest.action."""

    tool: str
    args: dict[str, Value]


class Resource(TypedDict):
    """The ordinance.v1.Resource record, as in ActionRequest.resource."""

    kind: str
    id: str
    attributes: dict[str, Value]


class ActionRequest(TypedDict):
    """An agent's intent to call a tool; the input of the enforcer. Topic agent.actions, key agent
    id.
    """

    request_id: str
    agent: Agent
    action: Action
    resource: Resource | None
    context: dict[str, Value]
    event_time: datetime.datetime
    reply_to: str | None
    client_id: str


class ActiveRollout(TypedDict):
    """What a deployment target runs now. Topic policy.active (compact), key target."""

    target: str
    stable_bundle_id: str | None
    candidate_bundle_id: str | None
    mode: RolloutMode
    canary_percent: int
    auto_rollback: bool
    change_offset: int
    updated_at: datetime.datetime


class Alert(TypedDict):
    """Something an operator should look at. Topic monitor.alerts, key policy id."""

    alert_id: str
    kind: str
    severity: Severity
    policy_id: str | None
    bundle_id: str | None
    message: str
    at: datetime.datetime
    details: dict[str, Value]


class Approval(TypedDict):
    """A human's answer to a require_approval decision. Topic agent.approvals, key agent id (so it
    lands on the partition of the agent's actions and decisions, whose enforcer answers it).
    """

    request_id: str
    agent_id: str
    verdict: Verdict
    approver: str
    reason: str | None
    at: datetime.datetime
    expires_at: datetime.datetime | None
    ticket: str


class AuditCheckpoint(TypedDict):
    """A signed Merkle checkpoint over a range of one agent.decisions partition. Topic
    audit.checkpoints, key partition.
    """

    partition: int
    first_offset: int
    last_offset: int
    record_count: int
    merkle_root: bytes
    chain_head: bytes
    prev_checkpoint_hash: bytes | None
    algorithm: str
    key_id: str
    signature: bytes
    at: datetime.datetime


class Obligation(TypedDict):
    """The ordinance.v1.Obligation record, as in Decision.obligations."""

    kind: str
    params: dict[str, Value]


class ShadowVerdict(TypedDict):
    """The ordinance.v1.ShadowVerdict record, as in Decision.shadow."""

    bundle_id: str
    effect: str
    rule_ids: list[str]
    code: str
    detail: str


class Decision(TypedDict):
    """The enforcer's answer to one ActionRequest. Topic agent.decisions, key agent id."""

    request_id: str
    agent_id: str
    effect: Effect
    rule_ids: list[str]
    reasons: list[str]
    code: str
    detail: str
    obligations: list[Obligation]
    bundle_id: str | None
    policy_offset: int | None
    evaluated_at: datetime.datetime
    enforcer_id: str
    action_offset: int | None
    prev_hash: bytes | None
    hash: bytes | None
    tool: str
    args: dict[str, Value]
    event_time: datetime.datetime | None
    approval_ticket: str | None
    key_id: str | None
    approval_roles: list[str]
    approvals_required: int | None
    approvers: list[str]
    arm: str | None
    shadow: ShadowVerdict | None


class TrustedKey(TypedDict):
    """A trust-file admin key: may sign identity.registry changes without a registry record."""

    principal_id: str
    key_id: str
    public_key: bytes


class EnforcerTakeover(TypedDict):
    """Control record on agent.decisions: an enforcer took this partition over; it reads the
    partition until it sees this record before deciding anything.
    """

    enforcer_id: str
    partition: int
    previous_enforcer_id: str | None
    nonce: str
    at: datetime.datetime
    agent_partitions: int | None
    max_clock_skew_ms: int | None
    trust_root: list[TrustedKey] | None
    dedupe_horizon_ms: int | None
    target: str | None
    prev_hash: bytes | None
    hash: bytes | None


class PrincipalKey(TypedDict):
    """The ordinance.v1.PrincipalKey record, as in IdentityRecord.keys."""

    key_id: str
    public_key: bytes
    not_before: datetime.datetime
    not_after: datetime.datetime | None


class IdentityRecord(TypedDict):
    """One principal of the identity registry (topic identity.registry, key principal id, every
    change kept forever). Signed by an admin: the signature travels in the record's ordinance-
    sig* headers over these exact bytes (docs/identity.md).
    """

    principal_id: str
    kind: PrincipalKind
    roles: list[str]
    attributes: dict[str, Value]
    owner: str | None
    status: PrincipalStatus
    keys: list[PrincipalKey]
    version: int
    at: datetime.datetime
    reason: str | None


class IdentityUpdate(TypedDict):
    """Control record on agent.decisions: from this offset on, the enforcer of this partition knows
    the principal as the carried registry record. It carries the signed record itself, so replay
    folds exactly what the enforcer saw.
    """

    enforcer_id: str
    partition: int
    principal_id: str
    registry_partition: int
    registry_offset: int
    record: bytes
    signer_id: str
    key_id: str
    signature: bytes
    at: datetime.datetime
    prev_hash: bytes | None
    hash: bytes | None


class BundleFile(TypedDict):
    """The ordinance.v1.BundleFile record, as in PolicyBundle.files."""

    path: str
    content: str


class PolicyBundle(TypedDict):
    """An immutable, content-addressed ruleset. Topic policy.active (compact), key
    bundle:<bundle_id>.
    """

    bundle_id: str
    created_at: datetime.datetime
    git_commit: str | None
    files: list[BundleFile]
    published_by: str | None
    impact: str
    approvals: list[str]
    schema_break_acks: list[str]
    revision: int | None


class ChangeFile(TypedDict):
    """The ordinance.v1.ChangeFile record, as in PolicyChange.files."""

    path: str
    content: str


class UsedAcknowledgement(TypedDict):
    """The ordinance.v1.UsedAcknowledgement record, as in PublishChecks.acknowledgements."""

    finding: str
    kind: str
    justification: str
    by: str
    expires: str | None


class SchemaCompatibility(TypedDict):
    """The ordinance.v1.SchemaCompatibility record, as in PublishChecks.schema_compatibility."""

    outcome: SchemaCompatibilityOutcome
    target: str | None
    against: list[str]
    breaking: int
    detail: str | None


class WhatIfTransition(TypedDict):
    """The ordinance.v1.WhatIfTransition record, as in WhatIfSummary.transitions."""

    old_effect: str
    new_effect: str
    count: int


class WhatIfSummary(TypedDict):
    """The ordinance.v1.WhatIfSummary record, as in PublishChecks.whatif."""

    outcome: WhatIfOutcome
    reason: str | None
    window_from: str | None
    window_to: str | None
    evaluated: int
    changed: int
    transitions: list[WhatIfTransition]


class PublishChecks(TypedDict):
    """What the publisher verified before a published event, and every check it bypassed: the trail
    a reviewer reads in `policy history`.
    """

    tests: int | None
    analysis: AnalysisOutcome
    bypasses: list[str]
    acknowledgements: list[UsedAcknowledgement]
    schema_compatibility: SchemaCompatibility | None
    whatif: WhatIfSummary | None


class GitSource(TypedDict):
    """The ordinance.v1.GitSource record, as in PolicyChange.git."""

    state: GitState
    commit: str | None
    branch: str | None
    path: str | None
    author: str | None
    authored_at: str | None
    committer: str | None
    committed_at: str | None
    subject: str | None
    message: str | None
    message_truncated: bool
    remote: str | None
    remote_name: str | None
    dirty_paths: list[str]
    detail: str | None


class PolicyChange(TypedDict):
    """One lifecycle event of a policy bundle. Topic policy.changes, key bundle id."""

    bundle_id: str
    event: LifecycleEvent
    actor: str
    at: datetime.datetime
    reason: str | None
    git_commit: str | None
    target: str | None
    canary_percent: int | None
    auto_rollback: bool
    previous_bundle_id: str | None
    files: list[ChangeFile]
    checks: PublishChecks | None
    git: GitSource | None


class RulesetSwap(TypedDict):
    """Control record on agent.decisions: from this offset on, the enforcer of this partition
    evaluates with bundle_id (and, in a canary or shadow rollout, candidate_bundle_id).
    """

    enforcer_id: str
    partition: int
    bundle_id: str
    previous_bundle_id: str | None
    policy_offset: int
    longest_window_ms: int | None
    candidate_bundle_id: str | None
    mode: str
    canary_percent: int
    canary_seed: str | None
    auto_rollback: bool
    at: datetime.datetime
    prev_hash: bytes | None
    hash: bytes | None


class AgentIn(TypedDict):
    """A Agent as Serde.encode takes it: fields with a default may be left out."""

    id: str
    roles: NotRequired[list[str]]
    attributes: NotRequired[Mapping[str, ValueIn]]


class ActionIn(TypedDict):
    """A Action as Serde.encode takes it: fields with a default may be left out."""

    tool: str
    args: NotRequired[Mapping[str, ValueIn]]


class ResourceIn(TypedDict):
    """A Resource as Serde.encode takes it: fields with a default may be left out."""

    kind: str
    id: str
    attributes: NotRequired[Mapping[str, ValueIn]]


class ActionRequestIn(TypedDict):
    """A ActionRequest as Serde.encode takes it: fields with a default may be left out."""

    request_id: str
    agent: AgentIn
    action: ActionIn
    resource: NotRequired[ResourceIn | None]
    context: NotRequired[Mapping[str, ValueIn]]
    event_time: datetime.datetime
    reply_to: NotRequired[str | None]
    client_id: str


class ActiveRolloutIn(TypedDict):
    """A ActiveRollout as Serde.encode takes it: fields with a default may be left out."""

    target: str
    stable_bundle_id: NotRequired[str | None]
    candidate_bundle_id: NotRequired[str | None]
    mode: RolloutMode
    canary_percent: NotRequired[int]
    auto_rollback: NotRequired[bool]
    change_offset: int
    updated_at: datetime.datetime


class AlertIn(TypedDict):
    """A Alert as Serde.encode takes it: fields with a default may be left out."""

    alert_id: str
    kind: str
    severity: Severity
    policy_id: NotRequired[str | None]
    bundle_id: NotRequired[str | None]
    message: str
    at: datetime.datetime
    details: NotRequired[Mapping[str, ValueIn]]


class ApprovalIn(TypedDict):
    """A Approval as Serde.encode takes it: fields with a default may be left out."""

    request_id: str
    agent_id: str
    verdict: Verdict
    approver: str
    reason: NotRequired[str | None]
    at: datetime.datetime
    expires_at: NotRequired[datetime.datetime | None]
    ticket: NotRequired[str]


class AuditCheckpointIn(TypedDict):
    """A AuditCheckpoint as Serde.encode takes it: fields with a default may be left out."""

    partition: int
    first_offset: int
    last_offset: int
    record_count: int
    merkle_root: bytes
    chain_head: bytes
    prev_checkpoint_hash: NotRequired[bytes | None]
    algorithm: str
    key_id: str
    signature: bytes
    at: datetime.datetime


class ObligationIn(TypedDict):
    """A Obligation as Serde.encode takes it: fields with a default may be left out."""

    kind: str
    params: NotRequired[Mapping[str, ValueIn]]


class ShadowVerdictIn(TypedDict):
    """A ShadowVerdict as Serde.encode takes it: fields with a default may be left out."""

    bundle_id: str
    effect: str
    rule_ids: NotRequired[list[str]]
    code: str
    detail: NotRequired[str]


class DecisionIn(TypedDict):
    """A Decision as Serde.encode takes it: fields with a default may be left out."""

    request_id: str
    agent_id: str
    effect: Effect
    rule_ids: NotRequired[list[str]]
    reasons: NotRequired[list[str]]
    code: NotRequired[str]
    detail: NotRequired[str]
    obligations: NotRequired[list[ObligationIn]]
    bundle_id: NotRequired[str | None]
    policy_offset: NotRequired[int | None]
    evaluated_at: datetime.datetime
    enforcer_id: str
    action_offset: NotRequired[int | None]
    prev_hash: NotRequired[bytes | None]
    hash: NotRequired[bytes | None]
    tool: NotRequired[str]
    args: NotRequired[Mapping[str, ValueIn]]
    event_time: NotRequired[datetime.datetime | None]
    approval_ticket: NotRequired[str | None]
    key_id: NotRequired[str | None]
    approval_roles: NotRequired[list[str]]
    approvals_required: NotRequired[int | None]
    approvers: NotRequired[list[str]]
    arm: NotRequired[str | None]
    shadow: NotRequired[ShadowVerdictIn | None]


class TrustedKeyIn(TypedDict):
    """A TrustedKey as Serde.encode takes it: fields with a default may be left out."""

    principal_id: str
    key_id: str
    public_key: bytes


class EnforcerTakeoverIn(TypedDict):
    """A EnforcerTakeover as Serde.encode takes it: fields with a default may be left out."""

    enforcer_id: str
    partition: int
    previous_enforcer_id: NotRequired[str | None]
    nonce: str
    at: datetime.datetime
    agent_partitions: NotRequired[int | None]
    max_clock_skew_ms: NotRequired[int | None]
    trust_root: NotRequired[list[TrustedKeyIn] | None]
    dedupe_horizon_ms: NotRequired[int | None]
    target: NotRequired[str | None]
    prev_hash: NotRequired[bytes | None]
    hash: NotRequired[bytes | None]


class PrincipalKeyIn(TypedDict):
    """A PrincipalKey as Serde.encode takes it: fields with a default may be left out."""

    key_id: str
    public_key: bytes
    not_before: datetime.datetime
    not_after: NotRequired[datetime.datetime | None]


class IdentityRecordIn(TypedDict):
    """A IdentityRecord as Serde.encode takes it: fields with a default may be left out."""

    principal_id: str
    kind: PrincipalKind
    roles: NotRequired[list[str]]
    attributes: NotRequired[Mapping[str, ValueIn]]
    owner: NotRequired[str | None]
    status: PrincipalStatus
    keys: NotRequired[list[PrincipalKeyIn]]
    version: int
    at: datetime.datetime
    reason: NotRequired[str | None]


class IdentityUpdateIn(TypedDict):
    """A IdentityUpdate as Serde.encode takes it: fields with a default may be left out."""

    enforcer_id: str
    partition: int
    principal_id: str
    registry_partition: int
    registry_offset: int
    record: bytes
    signer_id: str
    key_id: str
    signature: bytes
    at: datetime.datetime
    prev_hash: NotRequired[bytes | None]
    hash: NotRequired[bytes | None]


class BundleFileIn(TypedDict):
    """A BundleFile as Serde.encode takes it: fields with a default may be left out."""

    path: str
    content: str


class PolicyBundleIn(TypedDict):
    """A PolicyBundle as Serde.encode takes it: fields with a default may be left out."""

    bundle_id: str
    created_at: datetime.datetime
    git_commit: NotRequired[str | None]
    files: list[BundleFileIn]
    published_by: NotRequired[str | None]
    impact: NotRequired[str]
    approvals: NotRequired[list[str]]
    schema_break_acks: NotRequired[list[str]]
    revision: NotRequired[int | None]


class ChangeFileIn(TypedDict):
    """A ChangeFile as Serde.encode takes it: fields with a default may be left out."""

    path: str
    content: str


class UsedAcknowledgementIn(TypedDict):
    """A UsedAcknowledgement as Serde.encode takes it: fields with a default may be left out."""

    finding: str
    kind: str
    justification: str
    by: str
    expires: NotRequired[str | None]


class SchemaCompatibilityIn(TypedDict):
    """A SchemaCompatibility as Serde.encode takes it: fields with a default may be left out."""

    outcome: SchemaCompatibilityOutcome
    target: NotRequired[str | None]
    against: NotRequired[list[str]]
    breaking: NotRequired[int]
    detail: NotRequired[str | None]


class WhatIfTransitionIn(TypedDict):
    """A WhatIfTransition as Serde.encode takes it: fields with a default may be left out."""

    old_effect: str
    new_effect: str
    count: int


class WhatIfSummaryIn(TypedDict):
    """A WhatIfSummary as Serde.encode takes it: fields with a default may be left out."""

    outcome: WhatIfOutcome
    reason: NotRequired[str | None]
    window_from: NotRequired[str | None]
    window_to: NotRequired[str | None]
    evaluated: NotRequired[int]
    changed: NotRequired[int]
    transitions: NotRequired[list[WhatIfTransitionIn]]


class PublishChecksIn(TypedDict):
    """A PublishChecks as Serde.encode takes it: fields with a default may be left out."""

    tests: NotRequired[int | None]
    analysis: AnalysisOutcome
    bypasses: NotRequired[list[str]]
    acknowledgements: NotRequired[list[UsedAcknowledgementIn]]
    schema_compatibility: NotRequired[SchemaCompatibilityIn | None]
    whatif: NotRequired[WhatIfSummaryIn | None]


class GitSourceIn(TypedDict):
    """A GitSource as Serde.encode takes it: fields with a default may be left out."""

    state: GitState
    commit: NotRequired[str | None]
    branch: NotRequired[str | None]
    path: NotRequired[str | None]
    author: NotRequired[str | None]
    authored_at: NotRequired[str | None]
    committer: NotRequired[str | None]
    committed_at: NotRequired[str | None]
    subject: NotRequired[str | None]
    message: NotRequired[str | None]
    message_truncated: NotRequired[bool]
    remote: NotRequired[str | None]
    remote_name: NotRequired[str | None]
    dirty_paths: NotRequired[list[str]]
    detail: NotRequired[str | None]


class PolicyChangeIn(TypedDict):
    """A PolicyChange as Serde.encode takes it: fields with a default may be left out."""

    bundle_id: str
    event: LifecycleEvent
    actor: str
    at: datetime.datetime
    reason: NotRequired[str | None]
    git_commit: NotRequired[str | None]
    target: NotRequired[str | None]
    canary_percent: NotRequired[int | None]
    auto_rollback: NotRequired[bool]
    previous_bundle_id: NotRequired[str | None]
    files: NotRequired[list[ChangeFileIn]]
    checks: NotRequired[PublishChecksIn | None]
    git: NotRequired[GitSourceIn | None]


class RulesetSwapIn(TypedDict):
    """A RulesetSwap as Serde.encode takes it: fields with a default may be left out."""

    enforcer_id: str
    partition: int
    bundle_id: str
    previous_bundle_id: NotRequired[str | None]
    policy_offset: int
    longest_window_ms: NotRequired[int | None]
    candidate_bundle_id: NotRequired[str | None]
    mode: NotRequired[str]
    canary_percent: NotRequired[int]
    canary_seed: NotRequired[str | None]
    auto_rollback: NotRequired[bool]
    at: datetime.datetime
    prev_hash: NotRequired[bytes | None]
    hash: NotRequired[bytes | None]


# The records a log carries at the top level: what decoded_record narrows to.
AnyRecord: TypeAlias = (
    ActionRequest
    | ActiveRollout
    | Alert
    | Approval
    | AuditCheckpoint
    | Decision
    | EnforcerTakeover
    | IdentityRecord
    | IdentityUpdate
    | PolicyBundle
    | PolicyChange
    | RulesetSwap
)
_Record = TypeVar("_Record", bound=AnyRecord)


def decoded_record(decoded: "Decoded", kind: type[_Record]) -> _Record:
    """``decoded.value`` as the record class of its schema (``decoded_record(d, Decision)``);
    SchemaError when it is a record of another schema. The decoders build every record to
    its reader schema (a property test checks it against these classes), so the check of
    the schema's name is all that is left to do."""
    if decoded.name != kind.__name__:
        raise SchemaError(f"a {decoded.name} record, not a {kind.__name__}")
    return cast(_Record, decoded.value)
