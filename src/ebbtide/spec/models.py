"""The `InferenceEndpoint` resource: typed, frozen, one docstring per field.

Field names and defaults follow Kubernetes where Kubernetes defines them (autoscaling/v2
`metrics` and `behavior`, core/v1 `resources`). A field left unset means "the default of the
scaling profile in force" (`ebbtide.autoscaler`), which for the `kubernetes` profile is
exactly Kubernetes' default; the field docs say which.

The same models produce the JSON schema (`ebbtide schema`) and the CRD's OpenAPI schema, so
the schema is never written twice.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer

from ebbtide.spec.quantity import QuantityError, parse_quantity

API_GROUP = "mlops.example.com"
API_VERSION = f"{API_GROUP}/v1"
KIND = "InferenceEndpoint"
PLURAL = "inferenceendpoints"
SINGULAR = "inferenceendpoint"
SHORT_NAMES = ("ie",)
DEFAULT_NAMESPACE = "default"
DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DEFAULT_CPU_UTILIZATION = 80
"""The CPU target when none is given, as the HorizontalPodAutoscaler defaults it."""


def _quantity_text(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"{value!r} is not a quantity; use a number or a string like 500m or 1Gi")
    try:
        amount = parse_quantity(value)
    except QuantityError as error:
        raise ValueError(str(error)) from None
    if amount < 0:
        raise ValueError(f"{value!r} is negative; a resource quantity must be zero or more")
    return value if isinstance(value, str) else str(value)


Quantity = Annotated[
    str,
    BeforeValidator(_quantity_text),
    PlainSerializer(lambda text: text, return_type=str),
    Field(
        json_schema_extra={"x-kubernetes-int-or-string": True},
        description="A Kubernetes quantity such as 500m, 1, 1.5, 512Mi or 1Gi.",
    ),
]


class Frozen(BaseModel):
    """Base of every spec model: immutable, unknown fields rejected, camelCase on the wire."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class ObjectMeta(Frozen):
    """Standard object metadata, as on any Kubernetes object."""

    name: str = Field(
        pattern=DNS1123_LABEL,
        max_length=63,
        description="The endpoint's name: a DNS-1123 label (lowercase letters, digits, '-').",
    )
    namespace: str = Field(
        default=DEFAULT_NAMESPACE,
        pattern=DNS1123_LABEL,
        max_length=63,
        description="The namespace the endpoint lives in.",
    )
    labels: dict[str, str] = Field(default_factory=dict, description="Labels for selection.")
    annotations: dict[str, str] = Field(default_factory=dict, description="Free-form notes.")


class ModelRef(Frozen):
    """Which model to serve: a name and version in the model repository, or an explicit URI."""

    name: str = Field(
        pattern=DNS1123_LABEL,
        max_length=63,
        description="The model's name in the model repository (<repository>/<name>/<version>/).",
    )
    version: str = Field(
        pattern=r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$",
        max_length=63,
        description="The model's version, such as v1.",
    )
    uri: str | None = Field(
        default=None,
        description="Where the model lives when it is not in the repository (file://, s3://, pvc://).",
    )
    format: str | None = Field(
        default=None,
        description="The model's format (sklearn, onnx, python, xgboost, lightgbm, torchscript); "
        "detected from the model file when unset.",
    )


class MetricTarget(Frozen):
    """The value a metric should be held at, as in autoscaling/v2 MetricTarget."""

    type: Literal["Utilization", "AverageValue", "Value"] = Field(
        description="Utilization: percent of the resource request, averaged over replicas; "
        "AverageValue: an amount per replica; Value: a total."
    )
    average_utilization: int | None = Field(
        default=None,
        alias="averageUtilization",
        gt=0,
        description="Target percent of the request, for type Utilization (60 means 60%).",
    )
    average_value: Quantity | None = Field(
        default=None, alias="averageValue", description="Target amount per replica."
    )
    value: Quantity | None = Field(default=None, description="Target total, for type Value.")


