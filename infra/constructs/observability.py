"""Alerting and monitoring: the alerts topic, the platform alarms and the operations dashboard."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aws_cdk import ArnFormat, Aws, Duration, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.config import AlarmThresholds

# The EMF namespace of docs/contracts.md; the functions' POWERTOOLS_METRICS_NAMESPACE.
METRICS_NAMESPACE = "BYOM"
PERIOD = Duration.minutes(5)
_PERIOD_SECONDS = 300
# Rates and latency alarm when 2 of the last 3 periods breach: one slow or failing burst of a few
# requests is not an incident. Errors and throttles alarm on the first period.
SUSTAINED_EVALUATION_PERIODS = 3
SUSTAINED_DATAPOINTS = 2

_CLOUDWATCH = iam.ServicePrincipal("cloudwatch.amazonaws.com")


def name_prefix(scope: Construct) -> str:
    """What every name this stack gives to alarms and the topic starts with."""
    return f"byom-{Stack.of(scope).stack_name}-"


def alarm(
    scope: Construct,
    construct_id: str,
    action: cw.IAlarmAction,
    *,
    name: str,
    description: str,
    metric: cw.IMetric,
    threshold: float,
    comparison: cw.ComparisonOperator,
    sustained: bool = False,
) -> cw.Alarm:
    """An alarm of the stack, named under its prefix, with `action` when it fires."""
    made = cw.Alarm(
        scope,
        construct_id,
        alarm_name=f"{name_prefix(scope)}{name}",
        alarm_description=description,
        metric=metric,
        threshold=threshold,
        comparison_operator=comparison,
        evaluation_periods=SUSTAINED_EVALUATION_PERIODS if sustained else 1,
        datapoints_to_alarm=SUSTAINED_DATAPOINTS if sustained else 1,
        # No traffic is not an outage: idle periods keep the alarm in OK.
        treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
    )
    made.add_alarm_action(action)
    return made


def dead_letters_alarm(
    scope: Construct, construct_id: str, queue: sqs.IQueue, topic: sns.ITopic, *, name: str, description: str
) -> cw.Alarm:
    """An alarm, announced on the alerts topic, as soon as a dead-letter queue holds a message."""
    return alarm(
        scope,
        construct_id,
        cw_actions.SnsAction(topic),
        name=name,
        description=description,
        metric=queue.metric_approximate_number_of_messages_visible(period=Duration.minutes(5)),
        threshold=1,
        comparison=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
    )


def spend_alarm_prefix(scope: Construct) -> str:
    """`SPEND_ALARM_PREFIX`: the admin API names a tenant's spend alarm `{prefix}{tenant_id}`."""
    return f"{name_prefix(scope)}tenant-spend-"


def alarm_arn(scope: Construct, alarm_name: str) -> str:
    return Stack.of(scope).format_arn(
        service="cloudwatch",
        resource="alarm",
        resource_name=alarm_name,
        arn_format=ArnFormat.COLON_RESOURCE_NAME,
    )


def _search(metric_name: str, dimensions: str, statistic: str) -> str:
    schema = f"{{{METRICS_NAMESPACE},{dimensions}}}"
    return f"SEARCH('{schema} MetricName=\"{metric_name}\"', '{statistic}', {_PERIOD_SECONDS})"


def by_tenant_and_model(metric_name: str, statistic: str = "Sum") -> str:
    """One series per tenant and model alias of an EMF metric of the gateway."""
    return _search(metric_name, "model,service,tenant_id", statistic)


def by_tenant(metric_name: str, statistic: str) -> str:
    """One series per tenant of the per-budget metrics (dimensions service, tenant_id)."""
    return _search(metric_name, "service,tenant_id", statistic)


