"""Policy for what faces the network: the read-only protocol guard, authentication, origins."""
