"""Where built images go: registry, OCI layout, tarball, SBOM documents, refs file.

One small protocol (:class:`~kodev.publishers.api.Publisher`), one class per destination,
composed in order by :class:`~kodev.publishers.multi.MultiPublisher`, as ko's
``publish.Interface`` and ``MultiPublisher`` do. A publisher sees only
:class:`~kodev.publishers.api.PublishContext` (events, layer bytes, registry clients, the
metadata cache), never the pipeline: ``kodev.publish`` composes publishers, and nothing
here imports it.
"""