class Alerts(Construct):
    """The SNS topic that receives every alarm and budget notice, encrypted with the stack's key.

    Built before the functions (the gateway publishes to it, the admin API points tenants' spend
    alarms at it) and before `Observability`, whose alarms need the functions and the API.
    """

    def __init__(self, scope: Construct, construct_id: str, *, key: kms.Key) -> None:
        super().__init__(scope, construct_id)
        self.topic_name = f"{name_prefix(self)}alerts"
        # The stack's alarms and the admin API's spend alarms: everything named with the prefix.
        self.alarm_arn_pattern = alarm_arn(self, f"{name_prefix(self)}*")
        self.topic = self._build_topic(key)
        self._allow_alarms_to_publish(self.topic)
        self._allow_alarms_to_use_key(key)

    def _build_topic(self, key: kms.IKey) -> sns.Topic:
        return sns.Topic(
            self,
            "Topic",
            # A fixed name, so that the key policy can name the topic without a circular reference.
            topic_name=self.topic_name,
            display_name="BYOM Gateway alerts",
            master_key=key,
            enforce_ssl=True,
        )

    def _allow_alarms_to_publish(self, topic: sns.Topic) -> None:
        # The topic policy replaces SNS's default one, so CloudWatch needs its own statement.
        topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowAlarmsOfThisStack",
                principals=[_CLOUDWATCH],
                actions=["sns:Publish"],
                resources=[topic.topic_arn],
                conditions={
                    "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
                    "ArnLike": {"aws:SourceArn": self.alarm_arn_pattern},
                },
            )
        )

    def _allow_alarms_to_use_key(self, key: kms.Key) -> None:
        # CloudWatch publishes with its own principal, so the key policy must let it encrypt the
        # notification; only for this stack's alarms and only for this topic.
        topic_arn = Stack.of(self).format_arn(
            service="sns", resource=self.topic_name, arn_format=ArnFormat.NO_RESOURCE_NAME
        )
        key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowAlarmsToPublishToTheAlertsTopic",
                principals=[_CLOUDWATCH],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
                conditions={
                    "StringEquals": {
                        "aws:SourceAccount": Aws.ACCOUNT_ID,
                        "kms:EncryptionContext:aws:sns:topicArn": topic_arn,
                    },
                    "ArnLike": {"aws:SourceArn": self.alarm_arn_pattern},
                },
            )
        )


@dataclass(frozen=True)
class MonitoredFunctions:
    authorizer: lambda_.IFunction
    admin: lambda_.IFunction
    gateway: lambda_.IFunction

    def by_name(self) -> Mapping[str, lambda_.IFunction]:
        return {"authorizer": self.authorizer, "admin": self.admin, "gateway": self.gateway}


