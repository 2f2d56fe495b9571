# Sourced by the image scripts: podman settings that work on hosts like the CI machines.
# There, the default OCI runtime (crun) fails ("cgroups in hybrid mode not supported",
# setrlimit RLIMIT_NOFILE) while runc works once containers get no default ulimits.
# A CONTAINERS_CONF already set wins.
if [ -z "${CONTAINERS_CONF:-}" ]; then
    CONTAINERS_CONF="${XDG_CACHE_HOME:-$HOME/.cache}/livetables/containers.conf"
    mkdir -p "$(dirname "$CONTAINERS_CONF")"
    printf '[containers]\ndefault_ulimits = []\n\n[engine]\nruntime = "runc"\n' >"$CONTAINERS_CONF"
    export CONTAINERS_CONF
fi
