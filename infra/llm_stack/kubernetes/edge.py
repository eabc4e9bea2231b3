"""nginx on a cluster: the TLS edge and, in least-conn stacks, the Ollama balancer.

Both run `llm_nginx.render_nginx_conf` for one topology of in-cluster DNS names (the
renderer writes edge and balancer into one file, as the Docker container runs both):
one ConfigMap, two Deployments, each reachable only on its own ports (Services and
NetworkPolicies). Upstreams are re-resolved through the cluster DNS (`resolve`), since
pod addresses change whenever a pod is replaced. nginx runs as a non-root user on
unprivileged container ports; its Services map 443/80 onto them. An
nginx-prometheus-exporter sidecar reads each pod's stub_status.

Clients reach the edge through a LoadBalancer Service (externalTrafficPolicy Local, so
nginx sees client addresses for its per-client rate limit) or an HTTPRoute on an
existing Gateway, which re-encrypts to the edge (a BackendTLSPolicy says how to verify
it). The certificate is a Secret (self-signed or provided, as on Docker) or a
cert-manager Certificate. A renewed certificate reaches nginx without a restart: a
small sidecar in each nginx pod (same image, shared process namespace) watches the
mounted Secret and runs `nginx -s reload`, which keeps open streams on the old
workers until they end; a new config (the ConfigMap) rolls the pods instead.

Behind a Gateway the edge believes the X-Forwarded-For of `expose.trustedProxies`
(realip), so its per-client rate limit sees clients, not the Gateway's proxies; it
retries a refused request on other gateway replicas (`edgeGatewayTries`, since one
Service name stands for all of them); and it runs one nginx worker per CPU of its
limit, not one per core of the node.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s
from llm_config.kubernetes import EDGE_CONTAINER_HTTP_PORT, EDGE_CONTAINER_HTTPS_PORT
from llm_config.model import StackConfig
from llm_monitoring.jobs import NGINX_JOB
from llm_nginx import CONTAINER_RUNTIME_DIR, STUB_STATUS_PATH, NginxTopology, render_nginx_conf

from llm_stack.kubernetes import names as n
from llm_stack.kubernetes import shutdown
from llm_stack.kubernetes import workload as w
from llm_stack.pulumi_config import StackSecrets
from llm_stack.shared.names import OLLAMA_PORT
from llm_stack.shared.tls import EdgeCertificate

CONF_DIR = "/etc/nginx/llm"
CONF_KEY = "nginx.conf"
TLS_DIR = "/etc/nginx/tls"
# How often the reload sidecar looks at the mounted certificate. The kubelet updates
# a Secret volume within about a minute of the Secret's change; a renewal comes weeks
# before the old certificate expires, so this only bounds the delay.
CERT_POLL_SECONDS = 30
# Label shared by the edge and balancer pods: the exporter Service selects both.
EXPORTER_LABEL = "llm-stack/nginx-exporter"
CA_KEY = "ca.crt"


def trusted_proxies(config: StackConfig) -> tuple[str, ...]:
    """Addresses whose X-Forwarded-For the edge believes (see ExposeConfig)."""
    kube = config.kubernetes
    assert kube is not None
    expose = kube.expose
    if expose.trusted_proxies is not None:
        return tuple(expose.trusted_proxies)
    if expose.type == "http-route":
        return kube.pod_ranges
    return ()


def route_timeout_seconds(config: StackConfig) -> int:
    """The HTTPRoute's request timeout: the gateway's total timeout and a margin."""
    kube = config.kubernetes
    assert kube is not None
    configured = kube.expose.route_timeout_seconds
    return configured if configured is not None else int(config.gateway.timeouts.total_seconds) + 60


def topology(config: StackConfig) -> NginxTopology:
    """Where the cluster's nginx finds its peers, files and ports."""
    kube = config.kubernetes
    assert kube is not None
    names = n.KubeNames.of(config)
    local = ("127.0.0.1", "::1") if kube.ipv6 else ("127.0.0.1",)
    pods = kube.pod_ranges
    return NginxTopology(
        gateways=[f"{names.fqdn(names.gateway)}:{config.gateway.port}"],
        # The balancer only where the gateway sends through it (least-conn): a
        # model-aware stack's edge would otherwise re-resolve every Ollama pod for nothing.
        ollamas=[
            f"{names.ollama_pod_host(i)}:{OLLAMA_PORT}" for i in range(config.ollama.instances)
        ]
        if config.gateway.routing == "least-conn"
        else [],
        edge_https_listen=str(EDGE_CONTAINER_HTTPS_PORT),
        edge_http_listen=str(EDGE_CONTAINER_HTTP_PORT),
        https_public_port=config.edge.https_port,
        balancer_listen=str(config.balancer.port),
        status_listen=str(config.balancer.status_port),
        internal_allow=(*pods, *local),
        cert_path=f"{TLS_DIR}/tls.crt",
        key_path=f"{TLS_DIR}/tls.key",
        runtime_dir=CONTAINER_RUNTIME_DIR,
        access_log="/dev/stdout",
        error_log="/dev/stderr",
        resolver=kube.dns_resolver,
        # Non-root: nginx runs its workers as the pod's user.
        user=None,
        # `auto` would count the node's cores (nginx does not read the cgroup quota):
        # dozens of workers in a 1-CPU, 256 Mi container on a large GPU node.
        worker_processes=w.cpu_count(w.role_resources(config, n.EDGE)["limits"]["cpu"]),
        gateway_tries=kube.edge_gateway_tries,
        real_ip_from=trusted_proxies(config),
        ipv6=kube.ipv6,
    )


