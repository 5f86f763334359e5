"""The REST API: routes, the REQUEST authorizer, the stage and the OpenAI-shaped gateway responses."""

from __future__ import annotations

import json
from dataclasses import dataclass

from aws_cdk import Aws, Duration, Fn, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from infra.config import Settings

STAGE_NAME = "prod"
AUTHORIZATION_HEADER = "Authorization"
# A throttled caller may retry after this many seconds (THROTTLED's `retry-after`). A gateway
# response header is a static string or a request/context value, and no context variable holds
# the plan's rate, so one value serves every plan: 1 s is when the stage's per-second bucket, and
# that of any plan of 60 requests per minute or more (byom.governance.rate_limits), has a token
# again. A plan under 60 per minute refills more slowly; a client retrying after 1 s may be
# throttled again, and gives up after its retries rather than waiting a minute.
RETRY_AFTER_SECONDS = 1

# Lambda tenant isolation: API Gateway names the tenant in the Invoke call's X-Amz-Tenant-Id header.
TENANT_ID_HEADER = "integration.request.header.X-Amz-Tenant-Id"
AUTHORIZER_TENANT_ID = "context.authorizer.tenant_id"
# GET /health has no authorizer and no tenant: its calls share one execution environment.
HEALTH_TENANT_ID = "'health'"
# The documentation routes, served by the gateway function (byom.api.openapi).
DOCS_PATHS = ("openapi.json", "docs")
# The route whose answers may outlive API Gateway's 29 s (SPEC §4.4): its own resource, with the
# stream timeout as its integration timeout. Every other gateway route keeps the 29 s default.
CHAT_COMPLETIONS_PATH = ("chat", "completions")
RESPONSES_PATH = ("responses",)
F = apigw.AccessLogField

# Never $context.requestOverride / bodies / the Authorization header: bodies carry provider keys.
ACCESS_LOG_FIELDS = {
    "requestId": F.context_request_id(),
    "extendedRequestId": F.context_extended_request_id(),
    "requestTime": F.context_request_time(),
    "ip": F.context_identity_source_ip(),
    "userAgent": F.context_identity_user_agent(),
    "method": F.context_http_method(),
    "path": F.context_path(),
    "resourcePath": F.context_resource_path(),
    "protocol": F.context_protocol(),
    "status": F.context_status(),
    "responseLength": F.context_response_length(),
    "latencyMs": F.context_response_latency(),
    "integrationLatencyMs": F.context_integration_latency(),
    "integrationStatus": F.context_integration_status(),
    "integrationError": F.context_integration_error_message(),
    "authorizerError": F.context_authorizer_error(),
    "authorizerLatencyMs": F.context_authorizer_latency(),
    "principalId": F.context_authorizer_principal_id(),
    "tenantId": F.context_authorizer("tenant_id"),
    "errorType": F.context_error_response_type(),
    "errorMessage": F.context_error_message(),
    "xrayTraceId": F.context_xray_trace_id(),
}


@dataclass(frozen=True)
class ErrorResponse:
    """One API Gateway-generated error, rendered as OpenAI's error envelope."""

    response_type: apigw.ResponseType
    status_code: str | None  # None keeps API Gateway's own status (the DEFAULT_* families)
    type: str
    code: str | None = None
    message: str | None = None  # a clearer fixed text than API Gateway's own, where it misleads
    headers: tuple[tuple[str, str], ...] = ()  # besides ERROR_RESPONSE_HEADERS

    def template(self) -> str:
        code = json.dumps(self.code)
        # $context.error.messageString is already a quoted JSON string.
        message = json.dumps(self.message) if self.message else "$context.error.messageString"
        return f'{{"error":{{"message":{message},"type":"{self.type}","param":null,"code":{code}}}}}'


