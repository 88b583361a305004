"""Operating the stack: the API stage's access log and throttle, alarms, an SNS topic, a dashboard.

Alarms (5-minute periods, missing data is not breaching):
- `ApiServerErrorRate`: API 5xx answers over `error_rate_percent` of requests (at least 20
  requests in the period, so one failure at night does not page anyone);
- `BatchServerErrorRate`: the same for the batch Function URL;
- `<Function>Throttles`: any throttled invoke (reserved concurrency or the stage throttle reached);
- `<Function>DurationNearTimeout`: the slowest invoke reached `duration_fraction` of the timeout;
- `TableThrottles`: any DynamoDB read or write throttle event (DynamoDB store only).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_apigatewayv2 as apigw
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from cdk.props import MonitoringProps
from cdk.security import NO_CMK_LOGS, skip_checkov

PERIOD = Duration.minutes(5)
MIN_REQUESTS = 20
# API Gateway `$context` variables of one access log line (JSON, one object per request).
ACCESS_LOG_FORMAT = {
    "requestId": "$context.requestId",
    "requestTime": "$context.requestTime",
    "ip": "$context.identity.sourceIp",
    "method": "$context.httpMethod",
    "path": "$context.path",
    "routeKey": "$context.routeKey",
    "status": "$context.status",
    "protocol": "$context.protocol",
    "responseLength": "$context.responseLength",
    "responseLatency": "$context.responseLatency",
    "integrationLatency": "$context.integrationLatency",
    "integrationStatus": "$context.integrationStatus",
    "integrationError": "$context.integrationErrorMessage",
    "userAgent": "$context.identity.userAgent",
    "caller": "$context.identity.caller",
}


def configure_stage(
    api: apigw.HttpApi, log_group: logs.ILogGroup, rate_limit: int, burst_limit: int
) -> None:
    """JSON access log and a stage-wide throttle on the API's default stage."""
    stage = api.default_stage.node.default_child  # CfnStage: the L2 stage exposes neither
    stage.access_log_settings = apigw.CfnStage.AccessLogSettingsProperty(
        destination_arn=log_group.log_group_arn,
        format=json.dumps(ACCESS_LOG_FORMAT, separators=(",", ":")),
    )
    stage.default_route_settings = apigw.CfnStage.RouteSettingsProperty(
        throttling_rate_limit=rate_limit, throttling_burst_limit=burst_limit
    )


