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
cert-manager Certificate.
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
from llm_stack.kubernetes import workload as w
from llm_stack.pulumi_config import StackSecrets
from llm_stack.shared.names import OLLAMA_PORT
from llm_stack.shared.secrets import secret_text
from llm_stack.shared.tls import EdgeCertificate

CONF_DIR = "/etc/nginx/llm"
CONF_KEY = "nginx.conf"
TLS_DIR = "/etc/nginx/tls"
# Pod addresses: the balancer and status listeners admit these (NetworkPolicies decide
# which pods get there at all).
PRIVATE_RANGES = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10")
# Label shared by the edge and balancer pods: the exporter Service selects both.
EXPORTER_LABEL = "llm-stack/nginx-exporter"
CA_KEY = "ca.crt"


def topology(config: StackConfig) -> NginxTopology:
    """Where the cluster's nginx finds its peers, files and ports."""
    kube = config.kubernetes
    assert kube is not None
    names = n.KubeNames.of(config)
    return NginxTopology(
        gateways=[f"{names.fqdn(names.gateway)}:{config.gateway.port}"],
        ollamas=[
            f"{names.ollama_pod_host(i)}:{OLLAMA_PORT}" for i in range(config.ollama.instances)
        ],
        edge_https_listen=str(EDGE_CONTAINER_HTTPS_PORT),
        edge_http_listen=str(EDGE_CONTAINER_HTTP_PORT),
        https_public_port=config.edge.https_port,
        balancer_listen=str(config.balancer.port),
        status_listen=str(config.balancer.status_port),
        internal_allow=(*PRIVATE_RANGES, "127.0.0.1"),
        cert_path=f"{TLS_DIR}/tls.crt",
        key_path=f"{TLS_DIR}/tls.key",
        runtime_dir=CONTAINER_RUNTIME_DIR,
        access_log="/dev/stdout",
        error_log="/dev/stderr",
        resolver=kube.dns_resolver,
        # Non-root: nginx runs its workers as the pod's user.
        user=None,
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
        tls_hash: pulumi.Input[str]
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
            tls_hash = "cert-manager"
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
            # A new certificate rolls the pods: nginx reads it at start.
            tls_hash = secret_text(
                pulumi.Output.all(pair.cert_pem, pair.key_pem).apply(w.text_hash)
            )
        config_hash = pulumi.Output.all(tls_hash).apply(
            lambda parts: w.text_hash([conf, str(parts[0])])
        )
        if config.edge.tls != "cert-manager":
            config_hash = secret_text(config_hash)

        # --- the two Deployments -----------------------------------------------------
        def deployment(role: str, ports: list[dict[str, Any]], probe_port: str) -> Any:
            labels = {**names.labels(role), EXPORTER_LABEL: "true"}
            pod_selector = names.selector(role)
            nginx = {
                "name": "nginx",
                "image": config.edge.image,
                "command": ["nginx", "-c", f"{CONF_DIR}/{CONF_KEY}", "-g", "daemon off;"],
                "ports": ports,
                "resources": w.role_resources(config, role),
                "readinessProbe": _tcp_probe(probe_port, 5),
                "livenessProbe": _tcp_probe(probe_port, 15),
                "volumeMounts": [
                    {"name": "conf", "mountPath": CONF_DIR, "readOnly": True},
                    {"name": "tls", "mountPath": TLS_DIR, "readOnly": True},
                    {"name": "runtime", "mountPath": CONTAINER_RUNTIME_DIR},
                ],
            }
            pod = w.pod_spec(
                w.USERS[role],
                [nginx, _exporter(config)],
                volumes=[
                    {"name": "conf", "configMap": {"name": self.config_map.metadata.name}},
                    {
                        "name": "tls",
                        "secret": {"secretName": self.tls_secret_name, "defaultMode": 0o440},
                    },
                    # Request bodies over 1 MiB spill here (the body cap is edge.maxBodyMb).
                    w.empty_dir("runtime", f"{2 * config.edge.max_body_mb + 64}Mi"),
                ],
                extra=w.spread(pod_selector),
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
                "rules": [{"backendRefs": [{"name": names.edge, "port": config.edge.https_port}]}],
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