class ResourceMetricSource(Frozen):
    """A per-replica resource (cpu or memory), as in autoscaling/v2."""

    name: Literal["cpu", "memory"] = Field(description="The resource: cpu or memory.")
    target: MetricTarget = Field(description="The target value.")


class MetricIdentifier(Frozen):
    """Names a per-replica metric measured by the gateway."""

    name: Literal["concurrency", "requests_per_second"] = Field(
        description="concurrency: requests in flight per replica (Knative's target, Ray Serve's "
        "target_ongoing_requests); requests_per_second: arrivals per second per replica."
    )


class PodsMetricSource(Frozen):
    """A metric averaged over replicas, as autoscaling/v2's Pods metric source."""

    metric: MetricIdentifier = Field(description="Which metric.")
    target: MetricTarget = Field(description="The target, of type AverageValue.")


class MetricSpec(Frozen):
    """One metric to scale on; with several, the largest proposal wins, as in the HPA."""

    type: Literal["Resource", "Pods"] = Field(description="Resource (cpu, memory) or Pods.")
    resource: ResourceMetricSource | None = Field(default=None, description="For type Resource.")
    pods: PodsMetricSource | None = Field(default=None, description="For type Pods.")


class ScalingPolicy(Frozen):
    """At most `value` replicas (Pods) or percent (Percent) of change per `periodSeconds`."""

    type: Literal["Pods", "Percent"] = Field(description="Pods: a count; Percent: of current.")
    value: int = Field(gt=0, description="How much change the policy allows in one period.")
    period_seconds: int = Field(
        alias="periodSeconds",
        gt=0,
        le=1800,
        description="The window over which the change is counted (1 to 1800 seconds).",
    )


class ScalingRules(Frozen):
    """How fast one direction may move, as autoscaling/v2 HPAScalingRules."""

    stabilization_window_seconds: int | None = Field(
        default=None,
        alias="stabilizationWindowSeconds",
        ge=0,
        le=3600,
        description="Use the most conservative recommendation of this many past seconds. "
        "Kubernetes: 0 for scaleUp, 300 for scaleDown.",
    )
    select_policy: Literal["Max", "Min", "Disabled"] | None = Field(
        default=None,
        alias="selectPolicy",
        description="Max: the policy allowing the most change wins; Min: the least; "
        "Disabled: never scale in this direction. Default Max.",
    )
    policies: tuple[ScalingPolicy, ...] | None = Field(
        default=None,
        description="Rate limits. Kubernetes: scaleUp 100% or 4 pods per 15 s (the larger); "
        "scaleDown 100% per 15 s.",
    )
    tolerance: float | None = Field(
        default=None,
        ge=0,
        lt=1,
        description="Ignore a metric ratio this close to 1.0 (Kubernetes: 0.1, i.e. 10%).",
    )


class Behavior(Frozen):
    """Scale-up and scale-down rules, as autoscaling/v2 HorizontalPodAutoscalerBehavior."""

    scale_up: ScalingRules | None = Field(default=None, alias="scaleUp", description="Growing.")
    scale_down: ScalingRules | None = Field(
        default=None, alias="scaleDown", description="Shrinking."
    )


class BurstMode(Frozen):
    """Burst mode, Knative's panic mode: a short window beside the stable one. When the short
    window asks for at least `thresholdPercent` of the ready replicas, scale up at once to what
    it asks for, and do not scale down until the surge has passed through the stable window;
    the scale-down stabilization window then remembers what the surge needed for 30 s (local
    profile; a stabilizationWindowSeconds set under behavior.scaleDown is used instead), as
    bursty traffic tends to burst again."""

    enabled: bool | None = Field(
        default=None,
        description="Turn burst mode on or off. Default: on with the local profile, off with "
        "the kubernetes profile (the HPA has none).",
    )
    window_seconds: float | None = Field(
        default=None,
        alias="windowSeconds",
        gt=0,
        le=60,
        description="The short window, in seconds. Default 0.5 (local profile); with the "
        "kubernetes profile, one sync period.",
    )
    threshold_percent: int | None = Field(
        default=None,
        alias="thresholdPercent",
        ge=110,
        le=1000,
        description="Enter burst mode when the short window asks for this percent of the ready "
        "replicas. Default 200, Knative's panic threshold.",
    )


