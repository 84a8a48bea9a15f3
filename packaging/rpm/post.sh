# Creates the service account and the default data directory; units are not enabled.
getent group ringmover >/dev/null || groupadd --system ringmover
getent passwd ringmover >/dev/null || \
    useradd --system --gid ringmover --home-dir /srv/ringmover --no-create-home --shell /sbin/nologin ringmover
mkdir -p /srv/ringmover/data
chown ringmover:ringmover /srv/ringmover /srv/ringmover/data
chmod 0750 /srv/ringmover
[ -d /run/systemd/system ] && systemctl daemon-reload >/dev/null 2>&1 || true