def render_conf(config: StackConfig) -> str:
    return render_nginx_conf(config, topology(config))


def _exporter(config: StackConfig) -> dict[str, Any]:
    scrape = f"http://127.0.0.1:{config.balancer.status_port}{STUB_STATUS_PATH}"
    return {
        "name": "nginx-exporter",
        "image": config.monitoring.nginx_exporter_image,
        "args": [f"--nginx.scrape-uri={scrape}"],
        "ports": [{"name": "metrics", "containerPort": n.NGINX_EXPORTER_PORT}],
        "resources": w.EXPORTER_RESOURCES,
        "securityContext": {"runAsUser": w.EXPORTER_USER, "runAsGroup": w.EXPORTER_USER},
        "readinessProbe": w.http_probe("/metrics", "metrics"),
        "livenessProbe": w.http_probe("/metrics", "metrics", period_seconds=30),
    }


# Runs in the reload sidecar (the nginx image's busybox sh): when the mounted
# certificate or key changes, check the config with it and reload. `nginx -s reload`
# signals the master through its pid file (the shared runtime volume); the master
# starts new workers with the new certificate and the old ones finish their streams.
RELOAD_SCRIPT = """\
set -u
conf="$1"; tls="$2"; every="$3"; alive="$4"
digest() { cat "$tls/tls.crt" "$tls/tls.key" 2>/dev/null | sha256sum; }
last=$(digest)
while :; do
  touch "$alive"
  sleep "$every" & wait $!
  now=$(digest)
  [ "$now" = "$last" ] && continue
  if nginx -t -q -c "$conf" && nginx -s reload -c "$conf"; then
    echo "certificate changed: nginx reloaded"; last=$now
  else
    echo "certificate changed but nginx refused it: kept the old one, retrying"
  fi
done
"""


RELOADER_ALIVE = f"{CONTAINER_RUNTIME_DIR}/cert-reloader.alive"