class ScaleToZero(Frozen):
    """Scale to zero, for `minReplicas: 0`: after an idle period the last replica drains and
    stops; a request arriving at zero is held while a replica starts, then served."""

    idle_seconds: float | None = Field(
        default=None,
        alias="idleSeconds",
        gt=0,
        le=86_400,
        description="Seconds without any request before the last replica stops. Default 30 "
        "(local profile) or 300 (kubernetes profile).",
    )
    hold_timeout_seconds: float = Field(
        default=30.0,
        alias="holdTimeoutSeconds",
        gt=0,
        le=600,
        description="How long the gateway holds a request that arrives at zero replicas while "
        "a replica starts; after that it answers 503 with Retry-After. Default 30.",
    )


class Prediction(Frozen):
    """Predictive scale-up: forecast arrivals from the recent history and provision ahead.
    It only ever adds replicas; it never scales down on a forecast alone."""

    enabled: bool = Field(default=False, description="Turn prediction on. Default off.")
    horizon_seconds: float | None = Field(
        default=None,
        alias="horizonSeconds",
        gt=0,
        le=3600,
        description="How far ahead to forecast: at least one replica start. Default 5 "
        "(local profile) or 60 (kubernetes profile).",
    )
    history_seconds: float | None = Field(
        default=None,
        alias="historySeconds",
        gt=0,
        le=3600,
        description="How much arrival history the forecast fits. Default 60 (local profile) "
        "or 600 (kubernetes profile).",
    )


class LatencyObjective(Frozen):
    """A latency objective, as service-level objectives are written: "99% of requests answered
    within 200 ms" is `{percentile: 99, latencyMilliseconds: 200}`. A percentile and a bound
    rather than one `latencyP99Milliseconds` field, so p95 or p99.9 objectives need no new
    field names. Latency is measured at the gateway, from arrival to the last byte of the
    answer, queueing included."""

    latency_milliseconds: float = Field(
        alias="latencyMilliseconds",
        gt=0,
        le=100_000,
        description="Answer this share of requests within this many milliseconds "
        "(at most 100000, the gateway's largest latency bucket).",
    )
    percentile: float = Field(
        default=99.0,
        ge=50,
        lt=100,
        description="The share of requests, in percent, that must meet the latency: 99 means "
        "the p99. Default 99.",
    )


