"""Kubernetes client configuration: in-cluster (service account) first, then a kubeconfig.

Must not: guess silently; when neither works, say what was tried.
"""

from __future__ import annotations

import os
from pathlib import Path

from kubernetes_asyncio import client, config
from kubernetes_asyncio.config.config_exception import ConfigException

from analyzer.routers.base import RouterError

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


async def api_client(kubeconfig: str | None = None, context: str | None = None) -> client.ApiClient:
    """An ApiClient for ``kubeconfig`` if given, else in-cluster, else $KUBECONFIG / ~/.kube."""
    tried: list[str] = []
    if kubeconfig is None and SERVICE_ACCOUNT.exists():
        try:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
            return client.ApiClient()
        except ConfigException as exc:
            tried.append(f"in-cluster: {exc}")
    else:
        tried.append(f"in-cluster: no service account token at {SERVICE_ACCOUNT}")
    path = kubeconfig or os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
    try:
        conf = client.Configuration()
        await config.load_kube_config(config_file=path, context=context, client_configuration=conf)
        return client.ApiClient(conf)
    except (ConfigException, OSError) as exc:
        tried.append(f"kubeconfig {path}: {exc}")
    raise RouterError("no Kubernetes configuration works; tried " + "; ".join(tried))
