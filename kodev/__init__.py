"""kodev: build Go services into OCI images without Docker and run a fast Kubernetes dev loop."""

__version__ = "0.1.0"