class Autoscaling(Frozen):
    """Replica bounds and targets. The seed's simplified form (min_servers, max_servers,
    target_utilization as a fraction) is accepted and normalized to these fields."""

    min_replicas: int = Field(
        default=1,
        alias="minReplicas",
        ge=0,
        description="Never fewer replicas than this (0 allows scale to zero). Default 1.",
    )
    max_replicas: int = Field(
        alias="maxReplicas", ge=1, description="Never more replicas than this."
    )
    target_cpu_utilization_percentage: int | None = Field(
        default=None,
        alias="targetCPUUtilizationPercentage",
        gt=0,
        description="Keep average CPU at this percent of requests.cpu (60 means 60%). "
        f"Default {DEFAULT_CPU_UTILIZATION} when no metric is given, as in the HPA.",
    )
    metrics: tuple[MetricSpec, ...] | None = Field(
        default=None,
        description="More targets, autoscaling/v2 style; the largest proposal wins.",
    )
    behavior: Behavior | None = Field(
        default=None, description="Rate limits and stabilization per direction."
    )
    burst: BurstMode | None = Field(
        default=None, description="Burst mode (a short panic window); the profile's default."
    )
    scale_to_zero: ScaleToZero | None = Field(
        default=None,
        alias="scaleToZero",
        description="Idle period and request hold timeout, used with minReplicas: 0.",
    )
    prediction: Prediction | None = Field(
        default=None, description="Predictive scale-up; off unless enabled."
    )
    objective: LatencyObjective | None = Field(
        default=None,
        description="A latency objective: the fewest replicas that keep this percentile of "
        "latency under the bound, learned from the latencies the gateway measures.",
    )
    autoscaler_class: Literal["hpa", "ebbtide"] | None = Field(
        default=None,
        alias="class",
        description="Who scales the endpoint on Kubernetes (as Knative's "
        "autoscaling.knative.dev/class): hpa, a HorizontalPodAutoscaler; ebbtide, ebbtide's "
        "own policy run by the operator through the Deployment's scale subresource. Unset: hpa "
        "when the HPA can do everything asked (only cpu/memory targets, minReplicas 1 or more, "
        "no burst mode, no prediction, no scaleToZero, no latency objective), else ebbtide. "
        "Locally ebbtide's policy always runs, whatever the class.",
    )

    def resolved_class(self) -> Literal["hpa", "ebbtide"]:
        """The class in force: the one given, or what unset resolves to."""
        if self.autoscaler_class is not None:
            return self.autoscaler_class
        return "ebbtide" if self.needs_ebbtide() else "hpa"

    def needs_ebbtide(self) -> tuple[str, ...]:
        """The fields set that a HorizontalPodAutoscaler cannot honour, as field paths."""
        found = []
        if self.min_replicas == 0:
            found.append("minReplicas 0")
        for index, metric in enumerate(self.metrics or ()):
            if metric.pods is not None:
                found.append(f"metrics[{index}].pods ({metric.pods.metric.name})")
        if self.burst is not None and self.burst.enabled:
            found.append("burst")
        if self.prediction is not None and self.prediction.enabled:
            found.append("prediction")
        if self.scale_to_zero is not None:
            found.append("scaleToZero")
        if self.objective is not None:
            found.append("objective")
        return tuple(found)


class ResourceList(Frozen):
    """Amounts of CPU and memory."""

    cpu: Quantity | None = Field(default=None, description="CPU cores: 500m, 1, 1.5.")
    memory: Quantity | None = Field(default=None, description="Memory bytes: 512Mi, 1Gi.")


class Resources(Frozen):
    """Per-replica CPU and memory, as a container's resources."""

    requests: ResourceList = Field(
        default_factory=ResourceList,
        description="What one replica is sized for; CPU utilization is measured against it.",
    )
    limits: ResourceList = Field(
        default_factory=ResourceList,
        description="The most one replica may use; enforced where the OS allows it.",
    )


class Batching(Frozen):
    """Adaptive batching: concurrent requests merged into one model call."""

    max_batch_size: int = Field(
        alias="maxBatchSize", ge=1, le=4096, description="The most requests in one model call."
    )
    max_latency_ms: float = Field(
        alias="maxLatencyMs",
        gt=0,
        le=10_000,
        description="The longest a request waits for a batch to fill, in milliseconds.",
    )


class InferenceEndpointSpec(Frozen):
    """What to serve and how to scale it."""

    model: ModelRef = Field(description="The model to serve.")
    autoscaling: Autoscaling = Field(description="Replica bounds and scaling targets.")
    resources: Resources = Field(
        default_factory=Resources, description="Per-replica CPU and memory requests and limits."
    )
    batching: Batching | None = Field(default=None, description="Adaptive batching; off if unset.")


