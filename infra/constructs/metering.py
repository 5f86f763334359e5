"""The meter backlog (docs/money.md, "When the ledger fails"): an SQS queue, encrypted with the
stack's key, of the settles and audit records the tables could not take once a provider had
answered; the reconciler function that settles them exactly once; a dead-letter queue for what it
could not, with an alarm."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.constructs.data import Data
from infra.constructs.functions import USAGE_TABLE_ACTIONS, Functions, FunctionSpec, key_via_services
from infra.constructs.observability import dead_letters_alarm

RECONCILER = FunctionSpec(
    "meter_reconciler", "BYOM meter reconciler: settles what the gateway could not write", 60, 256
)
# A message is tried this many times (the ledger may be throttled for a while), then kept aside.
MAX_RECEIVE_COUNT = 10
VISIBILITY_TIMEOUT = Duration.seconds(6 * RECONCILER.timeout_seconds)
BATCH_SIZE = 10
RETENTION = Duration.days(4)
DLQ_RETENTION = Duration.days(14)


class Metering(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        key: kms.IKey,
        data: Data,
        functions: Functions,
        alerts_topic: sns.ITopic,
    ) -> None:
        super().__init__(scope, construct_id)
        self._key = key
        self.dead_letters = sqs.Queue(
            self,
            "DeadLetters",
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=key,
            enforce_ssl=True,
            retention_period=DLQ_RETENTION,
        )
        # Messages hold a call's audit record (its data subject): encrypted with the stack's key.
        self.queue = sqs.Queue(
            self,
            "Backlog",
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=key,
            enforce_ssl=True,
            retention_period=RETENTION,
            visibility_timeout=VISIBILITY_TIMEOUT,
            dead_letter_queue=sqs.DeadLetterQueue(
                queue=self.dead_letters, max_receive_count=MAX_RECEIVE_COUNT
            ),
        )
        self.reconciler = self._build_reconciler(functions, data)
        self.dlq_alarm = self._build_dlq_alarm(alerts_topic)

    def _build_reconciler(self, functions: Functions, data: Data) -> lambda_.Function:
        fn = functions.build_function(RECONCILER, {"USAGE_TABLE": data.usage.table_name}, scope=self)
        fn.add_event_source(
            sources.SqsEventSource(
                self.queue,
                batch_size=BATCH_SIZE,
                report_batch_item_failures=True,
                max_batching_window=Duration.seconds(1),
            )
        )
        fn.add_to_role_policy(
            iam.PolicyStatement(
                sid="SettleUsage", actions=USAGE_TABLE_ACTIONS, resources=[data.usage.table_arn]
            )
        )
        fn.add_to_role_policy(
            iam.PolicyStatement(
                sid="WriteAuditRecords", actions=["dynamodb:PutItem"], resources=[data.audit.table_arn]
            )
        )
        fn.add_to_role_policy(
            key_via_services(
                self._key, ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey"], ["dynamodb", "sqs"]
            )
        )
        return fn

    def allow_deferral(self, fn: lambda_.Function) -> None:
        """`fn` runs the invocation path: it may keep what its settles could not write."""
        fn.add_environment("METER_QUEUE_URL", self.queue.queue_url)
        fn.add_to_role_policy(
            iam.PolicyStatement(
                sid="KeepDeferredSettles", actions=["sqs:SendMessage"], resources=[self.queue.queue_arn]
            )
        )
        fn.add_to_role_policy(
            key_via_services(
                self._key, ["kms:GenerateDataKey", "kms:Decrypt"], ["sqs"], sid="EncryptDeferredSettles"
            )
        )

    def _build_dlq_alarm(self, topic: sns.ITopic) -> cw.Alarm:
        return dead_letters_alarm(
            self,
            "DeadLettersAlarm",
            self.dead_letters,
            topic,
            name="meter-backlog-dead-letters",
            description=(
                "A call's settle or audit record could not be written after every retry; it waits in "
                "the meter backlog's dead letters (its hold stays held). Redrive it once the cause is mended."
            ),
        )