ERROR_RESPONSES = [
    ErrorResponse(
        apigw.ResponseType.UNAUTHORIZED,
        "401",
        "authentication_error",
        "invalid_api_key",
        "Missing, unknown or revoked API key; send 'Authorization: Bearer <key>'",
    ),
    ErrorResponse(apigw.ResponseType.ACCESS_DENIED, "403", "permission_error"),
    # API Gateway's answer for a route that does not exist; its own text ("Missing Authentication
    # Token") sends people hunting for a key problem.
    ErrorResponse(
        apigw.ResponseType.MISSING_AUTHENTICATION_TOKEN, "404", "not_found_error", None, "Unknown route"
    ),
    # The stage's throttle and the per-key usage plans (SPEC §8).
    ErrorResponse(
        apigw.ResponseType.THROTTLED,
        "429",
        "rate_limit_exceeded",
        "rate_limit_exceeded",
        headers=(("retry-after", f"'{RETRY_AFTER_SECONDS}'"),),
    ),
    # The authorizer named no API key of a usage plan of the stage: a key created before usage
    # plans, or one whose API key was removed by hand. Not the caller's doing.
    ErrorResponse(
        apigw.ResponseType.INVALID_API_KEY,
        "403",
        "permission_error",
        None,
        "This API key has no usage plan; ask the platform admin to issue a new key",
    ),
    ErrorResponse(apigw.ResponseType.REQUEST_TOO_LARGE, "413", "invalid_request_error", "request_too_large"),
    ErrorResponse(apigw.ResponseType.BAD_REQUEST_BODY, "400", "invalid_request_error"),
    ErrorResponse(apigw.ResponseType.BAD_REQUEST_PARAMETERS, "400", "invalid_request_error"),
    ErrorResponse(apigw.ResponseType.AUTHORIZER_FAILURE, "500", "api_error"),
    ErrorResponse(apigw.ResponseType.AUTHORIZER_CONFIGURATION_ERROR, "500", "api_error"),
    ErrorResponse(apigw.ResponseType.INTEGRATION_TIMEOUT, "504", "api_error", "timeout"),
    ErrorResponse(apigw.ResponseType.DEFAULT_4_XX, None, "invalid_request_error"),
    ErrorResponse(apigw.ResponseType.DEFAULT_5_XX, None, "api_error"),
]

ERROR_RESPONSE_HEADERS = {
    "x-request-id": "context.requestId",
    "x-byom-error-source": "'gateway'",
}


def platform_usage_key(scope: Construct) -> str:
    """The API key value of the platform admin's usage plan: derived from the stack's id, unique
    per stack (API key values must be unique in a region) and alphanumeric, as API Gateway wants.
    No secret: with the key source AUTHORIZER, API Gateway reads usage keys from the authorizer's
    answer only, so the value grants nothing to anyone who reads it here."""
    stack_uuid = Fn.select(2, Fn.split("/", Aws.STACK_ID))
    return Fn.join("", ["byomplatformadmin", Fn.join("", Fn.split("-", stack_uuid))])


