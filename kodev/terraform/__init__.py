"""kodev as a Terraform / OpenTofu provider (``terraform-provider-kodev``).

Resources ``kodev_build`` and ``kodev_resolve`` carry the attributes of ko's provider
(``ko_build``, ``ko_resolve``), so a ko user renames the provider and nothing else.

- :mod:`kodev.terraform.builds`: what a resource asks kodev's pipeline to do, and how a
  plan learns that nothing changed without building (kodev's fingerprint).
- :mod:`kodev.terraform.provider`: the schemas and the resource lifecycle, served over the
  plugin protocol (tfprotov6: go-plugin handshake, gRPC) by the ``tf`` package.

Importing this package imports neither gRPC nor the build pipeline: ``main`` does.
"""

from __future__ import annotations
