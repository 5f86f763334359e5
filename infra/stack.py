"""The BYOM Gateway stack: composes the constructs, nothing else."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra import checkov_skips, nag
from infra.config import Settings
from infra.constructs.api import STAGE_NAME, Api
from infra.constructs.automations import Automations
from infra.constructs.batches import Batches
from infra.constructs.data import Data
from infra.constructs.evals import Evals
from infra.constructs.fine_tuning import FineTuning
from infra.constructs.functions import Functions
from infra.constructs.governance import Governance
from infra.constructs.metering import Metering
from infra.constructs.observability import Alerts, MonitoredFunctions, Observability
from infra.constructs.security import Security


class ByomGatewayStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, **kwargs: Any) -> None:
        super().__init__(
            scope,
            construct_id,
            description="BYOM Gateway: serverless OpenAI-compatible LLM gateway",
            **kwargs,
        )
        settings = Settings.from_context(self)
        self.security = Security(self, "Security")
        self.data = Data(self, "Data", key=self.security.key)
        self.alerts = Alerts(self, "Alerts", key=self.security.key)
        self.functions = Functions(
            self,
            "Functions",
            settings=settings,
            key=self.security.key,
            admin_key_secret=self.security.admin_key_secret,
            data=self.data,
            alerts_topic=self.alerts.topic,
        )
        self.governance = Governance(
            self,
            "Governance",
            key=self.security.key,
            data=self.data,
            trusted=[_role(self.functions.admin), _role(self.functions.gateway)],
        )
        self.functions.grant_tenant_scope(self.governance.tenant_data_role)
        self.metering = Metering(
            self,
            "Metering",
            key=self.security.key,
            data=self.data,
            functions=self.functions,
            alerts_topic=self.alerts.topic,
        )
        self.metering.allow_deferral(self.functions.gateway)
        self.fine_tuning = FineTuning(
            self,
            "FineTuning",
            settings=settings,
            key=self.security.key,
            data=self.data,
            functions=self.functions,
        )
        self.batches = Batches(
            self,
            "Batches",
            settings=settings,
            key=self.security.key,
            data=self.data,
            functions=self.functions,
        )
        self.automations = Automations(
            self,
            "Automations",
            settings=settings,
            key=self.security.key,
            data=self.data,
            functions=self.functions,
            alerts_topic=self.alerts.topic,
        )
        self.metering.allow_deferral(self.automations.runner)
        self.evals = Evals(
            self,
            "Evals",
            settings=settings,
            key=self.security.key,
            data=self.data,
            functions=self.functions,
            batches=self.batches,
            alerts_topic=self.alerts.topic,
        )
        self.api = Api(
            self,
            "Api",
            settings=settings,
            key=self.security.key,
            authorizer_function=self.functions.authorizer_target,
            admin_function=self.functions.admin,
            gateway_function=self.functions.gateway_target,
            fine_tuning_function=self.fine_tuning.api_function,
            evals_function=self.evals.api_function,
            batches_function=self.batches.api_function,
        )
        self.functions.connect_usage_plans(
            self.api.rest_api.rest_api_id, STAGE_NAME, self.api.platform_usage_key
        )
        self.observability = Observability(
            self,
            "Observability",
            thresholds=settings.alarms,
            topic=self.alerts.topic,
            stage=self.api.rest_api.deployment_stage,
            functions=MonitoredFunctions(
                authorizer=self.functions.authorizer,
                admin=self.functions.admin,
                gateway=self.functions.gateway,
            ),
            capability_alarms=[self.automations.dlq_alarm, self.evals.dlq_alarm, self.metering.dlq_alarm],
        )
        CfnOutput(self, "ApiUrl", value=self.api.rest_api.url, description="Base URL of the API (stage prod)")
        CfnOutput(
            self,
            "AdminKeySecretArn",
            value=self.security.admin_key_secret.secret_arn,
            description="Secrets Manager secret holding the platform admin key",
        )
        nag.acknowledge_findings(self)
        checkov_skips.skip_findings(self)


def _role(fn: lambda_.Function) -> iam.IRole:
    if fn.role is None:
        raise ValueError("every function is created with its own role")
    return fn.role