class TilerMonitoring(Construct):
    """Alarms on the API, the functions and the table, their topic, and a dashboard."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        props: MonitoringProps,
        api: apigw.HttpApi,
        functions: dict[str, lambda_.Function],
        timeouts: dict[str, int],
        batch: lambda_.Function,
        table: dynamodb.Table | None,
        distribution: cloudfront.Distribution | None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.props = props
        self.topic = self._topic(props)
        self.alarms: list[cloudwatch.Alarm] = []

        requests = api.metric_count(period=PERIOD, statistic="Sum")
        errors = api.metric_server_error(period=PERIOD, statistic="Sum")
        self._rate_alarm("ApiServerErrorRate", "API 5xx answers", errors, requests)
        batch_requests = batch.metric("UrlRequestCount", period=PERIOD, statistic="Sum")
        batch_errors = batch.metric("Url5xxCount", period=PERIOD, statistic="Sum")
        self._rate_alarm("BatchServerErrorRate", "Batch URL 5xx", batch_errors, batch_requests)
        for name, function in functions.items():
            self._alarm(
                f"{name}Throttles",
                f"{name} function throttled (reserved concurrency or stage throttle reached)",
                function.metric_throttles(period=PERIOD, statistic="Sum"),
                threshold=0,
            )
            timeout_ms = timeouts[name] * 1000
            self._alarm(
                f"{name}DurationNearTimeout",
                f"{name} invokes reach {props.duration_fraction:.0%} of the {timeouts[name]} s "
                "timeout",
                function.metric_duration(period=PERIOD, statistic="Maximum"),
                threshold=round(timeout_ms * props.duration_fraction),
                comparison=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            )
        if table is not None:
            throttles = cloudwatch.MathExpression(
                expression="FILL(r, 0) + FILL(w, 0)",
                using_metrics={
                    "r": table.metric("ReadThrottleEvents", period=PERIOD, statistic="Sum"),
                    "w": table.metric("WriteThrottleEvents", period=PERIOD, statistic="Sum"),
                },
                label="DynamoDB throttle events",
                period=PERIOD,
            )
            self._alarm("TableThrottles", "DynamoDB mosaic table throttled", throttles, 0)

        if props.dashboard:
            self.dashboard = self._dashboard(api, functions, table, distribution)

    def _topic(self, props: MonitoringProps) -> sns.ITopic | None:
        if props.alarm_topic_arn:
            return sns.Topic.from_topic_arn(self, "AlarmTopic", props.alarm_topic_arn)
        if not props.alarm_email:
            return None
        topic = sns.Topic(self, "AlarmTopic", display_name="Mosaic tiler alarms")
        topic.add_subscription(subscriptions.EmailSubscription(props.alarm_email))
        topic.apply_removal_policy(RemovalPolicy.DESTROY)
        skip_checkov(
            topic,
            {
                "CKV_AWS_26": "CloudWatch cannot publish to a topic encrypted with the "
                "AWS-managed aws/sns key, a customer key costs $1/month; alarm messages carry "
                "no secrets. Pass alarm_topic_arn to use an encrypted topic of your own."
            },
        )
        return topic

    def _rate_alarm(
        self, name: str, what: str, errors: cloudwatch.Metric, requests: cloudwatch.Metric
    ) -> None:
        rate = cloudwatch.MathExpression(
            expression=f"IF(requests >= {MIN_REQUESTS}, 100 * FILL(errors, 0) / requests, 0)",
            using_metrics={"errors": errors, "requests": requests},
            label=f"{what} (% of requests)",
            period=PERIOD,
        )
        self._alarm(
            name,
            f"{what} over {self.props.error_rate_percent}% of requests",
            rate,
            self.props.error_rate_percent,
        )

    def _alarm(
        self,
        name: str,
        description: str,
        metric: cloudwatch.IMetric,
        threshold: float,
        comparison: cloudwatch.ComparisonOperator = (
            cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD
        ),
    ) -> None:
        alarm = cloudwatch.Alarm(
            self,
            name,
            alarm_description=description,
            metric=metric,
            threshold=threshold,
            comparison_operator=comparison,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        if self.topic is not None:
            alarm.add_alarm_action(actions.SnsAction(self.topic))
            alarm.add_ok_action(actions.SnsAction(self.topic))
        self.alarms.append(alarm)

    def _dashboard(
        self,
        api: apigw.HttpApi,
        functions: dict[str, lambda_.Function],
        table: dynamodb.Table | None,
        distribution: cloudfront.Distribution | None,
    ) -> cloudwatch.Dashboard:
        dashboard = cloudwatch.Dashboard(self, "Dashboard", default_interval=Duration.hours(3))
        per_function = list(functions.items())
        dashboard.add_widgets(
            _graph(
                "API requests and errors",
                [
                    api.metric_count(period=PERIOD, statistic="Sum", label="requests"),
                    api.metric_client_error(period=PERIOD, statistic="Sum", label="4xx"),
                    api.metric_server_error(period=PERIOD, statistic="Sum", label="5xx"),
                ],
            ),
            _graph(
                "API latency (ms)",
                [
                    api.metric_latency(period=PERIOD, statistic="p50", label="p50"),
                    api.metric_latency(period=PERIOD, statistic="p99", label="p99"),
                    api.metric_integration_latency(
                        period=PERIOD, statistic="p99", label="integration p99"
                    ),
                ],
            ),
            cloudwatch.AlarmStatusWidget(title="Alarms", alarms=self.alarms, width=8, height=6),
        )
        dashboard.add_widgets(
            _graph(
                "Invocations",
                [f.metric_invocations(period=PERIOD, label=n) for n, f in per_function],
            ),
            _graph(
                "Errors and throttles",
                [f.metric_errors(period=PERIOD, label=f"{n} errors") for n, f in per_function]
                + [
                    f.metric_throttles(period=PERIOD, label=f"{n} throttles")
                    for n, f in per_function
                ],
            ),
            _graph(
                "Duration p99 (ms)",
                [
                    f.metric_duration(period=PERIOD, statistic="p99", label=n)
                    for n, f in per_function
                ],
            ),
        )
        row: list[cloudwatch.IWidget] = [
            _graph(
                "Concurrent executions (max)",
                [
                    f.metric("ConcurrentExecutions", period=PERIOD, statistic="Maximum", label=n)
                    for n, f in per_function
                ],
            )
        ]
        if table is not None:
            row.append(
                _graph(
                    "DynamoDB capacity and throttles",
                    [
                        table.metric_consumed_read_capacity_units(period=PERIOD, label="RCU"),
                        table.metric_consumed_write_capacity_units(period=PERIOD, label="WCU"),
                        table.metric("ReadThrottleEvents", period=PERIOD, statistic="Sum"),
                        table.metric("WriteThrottleEvents", period=PERIOD, statistic="Sum"),
                    ],
                )
            )
        if distribution is not None:
            row.append(
                _graph(
                    "CDN requests and error rates",
                    [
                        _cdn_metric(distribution, "Requests", "Sum"),
                        _cdn_metric(distribution, "4xxErrorRate", "Average"),
                        _cdn_metric(distribution, "5xxErrorRate", "Average"),
                    ],
                )
            )
        dashboard.add_widgets(*row)
        return dashboard


def _cdn_metric(
    distribution: cloudfront.Distribution, name: str, statistic: str
) -> cloudwatch.Metric:
    """A CloudFront metric: published in us-east-1 with the dimension Region=Global."""
    return cloudwatch.Metric(
        namespace="AWS/CloudFront",
        metric_name=name,
        dimensions_map={"DistributionId": distribution.distribution_id, "Region": "Global"},
        region="us-east-1",
        statistic=statistic,
        period=PERIOD,
    )


def _graph(title: str, metrics: Sequence[cloudwatch.IMetric]) -> cloudwatch.GraphWidget:
    return cloudwatch.GraphWidget(title=title, left=list(metrics), width=8, height=6)


def access_log_group(scope: Construct, retention: logs.RetentionDays) -> logs.LogGroup:
    """The API stage's access log group (retention like the functions')."""
    group = logs.LogGroup(
        scope, "ApiAccessLogs", retention=retention, removal_policy=RemovalPolicy.DESTROY
    )
    skip_checkov(group, {"CKV_AWS_158": NO_CMK_LOGS})
    return group
