"""Redis on a cluster: StatefulSets with a persistent volume and the append-only file.

Two of them, one component each: the state Redis (limits, quota debts, usage, routing
state; `noeviction`) and the response cache's (evicts within its own maxmemory), so a
large cached answer can never evict a quota debt. Each has its own Service and
NetworkPolicy (only the gateway reaches either).

Its redis.conf is the Docker stack's (`llm_stack.shared.redis.render_redis_conf`),
and since it carries the password (`requirepass`) it lives in a Secret, mounted with
the password file the probes' redis-cli reads; no environment variable holds either.
"""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s
from llm_config.model import StackConfig

from llm_stack.kubernetes import names as n
from llm_stack.kubernetes import workload as w
from llm_stack.redis_conf import RedisRole
from llm_stack.shared.redis import (
    BIND_DUAL_STACK,
    CLI_PASSWORD_PATH,
    CONF_PATH,
    DATA_DIR,
    health_test,
    redis_url,
    render_redis_conf,
)
from llm_stack.shared.secrets import secret_text

CONF_DIR = CONF_PATH.rsplit("/", 1)[0]
CONF_KEY = CONF_PATH.rsplit("/", 1)[1]
PASSWORD_KEY = CLI_PASSWORD_PATH.rsplit("/", 1)[1]
# Read by the pod's group (fsGroup) only.
SECRET_FILE_MODE = 0o440


class RedisStatefulSet(pulumi.ComponentResource):
    secret: k8s.core.v1.Secret
    statefulset: k8s.apps.v1.StatefulSet
    service: k8s.core.v1.Service
    # redis://:<password>@<service>:6379/0, a secret.
    url: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        config: StackConfig,
        *,
        namespace: pulumi.Input[str],
        password: pulumi.Output[str],
        role: RedisRole = "state",
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("llm-stack:kubernetes:Redis", name, None, opts)
        kube = config.kubernetes
        assert kube is not None
        names = n.KubeNames.of(config)
        child = pulumi.ResourceOptions(parent=self)
        # The state server keeps the names it always had (its data stays where it is).
        pod_role, object_name = (
            (n.REDIS, names.redis) if role == "state" else (n.REDIS_CACHE, names.redis_cache)
        )
        selector = names.selector(pod_role)
        # Dual-stack clusters reach Redis over IPv6 too.
        bind = BIND_DUAL_STACK if kube.ipv6 else "0.0.0.0"
        conf = secret_text(
            password.apply(lambda pw: render_redis_conf(config, role, pw, bind=bind))
        )
        self.secret = k8s.core.v1.Secret(
            f"{name}-config",
            metadata=w.metadata(names, pod_role, names.object(pod_role, "config"), namespace),
            type="Opaque",
            string_data={CONF_KEY: conf, PASSWORD_KEY: secret_text(password)},
            opts=child,
        )
        self.service = k8s.core.v1.Service(
            name,
            metadata=w.metadata(names, pod_role, object_name, namespace),
            spec={
                "selector": selector,
                "ports": [{"name": "redis", "port": n.REDIS_SERVICE_PORT, "targetPort": "redis"}],
            },
            opts=child,
        )
        probe_command = ["sh", "-c", health_test(CLI_PASSWORD_PATH)[1]]
        claim_spec: dict[str, object] = {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": kube.redis_storage}},
        }
        if kube.storage_class is not None:
            claim_spec["storageClassName"] = kube.storage_class
        container = {
            "name": pod_role,
            "image": config.redis.image,
            "command": ["redis-server", CONF_PATH],
            "ports": [{"name": "redis", "containerPort": n.REDIS_SERVICE_PORT}],
            "resources": w.role_resources(config, pod_role),
            "readinessProbe": {"exec": {"command": probe_command}, "periodSeconds": 10},
            "livenessProbe": {
                "exec": {"command": probe_command},
                "periodSeconds": 20,
                "timeoutSeconds": 5,
                "failureThreshold": 3,
            },
            "volumeMounts": [
                {"name": "data", "mountPath": DATA_DIR},
                {"name": "config", "mountPath": CONF_DIR, "readOnly": True},
            ],
        }
        pod = w.pod_spec(
            w.USERS[pod_role],
            [container],
            volumes=[
                {
                    "name": "config",
                    "secret": {
                        "secretName": self.secret.metadata.name,
                        "defaultMode": SECRET_FILE_MODE,
                    },
                }
            ],
        )
        self.statefulset = k8s.apps.v1.StatefulSet(
            name,
            metadata=w.metadata(names, pod_role, object_name, namespace),
            spec={
                "serviceName": object_name,
                "replicas": 1,
                "selector": {"matchLabels": selector},
                # A new password is a new config: the pod restarts with it.
                "template": w.pod_template(
                    names.labels(pod_role),
                    pod,
                    config_hash=secret_text(conf.apply(lambda t: w.text_hash([t]))),
                ),
                "volumeClaimTemplates": [
                    {
                        "metadata": {"name": "data", "labels": names.labels(pod_role)},
                        "spec": claim_spec,
                    }
                ],
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.service]),
        )
        host = names.fqdn(object_name)
        self.url = secret_text(password.apply(lambda pw: redis_url(host, pw)))
        self.register_outputs({"statefulset": self.statefulset.metadata.name})