class Condition(Frozen):
    """A status condition, as Kubernetes reports them."""

    type: str = Field(description="AbleToScale, ScalingActive, ScalingLimited, Ready.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(default="", description="A CamelCase reason.")
    message: str = Field(default="", description="A sentence for people.")
    last_transition_time: str | None = Field(
        default=None, alias="lastTransitionTime", description="When the status last changed."
    )


class MetricStatus(Frozen):
    """The current value of one scaling metric."""

    name: str = Field(description="cpu, memory, concurrency or requests_per_second.")
    average_utilization: int | None = Field(
        default=None, alias="averageUtilization", description="Percent of request."
    )
    average_value: str | None = Field(
        default=None, alias="averageValue", description="Amount per replica."
    )


class ObjectiveStatus(Frozen):
    """Where the latency objective stands: the percentile last measured and the load per
    replica the autoscaler learned it holds at. Kept in the status so that a restarted
    autoscaler (the operator's pod rescheduled, the local control plane restarted) starts from
    what was learned instead of missing the objective again to relearn it."""

    observed_milliseconds: float | None = Field(
        default=None,
        alias="observedMilliseconds",
        description="The objective's percentile over the last metric window, in milliseconds; "
        "unset while the window holds too few answers to place it.",
    )
    learned_limit: float | None = Field(
        default=None,
        alias="learnedLimit",
        ge=0,
        description="Requests in flight per ready replica at which the objective holds, as "
        "learned; unset until the objective was first missed.",
    )


class EndpointStatus(Frozen):
    """What the controller observed and decided."""

    replicas: int = Field(default=0, description="Replicas that exist.")
    ready_replicas: int = Field(default=0, alias="readyReplicas", description="Ready replicas.")
    desired_replicas: int = Field(
        default=0, alias="desiredReplicas", description="What the autoscaler wants now."
    )
    current_metrics: tuple[MetricStatus, ...] = Field(
        default=(), alias="currentMetrics", description="Current value per metric."
    )
    conditions: tuple[Condition, ...] = Field(default=(), description="Status conditions.")
    observed_generation: int | None = Field(
        default=None, alias="observedGeneration", description="The generation last acted on."
    )
    last_scale_time: str | None = Field(
        default=None, alias="lastScaleTime", description="When the replica count last changed."
    )
    url: str | None = Field(default=None, description="Where clients send requests.")
    explanation: str | None = Field(
        default=None,
        description="Why the endpoint has the replicas it has, in one sentence: the last "
        "scaling decision, its metric against the target, and what limited it.",
    )
    objective: ObjectiveStatus | None = Field(
        default=None,
        description="The latency objective's standing, when spec.autoscaling.objective is set.",
    )


class InferenceEndpoint(Frozen):
    """An auto-scaling inference endpoint: a model served by min..max replicas behind one URL."""

    api_version: Literal["mlops.example.com/v1"] = Field(
        alias="apiVersion", description="Always mlops.example.com/v1."
    )
    kind: Literal["InferenceEndpoint"] = Field(description="Always InferenceEndpoint.")
    metadata: ObjectMeta = Field(description="Name, namespace, labels and annotations.")
    spec: InferenceEndpointSpec = Field(description="The desired state.")
    status: EndpointStatus | None = Field(default=None, description="The observed state.")

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str:
        return self.metadata.namespace

    def manifest(self) -> dict[str, Any]:
        """The normalized object as stored and sent: camelCase, unset optional fields omitted."""
        data = self.model_dump(by_alias=True, exclude_none=True, mode="json")
        data.pop("status", None)
        return data

    def cpu_request(self) -> Decimal | None:
        """`requests.cpu` in cores, or None when unset."""
        cpu = self.spec.resources.requests.cpu
        return None if cpu is None else parse_quantity(cpu)

    def memory_request(self) -> Decimal | None:
        """`requests.memory` in bytes, or None when unset."""
        memory = self.spec.resources.requests.memory
        return None if memory is None else parse_quantity(memory)

    def scaling_metrics(self) -> tuple[MetricSpec, ...]:
        """Every metric the autoscaler acts on, the CPU shorthand included, defaulted as the HPA
        does: with no target at all, CPU at 80% of request."""
        autoscaling = self.spec.autoscaling
        metrics = list(autoscaling.metrics or ())
        percent = autoscaling.target_cpu_utilization_percentage
        if percent is None and not metrics:
            percent = DEFAULT_CPU_UTILIZATION
        if percent is not None:
            cpu = MetricSpec(
                type="Resource",
                resource=ResourceMetricSource(
                    name="cpu", target=MetricTarget(type="Utilization", average_utilization=percent)
                ),
            )
            metrics.insert(0, cpu)
        return tuple(metrics)
