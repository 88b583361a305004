"""The stack's operations (`cdk/monitoring.py`): the stage's JSON access log and throttle,
alarms and their notifications, the dashboard. Template assertions on the variants of
`tests/cdk_support.py`."""

import json

from aws_cdk.assertions import Template

from tests.cdk_support import TOPIC, logical_id, template


def test_stage_access_log_and_throttle():
    default = template("Default")
    (stage,) = default.find_resources("AWS::ApiGatewayV2::Stage").values()
    props = stage["Properties"]
    log_group = logical_id(default, "AWS::Logs::LogGroup", "ApiAccessLogs")
    assert props["AccessLogSettings"]["DestinationArn"] == {"Fn::GetAtt": [log_group, "Arn"]}
    line = json.loads(props["AccessLogSettings"]["Format"])
    assert line["requestId"] == "$context.requestId"
    assert line["status"] == "$context.status"
    assert line["responseLatency"] == "$context.responseLatency"
    assert props["DefaultRouteSettings"] == {
        "ThrottlingBurstLimit": 400,
        "ThrottlingRateLimit": 200,
    }


def _alarms(tpl: Template) -> dict[str, dict]:
    return {
        name: a["Properties"] for name, a in tpl.find_resources("AWS::CloudWatch::Alarm").items()
    }


def _alarm(tpl: Template, prefix: str) -> dict:
    (props,) = [p for name, p in _alarms(tpl).items() if name.startswith(prefix)]
    return props


def test_alarms():
    default, s3_stac = template("Default"), template("S3Stac")
    names = sorted(n.removeprefix("Monitoring")[:-8] for n in _alarms(default))
    assert names == sorted(
        [
            "ApiServerErrorRate",
            "BatchServerErrorRate",
            "TilerThrottles",
            "WriterThrottles",
            "BatchThrottles",
            "TilerDurationNearTimeout",
            "WriterDurationNearTimeout",
            "BatchDurationNearTimeout",
            "TableThrottles",
        ]
    )
    # No table, no table alarm.
    assert not [n for n in _alarms(s3_stac) if "TableThrottles" in n]

    rate = _alarm(default, "MonitoringApiServerErrorRate")
    assert rate["Threshold"] == 5 and rate["ComparisonOperator"] == "GreaterThanThreshold"
    (expression,) = [m for m in rate["Metrics"] if "Expression" in m]
    assert "requests >= 20" in expression["Expression"]
    metrics = {m["Id"]: m["MetricStat"]["Metric"] for m in rate["Metrics"] if "MetricStat" in m}
    assert (metrics["errors"]["MetricName"], metrics["requests"]["MetricName"]) == ("5xx", "Count")
    assert metrics["errors"]["Namespace"] == "AWS/ApiGateway"

    tiler = _alarm(default, "MonitoringTilerDurationNearTimeout")
    batch = _alarm(default, "MonitoringBatchDurationNearTimeout")
    assert (tiler["Threshold"], batch["Threshold"]) == (26_100, 810_000)
    assert tiler["Statistic"] == "Maximum" and tiler["MetricName"] == "Duration"
    throttles = _alarm(default, "MonitoringTilerThrottles")
    assert (throttles["MetricName"], throttles["Threshold"]) == ("Throttles", 0)
    table = _alarm(default, "MonitoringTableThrottles")
    names = {m["MetricStat"]["Metric"]["MetricName"] for m in table["Metrics"] if "MetricStat" in m}
    assert names == {"ReadThrottleEvents", "WriteThrottleEvents"}
    for alarm in _alarms(default).values():
        assert alarm["TreatMissingData"] == "notBreaching"
        assert "AlarmActions" not in alarm  # no topic configured


def test_alarm_topic_created_or_existing():
    s3_stac, existing = template("S3Stac"), template("Existing")
    s3_stac.has_resource_properties(
        "AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": "ops@example.org"}
    )
    topic = logical_id(s3_stac, "AWS::SNS::Topic", "MonitoringAlarmTopic")
    for alarm in _alarms(s3_stac).values():
        assert alarm["AlarmActions"] == [{"Ref": topic}]
        assert alarm["OKActions"] == [{"Ref": topic}]
    existing.resource_count_is("AWS::SNS::Topic", 0)
    for alarm in _alarms(existing).values():
        assert alarm["AlarmActions"] == [TOPIC]


def test_dashboard():
    default, existing = template("Default"), template("Existing")
    (dashboard,) = default.find_resources("AWS::CloudWatch::Dashboard").values()
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    for text in ("API requests and errors", "Duration p99", "DynamoDB", "CDN requests"):
        assert text in body
    # CloudFront's metrics exist only in us-east-1 with Region=Global beside the distribution.
    assert '\\"Region\\",\\"Global\\",{\\"region\\":\\"us-east-1\\"' in body
    existing.resource_count_is("AWS::CloudWatch::Dashboard", 0)