def reloader_container(config: StackConfig, mounts: list[dict[str, Any]]) -> dict[str, Any]:
    """The sidecar that reloads nginx when its certificate Secret changes."""
    # Alive while its loop turns: the file it touches each round is fresh.
    fresh_minutes = 2 * CERT_POLL_SECONDS // 60 + 1
    probe_command = ["/bin/sh", "-c", f"find {RELOADER_ALIVE} -mmin -{fresh_minutes} | grep -q ."]
    return {
        "name": "cert-reloader",
        "image": config.edge.image,
        "command": [
            "/bin/sh",
            "-c",
            RELOAD_SCRIPT,
            "cert-reloader",
            f"{CONF_DIR}/{CONF_KEY}",
            TLS_DIR,
            str(CERT_POLL_SECONDS),
            RELOADER_ALIVE,
        ],
        "resources": w.EXPORTER_RESOURCES,
        "readinessProbe": {"exec": {"command": probe_command}, "periodSeconds": 30},
        "livenessProbe": {
            "exec": {"command": probe_command},
            "initialDelaySeconds": 10,
            "periodSeconds": 60,
        },
        "volumeMounts": mounts,
    }


def _tcp_probe(port: str, period_seconds: int) -> dict[str, Any]:
    return {"tcpSocket": {"port": port}, "periodSeconds": period_seconds, "timeoutSeconds": 3}


