"""Ollama on a cluster: a StatefulSet with one GPU per pod behind a headless Service.

The headless Service gives every pod a stable DNS name
(`<stack>-ollama-<i>.<stack>-ollama.<namespace>.svc.<domain>`), listed while the pod is
ready, which is what the model-aware gateway (and the least-conn balancer) address.

Models are pulled before a pod takes traffic (`pull.PULL_SCRIPT`: models already on
the volume are not pulled again, pinned digests are checked), in one of two ways
(kubernetes.models):

- a volume per pod (default, ReadWriteOnce): an init container pulls into the pod's
  own volume, so the pod only starts serving once its models are there. NetworkPolicies
  act on whole pods, so these pods keep egress to public HTTPS (see network_policies).
- one shared ReadWriteMany claim: a Job pulls once into it, and the StatefulSet is
  created only after the Job completed (Pulumi awaits Jobs), as on Docker. The serving
  pods have no egress at all and run with OLLAMA_NOPRUNE=1, never touching blobs.

A stopping pod drains through the gateway first (`drain.py`), within a grace period
sized to the longest generation. OLLAMA_NO_CLOUD=1: a `*-cloud` model name is never
proxied to ollama.com from a pod that has egress for its pulls.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s
from llm_config.model import StackConfig

from llm_stack.kubernetes import drain, shutdown
from llm_stack.kubernetes import names as n
from llm_stack.kubernetes import workload as w
from llm_stack.kubernetes.pull import PULL_SCRIPT, WARM_SCRIPT, pull_arguments
from llm_stack.ollama_env import gpu_environment, ollama_environment
from llm_stack.shared.names import OLLAMA_PORT, StackNames

MODELS_DIR = "/models"
TMP_DIR = "/tmp"  # noqa: S108 (an emptyDir of the pod)
MODELS_VOLUME = "models"


def server_environment(config: StackConfig, *, gpu: bool) -> dict[str, str]:
    """The serving container's environment: the Docker instances' settings."""
    env = {
        **ollama_environment(config),
        "OLLAMA_MODELS": MODELS_DIR,
        # Ollama keeps its key pair under $HOME; the root filesystem is read-only.
        "HOME": TMP_DIR,
    }
    kube = config.kubernetes
    if kube is not None and kube.ipv6:
        # Dual-stack: [::] takes IPv4 too.
        env["OLLAMA_HOST"] = f"[::]:{OLLAMA_PORT}"
    if not gpu:
        # The image says NVIDIA_VISIBLE_DEVICES=all: on a node whose default runtime is
        # nvidia a pod without a GPU request would see every GPU. With a request, the
        # device plugin sets the variable to the pod's own device.
        env.update(gpu_environment(None))
    return env


def puller_container(config: StackConfig) -> dict[str, Any]:
    """The pull step: `ollama serve` on loopback, pull each model, exit (non-zero on error)."""
    return {
        "name": n.MODEL_PULLER,
        "image": config.ollama.image,
        "command": ["/bin/sh", "-c", PULL_SCRIPT, n.MODEL_PULLER, *pull_arguments(config)],
        "env": w.env_list(
            {
                "OLLAMA_HOST": f"127.0.0.1:{OLLAMA_PORT}",
                "OLLAMA_MODELS": MODELS_DIR,
                "HOME": TMP_DIR,
                **gpu_environment(None),
            }
        ),
        "resources": w.role_resources(config, n.MODEL_PULLER),
        "volumeMounts": [
            {"name": MODELS_VOLUME, "mountPath": MODELS_DIR},
            {"name": "tmp", "mountPath": TMP_DIR},
        ],
    }


def gpu_placement(config: StackConfig) -> dict[str, Any]:
    """nodeSelector and tolerations of GPU pods (none for CPU-only pods)."""
    kube = config.kubernetes
    if kube is None or not kube.uses_gpus:
        return {}
    placement: dict[str, Any] = {}
    if kube.gpu.runtime_class_name is not None:
        placement["runtimeClassName"] = kube.gpu.runtime_class_name
    if kube.gpu.node_selector:
        placement["nodeSelector"] = dict(kube.gpu.node_selector)
    if kube.gpu.tolerations:
        placement["tolerations"] = [
            t.model_dump(by_alias=True, exclude_none=True) for t in kube.gpu.tolerations
        ]
    return placement


class OllamaStatefulSet(pulumi.ComponentResource):
    service: k8s.core.v1.Service
    statefulset: k8s.apps.v1.StatefulSet
    puller: k8s.batch.v1.Job | None
    # Base URLs of the instances, by their stable DNS names.
    urls: list[str]

    def __init__(
        self,
        name: str,
        config: StackConfig,
        *,
        namespace: pulumi.Input[str],
        drain_key_secret: pulumi.Input[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("llm-stack:kubernetes:Ollama", name, None, opts)
        kube = config.kubernetes
        assert kube is not None
        names = n.KubeNames.of(config)
        ollama = config.ollama
        child = pulumi.ResourceOptions(parent=self)
        labels = names.labels(n.OLLAMA)
        selector = names.selector(n.OLLAMA)
        gpu = kube.uses_gpus
        storage = kube.models

        self.service = k8s.core.v1.Service(
            "ollama-headless",
            metadata=w.metadata(names, n.OLLAMA, names.ollama, namespace),
            spec={
                "clusterIP": "None",
                "selector": selector,
                "ports": [{"name": "http", "port": n.OLLAMA_SERVICE_PORT, "targetPort": "http"}],
            },
            opts=child,
        )

        claim_spec: dict[str, Any] = {
            "accessModes": ["ReadWriteMany" if storage.shared else "ReadWriteOnce"],
            "resources": {"requests": {"storage": storage.size}},
        }
        if storage.storage_class is not None:
            claim_spec["storageClassName"] = storage.storage_class

        tmp = w.empty_dir("tmp", "1Gi")
        init_containers: list[dict[str, Any]] = []
        depends_on: list[pulumi.Resource] = []
        volumes: list[dict[str, Any]] = [tmp]
        volume_claim_templates: list[dict[str, Any]] = []
        self.puller = None
        if storage.shared:
            claim = k8s.core.v1.PersistentVolumeClaim(
                "models",
                metadata=w.metadata(names, n.OLLAMA, names.object("models"), namespace),
                spec=claim_spec,
                opts=child,
            )
            volumes.append(
                {"name": MODELS_VOLUME, "persistentVolumeClaim": {"claimName": claim.metadata.name}}
            )
            job_name = StackNames.of(config).model_puller(ollama.models)
            self.puller = k8s.batch.v1.Job(
                "model-puller",
                metadata=w.metadata(names, n.MODEL_PULLER, job_name, namespace),
                spec={
                    "backoffLimit": 2,
                    "activeDeadlineSeconds": 7200,
                    "template": w.pod_template(
                        names.labels(n.MODEL_PULLER),
                        w.pod_spec(
                            w.USERS[n.MODEL_PULLER],
                            [puller_container(config)],
                            volumes=volumes,
                            extra={"restartPolicy": "Never"},
                        ),
                    ),
                },
                # A first pull of a large model takes a while on a slow link.
                opts=pulumi.ResourceOptions(
                    parent=self, custom_timeouts=pulumi.CustomTimeouts(create="2h")
                ),
            )
            depends_on.append(self.puller)
        else:
            init_containers.append(puller_container(config))
            volume_claim_templates.append(
                {"metadata": {"name": MODELS_VOLUME, "labels": labels}, "spec": claim_spec}
            )

        resources = w.role_resources(config, n.OLLAMA)
        if gpu:
            # One device per pod, from the device plugin: requests equal limits for an
            # extended resource, and no two pods ever share a GPU.
            resources["requests"][kube.gpu.resource] = "1"
            resources["limits"][kube.gpu.resource] = "1"
        server_mounts: list[dict[str, Any]] = [
            {"name": MODELS_VOLUME, "mountPath": MODELS_DIR},
            {"name": "tmp", "mountPath": TMP_DIR},
        ]
        lifecycle: dict[str, Any] = {"preStop": drain.ollama_pre_stop(config)}
        if storage.warm:
            # The kubelet reports the container running only once this returns, so the
            # pod turns ready with its models loaded.
            lifecycle["postStart"] = {
                "exec": {"command": ["/bin/sh", "-c", WARM_SCRIPT, "warm", *storage.warm]}
            }
        server = {
            "name": n.OLLAMA,
            "image": ollama.image,
            "env": w.env_list(server_environment(config, gpu=gpu)),
            "ports": [{"name": "http", "containerPort": OLLAMA_PORT}],
            "resources": resources,
            # `/` answers "Ollama is running" once the server listens; the models are on
            # the volume before this container starts.
            "startupProbe": w.startup_probe("/", "http", ollama.start_period_seconds),
            "readinessProbe": w.http_probe("/", "http"),
            "livenessProbe": w.http_probe(
                "/api/version", "http", period_seconds=20, failure_threshold=3
            ),
            # Ollama cuts every stream at SIGTERM: first the drain (or the DNS delay).
            "lifecycle": lifecycle,
            "volumeMounts": server_mounts,
        }
        containers: list[dict[str, Any]] = [server]
        pod_volumes = list(volumes)
        if drain.enabled(config):
            assert drain_key_secret is not None, "a drained stack needs the drain key"
            server_mounts.append(
                {"name": drain.MARKER_VOLUME, "mountPath": drain.MARKER_DIR, "readOnly": True}
            )
            containers.append(drain.sidecar(config, drain_key_secret))
            pod_volumes += drain.volumes(drain_key_secret)
            grace = shutdown.ollama_grace_seconds(config)
        else:
            grace = shutdown.OLLAMA_DNS_SECONDS + shutdown.EXIT_SECONDS
        pod = w.pod_spec(
            w.USERS[n.OLLAMA],
            containers,
            init_containers=init_containers,
            volumes=pod_volumes,
            termination_grace_seconds=grace,
            extra={**gpu_placement(config), **w.spread(selector)},
        )
        spec: dict[str, Any] = {
            "serviceName": names.ollama,
            "replicas": ollama.instances,
            # All pods start at once (each pulls or loads on its own GPU); updates still
            # roll one pod at a time.
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": selector},
            "updateStrategy": {"type": "RollingUpdate"},
            "template": w.pod_template(labels, pod),
        }
        if volume_claim_templates:
            spec["volumeClaimTemplates"] = volume_claim_templates
            # Scaling down keeps a pod's models for when it comes back.
            spec["persistentVolumeClaimRetentionPolicy"] = {
                "whenDeleted": "Retain",
                "whenScaled": "Retain",
            }
        self.statefulset = k8s.apps.v1.StatefulSet(
            "ollama",
            metadata=w.metadata(names, n.OLLAMA, names.ollama, namespace),
            spec=spec,
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[self.service, *depends_on],
                # Pods wait for a GPU node and pull (or load) before they are ready.
                custom_timeouts=pulumi.CustomTimeouts(create="1h", update="1h"),
            ),
        )
        k8s.policy.v1.PodDisruptionBudget(
            "ollama-pdb",
            metadata=w.metadata(names, n.OLLAMA, names.ollama, namespace),
            spec={"maxUnavailable": 1, "selector": {"matchLabels": selector}},
            opts=child,
        )
        self.urls = [names.ollama_url(i) for i in range(ollama.instances)]
        self.register_outputs({"statefulset": self.statefulset.metadata.name})
