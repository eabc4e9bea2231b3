"""What the Docker and Kubernetes platforms share, so neither reaches into the other.

- `names.py`: names and ports of every service of a stack, from its prefix.
- `labels.py`: roles and labels every container, pod and network carries.
- `secrets.py`: the stack's credentials (given or generated) and `secret_text`.
- `tls.py`: the edge's certificate, given or self-signed.
- `redis.py`: Redis inside a container: paths, healthcheck, URL, its redis.conf.
"""