class Api(Construct):
    """`GET /health` is public; `/admin/{proxy+}`, `/v1/{proxy+}`, `POST /v1/chat/completions`,
    `/v1/responses`, `GET /openapi.json` and `GET /docs` go through the authorizer.

    The gateway function runs the Lambda Web Adapter in response-stream mode, which Lambda invokes
    with InvokeWithResponseStream only: each of its integrations is STREAM. The admin and
    fine-tuning functions are ordinary handlers and stay BUFFERED.

    Every authorized method requires an API key, which the authorizer names (`usageIdentifierKey`,
    the API's key source AUTHORIZER): its usage plan throttles it. Tenant keys have their tenant's
    plan, created at runtime by the admin function (byom.dal.usage_plans); the platform admin has
    the stack's platform plan, with no throttle of its own (the stage's applies).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        key: kms.IKey,
        authorizer_function: lambda_.IFunction,
        admin_function: lambda_.IFunction,
        gateway_function: lambda_.IFunction,
        fine_tuning_function: lambda_.IFunction,
        evals_function: lambda_.IFunction,
        batches_function: lambda_.IFunction,
    ) -> None:
        super().__init__(scope, construct_id)
        self._settings = settings
        self.access_logs = self._build_access_logs(key)
        self.rest_api = self._build_rest_api()
        self.validator = self._build_request_validator()
        self.authorizer = self._build_authorizer(authorizer_function)
        self.health_method, self.admin_method, self.v1_method = self._build_routes(
            admin_function, gateway_function
        )
        self.chat_method = self._build_stream_route(gateway_function, CHAT_COMPLETIONS_PATH)
        self.responses_method = self._build_stream_route(gateway_function, RESPONSES_PATH)
        self.stored_responses_method = self._build_stored_responses_route(gateway_function)
        self.fine_tuning_methods = self._build_fine_tuning_routes(fine_tuning_function)
        self.evals_methods = self._build_evals_routes(evals_function)
        self.batches_methods = self._build_batches_routes(batches_function)
        self.docs_methods = self._build_docs_routes(gateway_function)
        self.platform_usage_key = platform_usage_key(self)
        self.platform_usage_plan = self._build_platform_usage_plan()
        self._build_error_responses()
        self.web_acl_association = self._build_web_acl_association()

    def _build_access_logs(self, key: kms.IKey) -> logs.LogGroup:
        return logs.LogGroup(self, "AccessLogs", retention=self._settings.log_retention, encryption_key=key)

    def _build_rest_api(self) -> apigw.RestApi:
        rest_api = apigw.RestApi(
            self,
            "RestApi",
            # The ApiName dimension of the API's metrics, which the alarms and the dashboard select on.
            rest_api_name=f"byom-{Stack.of(self).stack_name}",
            description="BYOM Gateway: OpenAI-compatible API",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            # Multipart uploads (POST /v1/files) must reach Lambda base64-encoded, byte for byte.
            binary_media_types=["multipart/form-data"],
            # Usage plans identify callers by the key the authorizer names, never by a header:
            # clients send only their BYOM key.
            api_key_source_type=apigw.ApiKeySourceType.AUTHORIZER,
            # Execution logging needs the account-level CloudWatch role.
            cloud_watch_role=True,
            deploy_options=apigw.StageOptions(
                stage_name=STAGE_NAME,
                access_log_destination=apigw.LogGroupLogDestination(self.access_logs),
                access_log_format=apigw.AccessLogFormat.custom(json.dumps(ACCESS_LOG_FIELDS)),
                # ERROR only and no data trace: request and response bodies contain provider keys.
                logging_level=apigw.MethodLoggingLevel.ERROR,
                data_trace_enabled=False,
                metrics_enabled=True,
                tracing_enabled=True,
                throttling_rate_limit=self._settings.throttle_rate_limit,
                throttling_burst_limit=self._settings.throttle_burst_limit,
            ),
        )
        # The stack outputs the URL as `ApiUrl`; CDK's auto-named duplicate output would only confuse.
        rest_api.node.try_remove_child("Endpoint")
        return rest_api

    def _build_request_validator(self) -> apigw.RequestValidator:
        return self.rest_api.add_request_validator(
            "RequestValidator",
            validate_request_body=True,
            validate_request_parameters=True,
        )

    def _build_authorizer(self, handler: lambda_.IFunction) -> apigw.RequestAuthorizer:
        return apigw.RequestAuthorizer(
            self,
            "Authorizer",
            handler=handler,
            identity_sources=[apigw.IdentitySource.header(AUTHORIZATION_HEADER)],
            results_cache_ttl=Duration.seconds(self._settings.authorizer_cache_seconds),
        )

    def _build_routes(
        self, admin_function: lambda_.IFunction, gateway_function: lambda_.IFunction
    ) -> tuple[apigw.Method, apigw.Method, apigw.Method]:
        root = self.rest_api.root
        # allow_test_invoke=False: no extra Lambda permission for the console's test-invoke stage.
        gateway = self._gateway_integration(gateway_function, AUTHORIZER_TENANT_ID)
        admin = apigw.LambdaIntegration(admin_function, proxy=True, allow_test_invoke=False)
        health = root.add_resource("health").add_method(
            "GET",
            self._gateway_integration(gateway_function, HEALTH_TENANT_ID),
            authorization_type=apigw.AuthorizationType.NONE,
            request_validator=self.validator,
        )
        return (
            health,
            self._add_protected_proxy(root.add_resource("admin"), admin),
            self._add_protected_proxy(root.add_resource("v1"), gateway),
        )

    def _build_stream_route(self, gateway_function: lambda_.IFunction, path: tuple[str, ...]) -> apigw.Method:
        """`POST /v1/<path>` with the stream timeout: API Gateway prefers this resource to /v1/{proxy+}."""
        v1 = self.rest_api.root.get_resource("v1")
        assert v1 is not None
        resource = v1
        for part in path:
            resource = resource.get_resource(part) or resource.add_resource(part)
        integration = self._gateway_integration(
            gateway_function,
            AUTHORIZER_TENANT_ID,
            # With STREAM, API Gateway accepts up to 15 minutes here without a quota increase.
            timeout=Duration.seconds(self._settings.stream_timeout_seconds),
        )
        return self._add_protected(resource, integration, "POST")

    def _build_stored_responses_route(self, gateway_function: lambda_.IFunction) -> apigw.Method:
        """`/v1/responses/{id}` and below (retrieve, delete, input items): quick reads, 29 s."""
        responses = self.rest_api.root.resource_for_path("/v1/responses")
        return self._add_protected_proxy(
            responses, self._gateway_integration(gateway_function, AUTHORIZER_TENANT_ID)
        )

    def _build_docs_routes(self, gateway_function: lambda_.IFunction) -> list[apigw.Method]:
        """`GET /openapi.json` and `GET /docs` (SPEC §4.3): the API's description is for callers
        holding a key, so behind the authorizer like every route but /health; none with
        `byom:apiDocs` off."""
        if not self._settings.api_docs:
            return []
        integration = self._gateway_integration(gateway_function, AUTHORIZER_TENANT_ID)
        root = self.rest_api.root
        return [self._add_protected(root.add_resource(part), integration, "GET") for part in DOCS_PATHS]

    def _gateway_integration(
        self, function: lambda_.IFunction, tenant_id: str, *, timeout: Duration | None = None
    ) -> apigw.LambdaIntegration:
        """STREAM (the adapter answers InvokeWithResponseStream only); `timeout` None keeps 29 s.
        With tenant isolation on, every invocation must name its tenant (Lambda refuses it otherwise)."""
        parameters = {TENANT_ID_HEADER: tenant_id} if self._settings.tenant_isolation else None
        return apigw.LambdaIntegration(
            function,
            proxy=True,
            allow_test_invoke=False,
            request_parameters=parameters,
            response_transfer_mode=apigw.ResponseTransferMode.STREAM,
            timeout=timeout,
        )

    def _build_fine_tuning_routes(self, function: lambda_.IFunction) -> list[apigw.Method]:
        """/v1/files and /v1/fine_tuning/* go to their own function (own role: the bucket, the state
        machine); API Gateway prefers these resources to /v1/{proxy+}."""
        integration = apigw.LambdaIntegration(function, proxy=True, allow_test_invoke=False)
        v1 = self.rest_api.root.get_resource("v1")
        assert v1 is not None
        files = v1.add_resource("files")
        fine_tuning = v1.add_resource("fine_tuning")
        return [
            self._add_protected(files, integration),
            self._add_protected_proxy(files, integration),
            self._add_protected_proxy(fine_tuning, integration),
        ]

    def _build_evals_routes(self, function: lambda_.IFunction) -> list[apigw.Method]:
        """/v1/evals and below go to the evals function (SPEC §10); BUFFERED, 29 s."""
        integration = apigw.LambdaIntegration(function, proxy=True, allow_test_invoke=False)
        v1 = self.rest_api.root.get_resource("v1")
        assert v1 is not None
        evals = v1.add_resource("evals")
        return [self._add_protected(evals, integration), self._add_protected_proxy(evals, integration)]

    def _build_batches_routes(self, function: lambda_.IFunction) -> list[apigw.Method]:
        """/v1/batches and below go to their own function (own role: the batches table, the state machine)."""
        integration = apigw.LambdaIntegration(function, proxy=True, allow_test_invoke=False)
        v1 = self.rest_api.root.get_resource("v1")
        assert v1 is not None
        batches = v1.add_resource("batches")
        return [self._add_protected(batches, integration), self._add_protected_proxy(batches, integration)]

    def _add_protected(
        self, resource: apigw.IResource, integration: apigw.Integration, http_method: str = "ANY"
    ) -> apigw.Method:
        return resource.add_method(
            http_method,
            integration,
            authorizer=self.authorizer,
            authorization_type=apigw.AuthorizationType.CUSTOM,
            api_key_required=True,
            request_validator=self.validator,
        )

    def _add_protected_proxy(self, parent: apigw.Resource, integration: apigw.Integration) -> apigw.Method:
        return parent.add_resource("{proxy+}").add_method(
            "ANY",
            integration,
            authorizer=self.authorizer,
            authorization_type=apigw.AuthorizationType.CUSTOM,
            api_key_required=True,
            request_validator=self.validator,
        )

    def _build_platform_usage_plan(self) -> apigw.UsagePlan:
        key = self.rest_api.add_api_key(
            "PlatformUsageKey",
            description="Usage identifier of the platform admin (named by the authorizer; not a credential)",
            value=self.platform_usage_key,
        )
        plan = self.rest_api.add_usage_plan(
            "PlatformUsagePlan",
            description="The platform admin: no throttle of its own, the stage's applies",
            api_stages=[apigw.UsagePlanPerApiStage(api=self.rest_api, stage=self.rest_api.deployment_stage)],
        )
        plan.add_api_key(key)
        return plan

    def _build_error_responses(self) -> None:
        for response in ERROR_RESPONSES:
            self.rest_api.add_gateway_response(
                response.response_type.response_type,
                type=response.response_type,
                status_code=response.status_code,
                response_headers=ERROR_RESPONSE_HEADERS | dict(response.headers),
                templates={"application/json": response.template()},
            )

    def _build_web_acl_association(self) -> wafv2.CfnWebACLAssociation | None:
        # Organisations usually own their web ACLs (Firewall Manager); attach one when given.
        if not self._settings.web_acl_arn:
            return None
        return wafv2.CfnWebACLAssociation(
            self,
            "WebAclAssociation",
            resource_arn=self.rest_api.deployment_stage.stage_arn,
            web_acl_arn=self._settings.web_acl_arn,
        )
