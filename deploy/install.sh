#!/bin/sh
# Put the production layout of deploy/ in place on a Debian server, as root, from a checkout at /opt/geoservice:
#
#   deploy/install.sh
#
# - the system user `geoservice` (no login shell) and its folder /var/lib/geoservice (backups under it);
# - the settings file /etc/geoservice/geoservice.env (root:geoservice, 0640) with a new session key — an existing
#   settings file is never overwritten;
# - the `geoservice` command for the server (/usr/local/bin), the systemd units and timer, Caddy's drop-in and
#   Caddyfile (a different /etc/caddy/Caddyfile is kept once as Caddyfile.orig), the log rotation;
# - `systemctl daemon-reload`. It enables and starts nothing: the README's Deploying section says which units to
#   enable, after the settings file has the public address.
#
# Run it again after `git pull` to bring the units and the Caddyfile up to date. DESTDIR=/some/folder installs
# into that folder instead of / (the tests do; the user is then made with useradd --prefix there).
set -eu

DESTDIR=${DESTDIR:-}
source=$(cd "$(dirname "$0")/.." && pwd)
deploy=$source/deploy
home=/var/lib/geoservice
settings=/etc/geoservice/geoservice.env

say() { printf 'install: %s\n' "$*"; }

if [ "$(id -u)" != 0 ]; then
	echo "install: run as root (it makes a system user and writes under /etc)" >&2
	exit 1
fi
if [ "$source" != /opt/geoservice ] && [ -z "$DESTDIR" ]; then
	echo "install: the units run /opt/geoservice/.venv/bin/geoservice; clone to /opt/geoservice (this is $source)" >&2
	exit 1
fi

# -- the service's user and folders ---------------------------------------------------------------------------------
if grep -q '^geoservice:' "$DESTDIR/etc/passwd" 2>/dev/null; then
	say "user geoservice exists"
else
	if [ -n "$DESTDIR" ]; then
		useradd --prefix "$DESTDIR" --system --user-group --home-dir "$home" --shell /usr/sbin/nologin geoservice
	else
		useradd --system --user-group --home-dir "$home" --shell /usr/sbin/nologin geoservice
	fi
	say "user geoservice made"
fi
uid=$(awk -F: '$1 == "geoservice" {print $3}' "$DESTDIR/etc/passwd")
gid=$(awk -F: '$1 == "geoservice" {print $3}' "$DESTDIR/etc/group")
install -d -o "$uid" -g "$gid" -m 0750 "$DESTDIR$home"
install -d -o "$uid" -g "$gid" -m 0700 "$DESTDIR$home/backups"

# -- the settings file: made once, never overwritten ----------------------------------------------------------------
install -d -o 0 -g "$gid" -m 0750 "$DESTDIR/etc/geoservice"
if [ -e "$DESTDIR$settings" ]; then
	say "kept $settings"
else
	key=$(python3 -c 'import secrets; print(secrets.token_urlsafe(48))')
	made=$(mktemp)
	sed "s|^GEOSERVICE_SECRET_KEY=.*|GEOSERVICE_SECRET_KEY=$key|" "$deploy/geoservice.env" >"$made"
	install -o 0 -g "$gid" -m 0640 "$made" "$DESTDIR$settings"
	rm -f "$made"
	say "made $settings with a new session key: set GEOSERVICE_PUBLIC_URL, GEOSERVICE_TRUSTED_HOSTS, GEOSERVICE_TLS"
fi

# -- programs, units, proxy, log rotation (replaced by every run) ---------------------------------------------------
install -D -m 0755 "$deploy/geoservice" "$DESTDIR/usr/local/bin/geoservice"
for unit in geoservice@.service geoservice-db.service geoservice-backup.service geoservice-backup.timer; do
	install -D -m 0644 "$deploy/$unit" "$DESTDIR/etc/systemd/system/$unit"
done
install -D -m 0644 "$deploy/caddy.service.d/geoservice.conf" "$DESTDIR/etc/systemd/system/caddy.service.d/geoservice.conf"
caddyfile=$DESTDIR/etc/caddy/Caddyfile
if [ -e "$caddyfile" ] && ! cmp -s "$caddyfile" "$deploy/Caddyfile" && [ ! -e "$caddyfile.orig" ]; then
	cp -p "$caddyfile" "$caddyfile.orig"
	say "kept the previous Caddyfile as /etc/caddy/Caddyfile.orig"
fi
install -D -m 0644 "$deploy/Caddyfile" "$caddyfile"
install -D -m 0644 "$deploy/logrotate" "$DESTDIR/etc/logrotate.d/geoservice"
say "installed the geoservice command, the units, the Caddyfile and the log rotation"

if [ -z "$DESTDIR" ] && [ -d /run/systemd/system ]; then
	systemctl daemon-reload
fi