class EdgeNginx(pulumi.ComponentResource):
    config_map: k8s.core.v1.ConfigMap
    edge: k8s.apps.v1.Deployment
    edge_service: k8s.core.v1.Service
    balancer: k8s.apps.v1.Deployment | None
    balancer_service: k8s.core.v1.Service | None
    metrics_service: k8s.core.v1.Service
    tls_secret_name: str

    def __init__(
        self,
        name: str,
        config: StackConfig,
        *,
        namespace: pulumi.Input[str],
        secrets: StackSecrets,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("llm-stack:kubernetes:Edge", name, None, opts)
        kube = config.kubernetes
        assert kube is not None
        names = n.KubeNames.of(config)
        child = pulumi.ResourceOptions(parent=self)
        conf = render_conf(config)
        self.config_map = k8s.core.v1.ConfigMap(
            "nginx-conf",
            metadata=w.metadata(names, n.EDGE, names.object("nginx", "conf"), namespace),
            data={CONF_KEY: conf},
            opts=child,
        )

        # --- the certificate ---------------------------------------------------------
        self.tls_secret_name = names.object(n.EDGE, "tls")
        cert_pem: pulumi.Output[str] | None = None
        if config.edge.tls == "cert-manager":
            issuer = kube.cert_manager
            assert issuer is not None
            certificate = k8s.apiextensions.CustomResource(
                "edge-certificate",
                api_version="cert-manager.io/v1",
                kind="Certificate",
                metadata=w.metadata(names, n.EDGE, names.object(n.EDGE, "tls"), namespace),
                spec={
                    "secretName": self.tls_secret_name,
                    "dnsNames": [config.edge.hostname],
                    "issuerRef": {
                        "name": issuer.issuer_name,
                        "kind": issuer.issuer_kind,
                        "group": "cert-manager.io",
                    },
                    "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
                },
                opts=child,
            )
            tls_dependency: list[pulumi.Resource] = [certificate]
        else:
            pair = EdgeCertificate("edge-certificate", config, secrets, opts=child)
            tls_secret = k8s.core.v1.Secret(
                "edge-tls",
                metadata=w.metadata(names, n.EDGE, self.tls_secret_name, namespace),
                type="kubernetes.io/tls",
                string_data={"tls.crt": pair.cert_pem, "tls.key": pair.key_pem},
                opts=child,
            )
            tls_dependency = [tls_secret]
            cert_pem = pair.cert_pem
        # A new config rolls the pods; a new certificate does not (the reload sidecar).
        config_hash = w.text_hash([conf])

        # --- the two Deployments -----------------------------------------------------
        def deployment(role: str, ports: list[dict[str, Any]], probe_port: str) -> Any:
            labels = {**names.labels(role), EXPORTER_LABEL: "true"}
            pod_selector = names.selector(role)
            mounts: list[dict[str, Any]] = [
                {"name": "conf", "mountPath": CONF_DIR, "readOnly": True},
                {"name": "tls", "mountPath": TLS_DIR, "readOnly": True},
                {"name": "runtime", "mountPath": CONTAINER_RUNTIME_DIR},
            ]
            nginx = {
                "name": "nginx",
                "image": config.edge.image,
                "command": ["nginx", "-c", f"{CONF_DIR}/{CONF_KEY}", "-g", "daemon off;"],
                "ports": ports,
                "resources": w.role_resources(config, role),
                "readinessProbe": _tcp_probe(probe_port, 5),
                "livenessProbe": _tcp_probe(probe_port, 15),
                # Keeps accepting while the load balancer, the Gateway's proxies or the
                # gateway's nginx drop this pod; then SIGQUIT (the image's STOPSIGNAL):
                # nginx stops accepting and finishes every open request.
                "lifecycle": {
                    "preStop": {
                        "exec": {"command": ["sleep", str(kube.shutdown.edge_pre_stop_seconds)]}
                    }
                },
                "volumeMounts": mounts,
            }
            pod = w.pod_spec(
                w.USERS[role],
                [nginx, _exporter(config), reloader_container(config, mounts)],
                volumes=[
                    {"name": "conf", "configMap": {"name": self.config_map.metadata.name}},
                    {
                        "name": "tls",
                        "secret": {"secretName": self.tls_secret_name, "defaultMode": 0o440},
                    },
                    # Request bodies over 1 MiB spill here (the body cap is edge.maxBodyMb).
                    w.empty_dir("runtime", f"{2 * config.edge.max_body_mb + 64}Mi"),
                ],
                termination_grace_seconds=shutdown.edge_grace_seconds(config),
                # The reload sidecar signals the nginx master (same user, no capability).
                extra={"shareProcessNamespace": True, **w.spread(pod_selector)},
            )
            resource = k8s.apps.v1.Deployment(
                role,
                metadata=w.metadata(names, role, names.object(role), namespace),
                spec={
                    "replicas": kube.edge_replicas,
                    "selector": {"matchLabels": pod_selector},
                    "template": w.pod_template(labels, pod, config_hash=config_hash),
                },
                opts=pulumi.ResourceOptions(parent=self, depends_on=tls_dependency),
            )
            k8s.policy.v1.PodDisruptionBudget(
                f"{role}-pdb",
                metadata=w.metadata(names, role, names.object(role), namespace),
                spec={"maxUnavailable": 1, "selector": {"matchLabels": pod_selector}},
                opts=child,
            )
            return resource

        self.edge = deployment(
            n.EDGE,
            [
                {"name": "https", "containerPort": EDGE_CONTAINER_HTTPS_PORT},
                {"name": "http", "containerPort": EDGE_CONTAINER_HTTP_PORT},
            ],
            "https",
        )
        edge_ports = [
            {"name": "https", "port": config.edge.https_port, "targetPort": "https"},
            {"name": "http", "port": config.edge.http_port, "targetPort": "http"},
        ]
        expose = kube.expose
        edge_spec: dict[str, Any] = {"selector": names.selector(n.EDGE), "ports": edge_ports}
        edge_extra: dict[str, Any] = {}
        if expose.type == "load-balancer":
            edge_spec |= {"type": "LoadBalancer", "externalTrafficPolicy": "Local"}
            if expose.source_ranges:
                edge_spec["loadBalancerSourceRanges"] = list(expose.source_ranges)
            if expose.annotations:
                edge_extra["annotations"] = dict(expose.annotations)
        self.edge_service = k8s.core.v1.Service(
            "edge",
            metadata=w.metadata(names, n.EDGE, names.edge, namespace, **edge_extra),
            spec=edge_spec,
            opts=child,
        )
        if expose.type == "http-route":
            self._route(config, names, namespace, cert_pem)

        self.balancer = None
        self.balancer_service = None
        if config.gateway.routing == "least-conn":
            self.balancer = deployment(
                n.BALANCER,
                [{"name": "balancer", "containerPort": config.balancer.port}],
                "balancer",
            )
            self.balancer_service = k8s.core.v1.Service(
                "balancer",
                metadata=w.metadata(names, n.BALANCER, names.balancer, namespace),
                spec={
                    "selector": names.selector(n.BALANCER),
                    "ports": [
                        {
                            "name": "balancer",
                            "port": config.balancer.port,
                            "targetPort": "balancer",
                        }
                    ],
                },
                opts=child,
            )
        exporter_selector = {n.INSTANCE_LABEL: names.prefix, EXPORTER_LABEL: "true"}
        self.metrics_service = k8s.core.v1.Service(
            "nginx-metrics",
            metadata=w.metadata(
                names,
                n.EDGE,
                names.object("nginx", "metrics"),
                namespace,
                labels={**names.labels(n.EDGE), n.JOB_LABEL: NGINX_JOB},
            ),
            spec={
                # Headless: Prometheus scrapes every nginx pod's exporter.
                "clusterIP": "None",
                "selector": exporter_selector,
                "ports": [
                    {"name": "metrics", "port": n.NGINX_EXPORTER_PORT, "targetPort": "metrics"}
                ],
            },
            opts=child,
        )
        self.register_outputs({"edge": self.edge.metadata.name})

    def _route(
        self,
        config: StackConfig,
        names: n.KubeNames,
        namespace: pulumi.Input[str],
        cert_pem: pulumi.Output[str] | None,
    ) -> None:
        """An HTTPRoute to the edge's TLS port, and how the Gateway verifies the edge."""
        kube = config.kubernetes
        assert kube is not None
        assert kube.expose.gateway is not None
        child = pulumi.ResourceOptions(parent=self)
        ref = kube.expose.gateway
        parent: dict[str, Any] = {"name": ref.name}
        if ref.namespace is not None:
            parent["namespace"] = ref.namespace
        if ref.section_name is not None:
            parent["sectionName"] = ref.section_name
        k8s.apiextensions.CustomResource(
            "edge-route",
            api_version="gateway.networking.k8s.io/v1",
            kind="HTTPRoute",
            metadata=w.metadata(names, n.EDGE, names.edge, namespace),
            spec={
                "parentRefs": [parent],
                "hostnames": [config.edge.hostname],
                "rules": [
                    {
                        "backendRefs": [{"name": names.edge, "port": config.edge.https_port}],
                        # Unset, each implementation picks its own: Envoy Gateway's 15 s
                        # would cut every longer generation. Both cover the whole
                        # response, streamed or not; one try, so the two are equal.
                        "timeouts": {
                            "request": f"{route_timeout_seconds(config)}s",
                            "backendRequest": f"{route_timeout_seconds(config)}s",
                        },
                    }
                ],
            },
            opts=child,
        )
        validation: dict[str, Any] = {"hostname": config.edge.hostname}
        if cert_pem is not None and config.edge.tls == "self-signed":
            # The Gateway trusts exactly the edge's own self-signed certificate.
            ca = k8s.core.v1.ConfigMap(
                "edge-ca",
                metadata=w.metadata(names, n.EDGE, names.object(n.EDGE, "ca"), namespace),
                data={CA_KEY: cert_pem},
                opts=child,
            )
            validation["caCertificateRefs"] = [
                {"group": "", "kind": "ConfigMap", "name": ca.metadata.name}
            ]
        else:
            # A provided or cert-manager certificate chains to a CA the Gateway knows.
            validation["wellKnownCACertificates"] = "System"
        k8s.apiextensions.CustomResource(
            "edge-backend-tls",
            api_version="gateway.networking.k8s.io/v1",
            kind="BackendTLSPolicy",
            metadata=w.metadata(names, n.EDGE, names.edge, namespace),
            spec={
                "targetRefs": [
                    {"group": "", "kind": "Service", "name": names.edge, "sectionName": "https"}
                ],
                "validation": validation,
            },
            opts=child,
        )
