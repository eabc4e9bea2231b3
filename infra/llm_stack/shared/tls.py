"""The edge's certificate: provided by the stack config, or self-signed and kept in state.

The self-signed pair is generated once by `pulumi_tls` and lives in the (encrypted)
state, so it stays the same across runs; clients pin it or skip verification in dev.
"""

from __future__ import annotations

import ipaddress

import pulumi
import pulumi_tls as tls
from llm_config.model import StackConfig

from llm_stack.pulumi_config import StackSecrets

_VALID_HOURS = 24 * 365
# Renewed (a new cert on the next `pulumi up`) this long before it expires.
_RENEW_HOURS = 24 * 30


def _san(config: StackConfig) -> tuple[list[str], list[str]]:
    """DNS names and IP addresses the self-signed certificate covers."""
    dns = {config.edge.hostname, "localhost"}
    ips = {"127.0.0.1", "::1"}
    try:
        ipaddress.ip_address(config.edge.hostname)
        dns.discard(config.edge.hostname)
        ips.add(config.edge.hostname)
    except ValueError:
        pass
    bind = ipaddress.ip_address(config.edge.bind_address)
    if not bind.is_unspecified:
        ips.add(str(bind))
    return sorted(dns), sorted(ips)


class EdgeCertificate(pulumi.ComponentResource):
    cert_pem: pulumi.Output[str]
    # Always a secret Output.
    key_pem: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        config: StackConfig,
        provided: StackSecrets,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("llm-stack:tls:EdgeCertificate", name, None, opts)
        if config.edge.tls == "provided":
            # pulumi_config has already refused a stack without both.
            if provided.tls_cert is None or provided.tls_key is None:
                raise ValueError("edge.tls is 'provided' but tlsCert/tlsKey are not set")
            self.cert_pem = pulumi.Output.from_input(provided.tls_cert)
            self.key_pem = pulumi.Output.secret(provided.tls_key)
        else:
            child = pulumi.ResourceOptions(parent=self)
            key = tls.PrivateKey("edge-key", algorithm="ECDSA", ecdsa_curve="P256", opts=child)
            dns_names, ip_addresses = _san(config)
            cert = tls.SelfSignedCert(
                "edge-cert",
                private_key_pem=key.private_key_pem,
                subject=tls.SelfSignedCertSubjectArgs(
                    common_name=config.edge.hostname, organization="llm-stack self-signed"
                ),
                dns_names=dns_names,
                ip_addresses=ip_addresses,
                validity_period_hours=_VALID_HOURS,
                early_renewal_hours=_RENEW_HOURS,
                allowed_uses=["digital_signature", "key_encipherment", "server_auth"],
                opts=child,
            )
            self.cert_pem = cert.cert_pem
            self.key_pem = pulumi.Output.secret(key.private_key_pem)
        self.register_outputs({"certPem": self.cert_pem})
