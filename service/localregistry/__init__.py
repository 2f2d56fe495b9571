"""A local schema registry that livetables runs itself: Apicurio Registry.

Used by the tests: Apicurio Registry's distribution comes from Maven Central
once into the cache directory, and each registry runs in one JVM on a free
loopback port with in-memory storage. It serves the Confluent-compatible API
at ``/apis/ccompat/v7``, which is what livetables and Confluent's clients speak.
"""

from service.localregistry.registry import APICURIO_VERSION, LocalRegistry, ensure_registry

__all__ = ["APICURIO_VERSION", "LocalRegistry", "ensure_registry"]