class Observability(Construct):
    """The platform alarms (actions to the alerts topic) and one dashboard."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        thresholds: AlarmThresholds,
        topic: sns.ITopic,
        stage: apigw.Stage,
        functions: MonitoredFunctions,
        capability_alarms: Sequence[cw.Alarm] = (),
    ) -> None:
        super().__init__(scope, construct_id)
        self._thresholds = thresholds
        # Alarms a capability raises on its own resources (the automations' dead letters).
        self._capability_alarms = list(capability_alarms)
        self._stage = stage
        self._functions = functions
        self._action = cw_actions.SnsAction(topic)
        self.topic = topic
        self.api_5xx_rate_alarm = self._build_api_5xx_rate_alarm()
        self.api_p99_latency_alarm = self._build_api_p99_latency_alarm()
        self.throttle_alarms = self._build_throttle_alarms()
        self.error_alarms = self._build_error_alarms()
        self.authorizer_errors_alarm = self._build_authorizer_errors_alarm()
        self.dashboard = self._build_dashboard()

    @property
    def alarms(self) -> list[cw.Alarm]:
        return [
            self.api_5xx_rate_alarm,
            self.api_p99_latency_alarm,
            *self.throttle_alarms.values(),
            *self.error_alarms.values(),
            self.authorizer_errors_alarm,
            *self._capability_alarms,
        ]

    # ------------------------------------------------------------------------------------ alarms

    def _api_5xx_rate(self) -> cw.MathExpression:
        return cw.MathExpression(
            expression="100 * errors / requests",
            using_metrics={
                "errors": self._stage.metric_server_error(statistic="Sum", period=PERIOD),
                "requests": self._stage.metric_count(statistic="Sum", period=PERIOD),
            },
            label="5XX rate (%)",
            period=PERIOD,
        )

    def _build_api_5xx_rate_alarm(self) -> cw.Alarm:
        threshold = self._thresholds.api_5xx_rate_percent
        return alarm(
            self,
            "Api5xxRate",
            self._action,
            name="api-5xx-rate",
            description=f"More than {threshold:g}% of API requests answered 5XX (5XXError / Count).",
            metric=self._api_5xx_rate(),
            threshold=threshold,
            comparison=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
            sustained=True,
        )

    def _build_api_p99_latency_alarm(self) -> cw.Alarm:
        threshold = self._thresholds.api_p99_latency_ms
        return alarm(
            self,
            "ApiP99Latency",
            self._action,
            name="api-p99-latency",
            # Every route: buffered ones end at 29 s, streamed chat completions at the stream timeout
            # (AlarmThresholds.api_p99_latency_ms says why the default stays at 20 s).
            description=f"API p99 latency above {threshold:g} ms: callers of buffered routes (29 s limit) "
            "are close to timing out, or long streams lift the p99 (docs/operations.md).",
            metric=self._stage.metric_latency(statistic="p99", period=PERIOD),
            threshold=threshold,
            comparison=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
            sustained=True,
        )

    def _build_throttle_alarms(self) -> dict[str, cw.Alarm]:
        threshold = self._thresholds.lambda_throttles
        return {
            name: alarm(
                self,
                f"{name.capitalize()}Throttles",
                self._action,
                name=f"{name}-throttles",
                description=f"The {name} function was throttled {threshold} or more times in 5 minutes "
                "(account or reserved concurrency exhausted).",
                metric=fn.metric_throttles(statistic="Sum", period=PERIOD),
                threshold=threshold,
                comparison=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            )
            for name, fn in self._functions.by_name().items()
        }

    def _build_error_alarms(self) -> dict[str, cw.Alarm]:
        threshold = self._thresholds.lambda_errors
        return {
            name: alarm(
                self,
                f"{name.capitalize()}Errors",
                self._action,
                name=f"{name}-errors",
                description=f"The {name} function failed {threshold} or more times in 5 minutes: handled "
                "errors are HTTP answers, so these are crashes or timeouts.",
                metric=fn.metric_errors(statistic="Sum", period=PERIOD),
                threshold=threshold,
                comparison=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            )
            for name, fn in (("admin", self._functions.admin), ("gateway", self._functions.gateway))
        }

    def _build_authorizer_errors_alarm(self) -> cw.Alarm:
        threshold = self._thresholds.authorizer_errors
        return alarm(
            self,
            "AuthorizerErrors",
            self._action,
            name="authorizer-errors",
            description=f"The authorizer failed {threshold} or more times in 5 minutes: API Gateway answers "
            "500 (AUTHORIZER_FAILURE) to every request whose key is not in its cache.",
            metric=self._functions.authorizer.metric_errors(statistic="Sum", period=PERIOD),
            threshold=threshold,
            comparison=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        )

    # --------------------------------------------------------------------------------- dashboard

    def _build_dashboard(self) -> cw.Dashboard:
        dashboard = cw.Dashboard(
            self,
            "Dashboard",
            dashboard_name=f"{name_prefix(self)}operations",
            default_interval=Duration.hours(24),
        )
        dashboard.add_widgets(self._requests_widget(), self._latency_widget(), self._errors_widget())
        dashboard.add_widgets(self._tokens_widget(), self._cost_widget(), self._budget_widget())
        dashboard.add_widgets(
            cw.AlarmStatusWidget(title="Platform alarms", alarms=self.alarms, width=24, height=4)
        )
        return dashboard

    def _requests_widget(self) -> cw.GraphWidget:
        return cw.GraphWidget(
            title="Requests",
            left=[self._stage.metric_count(statistic="Sum", period=PERIOD, label="API requests")],
            width=8,
        )

    def _latency_widget(self) -> cw.GraphWidget:
        return cw.GraphWidget(
            title="API latency (ms)",
            left=[
                self._stage.metric_latency(statistic="p50", period=PERIOD, label="p50"),
                self._stage.metric_latency(statistic="p99", period=PERIOD, label="p99"),
            ],
            left_annotations=[
                cw.HorizontalAnnotation(value=self._thresholds.api_p99_latency_ms, label="p99 alarm")
            ],
            width=8,
        )

    def _errors_widget(self) -> cw.GraphWidget:
        lambda_errors = [
            fn.metric_errors(statistic="Sum", period=PERIOD, label=f"Lambda {name} errors")
            for name, fn in self._functions.by_name().items()
        ]
        provider_errors = cw.MathExpression(
            expression=f"SUM({by_tenant_and_model('ProviderErrors')})",
            label="Provider errors",
            period=PERIOD,
        )
        return cw.GraphWidget(
            title="Errors by source",
            left=[
                self._stage.metric_client_error(statistic="Sum", period=PERIOD, label="API 4XX"),
                self._stage.metric_server_error(statistic="Sum", period=PERIOD, label="API 5XX"),
                *lambda_errors,
                provider_errors,
            ],
            width=8,
        )

    def _tokens_widget(self) -> cw.GraphWidget:
        return cw.GraphWidget(
            title="Tokens",
            left=[
                cw.MathExpression(expression=f"SUM({by_tenant_and_model(name)})", label=label, period=PERIOD)
                for name, label in (("InputTokens", "Input tokens"), ("OutputTokens", "Output tokens"))
            ],
            width=8,
        )

    def _cost_widget(self) -> cw.GraphWidget:
        return cw.GraphWidget(
            title="Cost by tenant and model (USD)",
            left=[cw.MathExpression(expression=by_tenant_and_model("CostUSD"), label="", period=PERIOD)],
            stacked=True,
            width=8,
        )

    def _budget_widget(self) -> cw.GraphWidget:
        return cw.GraphWidget(
            title="Budget used by tenant (%)",
            left=[
                cw.MathExpression(
                    expression=by_tenant("BudgetUsedPercent", "Maximum"), label="", period=PERIOD
                )
            ],
            left_annotations=[cw.HorizontalAnnotation(value=100, label="monthly limit")],
            width=8,
        )
