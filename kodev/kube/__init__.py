"""Kubernetes-facing code: manifests (``-f``/``-R``/``-l``), the API client, apply and delete.

Importing this package is cheap; the ``kubernetes`` library is imported only inside the
functions of :mod:`kodev.kube.client` and :mod:`kodev.kube.apply` that talk to a cluster,
so ``kodev --help`` and ``kodev resolve`` never load it.
"""
